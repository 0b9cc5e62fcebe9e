"""Tests for the embedded demo benchmark (workflow_scripts.data.demo)."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from workflow_scripts.cli import data as data_cli
from workflow_scripts.data.demo import builder as demo_data
from workflow_scripts.data.demo.builder import DEV_DB_IDS, TRAIN_DB_IDS, build_demo, feature_counts


def _db_path(root: Path, db_id: str) -> Path:
    return root / "database" / db_id / f"{db_id}.sqlite"


def _load(root: Path, name: str) -> Any:
    return json.loads((root / name).read_text(encoding="utf-8"))


def _dump(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("demo")
    return root, build_demo(root, seed=0)


@pytest.fixture(scope="module")
def records(demo: tuple[Path, dict[str, Any]]) -> list[dict[str, str]]:
    root, _ = demo
    return _load(root, "train.json") + _load(root, "dev.json")


def test_files_exist_and_are_small(demo: tuple[Path, dict[str, Any]]) -> None:
    root, _ = demo
    for name in ("train.json", "dev.json", "tables.json"):
        assert (root / name).is_file()
    for db_id in (*TRAIN_DB_IDS, *DEV_DB_IDS):
        path = _db_path(root, db_id)
        assert path.is_file()
        assert path.stat().st_size < 100_000
    assert not list(root.rglob("*.tmp")), "temp files left behind"


def test_summary(demo: tuple[Path, dict[str, Any]]) -> None:
    root, summary = demo
    assert summary["train"]["databases"] == list(TRAIN_DB_IDS)
    assert summary["dev"]["databases"] == list(DEV_DB_IDS)
    assert summary["train"]["questions"] == len(_load(root, "train.json"))
    assert summary["dev"]["questions"] == len(_load(root, "dev.json"))
    assert 60 <= summary["train"]["questions"] <= 80
    assert 30 <= summary["dev"]["questions"] <= 40


def test_split_by_database(demo: tuple[Path, dict[str, Any]]) -> None:
    root, _ = demo
    train_ids = {r["db_id"] for r in _load(root, "train.json")}
    dev_ids = {r["db_id"] for r in _load(root, "dev.json")}
    assert train_ids == set(TRAIN_DB_IDS)
    assert dev_ids == set(DEV_DB_IDS)
    assert not train_ids & dev_ids


def test_records_are_spider_format_and_unique(records: list[dict[str, str]]) -> None:
    for r in records:
        assert set(r) == {"db_id", "question", "query"}
        assert r["question"].strip() and r["query"].startswith("SELECT ")
    keys = [(r["db_id"], r["question"]) for r in records]
    assert len(keys) == len(set(keys))


def test_gold_queries_return_rows(demo: tuple[Path, dict[str, Any]], records: list[dict[str, str]]) -> None:
    root, _ = demo
    for r in records:
        con = sqlite3.connect(_db_path(root, r["db_id"]))
        try:
            rows = con.execute(r["query"]).fetchall()
        finally:
            con.close()
        assert rows, r
        if r["query"].startswith("SELECT count(*) FROM") and "GROUP BY" not in r["query"]:
            assert rows[0][0] > 0, r


def test_foreign_keys_declared_and_satisfied(demo: tuple[Path, dict[str, Any]]) -> None:
    root, _ = demo
    for entry in _load(root, "tables.json"):
        cols = entry["column_names_original"]
        child_tables = {entry["table_names_original"][cols[c][0]] for c, _ in entry["foreign_keys"]}
        assert child_tables, entry["db_id"]
        con = sqlite3.connect(_db_path(root, entry["db_id"]))
        try:
            for table in child_tables:
                assert con.execute(f"PRAGMA foreign_key_list({table})").fetchall(), table
            assert con.execute("PRAGMA foreign_key_check").fetchall() == []
            for table in entry["table_names_original"]:
                n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                assert 10 <= n <= 60, (entry["db_id"], table, n)
        finally:
            con.close()


def test_tables_json_matches_sqlite(demo: tuple[Path, dict[str, Any]]) -> None:
    root, _ = demo
    entries = _load(root, "tables.json")
    assert [e["db_id"] for e in entries] == [*TRAIN_DB_IDS, *DEV_DB_IDS]
    for entry in entries:
        cols = entry["column_names_original"]
        assert cols[0] == [-1, "*"]
        assert len(entry["column_names"]) == len(cols) == len(entry["column_types"])
        assert len(entry["table_names"]) == len(entry["table_names_original"])
        con = sqlite3.connect(_db_path(root, entry["db_id"]))
        try:
            tables = [
                row[0]
                for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")
            ]
            assert tables == entry["table_names_original"]
            expected_cols: list[list[Any]] = [[-1, "*"]]
            expected_types = ["text"]
            expected_pks: list[int] = []
            expected_fks: list[list[int]] = []
            for t_idx, table in enumerate(tables):
                info = con.execute(f"PRAGMA table_info({table})").fetchall()
                for _, name, typ, _, _, pk in info:
                    if pk:
                        expected_pks.append(len(expected_cols))
                    expected_cols.append([t_idx, name])
                    expected_types.append("text" if typ == "TEXT" else "number")
            for t_idx, table in enumerate(tables):
                for fk in con.execute(f"PRAGMA foreign_key_list({table})").fetchall():
                    ref_table, child, parent = fk[2], fk[3], fk[4]
                    expected_fks.append(
                        [
                            expected_cols.index([t_idx, child]),
                            expected_cols.index([tables.index(ref_table), parent]),
                        ]
                    )
        finally:
            con.close()
        assert cols == expected_cols
        assert entry["column_types"] == expected_types
        assert sorted(entry["primary_keys"]) == sorted(expected_pks)
        assert sorted(entry["foreign_keys"]) == sorted(expected_fks)


def test_feature_mix(records: list[dict[str, str]]) -> None:
    counts = feature_counts(records)
    minimums = {
        "count": 15,
        "where": 25,
        "join": 15,
        "three_table_join": 5,
        "group_by": 15,
        "having": 5,
        "order_by": 10,
        "nested": 8,
        "distinct": 6,
    }
    for feature, minimum in minimums.items():
        assert counts[feature] >= minimum, (feature, counts[feature])
    joins = [r["query"] for r in records if " JOIN " in r["query"]]
    assert all(" AS T1 " in q and " AS T2 " in q for q in joins)
    assert sum("NOT IN (SELECT" in r["query"] for r in records) >= 4
    assert sum("> (SELECT avg(" in r["query"] for r in records) >= 4
    # Many easy questions: a single table and no nesting, grouping or joins.
    easy = [r for r in records if not any(k in r["query"] for k in (" JOIN ", "GROUP BY", "(SELECT"))]
    assert len(easy) >= len(records) // 3


def test_deterministic(tmp_path: Path, demo: tuple[Path, dict[str, Any]]) -> None:
    root, summary = demo
    again = tmp_path / "again"
    assert build_demo(again, seed=0) == summary
    for name in ("train.json", "dev.json", "tables.json"):
        assert (again / name).read_bytes() == (root / name).read_bytes()
    for db_id in (*TRAIN_DB_IDS, *DEV_DB_IDS):
        assert _dump(_db_path(again, db_id)) == _dump(_db_path(root, db_id))


def test_other_seeds_build_and_differ(tmp_path: Path, demo: tuple[Path, dict[str, Any]]) -> None:
    root, _ = demo
    for seed in (1, 2, 3):
        build_demo(tmp_path / str(seed), seed=seed)  # gold checks run inside build_demo
    assert _dump(_db_path(tmp_path / "1", "school")) != _dump(_db_path(root, "school"))


def test_rebuild_replaces_stale_files(tmp_path: Path) -> None:
    path = _db_path(tmp_path, "school")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database")
    Path(f"{path}-journal").write_bytes(b"stale journal")
    (path.parent / f".{path.name}.abc123.tmp").write_bytes(b"orphan")
    build_demo(tmp_path, seed=0)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    con = sqlite3.connect(path)
    try:
        assert con.execute("SELECT count(*) FROM student").fetchone()[0] > 0
    finally:
        con.close()


@pytest.mark.parametrize(
    "question",
    [
        ("Which students are older than 99?", "SELECT first_name FROM student WHERE age > 99"),
        ("How many students are older than 99?", "SELECT count(*) FROM student WHERE age > 99"),
        ("Which credit value is most common?", "SELECT credits FROM course ORDER BY credits LIMIT 1"),
        ("How many students are there?", "SELECT count(*) FROM student"),  # a repeated question
    ],
)
def test_bad_gold_query_rejected_before_the_database_appears(
    tmp_path: Path, question: tuple[str, str]
) -> None:
    db = demo_data.DOMAINS["school"](random.Random("0/school"))
    db.questions.append(question)
    path = _db_path(tmp_path, "school")
    with pytest.raises(ValueError):
        demo_data._write_sqlite(db, path)
    assert list(path.parent.iterdir()) == []


def test_interrupted_json_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "train.json"
    target.write_text("old\n")

    def fail(src: str, dst: str) -> None:
        raise OSError("interrupted")

    monkeypatch.setattr(demo_data.os, "replace", fail)
    with pytest.raises(OSError):
        demo_data._atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train.json"]


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_cli.main(["demo", "--out", str(tmp_path), "--seed", "0"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["dev"]["databases"] == list(DEV_DB_IDS)
    assert (tmp_path / "tables.json").is_file()
