"""Report sections on evaluation: the variant matrix, query cost, and external predictions."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from workflow_scripts.report.html import figure_html, section, table_html
from workflow_scripts.rollout.summary import final_answers

BREAKDOWN_NOTES = {
    "difficulty": "the data set's own difficulty labels (BIRD: simple, moderate, challenging)",
    "question family": "the demo's question families (workflow_scripts/data/demo/families.py), one question "
    "of each family per held-out database",
    "Spider hardness": "Spider's hardness of the gold SQL (easy, medium, hard, extra), by the rules of "
    "Spider's evaluation script over sqlglot's parse",
}


def breakdown_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One breakdown of difficulty.parquet as a table: a row per level (with its examples), a column per
    variant and mode, cells EX in percent."""
    levels = list(dict.fromkeys(rows["level"]))
    cells = rows.assign(
        column=rows["variant"] + " " + rows["mode"],
        shown=rows["EX"].map(lambda v: f"{v:.1%}" if pd.notna(v) else ""),
    )
    table = cells.pivot(index="level", columns="column", values="shown")
    table = table.reindex(index=levels, columns=list(dict.fromkeys(cells["column"])))
    examples = rows.drop_duplicates("level").set_index("level")["examples"].reindex(levels)
    return (
        table.rename_axis(columns=None)
        .reset_index()
        .rename(columns={"level": ""})
        .assign(examples=examples.to_numpy())[["", "examples", *table.columns]]
    )


def breakdown_html(difficulty: pd.DataFrame) -> str:
    """EX by every breakdown that difficulty.parquet holds (BIRD difficulty, question family, hardness)."""
    if "breakdown" not in difficulty:  # written before the breakdowns: BIRD difficulty only
        difficulty = difficulty.rename(columns={"difficulty": "level"}).assign(breakdown="difficulty")
    body = ""
    for name, rows in difficulty.groupby("breakdown", sort=False):
        body += f"<h3>EX by {html.escape(str(name))}</h3>" + table_html(breakdown_table(rows))
        note = BREAKDOWN_NOTES.get(str(name))
        body += f'<p class="note">Rows: {html.escape(note)}.</p>' if note else ""
    return body


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
    body = table_html(compare)
    body += (
        '<p class="note">Every variant is rolled out through the same rollout code, prompts and sandbox. '
        "The one-shot figures are turn 1 of the repair run: with greedy decoding they are the same thing. "
        "The 95% CI of final EX is a percentile bootstrap over examples; the Summary charts it.</p>"
    )
    difficulty_file = eval_dir / "difficulty.parquet"
    if difficulty_file.is_file() and len(difficulty := pd.read_parquet(difficulty_file)):
        body += breakdown_html(difficulty)
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
            # p to two significant digits: three decimals print a p of 0.00049 as 0.000
            shown = paired.assign(**{"McNemar p": paired["McNemar p"].map(lambda p: f"{p:.2g}")})
            body += f"<h3>Paired differences, {title}</h3>" + table_html(shown)
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
