"""Fingerprints of what decides an artifact (settings, input files, a model), and all-or-nothing writes.

A run that resumes from state an earlier, killed run left behind (training checkpoints, rollout chunks)
first compares fingerprints, so that state written by another configuration or other data is never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def fingerprint(parts: Mapping[str, Any]) -> str:
    """Return the sha256 of `parts` as canonical JSON (sorted keys; other types by `str`)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path) -> str:
    """Return the sha256 of a file, or of a directory's files (names and contents, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_identity(model_path: Path) -> dict[str, Any]:
    """Identify a model directory cheaply: its resolved path, config.json's digest and its files' sizes.

    Hashing the weights themselves would cost seconds per GiB at every start; a changed model keeps neither
    its path, config and sizes all at once in practice.
    """
    model_path = Path(model_path).resolve()
    config = model_path / "config.json"
    return {
        "path": str(model_path),
        "config": file_digest(config) if config.is_file() else None,
        "files": {p.name: p.stat().st_size for p in sorted(model_path.iterdir()) if p.is_file()},
    }


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a flushed temporary file and a rename: all of it or nothing."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


FINGERPRINT_FILE = "fingerprint.json"


def claim_state_dir(root: Path, expected: str, what: str, log: logging.Logger) -> None:
    """Make `root` the state directory (checkpoints, chunks) of the run with fingerprint `expected`.

    A directory stamped with another fingerprint, or none, is deleted with a log line naming `what`: state
    of another configuration or data must never be resumed.
    """
    stamp = root / FINGERPRINT_FILE
    if root.exists():
        found = json.loads(stamp.read_text()).get("fingerprint") if stamp.is_file() else None
        if found != expected:
            log.info(
                "discarding the %s in %s: written by another configuration or data "
                "(fingerprint %s, this run %s)",
                what,
                root,
                (found or "missing")[:12],
                expected[:12],
            )
            shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    if not stamp.is_file():
        write_atomic(stamp, json.dumps({"fingerprint": expected}) + "\n")
