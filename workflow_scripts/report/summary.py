"""The report's first section: what the run shows and what it cannot, then its headline figures.

The headline figures are read, not hand-written: the best trained variant against base (first-turn EX,
paired ΔEX with its 95% CI and McNemar's p), whether repair fixed answers, whether DPO or SFT→DPO add over
SFT, and the alignment subsets' AR against their ΔEX.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from workflow_scripts.report.html import section

DEMO_INTRO = (
    "This run is the embedded demo: SmolLM2-135M-Instruct post-trained on a synthetic Spider-style "
    "benchmark that the workflow generates (question families shared across databases, evaluated on "
    "held-out databases); it shows whether training, repair and alignment move execution accuracy, with "
    "paired statistics, on 2 CPU cores in minutes. It cannot show how the method does on Spider or BIRD: a "
    "135M model on templated questions is not a real benchmark, and config/qwen2.5-coder-3b.yaml is the real "
    "run."
)
SIGNIFICANCE = 0.05
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


def summary_section(evaluation_dir: Path, alignment_dir: Path | None, intro: str | None) -> str:
    """The Summary section: the intro (what the run shows and cannot show) and the headline figures."""
    paired = pd.read_parquet(evaluation_dir / "paired_one_shot.parquet")
    compare = pd.DataFrame(json.loads((evaluation_dir / "compare.json").read_text()))
    lines = [best_variant_line(paired), repair_line(compare), preference_line(paired)]
    if alignment_dir is not None and (alignment_dir / "variants.parquet").is_file():
        lines.append(alignment_line(pd.read_parquet(alignment_dir / "variants.parquet")))
    body = f"<p>{html.escape(intro)}</p>" if intro else ""
    body += "<ul>" + "".join(f"<li>{line}</li>" for line in lines if line) + "</ul>"
    return section("summary", "Summary", body)
