"""BIRD's layout: dev.json with SQL / evidence / difficulty / question_id, dev_databases, dev_tables.json.

The tests build a small BIRD-layout data set themselves: evidence in prompts (auto, true, false), difficulty
kept and broken down in evaluation, BIRD's predictions file format, and the bird metric on top.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO
from workflow_scripts.cli.data import ingest
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.data.ingest import DatasetSpec
from workflow_scripts.evaluation.matrix import by_difficulty
from workflow_scripts.rollout.loop import prepare_examples
from workflow_scripts.rollout.prompts import first_prompt, prompt_template_sha256, repair_prompt
from workflow_scripts.rollout.retrieval import recall_table
from workflow_scripts.rollout.settings import RolloutSettings

QUESTIONS = [
    {
        "question_id": 0,
        "db_id": "california_schools",
        "question": "How many schools in Alameda have a charter?",
        "evidence": "charter school refers to `Charter School (Y/N)` = 1",
        "SQL": "SELECT COUNT(*) FROM schools WHERE County = 'Alameda' AND `Charter School (Y/N)` = 1",
        "difficulty": "simple",
    },
    {
        "question_id": 1,
        "db_id": "california_schools",
        "question": "List the names of the schools with the highest free meal rate.",
        "evidence": "free meal rate = `Free Meal Count` / Enrollment",
        "SQL": "SELECT T2.School FROM frpm AS T1 JOIN schools AS T2 ON T1.CDSCode = T2.CDSCode "
        "ORDER BY CAST(T1.`Free Meal Count` AS REAL) / T1.Enrollment DESC LIMIT 2",
        "difficulty": "moderate",
    },
    {
        "question_id": 2,
        "db_id": "california_schools",
        "question": "Which counties have schools?",
        "evidence": "",
        "SQL": "SELECT County FROM schools",
        "difficulty": "challenging",
    },
    {
        "question_id": 3,
        "db_id": "california_schools",
        "question": "Which county has a school named Oak?",
        "evidence": "Oak is a School",
        "SQL": "SELECT County FROM schools WHERE School = 'Oak'",
        "difficulty": "simple",
    },
]

TABLES = [
    {
        "db_id": "california_schools",
        "table_names_original": ["schools", "frpm"],
        "table_names": ["schools", "free or reduced price meals"],
        "column_names_original": [
            [-1, "*"],
            [0, "CDSCode"],
            [0, "School"],
            [0, "County"],
            [0, "Charter School (Y/N)"],
            [1, "CDSCode"],
            [1, "Enrollment"],
            [1, "Free Meal Count"],
        ],
        "column_names": [
            [-1, "*"],
            [0, "cds code"],
            [0, "school"],
            [0, "county"],
            [0, "charter school"],
            [1, "cds code"],
            [1, "enrollment"],
            [1, "free meal count"],
        ],
        "column_types": ["text", "text", "text", "text", "number", "text", "number", "number"],
        "primary_keys": [1],
        "foreign_keys": [[5, 1]],
    }
]


def build_bird(root: Path) -> Path:
    """BIRD's dev layout under `root`: dev.json, dev_tables.json, dev_databases/<db_id>/<db_id>.sqlite."""
    db = root / "dev_databases" / "california_schools" / "california_schools.sqlite"
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE schools (CDSCode TEXT PRIMARY KEY, School TEXT, County TEXT,
                              `Charter School (Y/N)` INTEGER);
        CREATE TABLE frpm (CDSCode TEXT REFERENCES schools(CDSCode), Enrollment INTEGER,
                           `Free Meal Count` INTEGER);
        INSERT INTO schools VALUES ('1', 'Oak', 'Alameda', 1), ('2', 'Elm', 'Alameda', 0),
                                   ('3', 'Pine', 'Fresno', 1), ('4', 'Ash', 'Fresno', 1);
        INSERT INTO frpm VALUES ('1', 100, 50), ('2', 200, 20), ('3', 50, 45), ('4', 80, 8);
        """
    )
    conn.commit()
    conn.close()
    (root / "dev.json").write_text(json.dumps(QUESTIONS, indent=2))
    (root / "dev_tables.json").write_text(json.dumps(TABLES))
    return root


@pytest.fixture
def bird(tmp_path: Path) -> Path:
    return build_bird(tmp_path / "bird")


def spec(root: Path) -> DatasetSpec:
    return DatasetSpec("bird_dev", root / "dev.json", root / "dev_databases", root / "dev_tables.json")


def ingested(root: Path, out: Path, match: MatchSettings | None = None) -> dict[str, pd.DataFrame]:
    ingest(spec(root), out, missing_db="error", sandbox_cfg={"workers": 1}, match=match or MatchSettings())
    return {n: pd.read_parquet(out / f"{n}.parquet") for n in ("examples", "gold", "schema", "excluded")}


def test_bird_layout_is_ingested_with_evidence_and_difficulty(bird: Path, tmp_path: Path) -> None:
    frames = ingested(bird, tmp_path / "out")
    examples = frames["examples"]
    assert examples["id"].tolist() == ["0", "1", "2", "3"]  # question_id
    assert examples["gold_sql"].tolist() == [q["SQL"] for q in QUESTIONS]
    assert examples["difficulty"].tolist() == ["simple", "moderate", "challenging", "simple"]
    assert examples["evidence"].tolist()[:2] == [QUESTIONS[0]["evidence"], QUESTIONS[1]["evidence"]]
    assert examples["evidence"].isna().tolist() == [False, False, True, False]  # empty evidence = none
    assert frames["gold"]["n_rows"].tolist() == [1, 2, 4, 1]
    schema = frames["schema"].set_index(["table", "column"])
    assert schema.loc[("frpm", "Free Meal Count"), "column_nl"] == "free meal count"  # from dev_tables.json
    assert schema.loc[("frpm", "CDSCode"), "fk_table"] == "schools"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["with_evidence"] == 3
    assert summary["difficulties"] == {"simple": 2, "moderate": 1, "challenging": 1}
    assert len(summary["data_sha256"]) == 64
    assert summary["sandbox_timeout_s"] == 5.0 and summary["metric"] == "spider"


def test_evidence_in_prompts_auto_true_and_never_when_off(bird: Path, tmp_path: Path) -> None:
    frames = ingested(bird, tmp_path / "out")
    args = (frames["examples"], frames["gold"], frames["schema"])
    on = prepare_examples(*args, RolloutSettings(schema_mode="full"))
    stated = prepare_examples(*args, RolloutSettings(schema_mode="full", evidence=True))
    off = prepare_examples(*args, RolloutSettings(schema_mode="full", evidence=False))
    assert [p.prompt for p in on] == [p.prompt for p in stated]
    for q, with_ev, without in zip(QUESTIONS, on, off, strict=True):
        user_on, user_off = with_ev.prompt[-1]["content"], without.prompt[-1]["content"]
        assert "External knowledge" not in user_off
        if q["evidence"]:
            assert f"External knowledge: {q['evidence']}\nQuestion: {q['question']}" in user_on
            assert q["evidence"] not in user_off
            # the repair prompt repeats the first prompt, so it carries the evidence too (or not)
            assert q["evidence"] in json.dumps(repair_prompt(with_ev.prompt, "SELECT 1", "error"))
            assert q["evidence"] not in json.dumps(repair_prompt(without.prompt, "SELECT 1", "error"))
        else:
            assert user_on == user_off
    with pytest.raises(ValueError, match="prompt.evidence"):
        RolloutSettings(evidence="sometimes")


def test_retrieval_reads_the_evidence_the_prompt_shows(bird: Path, tmp_path: Path) -> None:
    """A question whose words name no table, with evidence that names one: shown evidence steers retrieval."""
    frames = ingested(bird, tmp_path / "out")
    vague = (
        frames["examples"]
        .iloc[:1]
        .assign(
            question="How many are there in total?",
            evidence="in total refers to the rows of frpm (free meal counts)",
            gold_sql="SELECT COUNT(*) FROM frpm",
        )
    )
    settings = {"top_k": 1, "fk_hops": 0, "cell_values": 0}
    recall = {
        setting: recall_table(vague, frames["schema"], evidence=setting, **settings).set_index("mode")[
            "recall"
        ]
        for setting in ("auto", False)
    }
    assert recall["auto"]["bm25"] == 1.0 and recall["auto"]["retrieved"] == 1.0
    assert recall[False]["bm25"] == 0.0  # the question alone finds nothing and falls back to the first table
    run = {"schema_mode": "bm25", "top_k_tables": 1, "fk_hops": 0}
    prepared = {
        e: prepare_examples(vague, frames["gold"], frames["schema"], RolloutSettings(**run, evidence=e))[0]
        for e in ("auto", False)
    }
    assert prepared["auto"].selected_tables == ["frpm"] and prepared[False].selected_tables == ["schools"]


def test_prompts_without_evidence_are_unchanged() -> None:
    # Spider-style data (no evidence) gets exactly the prompt it always had
    assert first_prompt("CREATE TABLE t (a)", "How many?")[-1]["content"] == (
        "Database schema:\nCREATE TABLE t (a)\n\nQuestion: How many?\nSQL:"
    )
    assert (
        first_prompt("S", "Q", "E")[-1]["content"]
        == "Database schema:\nS\n\nExternal knowledge: E\nQuestion: Q\nSQL:"
    )
    assert len(prompt_template_sha256()) == 64


def run_evaluate(*args: str | Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "workflow_scripts.evaluate", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


def test_bird_predictions_file_scored_by_difficulty(bird: Path, tmp_path: Path) -> None:
    preds = {
        "0": QUESTIONS[0]["SQL"] + "\t----- bird -----\tcalifornia_schools",
        "1": "SELECT School FROM schools LIMIT 2\t----- bird -----\tcalifornia_schools",
        "2": "SELECT DISTINCT County FROM schools\t----- bird -----\tcalifornia_schools",
        "3": "SELECT nope FROM schools\t----- bird -----\tcalifornia_schools",
    }
    pred = tmp_path / "predict_dev.json"
    pred.write_text(json.dumps(preds))
    out = tmp_path / "scored"
    done = run_evaluate(
        "--dataset", bird / "dev.json", "--db-root", bird / "dev_databases", "--pred", pred,
        "--out", out, "--metric", "bird",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    # bird: DISTINCT County is the same set as County; the moderate one picks other schools
    assert summary["by_difficulty"] == {
        "simple": {"examples": 2, "correct": 1, "ex": 0.5},
        "moderate": {"examples": 1, "correct": 0, "ex": 0.0},
        "challenging": {"examples": 1, "correct": 1, "ex": 1.0},
    }
    assert summary["ex"] == 0.5 and summary["metric"] == "bird"
    assert "EX by difficulty" in done.stdout
    per_example = pd.read_parquet(out / "per_example.parquet")
    assert per_example["difficulty"].tolist() == ["simple", "moderate", "challenging", "simple"]
    # spider counts duplicates: DISTINCT County (removed) is the bag of all four rows: also correct
    spider = run_evaluate(
        "--dataset",
        bird / "dev.json",
        "--db-root",
        bird / "dev_databases",
        "--pred",
        pred,
        "--out",
        tmp_path / "s",
    )
    assert spider.returncode == 0, spider.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [('{"0": "SELECT 1"}', "have no prediction"), ('["SELECT 1"]', "not BIRD's predictions format")],
)
def test_bad_bird_predictions_file_is_one_clear_error(bird: Path, tmp_path: Path, content: str, message: str):
    pred = tmp_path / "predict_dev.json"
    pred.write_text(content)
    done = run_evaluate(
        "--dataset",
        bird / "dev.json",
        "--db-root",
        bird / "dev_databases",
        "--pred",
        pred,
        "--out",
        tmp_path / "o",
    )
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and "Fix:" in last


def test_compare_breaks_ex_down_by_difficulty() -> None:
    index = pd.Index(["0", "1", "2", "3"], name="example_id")
    o = pd.DataFrame(
        {"first_correct": [True, False, False, True], "final_correct": [True, True, False, True]}, index=index
    )
    difficulty = pd.Series(["simple", "moderate", "challenging", "simple"], index=index)
    table = by_difficulty({"base": o}, difficulty)
    got = table.set_index(["mode", "difficulty"])["EX"]
    assert got[("one-shot", "simple")] == 1.0 and got[("one-shot", "moderate")] == 0.0
    assert got[("repair", "moderate")] == 1.0 and got[("repair", "all")] == 0.75
    assert table["difficulty"].tolist()[:4] == ["simple", "moderate", "challenging", "all"]
    assert by_difficulty({"base": o}, pd.Series([None] * 4, index=index, dtype=object)).empty


def test_config_schema_validates_prompt_evidence() -> None:
    import yaml
    from snakemake.utils import validate

    schema = str(REPO / "schemas" / "config.schema.yaml")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert config["prompt"]["evidence"] == "auto"
    for value in ("auto", True, False):
        validate({**config, "prompt": {"evidence": value}}, schema)
    with pytest.raises(Exception, match="sometimes"):
        validate({**config, "prompt": {"evidence": "sometimes"}}, schema)


def test_bird_matrix_counts_unscorable_questions_as_wrong() -> None:
    from workflow_scripts.evaluation.matrix import compare_table, with_unscored

    index = pd.Index(["a", "c"], name="example_id")
    o = pd.DataFrame(
        {
            "first_verdict": ["correct", "correct"],
            "first_guarded": False,
            "first_correct": [True, True],
            "final_correct": [True, True],
            "first_executable": True,
            "final_executable": True,
            "repaired": False,
        },
        index=index,
    )
    examples = pd.DataFrame({"id": ["a", "c", "e"], "position": [0, 2, 4]})
    # b (position 1) lies among the evaluated questions; d and f come after the last evaluated one
    excluded = pd.DataFrame(
        {"id": ["b", "d", "f"], "position": [1, 3, 5], "reason": ["gold_error", "missing_db", "gold_error"]}
    )
    full = with_unscored({"base": o}, examples, excluded)["base"]
    assert full.index.tolist() == ["a", "b", "c"] and full.loc["b", "first_verdict"] == "gold_error"
    table = compare_table({"base": full}).set_index("mode")
    assert table.loc["one-shot", "first-turn EX"] == pytest.approx(2 / 3)
    assert with_unscored({"base": o}, examples, excluded.iloc[:0])["base"] is o
