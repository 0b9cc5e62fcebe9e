"""Hostile and broken SQL against a copy of a real database: nothing changes, nothing hangs, the pool lives.

The corpus is tests/core/hostile_sql.yaml; a property test adds random SQL-like text.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workflow_scripts.core.error_classes import ERROR_CLASSES
from workflow_scripts.core.sandbox import Sandbox

TIMEOUT = 1.0
# The promise: every call returns within the query timeout plus 1.5 s, whatever the SQL does.
BOUND_S = TIMEOUT + 1.5
CORPUS = yaml.safe_load((Path(__file__).parent / "hostile_sql.yaml").read_text())
CHECK_SQL = "SELECT count(*), sum(age), group_concat(name, '|') FROM singer"


def _as_set(value: str | list[str]) -> set[str]:
    return {value} if isinstance(value, str) else set(value)


def make_concert_singer(path: Path) -> None:
    """A Spider-like concert_singer database (stadium, singer, concert, singer_in_concert), the corpus's
    target: 10 stadiums, 30 singers, 25 concerts and 50 performances, as the demo once held."""
    con = sqlite3.connect(path)
    try:
        con.executescript(
            """
            CREATE TABLE stadium (stadium_id INTEGER PRIMARY KEY, name TEXT, location TEXT, capacity INTEGER);
            CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER);
            CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, concert_name TEXT, stadium_id INTEGER,
                                  year INTEGER, FOREIGN KEY (stadium_id) REFERENCES stadium (stadium_id));
            CREATE TABLE singer_in_concert (concert_id INTEGER, singer_id INTEGER,
                                            PRIMARY KEY (concert_id, singer_id));
            """
        )
        con.executemany(
            "INSERT INTO stadium VALUES (?, ?, ?, ?)",
            [(i, f"Stadium {i}", "Boston", 1000 * i) for i in range(1, 11)],
        )
        con.executemany(
            "INSERT INTO singer VALUES (?, ?, ?, ?)",
            [(i, f"Singer {i}", "France", 18 + i) for i in range(1, 31)],
        )
        con.executemany(
            "INSERT INTO concert VALUES (?, ?, ?, ?)",
            [(i, f"Concert {i}", 1 + i % 9, 2014 + i % 6) for i in range(1, 26)],
        )
        con.executemany(
            "INSERT INTO singer_in_concert VALUES (?, ?)", [(1 + i % 25, 1 + (7 * i) % 30) for i in range(50)]
        )
        con.commit()
    finally:
        con.close()  # fmt: skip


@pytest.fixture(scope="module")
def dbdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding only a concert_singer database."""
    d = tmp_path_factory.mktemp("hostile")
    make_concert_singer(d / "concert_singer.sqlite")
    return d


@pytest.fixture(scope="module")
def db(dbdir: Path) -> Path:
    return dbdir / "concert_singer.sqlite"


@pytest.fixture(scope="module")
def expected_check(db: Path) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(CHECK_SQL).fetchall()


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    with Sandbox(workers=2, timeout_s=TIMEOUT, grace_s=0.5) as sandbox:
        yield sandbox


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under `directory` (recursively) with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) >= 40
    assert len({case["sql"] for case in CORPUS}) == len(CORPUS)
    classes = set().union(*(_as_set(case["classes"]) for case in CORPUS if case["classes"]))
    assert classes <= set(ERROR_CLASSES)
    for needed in ("refused_write", "timeout", "too_large", "empty_query", "multiple_statements"):
        assert needed in classes


@pytest.mark.parametrize("case", CORPUS, ids=[f"{i:02d}" for i in range(len(CORPUS))])
def test_hostile_sql_is_contained(
    sb: Sandbox, db: Path, dbdir: Path, expected_check: list[tuple], case: dict
) -> None:
    sql = case["sql"].replace("{dir}", str(dbdir))
    before = snapshot(dbdir)
    t0 = time.monotonic()
    r = sb.execute(db, sql)
    took = time.monotonic() - t0
    assert took < BOUND_S, (sql, took)
    assert r.status in _as_set(case["status"]), (sql, r)
    if r.status == "ok":
        assert r.error_class is None
    else:
        assert r.error_class in _as_set(case["classes"]), (sql, r)
        assert r.error_message
    # The database bytes never change and no file appears (journal, WAL, attached or vacuumed copies).
    assert snapshot(dbdir) == before
    # The pool survives and keeps serving correct results.
    after = sb.execute(db, CHECK_SQL)
    assert after.ok and after.rows == expected_check


def test_the_whole_corpus_in_one_batch_keeps_order(
    sb: Sandbox, db: Path, dbdir: Path, expected_check: list[tuple]
) -> None:
    """Hostile queries mixed with good ones in one execute_many call: every good one still answers."""
    before = snapshot(dbdir)
    jobs = []
    for case in CORPUS:
        jobs += [(db, case["sql"].replace("{dir}", str(dbdir))), (db, CHECK_SQL)]
    results = sb.execute_many(jobs)
    assert len(results) == len(jobs)
    for case, hostile, check in zip(CORPUS, results[::2], results[1::2], strict=True):
        assert hostile.status in _as_set(case["status"]), (case["sql"], hostile)
        assert check.ok and check.rows == expected_check
    assert snapshot(dbdir) == before


SQL_TOKENS = st.sampled_from(
    [
        "SELECT", "FROM", "WHERE", "JOIN", "ON", "GROUP BY", "ORDER BY", "LIMIT", "UNION", "WITH RECURSIVE",
        "INSERT INTO", "UPDATE", "DELETE", "DROP", "CREATE", "ATTACH", "PRAGMA", "VACUUM", "BEGIN", "SET",
        "VALUES", "AS", "AND", "OR", "NOT", "NULL", "*", ",", "(", ")", ";", "=", "<", "'", '"', "--", "/*",
        "*/", "singer", "concert", "stadium", "name", "age", "count(*)", "zeroblob(1000)", "randomblob(9)",
        "load_extension", "1", "-1", "0x7f", "'x'", "\0", "é", "🎤", "\n", "query_only", "main", ":memory:",
    ]
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.one_of(SQL_TOKENS, st.text(max_size=6)), max_size=24).map(" ".join),
)
def test_random_sql_like_text_never_escapes(sb: Sandbox, db: Path, dbdir: Path, sql: str) -> None:
    before = snapshot(dbdir)
    t0 = time.monotonic()
    r = sb.execute(db, sql)
    assert time.monotonic() - t0 < BOUND_S, sql
    assert r.status in ("ok", "error", "timeout")
    assert (r.error_class is None) == (r.status == "ok")
    assert r.error_class is None or r.error_class in ERROR_CLASSES
    assert snapshot(dbdir) == before
