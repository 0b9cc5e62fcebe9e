"""Report figures: layout helpers that keep labels and panels readable."""

from __future__ import annotations

import pandas as pd

from workflow_scripts.report.alignment import label_offsets
from workflow_scripts.report.rollout import errors_by_turn_figure


def test_labels_of_close_points_get_different_offsets_and_far_ones_keep_the_first():
    offsets = label_offsets([1.26, 1.29, 1.32, 1.32, 1.51, 1.70], [0.0] * 6)
    assert len(set(offsets[:4])) == 4  # four labels within a label's width of each other
    assert offsets[4] == offsets[5] == 3
    assert label_offsets([1.0, 2.0], [0.0, 1.0]) == [3, 3]


def test_errors_by_turn_wraps_many_runs_into_rows_of_four():
    run = pd.DataFrame({
        "turn": [1, 1, 2], "verdict": ["correct", "syntax_error", "empty_result"],
        "correct": [True, False, False],
    })  # fmt: skip
    fig = errors_by_turn_figure({f"run{i}": run for i in range(7)})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 7
    assert len(fig.axes) == 8 and fig.get_size_inches()[0] < 14


def test_training_section_shows_every_run_and_the_grpo_curves(tmp_path):
    import json

    from workflow_scripts.report.training import grpo_figure, step_split_table, training_section

    sft = {"method": "sft", "steps": 2, "seconds_per_step": 1.5, "log": [{"step": 1, "loss": 2.0}]}
    log = [
        {
            "step": s,
            "loss": 0.1,
            "reward": 0.2 * s,
            "rewards/correct/mean": 0.1 * s,
            "completions/mean_length": 20,
        }
        for s in (1, 2, 3)
    ]
    split = [{"step": s, "generation_s": 3.0, "reward_s": 0.5, "optimisation_s": 1.5} for s in (1, 2, 3)]
    grpo = {"method": "grpo", "steps": 3, "log": log, "step_split": split}
    for name, metrics in {"sft": sft, "grpo": grpo}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(metrics))
    html = training_section(
        {"sft": tmp_path / "sft", "grpo": tmp_path / "grpo", "none": tmp_path / "missing"}
    )
    assert "<h3>GRPO</h3>" in html and html.count("<img") == 1 and ">sft<" in html and ">none<" not in html
    table = step_split_table({"grpo": grpo})
    assert table.loc[0, "reward share"] == "10.0%" and table.loc[0, "generation_s"] == 3.0
    fig = grpo_figure({"grpo": grpo})
    fig.savefig(tmp_path / "grpo.png")
    assert [ax.get_title() for ax in fig.axes] == [
        "mean reward", "share correct", "KL to the reference", "completion tokens"
    ]  # fmt: skip
    assert len(fig.axes[2].lines) == 0 and len(fig.axes[0].lines) == 1  # no KL logged at beta 0


def test_sample_size_figure_draws_skewed_and_equal_draws():
    """A mean outside its own 5–95% band (one far draw among equal ones) and equal draws both plot."""
    from workflow_scripts.alignment.kl import summarise_sample_size
    from workflow_scripts.report.alignment import sample_size_figure

    skewed = [0.5] * 40 + [100.0]
    study = pd.DataFrame({
        "k": ["1"] * len(skewed) + ["all"] * 3, "draw": range(len(skewed) + 3), "set": "train",
        "target_queries": 2, "A_KL": skewed + [0.1 + 0.2] * 3, "rank_agrees": True,
    })  # fmt: skip
    summary = summarise_sample_size(study)
    one = summary.set_index("k").loc["1"]
    assert one["A_KL_mean"] > one["A_KL_p95"]  # the case a mean-centred error bar cannot draw
    assert one["A_KL_p05"] <= one["A_KL_median"] <= one["A_KL_p95"]
    figure = sample_size_figure(summary)
    assert len(figure.axes[0].lines) >= 1
