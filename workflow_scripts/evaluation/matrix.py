"""The evaluation matrix: what each trained variant changes, from its eval rollout's trajectories.

Each variant is evaluated by one greedy repair rollout on the eval set. Its one-shot figures are those of
turn 1: with greedy decoding, turn 1 of a repair run is exactly a one-shot run (same prompts, same model),
so running it twice would only cost time.
"""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pandas as pd

from workflow_scripts.core.sandbox import ERROR_CLASSES
from workflow_scripts.evaluation.hardness import LEVELS as HARDNESS_LEVELS
from workflow_scripts.evaluation.hardness import spider_hardness
from workflow_scripts.rollout.summary import answer_trajectories, final_answers, voting_table

# Every execution error class is something an executor sees, with no reference answer.
EXECUTOR_VISIBLE = frozenset(ERROR_CLASSES)
ROUTES = {
    "online": "executor-visible error: repairable by any deployment",
    "guarded": "empty result or a rule-guard signal: repairable with sanity guards",
    "offline": "wrong result or row count: needs an external verifier (gold or tests)",
}


def route(verdict: str, guarded: bool = False) -> str | None:
    """Return which verifier can catch a failed first-turn verdict (None for a correct one).

    `guarded` says a rule guard (`guards.rule_guards`) fired on the candidate: a wrong result that a guard
    flags needs no reference answer to be caught.
    """
    if verdict == "correct":
        return None
    if verdict in EXECUTOR_VISIBLE:
        return "online"
    if verdict == "empty_result" or guarded:
        return "guarded"
    return "offline"


def _guard_fired(guards: object) -> bool:
    """Whether a trajectory's `guards` cell (a JSON list of guard names) names any guard."""
    return isinstance(guards, str) and bool(json.loads(guards))


def outcomes(trajectories: pd.DataFrame) -> pd.DataFrame:
    """Per example: first-turn verdict, whether turn 1 and the final answer are correct, executability.

    The example's answer is its first trajectory's, or with voting samples the trajectory of the chosen
    answer (greedy or maj@k); then `greedy_correct`, `maj_correct`, `pass_correct` and `k` are added.
    """
    everything = trajectories.sort_values(["example_id", "sample", "turn", "candidate"])
    t = answer_trajectories(everything)
    first = t[t["turn"] == 1].drop_duplicates("example_id").set_index("example_id")
    answers = final_answers(t)
    final = answers.groupby("example_id")["correct"].any()
    last = answers.groupby("example_id").tail(1).set_index("example_id")
    table = pd.DataFrame({
        "first_verdict": first["verdict"],
        "first_guarded": first["guards"].map(_guard_fired) if "guards" in first else False,
        "first_correct": first["correct"],
        "final_correct": final.reindex(first.index),
        "first_executable": first["executable"],
        "final_executable": last["executable"].reindex(first.index),
        "repaired": t[t["turn"] > 1].groupby("example_id").size().reindex(first.index).fillna(0) > 0,
    }).sort_index()  # fmt: skip
    voting = voting_table(everything)
    if len(voting):
        table = table.join(voting)
    return table


def ex_with_ci(correct: pd.Series, seed: int = 0) -> dict[str, float]:
    """EX of a per-example correct column and its 95% percentile bootstrap interval over examples."""
    values = correct.fillna(False).astype(bool).to_numpy(dtype=float)
    low, high = bootstrap_ci(values, seed=seed)
    return {"final EX": values.mean() if len(values) else math.nan, "95% CI low": low, "95% CI high": high}


def compare_table(results: dict[str, pd.DataFrame], *, seed: int = 0) -> pd.DataFrame:
    """One row per (variant, mode): EX with its 95% bootstrap interval, repair SR and executable rate."""
    rows = []
    for variant, o in results.items():
        repaired = ~o["first_correct"] & o["repaired"]
        repair_sr = o.loc[repaired, "final_correct"].mean() if repaired.any() else None
        for mode, final, sr, executable in (
            ("one-shot", "first_correct", None, "first_executable"),
            ("repair", "final_correct", repair_sr, "final_executable"),
        ):
            rows.append({
                "variant": variant,
                "mode": mode,
                "first-turn EX": o["first_correct"].mean(),
                **ex_with_ci(o[final], seed),
                "repair SR": sr,
                "executable": o[executable].mean(),
                "examples": len(o),
            })  # fmt: skip
        for mode, column in decodings(o):
            ex = ex_with_ci(o[column], seed)
            rows.append({"variant": variant, "mode": mode, "first-turn EX": ex["final EX"], **ex,
                         "repair SR": None, "executable": None, "examples": len(o)})  # fmt: skip
    return pd.DataFrame(rows)


def decodings(o: pd.DataFrame) -> list[tuple[str, str]]:
    """(mode name, outcome column) of the one-shot decodings an eval run with voting samples has."""
    if "k" not in o or o["k"].isna().all():
        return []
    k = int(o["k"].max())
    return [("greedy", "greedy_correct"), (f"maj@{k}", "maj_correct"), (f"pass@{k}", "pass_correct")]


def paired_voting(results: dict[str, pd.DataFrame], *, seed: int = 0) -> pd.DataFrame:
    """Paired statistics of the decodings: between variants per decoding, and maj@k and pass@k against
    greedy within each variant (empty without voting samples)."""
    frames = []
    names = {c: m for o in results.values() for m, c in decodings(o)}
    for column, mode in names.items():
        having = {v: o for v, o in results.items() if column in o}
        table = paired_stats(having, column, seed=seed)
        if len(table):
            frames.append(table.assign(decoding=mode))
    for variant, o in results.items():
        modes = {c: m for m, c in decodings(o)}
        for column in ("maj_correct", "pass_correct"):
            if column in modes:
                pair = {f"{variant} greedy": o[["greedy_correct"]].set_axis(["x"], axis=1),
                        f"{variant} {modes[column]}": o[[column]].set_axis(["x"], axis=1)}  # fmt: skip
                frames.append(
                    paired_stats(pair, "x", seed=seed).assign(decoding=f"{modes[column]} vs greedy")
                )
    if not frames:
        return pd.DataFrame(columns=["decoding", "a", "b"])
    out = pd.concat(frames, ignore_index=True)
    return out[["decoding", *[c for c in out.columns if c != "decoding"]]]


def taxonomy(results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """First-turn errors by class and how many the repair turns fixed, per variant."""
    rows = []
    for variant, o in results.items():
        failed = o[~o["first_correct"]]
        for verdict, group in failed.groupby("first_verdict"):
            rows.append(
                {
                    "variant": variant,
                    "first-turn error": verdict,
                    "count": len(group),
                    "fixed by repair": int(group["final_correct"].sum()),
                }
            )
    return pd.DataFrame(rows, columns=["variant", "first-turn error", "count", "fixed by repair"])


def routing(results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """First-turn failures per variant by the verifier that can catch them, and how many repair fixed."""
    rows = []
    for variant, o in results.items():
        routes = pd.Series(map(route, o["first_verdict"], o["first_guarded"]), index=o.index)
        for name in ROUTES:
            mask = routes == name
            rows.append(
                {
                    "variant": variant,
                    "route": name,
                    "failures": int(mask.sum()),
                    "fixed by repair": int(o.loc[mask, "final_correct"].sum()),
                }
            )
    return pd.DataFrame(rows)


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for b and c discordant pairs (binomial test with p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def bootstrap_ci(diff: np.ndarray, *, samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of per-example differences."""
    if len(diff) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def paired_stats(results: dict[str, pd.DataFrame], column: str, *, seed: int = 0) -> pd.DataFrame:
    """For each pair of variants on the same examples: ΔEX (b − a), its bootstrap 95% CI, McNemar's p."""
    rows = []
    for a, b in combinations(results, 2):
        common = results[a].index.intersection(results[b].index)
        x = results[a].loc[common, column].astype(bool).to_numpy()
        y = results[b].loc[common, column].astype(bool).to_numpy()
        diff = y.astype(float) - x.astype(float)
        low, high = bootstrap_ci(diff, seed=seed)
        rows.append(
            {
                "a": a,
                "b": b,
                "examples": len(common),
                "EX a": x.mean() if len(x) else None,
                "EX b": y.mean() if len(y) else None,
                "ΔEX (b − a)": diff.mean() if len(diff) else None,
                "95% CI low": low,
                "95% CI high": high,
                "b right, a wrong": int((y & ~x).sum()),
                "a right, b wrong": int((x & ~y).sum()),
                "McNemar p": mcnemar_p(int((y & ~x).sum()), int((x & ~y).sum())),
            }
        )
    return pd.DataFrame(rows)


DIFFICULTY_ORDER = ("simple", "moderate", "challenging")
# The breakdowns of difficulty.parquet: name -> the order of its levels (others follow, sorted by name).
BREAKDOWNS = {"difficulty": DIFFICULTY_ORDER, "question family": (), "Spider hardness": HARDNESS_LEVELS}


def by_level(
    results: dict[str, pd.DataFrame], levels: pd.Series, breakdown: str, order: tuple[str, ...] = ()
) -> pd.DataFrame:
    """EX per variant, mode and level of one breakdown of the examples, and over all of them.

    `levels` maps example id to its level (a BIRD difficulty, a question family, a Spider hardness);
    examples without one are `unknown`. Levels follow `order`, then the others by name, then `all`.
    """
    columns = ["breakdown", "variant", "mode", "level", "examples", "EX"]
    rank = {name: i for i, name in enumerate(order)}
    rows = []
    for variant, o in results.items():
        of = levels.reindex(o.index).fillna("unknown").astype(str)
        shown = sorted(set(of), key=lambda v: (rank.get(v, len(rank)), v == "unknown", v))
        for mode, column in (("one-shot", "first_correct"), ("repair", "final_correct")):
            for name in [*shown, "all"]:
                mask = of == name if name != "all" else pd.Series(True, index=o.index)
                rows.append({
                    "breakdown": breakdown, "variant": variant, "mode": mode, "level": name,
                    "examples": int(mask.sum()),
                    "EX": float(o.loc[mask, column].astype(bool).mean()) if mask.any() else None,
                })  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def by_difficulty(results: dict[str, pd.DataFrame], difficulty: pd.Series) -> pd.DataFrame:
    """EX per variant, mode and `difficulty` (BIRD's simple / moderate / challenging), and over all.

    Empty when no example of the eval set has a difficulty (Spider-style data).
    """
    columns = ["variant", "mode", "difficulty", "examples", "EX"]
    if difficulty.dropna().empty:
        return pd.DataFrame(columns=columns)
    table = by_level(results, difficulty, "difficulty", DIFFICULTY_ORDER)
    return table.rename(columns={"level": "difficulty"})[columns]


def example_groups(examples: pd.DataFrame) -> dict[str, pd.Series]:
    """The breakdowns the eval set allows, each a Series from example id to level.

    The data set's own `difficulty` (BIRD) and `family` (the demo's question families) when any example has
    one, and always Spider's hardness of the gold SQL, which needs nothing but the query.
    """
    by_id = examples.set_index(examples["id"].astype(str))
    groups = {}
    for column, name in (("difficulty", "difficulty"), ("family", "question family")):
        if column in by_id and by_id[column].notna().any():
            groups[name] = by_id[column]
    groups["Spider hardness"] = by_id["gold_sql"].map(spider_hardness)
    return groups


def breakdowns(results: dict[str, pd.DataFrame], groups: dict[str, pd.Series]) -> pd.DataFrame:
    """EX per variant and mode within each level of every breakdown in `groups` (`example_groups`)."""
    frames = [by_level(results, levels, name, BREAKDOWNS.get(name, ())) for name, levels in groups.items()]
    return pd.concat(frames, ignore_index=True) if frames else by_level({}, pd.Series(dtype=object), "")


def with_unscored(
    results: dict[str, pd.DataFrame], examples: pd.DataFrame, excluded: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """BIRD's every-question denominator for the evaluation matrix: each variant's outcomes plus, as wrong,
    the questions that were never rolled out because their gold SQL fails or their database is missing.

    Only excluded questions among the evaluated ones count: those before the last evaluated example's
    position in the data set (the evaluation takes the first N usable examples).
    """
    position = dict(zip(examples["id"].astype(str), examples["position"], strict=True))
    out = {}
    for variant, o in results.items():
        last = max((position.get(str(i), -1) for i in o.index), default=-1)
        missing = excluded[(excluded["position"] <= last) & ~excluded["id"].astype(str).isin(o.index)]
        if missing.empty:
            out[variant] = o
            continue
        verdict = missing["reason"].map({"missing_db": "skipped"}).fillna("gold_error")
        extra = pd.DataFrame(
            {
                "first_verdict": verdict.to_numpy(),
                "first_guarded": False,
                "first_correct": False,
                "final_correct": False,
                "first_executable": False,
                "final_executable": False,
                "repaired": False,
            },
            index=pd.Index(missing["id"].astype(str), name=o.index.name),
        )
        for column in ("greedy_correct", "maj_correct", "pass_correct"):
            if column in o:
                extra[column] = False
        if "k" in o:
            extra["k"] = o["k"].max()
        out[variant] = pd.concat([o, extra]).sort_index()
    return out
