"""A few stored values of named columns, read straight from a SQLite file, read-only.

Prompts show sample values of text columns (``rollout.retrieval.sample_values``) and synthetic negatives
swap a literal for another value of its column (``pairs.negatives.column_values``); both read them here,
through one read-only connection per call. The queries are the caller's own, built over quoted names, not
model-written SQL: that runs in :mod:`workflow_scripts.core.sandbox`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

_PROGRESS_EVERY = 10_000  # SQLite VM instructions between deadline checks


def quote_identifier(name: str) -> str:
    """`name` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def read_column_values(
    db_path: str | Path,
    columns: Mapping[K, tuple[str, str]],
    query: Callable[[str, str], str],
    take: Callable[[Iterator[object]], V],
    *,
    timeout_s: float | None = None,
) -> dict[K, V]:
    """For each key of `columns`, what `take` keeps of the first column of `query`'s rows.

    `columns` maps a key to a (table, column) name pair of the database; `query` makes the SQL from
    the two names quoted (:func:`quote_identifier`). The file is opened read-only, and text that is not
    valid UTF-8 is decoded with replacement characters. A column whose query fails, or runs past
    `timeout_s` when given, is left out; keys come back in `columns` order.
    """
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
    out: dict[K, V] = {}
    try:
        for key, (table, column) in columns.items():
            if timeout_s is not None:
                deadline = time.monotonic() + timeout_s
                conn.set_progress_handler(lambda d=deadline: time.monotonic() > d, _PROGRESS_EVERY)
            try:
                cursor = conn.execute(query(quote_identifier(table), quote_identifier(column)))
                out[key] = take(row[0] for row in cursor)
            except sqlite3.Error:
                continue
    finally:
        conn.close()
    return out
