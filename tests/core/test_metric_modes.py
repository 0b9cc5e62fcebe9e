"""Named metric modes (spider, bird, strict) on hand-made cases where they disagree.

Every case is scored under all three modes: duplicates, row order (with and without ORDER BY in the gold),
a column permutation, DISTINCT, and a timeout (of the prediction: wrong everywhere; of the gold: excluded
from Spider's denominator, counted as wrong by BIRD's).
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
from workflow_scripts.core.artifacts import inherited, read_provenance, write_parquet
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.exec_result import ExecResult
from workflow_scripts.core.matching import METRICS, results_equal, verdict
from workflow_scripts.core.scoring import MatchSettings


def ok(rows: list[tuple]) -> ExecResult:
    return ExecResult("ok", None, None, ("c",) * (len(rows[0]) if rows else 1), rows, False, 0.0)


TIMEOUT = ExecResult("timeout", "timeout", "interrupted", (), [], False, 5.0)

# (case, gold result, predicted result, gold has ORDER BY, {metric: verdict})
CASES = [
    ("duplicates", ok([(1,), (2,)]), ok([(1,), (1,), (2,)]), False,
     {"spider": "wrong_row_count", "bird": "correct", "strict": "wrong_row_count"}),
    ("order without ORDER BY", ok([(1,), (2,)]), ok([(2,), (1,)]), False,
     {"spider": "correct", "bird": "correct", "strict": "wrong_result"}),
    ("order with ORDER BY", ok([(1,), (2,)]), ok([(2,), (1,)]), True,
     {"spider": "wrong_result", "bird": "correct", "strict": "wrong_result"}),
    ("column permutation", ok([(1, "a"), (2, "b")]), ok([("a", 1), ("b", 2)]), False,
     {"spider": "correct", "bird": "wrong_result", "strict": "wrong_result"}),
    ("duplicates, other order", ok([(1,), (1,), (2,)]), ok([(2,), (1,)]), False,
     {"spider": "wrong_row_count", "bird": "correct", "strict": "wrong_row_count"}),
    ("same list", ok([(1, "a"), (2, "b")]), ok([(1, "a"), (2, "b")]), True,
     {"spider": "correct", "bird": "correct", "strict": "correct"}),
    ("both empty", ok([]), ok([]), False, {"spider": "correct", "bird": "correct", "strict": "correct"}),
    ("prediction times out", ok([(1,)]), TIMEOUT, False,
     {"spider": "timeout", "bird": "timeout", "strict": "timeout"}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "gold", "pred", "ordered", "expected"), CASES, ids=[c[0] for c in CASES])
def test_every_mode_on_cases_where_they_disagree(case, gold, pred, ordered, expected) -> None:
    assert set(expected) == set(METRICS)
    for metric in METRICS:
        got = verdict(gold, pred, order_matters=ordered, metric=metric)
        assert got == expected[metric], (case, metric)
        assert MatchSettings(metric=metric).verdict(gold, pred, order_matters=ordered) == got


def test_unknown_metric_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        results_equal([(1,)], [(1,)], order_matters=False, metric="bleu")
    with pytest.raises(UserError, match=r"matching.metric .*spider, bird, strict"):
        MatchSettings(metric="bleu")
    with pytest.raises(UserError, match="unknown matching setting"):
        MatchSettings.from_config({"metric": "bird", "kep_distinct": True})
    assert MatchSettings.from_config({}) == MatchSettings()
    assert MatchSettings.from_config({"metric": "bird"}).to_config() == {
        "keep_distinct": False,
        "metric": "bird",
    }


def test_only_spider_rewrites_the_sql() -> None:
    sql = "SELECT DISTINCT a FROM t WHERE y > = 1"
    assert MatchSettings().prepare(sql) == "SELECT  a FROM t WHERE y >= 1"
    assert MatchSettings(keep_distinct=True).prepare(sql) == "SELECT DISTINCT a FROM t WHERE y >= 1"
    assert MatchSettings(metric="bird").prepare(sql) == sql
    assert MatchSettings(metric="strict").prepare(sql) == sql


# --- end to end: the evaluate command on a real database ------------------------------------------------


def make_pets(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE pet (pet_id INTEGER PRIMARY KEY, name TEXT, kind TEXT, age INTEGER);
        INSERT INTO pet VALUES (1, 'Rex', 'dog', 3), (2, 'Tom', 'cat', 5), (3, 'Kit', 'cat', 2),
                               (4, 'Bo', 'dog', 7), (5, 'Fin', 'fish', 1);
        """
    )
    conn.commit()
    conn.close()
    return path


SLOW = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r"

# (gold SQL, predicted SQL, {metric: verdict}); None = excluded (the gold SQL times out)
E2E = [
    ("SELECT DISTINCT kind FROM pet", "SELECT kind FROM pet",
     {"spider": "correct", "bird": "correct", "strict": "wrong_row_count"}),
    ("SELECT count(DISTINCT kind) FROM pet", "SELECT count(kind) FROM pet",
     {"spider": "correct", "bird": "wrong_result", "strict": "wrong_result"}),
    ("SELECT name, age FROM pet WHERE kind = 'cat'", "SELECT age, name FROM pet WHERE kind = 'cat'",
     {"spider": "correct", "bird": "wrong_result", "strict": "wrong_result"}),
    ("SELECT name FROM pet ORDER BY age", "SELECT name FROM pet ORDER BY age DESC",
     {"spider": "wrong_result", "bird": "correct", "strict": "wrong_result"}),
    ("SELECT kind FROM pet WHERE age > 2", "SELECT kind FROM pet WHERE age > 2 UNION SELECT 'dog'",
     {"spider": "wrong_row_count", "bird": "correct", "strict": "wrong_row_count"}),
    ("SELECT name FROM pet WHERE age < 4", "SELECT name FROM pet WHERE age < 4",
     {"spider": "correct", "bird": "correct", "strict": "correct"}),
    ("SELECT name FROM pet", SLOW, {"spider": "timeout", "bird": "timeout", "strict": "timeout"}),
    (SLOW, "SELECT 1", {"spider": None, "bird": None, "strict": None}),
]  # fmt: skip


@pytest.fixture(scope="module")
def pets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("modes")
    make_pets(root / "db" / "pets" / "pets.sqlite")
    data = root / "dev.json"
    data.write_text(
        json.dumps([{"db_id": "pets", "question": f"q{i}", "query": g} for i, (g, _, _) in enumerate(E2E)])
    )
    pred = root / "pred.sql"
    pred.write_text("\n".join(p for _, p, _ in E2E) + "\n")
    return data, root / "db", pred


def run_evaluate(*args: str | Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "workflow_scripts.evaluate", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize("metric", METRICS)
def test_evaluate_scores_each_mode_and_stamps_it(pets, tmp_path: Path, metric: str) -> None:
    data, db_root, pred = pets
    out = tmp_path / metric
    done = run_evaluate(
        "--dataset", data, "--db-root", db_root, "--pred", pred, "--out", out, "--metric", metric,
        "--sandbox", json.dumps({"timeout_s": 0.5, "workers": 1}),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    per_example = pd.read_parquet(out / "per_example.parquet")
    expected = [e[metric] for _, _, e in E2E]
    got = [None if v == "gold_error" else v for v in per_example["verdict"]]
    assert got == expected
    summary = json.loads((out / "summary.json").read_text())
    correct = sum(v == "correct" for v in expected)
    assert summary["metric"] == metric and summary["correct"] == correct
    # BIRD: every question in the denominator (the timed-out gold counts as wrong); else the scored ones
    denominator = len(E2E) if metric == "bird" else len(E2E) - 1
    assert summary["denominator"] == denominator
    assert summary["ex"] == round(correct / denominator, 6)
    assert read_provenance(out / "per_example.parquet")["matching"]["metric"] == metric
    assert f"{metric} (denominator {denominator})" in done.stdout


def test_the_modes_disagree_on_the_same_predictions(pets, tmp_path: Path) -> None:
    data, db_root, pred = pets
    ex = {}
    for metric in METRICS:
        out = tmp_path / metric
        run_evaluate(
            "--dataset", data, "--db-root", db_root, "--pred", pred, "--out", out, "--metric", metric,
            "--sandbox", json.dumps({"timeout_s": 0.5, "workers": 1}),
        )  # fmt: skip
        ex[metric] = json.loads((out / "summary.json").read_text())["ex"]
    assert len(set(ex.values())) == 3, ex


# --- the mode travels with the artifacts ---------------------------------------------------------------


def test_ingest_stamps_the_mode_and_scorers_refuse_other_gold(tmp_path: Path) -> None:
    from workflow_scripts.cli import check_ingested, ingested_matching
    from workflow_scripts.cli.data import ingest
    from workflow_scripts.data.ingest import DatasetSpec

    make_pets(tmp_path / "db" / "pets" / "pets.sqlite")
    data = tmp_path / "dev.json"
    data.write_text(
        json.dumps([{"db_id": "pets", "question": "q", "query": "SELECT DISTINCT kind FROM pet"}])
    )
    out = tmp_path / "ingested"
    summary = ingest(
        DatasetSpec("pets", data, tmp_path / "db"),
        out,
        missing_db="error",
        sandbox_cfg={"workers": 1},
        match=MatchSettings(metric="bird"),
    )
    assert summary["metric"] == "bird"
    for name in ("examples", "gold", "excluded", "schema"):
        assert read_provenance(out / f"{name}.parquet")["matching"] == {
            "keep_distinct": False,
            "metric": "bird",
        }
    # bird runs the gold SQL as written: DISTINCT kept
    assert pd.read_parquet(out / "gold.parquet")["n_rows"].tolist() == [3]
    assert ingested_matching(out) == MatchSettings(metric="bird")
    check_ingested(out, MatchSettings(metric="bird"))
    with pytest.raises(UserError, match="ingested with matching .*bird.* Fix: ingest the data set again"):
        check_ingested(out, MatchSettings())


def test_stages_inherit_the_mode_and_refuse_mixed_inputs(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1]})
    write_parquet(frame, tmp_path / "a.parquet", {"matching": {"metric": "bird", "keep_distinct": False}})
    write_parquet(frame, tmp_path / "b.parquet", {"matching": {"metric": "bird", "keep_distinct": False}})
    write_parquet(frame, tmp_path / "c.parquet", {"matching": {"metric": "spider", "keep_distinct": False}})
    write_parquet(frame, tmp_path / "old.parquet", {})
    paths = [tmp_path / n for n in ("a.parquet", "b.parquet", "old.parquet")]
    assert inherited(paths)["metric"] == "bird"
    assert inherited([tmp_path / "old.parquet"]) is None
    with pytest.raises(ValueError, match="made with matching"):
        inherited([*paths, tmp_path / "c.parquet"])


def test_config_schema_validates_the_metric() -> None:
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert config["matching"]["metric"] == "spider"
    for metric in METRICS:
        validate(
            {**config, "matching": {**config["matching"], "metric": metric}},
            str(REPO / "schemas/config.schema.yaml"),
        )
    with pytest.raises(Exception, match="bleu"):
        validate(
            {**config, "matching": {"metric": "bleu", "keep_distinct": False}},
            str(REPO / "schemas/config.schema.yaml"),
        )
