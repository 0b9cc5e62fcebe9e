"""Yield and speed of synthetic hard negatives on Spider's runnable gold SQL (train split).

Usage: python benchmarks/synthetic.py [--spider DIR] [--limit N] [--per-type K] [--seed S]
                                      [--types T,T,...] [--workers W] [--timeout S]

Per type: negatives made, how many execute, and how many are kept (result differs from gold under
Spider's execution match, DISTINCT removed), each also per gold query. Speeds are gold queries per
second for building alone (value sampling, then the AST work) and for building plus executing
(`build_synthetic` end to end).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SPIDER, load, tempdir  # noqa: E402
from workflow_scripts.core.sandbox import Sandbox  # noqa: E402
from workflow_scripts.core.schema import tables_from_schema  # noqa: E402
from workflow_scripts.core.scoring import MatchSettings  # noqa: E402
from workflow_scripts.data.ingest import DatasetSpec  # noqa: E402
from workflow_scripts.pairs.negatives import (  # noqa: E402
    NEGATIVE_TYPES,
    build_synthetic,
    column_values,
    literal_columns,
    make_negatives,
    parse,
)


def build_only(examples, schema, types, per_type, seed) -> tuple[int, float, float]:
    """Make every negative without executing; return (count, value-sampling seconds, AST seconds)."""
    tables = {db: tables_from_schema(schema, db) for db in examples["db_id"].unique()}
    rows = list(examples[["db_id", "db_path", "gold_sql"]].itertuples(index=False))
    t0 = time.perf_counter()
    values: dict[str, dict] = {}
    if "wrong_literal" in types:
        # one look-up per database, for the columns any of its queries compares with a value
        columns: dict[tuple[str, str], set] = {}
        for db_id, db_path, sql in rows:
            tree = parse(sql)
            if tree is not None:
                columns.setdefault((db_id, db_path), set()).update(literal_columns(tree, tables[db_id]))
        values = {db_id: column_values(path, cols, tables[db_id]) for (db_id, path), cols in columns.items()}
    t1 = time.perf_counter()
    made = 0
    for db_id, _, sql in rows:
        made += len(
            make_negatives(
                sql, tables[db_id], types=types, seed=seed, per_type=per_type, values=values.get(db_id)
            )
        )
    return made, t1 - t0, time.perf_counter() - t1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spider", type=Path, default=SPIDER)
    parser.add_argument("--limit", type=int, default=None, help="first N examples with a database")
    parser.add_argument("--per-type", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--types", default=",".join(NEGATIVE_TYPES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0, help="per-query limit in seconds")
    args = parser.parse_args()
    types = [t for t in args.types.split(",") if t]

    spec = DatasetSpec(
        "spider_train", args.spider / "train_spider.json", args.spider / "database", limit=args.limit
    )
    t0 = time.perf_counter()
    with tempdir() as tmp:
        data = load(spec, Path(tmp))
    examples, gold, schema = data["examples"], data["gold"], data["schema"]
    n = len(gold)
    print(
        f"Spider train: {n} runnable gold queries on {examples['db_id'].nunique()} databases "
        f"(ingested in {time.perf_counter() - t0:.0f} s); per_type={args.per_type} seed={args.seed}"
    )

    made, sample_s, ast_s = build_only(examples, schema, types, args.per_type, args.seed)
    t0 = time.perf_counter()
    # max_rows as at ingestion, so that gold and negatives are cut at the same row count
    with Sandbox(workers=args.workers, timeout_s=args.timeout, max_rows=100_000) as sandbox:
        out = build_synthetic(
            examples,
            gold,
            schema,
            sandbox,
            MatchSettings(),
            types=types,
            per_type=args.per_type,
            seed=args.seed,
        )
    total_s = time.perf_counter() - t0
    assert len(out) == made, (len(out), made)

    print(
        f"\n{'type':<18}{'made':>7}{'/gold':>7}{'exec':>8}{'/gold':>7}{'kept':>8}{'/gold':>7}"
        f"{'exec/made':>11}{'kept/made':>11}"
    )
    by_type = out.groupby("type", sort=False)
    for name in [*types, "all"]:
        part = out if name == "all" else (by_type.get_group(name) if name in by_type.groups else out[:0])
        m, e, k = len(part), int(part["executes"].sum()), int(part["kept"].sum())
        print(
            f"{name:<18}{m:>7}{m / n:>7.2f}{e:>8}{e / n:>7.2f}{k:>8}{k / n:>7.2f}"
            f"{e / max(m, 1):>11.1%}{k / max(m, 1):>11.1%}"
        )
    gold_with_kept = out.loc[out["kept"], "example_id"].nunique()
    print(f"\ngold queries with at least one kept negative: {gold_with_kept} ({gold_with_kept / n:.1%})")
    errors = Counter(out.loc[~out["executes"], "error_class"].fillna("?"))
    print("non-executing negatives by error class:", dict(errors.most_common()))
    verdicts = Counter(out["verdict"])
    print("verdicts:", dict(verdicts.most_common()))
    print(
        f"\nbuild (value sampling {sample_s:.1f} s + AST {ast_s:.1f} s): {n / (sample_s + ast_s):.0f} gold "
        f"queries/s, AST alone {n / ast_s:.0f} queries/s, {made / ast_s:.0f} negatives/s"
    )
    print(
        f"build + execute ({args.workers} sandbox workers, {len(out)} negatives): {total_s:.1f} s, "
        f"{n / total_s:.0f} gold queries/s, {len(out) / total_s:.0f} negatives/s"
    )


if __name__ == "__main__":
    main()
