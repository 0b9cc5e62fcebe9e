"""Natural pair mining from rollout trajectories, and the Synth20 merge with its caps and filters."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.rollout.test_rollout import SCRIPT, ScriptedBackend, data, rollout  # noqa: F401  (fixture)
from workflow_scripts.pairs.merge import MergeSettings, cap_counts, filter_pairs, merge_pairs, quality
from workflow_scripts.pairs.mining import edit_ratio, mine_pairs, synthetic_pairs, to_trl

PERU = "Names of singers from Peru?"


@pytest.fixture(scope="module")
def trajectories(data):  # noqa: F811
    script = {
        **SCRIPT,
        # Two first-turn samples (one right, one wrong), then two repair candidates (one right, one wrong).
        PERU: [["SELECT nme FROM singer", "SELECT name FROM singer WHERE country = 'Peru'"],
               ["SELECT name FROM singer WHERE country = 'Peru'", "SELECT name FROM singer"]],
        # Always wrong: only the gold fallback can pair it.
        "Venues of concerts in 2012?": [["SELECT venue FROM concert"]],
    }  # fmt: skip
    from workflow_scripts.rollout.generation import SamplingConfig

    return rollout(
        data,
        ScriptedBackend(script),
        max_turns=2,
        repair_samples=2,
        feedback_mode="result_status",
        repair_scope="verified",
        sampling=SamplingConfig(num_samples=2, temperature=0.7),
    )


def test_every_natural_type_is_mined_with_a_shared_prompt(trajectories, data):  # noqa: F811
    gold = dict(zip(data["examples"]["id"], data["examples"]["gold_sql"], strict=True))
    pairs = mine_pairs(trajectories, "train", gold_sql=gold, use_gold_when_failed=True)
    by_type = pairs.groupby("type")
    assert set(by_type.groups) == {
        "repair_correct_vs_repair_failed", "first_turn_correct_sample_vs_failed_sample",
        "self_repair_success_vs_failed_attempt", "gold_vs_failed_attempt"}  # fmt: skip
    prompts = set(trajectories["prompt"])
    for _, pair in pairs.iterrows():
        assert pair["prompt"] in prompts  # the exact prompt a candidate was generated from
        assert pair["chosen"] != pair["rejected"] and pair["rejected"]
        assert pair["margin"] == pytest.approx(pair["chosen_reward"] - pair["rejected_reward"])
    repair = pairs[pairs["type"] == "repair_correct_vs_repair_failed"].iloc[0]
    assert len(json.loads(repair["prompt"])) == 4
    assert repair["chosen"] == "SELECT name FROM singer WHERE country = 'Peru'"
    assert repair["rejected"] == "SELECT name FROM singer"
    self_repair = pairs[pairs["type"] == "self_repair_success_vs_failed_attempt"].iloc[0]
    assert len(json.loads(self_repair["prompt"])) == 2 and self_repair["rejected"] == "SELECT nme FROM singer"
    fallback = pairs[pairs["type"] == "gold_vs_failed_attempt"]
    assert list(fallback["chosen"]) == ["SELECT venue FROM concert WHERE year = 2012"]
    # Without the option there is no gold fallback.
    assert "gold_vs_failed_attempt" not in set(mine_pairs(trajectories, "train")["type"])


def test_edit_ratio_is_token_level():
    assert edit_ratio("SELECT a FROM t", "SELECT a FROM t") == 0
    assert edit_ratio("SELECT a FROM t", "SELECT b FROM t") == pytest.approx(1 / 4)
    assert edit_ratio("SELECT a FROM t", "SELECT a FROM t WHERE x = 1") == pytest.approx(4 / 8)


def test_cap_counts_respects_fractions_of_the_final_total():
    counts = cap_counts({"synthetic": 100}, {"synthetic": 0.2}, others=40)
    assert counts == {"synthetic": 10}  # 10 <= 0.2 * 50
    counts = cap_counts({"a": 30, "b": 30}, {"a": 0.2, "b": 0.2}, others=10)
    assert all(n <= 0.2 * (10 + sum(counts.values())) for n in counts.values())
    assert cap_counts({"a": 5}, {"a": 0.2}, others=0) == {"a": 0}


def pair_frame(n: int, origin: str, kind: str, start: int = 0, **extra) -> pd.DataFrame:
    return pd.DataFrame([{
        "pair_id": f"{origin}{i}", "type": kind, "origin": origin, "source": origin, "example_id": f"e{i}",
        "db_id": "d", "prompt": json.dumps([{"role": "user", "content": f"q{i}"}]), "chosen": f"SELECT {i}",
        "rejected": f"SELECT {i} + 1", "chosen_reward": 1.0, "rejected_reward": 0.2, "margin": 0.8,
        "chosen_status": "ok", "rejected_status": "ok", "chosen_verdict": "correct",
        "rejected_verdict": "wrong_result", "edit_ratio": 0.5, **extra,
    } for i in range(start, start + n)])  # fmt: skip


def test_merge_caps_filters_and_shuffles():
    natural = pd.concat(
        [
            pair_frame(60, "natural", "first_turn_correct_sample_vs_failed_sample"),
            pair_frame(40, "natural", "gold_vs_failed_attempt", start=60),
        ]
    )
    synthetic = pair_frame(80, "synthetic", "synthetic_wrong_column", start=200)
    settings = MergeSettings(
        input_fractions={"synthetic": 0.2}, type_fractions={"gold_vs_failed_attempt": 0.2}, seed=1
    )
    merged = merge_pairs({"natural": natural, "synthetic": synthetic}, settings)
    total = len(merged)
    assert (merged["input"] == "synthetic").sum() <= 0.2 * total
    assert (merged["type"] == "gold_vs_failed_attempt").sum() <= 0.2 * total
    assert (merged["type"] == "first_turn_correct_sample_vs_failed_sample").sum() == 60
    assert total >= 80
    again = merge_pairs({"natural": natural, "synthetic": synthetic}, settings)
    pd.testing.assert_frame_equal(merged, again)
    other = merge_pairs({"natural": natural, "synthetic": synthetic}, MergeSettings(seed=2))
    assert list(other["pair_id"]) != list(merged["pair_id"])


def test_filters_drop_small_margins_far_pairs_duplicates_and_unverified_chosen():
    pairs = pd.concat([
        pair_frame(3, "natural", "t"),
        pair_frame(1, "natural", "t", start=10, margin=0.05),
        pair_frame(1, "natural", "t", start=20, edit_ratio=0.95),
        pair_frame(1, "natural", "t", start=30, chosen_verdict="wrong_result"),
        pair_frame(1, "natural", "t"),  # duplicate of the first
    ])  # fmt: skip
    kept = filter_pairs(pairs, MergeSettings(min_reward_margin=0.1, max_edit_ratio=0.9))
    assert list(kept["pair_id"]) == ["natural0", "natural1", "natural2"]
    before, after = quality(pairs), quality(kept)
    assert before["duplicate_rate"] == pytest.approx(1 / 7, abs=1e-4) and after["duplicate_rate"] == 0
    assert after["chosen_verified_rate"] == 1.0


def test_synthetic_pairs_and_trl_format(trajectories):
    prompt = trajectories[trajectories["turn"] == 1]["prompt"].iloc[0]
    example = trajectories["example_id"].iloc[0]
    negatives = pd.DataFrame([
        {"example_id": example, "db_id": "concert", "gold_sql": "SELECT count(*) FROM singer",
         "type": "wrong_aggregation", "sql": "SELECT max(age) FROM singer", "status": "ok", "executes": True,
         "verdict": "wrong_result", "kept": True},
        {"example_id": example, "db_id": "concert", "gold_sql": "SELECT count(*) FROM singer",
         "type": "wrong_column", "sql": "SELECT count(*) FROM singer", "status": "ok", "executes": True,
         "verdict": "correct", "kept": False},
    ])  # fmt: skip
    pairs = synthetic_pairs(negatives, {example: prompt})
    assert list(pairs["type"]) == ["synthetic_wrong_aggregation"] and pairs["origin"].iloc[0] == "synthetic"
    trl = to_trl(pairs)
    assert trl["prompt"].iloc[0] == json.loads(prompt)
    assert trl["chosen"].iloc[0] == [{"role": "assistant", "content": "SELECT count(*) FROM singer"}]
    assert trl["rejected"].iloc[0] == [{"role": "assistant", "content": "SELECT max(age) FROM singer"}]


def test_merge_of_pairs_read_back_from_parquet(tmp_path):
    from workflow_scripts.core.artifacts import write_parquet

    natural = pair_frame(10, "natural", "first_turn_correct_sample_vs_failed_sample")
    synthetic = pair_frame(10, "synthetic", "synthetic_wrong_column", start=100)
    for name, frame in (("natural", natural), ("synthetic", synthetic)):
        write_parquet(frame, tmp_path / f"{name}.parquet")
    inputs = {name: pd.read_parquet(tmp_path / f"{name}.parquet") for name in ("natural", "synthetic")}
    merged = merge_pairs(inputs, MergeSettings(input_fractions={"synthetic": 0.2}))
    assert (merged["input"] == "natural").sum() == 10 and (merged["input"] == "synthetic").sum() == 2


CHEAP = "SELECT name FROM singer WHERE country = 'Peru'"  # SCAN singer
SORTED = CHEAP + " ORDER BY age"  # SCAN singer, USE TEMP B-TREE FOR ORDER BY
CORRELATED = (  # SCAN s, CORRELATED SCALAR SUBQUERY 1, SEARCH t USING INTEGER PRIMARY KEY
    "SELECT name FROM singer AS s WHERE (SELECT country FROM singer AS t WHERE t.singer_id = s.singer_id) "
    "= 'Peru'"
)


@pytest.fixture(scope="module")
def three_correct(data):  # noqa: F811
    from workflow_scripts.rollout.generation import SamplingConfig

    script = {**SCRIPT, PERU: [[CHEAP, SORTED, CORRELATED, "SELECT name FROM singer"]]}
    return rollout(data, ScriptedBackend(script), sampling=SamplingConfig(num_samples=4, temperature=0.7))


def test_cheaper_correct_pairs_prefer_the_cheaper_plan(three_correct):
    peru = three_correct[three_correct["sql"].isin([CHEAP, SORTED, CORRELATED])]
    assert peru["correct"].all()
    # From the real query plans: 1 access + 2 full scan; + 2 temp B-tree; 2 accesses + 2 scan + 3 correlated.
    assert dict(zip(peru["sql"], peru["plan_cost"], strict=True)) == {
        CHEAP: 3.0,
        SORTED: 5.0,
        CORRELATED: 7.0,
    }
    pairs = mine_pairs(three_correct, "train", min_cost_gap=2.0, max_pairs_per_group=5)
    cheaper = pairs[pairs["type"] == "cheaper_correct"]
    assert list(zip(cheaper["chosen"], cheaper["rejected"], strict=True)) == [
        (CHEAP, CORRELATED),  # the largest gap first
        (CHEAP, SORTED),
        (SORTED, CORRELATED),
    ]
    assert (cheaper["chosen_cost"] < cheaper["rejected_cost"]).all()
    assert (cheaper["margin"] == 0).all() and (cheaper["rejected_verdict"] == "correct").all()
    # A wider gap leaves only the widest pair; no gap, no cost pairs; and the cap bounds the group.
    widest = mine_pairs(three_correct, "train", min_cost_gap=3.0)
    assert list(widest.loc[widest["type"] == "cheaper_correct", "rejected"]) == [CORRELATED]
    assert "cheaper_correct" not in set(mine_pairs(three_correct, "train")["type"])
    capped = mine_pairs(three_correct, "train", min_cost_gap=0.5, max_pairs_per_group=1)
    assert (capped["type"] == "cheaper_correct").sum() == 1
    # The failed sample still gives an ordinary pair.
    assert "first_turn_correct_sample_vs_failed_sample" in set(pairs["type"])


def test_merge_keeps_cost_pairs_despite_zero_margin_and_caps_them():
    natural = pd.concat([
        pair_frame(20, "natural", "first_turn_correct_sample_vs_failed_sample"),
        pair_frame(20, "natural", "cheaper_correct", start=100, margin=0.0, rejected_reward=1.0,
                   rejected_verdict="correct"),
        pair_frame(5, "natural", "first_turn_correct_sample_vs_failed_sample", start=200, margin=0.0),
    ])  # fmt: skip
    settings = MergeSettings(type_fractions={"cheaper_correct": 0.2}, min_reward_margin=0.1)
    merged = merge_pairs({"natural": natural}, settings)
    assert (merged["type"] == "cheaper_correct").sum() == 5  # 5 <= 0.2 * (20 + 5)
    assert (
        merged["type"] == "first_turn_correct_sample_vs_failed_sample"
    ).sum() == 20  # margin-0 ones dropped
    assert quality(merged)["cost_pairs"] == 5
