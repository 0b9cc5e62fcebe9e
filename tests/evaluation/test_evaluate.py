"""The evaluate command: scoring a predictions file against a data set, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO


def run_evaluate(*args: str | Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "workflow_scripts.evaluate", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


def dataset_with_missing_db(demo_dir: Path, tmp_path: Path) -> tuple[Path, list[dict]]:
    records = json.loads((demo_dir / "dev.json").read_text())
    records = [*records, {"db_id": "not_there", "question": "q", "query": "SELECT 1"}]
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(records))
    return path, records


def test_gold_as_predictions_scores_ex_1(demo_dir: Path, tmp_path: Path):
    dataset, records = dataset_with_missing_db(demo_dir, tmp_path)
    pred = tmp_path / "pred.sql"
    pred.write_text("\n".join(r["query"] for r in records) + "\n")
    done = run_evaluate(
        "--dataset", dataset, "--db-root", demo_dir / "database", "--pred", pred, "--out", tmp_path / "out"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["ex"] == 1.0
    assert summary["scored"] == len(records) - 1 and summary["skipped_missing_db"] == 1
    per_example = pd.read_parquet(tmp_path / "out" / "per_example.parquet")
    assert list(per_example["index"]) == list(range(len(records)))
    assert per_example["verdict"].iloc[-1] == "skipped"
    assert "EX" in done.stdout and "1.0" in done.stdout


def test_jsonl_predictions_and_verdicts(demo_dir: Path, tmp_path: Path):
    records = [r for r in json.loads((demo_dir / "dev.json").read_text()) if r["db_id"] == "flights"][:4]
    dataset = tmp_path / "dev.json"
    dataset.write_text(json.dumps([{**r, "id": f"q{i}"} for i, r in enumerate(records)]))
    preds = [
        records[0]["query"],
        "SELECT nope FROM flight",
        "SELECT * FROM flight WHERE 1 = 0",
        "DELETE FROM flight",
    ]
    pred = tmp_path / "pred.jsonl"
    pred.write_text(
        "\n".join(json.dumps({"id": f"q{i}", "sql": s}) for i, s in reversed(list(enumerate(preds))))
    )
    done = run_evaluate(
        "--dataset", dataset, "--db-root", demo_dir / "database", "--pred", pred, "--out", tmp_path / "out"
    )
    assert done.returncode == 0, done.stderr
    verdicts = pd.read_parquet(tmp_path / "out" / "per_example.parquet")["verdict"].tolist()
    assert verdicts[0] == "correct"
    assert verdicts[1] == "no_such_column"
    assert verdicts[2] in ("empty_result", "wrong_row_count", "wrong_result")
    assert verdicts[3] == "refused_write"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("SELECT 1\n", "has 1 lines but the data set has"),
        ('{"id": "x"}\n', "not a JSON object with `id` and `sql`"),
    ],
)
def test_bad_predictions_file_is_one_clear_error(demo_dir: Path, tmp_path: Path, content: str, message: str):
    pred = tmp_path / ("pred.jsonl" if content.startswith("{") else "pred.sql")
    pred.write_text(content)
    done = run_evaluate(
        "--dataset",
        demo_dir / "dev.json",
        "--db-root",
        demo_dir / "database",
        "--pred",
        pred,
        "--out",
        tmp_path / "out",
    )
    assert done.returncode == 2
    assert message in done.stderr and "Fix:" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_alias_usage_names_the_command_it_runs():
    help_text = run_evaluate("--help").stdout
    assert help_text.startswith("usage: python -m workflow_scripts.cli.evaluate score")
    assert "--metric {spider,bird,strict}" in help_text
