"""Report sections on rollouts: metrics per run, failures by turn, repair examples, and the repair study."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from workflow_scripts.report.html import figure_html, section, table_html

VERDICT_COLORS = {
    "wrong_result": "#e0a458", "wrong_row_count": "#f2c57c", "empty_result": "#c0c6cc",
    "syntax_error": "#b23a48",
    "no_such_column": "#d1495b", "no_such_table": "#8c2f39", "ambiguous_column": "#edae49",
    "timeout": "#5c5470", "empty_query": "#7d8597",
}  # fmt: skip


def rollout_metrics_table(summaries: dict[str, dict]) -> pd.DataFrame:
    """One row of headline metrics per rollout run."""
    return pd.DataFrame([{
        "run": name, "data set": s["dataset"], "turns": s["max_turns"],
        "feedback": (
            f"{s['feedback_mode']} / {s['feedback_detail']} / {s.get('repair_scope', '-')} / "
            f"{s.get('repair_prompt', 'conversation')}"
            if s["max_turns"] > 1
            else "-"
        ),
        "samples": s["num_samples"], "first-turn EX": s["first_turn_ex"], "final EX": s["final_ex"],
        "executable (first)": s["first_turn_executable"], "executable (final)": s["final_executable"],
        "schema-valid": s["schema_valid"], "repair SR": s["repair_success_rate"],
        "repairs": s["repair_attempted"], "tokens": s["generated_tokens"],
        # Candidates whose generation hit max_new_tokens: their SQL may be cut off.
        "cut at max_new_tokens": s.get("truncated_share"),
        "backend": s.get("backend_used") or s.get("backend"),
    } for name, s in summaries.items()])  # fmt: skip


def errors_by_turn_figure(trajectories: dict[str, pd.DataFrame]) -> plt.Figure:
    """Stacked bars: failing candidates by verdict at each turn, one panel per run, four panels a row."""
    ncols = min(4, len(trajectories))
    nrows = math.ceil(len(trajectories) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.7 * nrows), squeeze=False)
    for ax in axes.flat[len(trajectories) :]:
        ax.set_visible(False)
    for ax, (name, t) in zip(axes.flat, trajectories.items(), strict=False):
        counts = t[~t["correct"]].groupby(["turn", "verdict"]).size().unstack(fill_value=0)
        counts = counts.reindex(range(1, int(t["turn"].max()) + 1), fill_value=0)
        bottom = pd.Series(0, index=counts.index)
        for verdict in counts.columns:
            ax.bar(
                counts.index,
                counts[verdict],
                bottom=bottom,
                label=verdict,
                color=VERDICT_COLORS.get(verdict, "#9aa5b1"),
            )
            bottom += counts[verdict]
        correct = t[t["correct"]].groupby("turn").size().reindex(counts.index, fill_value=0)
        ax.bar(counts.index, correct, bottom=bottom, color="#3e7cb1", label="correct")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("turn")
        ax.set_xticks(list(counts.index))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.spines[["top", "right"]].set_visible(False)
    for row in axes:
        row[0].set_ylabel("candidates")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_legend_handles_labels()[0]}
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def repair_examples(trajectories: pd.DataFrame, limit: int = 6) -> pd.DataFrame:
    """Trajectories that a repair turned from wrong to correct, with the first and the repaired SQL."""
    t = trajectories
    fixed = t[(t["turn"] > 1) & t["correct"]].drop_duplicates(["example_id", "sample"]).head(limit)
    rows = []
    for row in fixed.itertuples(index=False):
        first = t[(t["example_id"] == row.example_id) & (t["sample"] == row.sample) & (t["turn"] == 1)].iloc[
            0
        ]
        question = (
            json.loads(first["prompt"])[-1]["content"].rsplit("Question: ", 1)[-1].removesuffix("\nSQL:")
        )
        rows.append(
            {
                "question": question,
                "first SQL": first["sql"],
                "verdict": first["verdict"],
                "repaired SQL": row.sql,
                "turn": row.turn,
            }
        )
    return pd.DataFrame(rows, columns=["question", "first SQL", "verdict", "repaired SQL", "turn"])


def rollout_section(run_dirs: dict[str, Path], recall_file: Path | None) -> str:
    """Rollouts: metrics per run, failures by turn, repairs that worked, retrieval recall."""
    summaries = {n: json.loads((d / "summary.json").read_text()) for n, d in run_dirs.items()}
    trajectories = {n: pd.read_parquet(d / "trajectories.parquet") for n, d in run_dirs.items()}
    body = table_html(rollout_metrics_table(summaries))
    body += (
        '<p class="note">EX is at example level (any sample\'s final answer correct). Repair SR is the share '
        "of repaired trajectories that end correct. Feedback is mode / detail / repair scope / repair "
        "prompt: "
        "<code>online_visible</code> (alias <code>execution</code>) says only what a deployed system sees; "
        "<code>result_status</code> also whether the result matches gold. The repair scope says which "
        "failures are repaired (<code>verified</code> needs a gold verifier). The repair prompt is the "
        "<code>conversation</code> (first prompt, failed SQL, feedback) or <code>refocus</code> (a column "
        "read from the wrong table: the question anew over the tables that own it).</p>"
    )
    body += "<h3>Failures by turn</h3>" + figure_html(errors_by_turn_figure(trajectories), "failures by turn")
    for name, t in trajectories.items():
        fixed = repair_examples(t)
        if len(fixed):
            body += f"<h3>Repairs that worked ({name})</h3>" + table_html(
                fixed, text_columns=("question", "first SQL", "repaired SQL")
            )
    if recall_file is not None:
        recall = pd.read_parquet(recall_file)
        by_mode = (
            recall.groupby("mode", sort=False)
            .agg(
                recall=("recall", "mean"),
                all_gold_tables=("all_gold_found", "mean"),
                tables_shown=("selected", "mean"),
                tables_in_db=("tables", "mean"),
            )
            .reset_index()
        )
        body += "<h3>Schema retrieval: gold-table recall</h3>" + table_html(by_mode)
    return section("rollout", "Rollouts", body)


def repair_study_figure(table: pd.DataFrame) -> plt.Figure:
    """Heatmaps of final EX and repair success rate: feedback modes (rows) by repair scopes (columns)."""
    modes = list(dict.fromkeys(table["feedback_mode"]))
    scopes = list(dict.fromkeys(table["repair_scope"]))
    fig, axes = plt.subplots(1, 2, figsize=(3.2 + 2.2 * len(scopes), 0.9 + 0.55 * len(modes)))
    for ax, column in zip(axes, ("final EX", "repair SR"), strict=True):
        grid = table.pivot(index="feedback_mode", columns="repair_scope", values=column)
        grid = grid.reindex(index=modes, columns=scopes).astype(float)
        ax.imshow(grid.to_numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for (i, j), value in pd.DataFrame(grid.to_numpy()).stack(future_stack=True).items():
            shown = "–" if pd.isna(value) else f"{value:.0%}"
            ax.text(j, i, shown, ha="center", va="center", fontsize=8,
                    color="white" if not pd.isna(value) and value > 0.6 else "#1f2933")  # fmt: skip
        ax.set_xticks(range(len(scopes)), scopes, fontsize=8)
        ax.set_yticks(range(len(modes)), modes, fontsize=8)
        ax.set_title(column, fontsize=9)
    fig.tight_layout()
    return fig


def repair_study_section(study_file: Path) -> str:
    """The feedback mode × repair scope study on the base model's eval answers."""
    table = pd.read_parquet(study_file)
    body = table_html(table) + figure_html(repair_study_figure(table), "repair study heatmaps")
    body += (
        '<p class="note">The same first-turn answers of the base model (<code>eval_base</code>) repaired '
        "under each feedback mode (what the feedback reveals) and repair scope (what is repaired). "
        "<b>verified</b> needs a gold verifier; <b>online</b> and <b>online_guarded</b> are what a deployed "
        "system can do, and <b>error_only</b> and <b>online_visible</b> what it can say. <b>fixed</b>: wrong "
        "at turn 1, right in the end; <b>broken</b>: right at turn 1, wrong in the end (a guard sent a right "
        "answer to repair); <b>accepted wrong</b>: wrong final answers the scope let through. "
        "<b>oracle_rows</b> shows gold rows and is an upper bound, not a deployable setting.</p>"
    )
    return section("repair-study", "Repair study: feedback mode × repair scope", body)
