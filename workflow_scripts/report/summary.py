"""The report's first section: what the run shows and what it cannot, then its headline figures.

The headline figures are read, not hand-written: the best trained variant against base (first-turn EX,
paired ΔEX with its 95% CI and McNemar's p), charted for every variant with the intervals of the evaluation
stage (compare table, paired statistics), whether repair fixed answers, whether DPO or SFT→DPO add over
SFT, and the alignment subsets' AR against their ΔEX.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, PercentFormatter

from workflow_scripts.report.html import figure_html, section

DEMO_INTRO = (
    "This run is the embedded demo: SmolLM2-135M-Instruct post-trained on a synthetic Spider-style "
    "benchmark that the workflow generates (question families shared across databases, evaluated on "
    "held-out databases); it shows whether training, repair and alignment move execution accuracy, with "
    "paired statistics, on 2 CPU cores in minutes. It cannot show how the method does on Spider or BIRD: a "
    "135M model on templated questions is not a real benchmark, and config/qwen2.5-coder-3b.yaml is the real "
    "run."
)
SIGNIFICANCE = 0.05
MODES = {"one-shot": "#9fb3c8", "repair": "#3e7cb1"}  # the two modes of the compare table, and their colours
SUBSET_VARIANTS = ("sft_aligned", "sft_random", "sft_misaligned")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _points(x: float) -> str:
    return f"{100 * x:+.1f} points"


def against_base(paired: pd.DataFrame) -> pd.DataFrame:
    """The paired rows that compare a trained variant (b) with base (a), best ΔEX first."""
    rows = paired[paired["a"] == "base"].copy()
    return rows.sort_values(["ΔEX (b − a)", "McNemar p"], ascending=[False, True]).reset_index(drop=True)


def best_variant_line(paired: pd.DataFrame) -> str:
    """One sentence: the trained variant with the largest first-turn gain over base, with its statistics."""
    rows = against_base(paired)
    if rows.empty:
        return "No trained variant was evaluated against base."
    r = rows.iloc[0]
    verdict = "significant" if r["McNemar p"] < SIGNIFICANCE else "not significant"
    return (
        f"Best trained variant: <b>{html.escape(str(r['b']))}</b>, first-turn EX {_pct(r['EX b'])} against "
        f"base {_pct(r['EX a'])} on {int(r['examples'])} examples: ΔEX {_points(r['ΔEX (b − a)'])} (95% CI "
        f"{_points(r['95% CI low'])} to {_points(r['95% CI high'])}), McNemar p = {r['McNemar p']:.2g} "
        f"({verdict} at {SIGNIFICANCE})."
    )


def repair_line(compare: pd.DataFrame) -> str:
    """One sentence: the variants whose repair turn fixed first-turn failures (final EX above turn 1's)."""
    rep = compare[compare["mode"] == "repair"]
    fixed = rep[rep["final EX"] > rep["first-turn EX"]]
    if fixed.empty:
        return "Repair fixed no first-turn failure in any variant."
    parts = [
        f"{html.escape(str(r['variant']))} {_pct(r['first-turn EX'])} → {_pct(r['final EX'])} (repair SR "
        f"{_pct(float(r['repair SR'] or 0))})"
        for _, r in fixed.iterrows()
    ]
    return "Repair fixed first-turn failures in " + "; ".join(parts) + "."


def preference_line(paired: pd.DataFrame) -> str:
    """One sentence: whether DPO and SFT→DPO add over SFT (paired first-turn EX), said either way."""
    parts = []
    for variant in ("dpo", "sft_dpo", "grpo", "sft_grpo"):
        rows = paired[(paired["a"] == "sft") & (paired["b"] == variant)]
        if rows.empty:
            rows = paired[(paired["a"] == variant) & (paired["b"] == "sft")]
            if rows.empty:
                continue
            delta = -float(rows.iloc[0]["ΔEX (b − a)"])
        else:
            delta = float(rows.iloc[0]["ΔEX (b − a)"])
        p = float(rows.iloc[0]["McNemar p"])
        adds = "adds to" if delta > 0 and p < SIGNIFICANCE else "does not add significantly to"
        parts.append(f"{html.escape(variant)} {adds} SFT ({_points(delta)}, p = {p:.2g})")
    if not parts:
        return ""
    return "Against SFT alone: " + "; ".join(parts) + "."


def alignment_line(variants: pd.DataFrame) -> str:
    """One sentence: the selection subsets' AR against their measured ΔEX, and which way it came out."""
    subsets = variants[variants["variant"].isin(SUBSET_VARIANTS) & variants["AR"].notna()]
    if subsets.empty:
        return ""
    parts = [
        f"{html.escape(str(r['variant']))}: AR {r['AR']:.2f}, ΔEX {_points(r['ΔEX one-shot'])}"
        for _, r in subsets.sort_values("AR", ascending=False).iterrows()
    ]
    ordered = subsets.sort_values("AR")
    if len(ordered) >= 2:
        agrees = ordered["ΔEX one-shot"].is_monotonic_increasing and ordered["ΔEX one-shot"].nunique() > 1
        verdict = (
            "the higher-AR subset gained more, as the alignment hypothesis predicts"
            if agrees
            else "here AR did not order the gains"
        )
    else:
        verdict = "one subset only"
    return f"Alignment subsets of equal size ({'; '.join(parts)}): {verdict} (evaluated on few examples)."


def headline_ex(compare: pd.DataFrame) -> pd.DataFrame:
    """EX per variant and mode (one-shot, repair) with its 95% bootstrap interval (NaN when not recorded)."""
    rows = compare[compare["mode"].isin(list(MODES))]
    return pd.DataFrame({
        "variant": rows["variant"], "mode": rows["mode"], "EX": rows["final EX"].astype(float),
        "low": rows.get("95% CI low", pd.Series(float("nan"), index=rows.index)).astype(float),
        "high": rows.get("95% CI high", pd.Series(float("nan"), index=rows.index)).astype(float),
    }).reset_index(drop=True)  # fmt: skip


def headline_delta(paired: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each trained variant's paired ΔEX over base per mode, its 95% bootstrap interval and McNemar's p."""
    frames = [
        pd.DataFrame(
            {
                "variant": rows["b"],
                "mode": mode,
                "ΔEX": rows["ΔEX (b − a)"].astype(float),
                "low": rows["95% CI low"].astype(float),
                "high": rows["95% CI high"].astype(float),
                "p": rows["McNemar p"].astype(float),
            }
        )
        for mode, table in paired.items()
        if len(rows := table[table["a"] == "base"])
    ]
    columns = ["variant", "mode", "ΔEX", "low", "high", "p"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _whiskers(centre: pd.Series, low: pd.Series, high: pd.Series) -> np.ndarray | None:
    """Error-bar lengths below and above `centre` (2 × n), or None when no interval was recorded."""
    if low.isna().all():
        return None
    return np.vstack([(centre - low).clip(lower=0).fillna(0), (high - centre).clip(lower=0).fillna(0)])


def headline_figure(ex: pd.DataFrame, delta: pd.DataFrame) -> plt.Figure:
    """Left: EX per variant, one-shot and with repair, with 95% intervals. Right, when there is a base to
    compare with: each trained variant's paired ΔEX over base with its 95% interval and McNemar's p."""
    variants = list(dict.fromkeys(ex["variant"]))
    panels = 2 if len(delta) else 1
    fig, axes = plt.subplots(
        1, panels, figsize=(1.6 + 1.3 * len(variants) + 4.6 * (panels - 1), 3.0), squeeze=False,
        gridspec_kw={"width_ratios": [1.2, 1][:panels]},
    )  # fmt: skip
    ax = axes[0][0]
    for offset, (mode, color) in zip((-0.2, 0.2), MODES.items(), strict=True):
        rows = ex[ex["mode"] == mode].set_index("variant").reindex(variants)
        x = [i + offset for i in range(len(variants))]
        yerr = _whiskers(rows["EX"], rows["low"], rows["high"])
        ax.bar(x, rows["EX"], width=0.4, color=color, label=mode, yerr=yerr, capsize=3, ecolor="#52606d")
        tops = rows["high"].fillna(rows["EX"]).fillna(0)
        for xi, value, top in zip(x, rows["EX"], tops, strict=True):
            ax.text(xi, top + 0.01, "" if pd.isna(value) else f"{value:.1%}", ha="center", fontsize=7)
    ax.set_xticks(range(len(variants)), variants)
    ax.set_ylabel("execution accuracy (EX)")
    ax.set_ylim(0, max(0.1, float(ex[["EX", "high"]].max().max()) * 1.18))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title("EX per variant, 95% CI", fontsize=9)
    ax.legend(frameon=False, fontsize=8, ncols=2, loc="upper left")
    ax.spines[["top", "right"]].set_visible(False)
    if panels == 2:
        _delta_panel(axes[0][1], delta)
    fig.tight_layout()
    return fig


def _delta_panel(ax: plt.Axes, delta: pd.DataFrame) -> None:
    """Paired ΔEX over base per trained variant (rows) and mode, 95% interval, McNemar's p at the right."""
    variants = list(dict.fromkeys(delta["variant"]))
    for offset, (mode, color) in zip((-0.15, 0.15), MODES.items(), strict=True):
        rows = delta[delta["mode"] == mode].set_index("variant").reindex(variants)
        y = [i + offset for i in range(len(variants))]
        xerr = _whiskers(rows["ΔEX"], rows["low"], rows["high"])
        ax.errorbar(rows["ΔEX"], y, xerr=xerr, fmt="o", color=color, capsize=3, label=mode, markersize=5)
        for yi, high, p in zip(y, rows["high"], rows["p"], strict=True):
            if not pd.isna(p):
                ax.annotate(
                    f"p = {p:.2g}", (high, yi), xytext=(4, -3), textcoords="offset points", fontsize=7
                )
    ax.axvline(0, color="#9aa5b1", linewidth=0.8)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # clear of the p-values
    ax.set_yticks(range(len(variants)), variants)
    ax.set_ylim(len(variants) - 0.5, -0.5)  # the first variant on top
    low, high = float(delta["low"].min()), float(delta["high"].max())
    ax.set_xlim(min(low, 0) - 0.02, max(high, 0) + 0.1)  # room for the p-values right of the intervals
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:+.0f}"))
    ax.set_xlabel("ΔEX over base (points), paired")
    ax.set_title("paired ΔEX over base, 95% bootstrap CI, McNemar p", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)


def summary_section(evaluation_dir: Path, alignment_dir: Path | None, intro: str | None) -> str:
    """The Summary section: the answer first (the best variant against base, with its interval and p),
    the headline chart with 95% intervals, the other findings, then what the run cannot show (the intro)."""
    paired = pd.read_parquet(evaluation_dir / "paired_one_shot.parquet")
    compare = pd.DataFrame(json.loads((evaluation_dir / "compare.json").read_text()))
    by_mode = {"one-shot": paired}
    if (evaluation_dir / "paired_repair.parquet").is_file():
        by_mode["repair"] = pd.read_parquet(evaluation_dir / "paired_repair.parquet")
    lines = [repair_line(compare), preference_line(paired)]
    if alignment_dir is not None and (alignment_dir / "variants.parquet").is_file():
        lines.append(alignment_line(pd.read_parquet(alignment_dir / "variants.parquet")))
    figure = headline_figure(headline_ex(compare), headline_delta(by_mode))
    body = f'<p class="lead">{best_variant_line(paired)}</p>'
    body += figure_html(figure, "EX per variant and paired ΔEX over base, with 95% intervals")
    body += "<ul>" + "".join(f"<li>{line}</li>" for line in lines if line) + "</ul>"
    body += f'<p class="note">{html.escape(intro)}</p>' if intro else ""
    return section("summary", "Summary", body)
