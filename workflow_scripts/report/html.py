"""The report page: one self-contained HTML file (tables and plots embedded) built from its sections."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io

import matplotlib.pyplot as plt
import pandas as pd

from workflow_scripts import __version__

CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 1.2rem auto;
       max-width: 80rem; color: #1f2933; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .1rem; } h2 { border-bottom: 2px solid #e4e7eb; padding-bottom: .2rem;
margin-top: 2.2rem; } .meta { color: #616e7c; font-size: .85rem; margin: 0 0 .3rem; }
#summary h2 { margin-top: .8rem; } .lead { font-size: 1.12rem; margin: .4rem 0; }
.wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { padding: .3rem .7rem; border-bottom: 1px solid #e4e7eb; text-align: right; vertical-align: top; }
th { background: #f5f7fa; } td:first-child, th:first-child { text-align: left; }
td.text { text-align: left; font-family: ui-monospace, monospace; font-size: .82rem; max-width: 26rem;
          white-space: pre-wrap; overflow-wrap: break-word; } th.text { text-align: left; }
.note { background: #f0f4f8; border-left: 4px solid #9fb3c8; padding: .5rem .9rem; margin: .8rem 0; }
nav { font-size: .88rem; } nav a { margin-right: .8rem; } img { max-width: 100%; }
"""


def figure_html(fig: plt.Figure, alt: str) -> str:
    """Return an <img> tag with the figure embedded as a PNG data URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def integer_columns(df: pd.DataFrame) -> set[str]:
    """Float columns that hold counts: every value a whole number and some above 1 (rates stay 0..1).

    A count column with a missing value is float in pandas, and would otherwise print as `851.000`.
    """
    counts = set()
    for column in df.columns:
        values = df[column]
        if pd.api.types.is_float_dtype(values):
            known = values.dropna()
            if len(known) and (known == known.round()).all() and (known.abs() > 1).any():
                counts.add(column)
    return counts


def cell_text(value: object, integer: bool = False) -> str:
    """One table cell: empty for a missing value, integers as integers, other floats to three places."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return str(int(value)) if integer else f"{value:.3f}"
    return str(value)


def table_html(df: pd.DataFrame, text_columns: tuple[str, ...] = ()) -> str:
    """Return `df` as an HTML table that scrolls inside its own box when wider than the page.

    `text_columns` are shown left-aligned in monospace and wrapped.
    """
    text = ' class="text"'
    head = "".join(f"<th{text if c in text_columns else ''}>{html.escape(str(c))}</th>" for c in df.columns)
    integers = integer_columns(df)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for col, value in zip(df.columns, row, strict=True):
            cls = text if col in text_columns else ""
            cells.append(f"<td{cls}>{html.escape(cell_text(value, col in integers))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
    )


def section(anchor: str, title: str, body: str) -> str:
    """Return one report section."""
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def build_report(title: str, sections: list[tuple[str, str, str]], record: pd.DataFrame | None = None) -> str:
    """Return the whole HTML page from (anchor, title, html) sections.

    The first section (the Summary: what the run measured) follows the title and a one-line navigation.
    `record` (rows of what changes the numbers: metric mode, evidence, decoding, ...) is the last section,
    the reproducibility record: needed to reproduce a number, not to read it.
    """
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if record is not None and len(record):
        title_ = "Reproducibility record"
        sections = [*sections, ("record", title_, section("record", title_, table_html(record, ("value",))))]
    nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in sections)
    body = "".join(s for _, _, s in sections)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="meta">workflow_scripts {__version__} · built {stamp}</p><nav>{nav}</nav>{body}'
        "</body></html>\n"
    )
