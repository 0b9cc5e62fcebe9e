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


def build_report(title: str, sections: list[tuple[str, str, str]], record: pd.DataFrame | None = None) -> str:
    """Return the whole HTML page from (anchor, title, html) sections.

    `record` (rows of what changes the numbers: metric mode, evidence, decoding, ...; `report.record`) is
    shown under the title as the reproducibility record.
    """
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in sections)
    body = "".join(s for _, _, s in sections)
    header = ""
    if record is not None and len(record):
        header = (
            '<div id="record"><h3>Reproducibility record</h3>' + table_html(record, ("value",)) + "</div>"
        )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="meta">workflow_scripts {__version__} · built {stamp}</p>{header}<nav>{nav}</nav>{body}'
        "</body></html>\n"
    )
