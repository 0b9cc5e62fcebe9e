"""Voting over executed results: maj@k (ties, errors), pass@k, greedy beside them, and maj@k as the answer
that goes to repair, through the real rollout loop and the evaluation matrix."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import ingest_concert_questions
from tests.rollout.test_rollout import QUESTIONS, ScriptedBackend
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.exec_result import ExecResult
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.evaluation.matrix import compare_table, outcomes, paired_voting
from workflow_scripts.rollout.generation import SamplingConfig
from workflow_scripts.rollout.loop import prepare_examples, run_rollout
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.rollout.summary import summarize
from workflow_scripts.rollout.voting import majority_vote, pass_at_k, result_key


def ok(rows: list[tuple]) -> ExecResult:
    return ExecResult("ok", None, None, ("c",) * (len(rows[0]) if rows else 1), rows, False, 0.0)


ERROR = ExecResult("error", "no_such_column", "no such column: x", (), [], False, 0.0)
TIMEOUT = ExecResult("timeout", "timeout", "interrupted", (), [], False, 5.0)


def test_the_largest_result_group_wins_and_errors_never_do() -> None:
    vote = majority_vote([ok([(1,)]), ERROR, ok([(2,)]), ok([(2,)]), ERROR, ERROR])
    assert vote.winner == 2 and vote.counts == (1, 0, 2, 2, 0, 0)
    # three errors outnumber the one result, and still do not win
    assert majority_vote([ERROR, TIMEOUT, ERROR, ok([(1,)])]).winner == 3
    assert majority_vote([ERROR, TIMEOUT, None]).winner is None


def test_ties_go_to_the_higher_summed_logprob_or_else_to_order() -> None:
    results = [ok([(1,)]), ok([(2,)]), ok([(2,)]), ok([(1,)])]
    assert majority_vote(results).winner == 0  # by order: the group whose first member came first
    assert majority_vote(results, [-3.0, -1.0, -1.5, -2.0]).winner == 1  # -2.5 beats -5.0
    assert majority_vote(results, [-1.0, -1.0, -1.5, -1.0]).winner == 0  # -2.0 beats -2.5
    assert majority_vote(results, [-3.0, None, -1.5, -2.0]).winner == 0  # a missing log-prob: order


def test_results_are_grouped_as_the_metric_compares_them() -> None:
    a, dup, perm, rev = (
        ok([(1, "x"), (2, "y")]),
        ok([(1, "x"), (2, "y"), (2, "y")]),
        ok([("x", 1), ("y", 2)]),
        ok([(2, "y"), (1, "x")]),
    )
    spider = {result_key(r, "spider") for r in (a, perm, rev)}
    assert len(spider) == 1 and result_key(dup, "spider") not in spider  # bags, columns permuted, no order
    assert (
        result_key(a, "bird")
        == result_key(dup, "bird")
        == result_key(rev, "bird")
        != result_key(perm, "bird")
    )
    assert len({result_key(r, "strict") for r in (a, dup, perm, rev)}) == 4
    assert result_key(ERROR) is None


def test_pass_at_k_is_the_unbiased_estimate() -> None:
    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 5, 3) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - (7 * 6) / (10 * 9))
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


# --- through the rollout loop ------------------------------------------------------------------------------

COUNT = "SELECT count(*) FROM singer"
PERU = "SELECT name FROM singer WHERE country = 'Peru'"
VENUE = "SELECT venue FROM concert WHERE year = 2012"
# The scripted backend's greedy call answers the first entry; sampled candidate i answers entry i (k = 3).
SCRIPT = {
    # greedy wrong; samples: wrong, right, right -> maj@3 right
    "How many singers are there?": [["SELECT count(*) FROM concert", COUNT, COUNT]],
    # greedy right; samples: right, error, error -> errors never win: maj@3 right
    "Names of singers from Peru?": [[PERU, "SELECT nme FROM singer", "SELECT nme FROM singer"]],
    # all different: a tie, broken by order -> the first sample, wrong; pass@3 right; repaired to right
    "Venues of concerts in 2012?": [
        ["SELECT venue FROM concert WHERE year = 2013", "SELECT venue FROM concert", VENUE],
        [VENUE],
    ],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return ingest_concert_questions(tmp_path_factory.mktemp("voting"), QUESTIONS, "v")


def rollout(data, answer: str, k: int = 3, max_turns: int = 2) -> pd.DataFrame:
    settings = RolloutSettings(
        max_turns=max_turns,
        feedback_mode="result_status",
        repair_scope="verified",
        answer=answer,
        sampling=SamplingConfig(num_samples=k, temperature=0.7),
    )
    prepared = prepare_examples(data["examples"], data["gold"], data["schema"], settings)
    with Sandbox(workers=1, timeout_s=2.0) as sandbox:
        return run_rollout(
            prepared, ScriptedBackend(SCRIPT), sandbox, settings, MatchSettings(), progress=False
        )


def by_question(data, table: pd.DataFrame) -> pd.DataFrame:
    ids = dict(zip(data["examples"]["question"], data["examples"]["id"], strict=True))
    return table.loc[[ids[q] for q in SCRIPT]]


@pytest.mark.parametrize("answer", ["greedy", "maj"])
def test_greedy_maj_and_pass_side_by_side_and_only_the_answer_is_repaired(data, answer: str) -> None:
    t = rollout(data, answer)
    first = t[t["turn"] == 1]
    assert first.groupby("example_id").size().tolist() == [4, 4, 4]  # greedy + 3 samples
    o = by_question(data, outcomes(t))
    assert o["greedy_correct"].tolist() == [False, True, False]
    assert o["maj_correct"].tolist() == [True, True, False]
    assert o["pass_correct"].tolist() == [True, True, True]
    assert o["k"].tolist() == [3, 3, 3]
    chosen = "greedy_correct" if answer == "greedy" else "maj_correct"
    assert o["first_correct"].tolist() == o[chosen].tolist()
    # exactly one answer per example, and only its trajectory goes on to repair
    answers = first[first["is_answer"].eq(True)]
    assert answers.groupby("example_id").size().tolist() == [1, 1, 1]
    if answer == "greedy":
        assert (answers["sample"] == 0).all()
    else:
        assert answers["is_vote"].all()
    repaired = t[t["turn"] > 1]
    assert set(repaired["parent_id"]) <= set(answers["candidate_id"])
    assert (first.loc[first["is_answer"].eq(False), "stop_reason"] == "not_answer").all()
    assert o["final_correct"].tolist() == [answer == "maj", True, True]
    summary = summarize(t, 3, 2)
    assert summary["k"] == 3 and summary["pass_at_k_ex"] == 1.0
    assert summary["greedy_ex"] == pytest.approx(1 / 3) and summary["maj_at_k_ex"] == pytest.approx(2 / 3)
    assert summary["first_turn_ex"] == pytest.approx(o["first_correct"].mean())  # the answer's, not pass@k
    assert summary["candidates"] == len(t)


def test_compare_table_and_paired_statistics_cover_the_decodings(data) -> None:
    results = {"base": outcomes(rollout(data, "greedy")), "dpo": outcomes(rollout(data, "maj"))}
    table = compare_table(results).set_index(["variant", "mode"])
    assert table.loc[("base", "maj@3"), "final EX"] == pytest.approx(2 / 3)
    assert table.loc[("base", "pass@3"), "final EX"] == 1.0
    assert table.loc[("dpo", "one-shot"), "first-turn EX"] == pytest.approx(2 / 3)  # its answer is maj@3
    paired = paired_voting(results)
    assert {"greedy", "maj@3", "pass@3", "maj@3 vs greedy", "pass@3 vs greedy"} <= set(paired["decoding"])
    within = paired[(paired["decoding"] == "maj@3 vs greedy") & (paired["a"] == "base greedy")].iloc[0]
    assert within["b right, a wrong"] == 1 and within["a right, b wrong"] == 0
    assert paired_voting({"base": outcomes(rollout(data, "all", k=1, max_turns=1))}).empty


def test_maj_needs_samples() -> None:
    with pytest.raises(UserError, match="maj@k needs several sampled candidates"):
        RolloutSettings(answer="maj", sampling=SamplingConfig(num_samples=1))
    with pytest.raises(UserError, match="maj@k"):
        RolloutSettings(answer="maj", sampling=SamplingConfig(num_samples=4, temperature=0.0))
    with pytest.raises(ValueError, match="answer must be"):
        RolloutSettings(answer="best")


@pytest.mark.slow
def test_transformers_reports_summed_logprobs(default_model) -> None:
    from workflow_scripts.rollout.backends import make_backend

    backend = make_backend("transformers", default_model, transformers={"batch_size": 4})
    prompts = [[{"role": "user", "content": "Write SQL that counts the rows of table t."}]] * 2
    plain = backend.generate(prompts, SamplingConfig(num_samples=2, temperature=0.7, max_new_tokens=12))
    scored = backend.generate(
        prompts, SamplingConfig(num_samples=2, temperature=0.7, max_new_tokens=12, logprobs=True)
    )
    assert all(c.logprob is None for r in plain for c in r)
    assert [c.text for r in scored for c in r] == [c.text for r in plain for c in r]  # same seeded samples
    assert all(c.logprob is not None and c.logprob <= 0 for r in scored for c in r)
    assert all(c.logprob < 0 for r in scored for c in r if c.completion_tokens)
