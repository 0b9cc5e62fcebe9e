"""Repair feedback built from real sandbox results on a real SQLite database."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from workflow_scripts.feedback import GoldShape, alias_bindings, feedback_text, needs_repair
from workflow_scripts.ingest import read_schema
from workflow_scripts.matching import verdict
from workflow_scripts.retrieval import tables_from_schema
from workflow_scripts.sandbox import Sandbox

GOLD_SQL = "SELECT name FROM singer WHERE country = 'Peru' ORDER BY age"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from tests.conftest import make_concert_db

    db = make_concert_db(tmp_path_factory.mktemp("fb") / "concert.sqlite")
    tables = tables_from_schema(read_schema(db, "concert"), "concert")
    with Sandbox(workers=1, timeout_s=2.0) as sandbox:
        gold = sandbox.execute(db, GOLD_SQL)
        yield db, tables, sandbox, gold


def feedback(env, sql: str, mode: str = "execution", detail: str = "column", shown=None) -> tuple[str, str]:
    db, tables, sandbox, gold = env
    result = sandbox.execute(db, sql)
    v = verdict(gold, result, order_matters=True)
    text = feedback_text(
        sql,
        result,
        mode=mode,
        detail=detail,
        shown=shown or tables,
        all_tables=tables,
        gold=GoldShape(len(gold.rows), len(gold.columns)),
    )
    return text, v


def assert_no_gold(text: str, env) -> None:
    _, _, _, gold = env
    assert GOLD_SQL not in text and "Peru" not in text
    for (name,) in gold.rows:
        assert repr(name) not in text


def test_basic_feedback_is_the_sqlite_error(env):
    text, v = feedback(env, "SELECT nme FROM singer", detail="basic")
    assert v == "no_such_column"
    assert "no such column: nme" in text and "Columns of the schema" not in text
    assert text.endswith("Write the corrected SQL query.")


def test_column_feedback_names_alias_binding_and_owning_table(env):
    db, tables, *_ = env
    singer_only = [t for t in tables if t.name == "singer"]
    text, _ = feedback(
        env,
        "SELECT T1.year FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id",
        shown=singer_only,
    )
    assert "`T1.year` is not a valid column." in text
    assert "`T1` is bound to table singer." in text
    assert "Column `year` belongs to: concert." in text
    assert "- singer(singer_id, name, country, age)" in text
    assert "- concert(" not in text  # only the shown schema is listed
    assert_no_gold(text, env)


def test_unknown_column_gets_similar_names(env):
    text, _ = feedback(env, "SELECT nmae FROM singer")
    assert "No table has a column `nmae`" in text and "singer.name" in text


def test_ambiguous_column_suggests_qualified_names(env):
    text, v = feedback(
        env, "SELECT singer_id FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id"
    )
    assert v == "ambiguous_column"
    assert "T1.singer_id" in text and "T2.singer_id" in text


def test_no_such_table_lists_tables(env):
    text, v = feedback(env, "SELECT name FROM singers")
    assert v == "no_such_table" and "Table `singers` does not exist" in text and "singer, concert" in text


def test_execution_mode_never_says_whether_the_result_is_right(env):
    text, v = feedback(env, "SELECT name FROM singer WHERE age > 30", mode="execution")
    assert v in ("wrong_result", "wrong_row_count")
    assert "expected" not in text
    text, _ = feedback(env, "SELECT name FROM singer WHERE age > 1000", mode="execution")
    assert "returned no rows" in text and "expected" not in text


def test_result_status_mode_reports_the_mismatch_without_gold_values(env):
    text, v = feedback(env, "SELECT name, age FROM singer WHERE country = 'France'", mode="result_status")
    assert v == "wrong_row_count"
    assert "does not match the expected answer" in text
    _, _, _, gold = env
    assert f"The expected answer has {len(gold.rows)} row(s)." in text
    assert "The expected answer has 1 column(s)." in text
    assert "First rows of your result: ('Singer 3', 23); ('Singer 6', 26)" in text
    assert_no_gold(text, env)


def test_minimal_adds_the_minimal_sql_instruction(env):
    text, _ = feedback(env, "SELECT nme FROM singer", detail="minimal")
    assert "Prefer the minimal SQL" in text and "Columns of the schema" in text


def test_empty_answer_asks_for_a_select(env):
    text, v = feedback(env, "")
    assert v == "empty_query" and "No SQL query was found" in text


@pytest.mark.parametrize(
    ("sql", "mode", "repair"),
    [
        ("SELECT nme FROM singer", "execution", True),
        ("SELECT name FROM singer WHERE age > 1000", "execution", True),
        ("SELECT name FROM singer", "execution", False),  # wrong, but an executor cannot tell
        ("SELECT name FROM singer", "result_status", True),
        (GOLD_SQL, "result_status", False),
    ],
)
def test_needs_repair_follows_what_the_verifier_sees(env, sql, mode, repair):
    db, _, sandbox, gold = env
    result = sandbox.execute(db, sql)
    assert needs_repair(result, verdict(gold, result, order_matters=True), mode) is repair


def test_alias_bindings():
    assert alias_bindings("SELECT * FROM a AS T1 JOIN b AS T2 ON T1.x = T2.x") == {"T1": "a", "T2": "b"}
    assert alias_bindings("SELECT * FROM a WHERE x IN (SELECT y FROM b)") == {"a": "a", "b": "b"}
    assert alias_bindings("SELEC nonsense (((") == {}


def test_schema_frame_has_what_feedback_needs(tmp_path: Path):
    from tests.conftest import make_concert_db

    db = make_concert_db(tmp_path / "c.sqlite")
    schema = read_schema(db, "c")
    assert isinstance(schema, pd.DataFrame)
    assert [t.name for t in tables_from_schema(schema, "c")] == ["singer", "concert"]
