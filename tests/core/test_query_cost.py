"""The query-cost signal, read from real `EXPLAIN QUERY PLAN` rows that the sandbox records."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from workflow_scripts.core.query_cost import COST_COLUMNS, QueryCost, cost_columns, plan_cost
from workflow_scripts.core.sandbox import Sandbox


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from tests.conftest import make_concert_db

    db = make_concert_db(tmp_path_factory.mktemp("cost") / "concert.sqlite")
    conn = sqlite3.connect(db)
    conn.execute("CREATE INDEX concert_year ON concert(year)")
    conn.commit()
    conn.close()
    with Sandbox(workers=1, timeout_s=2.0) as sandbox:
        yield db, sandbox


def cost(env, sql: str) -> QueryCost:
    db, sandbox = env
    result = sandbox.execute(db, sql, explain=True)
    assert result.ok and result.plan, result
    return plan_cost(result.plan)


def test_index_lookup_is_cheaper_than_a_full_scan(env):
    indexed = cost(env, "SELECT venue FROM concert WHERE year = 2012")
    scanned = cost(env, "SELECT venue FROM concert WHERE venue = 'Hall 1'")
    assert (indexed.table_accesses, indexed.full_scans) == (1, 0)
    assert (scanned.table_accesses, scanned.full_scans) == (1, 1)
    assert indexed.cost < scanned.cost
    by_key = cost(env, "SELECT name FROM singer WHERE singer_id = 3")  # INTEGER PRIMARY KEY
    assert by_key.full_scans == 0 and by_key.cost == indexed.cost


def test_order_by_without_an_index_needs_a_temp_btree(env):
    sorted_in_memory = cost(env, "SELECT name FROM singer ORDER BY age")
    in_key_order = cost(env, "SELECT name FROM singer ORDER BY singer_id")
    by_index = cost(env, "SELECT year FROM concert ORDER BY year")  # a covering index scan
    assert sorted_in_memory.temp_btrees == 1 and in_key_order.temp_btrees == 0
    assert by_index.temp_btrees == 0 and by_index.full_scans == 0
    assert sorted_in_memory.cost > in_key_order.cost
    assert cost(env, "SELECT country, count(*) FROM singer GROUP BY country").temp_btrees == 1


def test_cross_join_is_a_cartesian_product_and_a_keyed_join_is_not(env):
    cross = cost(env, "SELECT name, venue FROM singer, concert")
    keyed = cost(env, "SELECT name, venue FROM singer JOIN concert ON singer.singer_id = concert.singer_id")
    assert cross.cartesian_joins == 1 and cross.table_accesses == 2
    assert keyed.cartesian_joins == 0 and keyed.table_accesses == 2
    assert cross.cost > keyed.cost
    # An equality join no index serves: SQLite builds an automatic index instead of nesting full scans.
    auto = cost(env, "SELECT a.venue FROM concert AS a JOIN concert AS b ON a.venue = b.venue")
    assert auto.automatic_indexes == 1 and auto.cartesian_joins == 0
    # A join on an inequality that no index serves nests full scans: quadratic, like a cartesian product.
    unindexed = cost(env, "SELECT a.name FROM singer AS a JOIN singer AS b ON a.age < b.age")
    assert unindexed.cartesian_joins == 1


def test_max_of_an_unindexed_column_reads_every_row(env):
    unindexed = cost(env, "SELECT max(age) FROM singer")  # plan: `SEARCH singer`, no index
    indexed = cost(env, "SELECT max(year) FROM concert")  # plan: `SEARCH concert USING COVERING INDEX`
    assert (unindexed.full_scans, indexed.full_scans) == (1, 0)


def test_subqueries(env):
    correlated = cost(
        env,
        "SELECT name, (SELECT count(*) FROM concert AS c WHERE c.singer_id = s.singer_id) FROM singer AS s",
    )
    assert correlated.correlated_subqueries == 1 and correlated.table_accesses == 2
    assert correlated.cartesian_joins == 0  # the subquery's scan is not a loop of the outer join
    listed = cost(env, "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM concert)")
    assert listed.correlated_subqueries == 0 and listed.table_accesses == 2
    assert cost(env, "SELECT 1 + 1").table_accesses == 0


def test_sandbox_records_the_plan_only_when_asked_and_only_for_queries_that_ran(env):
    db, sandbox = env
    sql = "SELECT name FROM singer ORDER BY age"
    assert sandbox.execute(db, sql).plan == ()
    result = sandbox.execute(db, sql, explain=True)
    direct = sqlite3.connect(db).execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
    assert result.plan == tuple((r[0], r[1], r[3]) for r in direct)
    assert [r[2] for r in result.plan] == ["SCAN singer", "USE TEMP B-TREE FOR ORDER BY"]
    assert len(result.rows) == 20  # the query's own result is unchanged
    assert sandbox.execute(db, "SELECT nme FROM singer", explain=True).plan == ()
    refused = sandbox.execute(db, "DELETE FROM singer", explain=True)
    assert refused.error_class == "refused_write" and refused.plan == ()
    many = sandbox.execute_many([(db, "SELECT 1"), (db, sql), (Path(db), "SELECT x")], explain=True)
    assert [bool(r.plan) for r in many] == [True, True, False]


def test_cost_columns(env):
    db, sandbox = env
    row = cost_columns(sandbox.execute(db, "SELECT name, venue FROM singer, concert", explain=True).plan)
    assert list(row) == COST_COLUMNS
    assert row["plan"] == '["SCAN singer", "SCAN concert"]'
    assert row["plan_cartesian_joins"] == 1 and row["plan_cost"] == 1 + 1 + 2 + 2 + 8
    assert set(cost_columns(()).values()) == {None}


def test_plans_of_sqlite_before_3_36():
    """Older SQLite writes `SCAN TABLE t` and `SEARCH TABLE t USING ...`."""
    old = plan_cost([(0, 0, 0, "SCAN TABLE singer"), (1, 0, 0, "SEARCH TABLE concert USING INDEX i (x=?)")])
    assert (old.table_accesses, old.full_scans, old.cartesian_joins) == (2, 1, 0)
