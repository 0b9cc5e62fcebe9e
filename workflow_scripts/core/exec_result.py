"""The outcome of one executed query, as the sandbox returns it and every stage reads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "error", "timeout"]


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one query: rows on success, else an error class and SQLite's message.

    ``elapsed_s`` is the query's time; for one that succeeded, that of executing it and fetching its rows
    (opening the database is not counted). ``plan`` holds the rows of ``EXPLAIN QUERY PLAN`` as
    ``(id, parent, detail)`` when the query succeeded and the plan was asked for (``explain=True``); it is
    empty otherwise.
    """

    status: Status
    error_class: str | None
    error_message: str | None
    columns: tuple[str, ...]
    rows: list[tuple]
    truncated: bool
    elapsed_s: float
    plan: tuple[tuple[int, int, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"
