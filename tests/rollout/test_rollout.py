"""Rollouts: the turn-synchronous repair loop, rewards and metrics, on real SQLite databases.

Most tests drive the loop with a scripted backend (answers fixed per question and turn) so that every
branch is exercised exactly; one slow test runs it with the real default model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ingest_concert_questions
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.rollout.generation import Completion, SamplingConfig
from workflow_scripts.rollout.loop import prepare_examples, rule_reward, run_rollout
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.rollout.summary import grpo_groups, summarize

QUESTIONS = {
    "How many singers are there?": "SELECT count(*) FROM singer",
    "Names of singers from Peru?": "SELECT name FROM singer WHERE country = 'Peru'",
    "Venues of concerts in 2012?": "SELECT venue FROM concert WHERE year = 2012",
}


class ScriptedBackend:
    """Answers from a script: {question: [turn-1 answers, turn-2 answers, ...]}, one list entry per sample."""

    name = "scripted"

    def __init__(self, script: dict[str, list[list[str]]]) -> None:
        self.script = script
        self.calls: list[int] = []

    def generate(
        self, prompts: Sequence[list[dict[str, str]]], sampling: SamplingConfig
    ) -> list[list[Completion]]:
        self.calls.append(len(prompts))
        out = []
        for messages in prompts:
            question = messages[1]["content"].rsplit("Question: ", 1)[1].removesuffix("\nSQL:")
            turn = (len(messages) - 2) // 2 + 1
            answers = self.script[question][min(turn, len(self.script[question])) - 1]
            out.append(
                [Completion(answers[i % len(answers)], 10, 5, 0.01) for i in range(sampling.num_samples)]
            )
        return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return ingest_concert_questions(tmp_path_factory.mktemp("rollout"), QUESTIONS, "t")


def rollout(data, backend, **settings) -> pd.DataFrame:
    rs = RolloutSettings(**settings)
    prepared = prepare_examples(data["examples"], data["gold"], data["schema"], rs)
    with Sandbox(workers=1, timeout_s=2.0) as sandbox:
        return run_rollout(prepared, backend, sandbox, rs, MatchSettings(), progress=False)


SCRIPT = {
    # right at once
    "How many singers are there?": [["SELECT count(*) FROM singer"]],
    # schema error, then repaired at turn 2
    "Names of singers from Peru?": [
        ["SELECT nme FROM singer WHERE country = 'Peru'"],
        ["```sql\nSELECT name FROM singer WHERE country = 'Peru';\n```"],
    ],
    # runs but wrong (not empty): an executor cannot see it; result_status repairs it, never rightly
    "Venues of concerts in 2012?": [
        ["SELECT venue FROM concert"],
        ["SELECT venue FROM concert WHERE year = 1"],
    ],
}


def test_repair_loop_execution_feedback(data):
    backend = ScriptedBackend(SCRIPT)
    t = rollout(data, backend, max_turns=3, feedback_mode="execution")
    # Turn-synchronous: one generate call per turn with every failing trajectory in it.
    assert backend.calls == [3, 1]
    by_q = {q: t[t["example_id"] == eid] for q, eid in zip(QUESTIONS, data["examples"]["id"], strict=True)}
    assert list(by_q["How many singers are there?"]["reward"]) == [1.0]
    peru = by_q["Names of singers from Peru?"].sort_values("turn")
    assert list(peru["verdict"]) == ["no_such_column", "correct"]
    assert list(peru["reward"]) == [-0.2, 0.7]
    assert peru["parent_id"].iloc[1] == peru["candidate_id"].iloc[0]
    assert "no such column: nme" in peru["feedback"].iloc[0]
    repair_prompt = json.loads(peru["prompt"].iloc[1])
    assert [m["role"] for m in repair_prompt] == ["system", "user", "assistant", "user"]
    assert repair_prompt[2]["content"] == "SELECT nme FROM singer WHERE country = 'Peru'"
    venues = by_q["Venues of concerts in 2012?"]
    assert list(venues["verdict"]) == ["wrong_row_count"] and list(venues["reward"]) == [0.2]

    summary = summarize(t, 3, 3)
    assert summary["first_turn_ex"] == pytest.approx(1 / 3)
    assert summary["final_ex"] == pytest.approx(2 / 3)
    assert summary["repair_attempted"] == 1 and summary["repair_success_rate"] == 1.0
    assert summary["first_turn_executable"] == pytest.approx(2 / 3)
    assert summary["final_executable"] == 1.0


def test_a_failure_at_the_turn_limit_keeps_the_feedback_a_further_turn_would_show(data):
    one = rollout(data, ScriptedBackend(SCRIPT), max_turns=1, feedback_mode="execution")
    peru = one[one["sql"].str.contains("nme")]
    assert list(peru["stop_reason"]) == ["turn_limit"]
    two = rollout(data, ScriptedBackend(SCRIPT), max_turns=2, feedback_mode="execution")
    repaired = two[two["sql"].str.contains("nme")]
    # the same text the two-turn run showed in its repair prompt
    assert peru["feedback"].iloc[0] == repaired["feedback"].iloc[0]
    assert "no such column: nme" in peru["feedback"].iloc[0]
    # correct answers and failures out of the repair scope (a wrong but non-empty result) get none
    assert one[one["stop_reason"] != "turn_limit"]["feedback"].isna().all()
    assert one["feedback"].notna().sum() == 1


class RefocusBackend:
    """Turn 1: each question's scripted answer; a refocused repair prompt (one user message with a note):
    a query over the first table its schema shows; a conversation repair prompt: the turn-1 answer again."""

    name = "refocus"

    def __init__(self, first: dict[str, str]) -> None:
        self.first = first
        self.prompts: list[list[dict[str, str]]] = []

    def generate(self, prompts, sampling):
        self.prompts += prompts
        out = []
        for messages in prompts:
            user = messages[1]["content"]
            question = user.rsplit("Question: ", 1)[1].split("\n", 1)[0]
            if "\nNote: " in user:
                table = user.split("CREATE TABLE ", 1)[1].split(" ", 1)[0]
                sql = f"SELECT venue FROM {table} WHERE year = 2012"
            else:
                sql = self.first[question]
            out.append([Completion(sql, 10, 5, 0.01)])
        return out


def test_a_refocused_repair_asks_the_question_anew_over_the_tables_that_own_the_column(data):
    first = {
        "How many singers are there?": "SELECT count(*) FROM singer",
        # `venue` read from the wrong table: concert owns it
        "Venues of concerts in 2012?": "SELECT venue FROM singer WHERE year = 2012",
        # no table has `nme`: nothing to refocus on, the conversation prompt instead
        "Names of singers from Peru?": "SELECT nme FROM singer WHERE country = 'Peru'",
    }
    ids = dict(zip(QUESTIONS, data["examples"]["id"], strict=True))
    runs = {}
    for mode in ("conversation", "refocus"):
        backend = RefocusBackend(first)
        t = rollout(data, backend, max_turns=2, feedback_detail="column", repair_prompt=mode)
        runs[mode] = (t, backend.prompts[3:])
    t, prompts = runs["refocus"]
    venues = t[t["example_id"] == ids["Venues of concerts in 2012?"]].sort_values("turn")
    assert list(venues["verdict"]) == ["no_such_column", "correct"]
    refocused = json.loads(venues["prompt"].iloc[1])
    assert [m["role"] for m in refocused] == ["system", "user"]
    assert "CREATE TABLE concert" in refocused[1]["content"]
    assert "CREATE TABLE singer" not in refocused[1]["content"]
    assert refocused[1]["content"].endswith(
        "Question: Venues of concerts in 2012?\nNote: The query failed with a SQLite error: no such column: "
        "venue\nSQL:"
    )
    # the failure with no owning table keeps the conversation: first prompt, failed SQL, feedback
    peru = t[t["example_id"] == ids["Names of singers from Peru?"]].sort_values("turn")
    assert [m["role"] for m in json.loads(peru["prompt"].iloc[1])] == ["system", "user", "assistant", "user"]
    assert len(prompts) == 2
    # under the conversation prompt the same backend repeats its SQL and fixes nothing
    conversation, _ = runs["conversation"]
    assert summarize(conversation, 3, 2)["repair_success_rate"] == 0.0
    assert summarize(t, 3, 2)["repair_success_rate"] == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="repair_prompt must be one of conversation, refocus"):
        RolloutSettings(repair_prompt="fresh")


@pytest.mark.parametrize(
    ("key", "value", "choices"),
    [
        ("schema_mode", "bm42", "full, retrieved, bm25, bm25_fk"),
        ("feedback_detail", "verbose", "basic, column, minimal"),
        ("repair_scope", "always", "verified, online, online_guarded"),
        ("answer", "best", "all, greedy, maj"),
    ],
)
def test_each_enum_setting_is_checked_against_its_type(key: str, value: str, choices: str):
    with pytest.raises(ValueError, match=f"{key} must be one of {choices}, not '{value}'"):
        RolloutSettings(**{key: value})


class RecordingBackend(ScriptedBackend):
    """A scripted backend that also records the sampling settings of each call."""

    def __init__(self, script: dict[str, list[list[str]]]) -> None:
        super().__init__(script)
        self.samplings: list[SamplingConfig] = []

    def generate(self, prompts, sampling):
        self.samplings.append(sampling)
        return super().generate(prompts, sampling)


def test_sampled_repairs_go_on_from_the_first_candidate_the_verifier_accepts(data):
    script = {
        **SCRIPT,
        "Names of singers from Peru?": [
            ["SELECT nme FROM singer WHERE country = 'Peru'"],
            # three repair candidates: an error, the right query (accepted: it runs and returns rows), another
            ["SELECT nm FROM singer", "SELECT name FROM singer WHERE country = 'Peru'", "SELECT 1"],
        ],
    }
    backend = RecordingBackend(script)
    t = rollout(
        data, backend, max_turns=2, feedback_mode="execution", repair_samples=3, repair_temperature=0.9
    )
    # greedy first turn, sampled repairs: the repair temperature applies to repair turns only
    assert [(s.temperature, s.num_samples) for s in backend.samplings] == [(0.0, 1), (0.9, 3)]
    peru = t[(t["turn"] == 2)]
    assert len(peru) == 3 and peru["correct"].sum() == 1
    summary = summarize(t, 3, 2)
    assert summary["repair_attempted"] == 1 and summary["repair_success_rate"] == 1.0
    assert summary["final_ex"] == pytest.approx(2 / 3)
    # without a repair temperature the repairs take the first turn's (greedy here)
    greedy = RecordingBackend(script)
    rollout(data, greedy, max_turns=2, feedback_mode="execution", repair_samples=1)
    assert [s.temperature for s in greedy.samplings] == [0.0, 0.0]


def test_result_status_feedback_repairs_wrong_results_too(data):
    t = rollout(
        data, ScriptedBackend(SCRIPT), max_turns=3, feedback_mode="result_status", repair_scope="verified"
    )
    venues = t[t["sql"].str.contains("venue")].sort_values("turn")
    assert list(venues["turn"]) == [1, 2, 3]
    assert list(venues["reward"]) == [0.2, 0.2, -0.5]
    assert "does not match the expected answer" in venues["feedback"].iloc[0]
    summary = summarize(t, 3, 3)
    assert summary["repair_attempted"] == 2 and summary["repair_success_rate"] == 0.5


def test_samples_and_repair_samples_share_their_prompt(data):
    script = {
        **SCRIPT,
        "Names of singers from Peru?": [
            ["SELECT nme FROM singer", "SELECT name FROM singer WHERE country = 'Peru'"],
            ["SELECT name FROM singer WHERE country = 'Peru'", "SELECT x FROM singer"],
        ],
    }
    t = rollout(
        data,
        ScriptedBackend(script),
        max_turns=2,
        repair_samples=2,
        sampling=SamplingConfig(num_samples=2, temperature=0.7),
    )
    peru = t[t["example_id"] == data["examples"]["id"][1]]
    first = peru[peru["turn"] == 1]
    assert sorted(first["sample"]) == [0, 1] and first["prompt"].nunique() == 1
    repairs = peru[peru["turn"] == 2]
    assert len(repairs) == 2 and repairs["prompt"].nunique() == 1 and set(repairs["candidate"]) == {0, 1}
    assert set(repairs["parent_id"]) == {first[first["sample"] == 0]["candidate_id"].iloc[0]}
    groups = grpo_groups(t)
    assert sum(len(c) for c in groups["completions"]) == len(t)
    assert all(len(c) == len(r) for c, r in zip(groups["completions"], groups["rewards"], strict=True))


@pytest.mark.parametrize(
    ("turn", "max_turns", "correct", "executable", "reward"),
    [
        (1, 3, True, True, 1.0),
        (2, 3, True, True, 0.7),
        (3, 3, True, True, 0.6),
        (1, 3, False, True, 0.2),
        (1, 3, False, False, -0.2),
        (3, 3, False, True, -0.5),
        (1, 1, False, False, -0.5),
    ],
)
def test_rule_reward(turn, max_turns, correct, executable, reward):
    assert rule_reward(turn, max_turns, correct, executable) == reward


def test_retrieval_is_recorded(data):
    t = rollout(data, ScriptedBackend(SCRIPT), schema_mode="bm25", top_k_tables=1)
    row = t[t["sql"].str.contains("count")].iloc[0]
    assert json.loads(row["selected_tables"]) == ["singer"] and json.loads(row["gold_tables"]) == ["singer"]
    assert row["table_recall"] == 1.0
    assert "CREATE TABLE singer" in json.loads(row["prompt"])[1]["content"]
    assert "CREATE TABLE concert" not in json.loads(row["prompt"])[1]["content"]


@pytest.mark.slow
def test_real_model_rollout_with_repair(data, default_model: Path):
    from workflow_scripts.rollout.generation import TransformersBackend

    backend = TransformersBackend(default_model, batch_size=4, threads=2)
    t = rollout(data, backend, max_turns=2, sampling=SamplingConfig(max_new_tokens=48))
    assert set(t["turn"]) <= {1, 2} and (t["turn"] == 1).sum() == 3
    assert (t["completion_tokens"] > 0).all() and (t["prompt_tokens"] > 50).all()
    assert t["status"].isin(["ok", "error", "timeout"]).all()
    repaired = t[t["turn"] == 2]
    assert repaired["parent_id"].isin(t["candidate_id"]).all()
    summary = summarize(t, 3, 2)
    assert 0.0 <= summary["first_turn_ex"] <= summary["final_ex"] <= 1.0


def test_the_key_lists_rules_pass_cover_what_their_stages_read(data):
    """Synthetic pairs get only PROMPT_KEYS of their run and GRPO only EPISODE_KEYS of eval_base (their rules'
    params): the prompts and feedback built from those keys equal those of the whole run."""
    from workflow_scripts.rollout.settings import EPISODE_KEYS, PROMPT_KEYS

    run = {
        "schema_mode": "bm25", "top_k_tables": 1, "fk_hops": 0, "cell_values": 2, "evidence": False,
        "max_turns": 2, "feedback_mode": "error_only", "feedback_detail": "minimal", "repair_scope": "online",
        "repair_samples": 1, "repair_temperature": 0.0, "repair_prompt": "conversation", "answer": "all",
        "num_samples": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 64, "seed": 0, "stop": ["\n\n"],
    }  # fmt: skip
    whole = RolloutSettings.from_config(run)
    prompts = RolloutSettings.from_keys({k: run[k] for k in PROMPT_KEYS})
    episodes = RolloutSettings.from_keys({k: run[k] for k in EPISODE_KEYS})
    frames = data["examples"], data["gold"], data["schema"]
    built = [[ex.prompt for ex in prepare_examples(*frames, s)] for s in (whole, prompts, episodes)]
    assert built[0] == built[1] == built[2] and built[0] != [
        ex.prompt for ex in prepare_examples(*frames, RolloutSettings())
    ]
    feedback = ("feedback_mode", "feedback_detail", "repair_scope")
    assert [getattr(episodes, k) for k in feedback] == [getattr(whole, k) for k in feedback]
    assert episodes.sampling.stop == whole.sampling.stop
