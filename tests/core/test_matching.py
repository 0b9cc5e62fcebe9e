"""Spider's official execution match: DISTINCT removal, result comparison and verdicts."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflow_scripts.core.exec_result import ExecResult
from workflow_scripts.core.matching import (
    VERDICTS,
    order_matters,
    postprocess,
    prepare_sql,
    remove_distinct,
    results_match,
    verdict,
)
from workflow_scripts.core.sandbox import Sandbox

# --- DISTINCT removal and the other official rewrites ---------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT DISTINCT name FROM t", "SELECT  name FROM t"),
        ("select distinct(name) from t", "select (name) from t"),
        ("SELECT count(DISTINCT x), COUNT(  Distinct y) FROM t", "SELECT count( x), COUNT(   y) FROM t"),
        ("SELECT a FROM t WHERE b = 'distinct' AND c = 'DISTINCT x'", None),
        ('SELECT "distinct", [distinct], `distinct` FROM t', None),
        ("SELECT a FROM t -- distinct values\nWHERE 1 /* DISTINCT */", None),
        ("SELECT distinctive, indistinct FROM t", None),
        ("SELECT DISTINCT 'é✓' , DISTINCT x", "SELECT  'é✓' ,  x"),
        # untokenizable (unterminated string): regex fallback, still sparing the literal
        ("SELECT DISTINCT a FROM t WHERE b = 'distinct", "SELECT  a FROM t WHERE b = 'distinct"),
    ],
)
def test_remove_distinct(sql: str, expected: str | None) -> None:
    assert remove_distinct(sql) == (sql if expected is None else expected)


def test_prepare_sql_applies_the_official_rewrites() -> None:
    assert postprocess("a > = 1 AND b < = 2 AND c ! = 3") == "a >= 1 AND b <= 2 AND c != 3"
    sql = "SELECT DISTINCT a FROM t WHERE y > = YEAR(CURDATE()) - 1"
    assert prepare_sql(sql) == "SELECT  a FROM t WHERE y >= 2020- 1"
    assert prepare_sql(sql, keep_distinct=True) == "SELECT DISTINCT a FROM t WHERE y >= 2020- 1"


@pytest.mark.parametrize(
    ("gold", "expected"),
    [
        ("SELECT a FROM t ORDER BY a", True),
        ("select a from t order by a desc limit 1", True),
        ("SELECT a FROM t", False),
        ("SELECT a FROM t ORDER  BY a", False),  # the official rule is a plain substring test
        ("SELECT 'order by' FROM t", True),
    ],
)
def test_order_matters(gold: str, expected: bool) -> None:
    assert order_matters(gold) is expected


# --- results_match -----------------------------------------------------------------------------


def test_permuted_columns_match() -> None:
    gold = [(1, "a", 2.5), (2, "b", 3.5)]
    pred = [("a", 2.5, 1), ("b", 3.5, 2)]
    assert results_match(gold, pred, order_matters=False)
    assert results_match(gold, pred, order_matters=True)


def test_wide_results_use_the_constrained_permutation_search() -> None:
    gold = [tuple(r * 10 + c for c in range(7)) for r in range(30)]
    perm = [3, 6, 0, 5, 1, 4, 2]
    pred = [tuple(row[i] for i in perm) for row in gold]
    assert results_match(gold, pred, order_matters=True)
    broken = [*pred[:-1], (*pred[-1][:-1], -1)]
    assert not results_match(gold, broken, order_matters=False)


def test_rows_must_agree_on_one_column_permutation() -> None:
    # each row matches after sorting its values, but no single column mapping fits both rows
    assert not results_match([(1, 2), (3, 4)], [(2, 1), (3, 4)], order_matters=False)


def test_order_only_matters_when_asked() -> None:
    gold = [(1,), (2,), (3,)]
    pred = [(3,), (1,), (2,)]
    assert results_match(gold, pred, order_matters=False)
    assert not results_match(gold, pred, order_matters=True)


def test_bag_semantics_counts_duplicates() -> None:
    assert not results_match([(1,), (1,), (2,)], [(1,), (2,), (2,)], order_matters=False)
    assert results_match([(1,), (2,), (1,)], [(1,), (1,), (2,)], order_matters=False)
    assert not results_match([(1,), (1,)], [(1,)], order_matters=False)


def test_empty_and_size_mismatches() -> None:
    assert results_match([], [], order_matters=False)
    assert not results_match([], [(1,)], order_matters=False)
    assert not results_match([(1,)], [], order_matters=False)
    assert not results_match([(1,), (2,)], [(1,)], order_matters=False)
    assert not results_match([(1, 2)], [(1,)], order_matters=False)
    assert not results_match([(1,)], [(1, 1)], order_matters=False)


def test_values_compare_like_python() -> None:
    # as upstream: 1 == 1.0, but text and numbers differ
    assert results_match([(1,)], [(1.0,)], order_matters=False)
    assert not results_match([(1,)], [("1",)], order_matters=False)
    assert results_match([(None, b"\x00")], [(b"\x00", None)], order_matters=False)


values = st.one_of(st.none(), st.integers(-3, 3), st.sampled_from(["a", "b", "c"]), st.floats(-2, 2))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 5).flatmap(lambda k: st.lists(st.tuples(*[values] * k), min_size=1, max_size=12)),
    st.randoms(use_true_random=False),
)
def test_any_row_shuffle_and_column_permutation_matches(gold: list[tuple], rnd: random.Random) -> None:
    perm = list(range(len(gold[0])))
    rnd.shuffle(perm)
    same_order = [tuple(row[i] for i in perm) for row in gold]
    shuffled = same_order[:]
    rnd.shuffle(shuffled)
    assert results_match(gold, same_order, order_matters=True)
    assert results_match(gold, shuffled, order_matters=False)
    assert not results_match(gold, [*shuffled, shuffled[0]], order_matters=False)


# --- verdicts -----------------------------------------------------------------------------------


def ok(rows: list[tuple], truncated: bool = False) -> ExecResult:
    return ExecResult("ok", None, None, ("c",) * (len(rows[0]) if rows else 1), rows, truncated, 0.0)


def failed(cls: str) -> ExecResult:
    return ExecResult("timeout" if cls == "timeout" else "error", cls, "boom", (), [], False, 0.0)


@pytest.mark.parametrize(
    ("gold", "pred", "ordered", "expected"),
    [
        (ok([(1,), (2,)]), ok([(2,), (1,)]), False, "correct"),
        (ok([(1,), (2,)]), ok([(2,), (1,)]), True, "wrong_result"),
        (ok([]), ok([]), False, "correct"),
        (ok([(1,)]), ok([]), False, "empty_result"),
        (ok([]), ok([(1,)]), False, "wrong_row_count"),
        (ok([(1,), (2,)]), ok([(1,)]), False, "wrong_row_count"),
        (ok([(1,)]), ok([(2,)]), False, "wrong_result"),
        (ok([(1,)]), ok([(1, 2)]), False, "wrong_result"),
        (ok([(1,)]), failed("syntax_error"), False, "syntax_error"),
        (ok([(1,)]), failed("no_such_column"), False, "no_such_column"),
        (ok([(1,)]), failed("timeout"), False, "timeout"),
        (ok([(1,)]), ExecResult("timeout", None, None, (), [], False, 0.0), False, "timeout"),
        (ok([(1,)]), ExecResult("error", None, None, (), [], False, 0.0), False, "other_execution_error"),
        (failed("syntax_error"), ok([(1,)]), False, "gold_error"),
        (ok([(1,)] * 3, truncated=True), ok([(1,)] * 3, truncated=True), False, "truncated"),
        (ok([(1,)] * 3, truncated=True), ok([(1,)] * 3), False, "wrong_row_count"),
        (ok([(1,)] * 2), ok([(1,)] * 3, truncated=True), False, "wrong_row_count"),
        (ok([(1,)] * 3, truncated=True), ok([]), False, "empty_result"),
    ],
)
def test_verdict(gold: ExecResult, pred: ExecResult, ordered: bool, expected: str) -> None:
    assert verdict(gold, pred, order_matters=ordered) == expected
    assert expected in VERDICTS


def test_verdicts_cover_the_error_classes() -> None:
    assert {"correct", "empty_result", "wrong_row_count", "wrong_result", "timeout", "refused_write"} <= set(
        VERDICTS
    )
    assert len(VERDICTS) == len(set(VERDICTS))


def test_end_to_end_on_a_real_database(tmp_path: Path) -> None:
    db = tmp_path / "pets.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE owner (owner_id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE pet (pet_id INTEGER PRIMARY KEY, owner_id INTEGER REFERENCES owner(owner_id),
                          kind TEXT, age INTEGER);
        """
    )
    conn.executemany("INSERT INTO owner VALUES (?, ?)", [(i, f"Owner {i}") for i in range(1, 51)])
    conn.executemany(
        "INSERT INTO pet VALUES (?, ?, ?, ?)",
        [(i, 1 + i % 50, ["cat", "dog", "fish"][i % 3], i % 15) for i in range(1, 301)],
    )
    conn.commit()
    conn.close()
    cases = [
        ("SELECT DISTINCT kind FROM pet", "SELECT kind FROM pet", "correct"),  # DISTINCT removed
        ("SELECT DISTINCT kind FROM pet", "SELECT kind FROM pet GROUP BY kind", "wrong_row_count"),
        ("SELECT count(DISTINCT kind) FROM pet", "SELECT count(*) FROM pet", "correct"),  # DISTINCT removed
        ("SELECT name, age FROM owner JOIN pet USING (owner_id) WHERE age > 13",
         "SELECT age, name FROM pet JOIN owner USING (owner_id) WHERE age >= 14", "correct"),
        ("SELECT age FROM pet ORDER BY age DESC", "SELECT age FROM pet ORDER BY age", "wrong_result"),
        ("SELECT age FROM pet WHERE kind = 'cat'", "SELECT age FROM pet WHERE kind = 'dog'", "wrong_result"),
        ("SELECT name FROM owner", "SELECT name FROM owner WHERE owner_id < 10", "wrong_row_count"),
        ("SELECT name FROM owner", "SELECT name FROM owner WHERE 0", "empty_result"),
        ("SELECT name FROM owner", "SELECT nme FROM owner", "no_such_column"),
        ("SELECT name FROM owner", "DELETE FROM owner", "refused_write"),
    ]  # fmt: skip
    jobs = []
    for gold, pred, _ in cases:
        jobs += [(db, prepare_sql(gold)), (db, prepare_sql(pred))]
    with Sandbox(timeout_s=2.0) as sb:
        results = sb.execute_many(jobs)
    got = [
        verdict(results[2 * i], results[2 * i + 1], order_matters=order_matters(prepare_sql(gold)))
        for i, (gold, _, _) in enumerate(cases)
    ]
    assert got == [expected for _, _, expected in cases]
