"""Tests for the embedded demo benchmark (workflow_scripts.data.demo): declared databases, question
families, the split by database and the builder's checks."""

from __future__ import annotations

import json
import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from workflow_scripts.cli import data as data_cli
from workflow_scripts.data.demo import build as demo_build
from workflow_scripts.data.demo.build import DEV_DB_IDS, SPLITS, TRAIN_DB_IDS, build_demo, feature_counts
from workflow_scripts.data.demo.databases import DEV, TRAIN
from workflow_scripts.data.demo.families import FAMILIES, Question
from workflow_scripts.data.demo.spec import IntRange, Labels, RealRange


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
def records(demo: tuple[Path, dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    root, _ = demo
    return {split: _load(root, f"{split}.json") for split in SPLITS}


def test_files_exist_and_are_small(demo: tuple[Path, dict[str, Any]]) -> None:
    root, _ = demo
    for name in ("train.json", "dev.json", "indomain.json", "tables.json"):
        assert (root / name).is_file()
    for db_id in (*TRAIN_DB_IDS, *DEV_DB_IDS):
        assert _db_path(root, db_id).stat().st_size < 100_000
    assert not list(root.rglob("*.tmp")), "temp files left behind"


def test_sizes(demo: tuple[Path, dict[str, Any]], records: dict[str, list[dict[str, str]]]) -> None:
    _, summary = demo
    assert len(TRAIN_DB_IDS) == 8 and len(DEV_DB_IDS) == 4
    for split in SPLITS:
        assert summary[split]["questions"] == len(records[split])
    assert 200 <= len(records["train"]) <= 300
    assert len(records["dev"]) >= 60, "paired statistics need at least 60 evaluated examples"
    assert 60 <= len(records["indomain"]) <= 120


def test_split_by_database(records: dict[str, list[dict[str, str]]]) -> None:
    assert {r["db_id"] for r in records["train"]} == set(TRAIN_DB_IDS)
    assert {r["db_id"] for r in records["indomain"]} == set(TRAIN_DB_IDS)
    assert {r["db_id"] for r in records["dev"]} == set(DEV_DB_IDS)
    train_q = {(r["db_id"], r["question"]) for r in records["train"]}
    assert not train_q & {(r["db_id"], r["question"]) for r in records["indomain"]}, "in-domain repeats train"


def test_records_are_spider_format_and_unique(records: dict[str, list[dict[str, str]]]) -> None:
    everything = [r for split in SPLITS for r in records[split]]
    for r in everything:
        assert set(r) == {"db_id", "question", "query", "family"} and r["family"] in FAMILIES
        assert r["question"].strip() and r["query"].startswith("SELECT ")
    keys = [(r["db_id"], r["question"]) for r in everything]
    assert len(keys) == len(set(keys))


def test_every_gold_query_runs_and_is_not_empty(
    demo: tuple[Path, dict[str, Any]], records: dict[str, list[dict[str, str]]]
) -> None:
    root, _ = demo
    for r in (r for split in SPLITS for r in records[split]):
        con = sqlite3.connect(_db_path(root, r["db_id"]))
        try:
            rows = con.execute(r["query"]).fetchall()
        finally:
            con.close()
        assert rows and rows[0][0] is not None, r
        if r["query"].startswith("SELECT count(*) FROM") and "GROUP BY" not in r["query"]:
            assert rows[0][0] > 0, r


def test_families_cover_every_database(demo: tuple[Path, dict[str, Any]]) -> None:
    _, summary = demo
    assert len(FAMILIES) >= 16
    root = demo[0]
    dev = _load(root, "dev.json")
    for db_id in DEV_DB_IDS:
        assert sum(r["db_id"] == db_id for r in dev) == len(FAMILIES), db_id
    assert set(summary["dev"]["families"]) == set(FAMILIES)
    assert set(summary["train"]["families"]) == set(FAMILIES)
    for spec in (*TRAIN, *DEV):
        db = demo_build.generate_rows(spec, random.Random(f"0/{spec.db_id}"))
        rendered = demo_build.render_questions(db, seed=0)
        assert all(rendered[name] for name in FAMILIES), (
            spec.db_id,
            [n for n, q in rendered.items() if not q],
        )


def test_foreign_keys_declared_and_satisfied(demo: tuple[Path, dict[str, Any]]) -> None:
    root, _ = demo
    for entry in _load(root, "tables.json"):
        assert entry["foreign_keys"], entry["db_id"]
        con = sqlite3.connect(_db_path(root, entry["db_id"]))
        try:
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
        con = sqlite3.connect(_db_path(root, entry["db_id"]))
        try:
            tables = [
                r[0]
                for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")
            ]
            assert tables == entry["table_names_original"]
            expected = [[-1, "*"]] + [
                [t_idx, row[1]]
                for t_idx, t in enumerate(tables)
                for row in con.execute(f"PRAGMA table_info({t})")
            ]
            fks = [
                [expected.index([t_idx, fk[3]]), expected.index([tables.index(fk[2]), fk[4]])]
                for t_idx, t in enumerate(tables)
                for fk in con.execute(f"PRAGMA foreign_key_list({t})")
            ]
        finally:
            con.close()
        assert cols == expected
        assert sorted(entry["foreign_keys"]) == sorted(fks)


def test_feature_mix(records: dict[str, list[dict[str, str]]]) -> None:
    counts = feature_counts(records["train"])
    for feature in ("count", "where", "join", "group_by", "having", "order_by", "nested", "distinct", "like",
                    "between"):  # fmt: skip
        assert counts[feature] >= 8, (feature, counts[feature])
    joins = [r["query"] for r in records["train"] if " JOIN " in r["query"]]
    assert all(" AS T1 " in q and " AS T2 " in q for q in joins)


def test_dev_mix_matches_train_mix(demo: tuple[Path, dict[str, Any]]) -> None:
    """Held-out databases are asked the same families as the training ones (what SFT can transfer)."""
    _, summary = demo
    train, dev = Counter(summary["train"]["families"]), Counter(summary["dev"]["families"])
    assert set(train) == set(dev)


def test_deterministic(tmp_path: Path, demo: tuple[Path, dict[str, Any]]) -> None:
    root, summary = demo
    again = tmp_path / "again"
    assert build_demo(again, seed=0) == summary
    for name in ("train.json", "dev.json", "indomain.json", "tables.json"):
        assert (again / name).read_bytes() == (root / name).read_bytes()
    for db_id in (*TRAIN_DB_IDS, *DEV_DB_IDS):
        assert _dump(_db_path(again, db_id)) == _dump(_db_path(root, db_id))


def test_other_seeds_build_and_differ(tmp_path: Path, demo: tuple[Path, dict[str, Any]]) -> None:
    root, _ = demo
    for seed in (1, 2, 3):
        build_demo(tmp_path / str(seed), seed=seed)  # gold checks run inside build_demo
    assert _dump(_db_path(tmp_path / "1", "school")) != _dump(_db_path(root, "school"))
    assert _load(tmp_path / "1", "dev.json") != _load(root, "dev.json")


def test_value_generators_are_distinct_where_declared() -> None:
    rng = random.Random(0)
    assert len(set(IntRange(1, 50).draw(rng, 50))) == 50
    assert len(set(RealRange(1.0, 5.0, 1).draw(rng, 41))) == 41
    assert len(set(Labels(("a", "b"), ("c", "d", "e")).draw(rng, 6))) == 6
    with pytest.raises(ValueError):
        IntRange(1, 10).draw(rng, 11)


def test_rebuild_replaces_stale_files(tmp_path: Path) -> None:
    path = _db_path(tmp_path, "school")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database")
    Path(f"{path}-journal").write_bytes(b"stale journal")
    (path.parent / f".{path.name}.abc123.tmp").write_bytes(b"orphan")
    build_demo(tmp_path, seed=0)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


@pytest.mark.parametrize(
    "question",
    [
        Question("x", "Which students are older than 99?", "SELECT name FROM student WHERE age > 99"),
        Question("x", "How many students are older than 99?", "SELECT count(*) FROM student WHERE age > 99"),
        Question("x", "What is the top age?", "SELECT max(age) FROM student WHERE age > 99"),
        Question("x", "Which major is first?", "SELECT major FROM student ORDER BY major LIMIT 1"),
        Question("x", "Whose shoe size?", "SELECT shoe_size FROM student"),
        Question("x", "How many students are there?", "SELECT count(*) FROM student"),  # a repeated question
    ],
)
def test_bad_gold_query_rejected_before_the_database_appears(tmp_path: Path, question: Question) -> None:
    spec = TRAIN[0]
    db = demo_build.generate_rows(spec, random.Random("0/school"))
    questions = [q for qs in demo_build.render_questions(db, 0).values() for q in qs]
    path = _db_path(tmp_path, "school")
    with pytest.raises(ValueError):
        demo_build.write_sqlite(db, [*questions, question], path)
    assert list(path.parent.iterdir()) == []


def test_interrupted_json_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "train.json"
    target.write_text("old\n")

    def fail(src: str, dst: str) -> None:
        raise OSError("interrupted")

    monkeypatch.setattr(demo_build.os, "replace", fail)
    with pytest.raises(OSError):
        demo_build.atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train.json"]


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_cli.main(["demo", "--out", str(tmp_path), "--seed", "0"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["dev"]["databases"] == list(DEV_DB_IDS)
    assert (tmp_path / "indomain.json").is_file()
