"""R-VES (BIRD's reward-based valid efficiency score): buckets, outlier filter, timing in evaluate."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO
from workflow_scripts.core.efficiency import clean_abnormal, r_ves, reward


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.0, 0.0), (3.0, 1.25), (2.0, 1.25), (1.99, 1.0), (1.0, 1.0), (0.7, 0.75), (0.5, 0.75),
     (0.3, 0.5), (0.25, 0.5), (0.2, 0.25), (0.01, 0.25)],
)  # fmt: skip
def test_reward_buckets(ratio: float, expected: float) -> None:
    assert reward(ratio) == expected


def test_outliers_beyond_three_sigma_are_dropped_and_r_ves_is_the_mean_root() -> None:
    ratios = [1.0] * 20 + [50.0]
    assert clean_abnormal(ratios) == [1.0] * 20
    assert clean_abnormal([2.0, 2.0]) == [2.0, 2.0]  # no spread: all kept (BIRD's filter would keep none)
    assert r_ves([1.0, 0.25, 0.0, 1.25]) == pytest.approx(100 * (1 + 0.5 + 0 + math.sqrt(1.25)) / 4)
    assert r_ves([]) is None


SLOW_SAME = (
    "SELECT max(v) FROM big WHERE (WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r "
    "WHERE i < 400000) SELECT count(*) FROM r) > 0"
)


def test_evaluate_adds_r_ves(tmp_path: Path) -> None:
    db = tmp_path / "db" / "big" / "big.sqlite"
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE big (v INTEGER)")
    conn.executemany("INSERT INTO big VALUES (?)", [(i,) for i in range(2000)])
    conn.commit()
    conn.close()
    gold = ["SELECT max(v) FROM big", "SELECT max(v) FROM big", "SELECT min(v) FROM big"]
    data = tmp_path / "dev.json"
    data.write_text(json.dumps([
        {"db_id": "big", "question": f"q{i}", "SQL": g, "difficulty": d}
        for i, (g, d) in enumerate(zip(gold, ["simple", "moderate", "simple"], strict=True))
    ]))  # fmt: skip
    pred = tmp_path / "pred.sql"
    pred.write_text("\n".join(["SELECT max(v) FROM big", SLOW_SAME, "SELECT max(v) FROM big"]) + "\n")
    cmd = [sys.executable, "-m", "workflow_scripts.evaluate", "--dataset", str(data), "--db-root",
           str(tmp_path / "db"), "--pred", str(pred), "--out", str(tmp_path / "out"), "--metric", "bird",
           "--r-ves", "5", "--sandbox", json.dumps({"workers": 1})]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    rows = pd.read_parquet(tmp_path / "out" / "per_example.parquet")
    assert rows["verdict"].tolist() == ["correct", "correct", "wrong_result"]
    same, slow, wrong = rows["ves_reward"].tolist()
    assert same > 0  # the same query: a ratio near 1, but microsecond timings are noisy
    assert slow == 0.25 and rows["time_ratio"].iloc[1] < 0.25  # right, but far slower than the gold
    assert wrong == 0.0 and pd.isna(rows["time_ratio"].iloc[2])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["r_ves"] == pytest.approx(100 * (math.sqrt(same) + 0.5) / 3, abs=1e-3)
    assert summary["by_difficulty"]["moderate"]["r_ves"] == pytest.approx(50.0)
    assert "R-VES" in done.stdout
    bad = subprocess.run([*cmd[:-4], "--r-ves", "-1"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "Fix:" in bad.stderr.strip().splitlines()[-1]
