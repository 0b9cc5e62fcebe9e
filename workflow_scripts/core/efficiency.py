"""R-VES, BIRD's reward-based valid efficiency score.

BIRD's definition (``evaluation_ves.py`` of the BIRD benchmark, R-VES version): for a correct prediction,
gold and prediction are run `repeats` times (BIRD: 100), alternately; the time ratio is the mean of
gold time / prediction time over the runs that lie within three standard deviations of the mean; the ratio
is bucketed into a reward (>= 2: 1.25; [1, 2): 1; [0.5, 1): 0.75; [0.25, 0.5): 0.5; below: 0.25) and a
wrong or failing prediction gets 0. R-VES = 100 * mean(sqrt(reward)) over the questions.

Here the times are the sandbox's measured execution times (the database opening excluded), the runs go
through the same read-only sandbox as every query, and "correct" is the example's verdict under the
metric mode (in ``bird`` mode exactly BIRD's set comparison). Deviation: when every ratio is identical
(standard deviation 0), BIRD's outlier filter keeps none and its division fails, scoring 0; here all are
kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from workflow_scripts.core.sandbox import Sandbox

#: (lower bound of the time ratio, reward), highest first; below the last bound the reward is 0.25.
REWARD_BUCKETS: tuple[tuple[float, float], ...] = ((2.0, 1.25), (1.0, 1.0), (0.5, 0.75), (0.25, 0.5))


def clean_abnormal(ratios: Sequence[float]) -> list[float]:
    """Keep the ratios strictly within mean ± 3 standard deviations (population std, as numpy's)."""
    if not ratios:
        return []
    mean = sum(ratios) / len(ratios)
    std = math.sqrt(sum((x - mean) ** 2 for x in ratios) / len(ratios))
    kept = [x for x in ratios if mean - 3 * std < x < mean + 3 * std]
    return kept or list(ratios)


def reward(time_ratio: float) -> float:
    """BIRD's bucketed reward of a time ratio (0 for 0: a wrong prediction)."""
    if time_ratio <= 0:
        return 0.0
    for bound, value in REWARD_BUCKETS:
        if time_ratio >= bound:
            return value
    return 0.25


def r_ves(rewards: Sequence[float]) -> float | None:
    """100 × mean of sqrt(reward) over the questions (None for none)."""
    if not rewards:
        return None
    return 100.0 * sum(math.sqrt(r) for r in rewards) / len(rewards)


def time_ratios(
    items: Sequence[tuple[str, str, str]],
    sandbox: Sandbox,
    repeats: int,
    *,
    progress: str | None = None,
) -> list[float | None]:
    """The cleaned mean gold/prediction time ratio of each (database, prediction SQL, gold SQL) item.

    Both queries run `repeats` times, alternately, in one batch; a run that fails is left out, and an item
    with no pair of successful runs gets None.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    jobs = []
    for db, pred, gold in items:
        for _ in range(repeats):
            jobs += [(db, pred), (db, gold)]
    results = sandbox.execute_many(jobs, progress=progress or False)
    out: list[float | None] = []
    for i in range(len(items)):
        ratios = []
        for r in range(repeats):
            p, g = results[2 * (i * repeats + r)], results[2 * (i * repeats + r) + 1]
            if p.status == "ok" and g.status == "ok":
                ratios.append(g.elapsed_s / max(p.elapsed_s, 1e-9))
        kept = clean_abnormal(ratios)
        out.append(sum(kept) / len(kept) if kept else None)
    return out
