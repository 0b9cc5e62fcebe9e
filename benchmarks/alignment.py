"""Speed and memory of the alignment distributions of 100,000 queries (Spider train gold, varied copies).

Usage: python benchmarks/alignment.py [--spider DIR] [--n 100000] [--workers 2] [--ngram-max 15]

The corpus: Spider's train gold queries (`train_gold.sql`, 8,659 lines) repeated until there are N, query
number i with its identifiers renamed (`name` → `"name_<i>"`) and its literals changed (numbers + i, strings
suffixed with i), so that no two queries are the same string and the parser's per-string cache
(`alignment.templates` parses identical strings once) saves nothing; the templates, and so the n-grams, are
the same across copies, as they would be in a real corpus. Building the corpus is not timed. Timed: the
templates of every query (sqlglot parse and render, in `--workers` processes) and the corpus-level n-gram
distribution. Peak memory is the largest resident set of this process and of the worker processes.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlglot import exp  # noqa: E402
from sqlglot.dialects.sqlite import SQLite  # noqa: E402
from sqlglot.errors import SqlglotError  # noqa: E402

from benchmarks.common import SPIDER  # noqa: E402
from workflow_scripts.alignment import kl as al  # noqa: E402

MARK = "\x00"


class _LeafMarker(SQLite.Generator):
    """Renders every identifier and literal as a numbered marker and records it."""

    leaves: list[tuple[str, str]]

    def identifier_sql(self, expression: exp.Identifier) -> str:
        return self._mark("id", expression.name)

    def literal_sql(self, expression: exp.Literal) -> str:
        return self._mark("str" if expression.is_string else "num", expression.name)

    def _mark(self, kind: str, text: str) -> str:
        self.leaves.append((kind, text))
        return f"{MARK}{len(self.leaves) - 1}{MARK}"


def leaf_value(kind: str, text: str, tag: int) -> str:
    """A varied leaf: renamed identifier, shifted number, suffixed string."""
    if kind == "id":
        return '"' + f"{text}_{tag}".replace('"', '""') + '"'
    if kind == "num":
        try:
            return str(int(text) + tag)
        except ValueError:
            return str(float(text) + tag)
    return "'" + f"{text} {tag}".replace("'", "''") + "'"


def corpus(spider: Path, n: int) -> list[str]:
    """N distinct queries: the gold queries of train_gold.sql, copy after copy, the leaves of each varied."""
    dialect = SQLite()
    gen = _LeafMarker(dialect=dialect)
    frames = []
    for sql in al.read_sql_file(spider / "train_gold.sql"):
        gen.leaves = []
        try:
            frame = gen.generate(dialect.parse(sql)[0])
        except SqlglotError:
            continue
        frames.append((frame.split(MARK), list(gen.leaves)))
    queries: list[str] = []
    while len(queries) < n:
        for parts, leaves in frames[: n - len(queries)]:
            tag = len(queries)  # odd parts are leaf numbers; every query gets its own tag
            queries.append(
                "".join(leaf_value(*leaves[int(p)], tag) if i % 2 else p for i, p in enumerate(parts))
            )
    return queries


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident set (MiB) of this process and of its largest finished child."""
    return (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spider", type=Path, default=SPIDER)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ngram-max", type=int, default=al.NGRAM_MAX)
    args = parser.parse_args()

    t0 = time.perf_counter()
    queries = corpus(args.spider, args.n)
    built = time.perf_counter() - t0
    distinct = len(set(queries))
    print(
        f"corpus: {len(queries):,} queries ({distinct:,} distinct strings), built in {built:.1f} s, not timed"
    )
    before = peak_rss_mib()[0]

    t0 = time.perf_counter()
    tmpls = al.templates(queries, workers=args.workers)
    t1 = time.perf_counter()
    dist = al.NgramCache(args.ngram_max).distribution(tmpls)
    t2 = time.perf_counter()
    own, child = peak_rss_mib()
    print(
        f"templates ({args.workers} process(es)): {t1 - t0:.1f} s, {len(queries) / (t1 - t0):,.0f} queries/s"
    )
    print(f"n-gram distribution: {t2 - t1:.1f} s")
    print(f"total: {t2 - t0:.1f} s for {len(queries):,} queries")
    print(
        f"distinct templates {len(set(t for t in tmpls if t is not None)):,}, unparsed {dist.unparsed:,}, "
        f"distinct n-grams {len(dist.counts):,}, n-gram occurrences {dist.total:,}"
    )
    print(f"peak RSS: this process {own:,.0f} MiB (after building the corpus {before:,.0f} MiB), "
          f"largest worker {child:,.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
