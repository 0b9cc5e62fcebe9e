"""Stage `alignment`: structural KL alignment of every training set and every variant's predictions.

python -m workflow_scripts.cli.alignment select --target-examples E --data-dir D --trajectories T ...
    --settings JSON --out-dir results/alignment/selection
python -m workflow_scripts.cli.alignment analyze --target-examples E --data-dir D --trajectories T ...
    --pairs results/pairs/merged/pairs.parquet --variant base=results/rollouts/eval_base ...
    [--selection-dir results/alignment/selection] --settings JSON --out-dir results/alignment
python -m workflow_scripts.cli.alignment table --target T --against NAME=FILE [NAME=FILE ...] [--out TABLE]

The target is the gold SQL of the evaluated examples of the eval set (`--target-limit`: the first N, as the
evaluation rolls out). `--settings` is the `alignment` config section as JSON (ngram_max, alpha, c,
sample_size {k, draws, seed}, selection {size, seed, ...}).

`select` writes SFT subsets of the same size, in the SFT data's format, those that `selection.subsets`
names: `aligned.parquet` (greedy, maximising A_KL(target‖subset)), `random.parquet` (seeded) and
`misaligned.parquet` (greedy, minimising it), plus `selection.json`. The target's queries
only rank the training queries; no target query enters a subset.

`analyze` writes `alignment.parquet` (one row per set: the training sets `sft_data`, `dpo_chosen`,
`dpo_rejected`, `synth20` = chosen and rejected SQL of the merged pairs, `grpo_rewarded` and
`sft+sft_grpo_rewarded` (the correct answers GRPO sampled, `--rewarded`), `sft+dpo_chosen` when an sft_dpo
variant is evaluated, the selection subsets; and `pred_{variant}`, each variant's turn-1 SQL on the target),
`variants.parquet` (AR of each variant's training set against ΔEX over base on the same examples),
`sample_size.parquet` (every bootstrap draw), `sample_size_summary.parquet` and `summary.json`.

`table` compares SQL files (one query per line, or Parquet with a `sql` column) with a target and prints the
table (alignment/kl.py has the definitions).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from workflow_scripts.alignment import kl as al
from workflow_scripts.alignment.analysis import (
    BASE,
    completion_sql,
    correlation,
    first_turn_sql,
    training_sets,
    variant_rows,
)
from workflow_scripts.cli import (
    command_parser,
    inherited_matching,
    json_argument,
    read_parquet,
    run_cli,
    setup_logging,
)
from workflow_scripts.core.artifacts import atomic_path, write_json, write_parquet
from workflow_scripts.core.config import DEFAULT_SUBSETS
from workflow_scripts.core.errors import UserError
from workflow_scripts.evaluation.matrix import outcomes
from workflow_scripts.train.data import sft_examples

log = logging.getLogger("alignment")


def target_examples(path: Path, limit: int | None) -> pd.DataFrame:
    """The evaluated examples of the eval set (the first `limit`, as the rollout takes them)."""
    examples = read_parquet(path, "target examples")
    missing = [c for c in ("gold_sql", "db_id") if c not in examples.columns]
    if missing:
        raise UserError(f"{str(path)!r} lacks {', '.join(missing)}. Fix: pass an ingested examples.parquet.")
    return examples.head(limit) if limit else examples


def sft_data(args: argparse.Namespace) -> pd.DataFrame:
    """The SFT examples exactly as the train_sft stage builds them."""
    examples = read_parquet(args.data_dir / "examples.parquet", "examples")
    trajectories = [read_parquet(p, "trajectories") for p in args.trajectories]
    return sft_examples(
        trajectories,
        examples,
        include_gold=args.include_gold,
        include_correct=args.include_correct,
        include_repair=args.include_repair,
    )


# ------------------------------------------------------------------------------------------- select


def select(args: argparse.Namespace) -> None:
    cfg = json_argument(args.settings, "--settings")
    sel = cfg["selection"]
    cache = al.NgramCache(cfg["ngram_max"])
    target = cache.distribution(
        al.templates(target_examples(args.target_examples, args.target_limit)["gold_sql"])
    )
    # the pool is the first-turn SFT rows: a repair row repeats its example's gold SQL under another prompt
    data = sft_data(args)
    data = data[data["source"] != "repair"].reset_index(drop=True)
    size = sel["size"]
    if size >= len(data):
        raise UserError(
            f"alignment.selection.size={size} is not smaller than the {len(data)} SFT examples, so both "
            "subsets would be all of them. Fix: lower alignment.selection.size or roll out more examples."
        )
    candidates = [None if t is None else cache(t) for t in al.templates(completion_sql(data))]
    pickers = {
        "aligned": lambda: al.greedy_select(target, candidates, size, cfg["alpha"]),
        "random": lambda: al.random_select(len(data), size, sel["seed"]),
        "misaligned": lambda: al.greedy_select(target, candidates, size, cfg["alpha"], misaligned=True),
    }
    picks = {name: pickers[name]() for name in sel.get("subsets", DEFAULT_SUBSETS)}
    report: dict[str, Any] = {
        "pool": len(data),
        "size": size,
        "seed": sel.get("seed"),  # None: no random subset, no seed used
        "subsets": list(picks),
        "target_queries": target.queries,
    }
    pool = cache.distribution(t for t in al.templates(completion_sql(data)))
    report["D_KL"] = {"pool": al.kl_divergence(target, pool, cfg["alpha"])}
    for name, idx in picks.items():
        subset = data.iloc[idx].reset_index(drop=True)
        dist = cache.distribution(al.templates(completion_sql(subset)))
        report["D_KL"][name] = al.kl_divergence(target, dist, cfg["alpha"])
        report[f"{name}_example_ids"] = subset["example_id"].to_list()
        provenance = {"selection": name, "settings": cfg, "matching": inherited_matching(args.trajectories)}
        write_parquet(subset, args.out_dir / f"{name}.parquet", provenance)
    log.info("selection: %s", report["D_KL"])
    write_json(report, args.out_dir / "selection.json")


# ------------------------------------------------------------------------------------------- analyze


def read_training_sets(args: argparse.Namespace, variants: Sequence[str]) -> dict[str, list[str | None]]:
    """The SQL of every training set the workflow makes, read from the files the rules pass."""
    pairs = read_parquet(args.pairs, "merged pairs")
    rewarded = {}
    for item in args.rewarded:
        variant, _, path = item.partition("=")
        rewarded[variant] = [str(s) for s in read_parquet(Path(path), f"{variant} rewarded SQL")["sql"]]
    subsets = {}
    if args.selection_dir is not None:
        made = json.loads((args.selection_dir / "selection.json").read_text()).get("subsets", DEFAULT_SUBSETS)
        for name in made:
            subsets[name] = completion_sql(
                read_parquet(args.selection_dir / f"{name}.parquet", f"{name} selection")
            )
    return training_sets(
        completion_sql(sft_data(args)),
        [str(s) for s in pairs["chosen"]],
        [str(s) for s in pairs["rejected"]],
        with_sft_dpo="sft_dpo" in variants,
        rewarded=rewarded,
        subsets=subsets,
    )


def analyze(args: argparse.Namespace) -> None:
    cfg = json_argument(args.settings, "--settings")
    alpha = cfg["alpha"]
    cache = al.NgramCache(cfg["ngram_max"])
    examples = target_examples(args.target_examples, args.target_limit)
    target_tmpl = al.templates(examples["gold_sql"])
    target = cache.distribution(target_tmpl)

    runs: dict[str, Path] = {}
    for item in args.variant:
        name, _, path = item.partition("=")
        runs[name] = Path(path)
    if BASE not in runs:
        raise UserError("analyze needs --variant base=DIR (AR is measured against the base predictions).")
    trajectories = {n: read_parquet(d / "trajectories.parquet", f"{n} trajectories") for n, d in runs.items()}
    train = {
        name: cache.distribution(al.templates(sql))
        for name, sql in read_training_sets(args, list(runs)).items()
    }
    preds = {
        f"pred_{n}": cache.distribution(al.templates(first_turn_sql(t))) for n, t in trajectories.items()
    }
    table, c = al.alignment_table(target, {**train, **preds}, alpha=alpha, c=cfg["c"], pred=f"pred_{BASE}")
    table.insert(1, "role", ["train" if s in train else "predictions" for s in table["set"]])
    table.loc[table["role"] == "predictions", "AR"] = math.nan

    variants = variant_rows(table, {n: outcomes(t) for n, t in trajectories.items()})
    ss = cfg["sample_size"]
    study = al.sample_size_study(
        target_tmpl, examples["db_id"].astype(str).to_list(), train, cache,
        ks=ss["k"], draws=ss["draws"], seed=ss["seed"], alpha=alpha, c=c,
    )  # fmt: skip
    summary = {
        "c": c,
        "c_rule": "fixed" if cfg["c"] is not None else "paper: lowest A_KL in the table = 1/e",
        "alpha": alpha,
        "ngram_max": cfg["ngram_max"],
        "target": {"queries": target.queries, "unparsed": target.unparsed, "ngrams": len(target.counts),
                   "databases": int(examples["db_id"].nunique())},
        "correlation_one_shot": correlation(variants, "ΔEX one-shot"),
        "correlation_repair": correlation(variants, "ΔEX repair"),
    }  # fmt: skip
    if args.selection_dir is not None:
        summary["selection"] = json.loads((args.selection_dir / "selection.json").read_text())
    provenance = {
        "alignment": cfg,
        "matching": inherited_matching([d / "trajectories.parquet" for d in runs.values()]),
    }
    out = args.out_dir
    write_parquet(table, out / "alignment.parquet", provenance)
    write_parquet(variants, out / "variants.parquet", provenance)
    write_parquet(study, out / "sample_size.parquet", provenance)
    write_parquet(al.summarize_sample_size(study), out / "sample_size_summary.parquet", provenance)
    write_json(summary, out / "summary.json")
    log.info("c = %.4g\n%s\n%s", c, table.to_string(index=False), variants.to_string(index=False))


# ---------------------------------------------------------------------------------------------- table


def kl_table(args: argparse.Namespace) -> None:
    """The alignment table of SQL files against a target (`table`)."""
    named = [_named_file(item) for item in args.against]
    names = [n for n, _ in named]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(
            f"--against names {', '.join(duplicates)} more than once. Fix: give each set its own name."
        )
    cache = al.NgramCache(args.ngram_max)
    target = cache.distribution(al.templates(al.read_sql_file(args.target), args.workers))
    sets = {n: cache.distribution(al.templates(al.read_sql_file(p), args.workers)) for n, p in named}
    table, c = al.alignment_table(
        target, sets, alpha=args.alpha, c=args.c, pred=al.PRED_NAME if al.PRED_NAME in sets else None
    )
    print(
        f"target: {target.queries} queries, {target.unparsed} unparsed, {len(target.counts)} distinct n-grams"
    )
    rule = "fixed" if args.c is not None else "paper rule: lowest A_KL = 1/e"
    print(f"c = {c:.6g} ({rule}), alpha = {args.alpha}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        write_table(table, args.out)


def _named_file(item: str) -> tuple[str, Path]:
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
        raise UserError(f"--against {item!r} is not NAME=FILE. Fix: write e.g. --against train=train.sql.")
    return name, Path(path)


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write the table as CSV or Parquet (by the file's extension), atomically."""
    if path.suffix == ".parquet":
        write_parquet(table, path)
    elif path.suffix == ".csv":
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
    else:
        raise UserError(f"--out {str(path)!r} must end in .csv or .parquet. Fix: choose one of those.")


def main(argv: list[str] | None = None) -> None:
    parser, sub = command_parser(__doc__)
    for name, func, help_text in (
        ("select", select, "aligned, random and misaligned SFT subsets of one size"),
        ("analyze", analyze, "the alignment table, AR against ΔEX and the sample-size study"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--target-examples", type=Path, required=True, help="the eval set's examples.parquet")
        p.add_argument("--target-limit", type=int, help="only the first N examples (as evaluated)")
        p.add_argument("--data-dir", type=Path, required=True, help="the SFT data set's directory")
        p.add_argument("--trajectories", type=Path, nargs="+", required=True, help="the SFT data's rollouts")
        p.add_argument("--include-gold", action=argparse.BooleanOptionalAction, default=True)
        p.add_argument("--include-correct", action=argparse.BooleanOptionalAction, default=True)
        p.add_argument("--include-repair", action=argparse.BooleanOptionalAction, default=False)
        p.add_argument("--settings", required=True, help="the `alignment` config section as JSON")
        p.add_argument("--out-dir", type=Path, required=True)
        p.set_defaults(func=func)
        if name == "analyze":
            p.add_argument("--pairs", type=Path, required=True, help="the merged pairs (pairs.parquet)")
            p.add_argument("--variant", action="append", required=True, metavar="NAME=ROLLOUT_DIR")
            p.add_argument("--selection-dir", type=Path, help="the output directory of `select`")
            p.add_argument(
                "--rewarded",
                action="append",
                default=[],
                metavar="VARIANT=FILE",
                help="a GRPO variant's rewarded.parquet (the correct answers sampled in training)",
            )
    p = sub.add_parser("table", help="the alignment table of SQL files against a target")
    p.set_defaults(func=kl_table)
    p.add_argument("--target", type=Path, required=True, help="the target SQL (one per line or Parquet)")
    p.add_argument(
        "--against",
        nargs="+",
        required=True,
        metavar="NAME=FILE",
        help=f"sets to compare; name {al.PRED_NAME} the base model's predictions on the target to get AR",
    )
    p.add_argument("--ngram-max", type=int, default=al.NGRAM_MAX)
    p.add_argument("--alpha", type=float, default=al.ALPHA, help="additive smoothing of each set")
    p.add_argument("--c", type=float, help="A_KL scale (default: the paper's rule, lowest score 1/e)")
    p.add_argument("--workers", type=int, default=1, help="processes that parse SQL")
    p.add_argument("--out", type=Path, help="write the table here (.csv or .parquet)")
    args = parser.parse_args(argv)
    setup_logging()
    args.func(args)


if __name__ == "__main__":
    run_cli(main)
