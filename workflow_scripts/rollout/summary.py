"""A rollout's figures from its trajectories: final answers, the run summary, GRPO prompt groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from workflow_scripts.rollout.prompts import prompt_template_sha256
from workflow_scripts.rollout.settings import RolloutSettings

# The settings of a run that its summary.json repeats as they were given.
SUMMARY_KEYS = (
    "dataset",
    "model",
    "adapter",
    "backend",
    "schema_mode",
    "top_k_tables",
    "max_turns",
    "feedback_mode",
    "feedback_detail",
    "repair_scope",
    "num_samples",
    "repair_samples",
    "temperature",
)


def _rate(values: pd.Series) -> float | None:
    return round(float(values.mean()), 6) if len(values) else None


def final_answers(trajectories: pd.DataFrame) -> pd.DataFrame:
    """One row per trajectory (example, sample): the candidate it ended with, i.e. its final answer.

    That is the candidate with a `stop_reason`; for trajectories written before stop reasons were recorded,
    the first correct candidate, else the last one.
    """
    t = trajectories.sort_values(["example_id", "sample", "turn", "candidate"], kind="stable")
    if "stop_reason" in t and t["stop_reason"].notna().any():
        return t[t["stop_reason"].notna()].reset_index(drop=True)
    keys = ["example_id", "sample"]
    first_correct = t[t["correct"]].groupby(keys).head(1)
    last = t.groupby(keys).tail(1)
    last = last[~last.set_index(keys).index.isin(first_correct.set_index(keys).index)]
    return pd.concat([first_correct, last]).sort_values(keys, kind="stable").reset_index(drop=True)


def summarize(trajectories: pd.DataFrame, n_examples: int, max_turns: int) -> dict[str, Any]:
    """Return the run's metrics at example level (any trajectory's final answer correct) and candidate level.

    A trajectory's final answer is the candidate it ended with (`final_answers`); repair success is the share
    of trajectories that got a repair turn whose final answer is correct.
    """
    everything = trajectories
    t = answer_trajectories(trajectories)
    first = t[t["turn"] == 1]
    final = final_answers(t)
    by_example_first = first.groupby("example_id")["correct"].any()
    by_example_final = final.groupby("example_id")["correct"].any()
    trajectory_final = final.set_index(["example_id", "sample"])["correct"]
    trajectory_first = first.groupby(["example_id", "sample"])["correct"].any()
    repaired = t[t["turn"] > 1].groupby(["example_id", "sample"]).size().index
    errors_by_turn = t[~t["correct"]].groupby(["turn", "verdict"]).size()
    correct_costs = t.loc[t["correct"], "plan_cost"].dropna() if "plan_cost" in t else pd.Series(dtype=float)
    return {
        "examples": n_examples,
        "candidates": len(everything),
        **voting_summary(everything),
        "max_turns": max_turns,
        "first_turn_ex": round(float(by_example_first.sum()) / n_examples, 6),
        "final_ex": round(float(by_example_final.sum()) / n_examples, 6),
        "first_turn_candidate_ex": _rate(trajectory_first),
        "final_candidate_ex": _rate(trajectory_final),
        "first_turn_executable": _rate(first["executable"]),
        "final_executable": _rate(final["executable"]),
        "schema_valid": _rate(t["schema_valid"]),
        "repair_attempted": len(repaired),
        "repair_success_rate": _rate(trajectory_final.loc[repaired]) if len(repaired) else None,
        "mean_table_recall": _rate(first.drop_duplicates("example_id")["table_recall"].dropna()),
        "generated_tokens": int(everything["completion_tokens"].sum()),
        # Share of candidates whose generation hit max_new_tokens (their SQL may be cut off) and counts of
        # every finish reason; runs written before finish reasons were recorded have neither.
        "truncated_share": (_rate(t["finish_reason"] == "length") if "finish_reason" in t else None),
        "finish_reasons": (
            {str(k): int(n) for k, n in t["finish_reason"].value_counts().items()}
            if "finish_reason" in t
            else {}
        ),
        "errors_by_turn": {f"{turn}:{v}": int(n) for (turn, v), n in errors_by_turn.items()},
        "stop_reasons": (
            {str(k): int(n) for k, n in final["stop_reason"].value_counts().items()}
            if "stop_reason" in final
            else {}
        ),
        "median_plan_cost_correct": float(correct_costs.median()) if len(correct_costs) else None,
    }


def run_summary(
    name: str, run: Mapping[str, Any], trajectories: pd.DataFrame, metric: str | None
) -> dict[str, Any]:
    """A gathered run's summary.json: its figures and the settings and metric mode they were measured in."""
    settings = RolloutSettings.from_config(run)
    backends = trajectories.get("backend", pd.Series(dtype=str)).dropna()
    return {
        "run": name,
        **summarize(trajectories, trajectories["example_id"].nunique(), run["max_turns"]),
        "backend_used": "+".join(sorted(set(backends))),
        **{k: run[k] for k in SUMMARY_KEYS},
        "metric": metric,
        "answer": settings.answer,
        "evidence": settings.evidence,
        "top_p": settings.sampling.top_p,
        "repair_temperature": settings.repair_temperature,
        "repair_prompt": settings.repair_prompt,
        "prompt_template_sha256": prompt_template_sha256(),
    }


def answer_trajectories(trajectories: pd.DataFrame) -> pd.DataFrame:
    """The candidates of the trajectories that are examples' answers (all, unless voting samples exist).

    With `answer` greedy or maj and several samples, the voting samples (``is_answer`` false at turn 1)
    are scored but are no example's answer: they are left out of EX, repair and stop reasons.
    """
    if "is_answer" not in trajectories:
        return trajectories
    first = trajectories[trajectories["turn"] == 1]
    dropped = first[first["is_answer"].eq(False)]
    if dropped.empty:
        return trajectories
    keys = pd.MultiIndex.from_frame(dropped[["example_id", "sample"]])
    index = pd.MultiIndex.from_frame(trajectories[["example_id", "sample"]])
    return trajectories[~index.isin(keys)]


def voting_table(trajectories: pd.DataFrame) -> pd.DataFrame:
    """Per example, with voting samples: greedy, maj@k and pass@k correctness and k (empty without)."""
    columns = ["greedy_correct", "maj_correct", "pass_correct", "k"]
    if "is_vote" not in trajectories or not trajectories["is_vote"].eq(True).any():
        return pd.DataFrame(columns=columns, index=pd.Index([], name="example_id"))
    first = trajectories[trajectories["turn"] == 1]
    voters = first[first["is_vote"].notna()]
    greedy = first[first["sample"] == 0].groupby("example_id")["correct"].first()
    table = pd.DataFrame(
        {
            "greedy_correct": greedy,
            "maj_correct": voters[voters["is_vote"].eq(True)].groupby("example_id")["correct"].first(),
            "pass_correct": voters.groupby("example_id")["correct"].any(),
            "k": voters.groupby("example_id").size(),
        }
    )
    table.index.name = "example_id"
    return table[columns].sort_index()


def voting_summary(trajectories: pd.DataFrame) -> dict[str, Any]:
    """greedy, maj@k and pass@k EX of a run with voting samples (nothing without)."""
    table = voting_table(trajectories)
    if table.empty:
        return {}
    return {
        "k": int(table["k"].max()),
        "greedy_ex": _rate(table["greedy_correct"].astype(bool)),
        "maj_at_k_ex": _rate(table["maj_correct"].astype(bool)),
        "pass_at_k_ex": _rate(table["pass_correct"].astype(bool)),
    }


def grpo_groups(trajectories: pd.DataFrame) -> pd.DataFrame:
    """Group candidates by their exact prompt: (prompt, completions, rewards) rows for RL trainers."""
    grouped = trajectories.groupby("prompt", sort=False)
    return pd.DataFrame(
        {
            "prompt": list(grouped.groups),
            "example_id": grouped["example_id"].first().to_list(),
            "turn": grouped["turn"].first().to_list(),
            "completions": grouped["raw_output"].agg(list).to_list(),
            "rewards": grouped["reward"].agg(list).to_list(),
        }
    )
