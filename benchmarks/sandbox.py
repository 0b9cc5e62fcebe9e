"""Throughput of the SQL sandbox against a bare sqlite3 loop on Spider's runnable gold queries.

Usage: python benchmarks/sandbox.py [--spider DIR] [--limit N] [--repeat K]

Each figure is the best of K runs (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workflow_scripts.core.sandbox import Sandbox  # noqa: E402


def load_jobs(spider: Path, limit: int | None) -> tuple[list[tuple[str, str]], int, int]:
    """Spider train gold queries whose database exists; also the counts skipped."""
    examples = json.loads((spider / "train_spider.json").read_text())
    jobs, missing = [], 0
    for ex in examples:
        path = spider / "database" / ex["db_id"] / f"{ex['db_id']}.sqlite"
        if path.is_file():
            jobs.append((str(path), ex["query"]))
        else:
            missing += 1
    return (jobs[:limit] if limit else jobs), missing, len(examples)


def bare_loop(jobs: list[tuple[str, str]]) -> list[list[tuple] | None]:
    """One reused connection per database, plain fetchall; None where the query fails."""
    conns: dict[str, sqlite3.Connection] = {}
    out: list[list[tuple] | None] = []
    for path, sql in jobs:
        conn = conns.get(path)
        if conn is None:
            conn = conns[path] = sqlite3.connect(path)
        try:
            out.append(conn.execute(sql).fetchall())
        except sqlite3.Error:
            out.append(None)
    for conn in conns.values():
        conn.close()
    return out


def timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spider", type=Path, default=REPO.parent / "shared" / "data" / "spider")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is reported")
    args = parser.parse_args()

    jobs, missing, total = load_jobs(args.spider, args.limit)
    warm = bare_loop(jobs)  # also warms the OS page cache
    runnable = [job for job, rows in zip(jobs, warm, strict=True) if rows is not None]
    print(
        f"Spider train: {total} examples, {missing} on missing databases, "
        f"{len(jobs) - len(runnable)} failing gold queries -> {len(runnable)} runnable"
    )
    print(
        f"machine: {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version}"
    )

    bare, bare_s = timed(bare_loop, runnable)
    for _ in range(args.repeat - 1):
        bare_s = min(bare_s, timed(bare_loop, runnable)[1])
    rate_bare = len(runnable) / bare_s
    print(f"(a) bare sqlite3 loop (reused connections):  {rate_bare:8.0f} examples/s")

    rates = {}
    for workers in (1, 2):
        secs = []
        for _ in range(args.repeat):
            with Sandbox(workers=workers) as sb:  # fresh workers: connections are opened in the timing
                sb.execute_many(runnable[:workers])  # wait for the workers to boot
                results, s = timed(sb.execute_many, runnable)
            secs.append(s)
        rates[workers] = len(runnable) / min(secs)
        pairs = list(zip(results, bare, strict=True))
        agree = sum(r.ok and r.rows == b and not r.truncated for r, b in pairs)
        cut = sum(r.ok and r.truncated and r.rows == b[: len(r.rows)] for r, b in pairs)
        label = f"({'b' if workers == 1 else 'c'}) Sandbox(workers={workers}).execute_many:"
        print(
            f"{label:<45} {rates[workers]:8.0f} examples/s   "
            f"({agree} identical to bare, {cut} cut at max_rows={sb.max_rows})"
        )
    print(f"ratio (b)/(a): {rates[1] / rate_bare:.2f}x   ratio (c)/(a): {rates[2] / rate_bare:.2f}x")


if __name__ == "__main__":
    main()
