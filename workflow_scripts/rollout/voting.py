"""Majority voting over executed results (self-consistency, maj@k) and pass@k.

Candidates are grouped by their execution result; the largest group wins, ties go to the group with the
higher summed log-probability (when every candidate of the tied groups has one) or else to the group whose
first member came first; a candidate whose execution failed (an error, a timeout, a prompt that did not
fit) is never in a group, so an error never wins. The representative of the winning group is its first
member. Voting sees no gold: the grouping key depends only on the candidate's own result and the metric
mode (how results are compared):

- ``spider``: the bag of rows, each row's values sorted (the column-permutation-tolerant bag that
  test-suite-sql-eval compares, with row order ignored: voting does not know whether the gold orders);
- ``bird``: the set of rows;
- ``strict``: the list of rows.

With `answer` greedy or maj and several samples (`voting_first_turn`), turn 1 of a rollout is one greedy
candidate (sample 0) plus `num_samples` sampled ones (samples 1..k); `choose_answers` marks the example's
answer (the greedy candidate or the maj@k winner), the only one that goes to repair.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from workflow_scripts.core.exec_result import ExecResult
from workflow_scripts.core.matching import BIRD, SPIDER, STRICT
from workflow_scripts.rollout.generation import Backend, Completion, SamplingConfig
from workflow_scripts.rollout.settings import RolloutSettings


def _sort_key(value: object) -> str:
    return str(value) + str(type(value))


def result_key(result: ExecResult | None, metric: str = SPIDER) -> Hashable | None:
    """The voting group of an executed result under `metric` (None: failed, never in a group)."""
    if result is None or result.status != "ok":
        return None
    rows = [tuple(r) for r in result.rows]
    if metric == SPIDER:
        unordered = [tuple(sorted(r, key=_sort_key)) for r in rows]
        return ("bag", tuple(sorted(unordered, key=lambda r: tuple(map(_sort_key, r)))), result.truncated)
    if metric == BIRD:
        return ("set", frozenset(rows), result.truncated)
    if metric == STRICT:
        return ("list", tuple(rows), result.truncated)
    raise ValueError(f"unknown metric {metric!r}")


@dataclass(frozen=True)
class Vote:
    """The outcome of a vote: the winning candidate's position and the size of every candidate's group."""

    winner: int | None  # position in the voted candidates; None when every candidate failed
    counts: tuple[int, ...]  # per candidate: members of its group (0 for a failed candidate)


def majority_vote(
    results: Sequence[ExecResult | None],
    logprobs: Sequence[float | None] | None = None,
    *,
    metric: str = SPIDER,
) -> Vote:
    """Vote over candidates' execution results (in sample order); see the module docstring."""
    keys = [result_key(r, metric) for r in results]
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None:
            groups.setdefault(key, []).append(i)
    counts = tuple(len(groups[k]) if k is not None else 0 for k in keys)
    if not groups:
        return Vote(None, counts)
    size = max(len(members) for members in groups.values())
    tied = [members for members in groups.values() if len(members) == size]

    def logprob_sum(members: list[int]) -> float | None:
        if logprobs is None or any(logprobs[i] is None for i in members):
            return None
        return float(sum(logprobs[i] for i in members))  # type: ignore[misc]

    sums = [logprob_sum(m) for m in tied]
    if len(tied) > 1 and all(s is not None for s in sums):
        best = max(range(len(tied)), key=lambda j: (sums[j], -tied[j][0]))
        return Vote(tied[best][0], counts)
    return Vote(min(m[0] for m in tied), counts)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate from n samples of which c are correct (Chen et al., 2021)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, not {n}")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def voting_first_turn(settings: RolloutSettings) -> bool:
    """Whether turn 1 is one greedy candidate (sample 0) plus `num_samples` sampled ones (voting)."""
    return settings.answer != "all" and settings.sampling.num_samples > 1 and not settings.sampling.greedy


def generate_with_greedy(
    backend: Backend, prompts: list[list[dict[str, str]]], sampling: SamplingConfig
) -> list[list[Completion]]:
    """One greedy completion plus `sampling.num_samples` sampled ones per prompt, greedy first; the samples'
    log-probabilities come along (they break voting ties)."""
    greedy = SamplingConfig(**{**sampling.__dict__, "num_samples": 1, "temperature": 0.0, "top_p": 1.0})
    first = backend.generate(prompts, greedy)
    sampled = backend.generate(prompts, SamplingConfig(**{**sampling.__dict__, "logprobs": True}))
    return [[*g[:1], *s] for g, s in zip(first, sampled, strict=True)]


def choose_answers(candidates: Sequence[Any], settings: RolloutSettings, metric: str) -> None:
    """Mark each example's answer among its executed turn-1 candidates (`is_answer`), and with voting
    samples the maj@k winner (`is_vote`) and each sample's group size (`vote_count`)."""
    by_example: dict[int, list[Any]] = {}
    for c in candidates:
        by_example.setdefault(c.example, []).append(c)
    for group in by_example.values():
        group.sort(key=lambda c: c.sample)
        if settings.answer == "all":
            for c in group:
                c.is_answer = True
            continue
        voters = group[1:] if voting_first_turn(settings) else []
        winner = None
        if voters:
            vote = majority_vote([c.result for c in voters], [c.logprob for c in voters], metric=metric)
            for c, n in zip(voters, vote.counts, strict=True):
                c.vote_count, c.is_vote = n, False
            # errors never win; when every sample failed, the first sampled candidate stands for maj@k
            winner = voters[vote.winner if vote.winner is not None else 0]
            winner.is_vote = True
        answer = winner if settings.answer == "maj" and winner is not None else group[0]
        for c in group:
            c.is_answer = c is answer
