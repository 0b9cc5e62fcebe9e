"""Report section on structural alignment: AR against ΔEX, sample size, alignment-aware selection."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from workflow_scripts.core.config import DEFAULT_SUBSETS
from workflow_scripts.report.html import figure_html, section, table_html


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
    """A_KL(target_k‖train) per k (median and 5–95% of the draws) for each training set."""
    ks = list(dict.fromkeys(summary["k"]))
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    sets = list(dict.fromkeys(summary["set"]))
    for i, name in enumerate(sets):
        rows = summary[summary["set"] == name].set_index("k").reindex(ks)
        x = [j + (i - (len(sets) - 1) / 2) * 0.06 for j in range(len(ks))]
        # The median, not the mean: a skewed set of draws can put its mean outside its own 5–95% band, and a
        # band of equal draws can come out a rounding error below zero.
        low = (rows["A_KL_median"] - rows["A_KL_p05"]).clip(lower=0)
        high = (rows["A_KL_p95"] - rows["A_KL_median"]).clip(lower=0)
        ax.errorbar(x, rows["A_KL_median"], yerr=[low, high], marker="o", markersize=3, capsize=2, label=name)
    ax.set_xticks(range(len(ks)), ks)
    ax.set_xlabel("target queries per database (k)")
    ax.set_ylabel("A_KL(target_k‖train)")
    ax.legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.spines[["top", "right"]].set_visible(False)
    return fig


RANK_HOLDS = 0.95  # share of draws ranking the sets as the whole target: "1–2 queries suffice" holds


def rank_claim(summary: pd.DataFrame) -> str:
    """Whether the paper's claim (1–2 target queries per database rank training sets as all of them do)
    holds in the sample-size study, with the rank agreement at k = 1 and 2 and the target sizes."""
    small = summary[summary["k"].astype(str).isin(["1", "2"])].drop_duplicates("k")
    if small.empty:
        return "The study has no k of 1 or 2, so it does not test the paper's claim that 1–2 suffice."
    numbers = " and ".join(
        f"{r.rank_agreement:.3f} at k = {r.k} ({r.target_queries:.0f} target queries)"
        for r in small.itertuples(index=False)
    )
    if (small["rank_agreement"] >= RANK_HOLDS).all():
        return (
            f"The paper's claim that 1–2 queries per database suffice holds here: rank agreement {numbers}."
        )
    return (
        f"The paper's claim that 1–2 queries per database suffice to rank training sets fails here: rank "
        f"agreement {numbers}. At these sizes a draw's n-gram distribution rests on a handful of queries; "
        "compare training sets here on the whole target only."
    )


def selection_table(selection: dict, table: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """The selection study's SFT subsets: size, A_KL(target‖subset), AR and the EX of their adapters."""
    rows = []
    by_set = table.set_index("set")
    by_variant = variants.set_index("variant")
    for name in selection.get("subsets", DEFAULT_SUBSETS):
        row = {
            "subset": name,
            "SFT examples": selection["size"],
            "A_KL(target‖subset)": math.nan,
            "AR": math.nan,
        }
        if f"sft_{name}" in by_set.index:
            row["A_KL(target‖subset)"] = by_set.loc[f"sft_{name}", "A_KL"]
            row["AR"] = by_set.loc[f"sft_{name}"].get("AR", math.nan)
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
            "is the share of draws that order the training sets as the whole target does. "
            f"{rank_claim(ss)}</p>"
        )
    selection = summary.get("selection")
    if selection:
        body += "<h3>Alignment-aware selection</h3>" + table_html(selection_table(selection, table, variants))
        body += (
            f'<p class="note">SFT subsets of {selection["size"]} of the {selection["pool"]} SFT '
            "examples: <b>aligned</b> (greedy, maximising A_KL(target‖subset)), <b>random</b> (seeded) and "
            "<b>misaligned</b> (greedy, minimising it); each trains an adapter with the same settings "
            "(the SFT settings, with alignment.selection.max_steps), evaluated like a variant. The target's "
            "gold SQL only ranks training queries; none of it enters the training data.</p>"
        )
    return section("alignment", "Alignment", body)
