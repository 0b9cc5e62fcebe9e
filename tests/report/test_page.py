"""The whole report page from small real artifacts, written here as the stages write them: the Summary
with its chart comes first and the reproducibility record last, counts print as integers, EX carries its
95% intervals, training losses and the question-family breakdown appear."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

from workflow_scripts.cli import report as report_cli
from workflow_scripts.evaluation.matrix import (
    breakdowns,
    compare_table,
    example_groups,
    paired_stats,
    routing,
    taxonomy,
)
from workflow_scripts.report.html import table_html
from workflow_scripts.report.summary import headline_delta, headline_ex, headline_figure

N = 40


def outcome(first: np.ndarray, final: np.ndarray) -> pd.DataFrame:
    """Per-example outcomes of one variant, as evaluation.matrix.outcomes returns them."""
    return pd.DataFrame(
        {
            "first_verdict": np.where(first, "correct", "wrong_result"),
            "first_guarded": False,
            "first_correct": first,
            "final_correct": final,
            "first_executable": True,
            "final_executable": True,
            "repaired": ~first,
        },
        index=pd.Index([f"demo_dev-{i:06d}" for i in range(N)], name="example_id"),
    )


@pytest.fixture
def run(tmp_path: Path) -> dict[str, Path]:
    """A run's artifacts: one data set, the model directory, the evaluation stage, the pairs, one adapter."""
    rng = np.random.default_rng(0)
    base_first = rng.random(N) < 0.1
    sft_first = base_first | (rng.random(N) < 0.4)
    results = {
        "base": outcome(base_first, base_first),
        "sft": outcome(sft_first, sft_first | (rng.random(N) < 0.2)),
    }
    families = ["count", "filter_eq", "join_group"]
    gold = ["SELECT count(*) FROM t", "SELECT a FROM t WHERE b = 1",
            "SELECT T1.a, count(*) FROM t AS T1 JOIN u AS T2 ON T1.id = T2.t_id GROUP BY T1.a"]  # fmt: skip
    examples = pd.DataFrame({
        "id": results["base"].index, "difficulty": None,
        "family": [families[i % 3] for i in range(N)], "gold_sql": [gold[i % 3] for i in range(N)],
    })  # fmt: skip

    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    compare = compare_table(results)
    compare.to_parquet(evaluation / "compare.parquet")
    (evaluation / "compare.json").write_text(compare.to_json(orient="records"))
    paired_stats(results, "first_correct").to_parquet(evaluation / "paired_one_shot.parquet")
    paired_stats(results, "final_correct").to_parquet(evaluation / "paired_repair.parquet")
    taxonomy(results).to_parquet(evaluation / "taxonomy.parquet")
    routing(results).to_parquet(evaluation / "routing.parquet")
    breakdowns(results, example_groups(examples)).to_parquet(evaluation / "difficulty.parquet")

    data = tmp_path / "data" / "demo_dev"
    data.mkdir(parents=True)
    (data / "summary.json").write_text(json.dumps({
        "dataset": "demo_dev", "path": "resources/demo/dev.json", "records": N, "usable": N, "databases": 4,
        "tables": 8, "skipped_missing_db": 0, "gold_failed": 0, "gold_truncated": 0,
        "gold_empty_results": 0, "metric": "spider", "sandbox_timeout_s": 5.0, "data_sha256": "ab" * 32,
    }))  # fmt: skip
    pd.DataFrame(columns=["dataset", "id", "db_id", "reason", "error_message", "gold_sql"]).to_parquet(
        data / "excluded.parquet"
    )
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    pairs = tmp_path / "quality.json"
    quality = {"pairs": 851, "natural": 700, "synthetic": 151, "synthetic_fraction": 0.177, "by_type": {}}
    pairs.write_text(json.dumps({
        "before": quality, "after": quality,
        "settings": {"input_fractions": {"synthetic": 0.2}, "type_fractions": {}, "min_reward_margin": 0.5,
                     "max_sql_edit_distance_ratio": 0.8},
    }))  # fmt: skip
    adapter = tmp_path / "adapters" / "sft"
    adapter.mkdir(parents=True)
    log = [{"step": s, "loss": 2.0 / s} for s in range(1, 6)]
    (adapter / "metrics.json").write_text(json.dumps({"method": "sft", "steps": 5, "log": log}))
    return {"evaluation": evaluation, "data": data, "model": model, "pairs": pairs, "adapter": adapter}


@pytest.fixture
def page(run: dict[str, Path], tmp_path: Path) -> str:
    out = tmp_path / "index.html"
    report_cli.main([
        "--demo", "--dataset", f"demo_dev={run['data']}", "--evaluation", str(run["evaluation"]),
        "--pairs", str(run["pairs"]), "--adapter", f"sft={run['adapter']}", "--model", str(run["model"]),
        "--out", str(out),
    ])  # fmt: skip
    return out.read_text()


def test_summary_is_the_first_section_and_the_record_the_last(page: str) -> None:
    sections = [part.split('"', 1)[0] for part in page.split('<section id="')[1:]]
    assert sections[0] == "summary" and sections[-1] == "record"
    summary = page[page.index('<section id="summary">') : page.index("</section>")]
    assert "Best trained variant: <b>sft</b>" in summary and "95% CI" in summary and "<img" in summary
    assert page.index('<section id="record">') > page.index('<section id="evaluation">')


def test_counts_print_as_integers_and_p_values_keep_their_digits(page: str, run: dict[str, Path]) -> None:
    assert "<td>851</td>" in page and "851.000" not in page
    assert "<td>0.177</td>" in page  # a fraction keeps its decimals
    paired = pd.read_parquet(run["evaluation"] / "paired_one_shot.parquet")
    assert f"<td>{paired.loc[0, 'McNemar p']:.2g}</td>" in page and paired.loc[0, "McNemar p"] < 0.0005
    pairs = page[page.index('<section id="pairs">') :]
    assert "<img" not in pairs[: pairs.index("</section>")]  # no pair types: no empty bar chart
    shown = table_html(pd.DataFrame({"count": [851.0, None, 3.0], "rate": [0.25, 1.0, 0.0]}))
    assert "<td>851</td>" in shown and "<td>3</td>" in shown and "<td>1.000</td>" in shown


def test_headline_chart_carries_95_percent_intervals(run: dict[str, Path]) -> None:
    compare = pd.DataFrame(json.loads((run["evaluation"] / "compare.json").read_text()))
    ex = headline_ex(compare)
    assert len(ex) == 4 and ex[["low", "high"]].notna().all().all()
    assert ((ex["low"] <= ex["EX"]) & (ex["EX"] <= ex["high"])).all() and (ex["high"] > ex["low"]).any()
    paired = {m: pd.read_parquet(run["evaluation"] / f"paired_{m}.parquet") for m in ("one_shot", "repair")}
    delta = headline_delta(paired)
    assert delta["variant"].tolist() == ["sft", "sft"] and (delta["low"] <= delta["ΔEX"]).all()
    fig = headline_figure(ex, delta)
    bars = [c for c in fig.axes[0].containers if isinstance(c, BarContainer)]
    assert len(bars) == 2 and all(b.errorbar is not None for b in bars)
    assert sum(isinstance(c, ErrorbarContainer) for c in fig.axes[1].containers) == 2
    # without a base to compare with, the ΔEX panel is left out rather than drawn empty
    assert len(headline_figure(ex, headline_delta({})).axes) == 1


def test_training_loss_and_family_breakdown_appear(page: str) -> None:
    assert "<h3>Training loss</h3>" in page
    assert "<h3>EX by question family</h3>" in page and "<td>join_group</td>" in page
    assert "<h3>EX by Spider hardness</h3>" in page and "<td>easy</td>" in page
    assert "<h3>EX by difficulty</h3>" not in page  # the demo has no difficulty labels
