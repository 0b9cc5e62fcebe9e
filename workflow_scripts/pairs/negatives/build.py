"""Synthetic negatives of a data set: made, executed in the sandbox and judged against the gold result."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import pandas as pd

from workflow_scripts.core.cell_values import read_column_values
from workflow_scripts.core.matching import CORRECT, TRUNCATED
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.schema import Table, tables_from_schema
from workflow_scripts.core.scoring import MatchSettings, gold_result
from workflow_scripts.pairs.negatives.ast_helpers import column_of, schema_of
from workflow_scripts.pairs.negatives.make import Negative, make_from_tree, parse
from workflow_scripts.pairs.negatives.wrong_literal import literal_columns

SYNTHETIC_COLUMNS = [
    "example_id",
    "db_id",
    "question",
    "gold_sql",
    "type",
    "sql",
    "status",
    "error_class",
    "executes",
    "verdict",
    "kept",
]

VALUES_PER_COLUMN = 8
VALUES_TIMEOUT_S = 2.0


def column_values(
    db_path: str | Path,
    columns: Collection[tuple[str, str]],
    tables: Sequence[Table],
    per_column: int = VALUES_PER_COLUMN,
) -> dict[tuple[str, str], list[object]]:
    """Up to `per_column` distinct non-NULL values of each lowercased (table, column), read-only.

    Columns missing from `tables` are skipped; a query that fails or runs past a short time limit
    gives no values for its column.
    """
    schema = schema_of(tables)
    names: dict[tuple[str, str], tuple[str, str]] = {}
    for table_name, column_name in sorted(columns):
        table = schema.get(table_name)
        column = column_of(table, column_name) if table is not None else None
        if column is not None:
            names[(table_name, column_name)] = (table.name, column.name)

    def query(table: str, column: str) -> str:
        return f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL LIMIT {int(per_column)}"

    return read_column_values(db_path, names, query, list, timeout_s=VALUES_TIMEOUT_S)


def build_synthetic(
    examples: pd.DataFrame,
    gold: pd.DataFrame,
    schema: pd.DataFrame,
    sandbox: Sandbox,
    match: MatchSettings,
    *,
    types: Sequence[str],
    per_type: int,
    seed: int,
    progress: bool = False,
) -> pd.DataFrame:
    """Make, execute and judge the negatives of every example with a cached gold result.

    All negatives run in one ``execute_many`` call, prepared by `match`. ``kept`` is true when the
    verdict against the gold result is neither ``correct`` nor ``truncated`` (undecidable); a
    negative that fails to execute is kept (``executes`` false): it is a real mistake too.
    """
    merged = examples.merge(gold, on="id", how="inner", validate="one_to_one")
    tables_by_db: dict[str, list[Table]] = {}
    value_cache: dict[tuple[str, str, str], list[object]] = {}
    made: list[tuple[dict, Negative]] = []
    for row in merged.to_dict("records"):
        tree = parse(row["gold_sql"])
        if tree is None:
            continue
        if row["db_id"] not in tables_by_db:
            tables_by_db[row["db_id"]] = tables_from_schema(schema, row["db_id"])
        tables = tables_by_db[row["db_id"]]
        values = None
        if "wrong_literal" in types:
            values = _cached_values(row["db_path"], literal_columns(tree, tables), tables, value_cache)
        for negative in make_from_tree(tree, row["gold_sql"], tables, types, seed, per_type, values):
            made.append((row, negative))
    jobs = [(row["db_path"], match.prepare(negative.sql)) for row, negative in made]
    results = sandbox.execute_many(jobs, progress="synthetic negatives" if progress else False)
    out = []
    for (row, negative), result in zip(made, results, strict=True):
        v = match.verdict(gold_result(row), result, order_matters=bool(row["order_matters"]))
        out.append(
            {
                "example_id": row["id"],
                "db_id": row["db_id"],
                "question": row["question"],
                "gold_sql": row["gold_sql"],
                "type": negative.type,
                "sql": negative.sql,
                "status": result.status,
                "error_class": result.error_class,
                "executes": result.status == "ok",
                "verdict": v,
                "kept": v not in (CORRECT, TRUNCATED),
            }
        )
    return pd.DataFrame(out, columns=SYNTHETIC_COLUMNS)


def _cached_values(
    db_path: str,
    columns: set[tuple[str, str]],
    tables: Sequence[Table],
    cache: dict[tuple[str, str, str], list[object]],
) -> dict[tuple[str, str], list[object]]:
    missing = {c for c in columns if (db_path, *c) not in cache}
    if missing:
        fetched = column_values(db_path, missing, tables)
        for key in missing:
            cache[(db_path, *key)] = fetched.get(key, [])
    return {c: cache[(db_path, *c)] for c in columns}
