"""Training checkpoints that survive a kill: where they live, which one may be resumed, when one is complete.

A training job's adapter is written only at its end (`trainer.staging_dir`), and Snakemake deletes the
outputs of a failed job, so checkpoints live in a sibling directory that is no output of any rule:
`results/adapters/.sft.checkpoints/` for `results/adapters/sft`. It holds `fingerprint.json` (a hash of
everything that decides the trained weights: method, model, settings, LoRA shape, the training rows, the
initial adapter) and transformers' `checkpoint-STEP/` directories (adapter, optimizer, scheduler, RNG
states, trainer state). transformers writes a checkpoint in place, so a kill can leave half of one; a
checkpoint counts only once its files are flushed and `COMPLETE` is renamed into it (`CheckpointCallback`).
A rerun resumes from the newest complete checkpoint of the same fingerprint; one of another fingerprint is
deleted, never resumed. The directory is removed once the adapter is in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("training")

FINGERPRINT_FILE = "fingerprint.json"
COMPLETE_FILE = "COMPLETE"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def checkpoint_dir(out_dir: Path) -> Path:
    """Return the checkpoint directory of the adapter `out_dir`: a hidden sibling no rule declares."""
    return out_dir.parent / f".{out_dir.name}.checkpoints"


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


def complete_checkpoints(root: Path) -> list[Path]:
    """Return the complete `checkpoint-STEP` directories under `root`, oldest step first."""
    found = []
    for path in root.glob("checkpoint-*"):
        match = _CHECKPOINT.fullmatch(path.name)
        if match and (path / COMPLETE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def prepare_checkpoints(root: Path, expected: str) -> Path | None:
    """Make `root` ready for this run and return the checkpoint to resume from (None: start at step 0).

    Checkpoints of another fingerprint are deleted (a different configuration or data must never be
    resumed), as are incomplete ones (a kill while writing).
    """
    stamp = root / FINGERPRINT_FILE
    if root.exists():
        found = json.loads(stamp.read_text()).get("fingerprint") if stamp.is_file() else None
        if found != expected:
            log.info(
                "discarding the checkpoints in %s: written by another configuration or data "
                "(fingerprint %s, this run %s)",
                root,
                (found or "missing")[:12],
                expected[:12],
            )
            shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    if not stamp.is_file():
        write_atomic(stamp, json.dumps({"fingerprint": expected}) + "\n")
    complete = set(complete_checkpoints(root))
    for path in root.glob("checkpoint-*"):
        if path not in complete:
            log.info("deleting the incomplete checkpoint %s (the run was stopped while writing it)", path)
            shutil.rmtree(path, ignore_errors=True)
    latest = complete_checkpoints(root)
    return latest[-1] if latest else None


def checkpoint_step(path: Path) -> int:
    """Return the optimizer step of a `checkpoint-STEP` directory."""
    match = _CHECKPOINT.fullmatch(path.name)
    if match is None:
        raise ValueError(f"not a checkpoint directory: {path}")
    return int(match.group(1))


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a flushed temporary file and a rename: all of it or nothing."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def mark_complete(checkpoint: Path) -> None:
    """Flush a checkpoint's files to disk, then mark it complete (a rename: a kill leaves it unmarked)."""
    _fsync_tree(checkpoint)
    write_atomic(checkpoint / COMPLETE_FILE, "")


def rotate(root: Path, keep: int | None) -> None:
    """Delete all but the newest `keep` complete checkpoints (None: keep all)."""
    if keep is None:
        return
    for path in complete_checkpoints(root)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def checkpoint_callback(root: Path, keep: int | None) -> Any:
    """Return a trainer callback that marks each saved checkpoint complete, rotates, and times the saves.

    transformers calls `on_save` after a checkpoint's files are written; its own rotation is off
    (`save_total_limit` None in the trainer args) so that it never deletes a complete checkpoint before
    the newer one is marked. `save_seconds` are the wall times from the end of a step to its checkpoint's
    mark, which is the cost of a checkpoint.
    """
    from transformers import TrainerCallback

    class CheckpointCallback(TrainerCallback):
        def __init__(self) -> None:
            self.save_seconds: list[float] = []
            self._step_end = 0.0

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._step_end = time.perf_counter()

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            checkpoint = root / f"checkpoint-{state.global_step}"
            # SFT->DPO also saves trl's frozen reference copy, in ref/; transformers would then resume only
            # the adapters in subdirectories and skip the trained one. The reference is rebuilt from the
            # initial adapter on resume, so it is not kept.
            shutil.rmtree(checkpoint / "ref", ignore_errors=True)
            mark_complete(checkpoint)
            rotate(root, keep)
            self.save_seconds.append(round(time.perf_counter() - self._step_end, 3))
            log.info("checkpoint %s written (%.2f s)", checkpoint, self.save_seconds[-1])

    return CheckpointCallback()
