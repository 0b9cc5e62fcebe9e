"""DPO preference pairs mined from rollout trajectories, and pairs made from synthetic hard negatives.

Natural pair types, from the most to the least informative:
- `repair_correct_vs_repair_failed`: two candidates sampled from the same repair prompt, one correct and one
  still failing.
- `first_turn_correct_sample_vs_failed_sample`: same first-turn prompt, one correct and one failed sample.
- `self_repair_success_vs_failed_attempt`: a verified repair against the failed attempt it fixed, both as
  answers to the prompt of the failed attempt.
- `gold_vs_failed_attempt`: the gold SQL against a failed first-turn attempt when every attempt at the
  example failed (only with `use_gold_when_failed`; it never counts as a model prediction).

A cost-only type teaches which correct SQL to prefer:
- `cheaper_correct`: two correct candidates of the same prompt whose query-plan costs (`query_cost`) differ
  by at least `min_cost_gap`; the cheaper one is chosen. Both rewards are equal (margin 0).

The chosen and the rejected SQL of a pair always answer the exact prompt stored with the pair.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import product

import pandas as pd
import sqlglot

NATURAL_TYPES: tuple[str, ...] = (
    "repair_correct_vs_repair_failed",
    "first_turn_correct_sample_vs_failed_sample",
    "self_repair_success_vs_failed_attempt",
    "gold_vs_failed_attempt",
)
COST_TYPES: tuple[str, ...] = ("cheaper_correct",)
GOLD_REWARD = 1.0

PAIR_COLUMNS = [
    "pair_id", "type", "origin", "source", "example_id", "db_id", "prompt", "chosen", "rejected",
    "chosen_reward", "rejected_reward", "margin", "chosen_status", "rejected_status", "chosen_verdict",
    "rejected_verdict", "edit_ratio", "chosen_cost", "rejected_cost",
]  # fmt: skip


def sql_tokens(sql: str) -> list[str]:
    """Return the SQL's tokens (sqlglot's tokenizer; whitespace split if it fails), case-folded."""
    try:
        return [t.text.lower() for t in sqlglot.tokenize(sql, read="sqlite")]
    except sqlglot.errors.SqlglotError:
        return sql.lower().split()


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Return the Levenshtein distance between two token sequences."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def edit_ratio(chosen: str, rejected: str) -> float:
    """Token-level edit distance between two SQL queries over the length of the longer one."""
    a, b = sql_tokens(chosen), sql_tokens(rejected)
    return edit_distance(a, b) / max(1, len(a), len(b))


def _pair(kind: str, source: str, chosen: pd.Series | dict, rejected: pd.Series | dict, prompt: str) -> dict:
    return {
        "type": kind,
        "origin": "natural",
        "source": source,
        "example_id": rejected["example_id"],
        "db_id": rejected["db_id"],
        "prompt": prompt,
        "chosen": chosen["sql"],
        "rejected": rejected["sql"],
        "chosen_reward": float(chosen["reward"]),
        "rejected_reward": float(rejected["reward"]),
        "chosen_status": chosen["status"],
        "rejected_status": rejected["status"],
        "chosen_verdict": chosen["verdict"],
        "rejected_verdict": rejected["verdict"],
        "chosen_cost": _cost(chosen),
        "rejected_cost": _cost(rejected),
    }


def _cost(candidate: pd.Series | dict) -> float | None:
    """The candidate's plan cost, None when unknown (a failed query, gold SQL, old trajectories)."""
    value = candidate.get("plan_cost")
    return None if value is None or pd.isna(value) else float(value)


def _cross(kind: str, source: str, group: pd.DataFrame, limit: int) -> list[dict]:
    """Up to `limit` (correct, failed) pairs among candidates that share one prompt."""
    good = group[group["correct"]].drop_duplicates("sql")
    bad = group[~group["correct"] & (group["sql"] != "")].drop_duplicates("sql")
    return [_pair(kind, source, c, r, c["prompt"]) for (_, c), (_, r) in
            list(product(good.iterrows(), bad.iterrows()))[:limit]]  # fmt: skip


def cheaper_correct_pairs(group: pd.DataFrame, source: str, min_gap: float, limit: int) -> list[dict]:
    """Up to `limit` (cheaper, costlier) pairs of correct candidates of one prompt, largest cost gap first.

    Only candidates with a plan cost count; two SQL strings are paired when their costs differ by at least
    `min_gap`.
    """
    correct = group[group["correct"] & group["plan_cost"].notna()].drop_duplicates("sql")
    ranked = [(c, r) for (_, c), (_, r) in product(correct.iterrows(), correct.iterrows())
              if r["plan_cost"] - c["plan_cost"] >= min_gap]  # fmt: skip
    ranked.sort(key=lambda cr: cr[0]["plan_cost"] - cr[1]["plan_cost"])
    return [_pair("cheaper_correct", source, c, r, c["prompt"]) for c, r in ranked[:limit]]


def mine_pairs(
    trajectories: pd.DataFrame,
    source: str,
    *,
    gold_sql: dict[str, str] | None = None,
    use_gold_when_failed: bool = False,
    max_pairs_per_group: int = 2,
    min_cost_gap: float | None = None,
) -> pd.DataFrame:
    """Return the natural preference pairs of one rollout's trajectories.

    `gold_sql` maps example ids to gold SQL; it is needed only with `use_gold_when_failed`. With
    `min_cost_gap`, `cheaper_correct` pairs are mined too (trajectories need the `plan_cost` column).
    """
    t = trajectories
    pairs: list[dict] = []
    for _, group in t[t["turn"] > 1].groupby("prompt", sort=False):
        pairs += _cross("repair_correct_vs_repair_failed", source, group, max_pairs_per_group)
    for _, group in t[t["turn"] == 1].groupby("prompt", sort=False):
        pairs += _cross("first_turn_correct_sample_vs_failed_sample", source, group, max_pairs_per_group)
    by_id = t.set_index("candidate_id")
    for _, fixed in t[(t["turn"] > 1) & t["correct"]].iterrows():
        parent = by_id.loc[fixed["parent_id"]]
        if parent["sql"] and parent["sql"] != fixed["sql"]:
            pairs.append(
                _pair(
                    "self_repair_success_vs_failed_attempt",
                    source,
                    fixed,
                    {**parent.to_dict(), "candidate_id": fixed["parent_id"]},
                    parent["prompt"],
                )
            )
    if min_cost_gap is not None:
        if "plan_cost" not in t:
            raise ValueError("min_cost_gap needs trajectories with query plan costs (column plan_cost)")
        for _, group in t.groupby("prompt", sort=False):
            pairs += cheaper_correct_pairs(group, source, min_cost_gap, max_pairs_per_group)
    if use_gold_when_failed:
        if gold_sql is None:
            raise ValueError("use_gold_when_failed needs the gold SQL of the examples")
        failed = t.groupby("example_id")["correct"].any()
        for example_id in failed[~failed].index:
            attempts = t[(t["example_id"] == example_id) & (t["turn"] == 1) & (t["sql"] != "")]
            for _, attempt in attempts.drop_duplicates("sql").head(max_pairs_per_group).iterrows():
                gold = {
                    "sql": gold_sql[example_id],
                    "reward": GOLD_REWARD,
                    "status": "ok",
                    "verdict": "correct",
                }
                pairs.append(_pair("gold_vs_failed_attempt", source, gold, attempt, attempt["prompt"]))
    return finish_pairs(pd.DataFrame(pairs))


def synthetic_pairs(
    negatives: pd.DataFrame, prompts: dict[str, str], source: str = "synthetic"
) -> pd.DataFrame:
    """Return pairs (gold SQL chosen, hard negative rejected) under each example's first-turn prompt.

    `negatives` has the rows of `negatives.build_synthetic` (only kept ones are used); `prompts` maps
    example ids to their first-turn prompt (JSON messages).
    """
    kept = negatives[negatives["kept"] & negatives["example_id"].isin(prompts)]
    rows = [{
        "type": f"synthetic_{n['type']}", "origin": "synthetic", "source": source,
        "example_id": n["example_id"], "db_id": n["db_id"], "prompt": prompts[n["example_id"]],
        "chosen": n["gold_sql"], "rejected": n["sql"], "chosen_reward": GOLD_REWARD,
        # The reward a rollout gives this SQL as a first-turn answer with repair turns left.
        "rejected_reward": 0.2 if n["executes"] else -0.2, "chosen_status": "ok",
        "rejected_status": n["status"], "chosen_verdict": "correct", "rejected_verdict": n["verdict"],
        "chosen_cost": None, "rejected_cost": None,
    } for _, n in kept.iterrows()]  # fmt: skip
    return finish_pairs(pd.DataFrame(rows))


def finish_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Add margins, edit ratios and stable pair ids; order columns."""
    if pairs.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    pairs = pairs.copy()
    pairs["margin"] = (pairs["chosen_reward"] - pairs["rejected_reward"]).round(6)
    pairs["edit_ratio"] = [
        round(edit_ratio(c, r), 6) for c, r in zip(pairs["chosen"], pairs["rejected"], strict=True)
    ]
    pairs["pair_id"] = [
        f"{s}:{e}:{i}" for i, (s, e) in enumerate(zip(pairs["source"], pairs["example_id"], strict=True))
    ]
    return pairs[PAIR_COLUMNS].reset_index(drop=True)


def to_trl(pairs: pd.DataFrame) -> pd.DataFrame:
    """Return TRL's conversational preference format: `prompt` messages, `chosen` and `rejected` turns."""
    return pd.DataFrame({
        "prompt": [json.loads(p) for p in pairs["prompt"]],
        "chosen": [[{"role": "assistant", "content": c}] for c in pairs["chosen"]],
        "rejected": [[{"role": "assistant", "content": r}] for r in pairs["rejected"]],
        **{c: pairs[c].to_list() for c in ("pair_id", "type", "origin", "margin", "edit_ratio")},
    })  # fmt: skip
