"""Writing artifacts atomically, so an interrupted job never leaves a file that Snakemake would trust."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workflow_scripts import __version__

METADATA_KEY = b"workflow_scripts"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; artifacts get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@functools.cache
def code_version() -> dict[str, str]:
    """The package version, a SHA-256 of the package's source files and, in a git checkout, the commit.

    The source hash tells two runs of the same code apart from runs of edited code even outside git.
    """
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes())
    version = {"version": __version__, "source_sha256": digest.hexdigest()}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0:
            version["git_commit"] = commit.stdout.strip()
    return version


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (e.g. a data set file, for the reproducibility record)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_parquet(df: pd.DataFrame, path: str | Path, provenance: dict[str, Any] | None = None) -> None:
    """Write `df` as Parquet with the code version and `provenance` (e.g. config values) in its metadata."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(
        {**code_version(), **(provenance or {})}, sort_keys=True, default=str
    ).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_provenance(path: str | Path) -> dict[str, Any]:
    """Return the provenance that `write_parquet` stored in a Parquet file."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(METADATA_KEY, b"{}"))


def write_json(obj: Any, path: str | Path) -> None:
    """Write `obj` as indented, key-sorted JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(text: str, path: str | Path) -> None:
    """Write `text` to `path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def inherited(paths: list[str | Path] | tuple[str | Path, ...], key: str = "matching") -> Any:
    """The provenance value `key` that Parquet inputs agree on (None when none records it).

    A stage that does not take the matching settings itself stamps its outputs with those of its inputs,
    so every artifact says which metric mode its verdicts come from. Inputs made under different values
    cannot be combined: that is a ValueError naming two of them.
    """
    found: dict[str, Path] = {}
    values = {}
    for path in paths:
        path = Path(path)
        if path.suffix != ".parquet" or not path.is_file():
            continue
        value = read_provenance(path).get(key)
        if value is None:
            continue
        text = json.dumps(value, sort_keys=True)
        found.setdefault(text, path)
        values[text] = value
    if len(found) > 1:
        (first, first_path), (second, second_path) = list(found.items())[:2]
        raise ValueError(f"{first_path} was made with {key} {first} but {second_path} with {second}")
    return next(iter(values.values()), None)
