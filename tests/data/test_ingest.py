"""Ingestion of data sets: formats, field names, database resolution and every kind of bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import write_json
from workflow_scripts.cli.data import ingest
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.row_codec import decode_rows
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.data.ingest import DatasetSpec, build_schema, normalize_records, read_records

SANDBOX = {"workers": 1, "timeout_s": 2.0}


def spec(path: Path, root: Path | None, **kw) -> DatasetSpec:
    return DatasetSpec(name="t", path=path, db_root=root, **kw)


def test_json_array_and_jsonl_give_the_same_examples(tmp_path, concert_root):
    records = [
        {"db_id": "concert", "question": "How many singers?", "query": "SELECT count(*) FROM singer"},
        {"db_id": "flat", "utterance": "Names?", "gold_sql": "SELECT name FROM singer"},
    ]
    as_json = write_json(tmp_path / "a.json", records)
    as_jsonl = tmp_path / "a.jsonl"
    as_jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    a, _ = normalize_records(read_records(as_json), spec(as_json, concert_root), "error")
    b, _ = normalize_records(read_records(as_jsonl), spec(as_jsonl, concert_root), "error")
    pd.testing.assert_frame_equal(a, b)
    assert list(a["question"]) == ["How many singers?", "Names?"]
    assert list(a["gold_sql"]) == ["SELECT count(*) FROM singer", "SELECT name FROM singer"]
    # Both layouts of db_root are found.
    assert a["db_path"][0].endswith("concert/concert.sqlite") and a["db_path"][1].endswith("flat.sqlite")
    assert list(a["id"]) == ["t-000000", "t-000001"]


def test_spider_record_with_parsed_sql_dict_uses_query_text(tmp_path, concert_root):
    rec = {"db_id": "concert", "question": "q", "query": "SELECT 1", "sql": {"select": [False, []]}}
    path = write_json(tmp_path / "s.json", [rec])
    examples, _ = normalize_records(read_records(path), spec(path, concert_root), "error")
    assert examples["gold_sql"][0] == "SELECT 1"


def test_db_path_field_is_relative_to_the_data_file(tmp_path, concert_root):
    path = write_json(tmp_path / "p.json", [{"nl": "q", "sql": "SELECT 1", "sqlite_path": "db/flat.sqlite"}])
    examples, _ = normalize_records(read_records(path), spec(path, None), "error")
    assert Path(examples["db_path"][0]) == tmp_path / "db" / "flat.sqlite"
    assert examples["db_id"][0] == "flat"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("[]", "holds no examples"),
        ('[{"question": "q", "query": "SELECT 1", "db_id": "concert"},]', "malformed JSON at line 1"),
        (
            '{"question": "q", "query": "SELECT 1", "db_id": "concert"}\n{"question": oops}\n',
            "malformed JSON on line 2",
        ),
        ('[{"query": "SELECT 1", "db_id": "concert"}]', "no question field"),
        ('[{"question": "q", "db_id": "concert"}]', "no gold SQL field"),
        ('[{"question": "q", "query": "SELECT 1"}]', "no database"),
        ('[{"question": "q", "query": "SELECT 1", "db_id": "nope"}]', "db_id 'nope' not found"),
        (
            '[{"id": 7, "question": "a", "query": "SELECT 1", "db_id": "concert"},'
            ' {"id": 7, "question": "b", "query": "SELECT 2", "db_id": "concert"}]',
            "duplicate id '7'",
        ),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, concert_root, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as err:
        normalize_records(read_records(path), spec(path, concert_root), "error")
    assert str(path) in str(err.value) and "Fix:" in str(err.value)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_records(tmp_path / "absent.json")


def test_missing_db_skip_policy_counts_skipped(tmp_path, concert_root):
    path = write_json(
        tmp_path / "d.json",
        [
            {"db_id": "concert", "question": "a", "query": "SELECT 1"},
            {"db_id": "baseball_1", "question": "b", "query": "SELECT 2"},
        ],
    )
    examples, skipped = normalize_records(read_records(path), spec(path, concert_root), "skip")
    assert list(examples["db_id"]) == ["concert"]
    assert list(skipped["db_id"]) == ["baseball_1"] and list(skipped["reason"]) == ["missing_db"]


def test_schema_is_read_from_sqlite_with_keys(tmp_path, concert_root):
    path = write_json(tmp_path / "d.json", [{"db_id": "concert", "question": "a", "query": "SELECT 1"}])
    examples, _ = normalize_records(read_records(path), spec(path, concert_root), "error")
    schema = build_schema(examples)
    concert = schema[schema["table"] == "concert"].set_index("column")
    assert list(concert.index) == ["concert_id", "singer_id", "year", "venue"]
    assert concert.loc["concert_id", "is_primary_key"]
    assert (concert.loc["singer_id", "fk_table"], concert.loc["singer_id", "fk_column"]) == (
        "singer",
        "singer_id",
    )
    assert concert.loc["year", "type"] == "INTEGER"


def test_not_a_sqlite_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "db" / "broken" / "broken.sqlite"
    bad.parent.mkdir(parents=True)
    bad.write_text("this is not a database")
    path = write_json(tmp_path / "d.json", [{"db_id": "broken", "question": "a", "query": "SELECT 1"}])
    examples, _ = normalize_records(read_records(path), spec(path, tmp_path / "db"), "error")
    with pytest.raises(UserError, match="cannot be read as SQLite"):
        build_schema(examples)


def test_ingest_excludes_failing_gold_and_caches_results(tmp_path, concert_root):
    db = concert_root / "concert" / "concert.sqlite"
    before = db.read_bytes()
    path = write_json(
        tmp_path / "d.json",
        [
            {"db_id": "concert", "question": "a", "query": "SELECT count(*) FROM singer"},
            {"db_id": "concert", "question": "b", "query": "SELECT nme FROM singer"},
            {
                "db_id": "concert",
                "question": "c",
                "query": "SELECT DISTINCT country FROM singer ORDER BY country",
            },
            {"db_id": "gone", "question": "d", "query": "SELECT 1"},
        ],
    )
    out = tmp_path / "out"
    summary = ingest(
        spec(path, concert_root), out, missing_db="skip", sandbox_cfg=SANDBOX, match=MatchSettings()
    )
    assert summary["records"] == 4 and summary["usable"] == 2
    assert summary["gold_failed"] == 1 and summary["skipped_missing_db"] == 1
    examples = pd.read_parquet(out / "examples.parquet")
    gold = pd.read_parquet(out / "gold.parquet").set_index("id")
    excluded = pd.read_parquet(out / "excluded.parquet")
    assert list(examples["position"]) == [0, 2]
    assert list(excluded["reason"]) == ["gold_error", "missing_db"]
    assert excluded["error_class"][0] == "no_such_column"
    assert decode_rows(gold.loc["t-000000", "rows"]) == [(20,)]
    # DISTINCT is removed before execution (Spider's rule), so all 20 rows come back.
    assert gold.loc["t-000002", "n_rows"] == 20 and gold.loc["t-000002", "order_matters"]
    assert db.read_bytes() == before


def test_ingest_keep_distinct_executes_distinct(tmp_path, concert_root):
    path = write_json(
        tmp_path / "d.json",
        [{"db_id": "concert", "question": "c", "query": "SELECT DISTINCT country FROM singer"}],
    )
    ingest(
        spec(path, concert_root),
        tmp_path / "o",
        missing_db="error",
        sandbox_cfg=SANDBOX,
        match=MatchSettings(keep_distinct=True),
    )
    assert pd.read_parquet(tmp_path / "o" / "gold.parquet")["n_rows"][0] == 3


def test_ingest_writes_nothing_on_bad_input(tmp_path, concert_root):
    path = write_json(tmp_path / "d.json", [{"db_id": "gone", "question": "a", "query": "SELECT 1"}])
    out = tmp_path / "out"
    with pytest.raises(UserError):
        ingest(spec(path, concert_root), out, missing_db="error", sandbox_cfg=SANDBOX, match=MatchSettings())
    assert not out.exists() or not any(out.iterdir())


def test_database_bytes_unchanged_by_schema_reading(concert_root):
    db = concert_root / "flat.sqlite"
    before = db.read_bytes()
    conn = sqlite3.connect(db)
    conn.close()
    build_schema(pd.DataFrame({"db_id": ["flat"], "db_path": [str(db)]}))
    assert db.read_bytes() == before


def test_artifacts_are_written_atomically_with_usual_permissions(tmp_path):
    from workflow_scripts.core.artifacts import atomic_path, write_json

    write_json({"a": 1}, tmp_path / "x.json")
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~_umask()
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "y.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
