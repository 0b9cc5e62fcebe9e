"""The SQLite sandbox: results, error classes, containment of hostile SQL, the worker pool, row encoding."""

from __future__ import annotations

import hashlib
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflow_scripts.core.error_classes import ERROR_CLASSES, classify_error
from workflow_scripts.core.exec_result import ExecResult
from workflow_scripts.core.row_codec import decode_rows, encode_rows
from workflow_scripts.core.sandbox import Sandbox, execute

TIMEOUT = 1.0
GRACE = 0.5
N_SINGERS, N_ALBUMS, N_SONGS = 300, 200, 400
RUNAWAY_CTE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"


def make_music_db(path: Path) -> Path:
    """Three tables with foreign keys, a unique index and a few hundred rows each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT UNIQUE, country TEXT, age INTEGER,
                             rating REAL, photo BLOB);
        CREATE TABLE album (album_id INTEGER PRIMARY KEY, singer_id INTEGER REFERENCES singer(singer_id),
                            title TEXT, year INTEGER);
        CREATE TABLE song (song_id INTEGER PRIMARY KEY, album_id INTEGER REFERENCES album(album_id),
                           title TEXT, seconds INTEGER);
        CREATE INDEX song_album ON song(album_id);
        """
    )
    conn.executemany(
        "INSERT INTO singer VALUES (?, ?, ?, ?, ?, ?)",
        [
            (i, f"Singer {i}", ["France", "Peru", "Japan"][i % 3], 18 + i % 50, i / 7, bytes([i % 256, 0]))
            for i in range(1, N_SINGERS + 1)
        ],
    )
    conn.executemany(
        "INSERT INTO album VALUES (?, ?, ?, ?)",
        [(i, 1 + i % N_SINGERS, f"Album {i}", 1990 + i % 30) for i in range(1, N_ALBUMS + 1)],
    )
    conn.executemany(
        "INSERT INTO song VALUES (?, ?, ?, ?)",
        [(i, 1 + i % N_ALBUMS, f"Song {i}", 120 + i % 200) for i in range(1, N_SONGS + 1)],
    )
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="module")
def dbdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("dbs")
    make_music_db(d / "music.sqlite")
    make_music_db(d / "other.sqlite")
    return d


@pytest.fixture(scope="module")
def db(dbdir: Path) -> Path:
    return dbdir / "music.sqlite"


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    with Sandbox(workers=1, timeout_s=TIMEOUT, grace_s=GRACE) as sandbox:
        yield sandbox


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(directory: Path) -> dict[str, str]:
    return {p.name: digest(p) for p in sorted(directory.iterdir())}


def assert_serves(sb: Sandbox, db: Path) -> None:
    r = sb.execute(db, "SELECT count(*), sum(age) FROM singer")
    assert r.ok and r.rows == [(N_SINGERS, sum(18 + i % 50 for i in range(1, N_SINGERS + 1)))]


# --- results ----------------------------------------------------------------------------------


def test_ok_result_matches_sqlite(sb: Sandbox, db: Path) -> None:
    sql = "SELECT name, rating, photo, NULL AS empty FROM singer JOIN album USING (singer_id) ORDER BY 1"
    r = sb.execute(db, sql)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    cur = conn.execute(sql)
    expected = cur.fetchall()
    columns = tuple(d[0] for d in cur.description)
    conn.close()
    assert r.status == "ok" and r.error_class is None and r.error_message is None
    assert r.columns == columns == ("name", "rating", "photo", "empty")
    assert r.rows == expected and len(r.rows) == N_ALBUMS
    assert isinstance(r.rows[0], tuple) and isinstance(r.rows[0][2], bytes)
    assert not r.truncated and 0 <= r.elapsed_s < TIMEOUT


def test_row_cap(sb: Sandbox, db: Path) -> None:
    capped = sb.execute(db, "SELECT singer_id FROM singer ORDER BY singer_id", max_rows=10)
    assert capped.ok and capped.truncated and capped.rows == [(i,) for i in range(1, 11)]
    exact = sb.execute(db, "SELECT singer_id FROM singer", max_rows=N_SINGERS)
    assert exact.ok and not exact.truncated and len(exact.rows) == N_SINGERS


@pytest.mark.parametrize("sql", ["SELECT 1;", "SELECT 1;;", "SELECT 1; -- done", "  SELECT 1 ;\n"])
def test_trailing_semicolons_and_comments_are_tolerated(sb: Sandbox, db: Path, sql: str) -> None:
    assert sb.execute(db, sql).rows == [(1,)]


def test_read_only_pragmas_are_allowed(sb: Sandbox, db: Path) -> None:
    r = sb.execute(db, "PRAGMA table_info(singer)")
    assert r.ok and [row[1] for row in r.rows] == ["singer_id", "name", "country", "age", "rating", "photo"]
    assert sb.execute(db, "PRAGMA foreign_key_list(album)").rows[0][2] == "singer"


def test_invalid_utf8_is_decoded_leniently_like_the_official_evaluator(sb: Sandbox, db: Path) -> None:
    r = sb.execute(db, "SELECT CAST(x'41ff42' AS TEXT), 'ok'")
    assert r.ok and r.rows == [("AB", "ok")]


def test_module_level_execute(db: Path) -> None:
    r = execute(db, "SELECT name FROM singer WHERE singer_id = 7", timeout_s=2.0)
    assert r.ok and r.rows == [("Singer 7",)]


# --- error classes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "cls"),
    [
        ("SELEC name FROM singer", "syntax_error"),
        ("SELECT name FROM singer WHERE", "syntax_error"),
        ("SELECT name FROM singer WHERE name = 'x", "syntax_error"),
        ("SELECT name FROM singers", "no_such_table"),
        ("SELECT nam FROM singer", "no_such_column"),
        ("SELECT singer_id FROM singer JOIN album ON singer.singer_id = album.singer_id", "ambiguous_column"),
        ("SELECT 1; SELECT 2", "multiple_statements"),
        ("", "empty_query"),
        ("  -- just a comment\n /* and another */ ", "empty_query"),
        ("SELECT no_such_function(1)", "other_execution_error"),
        ("SELECT name FROM singer WHERE age = ?", "other_execution_error"),
        ("SELECT max(count(*)) FROM singer", "other_execution_error"),
    ],
)
def test_error_classes(sb: Sandbox, db: Path, sql: str, cls: str) -> None:
    r = sb.execute(db, sql)
    assert (r.status, r.error_class) == ("error", cls)
    assert r.error_message and len(r.error_message) <= 500
    assert r.rows == [] and r.columns == ()


def test_missing_database(sb: Sandbox, tmp_path: Path) -> None:
    r = sb.execute(tmp_path / "absent.sqlite", "SELECT 1")
    assert r.error_class == "no_such_database"
    assert not (tmp_path / "absent.sqlite").exists()


def test_long_messages_are_trimmed(sb: Sandbox, db: Path) -> None:
    r = sb.execute(db, f"SELECT {'x' * 2000} FROM singer")
    assert r.error_class == "no_such_column" and len(r.error_message) == 500


@pytest.mark.parametrize(
    ("message", "cls"),
    [
        ('near "readonly": syntax error', "syntax_error"),
        ("no such column: interrupted", "no_such_column"),
        ("no such table: main.x", "no_such_table"),
        ("interrupted", "timeout"),
        ("attempt to write a readonly database", "refused_write"),
        ("string or blob too big", "too_large"),
        ("misuse of aggregate: count()", "other_execution_error"),
    ],
)
def test_classify_error_looks_at_sqlite_text_not_quoted_user_text(message: str, cls: str) -> None:
    assert classify_error(message) == cls


# --- containment ---------------------------------------------------------------------------------

WRITES = [
    "INSERT INTO singer (name) VALUES ('intruder')",
    "INSERT INTO singer (name) VALUES ('intruder') RETURNING singer_id",
    "REPLACE INTO singer (singer_id, name) VALUES (1, 'x')",
    "UPDATE singer SET age = age + 1",
    "DELETE FROM song",
    "WITH x AS (SELECT 1) DELETE FROM song",
    "CREATE TABLE t (a)",
    "CREATE TEMP TABLE t (a)",
    "CREATE TABLE t AS SELECT * FROM singer",
    "CREATE INDEX i ON singer(age)",
    "CREATE VIEW v AS SELECT 1",
    "CREATE TRIGGER tr AFTER INSERT ON singer BEGIN DELETE FROM song; END",
    "CREATE VIRTUAL TABLE f USING fts5(x)",
    "DROP TABLE song",
    "DROP INDEX song_album",
    "ALTER TABLE singer RENAME TO s2",
    "ALTER TABLE singer ADD COLUMN extra TEXT",
    "ALTER TABLE singer RENAME COLUMN age TO years",
    "ANALYZE",
    "REINDEX",
    "VACUUM",
    "BEGIN",
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT sp",
    "RELEASE sp",
    "DETACH main",
    "PRAGMA writable_schema = ON",
    "PRAGMA journal_mode = WAL",
    "PRAGMA journal_mode",
    "PRAGMA query_only = OFF",
    "PRAGMA query_only",
    "PRAGMA hard_heap_limit = 0",
    "PRAGMA user_version = 7",
    "PRAGMA foreign_keys = ON",
    "SELECT * FROM pragma_table_info('singer')",
    "SELECT load_extension('/nonexistent/libevil')",
    "SELECT load_extension('libevil', 'entry')",
]


@pytest.mark.parametrize("sql", WRITES)
def test_state_changes_are_refused(sb: Sandbox, db: Path, dbdir: Path, sql: str) -> None:
    before = snapshot(dbdir)
    r = sb.execute(db, sql)
    assert (r.status, r.error_class) == ("error", "refused_write"), r
    assert snapshot(dbdir) == before
    assert_serves(sb, db)


def test_attach_is_refused_for_new_and_existing_files(sb: Sandbox, db: Path, dbdir: Path) -> None:
    before = snapshot(dbdir)
    new = dbdir / "new.sqlite"
    for sql in (
        f"ATTACH '{new}' AS x",
        f"ATTACH DATABASE 'file:{new}?mode=rwc' AS x",
        f"ATTACH '{dbdir / 'other.sqlite'}' AS o",
        "ATTACH ':memory:' AS m",
        f"VACUUM INTO '{dbdir / 'copy.sqlite'}'",
    ):
        r = sb.execute(db, sql)
        assert r.error_class == "refused_write", (sql, r)
    assert snapshot(dbdir) == before
    assert_serves(sb, db)


def test_multiple_statements_never_run_the_second(sb: Sandbox, db: Path, dbdir: Path) -> None:
    before = snapshot(dbdir)
    for sql in ("SELECT 1; DROP TABLE song", "SELECT 1; PRAGMA query_only = OFF; DELETE FROM song"):
        assert sb.execute(db, sql).error_class == "multiple_statements"
    assert snapshot(dbdir) == before
    assert sb.execute(db, "SELECT count(*) FROM song").rows == [(N_SONGS,)]


@pytest.mark.parametrize(
    ("sql", "classes"),
    [
        (RUNAWAY_CTE, {"timeout"}),
        ("SELECT count(*) FROM song a, song b, song c, song d", {"timeout"}),
        ("SELECT a.title, b.title FROM song a, song b, song c ORDER BY random()", {"timeout", "too_large"}),
        ("SELECT zeroblob(2000000000)", {"too_large"}),
        ("SELECT length(randomblob(1500000000))", {"too_large"}),
        ("SELECT printf('%.*c', 1000000000, 'x')", {"too_large", "timeout"}),
        ("SELECT replace(hex(zeroblob(100000000)), '0', 'ab')", {"too_large"}),
        ("SELECT length(group_concat(hex(zeroblob(1000000)))) FROM song a, song b", {"too_large", "timeout"}),
    ],
)
def test_runaway_and_memory_bombs_are_contained(
    sb: Sandbox, db: Path, dbdir: Path, sql: str, classes: set[str]
) -> None:
    before = snapshot(dbdir)
    t0 = time.monotonic()
    r = sb.execute(db, sql)
    took = time.monotonic() - t0
    assert r.error_class in classes, r
    assert r.status == ("timeout" if r.error_class == "timeout" else "error")
    assert took < TIMEOUT + 1.5
    assert snapshot(dbdir) == before
    assert_serves(sb, db)


def test_heap_limit_stops_a_memory_hungry_query(db: Path) -> None:
    sql = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 3000000) "
        "SELECT count(DISTINCT randomblob(64) || x) FROM c"
    )
    with Sandbox(timeout_s=20.0, heap_limit_mb=16) as small:
        t0 = time.monotonic()
        r = small.execute(db, sql)
        assert r.error_class == "too_large", r
        assert time.monotonic() - t0 < 10
        assert_serves(small, db)


def test_oversized_results_are_refused(db: Path) -> None:
    with Sandbox(timeout_s=5.0, max_result_mb=1) as small:
        big = small.execute(db, "SELECT hex(zeroblob(200000)) FROM song LIMIT 5")
        assert (big.status, big.error_class) == ("error", "too_large") and "MiB" in big.error_message
        fits = small.execute(db, "SELECT hex(zeroblob(200000)) FROM song LIMIT 2")
        assert fits.ok and len(fits.rows) == 2 and len(fits.rows[1][0]) == 400000


def test_guard_kills_a_query_the_progress_handler_cannot_stop(db: Path) -> None:
    with Sandbox(timeout_s=TIMEOUT, grace_s=GRACE, progress_every=0) as guarded:
        pid = guarded.worker_pids()[0]
        t0 = time.monotonic()
        r = guarded.execute(db, RUNAWAY_CTE)
        assert (r.status, r.error_class) == ("timeout", "timeout")
        assert "killed" in r.error_message
        assert TIMEOUT <= time.monotonic() - t0 < TIMEOUT + 1.5
        assert_serves(guarded, db)
        assert guarded.worker_pids()[0] != pid


# --- the pool ----------------------------------------------------------------------------------


def test_execute_many_keeps_job_order_across_databases_and_workers(dbdir: Path) -> None:
    music, other = dbdir / "music.sqlite", dbdir / "other.sqlite"
    jobs = []
    for i in range(60):
        path = (music, other, dbdir / "absent.sqlite")[i % 3]
        sql = "SELECT nope" if i % 7 == 0 else f"SELECT {i}, name FROM singer WHERE singer_id = {i + 1}"
        jobs.append((path, sql))
    with Sandbox(workers=2, timeout_s=TIMEOUT, chunk_size=4) as pool:
        results = pool.execute_many(jobs, progress="test")
        assert len(set(pool.worker_pids())) == 2
        assert pool.execute_many([]) == []
    assert len(results) == len(jobs)
    for i, r in enumerate(results):
        if i % 3 == 2:
            assert r.error_class == "no_such_database"
        elif i % 7 == 0:
            assert r.error_class == "no_such_column"
        else:
            assert r.ok and r.rows == [(i, f"Singer {i + 1}")]


def test_execute_many_survives_a_guard_kill_inside_a_chunk(db: Path) -> None:
    jobs = [(db, f"SELECT {i}") for i in range(10)]
    jobs[4] = (db, RUNAWAY_CTE)
    jobs[7] = (db, "SELECT printf('%.*c', 1000000000, 'x')")
    with Sandbox(timeout_s=TIMEOUT, grace_s=GRACE, progress_every=0) as guarded:
        t0 = time.monotonic()
        results = guarded.execute_many(jobs)
        assert time.monotonic() - t0 < 2 * (TIMEOUT + 1.5)
    assert [r.status for r in results] == ["ok"] * 4 + ["timeout"] + ["ok"] * 2 + ["timeout"] + ["ok"] * 2
    assert [r.rows for i, r in enumerate(results) if i not in (4, 7)] == [
        [(i,)] for i in range(10) if i not in (4, 7)
    ]


def test_idle_worker_killed_from_outside_is_replaced(sb: Sandbox, db: Path) -> None:
    pid = sb.worker_pids()[0]
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)
    assert_serves(sb, db)
    assert sb.worker_pids()[0] not in (None, pid)


@pytest.mark.parametrize(
    ("sig", "cls"), [(signal.SIGSEGV, "other_execution_error"), (signal.SIGKILL, "too_large")]
)
def test_worker_dying_mid_query_fails_only_that_query(db: Path, sig: int, cls: str) -> None:
    with Sandbox(timeout_s=5.0) as pool:
        assert_serves(pool, db)
        pid = pool.worker_pids()[0]
        threading.Timer(0.3, os.kill, (pid, sig)).start()
        t0 = time.monotonic()
        results = pool.execute_many([(db, RUNAWAY_CTE), (db, "SELECT 'after'")])
        assert time.monotonic() - t0 < 3.0
        assert (results[0].status, results[0].error_class) == ("error", cls)
        assert "worker" in results[0].error_message
        assert results[1].rows == [("after",)]


def test_workers_do_not_import_the_callers_main_module(db: Path, tmp_path: Path) -> None:
    marker = tmp_path / "imports.log"
    script = tmp_path / "caller.py"
    # no main guard on purpose, like a Snakemake `script:` file
    script.write_text(
        "import os\n"
        f"open({str(marker)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        "from workflow_scripts.core.sandbox import Sandbox\n"
        "with Sandbox(workers=2) as sb:\n"
        f"    print(sb.execute_many([({str(db)!r}, 'SELECT 40 + 2')] * 3)[2].rows)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[(42,)]"
    assert len(marker.read_text().split()) == 1


def test_closed_sandbox_refuses_work(db: Path) -> None:
    pool = Sandbox()
    procs = pool.worker_pids()
    pool.close()
    with pytest.raises(RuntimeError):
        pool.execute(db, "SELECT 1")
    for pid in procs:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# --- row encoding --------------------------------------------------------------------------------

sqlite_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
)


def typed(rows: list[tuple]) -> list[tuple]:
    return [tuple((type(v).__name__, repr(v)) for v in row) for row in rows]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(sqlite_values, max_size=6).map(tuple), max_size=8))
def test_encode_rows_round_trips_exactly(rows: list[tuple]) -> None:
    text = encode_rows(rows)
    assert isinstance(text, str)
    assert typed(decode_rows(text)) == typed(rows)


def test_encode_rows_tags_special_values() -> None:
    rows = [(math.inf, -math.inf, b"\x00\xff", -0.0, 1.0, 1, "$b", None)]
    text = encode_rows(rows)
    assert "Infinity" not in text and "NaN" not in text
    assert typed(decode_rows(text)) == typed(rows)
    (nan,) = decode_rows(encode_rows([(math.nan,)]))[0]
    assert math.isnan(nan)


def test_error_classes_are_documented() -> None:
    assert {"syntax_error", "no_such_table", "no_such_column", "ambiguous_column", "refused_write"} <= set(
        ERROR_CLASSES
    )
    assert {"timeout", "too_large", "other_execution_error"} <= set(ERROR_CLASSES)
    assert ExecResult("ok", None, None, (), [], False, 0.0).ok
