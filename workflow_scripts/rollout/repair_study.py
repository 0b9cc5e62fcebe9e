"""The repair study: how much of the repair gain survives without a gold oracle.

The same first-turn answers (those of the base model's greedy eval rollout) are repaired under every
combination of feedback mode (what the feedback reveals) and repair scope (which failures are repaired),
through the ordinary rollout loop (`run_rollout(first_turn=...)`). Greedy decoding makes generation a
function of the prompt, so repair prompts shared by several combinations (the same attempt and the same
feedback text) are generated once (`CachedBackend`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.rollout.feedback import canonical_mode
from workflow_scripts.rollout.generation import Backend, Completion, SamplingConfig
from workflow_scripts.rollout.loop import Messages, PreparedExample, run_rollout
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.rollout.summary import final_answers

STUDY_COLUMNS = [
    "feedback_mode", "repair_scope", "examples", "first-turn EX", "final EX", "EX gain", "repairs",
    "fixed", "broken", "repair SR", "accepted wrong", "turn limit",
]  # fmt: skip


class CachedBackend:
    """A backend whose greedy completions are memoized by prompt (generation is then a function of it)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.name = f"cached {backend.name}"
        self.cache: dict[str, list[Completion]] = {}
        self.generated = 0

    def generate(self, prompts: Sequence[Messages], sampling: SamplingConfig) -> list[list[Completion]]:
        """Return completions for `prompts`, generating only prompts not seen before (greedy only)."""
        if sampling.temperature > 0:
            raise ValueError("CachedBackend needs greedy decoding (temperature 0): samples must differ")
        keys = [json.dumps([sampling.num_samples, p]) for p in prompts]
        missing = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if missing:
            new = self.backend.generate([json.loads(k)[1] for k in missing], sampling)
            self.cache.update(zip(missing, new, strict=True))
            self.generated += len(missing)
        return [self.cache[k] for k in keys]


def run_study(
    examples: Sequence[PreparedExample],
    backend: Backend,
    sandbox: Sandbox,
    base: RolloutSettings,
    match: MatchSettings,
    *,
    modes: Sequence[str],
    scopes: Sequence[str],
    first_turn: Sequence[Sequence[Completion]],
) -> pd.DataFrame:
    """Roll out every (mode, scope) from the given first turn; return all trajectories, labelled by both.

    Modes are labelled by their canonical names, so an alias and its mode are one combination.
    """
    cached = CachedBackend(backend)
    frames = []
    for mode in dict.fromkeys(canonical_mode(m) for m in modes):  # aliases name the same mode
        for scope in scopes:
            settings = replace(base, feedback_mode=mode, repair_scope=scope)
            t = run_rollout(examples, cached, sandbox, settings, match, progress=False, first_turn=first_turn)
            frames.append(t.assign(feedback_mode=settings.feedback_mode, repair_scope=scope))
    return pd.concat(frames, ignore_index=True)


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


def study_table(trajectories: pd.DataFrame) -> pd.DataFrame:
    """One row per (feedback mode, repair scope): EX before and after repair, repairs, fixes and breakages.

    `fixed`: trajectories wrong at turn 1 whose final answer is correct; `broken`: correct at turn 1 but
    not in the end (a guard sent a right answer to repair); `repair SR`: the share of repaired
    trajectories that end correct; `accepted wrong`: wrong final answers the scope let through.
    """
    rows = []
    keys = ["example_id", "sample"]
    for (mode, scope), t in trajectories.groupby(["feedback_mode", "repair_scope"], sort=False):
        first = t[t["turn"] == 1].set_index(keys)["correct"]
        final = final_answers(t).set_index(keys)
        repaired = t[t["turn"] > 1].groupby(keys).size().index
        n_examples = t["example_id"].nunique()
        final_correct = final["correct"].reindex(first.index)
        rows.append(
            {
                "feedback_mode": mode,
                "repair_scope": scope,
                "examples": n_examples,
                "first-turn EX": _ratio(int(first.groupby("example_id").any().sum()), n_examples),
                "final EX": _ratio(int(final_correct.groupby("example_id").any().sum()), n_examples),
                "EX gain": None,
                "repairs": len(repaired),
                "fixed": int((~first & final_correct).sum()),
                "broken": int((first & ~final_correct).sum()),
                "repair SR": _ratio(int(final.loc[repaired, "correct"].sum()), len(repaired)),
                "accepted wrong": int((final["stop_reason"] == "out_of_scope").sum()),
                "turn limit": int((final["stop_reason"] == "turn_limit").sum()),
            }
        )
    table = pd.DataFrame(rows, columns=STUDY_COLUMNS)
    table["EX gain"] = (table["final EX"] - table["first-turn EX"]).round(6)
    return table
