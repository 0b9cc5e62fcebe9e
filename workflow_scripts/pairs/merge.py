"""The Synth20 merge: preference pairs from several inputs, filtered, capped and shuffled; pair quality.

Caps are fractions of the merged total: an input (e.g. synthetic ≤ 0.20) or a pair type (e.g.
`gold_vs_failed_attempt` ≤ 0.20) may hold at most that share of the pairs that are finally kept. Since
dropping pairs shrinks the total, the caps are applied until no count changes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class MergeSettings:
    """Filters and caps of the merge (see `merge` in config.yaml)."""

    input_fractions: Mapping[str, float] = field(default_factory=dict)
    type_fractions: Mapping[str, float] = field(default_factory=dict)
    min_reward_margin: float = 0.0
    max_edit_ratio: float = 1.0
    seed: int = 0

    @classmethod
    def from_config(cls, merge: Mapping[str, Any]) -> MergeSettings:
        """The settings of config.yaml's `merge` section."""
        return cls(
            input_fractions=merge["input_fractions"],
            type_fractions=merge["type_fractions"],
            min_reward_margin=merge["min_reward_margin"],
            max_edit_ratio=merge["max_sql_edit_distance_ratio"],
            seed=merge["seed"],
        )


def filter_pairs(pairs: pd.DataFrame, settings: MergeSettings) -> pd.DataFrame:
    """Drop pairs that teach nothing: unverified chosen SQL, small margins, distant or duplicate pairs.

    A pair whose rejected SQL is verified correct too (a cost pair: its preference is the cost gap it was
    mined with, its reward margin is 0) is exempt from the reward-margin filter.
    """
    cost_pair = pairs["rejected_verdict"] == "correct"
    keep = (
        (pairs["chosen_verdict"] == "correct")
        & (pairs["chosen"] != pairs["rejected"])
        & ((pairs["margin"] >= settings.min_reward_margin) | cost_pair)
        & (pairs["edit_ratio"] <= settings.max_edit_ratio)
    )
    return pairs[keep].drop_duplicates(["prompt", "chosen", "rejected"]).reset_index(drop=True)


def cap_counts(groups: Mapping[str, int], fractions: Mapping[str, float], others: int = 0) -> dict[str, int]:
    """Return how many pairs each group keeps so that no capped group exceeds its fraction of the total.

    `others` counts pairs outside `groups` that are always kept.
    """
    counts = dict(groups)
    while True:
        total = others + sum(counts.values())
        capped = {g: min(n, math.floor(fractions[g] * total + 1e-9)) if g in fractions else n
                  for g, n in counts.items()}  # fmt: skip
        if capped == counts:
            return counts
        counts = capped


def merge_pairs(inputs: Mapping[str, pd.DataFrame], settings: MergeSettings) -> pd.DataFrame:
    """Merge filtered inputs under the input and type caps; return them in a seeded random order."""
    frames = [filter_pairs(df, settings).assign(input=name) for name, df in inputs.items() if len(df)]
    if not frames:
        return (
            pd.DataFrame(columns=[*next(iter(inputs.values())).columns, "input"])
            if inputs
            else pd.DataFrame()
        )
    pool = pd.concat(frames, ignore_index=True).drop_duplicates(["prompt", "chosen", "rejected"])
    rng = random.Random(settings.seed)
    pool = pool.iloc[rng.sample(range(len(pool)), len(pool))].reset_index(drop=True)
    # Inputs first, then types; repeat both until stable, since each pass shrinks the total.
    while True:
        before = len(pool)
        pool = _apply_caps(pool, "input", settings.input_fractions)
        pool = _apply_caps(pool, "type", settings.type_fractions)
        if len(pool) == before:
            return pool.reset_index(drop=True)


def _apply_caps(pool: pd.DataFrame, column: str, fractions: Mapping[str, float]) -> pd.DataFrame:
    sizes = pool[column].value_counts().to_dict()
    capped = {g: n for g, n in sizes.items() if g in fractions}
    keep = cap_counts(capped, fractions, others=len(pool) - sum(capped.values()))
    rank = pool.groupby(column).cumcount().to_numpy()
    limit = [keep.get(g, len(pool)) for g in pool[column]]
    return pool[rank < limit]


def quality(pairs: pd.DataFrame, *, negatives: pd.DataFrame | None = None) -> dict:
    """Pair-quality figures of a pair set (before or after filtering)."""
    n = len(pairs)
    synthetic = int((pairs["origin"] == "synthetic").sum()) if n else 0
    duplicates = int(pairs.duplicated(["prompt", "chosen", "rejected"]).sum()) if n else 0
    figures = {
        "pairs": n,
        "natural": n - synthetic,
        "synthetic": synthetic,
        "synthetic_fraction": round(synthetic / n, 4) if n else None,
        "gold_fallback": int((pairs["type"] == "gold_vs_failed_attempt").sum()) if n else 0,
        "cost_pairs": int((pairs["type"] == "cheaper_correct").sum()) if n else 0,
        "mean_reward_margin": round(float(pairs["margin"].mean()), 4) if n else None,
        "mean_edit_ratio": round(float(pairs["edit_ratio"].mean()), 4) if n else None,
        "duplicate_rate": round(duplicates / n, 4) if n else None,
        "chosen_executable_rate": round(float((pairs["chosen_status"] == "ok").mean()), 4) if n else None,
        "chosen_verified_rate": round(float((pairs["chosen_verdict"] == "correct").mean()), 4) if n else None,
        "by_type": pairs["type"].value_counts().sort_index().to_dict() if n else {},
    }
    hard = pairs[pairs["origin"] == "synthetic"] if n else pairs
    figures["executable_hard_negative_rate"] = (
        round(float((hard["rejected_status"] == "ok").mean()), 4) if len(hard) else None
    )
    if negatives is not None and len(negatives):
        figures["negatives_made"] = len(negatives)
        figures["negatives_kept"] = int(negatives["kept"].sum())
    return figures
