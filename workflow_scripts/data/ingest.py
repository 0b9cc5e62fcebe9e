"""Reading Spider-, BIRD- and WikiSQL-style data sets and the schemas of their SQLite databases.

BIRD's layout is read as it is distributed: ``dev.json`` / ``train.json`` records with ``question``, ``SQL``,
``evidence``, ``db_id``, ``difficulty`` and ``question_id``; ``dev_databases/<db_id>/<db_id>.sqlite`` (the
``db_root``) and ``dev_tables.json`` (the ``tables`` file, Spider's format). ``evidence`` (BIRD's external
knowledge), ``difficulty`` and ``family`` (the embedded demo's question family) are kept as columns of the
examples; a data set whose records carry ``evidence`` is BIRD-style, and its evidence is shown in prompts
unless ``prompt.evidence`` is false.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from workflow_scripts.core.errors import UserError

QUESTION_KEYS = ("question", "utterance", "nl")
SQL_KEYS = ("query", "sql", "gold_sql", "SQL")
EVIDENCE_KEYS = ("evidence",)
DIFFICULTY_KEYS = ("difficulty",)
FAMILY_KEYS = ("family",)  # the demo's question family (workflow_scripts/data/demo)
DB_PATH_KEYS = ("db_path", "database_path", "sqlite_path")
ID_KEYS = ("id", "question_id", "instance_id")

MissingDbPolicy = Literal["error", "skip"]

EXAMPLE_COLUMNS = [
    "id", "position", "db_id", "db_path", "question", "gold_sql", "evidence", "difficulty", "family"
]  # fmt: skip


@dataclass(frozen=True)
class DatasetSpec:
    """One data set as named in config.yaml."""

    name: str
    path: Path
    db_root: Path | None = None
    tables: Path | None = None
    limit: int | None = None
    test_suite_root: Path | None = None

    @classmethod
    def from_config(cls, name: str, entry: dict[str, Any]) -> DatasetSpec:
        """Build a spec from a `datasets.<name>` config entry."""
        return cls(
            name=name,
            path=Path(entry["path"]),
            db_root=Path(entry["db_root"]) if entry.get("db_root") else None,
            tables=Path(entry["tables"]) if entry.get("tables") else None,
            limit=entry.get("limit"),
            test_suite_root=Path(entry["test_suite_root"]) if entry.get("test_suite_root") else None,
        )


def read_records(path: Path) -> list[dict[str, Any]]:
    """Return the records of a JSON array (or {"data": [...]}) or JSONL file."""
    if not path.is_file():
        raise UserError(
            f"data set file {str(path)!r} does not exist. Fix: correct `path` of the data set in config.yaml."
        )
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise UserError(f"data set file {str(path)!r} is empty. Fix: give a JSON array or JSONL of examples.")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(
                f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}. "
                "Fix: repair the file (it must be one JSON array or one JSON object per line)."
            ) from None
    else:
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, dict) and isinstance(whole.get("data"), list):
            records = whole["data"]
        else:
            records = _read_jsonl(path, text)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise UserError(f"{path}: expected a list of JSON objects. Fix: one object per example.")
    if not records:
        raise UserError(
            f"data set file {str(path)!r} holds no examples. Fix: point `path` at a non-empty file."
        )
    return records


def _read_jsonl(path: Path, text: str) -> list[dict[str, Any]]:
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise UserError(
                f"{path}: malformed JSON on line {lineno}: {err.msg}. "
                "Fix: repair that line (JSONL needs one complete JSON object per line)."
            ) from None
    return records


def _first_string(record: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    # Spider records hold both `query` (text) and `sql` (a parsed dict): take the first text value.
    for key in keys:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def candidate_db_paths(db_root: Path, db_id: str) -> list[Path]:
    """Return where a database named `db_id` may live under `db_root`, in order of preference."""
    return [db_root / db_id / f"{db_id}.sqlite", db_root / f"{db_id}.sqlite"]


def normalize_records(
    records: list[dict[str, Any]], spec: DatasetSpec, missing_db: MissingDbPolicy
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (examples, skipped): one row per example, and the examples whose database file is missing."""
    rows, skipped, seen_ids = [], [], {}
    for position, record in enumerate(records):
        where = f"{spec.path} (example {position})"
        question = _first_string(record, QUESTION_KEYS)
        gold_sql = _first_string(record, SQL_KEYS)
        if question is None or gold_sql is None:
            field, keys = ("question", QUESTION_KEYS) if question is None else ("gold SQL", SQL_KEYS)
            raise UserError(f"{where}: no {field} field. Fix: give it as one of {', '.join(keys)}.")
        raw_id = next((record[k] for k in ID_KEYS if record.get(k) is not None), None)
        example_id = str(raw_id) if raw_id is not None else f"{spec.name}-{position:06d}"
        if example_id in seen_ids:
            raise UserError(
                f"{where}: duplicate id {example_id!r} (also example {seen_ids[example_id]}). "
                "Fix: make the ids unique or drop the id field to number examples by position."
            )
        seen_ids[example_id] = position

        db_id, db_path = _resolve_database(record, spec, where)
        row = {
            "id": example_id,
            "position": position,
            "db_id": db_id,
            "db_path": str(db_path),
            "question": question,
            "gold_sql": gold_sql,
            "evidence": _first_string(record, EVIDENCE_KEYS),
            "difficulty": _first_string(record, DIFFICULTY_KEYS),
            "family": _first_string(record, FAMILY_KEYS),
        }
        if db_path.is_file():
            rows.append(row)
        elif missing_db == "skip":
            skipped.append({**row, "reason": "missing_db"})
        else:
            raise UserError(
                f"{where}: database file for db_id {db_id!r} not found at {db_path}. "
                "Fix: correct `db_root` (or the record's db_path), or set `ingest.missing_db: skip` "
                "to count such examples as skipped."
            )
    if spec.limit is not None:
        rows = rows[: spec.limit]
    if not rows:
        raise UserError(
            f"{spec.path}: no example has a database file ({len(skipped)} skipped). "
            "Fix: check `db_root` of the data set in config.yaml."
        )
    examples = pd.DataFrame(rows, columns=EXAMPLE_COLUMNS)
    return examples, pd.DataFrame(skipped, columns=[*EXAMPLE_COLUMNS, "reason"])


def _resolve_database(record: dict[str, Any], spec: DatasetSpec, where: str) -> tuple[str, Path]:
    explicit = _first_string(record, DB_PATH_KEYS)
    if explicit is not None:
        path = Path(explicit)
        if not path.is_absolute():
            path = spec.path.parent / path
        db_id = record.get("db_id") or path.stem
        return str(db_id), path
    db_id = record.get("db_id")
    if not isinstance(db_id, str) or not db_id:
        raise UserError(
            f"{where}: no database. Fix: give db_id (with `db_root` in config.yaml) "
            f"or one of {', '.join(DB_PATH_KEYS)}."
        )
    if spec.db_root is None:
        raise UserError(
            f"{where}: db_id {db_id!r} needs a `db_root`. Fix: set `datasets.{spec.name}.db_root`."
        )
    candidates = candidate_db_paths(spec.db_root, db_id)
    return db_id, next((p for p in candidates if p.is_file()), candidates[0])


def read_schema(db_path: Path, db_id: str) -> pd.DataFrame:
    """Return one row per column of every table of a SQLite database, with primary and foreign keys."""
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                    "ORDER BY rowid"
                )
            ]
            rows = []
            for table in tables:
                fks = {fk[3]: (fk[2], fk[4]) for fk in conn.execute(f'PRAGMA foreign_key_list("{table}")')}
                for cid, name, col_type, _notnull, _default, pk in conn.execute(
                    f'PRAGMA table_info("{table}")'
                ):
                    fk_table, fk_column = fks.get(name, (None, None))
                    rows.append(
                        {
                            "db_id": db_id,
                            "table": table,
                            "column": name,
                            "column_index": cid,
                            "type": col_type or "",
                            "is_primary_key": pk > 0,
                            "fk_table": fk_table,
                            "fk_column": fk_column,
                        }
                    )
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        raise UserError(
            f"database {str(db_path)!r} (db_id {db_id!r}) cannot be read as SQLite: {err}. "
            "Fix: replace it with a valid SQLite file or remove its examples."
        ) from None
    if not rows:
        raise UserError(
            f"database {str(db_path)!r} (db_id {db_id!r}) has no tables. "
            "Fix: point the data set at the right database files."
        )
    return pd.DataFrame(rows)


def read_tables_json(path: Path) -> pd.DataFrame:
    """Return Spider tables.json natural-language column names as (db_id, table, column, column_nl)."""
    if not path.is_file():
        raise UserError(f"tables file {str(path)!r} does not exist. Fix: correct or remove `tables`.")
    try:
        dbs = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: malformed JSON at line {err.lineno}: {err.msg}.") from None
    rows = []
    for db in dbs:
        tables = db.get("table_names_original", [])
        for (t_idx, col), (_, col_nl) in zip(
            db.get("column_names_original", []), db.get("column_names", []), strict=False
        ):
            if t_idx >= 0:
                rows.append(
                    {"db_id": db["db_id"], "table": tables[t_idx], "column": col, "column_nl": col_nl}
                )
    return pd.DataFrame(rows, columns=["db_id", "table", "column", "column_nl"])


def build_schema(examples: pd.DataFrame, tables_json: Path | None = None) -> pd.DataFrame:
    """Return the schema of every database the examples use, with tables.json names when given."""
    dbs = examples[["db_id", "db_path"]].drop_duplicates().sort_values(["db_id", "db_path"])
    schema = pd.concat([read_schema(Path(p), d) for d, p in dbs.itertuples(index=False)], ignore_index=True)
    if tables_json is not None:
        names = read_tables_json(tables_json)
        key = ["db_id", schema["table"].str.lower().rename("t"), schema["column"].str.lower().rename("c")]
        names = names.assign(t=names["table"].str.lower(), c=names["column"].str.lower())
        schema = (
            schema.assign(t=key[1], c=key[2])
            .merge(
                names[["db_id", "t", "c", "column_nl"]].drop_duplicates(["db_id", "t", "c"]),
                on=["db_id", "t", "c"],
                how="left",
            )
            .drop(columns=["t", "c"])
        )
    else:
        schema["column_nl"] = None
    return schema
