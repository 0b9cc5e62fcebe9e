"""Schema retrieval for prompts: pick the tables a question needs and render them as CREATE TABLE text.

Modes of `select_tables`:

- ``full``: every table, in schema order.
- ``retrieved``: tables sharing tokens with the question (name, columns, sample values), best `top_k`.
- ``bm25``: the `top_k` best tables by BM25 over the same table documents.
- ``bm25_fk``: ``bm25``, then the tables within `fk_hops` foreign-key hops of those, and any table
  that links two of them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal, get_args

import pandas as pd
import sqlglot
from rank_bm25 import BM25Okapi
from sqlglot import exp

from workflow_scripts.core.cell_values import quote_identifier, read_column_values
from workflow_scripts.core.schema import Column, Table, tables_from_schema
from workflow_scripts.rollout.prompts import shown_evidence

Mode = Literal["full", "retrieved", "bm25", "bm25_fk"]
MODES: tuple[str, ...] = get_args(Mode)

MAX_VALUE_CHARS = 40
VALUE_SCAN_ROWS = 5000
TEXT_TYPES = ("CHAR", "CLOB", "TEXT", "STRING")

_STOPWORD_TEXT = """
    a an the of in on at to for from by with and or not no is are was were be been being do does did
    what which who whom whose how many much when where why that this these those there their its it
    each every all any some than then as into out over under between about per give list show find
    tell me my our your you we i they them he she his her have has had can could would should will
    more most less least number count total average avg sum max min maximum minimum
    distinct different also both only just other another same"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

SIMPLE_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _is_text_type(column_type: str) -> bool:
    # SQLite gives an untyped column BLOB affinity, but Spider's untyped columns mostly hold text.
    upper = column_type.upper()
    return not upper or any(t in upper for t in TEXT_TYPES)


Values = dict[str, dict[str, tuple[str, ...]]]


def sample_values(db_path: Path | str, tables: Sequence[Table], per_column: int = 3) -> Values:
    """Return {table: {column: values}}: up to `per_column` distinct short text values per text column.

    Values come in first-seen row order among the first rows of the table, so the same file always
    gives the same values; columns without such values are left out.
    """
    if per_column <= 0:
        return {}
    columns = {
        (table.name, column.name): (table.name, column.name)
        for table in tables
        for column in table.columns
        if _is_text_type(column.type)
    }
    found = read_column_values(
        db_path, columns, _short_text_query, lambda rows: _first_distinct(rows, per_column)
    )
    out: Values = {}
    for (table, column), values in found.items():
        if values:
            out.setdefault(table, {})[column] = values
    return out


def _short_text_query(table: str, column: str) -> str:
    # The inner LIMIT bounds the scan on large tables; _first_distinct deduplicates in first-seen order.
    return (
        f"SELECT v FROM (SELECT {column} AS v FROM {table} LIMIT {VALUE_SCAN_ROWS}) "
        f"WHERE typeof(v) = 'text' AND length(trim(v)) BETWEEN 1 AND {MAX_VALUE_CHARS}"
    )


def _first_distinct(rows: Iterable[object], limit: int) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in rows:
        value = str(value).strip()
        if "\n" not in value and "\r" not in value:
            seen.setdefault(value, None)
            if len(seen) == limit:
                break
    return tuple(seen)


def with_values(tables: Sequence[Table], values: Values) -> list[Table]:
    """Return the tables with their sample values from `sample_values` attached."""
    return [replace(t, values=dict(values.get(t.name, {}))) for t in tables]


def load_tables(schema: pd.DataFrame, db_id: str, db_path: Path | str, cell_values: int = 0) -> list[Table]:
    """Return the tables of one database, with `cell_values` sample values per text column (0: none)."""
    tables = tables_from_schema(schema, db_id)
    if cell_values <= 0:
        return tables
    return with_values(tables, sample_values(db_path, tables, per_column=cell_values))


# ------------------------------------------------------------------------------------------ tokenizing


def _stem(token: str) -> str:
    # Only enough stemming to match plurals with singular table and column names.
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 4 and token.endswith("ie"):
        return token[:-2] + "y"  # movie/movies -> movy, like country/countries -> country
    if token.endswith(("sses", "xes", "ches", "shes")):
        return token[:-2]
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokenize(text: str) -> list[str]:
    """Return the lowercased, stemmed word tokens of text, splitting snake_case and camelCase."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text)
    return [_stem(t) for t in re.findall(r"[a-z0-9]+", spaced.lower()) if t not in STOPWORDS]


def table_document(table: Table) -> list[str]:
    """Return the tokens that describe a table: its name, column names and sample values."""
    tokens = tokenize(table.name)
    for column in table.columns:
        tokens += tokenize(column.name)
        if column.nl:
            tokens += tokenize(column.nl)
    for values in table.values.values():
        for value in values:
            tokens += tokenize(value)
    return tokens


# ------------------------------------------------------------------------------------------- selecting


def _overlap_scores(question: list[str], tables: Sequence[Table]) -> list[float]:
    wanted = set(question)
    # A question word naming the table counts twice as much as one naming a column or a value.
    return [2.0 * len(wanted & set(tokenize(t.name))) + len(wanted & set(table_document(t))) for t in tables]


class _LuceneIdfBM25(BM25Okapi):
    """BM25Okapi with Lucene's always-positive idf, log(1 + (N - n + 0.5) / (n + 0.5))."""

    # With a handful of tables, Okapi's idf is zero or negative for a word in half the tables or more:
    # with two tables, the word that tells them apart would count for nothing.
    def _calc_idf(self, nd: dict[str, int]) -> None:
        for word, freq in nd.items():
            self.idf[word] = math.log(1.0 + (self.corpus_size - freq + 0.5) / (freq + 0.5))


def _bm25_scores(question: list[str], tables: Sequence[Table]) -> list[float]:
    # BM25Okapi divides by the mean document length, so an all-empty corpus needs no scoring.
    documents = [table_document(t) for t in tables]
    if not question or not any(documents):
        return [0.0] * len(tables)
    return [float(s) for s in _LuceneIdfBM25(documents).get_scores(question)]


def _ranked(scores: Sequence[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def fk_graph(tables: Sequence[Table]) -> dict[int, set[int]]:
    """Return the undirected foreign-key adjacency between the tables (by index), ignoring dangling keys."""
    index = {t.name.lower(): i for i, t in enumerate(tables)}
    graph: dict[int, set[int]] = {i: set() for i in range(len(tables))}
    for i, table in enumerate(tables):
        for column in table.columns:
            j = index.get((column.fk_table or "").lower())
            if j is not None and j != i:
                graph[i].add(j)
                graph[j].add(i)
    return graph


def expand_by_fk(seeds: Collection[int], graph: dict[int, set[int]], hops: int) -> set[int]:
    """Return the seeds, every table within `hops` FK hops of them, and every table linking two seeds."""
    selected, frontier = set(seeds), set(seeds)
    for _ in range(max(hops, 0)):
        frontier = {j for i in frontier for j in graph[i]} - selected
        selected |= frontier
    bridges = {j for j, near in graph.items() if j not in selected and len(near & set(seeds)) >= 2}
    return selected | bridges


def select_tables(
    question: str, tables: Sequence[Table], *, mode: Mode, top_k: int, fk_hops: int = 1
) -> list[str]:
    """Return the names of the tables to show for a question, in schema order (at least one)."""
    if mode not in MODES:
        raise ValueError(f"unknown retrieval mode {mode!r}; expected one of {', '.join(MODES)}")
    if not tables:
        raise ValueError("no tables to select from")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if mode == "full" or top_k >= len(tables):
        return [t.name for t in tables]
    words = tokenize(question)
    if mode == "retrieved":
        scores = _overlap_scores(words, tables)
        chosen = [i for i in _ranked(scores)[:top_k] if scores[i] > 0] or _ranked(scores)[:1]
    else:
        chosen = _ranked(_bm25_scores(words, tables))[:top_k]
        if mode == "bm25_fk":
            chosen = sorted(expand_by_fk(chosen, fk_graph(tables), fk_hops))
    return [tables[i].name for i in sorted(chosen)]


# --------------------------------------------------------------------------------------------- scoring


def retrieval_query(question: str, evidence: str | None) -> str:
    """The text tables are retrieved for: the question, and the evidence the prompt shows with it.

    BIRD's evidence names the columns and values a question means ("refers to `Free Meal Count (K-12)`"),
    which the question's own words often do not.
    """
    return f"{question}\n{evidence}" if evidence else question


def gold_tables(sql: str) -> set[str]:
    """Return the lowercased names of the tables a SQL query reads, subqueries included, CTEs excluded."""
    try:
        statements = sqlglot.parse(sql, read="sqlite")
    except sqlglot.errors.SqlglotError:
        return set()
    names: set[str] = set()
    for statement in statements:
        if statement is None:
            continue
        ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
        names |= {t.name.lower() for t in statement.find_all(exp.Table) if t.name} - ctes
    return names


def table_recall(selected: Iterable[str], gold: Collection[str]) -> float | None:
    """Return the share of gold tables among the selected ones (case-insensitive); None without gold."""
    wanted = {g.lower() for g in gold}
    if not wanted:
        return None
    return len(wanted & {s.lower() for s in selected}) / len(wanted)


# -------------------------------------------------------------------------------------------- rendering


def _identifier(name: str) -> str:
    return name if SIMPLE_IDENTIFIER.fullmatch(name) else quote_identifier(name)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _foreign_key(column: Column, target: str) -> str:
    # A key declared as `REFERENCES t` without a column points at the primary key of t.
    referenced = f"({_identifier(column.fk_column)})" if column.fk_column else ""
    return f"  FOREIGN KEY ({_identifier(column.name)}) REFERENCES {_identifier(target)}{referenced}"


def _create_table(table: Table, shown: dict[str, str], with_values: bool) -> str:
    lines = [f"  {_identifier(c.name)} {c.type}".rstrip() for c in table.columns]
    keys = [_identifier(c.name) for c in table.columns if c.is_primary_key]
    if keys:
        lines.append(f"  PRIMARY KEY ({', '.join(keys)})")
    lines += [
        _foreign_key(c, shown[c.fk_table.lower()])
        for c in table.columns
        if c.fk_table and c.fk_table.lower() in shown
    ]
    text = f"CREATE TABLE {_identifier(table.name)} (\n" + ",\n".join(lines) + "\n);"
    examples = [
        f"{_identifier(c.name)}: {', '.join(_literal(v) for v in table.values[c.name])}"
        for c in table.columns
        if table.values.get(c.name)
    ]
    if with_values and examples:
        text += "\n-- examples: " + "; ".join(examples)
    return text


def schema_prompt(tables: Sequence[Table], *, with_values: bool) -> str:
    """Return CREATE TABLE text for the tables, with foreign keys only to shown tables and optional values."""
    shown = {t.name.lower(): t.name for t in tables}
    return "\n\n".join(_create_table(t, shown, with_values) for t in tables)


def recall_table(
    examples: pd.DataFrame,
    schema: pd.DataFrame,
    *,
    top_k: int,
    fk_hops: int,
    cell_values: int,
    evidence: bool | str = "auto",
) -> pd.DataFrame:
    """Return one row per (mode, example): tables selected, tables in the database, gold-table recall.

    The query is the question plus the evidence its prompt shows under `evidence` (`prompt.evidence`).
    """
    rows = []
    tables_of = {}
    for ex in examples.itertuples(index=False):
        if ex.db_id not in tables_of:
            tables_of[ex.db_id] = load_tables(schema, ex.db_id, ex.db_path, cell_values)
        tables = tables_of[ex.db_id]
        wanted = gold_tables(ex.gold_sql)
        query = retrieval_query(ex.question, shown_evidence(getattr(ex, "evidence", None), evidence))
        for mode in MODES:
            selected = select_tables(query, tables, mode=mode, top_k=top_k, fk_hops=fk_hops)
            rows.append(
                {
                    "mode": mode,
                    "example_id": ex.id,
                    "db_id": ex.db_id,
                    "selected": len(selected),
                    "tables": len(tables),
                    "recall": table_recall(selected, wanted),
                    "all_gold_found": wanted <= {s.lower() for s in selected},
                }
            )
    return pd.DataFrame(rows)
