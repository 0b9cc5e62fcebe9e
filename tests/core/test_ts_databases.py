"""Test-suite databases (Spider's database_ts layout): an example is correct only when it matches on all.

The tests build the layout themselves: a main concert database and a test-suite folder with a copy of it
plus two databases of other contents, on which a query that is right by accident on the main database
is caught.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, make_concert_db
from tests.rollout.test_rollout import ScriptedBackend
from workflow_scripts.cli.data import ingest
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.core.ts_databases import suite_paths
from workflow_scripts.data.ingest import DatasetSpec
from workflow_scripts.rollout.loop import prepare_examples, run_rollout
from workflow_scripts.rollout.settings import RolloutSettings

# gold SQL, prediction; singer ages are 20 + singer_id in the main database, so "age > 30" and
# "singer_id > 10" agree there and nowhere else
PERU = "SELECT name FROM singer WHERE country = 'Peru'"
QUESTIONS = [
    (
        "Singers older than 30?",
        "SELECT name FROM singer WHERE age > 30",
        "SELECT name FROM singer WHERE singer_id > 10",
    ),
    ("How many singers?", "SELECT count(*) FROM singer", "SELECT count(*) FROM singer"),
    ("Singers from Peru?", PERU, PERU),
    ("Concert venues?", "SELECT venue FROM concert", "SELECT venue FROM concert"),
]


def reshuffle(path: Path, seed: int) -> None:
    """Other contents: ages no longer follow ids (as test-suite databases are fuzzed)."""
    conn = sqlite3.connect(path)
    conn.execute("UPDATE singer SET age = 20 + ((singer_id * ?) % 23)", (seed,))
    conn.commit()
    conn.close()


def build_layout(root: Path, *, broken: bool = False) -> dict[str, Path]:
    main = make_concert_db(root / "database" / "concert" / "concert.sqlite")
    ts = root / "database_ts" / "concert"
    ts.mkdir(parents=True)
    shutil.copy(main, ts / "concert.sqlite")  # the original is part of a test suite, as in Spider's
    for i, seed in ((1, 7), (2, 11)):
        shutil.copy(main, ts / f"concert_{i}.sqlite")
        reshuffle(ts / f"concert_{i}.sqlite", seed)
    if broken:  # a test-suite database on which one gold query cannot run
        conn = sqlite3.connect(ts / "concert_2.sqlite")
        conn.execute("DROP TABLE concert")
        conn.commit()
        conn.close()
    data = root / "dev.json"
    data.write_text(json.dumps([{"db_id": "concert", "question": q, "query": g} for q, g, _ in QUESTIONS]))
    pred = root / "pred.sql"
    pred.write_text("\n".join(p for _, _, p in QUESTIONS) + "\n")
    return {"data": data, "db_root": root / "database", "ts_root": root / "database_ts", "pred": pred}


def run_evaluate(*args: str | Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "workflow_scripts.evaluate", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


def test_suite_paths_follow_test_suite_sql_eval(tmp_path: Path) -> None:
    layout = build_layout(tmp_path)
    main = layout["db_root"] / "concert" / "concert.sqlite"
    paths = suite_paths(layout["ts_root"], "concert", main)
    assert [Path(p).name for p in paths] == ["concert.sqlite", "concert_1.sqlite", "concert_2.sqlite"]
    # the main database itself is not checked twice when the test suite is its own folder
    same = suite_paths(layout["ts_root"], "concert", layout["ts_root"] / "concert" / "concert.sqlite")
    assert [Path(p).name for p in same] == ["concert_1.sqlite", "concert_2.sqlite"]
    with pytest.raises(UserError, match=r"no test-suite database for db_id 'pets'.*Fix:"):
        suite_paths(layout["ts_root"], "pets", main)


@pytest.mark.parametrize("metric", ["spider", "bird"])
def test_correct_only_when_it_matches_on_every_database(tmp_path: Path, metric: str) -> None:
    layout = build_layout(tmp_path)
    common = [
        "--dataset",
        layout["data"],
        "--db-root",
        layout["db_root"],
        "--pred",
        layout["pred"],
        "--metric",
        metric,
    ]
    plain = run_evaluate(*common, "--out", tmp_path / "plain")
    suite = run_evaluate(*common, "--out", tmp_path / "ts", "--test-suite-root", layout["ts_root"])
    assert plain.returncode == 0 and suite.returncode == 0, plain.stderr + suite.stderr
    plain_rows = pd.read_parquet(tmp_path / "plain" / "per_example.parquet")
    suite_rows = pd.read_parquet(tmp_path / "ts" / "per_example.parquet")
    assert plain_rows["verdict"].tolist() == ["correct"] * 4  # right by accident on the main database
    assert suite_rows["verdict"].tolist()[1:] == ["correct"] * 3
    assert suite_rows["verdict"].iloc[0] in ("wrong_result", "wrong_row_count")
    assert Path(suite_rows["ts_failed_db"].iloc[0]).name == "concert_1.sqlite"
    summary = json.loads((tmp_path / "ts" / "summary.json").read_text())
    assert summary["ex"] == 0.75 and summary["test_suite_databases"] == 3
    assert summary["failed_only_on_test_suite"] == 1
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["ex"] == 1.0


def test_ingest_runs_gold_on_the_suite_and_excludes_gold_that_fails_there(tmp_path: Path) -> None:
    layout = build_layout(tmp_path, broken=True)
    spec = DatasetSpec("ts", layout["data"], layout["db_root"], test_suite_root=layout["ts_root"])
    out = tmp_path / "ingested"
    summary = ingest(spec, out, missing_db="error", sandbox_cfg={"workers": 1}, match=MatchSettings())
    gold_ts = pd.read_parquet(out / "gold_ts.parquet")
    excluded = pd.read_parquet(out / "excluded.parquet")
    # the concert question cannot run on concert_2 (its table is gone): excluded, with that database named
    assert excluded["question"].tolist() == ["Concert venues?"]
    assert "concert_2.sqlite" in excluded["error_message"].iloc[0]
    assert sorted(pd.read_parquet(out / "gold.parquet")["id"]) == sorted(set(gold_ts["id"]))
    assert len(gold_ts) == 3 * 3 and summary["test_suite_databases"] == 3
    assert DatasetSpec.from_config("x", {"path": "d.json", "test_suite_root": "ts"}).test_suite_root == Path(
        "ts"
    )
    # the workflow's scoring of an ingested data set applies the suite too
    pred = tmp_path / "pred.sql"
    pred.write_text("\n".join(p for _, _, p in QUESTIONS) + "\n")
    done = run_evaluate("--ingested", out, "--pred", pred, "--out", tmp_path / "scored")
    assert done.returncode == 0, done.stderr
    scored = json.loads((tmp_path / "scored" / "summary.json").read_text())
    assert scored["scored"] == 3 and scored["correct"] == 2 and scored["gold_failed"] == 1


def test_rollout_verdicts_use_the_suite(tmp_path: Path) -> None:
    layout = build_layout(tmp_path)
    spec = DatasetSpec("ts", layout["data"], layout["db_root"], test_suite_root=layout["ts_root"])
    out = tmp_path / "ingested"
    ingest(spec, out, missing_db="error", sandbox_cfg={"workers": 1}, match=MatchSettings())
    frames = {n: pd.read_parquet(out / f"{n}.parquet") for n in ("examples", "gold", "schema", "gold_ts")}
    script = {q: [[p]] for q, _, p in QUESTIONS}
    settings = RolloutSettings(schema_mode="full")
    verdicts = {}
    for name, gold_ts in (("plain", None), ("suite", frames["gold_ts"])):
        prepared = prepare_examples(frames["examples"], frames["gold"], frames["schema"], settings, gold_ts)
        with Sandbox(workers=1, timeout_s=2.0) as sandbox:
            t = run_rollout(
                prepared, ScriptedBackend(script), sandbox, settings, MatchSettings(), progress=False
            )
        verdicts[name] = t.sort_values("example_id")["verdict"].tolist()
    assert verdicts["plain"] == ["correct"] * 4
    assert (
        verdicts["suite"][0] in ("wrong_result", "wrong_row_count")
        and verdicts["suite"][1:] == ["correct"] * 3
    )
