"""The evaluation matrix: outcomes per example, compare table, taxonomy, routing and paired statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workflow_scripts.evaluation.matrix import (
    bootstrap_ci,
    compare_table,
    mcnemar_p,
    outcomes,
    paired_stats,
    route,
    routing,
    taxonomy,
)


def trajectories(rows: list[tuple[str, int, str]]) -> pd.DataFrame:
    """(example id, turn, verdict) rows of a greedy one-sample run."""
    return pd.DataFrame([{
        "example_id": e, "sample": 0, "turn": t, "candidate": 0, "verdict": v, "correct": v == "correct",
        "executable": v in ("correct", "wrong_result", "empty_result", "wrong_row_count"),
    } for e, t, v in rows])  # fmt: skip


BASE = trajectories([
    ("a", 1, "correct"),
    ("b", 1, "no_such_column"), ("b", 2, "correct"),
    ("c", 1, "empty_result"), ("c", 2, "empty_result"),
    ("d", 1, "wrong_result"),
])  # fmt: skip
TUNED = trajectories([
    ("a", 1, "correct"), ("b", 1, "correct"), ("c", 1, "correct"),
    ("d", 1, "syntax_error"), ("d", 2, "correct"),
])  # fmt: skip


def test_outcomes_and_compare_table():
    results = {"base": outcomes(BASE), "tuned": outcomes(TUNED)}
    assert list(results["base"]["first_correct"]) == [True, False, False, False]
    assert list(results["base"]["final_correct"]) == [True, True, False, False]
    table = compare_table(results).set_index(["variant", "mode"])
    assert table.loc[("base", "one-shot"), "final EX"] == 0.25
    assert table.loc[("base", "repair"), "final EX"] == 0.5
    assert table.loc[("base", "repair"), "repair SR"] == 0.5  # b fixed, c not; d was never repaired
    assert table.loc[("tuned", "repair"), "final EX"] == 1.0
    assert table.loc[("base", "one-shot"), "executable"] == 0.75


def test_taxonomy_and_routing():
    results = {"base": outcomes(BASE)}
    tax = taxonomy(results).set_index("first-turn error")
    assert tax.loc["no_such_column", "fixed by repair"] == 1 and tax.loc["empty_result", "count"] == 1
    routes = routing(results).set_index("route")
    assert routes.loc["online", "failures"] == 1 and routes.loc["online", "fixed by repair"] == 1
    assert routes.loc["guarded", "failures"] == 1 and routes.loc["offline", "failures"] == 1
    assert route("correct") is None and route("timeout") == "online" and route("wrong_row_count") == "offline"


def test_a_rule_guard_signal_routes_a_wrong_result_to_the_guarded_verifier():
    run = BASE.assign(guards="[]")
    run.loc[run["example_id"] == "d", "guards"] = '["join_without_condition"]'
    routes = routing({"base": outcomes(run)}).set_index("route")
    assert routes.loc["guarded", "failures"] == 2 and routes.loc["offline", "failures"] == 0
    assert route("wrong_result", guarded=True) == "guarded"
    assert route("no_such_table", guarded=True) == "online"


def test_mcnemar_exact_p():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 5) == 1.0
    assert mcnemar_p(10, 0) == pytest.approx(2 / 2**10)
    assert mcnemar_p(1, 9) == pytest.approx(2 * 11 / 1024)


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_examples():
    small = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    low, high = bootstrap_ci(small, seed=1)
    assert low <= small.mean() <= high
    big_low, big_high = bootstrap_ci(np.tile(small, 50), seed=1)
    assert big_high - big_low < high - low


def test_paired_stats_on_the_same_examples():
    results = {"base": outcomes(BASE), "tuned": outcomes(TUNED)}
    row = paired_stats(results, "first_correct").iloc[0]
    assert (row["a"], row["b"], row["examples"]) == ("base", "tuned", 4)
    assert row["ΔEX (b − a)"] == 0.5 and row["b right, a wrong"] == 2 and row["a right, b wrong"] == 0
    assert row["McNemar p"] == pytest.approx(0.5)
    assert row["95% CI low"] <= 0.5 <= row["95% CI high"]
