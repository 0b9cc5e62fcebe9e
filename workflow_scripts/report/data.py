"""Report sections on the inputs: the data sets as ingested and the base model."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from workflow_scripts.core.model import describe_model
from workflow_scripts.report.html import figure_html, section, table_html

PALETTE = {"usable": "#3e7cb1", "gold failed": "#e0a458", "skipped (no database)": "#c0c6cc"}


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
