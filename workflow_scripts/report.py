"""The final report: one self-contained HTML page (tables and plots embedded) built from stage outputs."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from workflow_scripts import __version__  # noqa: E402
from workflow_scripts.artifacts import write_text  # noqa: E402
from workflow_scripts.errors import run_cli  # noqa: E402
from workflow_scripts.model import describe_model  # noqa: E402

CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem auto;
       max-width: 72rem; color: #1f2933; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; } h2 { border-bottom: 2px solid #e4e7eb; padding-bottom: .2rem;
margin-top: 2.2rem; } .meta { color: #616e7c; font-size: .9rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { padding: .3rem .7rem; border-bottom: 1px solid #e4e7eb; text-align: right; }
th { background: #f5f7fa; } td:first-child, th:first-child { text-align: left; }
td.text { text-align: left; font-family: ui-monospace, monospace; font-size: .82rem; max-width: 40rem; }
.note { background: #f0f4f8; border-left: 4px solid #9fb3c8; padding: .5rem .9rem; margin: .8rem 0; }
nav a { margin-right: 1rem; } img { max-width: 100%; }
"""

PALETTE = {"usable": "#3e7cb1", "gold failed": "#e0a458", "skipped (no database)": "#c0c6cc"}


def figure_html(fig: plt.Figure, alt: str) -> str:
    """Return an <img> tag with the figure embedded as a PNG data URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table_html(df: pd.DataFrame, text_columns: tuple[str, ...] = ()) -> str:
    """Return `df` as an HTML table; `text_columns` are shown left-aligned in monospace."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for col, value in zip(df.columns, row, strict=True):
            cls = ' class="text"' if col in text_columns else ""
            shown = "" if value is None or (isinstance(value, float) and pd.isna(value)) else value
            if isinstance(shown, float):
                shown = f"{shown:.3f}"
            cells.append(f"<td{cls}>{html.escape(str(shown))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def section(anchor: str, title: str, body: str) -> str:
    """Return one report section."""
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def datasets_section(data_dirs: dict[str, Path]) -> str:
    """Data sets: examples, databases, gold executability and skipped examples."""
    summaries = [json.loads((d / "summary.json").read_text()) for d in data_dirs.values()]
    table = pd.DataFrame(
        [
            {
                "data set": s["dataset"],
                "records": s["records"],
                "usable": s["usable"],
                "databases": s["databases"],
                "tables": s["tables"],
                "gold executable": f"{s['usable'] / max(1, s['records'] - s['skipped_missing_db']):.1%}",
                "gold failed": s["gold_failed"] + s["gold_truncated"],
                "skipped (no database)": s["skipped_missing_db"],
                "gold empty results": s["gold_empty_results"],
            }
            for s in summaries
        ]
    )

    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.5 * len(summaries)))
    left = pd.Series(0, index=table.index)
    for label in PALETTE:
        values = table["usable"] if label == "usable" else table[label]
        ax.barh(table["data set"], values, left=left, color=PALETTE[label], label=label)
        left = left + values
    ax.set_xlabel("examples")
    ax.legend(loc="lower right", frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)

    excluded = pd.concat(
        [pd.read_parquet(d / "excluded.parquet").assign(dataset=n) for n, d in data_dirs.items()],
        ignore_index=True,
    )
    body = table_html(table) + figure_html(fig, "examples per data set")
    body += (
        '<p class="note">Gold SQL is executed once in the sandbox and cached. Examples whose gold SQL '
        "fails, and examples whose database file is missing, are excluded and never scored.</p>"
    )
    if len(excluded):
        shown = excluded[["dataset", "id", "db_id", "reason", "error_message", "gold_sql"]].head(30)
        body += f"<h3>Excluded examples ({len(excluded)})</h3>" + table_html(
            shown, text_columns=("error_message", "gold_sql")
        )
    return section("data", "Data sets", body)


def model_section(model_dir: Path) -> str:
    """The base model, read from its directory."""
    info = describe_model(model_dir)
    rows = pd.DataFrame([{"key": k, "value": v} for k, v in info.items()])
    return section("model", "Base model", table_html(rows))


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
        "feedback": f"{s['feedback_mode']} / {s['feedback_detail']}" if s["max_turns"] > 1 else "-",
        "samples": s["num_samples"], "first-turn EX": s["first_turn_ex"], "final EX": s["final_ex"],
        "executable (first)": s["first_turn_executable"], "executable (final)": s["final_executable"],
        "schema-valid": s["schema_valid"], "repair SR": s["repair_success_rate"],
        "repairs": s["repair_attempted"], "tokens": s["generated_tokens"],
    } for name, s in summaries.items()])  # fmt: skip


def errors_by_turn_figure(trajectories: dict[str, pd.DataFrame]) -> plt.Figure:
    """Stacked bars: failing candidates by verdict at each turn, one panel per run."""
    fig, axes = plt.subplots(1, len(trajectories), figsize=(4.2 * len(trajectories), 3.2), squeeze=False)
    for ax, (name, t) in zip(axes[0], trajectories.items(), strict=True):
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
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].set_ylabel("candidates")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
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
        '<p class="note">EX is at example level (any sample correct). Repair SR is the share of repaired '
        "trajectories that end correct. Feedback <code>execution</code> uses only what an executor sees "
        "(deployable); <code>result_status</code> also says whether the result matches gold.</p>"
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


QUALITY_ROWS = {
    "pairs": "pairs", "natural": "natural", "synthetic": "synthetic",
    "synthetic_fraction": "synthetic fraction",
    "gold_fallback": "gold-fallback pairs", "mean_reward_margin": "mean reward margin",
    "mean_edit_ratio": "mean edit-distance ratio", "duplicate_rate": "duplicate rate",
    "chosen_executable_rate": "chosen executable", "chosen_verified_rate": "chosen verified correct",
    "executable_hard_negative_rate": "executable hard negatives",
}  # fmt: skip


def pair_types_figure(before: dict[str, int], after: dict[str, int]) -> plt.Figure:
    """Horizontal bars: pairs per type before and after filtering and capping."""
    types = sorted(set(before) | set(after))
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.42 * len(types)))
    y = range(len(types))
    ax.barh(
        [i + 0.2 for i in y], [before.get(t, 0) for t in types], height=0.4, color="#c0c6cc", label="mined"
    )
    ax.barh(
        [i - 0.2 for i in y],
        [after.get(t, 0) for t in types],
        height=0.4,
        color="#3e7cb1",
        label="kept by the merge",
    )
    ax.set_yticks(list(y), types, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("pairs")
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def pairs_section(quality_file: Path) -> str:
    """Preference data: pair quality before and after the Synth20 merge, pairs by type."""
    q = json.loads(quality_file.read_text())
    before, after = q["before"], q["after"]
    table = pd.DataFrame([{"": label, "mined": before.get(key), "merged": after.get(key)}
                          for key, label in QUALITY_ROWS.items()])  # fmt: skip
    settings = q["settings"]
    caps = ", ".join(
        f"{k} ≤ {v:.0%}" for k, v in {**settings["input_fractions"], **settings["type_fractions"]}.items()
    )
    body = table_html(table)
    body += (
        f'<p class="note">Merge caps (shares of the merged set): {html.escape(caps)}; reward margin ≥ '
        f"{settings['min_reward_margin']}; SQL edit-distance ratio ≤ "
        f"{settings['max_sql_edit_distance_ratio']}. "
        f"Hard negatives made: {before.get('negatives_made', 0)}, of which "
        f"{before.get('negatives_kept', 0)} give a result different from gold.</p>"
    )
    body += figure_html(
        pair_types_figure(before.get("by_type", {}), after.get("by_type", {})), "pairs by type"
    )
    return section("pairs", "Preference pairs", body)


def ex_figure(compare: pd.DataFrame) -> plt.Figure:
    """Grouped bars: EX per variant, one-shot and with repair."""
    variants = list(dict.fromkeys(compare["variant"]))
    fig, ax = plt.subplots(figsize=(1.4 + 1.3 * len(variants), 3.2))
    for offset, (mode, color) in zip(
        (-0.2, 0.2), (("one-shot", "#9fb3c8"), ("repair", "#3e7cb1")), strict=True
    ):
        values = compare[compare["mode"] == mode].set_index("variant").reindex(variants)["final EX"]
        bars = ax.bar([i + offset for i in range(len(variants))], values, width=0.4, color=color, label=mode)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=8, padding=2)
    ax.set_xticks(range(len(variants)), variants)
    ax.set_ylabel("execution accuracy (EX)")
    ax.set_ylim(0, max(0.1, float(compare["final EX"].max()) * 1.25))
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _pivot_counts(table: pd.DataFrame, row: str) -> pd.DataFrame:
    """Rows of `row`, one column per variant, cells 'failures (fixed)'."""
    count_col = "count" if "count" in table.columns else "failures"
    cells = table.assign(
        cell=table[count_col].astype(str) + " (" + table["fixed by repair"].astype(str) + ")"
    )
    return cells.pivot(index=row, columns="variant", values="cell").fillna("0 (0)").reset_index()


def evaluation_section(eval_dir: Path) -> str:
    """The evaluation matrix: EX per variant and mode, error taxonomy, routing, paired statistics."""
    compare = pd.read_parquet(eval_dir / "compare.parquet")
    body = table_html(compare) + figure_html(ex_figure(compare), "EX per variant")
    body += (
        '<p class="note">Every variant is rolled out through the same rollout code, prompts and sandbox. '
        "The one-shot figures are turn 1 of the repair run: with greedy decoding they are the same thing.</p>"
    )
    body += "<h3>Error taxonomy: first-turn errors (fixed by repair)</h3>"
    body += table_html(_pivot_counts(pd.read_parquet(eval_dir / "taxonomy.parquet"), "first-turn error"))
    body += "<h3>Verifier-aware routing: first-turn failures (fixed by repair)</h3>"
    body += table_html(_pivot_counts(pd.read_parquet(eval_dir / "routing.parquet"), "route"))
    body += (
        '<p class="note"><b>online</b>: executor-visible errors, repairable in any deployment; '
        "<b>guarded</b>: empty results, repairable with a sanity guard; <b>offline</b>: wrong result or row "
        "count, which only an external verifier (gold answers, tests) can catch.</p>"
    )
    for name, title in (("paired_one_shot", "one-shot"), ("paired_repair", "with repair")):
        paired = pd.read_parquet(eval_dir / f"{name}.parquet")
        if len(paired):
            body += f"<h3>Paired differences, {title}</h3>" + table_html(paired)
    body += (
        '<p class="note">ΔEX is measured on the same examples; the interval is a 95% percentile bootstrap '
        "over examples and p is McNemar's exact test on the discordant examples. An interval that contains 0 "
        "or p ≥ 0.05 means the difference may be noise.</p>"
    )
    return section("evaluation", "Evaluation matrix", body)


def predictions_section(pred_dirs: dict[str, Path]) -> str:
    """External predictions scored by the workflow."""
    rows = []
    for name, d in pred_dirs.items():
        s = json.loads((d / "summary.json").read_text())
        rows.append(
            {
                "predictions": name,
                "EX": s["ex"],
                "scored": s["scored"],
                "executable": s["executable"],
                "skipped": s["skipped_missing_db"],
                "gold failed": s["gold_failed"],
            }
        )
    return section("predictions", "External predictions", table_html(pd.DataFrame(rows)))


def build_report(title: str, sections: list[tuple[str, str, str]]) -> str:
    """Return the whole HTML page from (anchor, title, html) sections."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in sections)
    body = "".join(s for _, _, s in sections)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="meta">workflow_scripts {__version__} · built {stamp}</p><nav>{nav}</nav>{body}'
        "</body></html>\n"
    )


def _named_dirs(values: list[str]) -> dict[str, Path]:
    return {v.split("=", 1)[0]: Path(v.split("=", 1)[1]) for v in values}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--title", default="Text-to-SQL post-training report")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--prediction", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--rollout", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--retrieval", type=Path, help="retrieval recall Parquet of the eval data set")
    parser.add_argument("--pairs", type=Path, help="quality.json of the Synth20 merge")
    parser.add_argument("--evaluation", type=Path, help="directory of the compare stage")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    sections = [
        ("data", "Data sets", datasets_section(_named_dirs(args.dataset))),
        ("model", "Base model", model_section(args.model)),
    ]
    if args.rollout:
        sections.append(("rollout", "Rollouts", rollout_section(_named_dirs(args.rollout), args.retrieval)))
    if args.pairs:
        sections.append(("pairs", "Preference pairs", pairs_section(args.pairs)))
    if args.evaluation:
        sections.append(("evaluation", "Evaluation matrix", evaluation_section(args.evaluation)))
    if args.prediction:
        sections.append(
            ("predictions", "External predictions", predictions_section(_named_dirs(args.prediction)))
        )
    write_text(build_report(args.title, sections), args.out)


if __name__ == "__main__":
    run_cli(main)
