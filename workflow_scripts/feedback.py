"""Repair feedback: what the model is told about a failed SQL attempt.

Two axes. `mode` says what the verifier may reveal: `execution` is only what an executor sees (errors, an
empty result, the row count) and can be deployed; `result_status` also says whether the result matches the
gold result (for training data and analysis). `detail` says how much help is given: `basic` (the SQLite error
or the result status), `column` (the invalid identifier, the table each alias is bound to, the tables that
actually own the column, the columns of the shown schema, row-count and sample mismatch) and `minimal`
(column-aware, plus the instruction to prefer the minimal SQL). Feedback never shows the gold SQL.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import exp

from workflow_scripts.retrieval import Table
from workflow_scripts.sandbox import ExecResult

FeedbackMode = Literal["execution", "result_status"]
FeedbackDetail = Literal["basic", "column", "minimal"]
FEEDBACK_MODES: tuple[str, ...] = ("execution", "result_status")
FEEDBACK_DETAILS: tuple[str, ...] = ("basic", "column", "minimal")

SCHEMA_ERRORS = frozenset({"no_such_column", "no_such_table", "ambiguous_column"})
MINIMAL_HINT = (
    "Prefer the minimal SQL: use only the tables and joins the question needs, and drop unnecessary joins "
    "instead of patching aliases."
)
SAMPLE_ROWS = 3


@dataclass(frozen=True)
class GoldShape:
    """What `result_status` feedback may say about the gold result: its size, never its SQL or values."""

    n_rows: int
    n_columns: int


def needs_repair(result: ExecResult, verdict: str, mode: FeedbackMode) -> bool:
    """Return whether the verifier of `mode` sees this attempt as failed."""
    if mode == "execution":
        return result.status != "ok" or not result.rows
    return verdict != "correct"


def alias_bindings(sql: str) -> dict[str, str]:
    """Return {alias or table name, as written: table name} for the tables an SQL query reads."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
        return {}
    bindings: dict[str, str] = {}
    for table in tree.find_all(exp.Table):
        if table.name:
            bindings[table.alias or table.name] = table.name
    return bindings


def column_owners(column: str, tables: Sequence[Table]) -> list[str]:
    """Return the tables (schema order) that have a column named `column` (case-insensitive)."""
    name = column.lower()
    return [t.name for t in tables if any(c.name.lower() == name for c in t.columns)]


def similar_columns(column: str, tables: Sequence[Table], n: int = 3) -> list[str]:
    """Return up to `n` `table.column` names close to `column`."""
    qualified = {f"{t.name}.{c.name}": c.name.lower() for t in tables for c in t.columns}
    close = difflib.get_close_matches(column.lower(), sorted(set(qualified.values())), n=n, cutoff=0.6)
    return [q for q, c in qualified.items() if c in close][:n]


def schema_columns_text(tables: Sequence[Table]) -> str:
    """Return `table(col, col, ...)` for each table, one per line."""
    return "\n".join(f"- {t.name}({', '.join(c.name for c in t.columns)})" for t in tables)


def _identifier(message: str, prefix: str) -> str | None:
    match = re.search(rf"{prefix}:\s*(\S+)", message or "")
    return match.group(1) if match else None


def _format_rows(rows: Sequence[tuple]) -> str:
    return "; ".join("(" + ", ".join(repr(v) for v in row) + ")" for row in rows[:SAMPLE_ROWS])


def error_detail(
    result: ExecResult, sql: str, shown: Sequence[Table], all_tables: Sequence[Table]
) -> list[str]:
    """Column-aware explanation of an execution error, as lines."""
    lines: list[str] = []
    bindings = alias_bindings(sql)
    message = result.error_message or ""
    if result.error_class == "no_such_column":
        ident = _identifier(message, "no such column") or ""
        qualifier, _, column = ident.rpartition(".")
        lines.append(f"`{ident}` is not a valid column.")
        if qualifier:
            bound = {a.lower(): t for a, t in bindings.items()}.get(qualifier.lower())
            lines.append(
                f"`{qualifier}` is bound to table {bound}."
                if bound
                else f"`{qualifier}` is not bound to any table."
            )
        owners = column_owners(column, all_tables)
        if owners:
            lines.append(f"Column `{column}` belongs to: {', '.join(owners)}.")
        else:
            similar = similar_columns(column, shown)
            lines.append(
                f"No table has a column `{column}`." + (f" Similar: {', '.join(similar)}." if similar else "")
            )
    elif result.error_class == "no_such_table":
        ident = _identifier(message, "no such table") or ""
        lines.append(
            f"Table `{ident}` does not exist. Tables you can use: {', '.join(t.name for t in shown)}."
        )
    elif result.error_class == "ambiguous_column":
        ident = _identifier(message, "ambiguous column name") or ""
        owners = [
            t for t in column_owners(ident, all_tables) if t.lower() in {b.lower() for b in bindings.values()}
        ]
        aliases = [a for a, t in bindings.items() if t in owners and a != t]
        lines.append(
            f"`{ident}` is in several joined tables ({', '.join(owners) or 'more than one'}): qualify it"
            + (f" with an alias ({', '.join(f'{a}.{ident}' for a in aliases)})." if aliases else ".")
        )
    if bindings:
        lines.append(
            "Aliases in your query: " + ", ".join(f"{a} = {t}" for a, t in sorted(bindings.items())) + "."
        )
    return lines


def feedback_text(
    sql: str,
    result: ExecResult,
    *,
    mode: FeedbackMode,
    detail: FeedbackDetail,
    shown: Sequence[Table],
    all_tables: Sequence[Table],
    gold: GoldShape | None = None,
) -> str:
    """Return the feedback for one failed attempt; `gold` is used only in `result_status` mode."""
    lines: list[str] = []
    column_aware = detail in ("column", "minimal")
    if result.status == "timeout":
        lines.append("The query did not finish within the time limit. Avoid cross joins and deep recursion.")
    elif result.error_class == "empty_query":
        lines.append("No SQL query was found in your answer. Reply with one SELECT statement only.")
    elif result.status != "ok":
        lines.append(f"The query failed with a SQLite error: {result.error_message}")
        if column_aware:
            lines += error_detail(result, sql, shown, all_tables)
    elif not result.rows:
        lines.append("The query ran but returned no rows.")
        if mode == "result_status":
            lines.append("The expected answer is not empty.")
        if column_aware:
            lines.append("Check the filter values and the join conditions.")
    else:
        n_rows, n_cols = len(result.rows), len(result.columns)
        lines.append(f"The query ran and returned {n_rows} row{'s' * (n_rows != 1)} with {n_cols} column(s).")
        if mode == "result_status":
            lines.append("This result does not match the expected answer.")
            if column_aware and gold is not None:
                if gold.n_rows != n_rows:
                    lines.append(f"The expected answer has {gold.n_rows} row(s).")
                if gold.n_columns != n_cols:
                    lines.append(f"The expected answer has {gold.n_columns} column(s).")
                lines.append(f"First rows of your result: {_format_rows(result.rows)}.")
    if column_aware:
        lines.append("Columns of the schema:\n" + schema_columns_text(shown))
    if detail == "minimal":
        lines.append(MINIMAL_HINT)
    lines.append("Write the corrected SQL query.")
    return "\n".join(lines)
