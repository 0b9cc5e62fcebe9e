"""Stage `train`: LoRA SFT on correct SQL, DPO on mined preference pairs, and GRPO rewarded by the sandbox.

python -m workflow_scripts.cli.train sft --model M --data-dir D --trajectories T1 [T2 ...] --settings JSON
    --out DIR [--no-include-gold] [--no-include-correct] [--include-repair]
python -m workflow_scripts.cli.train sft --model M --sft-data SUBSET.parquet --settings JSON --out DIR
python -m workflow_scripts.cli.train dpo --model M --pairs results/pairs/merged/train.parquet
    --settings JSON [--init-adapter DIR] --out DIR
python -m workflow_scripts.cli.train grpo --model M --data-dir results/data/TRAIN --rollout JSON
    --execution JSON --settings JSON [--init-adapter DIR] --out DIR

`--settings` is a JSON object with the keys of `train.settings.TrainSettings` (learning_rate, max_steps,
epochs, per_device_batch_size, gradient_accumulation_steps, gradient_checkpointing, max_length, seed,
precision, logging_steps, warmup_ratio, beta, loss_type, margin_aware, margin_scale, precompute_ref) and of
`train.settings.LoraSettings` (r, alpha, dropout, target_modules), the latter flat or nested under "lora",
and the run keys checkpoint_steps, save_total_limit and report_to (a killed run resumes from its checkpoint;
`--tracking-dir` receives TensorBoard's event files);
missing keys take their defaults; `grpo` also takes the keys of `train.settings.GRPOSettings`. `--out` becomes
the PEFT adapter directory, with the run's metrics.json
(losses, step times, peak memory, settings and inputs) inside; it is written only when training succeeds.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from workflow_scripts.cli import (
    add_execution_argument,
    command_parser,
    execution_settings,
    inherited_matching,
    json_argument,
    read_parquet,
    run_cli,
    setup_logging,
)
from workflow_scripts.core.errors import UserError
from workflow_scripts.rollout.loop import prepare_examples
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.train.data import sft_examples
from workflow_scripts.train.dpo import train_dpo
from workflow_scripts.train.grpo import train_grpo
from workflow_scripts.train.settings import GRPOSettings, settings_from_dict
from workflow_scripts.train.sft import train_sft

log = logging.getLogger("train")


def sft(args: argparse.Namespace) -> None:
    cfg = json_argument(args.settings, "--settings")
    lora, settings = settings_from_dict(cfg)
    if args.sft_data is not None:
        if args.data_dir is not None or args.trajectories:
            raise UserError("--sft-data replaces --data-dir and --trajectories. Fix: pass one or the other.")
        data = read_parquet(args.sft_data, "SFT data")
        provenance: dict[str, Any] = {
            "sft_data": str(args.sft_data),
            "matching": inherited_matching([args.sft_data]),
        }
    else:
        if args.data_dir is None or not args.trajectories:
            raise UserError("sft needs --data-dir and --trajectories (or --sft-data). Fix: pass them.")
        examples = read_parquet(args.data_dir / "examples.parquet", "examples")
        trajectories = [read_parquet(path, "trajectories") for path in args.trajectories]
        data = sft_examples(
            trajectories,
            examples,
            include_gold=args.include_gold,
            include_correct=args.include_correct,
            include_repair=args.include_repair,
        )
        provenance = {
            "data_dir": str(args.data_dir),
            "trajectories": [str(p) for p in args.trajectories],
            "include_gold": args.include_gold,
            "include_correct": args.include_correct,
            "include_repair": args.include_repair,
            "matching": inherited_matching(args.trajectories),
        }
    log.info(
        "%d SFT examples %s", len(data), data["source"].value_counts().to_dict() if "source" in data else {}
    )
    provenance = {"model": str(args.model), **provenance, "settings": cfg}
    metrics = train_sft(
        args.model, data, args.out, lora, settings, provenance=provenance, tracking_dir=args.tracking_dir
    )
    log.info(
        "SFT: %d steps, loss %.4f, %.1f s", metrics["steps"], metrics["train_loss"], metrics["train_seconds"]
    )


def dpo(args: argparse.Namespace) -> None:
    cfg = json_argument(args.settings, "--settings")
    lora, settings = settings_from_dict(cfg)
    pairs = read_parquet(args.pairs, "pairs")
    provenance = {
        "model": str(args.model),
        "pairs": str(args.pairs),
        "init_adapter": str(args.init_adapter) if args.init_adapter else None,
        "settings": cfg,
        "matching": inherited_matching([args.pairs]),
    }
    metrics = train_dpo(
        args.model,
        pairs,
        args.out,
        lora,
        settings,
        init_adapter=args.init_adapter,
        provenance=provenance,
        tracking_dir=args.tracking_dir,
    )
    log.info(
        "DPO: %d steps, loss %.4f, %.1f s", metrics["steps"], metrics["train_loss"], metrics["train_seconds"]
    )


def grpo(args: argparse.Namespace) -> None:
    cfg = json_argument(args.settings, "--settings")
    grpo_keys = {f.name for f in fields(GRPOSettings)}
    grpo_settings = GRPOSettings.from_config(cfg)
    lora, settings = settings_from_dict({k: v for k, v in cfg.items() if k not in grpo_keys})
    run = json_argument(args.rollout, "--rollout")
    examples = read_parquet(args.data_dir / "examples.parquet", "examples")
    if grpo_settings.limit:
        examples = examples.head(grpo_settings.limit)
    prepared = prepare_examples(
        examples,
        read_parquet(args.data_dir / "gold.parquet", "gold results"),
        read_parquet(args.data_dir / "schema.parquet", "schema"),
        RolloutSettings.from_keys(run),
    )
    sandbox_cfg, match = execution_settings(args)
    provenance = {
        "model": str(args.model),
        "data_dir": str(args.data_dir),
        "init_adapter": str(args.init_adapter) if args.init_adapter else None,
        "settings": cfg,
        "matching": asdict(match),
    }
    log.info("GRPO on %d prompts: %s", len(prepared), grpo_settings)
    metrics = train_grpo(
        args.model,
        prepared,
        args.out,
        lora,
        settings,
        grpo_settings,
        rollout=RolloutSettings.from_keys(run),
        sandbox=sandbox_cfg,
        match=match,
        init_adapter=args.init_adapter,
        provenance=provenance,
        tracking_dir=args.tracking_dir,
    )
    last = metrics["log"][-1] if metrics["log"] else {}
    log.info(
        "GRPO: %d steps, %.1f s, last reward %s, share correct %s",
        metrics["steps"],
        metrics["train_seconds"],
        last.get("reward"),
        last.get("rewards/correct/mean"),
    )


def main(argv: list[str] | None = None) -> None:
    parser, sub = command_parser(__doc__)
    p = sub.add_parser("sft", help="LoRA SFT on correct rollout SQL and gold SQL")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, help="the data set's directory (examples.parquet)")
    p.add_argument("--trajectories", type=Path, nargs="+", default=[])
    p.add_argument(
        "--sft-data",
        type=Path,
        help="ready SFT examples (Parquet with prompt and completion), "
        "e.g. a subset chosen by the alignment stage, instead of --data-dir and --trajectories",
    )
    p.add_argument("--include-gold", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--include-correct", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--include-repair",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also the gold SQL under each repair prompt of the rollouts (teaches repair from feedback)",
    )
    p.add_argument("--settings", default="{}", help="training settings as JSON")
    p.add_argument("--out", type=Path, required=True, help="the adapter directory to write")
    p.set_defaults(func=sft)
    p = sub.add_parser("dpo", help="LoRA DPO on preference pairs")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument(
        "--pairs", type=Path, required=True, help="pairs Parquet (e.g. pairs/merged/train.parquet)"
    )
    p.add_argument("--init-adapter", type=Path, help="an SFT adapter to continue from (SFT→DPO)")
    p.add_argument("--settings", default="{}", help="training settings as JSON")
    p.add_argument("--out", type=Path, required=True, help="the adapter directory to write")
    p.set_defaults(func=dpo)
    p = sub.add_parser("grpo", help="LoRA GRPO rewarded by the sandbox (one-shot or repair-aware)")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, required=True, help="the ingested train data set's directory")
    p.add_argument(
        "--rollout", required=True, help="the episodes' rollout keys (rollout.settings.EPISODE_KEYS) as JSON"
    )
    add_execution_argument(p)
    p.add_argument("--init-adapter", type=Path, help="an SFT adapter to continue from (SFT→GRPO)")
    p.add_argument("--settings", default="{}", help="the `training.grpo` settings (and `lora`) as JSON")
    p.add_argument("--out", type=Path, required=True, help="the adapter directory to write")
    p.set_defaults(func=grpo)
    for command in sub.choices.values():
        command.add_argument(
            "--tracking-dir",
            type=Path,
            help="where TensorBoard's event files go with report_to: [tensorboard] (default: OUT.tracking)",
        )
    args = parser.parse_args(argv)
    setup_logging()
    args.func(args)


if __name__ == "__main__":
    run_cli(main)
