"""Repair scopes in the rollout loop, and the feedback-mode × repair-scope study, on a real SQLite database.

A scripted backend answers per question and turn, so every outcome is known: one question is right at once,
one is an execution error, one a wrong non-empty result (only a gold verifier sees it), one an empty result,
and one is right at once although a rule guard fires on it (SQLite's bare-column rule for max()).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, ingest_concert_questions
from tests.rollout.test_rollout import ScriptedBackend
from workflow_scripts.core.artifacts import write_parquet
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.rollout.feedback import FEEDBACK_MODES, REPAIR_SCOPES
from workflow_scripts.rollout.generation import SamplingConfig
from workflow_scripts.rollout.loop import first_turn_outputs, prepare_examples, run_rollout
from workflow_scripts.rollout.repair_study import CachedBackend, run_study, study_table
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.rollout.summary import summarize

COUNT, PERU, VENUES, OLDEST, JAPAN = (
    "How many singers are there?",
    "Names of singers from Peru?",
    "Venues of concerts in 2012?",
    "Name and age of the oldest singer?",
    "Venues of concerts by singers from Japan?",
)
GOLD = {
    COUNT: "SELECT count(*) FROM singer",
    PERU: "SELECT name FROM singer WHERE country = 'Peru'",
    VENUES: "SELECT venue FROM concert WHERE year = 2012",
    OLDEST: "SELECT name, age FROM singer ORDER BY age DESC LIMIT 1",
    JAPAN: "SELECT venue FROM concert JOIN singer ON concert.singer_id = singer.singer_id "
    "WHERE singer.country = 'Japan'",
}
SCRIPT = {
    COUNT: [["SELECT count(*) FROM singer"]],
    PERU: [["SELECT nme FROM singer WHERE country = 'Peru'"], [GOLD[PERU]]],
    VENUES: [["SELECT venue FROM concert"], [GOLD[VENUES]]],
    # Right (SQLite returns the row of the max), but the aggregate-without-GROUP-BY guard fires on it.
    OLDEST: [["SELECT name, max(age) FROM singer"], ["SELECT name, age FROM singer ORDER BY age LIMIT 1"]],
    JAPAN: [["SELECT venue FROM concert WHERE year = 1990"], [GOLD[JAPAN]]],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return ingest_concert_questions(tmp_path_factory.mktemp("study"), GOLD, "s")


def prepared(data, settings: RolloutSettings):
    return prepare_examples(data["examples"], data["gold"], data["schema"], settings)


def by_question(t: pd.DataFrame, data) -> dict[str, pd.DataFrame]:
    ids = dict(zip(data["examples"]["question"], data["examples"]["id"], strict=True))
    return {q: t[t["example_id"] == ids[q]].sort_values("turn") for q in GOLD}


@pytest.mark.parametrize(
    ("scope", "repaired", "final_ex"),
    [
        ("verified", {PERU, VENUES, JAPAN}, 1.0),
        ("online", {PERU}, 0.6),
        ("online_guarded", {PERU, JAPAN, OLDEST}, 0.6),
    ],
)
def test_repair_scope_decides_which_failures_are_repaired(data, scope, repaired, final_ex):
    settings = RolloutSettings(max_turns=3, repair_scope=scope)
    with Sandbox(workers=1, timeout_s=2.0) as sandbox:
        t = run_rollout(prepared(data, settings), ScriptedBackend(SCRIPT), sandbox, settings, MatchSettings())
    rows = by_question(t, data)
    assert {q for q, r in rows.items() if (r["turn"] > 1).any()} == repaired
    # One final answer per trajectory, with the reason it ended.
    final = t[t["stop_reason"].notna()]
    assert len(final) == len(GOLD) and final["example_id"].is_unique
    if scope == "online":
        assert rows[VENUES]["stop_reason"].tolist() == ["out_of_scope"]  # wrong, but no executor sees it
        assert rows[JAPAN]["stop_reason"].tolist() == ["out_of_scope"]
    if scope == "online_guarded":
        oldest = rows[OLDEST]
        assert oldest["correct"].tolist() == [True, False]  # a guard sent a right answer to repair
        assert oldest["repair_signal"].iloc[0] == "rule_guard"
        assert json.loads(oldest["guards"].iloc[0]) == ["aggregate_without_group_by"]
        assert "Warning: The query mixes aggregate functions" in oldest["feedback"].iloc[0]
        assert rows[JAPAN]["repair_signal"].iloc[0] == "empty_result"
    peru = rows[PERU]
    assert peru["repair_signal"].iloc[0] == "error" and pd.isna(peru["stop_reason"].iloc[0])
    assert peru["stop_reason"].iloc[1] == "correct"
    summary = summarize(t, len(GOLD), 3)
    assert summary["final_ex"] == pytest.approx(final_ex)  # the final answers, not "any candidate correct"
    assert sum(summary["stop_reasons"].values()) == len(GOLD)


def test_trajectories_carry_query_plans_and_costs(data):
    settings = RolloutSettings(max_turns=2)
    with Sandbox(workers=1, timeout_s=2.0) as sandbox:
        t = run_rollout(prepared(data, settings), ScriptedBackend(SCRIPT), sandbox, settings, MatchSettings())
    ran, failed = t[t["executable"]], t[~t["executable"]]
    assert ran["plan_cost"].notna().all() and failed["plan_cost"].isna().all()
    japan = by_question(t, data)[JAPAN]
    assert json.loads(japan["plan"].iloc[0]) == ["SCAN concert"]
    joined = japan.iloc[1]
    assert joined["plan_table_accesses"] == 2 and joined["plan_cartesian_joins"] == 0
    assert joined["plan_cost"] > japan["plan_cost"].iloc[0]
    assert (ran["exec_s"] > 0).all()


def test_a_rollout_can_start_from_the_first_turn_of_another(data):
    settings = RolloutSettings(max_turns=2, repair_scope="verified")
    examples = prepared(data, settings)
    with Sandbox(workers=1, timeout_s=2.0) as sandbox:
        full = run_rollout(
            examples, ScriptedBackend(SCRIPT), sandbox, settings, MatchSettings(), progress=False
        )
        one_shot = full[full["turn"] == 1]
        backend = ScriptedBackend(SCRIPT)
        resumed = run_rollout(
            examples,
            backend,
            sandbox,
            settings,
            MatchSettings(),
            progress=False,
            first_turn=first_turn_outputs(one_shot, examples),
        )
    assert backend.calls == [3]  # only the repairs were generated
    same = ["candidate_id", "prompt", "sql", "verdict", "reward", "feedback", "stop_reason", "plan_cost"]
    pd.testing.assert_frame_equal(full[same], resumed[same])
    with pytest.raises(ValueError, match="differs from the prompt built now"):
        first_turn_outputs(one_shot, prepared(data, RolloutSettings(top_k_tables=1, fk_hops=0)))


def test_cached_backend_generates_each_greedy_prompt_once():
    inner = ScriptedBackend(SCRIPT)
    cached = CachedBackend(inner)
    prompt = [{"role": "system", "content": "s"}, {"role": "user", "content": f"Question: {COUNT}\nSQL:"}]
    first = cached.generate([prompt, prompt], SamplingConfig())
    again = cached.generate([prompt], SamplingConfig())
    assert inner.calls == [1] and cached.generated == 1 and first[0] == first[1] == again[0]
    with pytest.raises(ValueError, match="greedy"):
        cached.generate([prompt], SamplingConfig(temperature=0.7))


@pytest.fixture(scope="module")
def study(data):
    """The study's trajectories over every mode (plus the alias `execution`) and scope, and its backend."""
    base = RolloutSettings(max_turns=2)
    examples = prepared(data, base)
    with Sandbox(workers=1, timeout_s=2.0) as sandbox:
        one_shot = run_rollout(
            examples, ScriptedBackend(SCRIPT), sandbox, RolloutSettings(), MatchSettings(), progress=False
        )
        backend = ScriptedBackend(SCRIPT)
        t = run_study(
            examples,
            backend,
            sandbox,
            base,
            MatchSettings(),
            modes=[*FEEDBACK_MODES, "execution"],
            scopes=REPAIR_SCOPES,
            first_turn=first_turn_outputs(one_shot, examples),
        )
    return t, backend


def test_study_of_every_mode_and_scope(study):
    t, backend = study
    repairs = t[t["turn"] == 2]
    # Every distinct repair prompt is generated once, whatever number of combinations shares it.
    assert sum(backend.calls) == repairs["prompt"].nunique() < len(repairs)
    table = study_table(t).set_index(["feedback_mode", "repair_scope"])
    assert len(table) == 4 * 3  # `execution` is online_visible: one combination
    assert set(t["feedback_mode"]) == set(FEEDBACK_MODES)
    for mode in FEEDBACK_MODES:
        verified, online, guarded = (table.loc[(mode, s)] for s in ("verified", "online", "online_guarded"))
        assert verified["first-turn EX"] == online["first-turn EX"] == pytest.approx(0.4)
        assert (verified["final EX"], verified["fixed"], verified["broken"]) == (1.0, 3, 0)
        assert (online["final EX"], online["repairs"], online["accepted wrong"]) == (0.6, 1, 2)
        assert (guarded["final EX"], guarded["fixed"], guarded["broken"]) == (0.6, 2, 1)
        assert guarded["repair SR"] == pytest.approx(2 / 3) and guarded["EX gain"] == pytest.approx(0.2)
    feedback = repairs.groupby("feedback_mode")["prompt"].apply(lambda p: " ".join(p))
    assert "First rows of the expected answer" in feedback["oracle_rows"]
    assert all("First rows of the expected answer" not in feedback[m] for m in FEEDBACK_MODES[:3])
    assert "does not match the expected answer" in feedback["result_status"]
    assert "expected" not in feedback["online_visible"] and "expected" not in feedback["error_only"]
    assert all(GOLD[q] not in feedback[m] for q in (VENUES, JAPAN, OLDEST) for m in FEEDBACK_MODES)


def test_study_stage_reads_the_first_turn_file_and_writes_its_artifacts(data, tmp_path, monkeypatch):
    from workflow_scripts.cli import rollout as stage

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    run = {**config["rollout"], "num_samples": 1, "temperature": 0.0, "model": "unused", "adapter": None}
    run["evidence"] = config["prompt"]["evidence"]  # as rules/common.smk adds it to every run
    settings = RolloutSettings.from_config(run)
    with Sandbox(workers=1, timeout_s=2.0) as sandbox:
        first = run_rollout(
            prepared(data, settings),
            ScriptedBackend(SCRIPT),
            sandbox,
            settings,
            MatchSettings(),
            progress=False,
        )
    write_parquet(first, tmp_path / "first.parquet")
    summary = stage.gather("first", {**run, "dataset": "s"}, [tmp_path / "first.parquet"], tmp_path / "run")
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written == json.loads(json.dumps(summary)) and written["repair_scope"] == run["repair_scope"]
    # One turn (config.yaml's rollout default): what the scope flags ends at the turn limit, OLDEST too.
    assert written["stop_reasons"] == {"correct": 1, "out_of_scope": 1, "turn_limit": 3}
    assert written["median_plan_cost_correct"] == 3.0  # SCAN singer: count(*) and max() on one table
    backend = ScriptedBackend(SCRIPT)
    monkeypatch.setattr(stage, "run_backend", lambda run, threads: backend)
    study = {
        "enabled": True,
        "modes": ["error_only", "oracle_rows"],
        "scopes": ["online"],
        "limit": 4,
        "max_turns": 2,
    }
    out = tmp_path / "study"
    stage.study(run, study, data["dir"], tmp_path / "first.parquet", {"workers": 1}, MatchSettings(), 1, out)
    table = pd.read_parquet(out / "study.parquet")
    assert list(zip(table["feedback_mode"], table["repair_scope"], strict=True)) == [
        ("error_only", "online"),
        ("oracle_rows", "online"),
    ]
    assert (table["examples"] == 4).all() and (table["repairs"] == 1).all()  # PERU, the only error
    assert json.loads((out / "summary.json").read_text())["rows"][0]["final EX"] == table["final EX"][0]
    assert pd.read_parquet(out / "trajectories.parquet")["example_id"].nunique() == 4
    monkeypatch.setattr(stage, "run_backend", lambda run, threads: pytest.fail("must not load a model"))
    with pytest.raises(Exception, match="not a greedy one-sample rollout"):
        stage.study(
            {**run, "temperature": 0.5},
            study,
            data["dir"],
            tmp_path / "first.parquet",
            {},
            MatchSettings(),
            1,
            out,
        )


def test_report_sections_of_the_study_and_of_query_costs(study, tmp_path):
    from workflow_scripts.report.evaluation import cost_section
    from workflow_scripts.report.rollout import repair_study_section

    t, _ = study
    write_parquet(study_table(t), tmp_path / "study.parquet")
    html = repair_study_section(tmp_path / "study.parquet")
    assert html.count("<tr>") == 1 + 12 and "data:image/png;base64," in html
    assert "<td>oracle_rows</td><td>online_guarded</td><td>5</td><td>0.400</td><td>0.600</td>" in html
    for name, scope in (("verified", "verified"), ("online", "online")):
        write_parquet(t[(t["feedback_mode"] == "online_visible") & (t["repair_scope"] == scope)],
                      tmp_path / name / "trajectories.parquet")  # fmt: skip
    html = cost_section({"verified": tmp_path / "verified", "online": tmp_path / "online"})
    # Correct final answers: all 5 under `verified`, 3 under `online`.
    assert "<td>verified</td><td>5</td>" in html and "<td>online</td><td>3</td>" in html
    assert "data:image/png;base64," in html
