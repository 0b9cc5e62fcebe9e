"""Stage `evaluate`: the evaluation matrix of the variants, and the scoring of an external predictions file.

python -m workflow_scripts.cli.evaluate compare --variant NAME=ROLLOUT_DIR ... --out-dir DIR
python -m workflow_scripts.cli.evaluate score (--dataset DEV.json --db-root DIR | --ingested DIR) \
    --pred PRED --out DIR [--metric spider|bird|strict] [--execution JSON]

`score` is also `python -m workflow_scripts.evaluate`. PRED is one SQL per line in data set order (the Spider
convention; a TAB and what follows it is ignored) or JSONL with `id` and `sql`. It writes
OUTDIR/per_example.parquet and OUTDIR/summary.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from workflow_scripts.cli import (
    add_execution_argument,
    check_ingested,
    command_parser,
    execution_settings,
    inherited_matching,
    json_argument,
    run_cli,
)
from workflow_scripts.core.artifacts import write_json, write_parquet
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.matching import BIRD
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.scoring import execute_gold
from workflow_scripts.core.ts_databases import execute_gold_ts
from workflow_scripts.data.ingest import DatasetSpec, normalize_records, read_records
from workflow_scripts.evaluation.matrix import (
    breakdowns,
    compare_table,
    example_groups,
    outcomes,
    paired_stats,
    paired_voting,
    routing,
    taxonomy,
    with_unscored,
)
from workflow_scripts.evaluation.predictions import (
    evaluate,
    format_summary,
    load_ingested,
    read_predictions,
    record_ids,
)


def compare(args: argparse.Namespace) -> None:
    """The compare table, taxonomy, routing and paired statistics of the variants' eval rollouts."""
    results = {}
    files = []
    for item in args.variant:
        name, _, path = item.partition("=")
        files.append(Path(path) / "trajectories.parquet")
        results[name] = outcomes(pd.read_parquet(files[-1]))
    matching = inherited_matching(files)
    groups: dict[str, pd.Series] = {}
    if args.examples is not None:
        examples = pd.read_parquet(args.examples)
        groups = example_groups(examples)
        excluded_file = args.examples.parent / "excluded.parquet"
        if (matching or {}).get("metric") == BIRD and excluded_file.is_file():
            # BIRD: every question in the denominator; an unscorable one counts as wrong
            results = with_unscored(results, examples, pd.read_parquet(excluded_file))
    tables = {
        "compare": compare_table(results, seed=args.seed),
        # EX by BIRD difficulty, the demo's question family and Spider hardness (whichever the data allows)
        "difficulty": breakdowns(results, groups),
        "taxonomy": taxonomy(results),
        "routing": routing(results),
        "paired_one_shot": paired_stats(results, "first_correct", seed=args.seed),
        "paired_repair": paired_stats(results, "final_correct", seed=args.seed),
        "paired_voting": paired_voting(results, seed=args.seed),
        "outcomes": pd.concat(
            {n: o for n, o in results.items()}, names=["variant", "example_id"]
        ).reset_index(),
    }
    for name, table in tables.items():
        write_parquet(
            table, args.out_dir / f"{name}.parquet", {"variants": list(results), "matching": matching}
        )
    write_json(json.loads(tables["compare"].to_json(orient="records")), args.out_dir / "compare.json")


def score(args: argparse.Namespace) -> None:
    """Score a predictions file and print its summary."""
    sandbox_cfg, settings = execution_settings(args)
    sandbox_cfg = {
        "workers": 2,
        "max_rows": 100_000,
        **sandbox_cfg,
        **json_argument(args.sandbox, "--sandbox"),
    }
    with Sandbox(**sandbox_cfg) as sandbox:
        if args.ingested is not None:
            check_ingested(args.ingested, settings)
            examples, gold, excluded, n_records = load_ingested(args.ingested)
            ts_file = args.ingested / "gold_ts.parquet"
            gold_ts = pd.read_parquet(ts_file) if ts_file.is_file() else None
        else:
            spec = DatasetSpec(name=args.dataset.stem, path=args.dataset, db_root=args.db_root)
            records = read_records(spec.path)
            examples, skipped = normalize_records(records, spec, args.missing_db)
            gold, failed = execute_gold(examples, sandbox, settings, progress="gold SQL")
            gold_ts = None
            if args.test_suite_root is not None:
                gold_ts, ts_failed = execute_gold_ts(
                    examples[examples["id"].isin(gold["id"])], args.test_suite_root, sandbox, settings
                )
                gold = gold[~gold["id"].isin(ts_failed["id"])]
                failed = pd.concat([f for f in (failed, ts_failed) if len(f)] or [failed], ignore_index=True)
            excluded = pd.concat([f for f in (skipped, failed) if len(f)] or [skipped], ignore_index=True)
            n_records = len(records)
        ids = record_ids(examples, excluded, n_records)
        predictions = read_predictions(args.pred, ids)
        if args.r_ves < 0:
            raise UserError(
                f"--r-ves {args.r_ves} is negative. Fix: give the number of timing runs (0 = off)."
            )
        per_example, summary = evaluate(
            examples, gold, excluded, predictions, sandbox, settings, gold_ts, r_ves_repeats=args.r_ves
        )
    summary["predictions"] = str(args.pred)
    provenance = {"predictions": str(args.pred), "matching": settings.to_config()}
    write_parquet(per_example, args.out / "per_example.parquet", provenance)
    write_json(summary, args.out / "summary.json")
    print(format_summary(summary), file=sys.stdout)


def main(argv: list[str] | None = None) -> None:
    parser, sub = command_parser(__doc__)
    p = sub.add_parser("compare", help="the evaluation matrix of the variants")
    p.set_defaults(func=compare)
    p.add_argument("--variant", action="append", required=True, metavar="NAME=ROLLOUT_DIR")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument(
        "--examples",
        type=Path,
        help="examples.parquet of the eval set (for EX by difficulty, family, hardness)",
    )
    p.add_argument("--out-dir", type=Path, required=True)
    p = sub.add_parser("score", help="score an external predictions file")
    p.set_defaults(func=score)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", type=Path, help="JSON/JSONL data set")
    source.add_argument("--ingested", type=Path, help="a data set directory written by the ingest stage")
    p.add_argument("--db-root", type=Path, help="directory of {db_id}/{db_id}.sqlite")
    p.add_argument(
        "--test-suite-root",
        type=Path,
        help="test-suite databases, {root}/{db_id}/*.sqlite (Spider's database_ts): correct only on all",
    )
    p.add_argument("--pred", type=Path, required=True, help="predictions: SQL per line, or JSONL id/sql")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument(
        "--missing-db",
        choices=["error", "skip"],
        default="skip",
        help="examples whose database is missing: skip (default, counted apart) or error",
    )
    add_execution_argument(p)
    p.add_argument(
        "--r-ves",
        type=int,
        default=0,
        metavar="REPEATS",
        help="add R-VES (BIRD's reward-based valid efficiency): time each correct prediction and its gold "
        "SQL REPEATS times (BIRD uses 100); 0 = off",
    )
    p.add_argument("--keep-distinct", action="store_true", help="spider mode: do not remove DISTINCT")
    p.add_argument("--sandbox", default="{}", help="sandbox settings as JSON (timeout_s, workers, ...)")
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    run_cli(main)
