"""Build the embedded demo benchmark from the declared databases and the question families.

`build_demo` writes, under an output directory, ``database/<db_id>/<db_id>.sqlite``, ``tables.json`` and
three Spider-style question files (``question``, ``query``, ``db_id``):
- ``train.json``: questions on the eight training databases;
- ``dev.json``: one question of every family on each of the four held-out databases (split by database);
- ``indomain.json``: new questions on the training databases (the families of a database that give their
  first question to this set do not give it to train), the in-domain case.
Each file is shuffled (seeded), so that its first N questions sample every database and family.
Everything derives from the seed: two builds with the same seed are identical. Every gold query is run on the
written database and must return rows (a count above zero, no tie at a LIMIT), or the build fails.
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workflow_scripts.data.demo.databases import DEV, TRAIN
from workflow_scripts.data.demo.families import FAMILIES, Question
from workflow_scripts.data.demo.spec import DatabaseSpec, GeneratedDatabase, TableSpec

TRAIN_DB_IDS: tuple[str, ...] = tuple(db.db_id for db in TRAIN)
DEV_DB_IDS: tuple[str, ...] = tuple(db.db_id for db in DEV)
SPLITS = ("train", "dev", "indomain")
INDOMAIN_FAMILIES_PER_DB = 12  # families of a training database whose first question goes to indomain.json
UNREFERENCED_PARENTS = 2  # parent rows no child references (questions about "no children" have answers)


def generate_rows(spec: DatabaseSpec, rng: random.Random) -> GeneratedDatabase:
    """The rows of every table of `spec`: keys 1..n, generated values, foreign keys into the parent's keys."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for table in spec.tables:
        columns: list[list[Any]] = []
        for col in table.columns:
            if col.role == "key":
                columns.append(list(range(1, table.rows + 1)))
            elif col.references is not None:
                parent = list(range(1, spec.table(col.references).rows + 1))
                unused = set(rng.sample(parent, UNREFERENCED_PARENTS))
                columns.append(
                    [rng.choice([p for p in parent if p not in unused]) for _ in range(table.rows)]
                )
            else:
                assert col.values is not None, f"{spec.db_id}.{table.name}.{col.name} has no generator"
                columns.append(col.values.draw(rng, table.rows))
        rows[table.name] = [tuple(r) for r in zip(*columns, strict=True)]
    return GeneratedDatabase(spec, rows)


def render_questions(db: GeneratedDatabase, seed: int) -> dict[str, list[Question]]:
    """Every family's candidate questions on `db`, by family (one generator per family and database)."""
    return {name: family(db, random.Random(f"{seed}/{db.db_id}/{name}")) for name, family in FAMILIES.items()}


def split_questions(
    candidates: dict[str, list[Question]], held_out: bool, rng: random.Random
) -> dict[str, list[Question]]:
    """Assign a database's questions to splits.

    A held-out database gives the first question of each family to dev. A training database gives the first
    question of `INDOMAIN_FAMILIES_PER_DB` randomly chosen families to indomain and the rest to train.
    """
    if held_out:
        return {"dev": [qs[0] for qs in candidates.values() if qs]}
    chosen = set(rng.sample(sorted(candidates), INDOMAIN_FAMILIES_PER_DB))
    out: dict[str, list[Question]] = {"train": [], "indomain": []}
    for name, qs in candidates.items():
        if name in chosen and len(qs) > 1:
            out["indomain"].append(qs[0])
            out["train"] += qs[1:]
        else:
            out["train"] += qs
    return out


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file and a rename, so a reader never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs should be readable like ordinary files
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_sql(table: TableSpec) -> str:
    """The CREATE TABLE statement of `table` (primary key first column, declared foreign keys)."""
    parts = [f"{c.name} {c.type}" for c in table.columns]
    parts.append(f"PRIMARY KEY ({table.key.name})")
    parts += [
        f"FOREIGN KEY ({c.name}) REFERENCES {c.references} ({c.references}_id)"
        for c in table.with_role("foreign_key")
    ]
    return f"CREATE TABLE {table.name} (\n  " + ",\n  ".join(parts) + "\n)"


def write_sqlite(db: GeneratedDatabase, questions: Sequence[Question], path: Path) -> None:
    """Create the SQLite file of `db` at `path` atomically, replacing any stale file.

    The gold queries are checked on the temp file first, so a database that fails them never appears.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = [path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")]
    for old in [*stale, *path.parent.glob(f".{path.name}.*.tmp")]:
        old.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)
        con = sqlite3.connect(tmp)
        try:
            con.execute("PRAGMA foreign_keys = ON")  # rows must satisfy the declared constraints
            for table in db.spec.tables:
                con.execute(create_sql(table))
                marks = ", ".join("?" * len(table.columns))
                con.executemany(f"INSERT INTO {table.name} VALUES ({marks})", db.rows[table.name])
            con.commit()
            check_gold(db.db_id, questions, con)
        finally:
            con.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_TOP_K = re.compile(r"ORDER BY (.+?)(?: DESC)? LIMIT (\d+)$")


def check_gold(db_id: str, questions: Sequence[Question], con: sqlite3.Connection) -> None:
    """Raise ValueError if a question repeats, or a gold query fails, returns no rows, counts zero, returns
    NULL or has a tie at its LIMIT cut-off (an ambiguous answer)."""
    dupes = [q for q, c in Counter(q.question for q in questions).items() if c > 1]
    if dupes:
        raise ValueError(f"{db_id}: duplicate questions {dupes}")
    for q in questions:
        try:
            rows = con.execute(q.query).fetchall()
        except sqlite3.Error as exc:
            raise ValueError(f"{db_id}: gold query fails: {q.query!r}: {exc}") from exc
        if not rows:
            raise ValueError(f"{db_id}: gold query returns no rows: {q.query!r} ({q.question!r})")
        if "GROUP BY" not in q.query and (rows[0][0] is None or (rows[0][0] == 0 and "count(*)" in q.query)):
            raise ValueError(f"{db_id}: gold query answers {rows[0][0]!r}: {q.query!r}")
        top_k = _TOP_K.search(q.query)
        if top_k:
            # Select the sort key and one row past the limit: equal keys there mean an ambiguous answer.
            key, k = top_k.group(1), int(top_k.group(2))
            head = q.query[: top_k.start()].replace("SELECT ", f"SELECT {key}, ", 1)
            probe = f"{head}{top_k.group(0).rsplit(' LIMIT ', 1)[0]} LIMIT {k + 1}"
            ranked = con.execute(probe).fetchall()
            if len(ranked) > k and ranked[k - 1][0] == ranked[k][0]:
                raise ValueError(f"{db_id}: tie at the LIMIT of {q.query!r}")


def tables_entry(spec: DatabaseSpec) -> dict[str, Any]:
    """The Spider tables.json record of `spec` (natural-language names from the spec)."""
    columns: list[list[Any]] = [[-1, "*"]]
    nl: list[list[Any]] = [[-1, "*"]]
    types = ["text"]
    index: dict[tuple[str, str], int] = {}
    for t_idx, table in enumerate(spec.tables):
        for col in table.columns:
            index[(table.name, col.name)] = len(columns)
            columns.append([t_idx, col.name])
            nl.append([t_idx, col.nl])
            types.append("text" if col.type == "TEXT" else "number")
    return {
        "db_id": spec.db_id,
        "table_names_original": [t.name for t in spec.tables],
        "table_names": [t.singular for t in spec.tables],
        "column_names_original": columns,
        "column_names": nl,
        "column_types": types,
        "primary_keys": [index[(t.name, t.key.name)] for t in spec.tables],
        "foreign_keys": [
            [index[(t.name, c.name)], index[(str(c.references), f"{c.references}_id")]]
            for t in spec.tables
            for c in t.with_role("foreign_key")
        ],
    }


FEATURE_PATTERNS: dict[str, str] = {
    "count": r"\bcount\(",
    "where": r"\bWHERE\b",
    "join": r"\bJOIN\b",
    "group_by": r"\bGROUP BY\b",
    "having": r"\bHAVING\b",
    "order_by": r"\bORDER BY\b",
    "nested": r"\(SELECT\b",
    "distinct": r"\bDISTINCT\b",
    "like": r"\bLIKE\b",
    "between": r"\bBETWEEN\b",
}


def feature_counts(records: Sequence[dict[str, str]]) -> dict[str, int]:
    """How many gold queries in `records` use each SQL feature of `FEATURE_PATTERNS`."""
    return {
        name: sum(1 for r in records if re.search(pattern, r["query"]))
        for name, pattern in FEATURE_PATTERNS.items()
    }


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def build_demo(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Write the demo databases, tables.json and train/dev/indomain question files under `out_dir`.

    Returns a summary: databases, question counts and questions per family of each split, SQL feature counts.
    """
    out_dir = Path(out_dir)
    records: dict[str, list[dict[str, str]]] = {split: [] for split in SPLITS}
    families: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    for spec in (*TRAIN, *DEV):
        # One generator per database (and family), so changing one leaves the others' data unchanged.
        db = generate_rows(spec, random.Random(f"{seed}/{spec.db_id}"))
        candidates = render_questions(db, seed)
        splits = split_questions(candidates, spec in DEV, random.Random(f"{seed}/{spec.db_id}/split"))
        write_sqlite(db, [q for qs in splits.values() for q in qs], out_dir / "database" / spec.db_id /
                     f"{spec.db_id}.sqlite")  # fmt: skip
        for split, qs in splits.items():
            # `family` lets the evaluation break EX down by question family (ingest keeps it as a column)
            records[split] += [
                {"db_id": spec.db_id, "question": q.question, "query": q.query, "family": q.family}
                for q in qs
            ]
            families[split].update(q.family for q in qs)
    for split in SPLITS:
        # Shuffled, so that the first N examples (`limit`) are a sample of every database and family.
        random.Random(f"{seed}/{split}").shuffle(records[split])
        atomic_write_text(out_dir / f"{split}.json", _dumps(records[split]))
    atomic_write_text(out_dir / "tables.json", _dumps([tables_entry(s) for s in (*TRAIN, *DEV)]))
    summary: dict[str, Any] = {"seed": seed}
    for split in SPLITS:
        summary[split] = {
            "databases": list(DEV_DB_IDS if split == "dev" else TRAIN_DB_IDS),
            "questions": len(records[split]),
            "families": dict(sorted(families[split].items())),
        }
    summary["features"] = feature_counts([r for split in SPLITS for r in records[split]])
    return summary
