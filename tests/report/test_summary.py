"""The report's Summary: the intro and headline figures read from the evaluation and alignment outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from workflow_scripts.report.summary import (
    DEMO_INTRO,
    alignment_line,
    best_variant_line,
    preference_line,
    repair_line,
    summary_section,
)


def paired_row(a: str, b: str, ex_a: float, ex_b: float, p: float) -> dict:
    return {"a": a, "b": b, "examples": 76, "EX a": ex_a, "EX b": ex_b, "ΔEX (b − a)": ex_b - ex_a,
            "95% CI low": ex_b - ex_a - 0.1, "95% CI high": ex_b - ex_a + 0.1, "McNemar p": p}  # fmt: skip


PAIRED = pd.DataFrame([
    paired_row("base", "sft", 0.03, 0.25, 0.001),
    paired_row("base", "dpo", 0.03, 0.04, 1.0),
    paired_row("sft", "dpo", 0.25, 0.04, 0.001),
    paired_row("sft", "sft_dpo", 0.25, 0.26, 1.0),
])  # fmt: skip
COMPARE = pd.DataFrame([
    {"variant": "base", "mode": "repair", "first-turn EX": 0.03, "final EX": 0.03, "repair SR": 0.0},
    {"variant": "sft", "mode": "repair", "first-turn EX": 0.25, "final EX": 0.30, "repair SR": 0.1},
    {"variant": "sft", "mode": "one-shot", "first-turn EX": 0.25, "final EX": 0.25, "repair SR": None},
])  # fmt: skip


def test_best_variant_line_names_the_largest_gain_and_its_significance() -> None:
    line = best_variant_line(PAIRED)
    assert "<b>sft</b>" in line and "+22.0 points" in line and "significant at 0.05" in line
    assert "not significant" in best_variant_line(PAIRED[PAIRED["b"] == "dpo"])
    assert "No trained variant" in best_variant_line(PAIRED[PAIRED["a"] == "sft"])


def test_repair_line_lists_only_variants_that_repair_fixed() -> None:
    line = repair_line(COMPARE)
    assert "sft 25.0% → 30.0%" in line and "base" not in line
    assert (
        repair_line(COMPARE[COMPARE["variant"] == "base"])
        == "Repair fixed no first-turn failure in any variant."
    )


def test_preference_line_says_when_dpo_adds_nothing() -> None:
    line = preference_line(PAIRED)
    assert "dpo does not add significantly to SFT (-21.0 points" in line
    assert "sft_dpo does not add significantly to SFT (+1.0 points" in line


def test_alignment_line_orders_subsets_by_ar() -> None:
    variants = pd.DataFrame([
        {"variant": "sft", "AR": 2.0, "ΔEX one-shot": 0.2},
        {"variant": "sft_aligned", "AR": 1.5, "ΔEX one-shot": 0.15},
        {"variant": "sft_misaligned", "AR": 0.8, "ΔEX one-shot": 0.05},
    ])  # fmt: skip
    line = alignment_line(variants)
    assert line.index("sft_aligned") < line.index("sft_misaligned") and "as the alignment hypothesis" in line
    flipped = variants.assign(**{"ΔEX one-shot": [0.2, 0.0, 0.1]})
    assert "AR did not order the gains" in alignment_line(flipped)


def test_summary_section_reads_the_outputs(tmp_path: Path) -> None:
    PAIRED.to_parquet(tmp_path / "paired_one_shot.parquet")
    (tmp_path / "compare.json").write_text(json.dumps(COMPARE.to_dict(orient="records")))
    html = summary_section(tmp_path, None, DEMO_INTRO)
    assert html.startswith('<section id="summary"><h2>Summary</h2>')
    assert "config/qwen2.5-coder-3b.yaml is the real run" in html and "<b>sft</b>" in html
