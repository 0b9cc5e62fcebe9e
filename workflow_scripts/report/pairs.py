"""Report section on the preference pairs: the Synth20 merge and its pair-quality report."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from workflow_scripts.report.html import figure_html, section, table_html

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
    # object columns, so that counts stay integers beside the rates of the same column
    table = pd.DataFrame([{"": label, "mined": before.get(key), "merged": after.get(key)}
                          for key, label in QUALITY_ROWS.items()], dtype=object)  # fmt: skip
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
    if before.get("by_type") or after.get("by_type"):  # no empty axes when no pair was mined
        body += figure_html(
            pair_types_figure(before.get("by_type", {}), after.get("by_type", {})), "pairs by type"
        )
    return section("pairs", "Preference pairs", body)
