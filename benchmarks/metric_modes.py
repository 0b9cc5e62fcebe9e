"""One predictions file, three metric modes: where spider, bird and strict disagree, on Spider's train split.

Usage: python benchmarks/metric_modes.py [--spider DIR] [--limit N] [--out DIR]

Two predictions files are scored with `workflow_scripts.evaluate` under every mode:

- `gold.sql`: Spider's own gold SQL (`train_gold.sql`'s format: SQL, TAB, db_id; one line per example);
- `rewrites.sql`: the gold SQL with one evaluator-sensitive rewrite per example where one applies (sqlglot
  AST edits, a fixed seed): `distinct_toggled` (DISTINCT added to, or removed from, the outer SELECT),
  `columns_reversed` (the outer SELECT's columns in reverse order), `order_dropped` (ORDER BY removed
  where there is no LIMIT). These are the ways a model's answer commonly differs from the gold without
  being wrong for a reader, and where evaluators disagree.

It prints EX per mode and, for the rewrites, per rewrite type the share each mode counts correct. The
predictions files are written to --out, so the same numbers come from the command line:
`python -m workflow_scripts.evaluate --dataset .../train_spider.json --db-root .../database
--pred OUT/rewrites.sql --metric bird --out DIR`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402
import sqlglot  # noqa: E402
from sqlglot import exp  # noqa: E402

from workflow_scripts.core.matching import METRICS  # noqa: E402
from workflow_scripts.core.sandbox import Sandbox  # noqa: E402
from workflow_scripts.core.scoring import MatchSettings, execute_gold  # noqa: E402
from workflow_scripts.data.ingest import DatasetSpec, normalize_records, read_records  # noqa: E402
from workflow_scripts.evaluation.predictions import evaluate  # noqa: E402

SPIDER = REPO.parent / "shared" / "data" / "spider"
REWRITES = ("distinct_toggled", "columns_reversed", "order_dropped")


def rewrite(sql: str, rng: random.Random) -> tuple[str, str]:
    """One evaluator-sensitive rewrite of `sql` (type, new SQL), or ("none", sql) when none applies."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except sqlglot.errors.ParseError:
        return "none", sql
    if not isinstance(tree, exp.Select):
        return "none", sql
    applicable = ["distinct_toggled"]  # one of the applicable rewrites, chosen uniformly
    if len(tree.expressions) >= 2:
        applicable.append("columns_reversed")
    if tree.args.get("order") is not None and tree.args.get("limit") is None:
        applicable.append("order_dropped")
    kind = rng.choice(applicable)
    edited = tree.copy()
    if kind == "distinct_toggled":
        edited.set("distinct", None if edited.args.get("distinct") else exp.Distinct())
    elif kind == "columns_reversed":
        edited.set("expressions", list(reversed(edited.expressions)))
    else:
        edited.set("order", None)
    return kind, edited.sql(dialect="sqlite")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spider", type=Path, default=SPIDER)
    parser.add_argument("--limit", type=int, help="the first N examples only")
    parser.add_argument("--out", type=Path, help="directory for the predictions files (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="metric_modes_"))
    out.mkdir(parents=True, exist_ok=True)

    data = args.spider / "train_spider.json"
    records = read_records(data)[: args.limit] if args.limit else read_records(data)
    if args.limit:
        data = out / "train_spider_head.json"
        data.write_text(json.dumps(records))
    rng = random.Random(args.seed)
    kinds, rewritten = [], []
    for r in records:
        kind, sql = rewrite(r["query"], rng)
        kinds.append(kind)
        rewritten.append(sql)
    files = {
        "gold": [f"{' '.join(r['query'].split())}\t{r['db_id']}" for r in records],
        "rewrites": [f"{' '.join(s.split())}\t{r['db_id']}" for s, r in zip(rewritten, records, strict=True)],
    }
    for name, lines in files.items():
        (out / f"{name}.sql").write_text("\n".join(lines) + "\n")
    predictions = {name: [line.split("\t", 1)[0] for line in lines] for name, lines in files.items()}

    spec = DatasetSpec("spider_train", data, args.spider / "database")
    examples, skipped = normalize_records(records, spec, "skip")
    summary_rows, per_kind = [], {}
    with Sandbox(workers=2, max_rows=100_000, timeout_s=5.0) as sandbox:
        for metric in METRICS:
            settings = MatchSettings(metric=metric)
            start = time.perf_counter()
            gold, failed = execute_gold(examples, sandbox, settings)
            excluded = pd.concat([f for f in (skipped, failed) if len(f)] or [skipped], ignore_index=True)
            for name, preds in predictions.items():
                per_example, summary = evaluate(examples, gold, excluded, preds, sandbox, settings)
                summary_rows.append(
                    {
                        "predictions": name,
                        "metric": metric,
                        "EX": summary["ex"],
                        "correct": summary["correct"],
                        "denominator": summary["denominator"],
                        "seconds": round(time.perf_counter() - start, 1),
                    }
                )
                if name == "rewrites":
                    per_kind[metric] = per_example["correct"].to_numpy()
    print(f"{len(records)} examples, {len(skipped)} without a database; predictions in {out}\n")
    print(pd.DataFrame(summary_rows).to_markdown(index=False))
    kinds_s = pd.Series(kinds)
    scored = ~pd.Series(range(len(records))).isin(excluded["position"])
    rows = []
    for kind in (*REWRITES, "none"):
        mask = (kinds_s == kind) & scored
        rows.append(
            {"rewrite": kind, "examples": int(mask.sum())}
            | {m: f"{per_kind[m][mask.to_numpy()].mean():.1%}" if mask.any() else "" for m in METRICS}
        )
    print("\nshare of the rewritten predictions each mode counts correct (scored examples):\n")
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
