"""Resumable rollout shards: a shard rolled out in chunks of examples, each chunk kept once it is done.

With `rollout.chunk_size` N, a shard's examples are rolled out N at a time (each chunk is one `run_rollout`,
so its turns and batches depend on nothing outside it) and every finished chunk is written to a side
directory, `results/rollouts/RUN/shards/.SHARD.chunks/`, which is no rule's output, so Snakemake keeps it
when it deletes a killed job's outputs. A rerun of the shard reads the chunks that are there and generates
only the missing ones; the shard's Parquet is then the same as an uninterrupted run's (timing columns aside).
`fingerprint.json` in that directory is the hash of what decides the trajectories (run settings, execution
settings, shard, data files, model and adapter): chunks of another fingerprint are deleted, never reused,
and a chunk also records the ids of its examples, which must match. The directory is removed once the
shard's Parquet is written.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from workflow_scripts.core.fingerprint import claim_state_dir

log = logging.getLogger("rollout")


def chunk_dir(out: Path) -> Path:
    """Return the chunk directory of the shard file `out`: a hidden sibling no rule declares."""
    return out.parent / f".{out.stem}.chunks"


def chunk_ranges(n: int, size: int | None) -> list[range]:
    """Split `n` examples into consecutive chunks of `size` (None or 0: one chunk of all)."""
    if not size or n == 0:
        return [range(n)]
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


class ChunkStore:
    """The finished chunks of one shard, in `root`, valid for one fingerprint."""

    def __init__(self, root: Path, expected: str) -> None:
        self.root = root
        claim_state_dir(root, expected, "rollout chunks", log)

    def path(self, index: int) -> Path:
        return self.root / f"chunk-{index:05d}.parquet"

    def load(self, index: int, ids: Sequence[str]) -> pd.DataFrame | None:
        """Return chunk `index` if it was written for exactly the examples `ids`, else None."""
        path = self.path(index)
        if not path.is_file():
            return None
        if _ids_of(path) != list(ids):
            log.info("ignoring %s: it holds other examples than this chunk's", path)
            return None
        return pd.read_parquet(path)

    def save(self, index: int, frame: pd.DataFrame, ids: Sequence[str]) -> None:
        """Write chunk `index` (trajectories and example ids) all or nothing: a temporary file, renamed."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[b"example_ids"] = json.dumps(list(ids)).encode()
        tmp = self.path(index).with_suffix(".tmp")
        pq.write_table(table.replace_schema_metadata(meta), tmp)
        tmp.replace(self.path(index))

    @staticmethod
    def drop_dir(root: Path) -> None:
        """Delete a shard's chunks (once its Parquet is written)."""
        shutil.rmtree(root, ignore_errors=True)


def _ids_of(path: Path) -> list[str] | None:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"example_ids")
    return json.loads(raw) if raw else None
