"""Repair feedback: what the model is told about a failed SQL attempt, and which attempts are repaired.

Three axes. `mode` says what the feedback may reveal, from the weakest to the strongest verifier:

- `error_only`: SQLite's error text only;
- `online_visible` (alias `execution`): what a deployed system sees without any reference answer: errors,
  an empty result, the row and column count, and the rule-guard warnings (`workflow_scripts.core.guards`);
- `result_status`: also whether the result matches the gold result, and (column-aware) the gold result's
  row and column count;
- `oracle_rows`: also the first rows of the gold result: the strongest and least realistic, for analysis.

`detail` says how much help is given: `basic` (the SQLite error or the result status), `column` (the invalid
identifier, the table each alias is bound to, the tables that own the column, the columns of the shown
schema, row-count mismatch) and `minimal` (column-aware, plus the instruction to prefer the minimal SQL).

`scope` says which failed attempts are repaired at all: `verified` every failure a gold verifier catches,
`online` only execution errors (what an executor alone sees), `online_guarded` also empty results and
rule-guard signals. An attempt outside the scope is the final answer, right or wrong.

No mode shows the gold SQL; only `oracle_rows` shows gold values.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import sqlglot
from sqlglot import exp

from workflow_scripts.core.exec_result import ExecResult
from workflow_scripts.core.guards import GuardSignal
from workflow_scripts.core.schema import Table

FeedbackMode = Literal["error_only", "online_visible", "result_status", "oracle_rows"]
FeedbackDetail = Literal["basic", "column", "minimal"]
RepairScope = Literal["verified", "online", "online_guarded"]
FEEDBACK_MODES: tuple[str, ...] = get_args(FeedbackMode)
FEEDBACK_MODE_ALIASES: dict[str, str] = {"execution": "online_visible"}
FEEDBACK_DETAILS: tuple[str, ...] = get_args(FeedbackDetail)
REPAIR_SCOPES: tuple[str, ...] = get_args(RepairScope)

SCHEMA_ERRORS = frozenset({"no_such_column", "no_such_table", "ambiguous_column"})
MINIMAL_HINT = (
    "Prefer the minimal SQL: use only the tables and joins the question needs, and drop unnecessary joins "
    "instead of patching aliases."
)
SAMPLE_ROWS = 3


@dataclass(frozen=True)
class GoldShape:
    """What feedback may say about the gold result: its size (`result_status`) and, for `oracle_rows` only,
    its first rows. Never its SQL."""

    n_rows: int
    n_columns: int
    first_rows: tuple[tuple, ...] = ()


def canonical_mode(mode: str) -> FeedbackMode:
    """Return the feedback mode `mode` names (aliases resolved); ValueError for an unknown mode."""
    name = FEEDBACK_MODE_ALIASES.get(mode, mode)
    if name not in FEEDBACK_MODES:
        known = ", ".join([*FEEDBACK_MODES, *FEEDBACK_MODE_ALIASES])
        raise ValueError(f"unknown feedback mode {mode!r}; known: {known}")
    return name  # type: ignore[return-value]


def repair_signal(
    result: ExecResult, verdict: str, scope: RepairScope, guards: Sequence[GuardSignal] = ()
) -> str | None:
    """Return why the verifier of `scope` sends this attempt to repair, or None when it accepts it.

    Signals: `error` (the query did not run), `empty_result`, `rule_guard` (a guard fired) and
    `wrong_result` (only a gold verifier sees it: `verified` scope).
    """
    if scope not in REPAIR_SCOPES:
        raise ValueError(f"unknown repair scope {scope!r}; known: {', '.join(REPAIR_SCOPES)}")
    if result.status != "ok":
        return "error"
    if scope == "verified":
        if verdict == "correct":
            return None
        return "empty_result" if not result.rows else "wrong_result"
    if scope == "online":
        return None
    if not result.rows:
        return "empty_result"
    return "rule_guard" if guards else None


def needs_repair(
    result: ExecResult, verdict: str, scope: RepairScope, guards: Sequence[GuardSignal] = ()
) -> bool:
    """Return whether the verifier of `scope` sees this attempt as failed."""
    return repair_signal(result, verdict, scope, guards) is not None


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


def owning_tables(column: str, tables: Sequence[Table]) -> list[Table]:
    """Return the tables (schema order) that have a column named `column` (case-insensitive)."""
    name = column.lower()
    return [t for t in tables if any(c.name.lower() == name for c in t.columns)]


def column_owners(column: str, tables: Sequence[Table]) -> list[str]:
    """Return the names of the tables (schema order) that have a column named `column`."""
    return [t.name for t in owning_tables(column, tables)]


def similar_columns(column: str, tables: Sequence[Table], n: int = 3) -> list[str]:
    """Return up to `n` `table.column` names close to `column`."""
    qualified = {f"{t.name}.{c.name}": c.name.lower() for t in tables for c in t.columns}
    close = difflib.get_close_matches(column.lower(), sorted(set(qualified.values())), n=n, cutoff=0.6)
    return [q for q, c in qualified.items() if c in close][:n]


def refocus_tables(result: ExecResult, all_tables: Sequence[Table]) -> list[Table]:
    """Return the tables (schema order) that own the unknown column of a `no such column` error; empty for
    any other attempt, or when no table has the column."""
    if result.error_class != "no_such_column":
        return []
    ident = _identifier(result.error_message or "", "no such column") or ""
    return owning_tables(ident.rpartition(".")[2], all_tables)


def error_line(result: ExecResult) -> str:
    """The first line of the feedback on a query that failed with an SQLite error."""
    return f"The query failed with a SQLite error: {result.error_message}"


def schema_columns_text(tables: Sequence[Table]) -> str:
    """Return `table(col, col, ...)` for each table, one per line."""
    return "\n".join(f"- {t.name}({', '.join(c.name for c in t.columns)})" for t in tables)


def _identifier(message: str, prefix: str) -> str | None:
    match = re.search(rf"{prefix}:\s*(\S+)", message or "")
    return match.group(1) if match else None


def _format_rows(rows: Sequence[Sequence]) -> str:
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


def _result_lines(
    result: ExecResult,
    verdict: str | None,
    *,
    mode: FeedbackMode,
    column_aware: bool,
    gold: GoldShape | None,
    guards: Sequence[GuardSignal],
) -> list[str]:
    """What the feedback says about a query that ran, by mode."""
    if mode == "error_only":
        return ["The query ran without an SQLite error. Check that it answers the question."]
    n_rows, n_cols = len(result.rows), len(result.columns)
    if n_rows:
        lines = [f"The query ran and returned {n_rows} row{'s' * (n_rows != 1)} with {n_cols} column(s)."]
    else:
        lines = ["The query ran but returned no rows."]
    lines += [f"Warning: {g.message}" for g in guards]
    if mode in ("result_status", "oracle_rows"):
        if verdict == "correct":
            lines.append("This result matches the expected answer.")
        elif not n_rows and gold is not None and gold.n_rows:
            lines.append("The expected answer is not empty.")
        else:
            lines.append("This result does not match the expected answer.")
        if column_aware and gold is not None and verdict != "correct" and n_rows:
            if gold.n_rows != n_rows:
                lines.append(f"The expected answer has {gold.n_rows} row(s).")
            if gold.n_columns != n_cols:
                lines.append(f"The expected answer has {gold.n_columns} column(s).")
            lines.append(f"First rows of your result: {_format_rows(result.rows)}.")
    if not n_rows and column_aware:
        lines.append("Check the filter values and the join conditions.")
    return lines


def feedback_text(
    sql: str,
    result: ExecResult,
    *,
    mode: str,
    detail: FeedbackDetail,
    shown: Sequence[Table],
    all_tables: Sequence[Table],
    gold: GoldShape | None = None,
    verdict: str | None = None,
    guards: Sequence[GuardSignal] = (),
) -> str:
    """Return the feedback for one attempt under feedback `mode` (aliases accepted).

    `verdict` (the execution-match verdict) and `gold` are used only by `result_status` and `oracle_rows`,
    the gold rows only by `oracle_rows`; `guards` (rule-guard signals) are shown from `online_visible` on.
    """
    mode = canonical_mode(mode)
    lines: list[str] = []
    column_aware = detail in ("column", "minimal")
    if result.status == "timeout":
        lines.append("The query did not finish within the time limit. Avoid cross joins and deep recursion.")
    elif result.error_class == "empty_query":
        lines.append("No SQL query was found in your answer. Reply with one SELECT statement only.")
    elif result.status != "ok":
        lines.append(error_line(result))
        if column_aware:
            lines += error_detail(result, sql, shown, all_tables)
    else:
        lines += _result_lines(
            result, verdict, mode=mode, column_aware=column_aware, gold=gold, guards=guards
        )
    if mode == "oracle_rows" and gold is not None and gold.first_rows and verdict != "correct":
        lines.append(f"First rows of the expected answer: {_format_rows(gold.first_rows)}.")
    if column_aware:
        lines.append("Columns of the schema:\n" + schema_columns_text(shown))
    if detail == "minimal":
        lines.append(MINIMAL_HINT)
    lines.append("Write the corrected SQL query.")
    return "\n".join(lines)
