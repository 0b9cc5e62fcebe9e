"""Report figures: layout helpers that keep labels and panels readable."""

from __future__ import annotations

import json

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


def test_training_section_shows_every_run_loss_curves_and_the_grpo_curves(tmp_path):
    from workflow_scripts.report.training import grpo_figure, step_split_table, training_section

    sft_log = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.4}]
    sft = {"method": "sft", "steps": 2, "seconds_per_step": 1.5, "log": sft_log}
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
    grpo = {"method": "grpo", "steps": 3, "log": log, "step_split": split, "grpo": {"beta": 0.0}}
    for name, metrics in {"sft": sft, "grpo": grpo}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(metrics))
    html = training_section(
        {"sft": tmp_path / "sft", "grpo": tmp_path / "grpo", "none": tmp_path / "missing"}
    )
    assert "<h3>Training loss</h3>" in html and "<h3>GRPO</h3>" in html
    assert html.count("<img") == 2 and ">sft<" in html and ">none<" not in html
    assert "No KL panel: beta = 0" in html
    table = step_split_table({"grpo": grpo})
    assert table.loc[0, "reward share"] == "10.0%" and table.loc[0, "generation_s"] == 3.0
    fig = grpo_figure({"grpo": grpo})
    fig.savefig(tmp_path / "grpo.png")
    # beta = 0: trl logs no KL, and the panel is left out rather than drawn empty
    assert [ax.get_title() for ax in fig.axes] == ["mean reward", "share correct", "completion tokens"]
    assert all(len(ax.lines) == 1 for ax in fig.axes)


def test_kl_panel_drawn_when_beta_is_positive_and_logged():
    from workflow_scripts.report.training import grpo_figure, missing_curves_note

    log = [{"step": s, "loss": 0.1, "reward": 0.1, "kl": 0.01 * s} for s in (1, 2)]
    grpo = {"method": "grpo", "log": log, "grpo": {"beta": 0.04}}
    titles = [ax.get_title() for ax in grpo_figure({"grpo": grpo}).axes]
    assert titles == ["mean reward", "KL to the reference"]
    assert "KL" not in missing_curves_note({"grpo": grpo})
    assert "no GRPO adapter logged completions/mean_length" in missing_curves_note({"grpo": grpo})


def test_loss_figure_one_panel_per_method_and_none_without_a_log():
    from workflow_scripts.report.training import loss_figure

    def run(method: str, losses: list[float]) -> dict:
        return {"method": method, "log": [{"step": i + 1, "loss": v} for i, v in enumerate(losses)]}

    fig = loss_figure({"sft": run("sft", [2.0, 1.5, 1.1]), "sft_random": run("sft", [2.1, 1.9]),
                       "sft_dpo": run("dpo", [0.69, 0.6]), "grpo": run("grpo", [0.0])})  # fmt: skip
    assert [ax.get_title() for ax in fig.axes] == ["sft loss", "dpo loss"]
    assert [len(ax.lines) for ax in fig.axes] == [2, 1]  # GRPO's surrogate loss is not drawn
    assert list(fig.axes[0].lines[0].get_ydata()) == [2.0, 1.5, 1.1]
    assert loss_figure({"sft": {"method": "sft", "log": []}}) is None


def test_sample_size_figure_draws_skewed_and_equal_draws():
    """A mean outside its own 5–95% band (one far draw among equal ones) and equal draws both plot."""
    from workflow_scripts.alignment.kl import summarize_sample_size
    from workflow_scripts.report.alignment import sample_size_figure

    skewed = [0.5] * 40 + [100.0]
    study = pd.DataFrame({
        "k": ["1"] * len(skewed) + ["all"] * 3, "draw": range(len(skewed) + 3), "set": "train",
        "target_queries": 2, "A_KL": skewed + [0.1 + 0.2] * 3, "rank_agrees": True,
    })  # fmt: skip
    summary = summarize_sample_size(study)
    one = summary.set_index("k").loc["1"]
    assert one["A_KL_mean"] > one["A_KL_p95"]  # the case a mean-centred error bar cannot draw
    assert one["A_KL_p05"] <= one["A_KL_median"] <= one["A_KL_p95"]
    figure = sample_size_figure(summary)
    assert len(figure.axes[0].lines) >= 1


def _turn(example: str, turn: int, sql: str, verdict: str, feedback: str | None = None) -> dict:
    prompt = json.dumps([{"role": "user", "content": f"Schema...\nQuestion: q {example}?\nSQL:"}])
    return {"example_id": example, "sample": 0, "turn": turn, "candidate": 0, "prompt": prompt, "sql": sql,
            "verdict": verdict, "correct": verdict == "correct", "feedback": feedback}  # fmt: skip


def test_repair_examples_show_failed_trajectories_beside_fixed_ones():
    from workflow_scripts.report.rollout import repair_examples, repair_outcomes

    t = pd.DataFrame([
        _turn("e1", 1, "SELECT x FROM t", "no_such_column", "no such column: x"),
        _turn("e1", 2, "SELECT a FROM t", "correct"),
        _turn("e2", 1, "SELECT b FROM t", "wrong_result", "wrong"),
        _turn("e2", 2, "SELECT c FROM t", "empty_result"),
        _turn("e2", 3, "SELECT d FROM t", "wrong_result"),
        _turn("e3", 1, "SELECT e FROM t", "wrong_result"), _turn("e3", 2, "SELECT f FROM t", "wrong_result"),
        _turn("e4", 1, "SELEC", "syntax_error", "x" * 500), _turn("e4", 2, "SELECT g", "syntax_error"),
        _turn("e5", 1, "SELECT a FROM t", "correct"),
    ])  # fmt: skip
    assert repair_outcomes(t).tolist() == [True, False, False, False]
    shown = repair_examples(t, fixed=4, failed=2)
    assert shown["outcome"].tolist() == ["fixed", "still wrong", "still wrong"]
    # one failure per first-turn verdict first: e2 (wrong_result) and e4 (syntax_error), not e3
    assert shown["question"].tolist() == ["q e1?", "q e2?", "q e4?"]
    assert shown.loc[1, "repaired SQL"] == "SELECT d FROM t" and shown.loc[1, "final verdict"] == (
        "wrong_result (turn 3)"
    )
    assert shown.loc[0, "feedback"] == "no such column: x" and len(shown.loc[2, "feedback"]) == 240
    assert repair_examples(t[t["turn"] == 1]).empty


def test_repair_study_heatmaps_left_out_with_the_reason_when_nothing_was_fixed(tmp_path):
    from workflow_scripts.report.rollout import repair_study_section

    row = {"feedback_mode": "error_only", "repair_scope": "online", "examples": 20, "first-turn EX": 0.0,
           "final EX": 0.0, "EX gain": 0.0, "repairs": 18, "fixed": 0, "broken": 0, "repair SR": 0.0,
           "accepted wrong": 2, "turn limit": 18}  # fmt: skip
    table = pd.DataFrame([row, {**row, "repair_scope": "verified", "repairs": 20}])
    table.to_parquet(tmp_path / "study.parquet")
    html = repair_study_section(tmp_path / "study.parquet")
    assert "<img" not in html and "38 repairs of the base model's answers over 2 feedback mode" in html
    assert "first-turn EX (0.0%) in every cell" in html
    table.assign(fixed=[0, 1], **{"final EX": [0.0, 0.05]}).to_parquet(tmp_path / "study.parquet")
    assert "<img" in repair_study_section(tmp_path / "study.parquet")


def test_rank_claim_says_when_the_papers_claim_fails_with_the_numbers():
    from workflow_scripts.report.alignment import rank_claim

    def summary(agreement: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"k": ["1", "1", "2", "all"], "set": ["a", "b", "a", "a"],
                             "target_queries": [4.0, 4.0, 8.0, 76.0],
                             "rank_agreement": [agreement[0], agreement[0], agreement[1], 1.0]})  # fmt: skip

    fails = rank_claim(summary([0.0, 0.0]))
    assert "fails here" in fails and "0.000 at k = 1 (4 target queries) and 0.000 at k = 2" in fails
    assert "holds here" in rank_claim(summary([1.0, 0.97]))
    assert "does not test" in rank_claim(summary([1.0, 1.0])[lambda s: s["k"] == "all"])
