"""Stage `pairs`: natural pairs from a rollout, synthetic hard negatives, and the Synth20 merge.

python -m workflow_scripts.cli.pairs mine --run NAME --trajectories T --data-dir D --out F [...]
python -m workflow_scripts.cli.pairs synthetic --data-dir D --settings JSON --out-dir O [...]
python -m workflow_scripts.cli.pairs merge --input NAME=FILE ... --settings JSON --out-dir O
"""

from __future__ import annotations

import argparse
import json
import logging
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
    setup_logging,
)
from workflow_scripts.core.artifacts import write_json, write_parquet
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.pairs.merge import MergeSettings, merge_pairs, quality
from workflow_scripts.pairs.mining import mine_pairs, synthetic_pairs, to_trl
from workflow_scripts.pairs.negatives import build_synthetic
from workflow_scripts.rollout.loop import prepare_examples
from workflow_scripts.rollout.settings import RolloutSettings

log = logging.getLogger("pairs")


def mine(args: argparse.Namespace) -> None:
    trajectories = pd.read_parquet(args.trajectories)
    examples = pd.read_parquet(args.data_dir / "examples.parquet")
    gold_sql = dict(zip(examples["id"], examples["gold_sql"], strict=True))
    pairs = mine_pairs(
        trajectories,
        args.run,
        gold_sql=gold_sql,
        use_gold_when_failed=args.use_gold_when_failed,
        max_pairs_per_group=args.max_pairs_per_group,
        min_cost_gap=args.min_cost_gap,
    )
    log.info("%s: %d natural pairs %s", args.run, len(pairs), pairs["type"].value_counts().to_dict())
    provenance = {
        "run": args.run,
        "use_gold_when_failed": args.use_gold_when_failed,
        "matching": inherited_matching([args.trajectories]),
    }
    write_parquet(pairs, args.out, provenance)


def synthetic(args: argparse.Namespace) -> None:
    settings = json_argument(args.settings, "--settings")
    run = json_argument(args.run_settings, "--run-settings")
    examples = pd.read_parquet(args.data_dir / "examples.parquet")
    gold = pd.read_parquet(args.data_dir / "gold.parquet")
    schema = pd.read_parquet(args.data_dir / "schema.parquet")
    sandbox_cfg, match = execution_settings(args)
    check_ingested(args.data_dir, match)
    with Sandbox(**sandbox_cfg) as sandbox:
        negatives = build_synthetic(
            examples,
            gold,
            schema,
            sandbox,
            match,
            types=settings["types"],
            per_type=settings["per_type"],
            seed=settings["seed"],
            progress=True,
        )
    # The prompt a pair is stored under is the first-turn prompt the mining run would show for the example.
    prepared = prepare_examples(examples, gold, schema, RolloutSettings.from_keys(run))
    prompts = {p.id: json.dumps(p.prompt) for p in prepared}
    pairs = synthetic_pairs(negatives, prompts)
    log.info("%d negatives, %d kept, %d pairs", len(negatives), int(negatives["kept"].sum()), len(pairs))
    provenance = {"synthetic": settings, "keep_distinct": match.keep_distinct, "matching": match.to_config()}
    write_parquet(negatives, args.out_dir / "negatives.parquet", provenance)
    write_parquet(pairs, args.out_dir / "pairs.parquet", provenance)


def merge(args: argparse.Namespace) -> None:
    cfg = json_argument(args.settings, "--settings")
    settings = MergeSettings.from_config(cfg)
    inputs: dict[str, pd.DataFrame] = {}
    for item in args.input:  # several files may feed one input (e.g. natural pairs of several runs)
        name, _, path = item.partition("=")
        frames = [f for f in (inputs.get(name), pd.read_parquet(path)) if f is not None and len(f)]
        inputs[name] = pd.concat(frames, ignore_index=True) if frames else pd.read_parquet(path)
    negatives = pd.read_parquet(args.negatives) if args.negatives else None
    before = pd.concat([df.assign(input=n) for n, df in inputs.items() if len(df)] or [pd.DataFrame()])
    merged = merge_pairs(inputs, settings)
    if merged.empty:
        raise UserError(
            "the merge kept no preference pair (inputs: "
            + ", ".join(f"{n}={len(df)}" for n, df in inputs.items())
            + "). Fix: roll out more train examples (runs.*.limit, num_samples, temperature), enable "
            "mining.use_gold_when_failed, or loosen merge.min_reward_margin / max_sql_edit_distance_ratio."
        )
    report = {
        "before": quality(before, negatives=negatives) if len(before) else {"pairs": 0},
        "after": quality(merged),
        "inputs": {n: len(df) for n, df in inputs.items()},
        "settings": cfg,
    }
    log.info("merged %d of %d pairs", len(merged), len(before))
    provenance = {
        "merge": cfg,
        "matching": inherited_matching([Path(i.partition("=")[2]) for i in args.input]),
    }
    write_parquet(merged, args.out_dir / "pairs.parquet", provenance)
    write_parquet(to_trl(merged), args.out_dir / "train.parquet", provenance)
    write_json(report, args.out_dir / "quality.json")


def main(argv: list[str] | None = None) -> None:
    parser, sub = command_parser(__doc__)
    p = sub.add_parser("mine", help="natural pairs of one rollout run")
    p.add_argument("--run", required=True)
    p.add_argument("--trajectories", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--use-gold-when-failed", action="store_true")
    p.add_argument("--max-pairs-per-group", type=int, default=2)
    p.add_argument("--min-cost-gap", type=float, help="mine cheaper_correct pairs with this plan-cost gap")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=mine)
    p = sub.add_parser("synthetic", help="synthetic hard negatives and their pairs")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--settings", required=True, help="the `synthetic` config section as JSON")
    p.add_argument(
        "--run-settings", required=True, help="the run's prompt keys (rollout.settings.PROMPT_KEYS) as JSON"
    )
    add_execution_argument(p)
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(func=synthetic)
    p = sub.add_parser("merge", help="the Synth20 merge")
    p.add_argument("--input", action="append", required=True, metavar="NAME=FILE")
    p.add_argument("--negatives", type=Path, help="negatives.parquet, for the quality report")
    p.add_argument("--settings", required=True, help="the `merge` config section as JSON")
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(func=merge)
    args = parser.parse_args(argv)
    setup_logging()
    args.func(args)


if __name__ == "__main__":
    run_cli(main)
