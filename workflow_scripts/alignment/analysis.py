"""Alignment analysis of the workflow's own sets: the SQL of training sets and predictions, AR against ΔEX."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

# The training set each variant learnt from: DPO moves the policy towards the chosen SQL.
VARIANT_TRAINING_SET = {
    "sft": "sft_data",
    "dpo": "dpo_chosen",
    "sft_dpo": "sft+dpo_chosen",
    # GRPO moves the policy towards the answers it was rewarded for: the correct ones sampled in training.
    "grpo": "grpo_rewarded",
    "sft_grpo": "sft+sft_grpo_rewarded",
    "sft_aligned": "sft_aligned",
    "sft_random": "sft_random",
    "sft_misaligned": "sft_misaligned",
}
BASE = "base"


def completion_sql(data: pd.DataFrame) -> list[str]:
    """The SQL of each SFT example (its assistant completion)."""
    return [str(list(c)[-1]["content"]) for c in data["completion"]]


def training_sets(
    sft: list[str],
    chosen: list[str],
    rejected: list[str],
    *,
    with_sft_dpo: bool,
    rewarded: Mapping[str, list[str]],
    subsets: Mapping[str, list[str]],
) -> dict[str, list[str | None]]:
    """The SQL of every training set the workflow makes, by the name the analysis reports it under.

    `rewarded` holds each GRPO variant's rewarded answers (an `sft_` variant learnt the SFT data first),
    `subsets` the alignment-aware selection's SFT subsets.
    """
    sets: dict[str, list[str | None]] = {
        "sft_data": list(sft),
        "dpo_chosen": list(chosen),
        "dpo_rejected": list(rejected),
        "synth20": [*chosen, *rejected],
    }
    if with_sft_dpo:
        sets["sft+dpo_chosen"] = [*sft, *chosen]
    for variant, sql in rewarded.items():
        if variant.startswith("sft_"):
            sets[f"sft+{variant}_rewarded"] = [*sft, *sql]
        else:
            sets[f"{variant}_rewarded"] = list(sql)
    for name, sql in subsets.items():
        sets[f"sft_{name}"] = list(sql)
    return sets


def first_turn_sql(trajectories: pd.DataFrame) -> list[str | None]:
    """A rollout's one-shot predictions: the SQL of sample 0 at turn 1, one per example."""
    first = trajectories[(trajectories["turn"] == 1) & (trajectories["sample"] == 0)]
    first = first.sort_values(["example_id", "candidate"]).drop_duplicates("example_id")
    return [None if pd.isna(s) else str(s) for s in first["sql"]]


def variant_rows(table: pd.DataFrame, results: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per variant: its training set's AR and A_KL, its predictions' A_KL, EX and ΔEX over base.

    EX and ΔEX are on the examples both the variant and base were evaluated on.
    """
    by_set = table.set_index("set")
    base = results[BASE]
    rows = []
    for variant, o in results.items():
        common = o.index.intersection(base.index)
        base_first = float(base.loc[common, "first_correct"].mean())
        base_final = float(base.loc[common, "final_correct"].mean())
        train_set = VARIANT_TRAINING_SET.get(variant)
        has_set = train_set is not None and train_set in by_set.index
        rows.append({
            "variant": variant,
            "training set": train_set if has_set else None,
            "AR": by_set.loc[train_set, "AR"] if has_set else math.nan,
            "A_KL(target‖train)": by_set.loc[train_set, "A_KL"] if has_set else math.nan,
            "A_KL(target‖pred)": by_set.loc[f"pred_{variant}", "A_KL"],
            "examples": len(common),
            "base EX": base_first,
            "one-shot EX": float(o.loc[common, "first_correct"].mean()),
            "ΔEX one-shot": float(o.loc[common, "first_correct"].mean()) - base_first,
            "repair EX": float(o.loc[common, "final_correct"].mean()),
            "ΔEX repair": float(o.loc[common, "final_correct"].mean()) - base_final,
        })  # fmt: skip
    return pd.DataFrame(rows)


def correlation(variants: pd.DataFrame, column: str) -> dict[str, Any]:
    """Pearson's r of AR against `column` over the trained variants (NaN below 3 points or without spread)."""
    points = variants[variants["AR"].notna() & variants[column].notna()]
    r = math.nan
    if len(points) >= 3 and points["AR"].std() > 0 and points[column].std() > 0:
        r = float(np.corrcoef(points["AR"], points[column])[0, 1])
    return {"r": r, "points": len(points)}
