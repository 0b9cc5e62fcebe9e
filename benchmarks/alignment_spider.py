"""A_KL(target‖train) on Spider with held-out databases as the target, and its sample-size spread.

Usage: python benchmarks/alignment_spider.py [--spider DIR] [--holdout 0.2] [--seed 0] [--draws 200]
                                             [--ks 1,2,5]

`train_spider.json` is split by db_id (never by example): a seeded `--holdout` share of the databases is the
target, the other databases are training data. Compared with the target: the training split (`train`); the
training queries without a join, subquery or set operation (`train_simple`, a structurally narrower set);
and 1,000 synthetic WikiSQL-style queries (`wikisql_like`: one table, optional aggregate, up to two
conditions; a deliberately mis-aligned set). c follows the paper's rule over these three sets (the lowest
A_KL is 1/e). The sample-size study cuts the target to k queries per held-out database, `--draws` times per
k, and reports A_KL(target_k‖set) on the same c (mean, standard deviation, 5th–95th percentiles) and how
often a draw ranks the three sets as the whole target does.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SPIDER  # noqa: E402
from workflow_scripts.alignment import kl as al  # noqa: E402

SIMPLE_EXCLUDES = ("JOIN", "UNION", "INTERSECT", "EXCEPT")


def wikisql_like(n: int, seed: int) -> list[str]:
    """`n` single-table queries in WikiSQL's shape: SELECT [AGG](col) FROM t WHERE c op v [AND c op v]."""
    rng = random.Random(seed)
    queries = []
    for i in range(n):
        column = f"col{rng.randrange(6)}"
        agg = rng.choice(["", "", "COUNT", "MAX", "MIN", "SUM", "AVG"])
        select = f"{agg}({column})" if agg else column
        conditions = [
            f"col{rng.randrange(6)} {rng.choice(['=', '=', '>', '<'])} {rng.choice([str(i), repr(f'v{i}')])}"
            for _ in range(rng.choice([1, 1, 2]))
        ]
        queries.append(f"SELECT {select} FROM table_{i % 50} WHERE {' AND '.join(conditions)}")
    return queries


def is_simple(template: al.Template | None) -> bool:
    """No join, no subquery (a second SELECT) and no set operation."""
    return template is not None and template.count("SELECT") == 1 and not set(SIMPLE_EXCLUDES) & set(template)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spider", type=Path, default=SPIDER)
    parser.add_argument("--holdout", type=float, default=0.2, help="share of databases held out as target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--ks", default="1,2,5")
    parser.add_argument("--alpha", type=float, default=al.ALPHA)
    parser.add_argument("--ngram-max", type=int, default=al.NGRAM_MAX)
    args = parser.parse_args()

    start = time.perf_counter()
    records = json.loads((args.spider / "train_spider.json").read_text())
    db_ids = sorted({r["db_id"] for r in records})
    held = set(random.Random(args.seed).sample(db_ids, round(args.holdout * len(db_ids))))
    target_rows = [r for r in records if r["db_id"] in held]
    train_sql = [r["query"] for r in records if r["db_id"] not in held]

    cache = al.NgramCache(args.ngram_max)
    target_tmpl = al.templates([r["query"] for r in target_rows])
    train_tmpl = al.templates(train_sql)
    target = cache.distribution(target_tmpl)
    sets = {
        "train": cache.distribution(train_tmpl),
        "train_simple": cache.distribution(t for t in train_tmpl if is_simple(t)),
        "wikisql_like": cache.distribution(al.templates(wikisql_like(1000, args.seed))),
    }
    table, c = al.alignment_table(target, sets, alpha=args.alpha)
    print(
        f"target: {len(held)} of {len(db_ids)} databases held out (seed {args.seed}), {target.queries:,} "
        f"queries, {target.unparsed} unparsed, {len(target.counts):,} distinct n-grams"
    )
    print(f"training split: {len(db_ids) - len(held)} databases, {len(train_sql):,} queries")
    print(f"alpha = {args.alpha}, ngram_max = {args.ngram_max}, c = {c:.4f} (paper rule)\n")
    print("| set | queries | unparsed | D_KL | A_KL | OVLP |\n|---|---|---|---|---|---|")
    for row in table.itertuples(index=False):
        scores = f"{row.D_KL:.3f} | {row.A_KL:.3f} | {row.OVLP:.3f}"
        print(f"| {row.set} | {row.queries:,} | {row.unparsed} | {scores} |")

    ks = [int(k) for k in args.ks.split(",")]
    study = al.sample_size_study(
        target_tmpl, [r["db_id"] for r in target_rows], sets, cache,
        ks=ks, draws=args.draws, seed=args.seed, alpha=args.alpha, c=c,
    )  # fmt: skip
    summary = al.summarize_sample_size(study)
    print(f"\nsample size: k target queries per held-out database, {args.draws} draws per k\n")
    print("| k | target queries | set | A_KL mean | std | 5th–95th pct | draws ranking the sets as all |")
    print("|---|---|---|---|---|---|---|")
    for row in summary.itertuples(index=False):
        print(
            f"| {row.k} | {row.target_queries:,.0f} | {row.set} | {row.A_KL_mean:.3f} | {row.A_KL_std:.3f} | "
            f"{row.A_KL_p05:.3f}–{row.A_KL_p95:.3f} | {row.rank_agreement:.0%} |"
        )
    print(f"\n{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
