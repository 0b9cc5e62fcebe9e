"""A database schema as the stages share it: tables of typed columns with keys and natural-language names."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Column:
    """One column: SQL type, primary-key flag, the (table, column) it references, and its NL name."""

    name: str
    type: str = ""
    is_primary_key: bool = False
    fk_table: str | None = None
    fk_column: str | None = None
    nl: str | None = None


@dataclass(frozen=True)
class Table:
    """One table: ordered columns and a few sample text values per column (empty unless sampled)."""

    name: str
    columns: tuple[Column, ...]
    values: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def tables_from_schema(schema: pd.DataFrame, db_id: str) -> list[Table]:
    """Return the tables of one database from a `schema.parquet` frame, in schema (row) order."""
    rows = schema[schema["db_id"] == db_id]
    if rows.empty:
        raise KeyError(f"db_id {db_id!r} is not in the schema")
    if "column_index" in rows.columns:
        rows = rows.assign(_row=range(len(rows)))
        first = rows.groupby("table", sort=False)["_row"].transform("min")
        rows = rows.assign(_first=first).sort_values(["_first", "column_index"], kind="stable")
    has_nl = "column_nl" in rows.columns
    columns: dict[str, list[Column]] = {}
    for row in rows.to_dict("records"):
        columns.setdefault(row["table"], []).append(
            Column(
                name=row["column"],
                type=_text_or_none(row.get("type")) or "",
                is_primary_key=bool(row.get("is_primary_key")),
                fk_table=_text_or_none(row.get("fk_table")),
                fk_column=_text_or_none(row.get("fk_column")),
                nl=_text_or_none(row["column_nl"]) if has_nl else None,
            )
        )
    return [Table(name=name, columns=tuple(cols)) for name, cols in columns.items()]
