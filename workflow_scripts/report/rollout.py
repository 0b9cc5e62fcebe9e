"""Report sections on rollouts: metrics per run, failures by turn, repair examples, and the repair study."""

from __future__ import annotations

import html
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


FEEDBACK_CHARS = 240  # of the feedback shown beside a repair: its first lines say what went wrong


def _question(first: pd.Series) -> str:
    """The question of a turn-1 row, read back from its prompt's last message."""
    return json.loads(first["prompt"])[-1]["content"].rsplit("Question: ", 1)[-1].removesuffix("\nSQL:")


def _shorten(text: object, limit: int = FEEDBACK_CHARS) -> str:
    text = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


REPAIR_COLUMNS = ["outcome", "question", "first SQL", "verdict", "feedback", "repaired SQL", "final verdict"]


def repair_outcomes(trajectories: pd.DataFrame) -> pd.Series:
    """Per repaired trajectory (example, sample): whether a repair turn ended correct."""
    repaired = trajectories[trajectories["turn"] > 1]
    return repaired.groupby(["example_id", "sample"])["correct"].any()


def repair_examples(trajectories: pd.DataFrame, fixed: int = 4, failed: int = 3) -> pd.DataFrame:
    """Repaired trajectories: up to `fixed` that a repair turned from wrong to correct and up to `failed`
    that stayed wrong (one per first-turn verdict first, so that different failures show), with the first
    SQL, the feedback it got and the last repaired SQL."""
    t = trajectories
    keys = ["example_id", "sample"]
    repaired = t[t["turn"] > 1]
    ends_right = repair_outcomes(t)
    if ends_right.empty:
        return pd.DataFrame(columns=REPAIR_COLUMNS)
    last = repaired.sort_values([*keys, "turn", "candidate"]).groupby(keys).tail(1).set_index(keys)
    firsts = t[t["turn"] == 1].drop_duplicates(keys).set_index(keys)
    right = ends_right[ends_right].index[:fixed]
    wrong = ends_right[~ends_right].index
    # the first failure of each first-turn verdict, then the rest in order
    verdicts = firsts.loc[wrong, "verdict"]
    wrong = [*verdicts[~verdicts.duplicated()].index, *verdicts[verdicts.duplicated()].index][:failed]
    rows = []
    for outcome, chosen in (("fixed", right), ("still wrong", wrong)):
        for key in chosen:
            first = firsts.loc[key]
            end = repaired[(repaired["example_id"] == key[0]) & (repaired["sample"] == key[1])]
            end = end[end["correct"]].iloc[0] if outcome == "fixed" else last.loc[key]
            rows.append({
                "outcome": outcome, "question": _question(first), "first SQL": first["sql"],
                "verdict": first["verdict"], "feedback": _shorten(first.get("feedback")),
                "repaired SQL": end["sql"], "final verdict": f"{end['verdict']} (turn {int(end['turn'])})",
            })  # fmt: skip
    return pd.DataFrame(rows, columns=REPAIR_COLUMNS)


def rollout_section(run_dirs: dict[str, Path], recall_file: Path | None) -> str:
    """Rollouts: metrics per run, failures by turn, repairs that worked, retrieval recall."""
    summaries = {n: json.loads((d / "summary.json").read_text()) for n, d in run_dirs.items()}
    trajectories = {n: pd.read_parquet(d / "trajectories.parquet") for n, d in run_dirs.items()}
    body = table_html(rollout_metrics_table(summaries), text_columns=("run", "feedback", "backend"))
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
        examples = repair_examples(t)
        if len(examples):
            outcomes = repair_outcomes(t)
            body += (
                f"<h3>Repairs in {html.escape(name)}: {int(outcomes.sum())} of {len(outcomes)} repaired "
                "trajectories fixed</h3>"
            )
            body += table_html(examples, text_columns=("question", "first SQL", "feedback", "repaired SQL"))
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


def uniform_study_note(table: pd.DataFrame) -> str:
    """Why the heatmaps are left out when no combination fixed an answer (they would show nothing but the
    first-turn EX), with the numbers; empty when some combination fixed one."""
    if table.empty or int(table["fixed"].sum()) > 0:
        return ""
    first = ", ".join(sorted({f"{v:.1%}" for v in table["first-turn EX"].dropna()}))
    if (table["final EX"] == table["first-turn EX"]).all():
        cells = f"final EX equals first-turn EX ({first}) in every cell"
    else:
        cells = f"final EX is first-turn EX ({first}) less {int(table['broken'].sum())} broken answers"
    return (
        f"No combination fixed an answer: {int(table['repairs'].sum())} repairs of the base model's answers "
        f"over {len(table)} feedback mode × repair scope combinations on {int(table['examples'].max())} "
        f"examples fixed none, so {cells}; the heatmaps would show nothing more and are left out. The base "
        "model does not turn this feedback into a right answer here; the Evaluation matrix shows the "
        "variants whose repairs do."
    )


def repair_study_section(study_file: Path) -> str:
    """The feedback mode × repair scope study on the base model's eval answers."""
    table = pd.read_parquet(study_file)
    body = table_html(table)
    if note := uniform_study_note(table):
        body += f'<p class="note">{note}</p>'
    else:
        body += figure_html(repair_study_figure(table), "repair study heatmaps")
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
