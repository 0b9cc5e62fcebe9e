"""Read-only, time- and memory-bounded execution of untrusted SQL against SQLite files.

Queries run in worker processes (``multiprocessing`` "spawn" context) so that a crash or a
runaway query never takes the caller down. Defences, from the outside in:

* The parent holds a wall-clock guard per query (``timeout_s + grace_s``). It is needed because
  SQLite's progress handler cannot interrupt one long C call (a huge ``printf``, a big sort). On
  overrun the worker is killed and replaced, and the query gets status ``"timeout"``.
* Each worker opens databases with ``file:...?mode=ro`` and sets ``PRAGMA query_only``,
  ``PRAGMA hard_heap_limit`` (SQLite's allocator cap; process-wide), ``temp_store=MEMORY`` (sorts
  and temp tables never touch disk, so they are bounded by the heap cap), ``trusted_schema=OFF``,
  a string/blob length limit (heap cap / 8) and an attached-database limit of 0, disables
  extension loading, and only then installs an authorizer, which would refuse those pragmas.
* The authorizer allows SELECT, column reads, recursive CTEs, functions other than
  ``load_extension``/``fts3_tokenizer``, and the read-only introspection pragmas in
  ``ALLOWED_PRAGMAS`` (with any argument). Everything else -- every write, CREATE/DROP/ALTER,
  ATTACH/DETACH, BEGIN/COMMIT/SAVEPOINT, ANALYZE, other pragmas -- is refused. The ``pragma_*``
  table-valued functions are refused too (SQLite authorizes them as an UPDATE of sqlite_master).
* A progress handler (every ``progress_every`` VM instructions) interrupts a query at
  ``timeout_s`` (and its ``EXPLAIN QUERY PLAN``, when asked for, which runs on the same connection under
  the same authorizer and deadline); at most ``max_rows`` rows are kept (``truncated`` says whether more
  existed); a pickled result larger than ``max_result_mb`` becomes ``too_large``; the worker's address space
  is capped (``RLIMIT_AS``, Linux) so Python-side blow-ups raise MemoryError, also ``too_large``.

Worker processes never import the caller's ``__main__`` module, so Snakemake ``script:`` files and
scripts without a main guard can use the sandbox (``__main__`` is hidden from ``multiprocessing``
for the few milliseconds of a worker start). Each worker caches one connection per database path.
Jobs travel to a worker in chunks (one message per ``chunk_size`` queries, grouped by database);
the worker publishes which query it is running and since when in shared memory, so the guard
stays per query. After a kill, the finished-but-unsent results of the chunk are recomputed.

Results are :class:`~workflow_scripts.core.exec_result.ExecResult`. Their error classes, and how SQLite's
messages map to them, are in :mod:`workflow_scripts.core.error_classes`; their rows are stored in Parquet
by :mod:`workflow_scripts.core.row_codec`.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import multiprocessing.connection
import os
import pickle
import re
import signal
import sqlite3
import sys
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from workflow_scripts.core.error_classes import (
    EMPTY_QUERY,
    NO_SUCH_DATABASE,
    OTHER_EXECUTION_ERROR,
    TIMEOUT,
    TOO_LARGE,
    classify_error,
)

# Re-exported (with ExecResult) until rollout/loop.py and evaluation/matrix.py import their own modules.
from workflow_scripts.core.error_classes import (
    ERROR_CLASSES as ERROR_CLASSES,
)
from workflow_scripts.core.exec_result import ExecResult

ALLOWED_PRAGMAS: Final = frozenset(
    {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)
DENIED_FUNCTIONS: Final = frozenset({"load_extension", "fts3_tokenizer"})
MAX_MESSAGE_CHARS: Final = 500

_FLUSH_BYTES = 8 << 20  # a worker sends partial chunk results once this much is buffered
_MAX_CONNECTIONS = 32  # per worker, least recently used closed first
_MAX_UNBLAMED_DEATHS = 3
_MAX_PLAN_ROWS = 500  # rows of EXPLAIN QUERY PLAN kept per query


def _trim(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 3] + "..."


# ---------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------

_COMMENT_RE = re.compile(r"--[^\n]*|/\*.*?(?:\*/|\Z)", re.S)

# Worker results travel as plain tuples in ExecResult field order (cheaper to pickle); the plan is optional.
_ResultTuple = tuple


def _error(cls: str, message: str, elapsed: float) -> _ResultTuple:
    status = "timeout" if cls == TIMEOUT else "error"
    return (status, cls, _trim(message), (), [], False, elapsed)


def _authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
    if action in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if (arg2 or "").lower() in DENIED_FUNCTIONS else sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in ALLOWED_PRAGMAS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})


class _NoDatabase(Exception):
    pass


def _lenient_text(data: bytes) -> str:
    # test-suite-sql-eval's text_factory; used only after strict UTF-8 decoding failed
    return data.decode(errors="ignore")


class _Worker:
    """Per-process state: cached read-only connections and the current query's deadline."""

    def __init__(self, heap_limit_bytes: int, progress_every: int) -> None:
        self.heap_limit_bytes = heap_limit_bytes
        self.length_limit = max(1 << 20, min(1_000_000_000, heap_limit_bytes // 8))
        self.progress_every = progress_every
        self.conns: dict[str, sqlite3.Connection] = {}
        self.deadline = math.inf

    def _past_deadline(self) -> bool:
        return time.monotonic() > self.deadline

    def _connect(self, path: str) -> sqlite3.Connection:
        conn = self.conns.pop(path, None)
        if conn is None:
            if not os.path.isfile(path):
                raise _NoDatabase(f"database file not found: {path}")
            conn = self._open(path)
            if len(self.conns) >= _MAX_CONNECTIONS:
                self.conns.pop(next(iter(self.conns))).close()
        self.conns[path] = conn  # re-insert: dict order is recency order
        return conn

    def _open(self, path: str) -> sqlite3.Connection:
        uri = Path(path).absolute().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            conn.execute("PRAGMA query_only = ON")
            conn.execute(f"PRAGMA hard_heap_limit = {int(self.heap_limit_bytes)}")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA trusted_schema = OFF")
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self.length_limit)
            conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            if hasattr(conn, "enable_load_extension"):
                conn.enable_load_extension(False)
            conn.set_authorizer(_authorize)
            if self.progress_every > 0:
                conn.set_progress_handler(self._past_deadline, self.progress_every)
        except BaseException:
            conn.close()
            raise
        return conn

    def _drop(self, path: str) -> None:
        conn = self.conns.pop(path, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def run(
        self, path: str, sql: str, timeout_s: float, max_rows: int, explain: bool = False
    ) -> _ResultTuple:
        t0 = time.monotonic()
        self.deadline = t0 + timeout_s
        try:
            conn = self._connect(path)
            sql = sql.rstrip(" \t\r\n\f;")
            try:
                result = self._run(conn, sql, max_rows, time.monotonic())
            except sqlite3.OperationalError as exc:
                if not str(exc).startswith("Could not decode to UTF-8"):
                    raise
                conn.text_factory = _lenient_text
                try:
                    result = self._run(conn, sql, max_rows, time.monotonic())
                finally:
                    conn.text_factory = str
            if explain and result[0] == "ok" and result[3]:
                result = (*result, self._plan(conn, sql))
            return result
        except _NoDatabase as exc:
            return _error(NO_SUCH_DATABASE, str(exc), time.monotonic() - t0)
        except MemoryError as exc:
            # SQLite reports SQLITE_NOMEM as MemoryError; start the next query on a fresh connection
            self._drop(path)
            return _error(TOO_LARGE, f"out of memory ({exc or 'heap limit reached'})", time.monotonic() - t0)
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            cls = classify_error(message)
            if cls == TIMEOUT:
                message = f"interrupted: query ran past the {timeout_s:g} s time limit"
            return _error(cls, message, time.monotonic() - t0)
        finally:
            self.deadline = math.inf

    @staticmethod
    def _plan(conn: sqlite3.Connection, sql: str) -> tuple[tuple[int, int, str], ...]:
        """``EXPLAIN QUERY PLAN`` of a query that has just run, under the same guards; () if it fails."""
        try:
            cur = conn.execute("EXPLAIN QUERY PLAN " + sql)
            try:
                return tuple((int(r[0]), int(r[1]), str(r[3])) for r in cur.fetchmany(_MAX_PLAN_ROWS))
            finally:
                cur.close()
        except (sqlite3.Error, ValueError, OverflowError):
            return ()

    @staticmethod
    def _run(conn: sqlite3.Connection, sql: str, max_rows: int, t0: float) -> _ResultTuple:
        cur = conn.execute(sql)
        try:
            if cur.description is None:
                if not _COMMENT_RE.sub("", sql).strip(" \t\r\n\f;"):
                    return _error(EMPTY_QUERY, "the query is empty or only a comment", time.monotonic() - t0)
                return ("ok", None, None, (), [], False, time.monotonic() - t0)
            columns = tuple(d[0] for d in cur.description)
            rows = cur.fetchmany(max_rows + 1)
            truncated = len(rows) > max_rows
            if truncated:
                del rows[max_rows:]
            return ("ok", None, None, columns, rows, truncated, time.monotonic() - t0)
        finally:
            cur.close()  # resets the statement, which releases its read lock


def _limit_address_space(limit_bytes: int) -> None:
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit_bytes = min(limit_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard))
    except (ImportError, ValueError, OSError):
        pass


def _worker_main(
    conn: multiprocessing.connection.Connection,
    progress: Any,
    heap_limit_bytes: int,
    max_result_bytes: int,
    progress_every: int,
) -> None:
    """Worker loop: receive a chunk, run its queries, send back ``[(pos, pickled result), ...]``.

    ``progress[0]`` holds the position of the running query (-1 between queries) and
    ``progress[1]`` its start time (``time.monotonic``, system-wide on Linux), for the guard.
    """
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _limit_address_space(heap_limit_bytes + 4 * max_result_bytes + (1 << 30))
    worker = _Worker(heap_limit_bytes, progress_every)
    dumps, protocol = pickle.dumps, pickle.HIGHEST_PROTOCOL
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        timeout_s, max_rows, explain, jobs = msg
        last = jobs[-1][0]
        out: list[tuple[int, bytes]] = []
        buffered = 0
        for pos, path, sql in jobs:
            progress[1] = time.monotonic()
            progress[0] = pos
            result = worker.run(path, sql, timeout_s, max_rows, explain)
            elapsed = result[6]
            try:
                blob: bytes | None = dumps(result, protocol)
            except MemoryError:
                blob = None
            del result
            if blob is None or len(blob) > max_result_bytes:
                message = f"the result exceeds {max_result_bytes / (1 << 20):g} MiB"
                blob = dumps(_error(TOO_LARGE, message, elapsed), protocol)
            progress[0] = -1
            out.append((pos, blob))
            buffered += len(blob)
            if buffered >= _FLUSH_BYTES or pos == last:
                try:
                    conn.send(out)
                except (BrokenPipeError, OSError):
                    return  # the parent is gone
                out, buffered = [], 0


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------

_SPAWN_LOCK = threading.Lock()


@contextlib.contextmanager
def _hidden_main() -> Iterator[None]:
    """Stop spawned children from re-importing the caller's ``__main__`` module."""
    with _SPAWN_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


class _Slot:
    """One worker process, its pipe, its progress cell and the jobs it has in flight."""

    def __init__(self, ctx: Any, args: tuple) -> None:
        self._ctx = ctx
        self._args = args
        self.proc: Any = None
        self.conn: multiprocessing.connection.Connection | None = None
        self.progress: Any = None
        self.pending: set[int] = set()
        self.timeout_s = 0.0
        self.killed_by_us = False

    def start(self) -> None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        self.progress = self._ctx.RawArray("d", 2)
        self.progress[0] = -1.0
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child_conn, self.progress, *self._args),
            name="sql-sandbox-worker",
            daemon=True,
        )
        with _hidden_main():
            proc.start()
        child_conn.close()
        self.proc, self.conn, self.killed_by_us = proc, parent_conn, False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def running(self) -> tuple[int, float] | None:
        """The position and start time of the query the worker is running, if any."""
        pos = int(self.progress[0])  # read before the start time: a newer start only adds slack
        start = self.progress[1]
        return (pos, start) if pos >= 0 and pos in self.pending else None

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                self.killed_by_us = True
                self.proc.kill()
            self.proc.join(5)

    def discard(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.proc, self.conn, self.progress = None, None, None
        self.pending = set()

    def stop(self) -> None:
        if self.proc is not None and self.conn is not None and self.proc.is_alive():
            with contextlib.suppress(Exception):
                self.conn.send(None)
            self.proc.join(1)
        self.kill()
        self.discard()


def _shutdown(slots: list[_Slot]) -> None:
    for slot in slots:
        slot.stop()


class Sandbox:
    """A pool of worker processes that execute untrusted SQL read-only, with limits.

    ``timeout_s`` bounds each query's wall-clock time (the parent's guard adds ``grace_s``);
    ``max_rows`` the rows kept; ``heap_limit_mb`` SQLite's heap per worker; ``max_result_mb`` one
    pickled result. ``chunk_size`` queries travel to a worker per message. ``progress_every`` is
    the number of VM instructions between in-worker deadline checks (0 leaves only the guard).
    Calls from several threads are serialized. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        workers: int = 1,
        timeout_s: float = 5.0,
        max_rows: int = 10_000,
        heap_limit_mb: int = 512,
        *,
        max_result_mb: int = 64,
        chunk_size: int = 64,
        grace_s: float = 1.0,
        progress_every: int = 1000,
    ) -> None:
        if workers < 1 or chunk_size < 1 or max_rows < 0 or timeout_s <= 0:
            raise ValueError("workers and chunk_size must be >= 1, max_rows >= 0, timeout_s > 0")
        self.workers = workers
        self.timeout_s = float(timeout_s)
        self.max_rows = int(max_rows)
        self.chunk_size = chunk_size
        self.grace_s = float(grace_s)
        ctx = multiprocessing.get_context("spawn")
        args = (int(heap_limit_mb * (1 << 20)), int(max_result_mb * (1 << 20)), int(progress_every))
        self._slots = [_Slot(ctx, args) for _ in range(workers)]
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer = weakref.finalize(self, _shutdown, self._slots)
        for slot in self._slots:
            slot.start()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers."""
        self._closed = True
        self._finalizer()

    def worker_pids(self) -> list[int | None]:
        """Process ids of the current workers (None where a slot awaits a restart)."""
        return [s.proc.pid if s.proc is not None else None for s in self._slots]

    def execute(
        self,
        db_path: str | Path,
        sql: str,
        *,
        timeout_s: float | None = None,
        max_rows: int | None = None,
        explain: bool = False,
    ) -> ExecResult:
        """Run one query against ``db_path``; ``explain`` also records its query plan."""
        return self.execute_many([(db_path, sql)], timeout_s=timeout_s, max_rows=max_rows, explain=explain)[0]

    def execute_many(
        self,
        jobs: Sequence[tuple[str | Path, str]],
        progress: bool | str = False,
        *,
        timeout_s: float | None = None,
        max_rows: int | None = None,
        explain: bool = False,
    ) -> list[ExecResult]:
        """Run ``(db_path, sql)`` jobs across the workers; results come back in job order.

        ``progress`` shows a tqdm bar (a string becomes its description). ``explain`` records the
        ``EXPLAIN QUERY PLAN`` of every query that succeeds (``ExecResult.plan``), inside the same
        worker, connection, guards and deadline as the query itself.
        """
        if self._closed:
            raise RuntimeError("the sandbox is closed")
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        rows_cap = self.max_rows if max_rows is None else int(max_rows)
        paths = [os.fspath(p) for p, _ in jobs]
        sqls = [q for _, q in jobs]
        n = len(paths)
        results: list[ExecResult | None] = [None] * n
        if n == 0:
            return []
        # grouping by database keeps each worker's connection and page cache hot
        order = sorted(range(n), key=paths.__getitem__)
        size = max(1, min(self.chunk_size, -(-n // (4 * self.workers))))
        queue = deque(order[i : i + size] for i in range(0, n, size))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc=progress if isinstance(progress, str) else None, unit="query")
        with self._lock:
            try:
                _Run(self, paths, sqls, results, queue, timeout, rows_cap, bar, explain).loop()
            except BaseException:
                for slot in self._slots:  # a chunk may still be in flight: start over next time
                    if slot.pending:
                        slot.kill()
                        slot.discard()
                raise
            finally:
                if bar is not None:
                    bar.close()
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]


class _Run:
    """The dispatch loop of one ``execute_many`` call."""

    def __init__(
        self,
        sandbox: Sandbox,
        paths: list[str],
        sqls: list[str],
        results: list[ExecResult | None],
        queue: deque[list[int]],
        timeout_s: float,
        max_rows: int,
        bar: Any,
        explain: bool = False,
    ) -> None:
        self.sb = sandbox
        self.paths, self.sqls, self.results, self.queue = paths, sqls, results, queue
        self.timeout_s, self.max_rows, self.bar, self.explain = timeout_s, max_rows, bar, explain
        self.deaths: dict[int, int] = {}
        self.received: list[tuple[int, bytes]] = []

    def _set(self, pos: int, result: ExecResult) -> None:
        if self.results[pos] is None:
            self.results[pos] = result
            if self.bar is not None:
                self.bar.update(1)

    def _dispatch(self, slot: _Slot, chunk: list[int]) -> None:
        if slot.proc is None or not slot.alive:
            slot.kill()
            slot.discard()
            slot.start()
        slot.pending = set(chunk)
        slot.timeout_s = self.timeout_s
        assert slot.conn is not None
        try:
            jobs = [(p, self.paths[p], self.sqls[p]) for p in chunk]
            slot.conn.send((self.timeout_s, self.max_rows, self.explain, jobs))
        except OSError:  # died since the liveness check: requeue the chunk
            self._death(slot)

    def _drain(self, slot: _Slot) -> bool:
        """Receive what the worker has sent; False when its pipe is closed."""
        assert slot.conn is not None
        try:
            while slot.conn.poll():
                batch = slot.conn.recv()
                self.received += batch
                slot.pending.difference_update(pos for pos, _ in batch)
        except (EOFError, OSError):
            return False
        return True

    def _unpack(self) -> None:
        # done after dispatching, so that an idle worker does not wait for it
        for pos, blob in self.received:
            self._set(pos, ExecResult(*pickle.loads(blob)))
        self.received = []

    def _requeue(self, slot: _Slot) -> None:
        rest = sorted(slot.pending, key=self.paths.__getitem__)
        slot.pending = set()
        if rest:
            self.queue.appendleft(rest)

    def _overrun(self, slot: _Slot, pos: int, start: float) -> None:
        slot.kill()
        self._drain(slot)
        if pos in slot.pending:
            elapsed = time.monotonic() - start
            msg = f"query ran past the {slot.timeout_s:g} s time limit; the worker was killed"
            self._set(pos, ExecResult("timeout", TIMEOUT, msg, (), [], False, elapsed))
            slot.pending.discard(pos)
        self._requeue(slot)
        slot.discard()

    def _death(self, slot: _Slot) -> None:
        running = slot.running()
        never_ran = slot.progress is not None and slot.progress[1] == 0.0 and not slot.killed_by_us
        slot.kill()
        self._drain(slot)
        code = slot.proc.exitcode if slot.proc is not None else None
        if never_ran:
            raise RuntimeError(
                f"a sandbox worker exited (code {code}) before running any query; "
                "check that workflow_scripts is importable by a fresh interpreter"
            )
        if running is not None and running[0] in slot.pending:
            pos, start = running
            if code == -signal.SIGKILL and not slot.killed_by_us:
                cls, msg = TOO_LARGE, "the worker was killed (SIGKILL, likely out of memory)"
            else:
                cls, msg = OTHER_EXECUTION_ERROR, f"the worker process died (exit code {code})"
            self._set(pos, ExecResult("error", cls, msg, (), [], False, time.monotonic() - start))
            slot.pending.discard(pos)
        else:
            for pos in list(slot.pending):
                self.deaths[pos] = self.deaths.get(pos, 0) + 1
                if self.deaths[pos] >= _MAX_UNBLAMED_DEATHS:
                    msg = f"the worker process died repeatedly (exit code {code})"
                    self._set(pos, ExecResult("error", OTHER_EXECUTION_ERROR, msg, (), [], False, 0.0))
                    slot.pending.discard(pos)
        self._requeue(slot)
        slot.discard()

    def loop(self) -> None:
        slots = self.sb._slots
        limit = self.timeout_s + self.sb.grace_s
        while True:
            for slot in slots:
                if not slot.pending and self.queue:
                    self._dispatch(slot, self.queue.popleft())
            self._unpack()
            busy = [s for s in slots if s.pending]
            if not busy:
                return
            now = time.monotonic()
            wake = now + limit
            for slot in busy:
                running = slot.running()
                if running is not None:
                    wake = min(wake, running[1] + limit)
            waitables: list[Any] = [s.conn for s in busy] + [s.proc.sentinel for s in busy]
            multiprocessing.connection.wait(waitables, timeout=max(0.0, wake - now))
            for slot in busy:
                pipe_open = self._drain(slot)
                if slot.pending and not (pipe_open and slot.alive):
                    self._death(slot)
                    continue
                if not pipe_open:  # died after sending its last result: restart on next dispatch
                    slot.kill()
                    slot.discard()
                    continue
                if not slot.pending:
                    continue
                running = slot.running()
                if running is not None and time.monotonic() > running[1] + limit:
                    self._overrun(slot, *running)


# ---------------------------------------------------------------------------------------------
# Module-level convenience
# ---------------------------------------------------------------------------------------------

_default: Sandbox | None = None
_default_lock = threading.Lock()


def execute(db_path: str | Path, sql: str, *, timeout_s: float = 5.0, max_rows: int = 10_000) -> ExecResult:
    """Run one query in a lazily started, shared one-worker sandbox."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = Sandbox(workers=1, timeout_s=timeout_s, max_rows=max_rows)
        sandbox = _default
    return sandbox.execute(db_path, sql, timeout_s=timeout_s, max_rows=max_rows)
