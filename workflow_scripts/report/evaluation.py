"""Report sections on evaluation: the variant matrix, query cost, and external predictions."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import PercentFormatter

from workflow_scripts.report.html import figure_html, section, table_html
from workflow_scripts.rollout.loop import final_answers


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
    difficulty_file = eval_dir / "difficulty.parquet"
    if difficulty_file.is_file() and len(difficulty := pd.read_parquet(difficulty_file)):
        shown = difficulty.assign(EX=difficulty["EX"].map(lambda v: f"{v:.1%}" if pd.notna(v) else ""))
        body += "<h3>EX by difficulty</h3>" + table_html(
            shown.pivot_table(
                index=["variant", "mode"], columns="difficulty", values="EX", aggfunc="first", sort=False
            ).reset_index()
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
    for name, title in (
        ("paired_one_shot", "one-shot"),
        ("paired_repair", "with repair"),
        ("paired_voting", "decodings (greedy, maj@k, pass@k)"),
    ):
        if not (eval_dir / f"{name}.parquet").is_file():
            continue
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
                "metric": s.get("metric", "spider"),
                **({"R-VES": s["r_ves"]} if s.get("r_ves") is not None else {}),
            }
        )
    return section("predictions", "External predictions", table_html(pd.DataFrame(rows)))
