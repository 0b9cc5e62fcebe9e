"""The final report: one self-contained HTML page (tables and plots embedded) built from stage outputs."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import io
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator, PercentFormatter  # noqa: E402

from workflow_scripts import __version__  # noqa: E402
from workflow_scripts.artifacts import write_text  # noqa: E402
from workflow_scripts.errors import run_cli  # noqa: E402
from workflow_scripts.model import describe_model  # noqa: E402
from workflow_scripts.rollout import final_answers  # noqa: E402

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
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
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
        "feedback": (
            f"{s['feedback_mode']} / {s['feedback_detail']} / {s.get('repair_scope', '-')}"
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
        "of repaired trajectories that end correct. Feedback is mode / detail / repair scope: "
        "<code>online_visible</code> (alias <code>execution</code>) says only what a deployed system sees; "
        "<code>result_status</code> also whether the result matches gold. The repair scope says which "
        "failures are repaired (<code>verified</code> needs a gold verifier).</p>"
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
    "cost_pairs": "cost pairs (cheaper_correct)",
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
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    # Above the axes, so that it never hides a bar's label.
    ax.legend(frameon=False, fontsize=8, ncols=2, loc="lower center", bbox_to_anchor=(0.5, 1.0))
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
        "<b>guarded</b>: empty results and results a rule guard flags (aggregate without GROUP BY, join "
        "without a condition), repairable with sanity guards; <b>offline</b>: other wrong results or row "
        "counts, which only an external verifier (gold answers, tests) can catch.</p>"
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


def cost_figure(costs: dict[str, pd.DataFrame]) -> plt.Figure:
    """Box and strip plots of the plan cost and the execution time of correct predictions, per variant."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    names = list(costs)
    for ax, column, label in zip(
        axes, ("plan_cost", "exec_ms"), ("plan cost (EXPLAIN QUERY PLAN)", "execution time (ms)"), strict=True
    ):
        values = [costs[n][column].dropna().to_numpy() for n in names]
        ax.boxplot(values, showfliers=False, widths=0.5)
        for i, v in enumerate(values, start=1):
            jitter = [i + 0.12 * ((k % 5) - 2) / 2 for k in range(len(v))]
            ax.scatter(jitter, v, s=10, alpha=0.6, color="#3e7cb1", zorder=3)
        ax.set_xticks(range(1, len(names) + 1), names)
        ax.set_ylabel(label)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def cost_section(variant_dirs: dict[str, Path]) -> str:
    """Query cost of the correct final answers of every variant's eval rollout."""
    costs, rows = {}, []
    for variant, d in variant_dirs.items():
        final = final_answers(pd.read_parquet(d / "trajectories.parquet"))
        correct = final[final["correct"]]
        if "plan_cost" not in correct:
            continue
        correct = correct.assign(exec_ms=correct["exec_s"] * 1000)
        costs[variant] = correct
        n = len(correct)
        rows.append({
            "variant": variant, "correct predictions": n,
            "median plan cost": correct["plan_cost"].median() if n else None,
            "mean table accesses": correct["plan_table_accesses"].mean() if n else None,
            "mean full scans": correct["plan_full_scans"].mean() if n else None,
            "mean temp B-trees": correct["plan_temp_btrees"].mean() if n else None,
            "cartesian joins": int(correct["plan_cartesian_joins"].sum()) if n else 0,
            "median exec ms": correct["exec_ms"].median() if n else None,
        })  # fmt: skip
    body = table_html(pd.DataFrame(rows))
    if any(len(c) for c in costs.values()):
        body += figure_html(cost_figure(costs), "query cost of correct predictions")
    body += (
        '<p class="note">Each correct final answer is explained by SQLite (<code>EXPLAIN QUERY PLAN</code>, '
        "in the sandbox, on the SQL as executed). Plan cost = table accesses + 2·full scans without an index "
        "+ 2·temporary B-trees + 2·automatic indexes + 3·correlated subqueries + 8·cartesian joins: a "
        "unitless order of queries on one database, not a time. Execution time excludes opening the "
        "database; on small databases it is dominated by noise.</p>"
    )
    return section("cost", "Query cost", body)


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


def label_offsets(xs: list[float], ys: list[float], near_x: float = 0.15, near_y: float = 0.06) -> list[int]:
    """Vertical offsets (points) for labels right of scatter points, so that close labels do not overlap.

    A point is close to another when their x differ by less than `near_x` of the x range (about a label's
    width) and their y by less than `near_y` of the y range; each point close to labelled ones takes the
    first offset of a cycle above and below that they do not use.
    """
    span_x = (max(xs) - min(xs)) or 1.0
    span_y = (max(ys) - min(ys)) or 1.0
    cycle = (3, 12, -10, 21, -19)
    offsets = [cycle[0]] * len(xs)
    placed: list[int] = []
    for i in sorted(range(len(xs)), key=lambda i: (xs[i], ys[i])):
        used = {
            offsets[j]
            for j in placed
            if abs(xs[i] - xs[j]) < near_x * span_x and abs(ys[i] - ys[j]) < near_y * span_y
        }
        offsets[i] = next((o for o in cycle if o not in used), cycle[len(placed) % len(cycle)])
        placed.append(i)
    return offsets


def ar_figure(variants: pd.DataFrame, r: float) -> plt.Figure:
    """Scatter of each trained variant's AR against its ΔEX over base (one-shot and with repair)."""
    points = variants[variants["AR"].notna()]
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for column, marker, color in (("ΔEX one-shot", "o", "#3e7cb1"), ("ΔEX repair", "^", "#e0a458")):
        ax.scatter(points["AR"], points[column], marker=marker, color=color, label=column)
    offsets = label_offsets(points["AR"].tolist(), points["ΔEX one-shot"].tolist())
    for name, x, y, dy in zip(points["variant"], points["AR"], points["ΔEX one-shot"], offsets, strict=True):
        ax.annotate(name, (x, y), fontsize=7, xytext=(4, dy), textcoords="offset points")
    ax.axhline(0, color="#c0c6cc", linewidth=0.8)
    ax.axvline(1, color="#c0c6cc", linewidth=0.8, linestyle="--")
    ax.set_xlabel("AR = A_KL(target‖train) / A_KL(target‖base predictions)")
    ax.set_ylabel("ΔEX over base")
    shown = "n/a" if pd.isna(r) else f"{r:.2f}"
    ax.set_title(f"Pearson r (one-shot) = {shown}, {len(points)} variants", fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def sample_size_figure(summary: pd.DataFrame) -> plt.Figure:
    """A_KL(target_k‖train) per k (mean and 5–95% of the draws) for each training set."""
    ks = list(dict.fromkeys(summary["k"]))
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    sets = list(dict.fromkeys(summary["set"]))
    for i, name in enumerate(sets):
        rows = summary[summary["set"] == name].set_index("k").reindex(ks)
        x = [j + (i - (len(sets) - 1) / 2) * 0.06 for j in range(len(ks))]
        err = [rows["A_KL_mean"] - rows["A_KL_p05"], rows["A_KL_p95"] - rows["A_KL_mean"]]
        ax.errorbar(x, rows["A_KL_mean"], yerr=err, marker="o", markersize=3, capsize=2, label=name)
    ax.set_xticks(range(len(ks)), ks)
    ax.set_xlabel("target queries per database (k)")
    ax.set_ylabel("A_KL(target_k‖train)")
    ax.legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def selection_table(selection: dict, table: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """The aligned and the random SFT subset: size, A_KL(target‖subset) and the EX of their adapters."""
    rows = []
    by_set = table.set_index("set")
    by_variant = variants.set_index("variant")
    for name in ("aligned", "random"):
        row = {"subset": name, "SFT examples": selection["size"], "A_KL(target‖subset)": math.nan}
        if f"sft_{name}" in by_set.index:
            row["A_KL(target‖subset)"] = by_set.loc[f"sft_{name}", "A_KL"]
        if f"sft_{name}" in by_variant.index:
            v = by_variant.loc[f"sft_{name}"]
            row |= {c: v[c] for c in ("examples", "one-shot EX", "repair EX", "ΔEX one-shot", "ΔEX repair")}
        rows.append(row)
    return pd.DataFrame(rows)


def alignment_section(alignment_dir: Path) -> str:
    """Structural KL alignment: the table, AR against ΔEX, the sample-size study, the selection study."""
    summary = json.loads((alignment_dir / "summary.json").read_text())
    table = pd.read_parquet(alignment_dir / "alignment.parquet")
    variants = pd.read_parquet(alignment_dir / "variants.parquet")
    target = summary["target"]
    body = (
        f"<p>Target: the gold SQL of the {target['queries']} evaluated examples ({target['databases']} "
        f"database(s), {target['unparsed']} unparsed, {target['ngrams']} distinct n-grams). "
        f"n-grams up to {summary['ngram_max']}, smoothing α = {summary['alpha']}, "
        f"c = {summary['c']:.4g} ({html.escape(summary['c_rule'])}).</p>"
    )
    body += table_html(table)
    body += (
        '<p class="note">D_KL(target‖set) over the structural n-grams of the SQL templates (identifiers and '
        "literals removed); A_KL = exp(−D_KL / c); OVLP = the share of the target's n-gram mass that the "
        "set contains; AR = A_KL(target‖train) / A_KL(target‖base predictions): above 1 the training set is "
        "closer to the target's structure than the base model already is. Predictions are each variant's "
        "turn-1 SQL; unparsed queries are counted and add no n-gram.</p>"
    )
    corr = summary["correlation_one_shot"]
    body += "<h3>AR against ΔEX</h3>" + table_html(variants)
    body += figure_html(ar_figure(variants, corr["r"]), "AR against ΔEX")
    body += (
        f'<p class="note">{corr["points"]} trained variant(s). A correlation over so few points (and ΔEX '
        "measured on few examples) is anecdotal: read it as a direction, not as evidence. ΔEX is on the "
        "examples both the variant and base were evaluated on.</p>"
    )
    ss = pd.read_parquet(alignment_dir / "sample_size_summary.parquet")
    if len(ss):
        body += "<h3>Sample size: the target cut to k queries per database</h3>"
        body += figure_html(sample_size_figure(ss), "A_KL against target sample size") + table_html(ss)
        body += (
            '<p class="note">Each draw keeps k target queries per database (all when it has fewer); bars '
            "are the 5th–95th percentiles of the draws, on the scale c of the table. <b>rank_agreement</b> "
            "is the share of draws that order the training sets as the whole target does: the paper's claim "
            "that 1–2 queries per database suffice holds here when it is high at k = 1, 2.</p>"
        )
    selection = summary.get("selection")
    if selection:
        body += "<h3>Alignment-aware selection</h3>" + table_html(selection_table(selection, table, variants))
        body += (
            f'<p class="note">Two SFT subsets of {selection["size"]} of the {selection["pool"]} SFT '
            "examples: greedy, maximising A_KL(target‖subset), and seeded random; each trains an adapter "
            "with the SFT settings, evaluated like a variant. The target's gold SQL only ranks training "
            "queries; none of it enters the training data.</p>"
        )
    return section("alignment", "Alignment", body)


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
    parser.add_argument("--alignment", type=Path, help="directory of the alignment stage")
    parser.add_argument("--repair-study", type=Path, help="study.parquet of the repair study")
    parser.add_argument("--cost", action="append", default=[], metavar="VARIANT=DIR", help="eval rollout dir")
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
    if args.cost:
        sections.append(("cost", "Query cost", cost_section(_named_dirs(args.cost))))
    if args.repair_study:
        sections.append(("repair-study", "Repair study", repair_study_section(args.repair_study)))
    if args.alignment:
        sections.append(("alignment", "Alignment", alignment_section(args.alignment)))
    if args.prediction:
        sections.append(
            ("predictions", "External predictions", predictions_section(_named_dirs(args.prediction)))
        )
    write_text(build_report(args.title, sections), args.out)


if __name__ == "__main__":
    run_cli(main)
