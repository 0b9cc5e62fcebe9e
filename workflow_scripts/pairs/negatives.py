"""Synthetic hard negatives for preference training: SQL close to the gold SQL, but wrong.

Each perturbation takes the sqlglot AST (sqlite dialect) of a gold query, the tables of its
database and a ``random.Random``, and returns a new tree with one plausible mistake, or None when
the query has no place for that kind of mistake. The input tree is never changed.

- ``wrong_column``: a selected or filtered column swapped for another column of the same table.
- ``missing_join``: one joined table (and its ON condition) left out.
- ``wrong_aggregation``: COUNT/SUM/AVG/MAX/MIN swapped, or GROUP BY dropped or regrouped.
- ``wrong_comparison``: a comparison operator changed (``=`` to ``!=``, ``>`` to ``<`` ...).
- ``wrong_order``: ORDER BY direction flipped, or the LIMIT changed.
- ``missing_distinct``: DISTINCT removed (also ``UNION`` to ``UNION ALL``). Spider's execution match
  deletes DISTINCT from both queries unless ``keep_distinct``, so by default only UNION ALL survives.
- ``wrong_literal``: a literal replaced by another value of the same column, or a number shifted.

:func:`make_negatives` renders and de-duplicates them; :func:`build_synthetic` executes them in the
sandbox and keeps those whose result differs from the gold result.

Length: the seven perturbations share some twenty small private helpers over the AST and the schema
(resolving a column to its table, removing a node with its conjunction, the clause a node sits in); kept in
one module, each perturbation reads next to the helpers it uses and none of them becomes public API.
"""

from __future__ import annotations

import random
import re
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pandas as pd
import sqlglot
from sqlglot import exp
from sqlglot.dialects.sqlite import SQLite
from sqlglot.errors import SqlglotError

from workflow_scripts.core.matching import CORRECT, TRUNCATED, postprocess
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.schema import Column, Table, tables_from_schema
from workflow_scripts.core.scoring import MatchSettings, gold_result

#: Candidate values per (table, column), both lowercased, for ``wrong_literal``.
Values = Mapping[tuple[str, str], Sequence[object]]
Perturbation = Callable[[exp.Expression, Sequence[Table], random.Random], exp.Expression | None]

SYNTHETIC_COLUMNS = [
    "example_id",
    "db_id",
    "question",
    "gold_sql",
    "type",
    "sql",
    "status",
    "error_class",
    "executes",
    "verdict",
    "kept",
]

VALUES_PER_COLUMN = 8
VALUES_TIMEOUT_S = 2.0
ATTEMPTS_PER_NEGATIVE = 4

_SIMPLE_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORDS = frozenset(word.lower() for key in SQLite.Tokenizer.KEYWORDS for word in key.split())
_AGGREGATIONS = (exp.Count, exp.Sum, exp.Avg, exp.Max, exp.Min)
_FILTER_CLAUSES = ("where", "having")


@dataclass(frozen=True)
class Negative:
    """One synthetic negative: its perturbation type and its SQL (rendered by sqlglot, sqlite)."""

    type: str
    sql: str


# ------------------------------------------------------------------------------------------ schema


@dataclass(frozen=True)
class _Source:
    """A FROM / JOIN source of a SELECT: its alias (the table name when unaliased) and its table."""

    alias: str
    table: Table | None  # None for subqueries, CTEs and tables missing from the schema


def _schema(tables: Sequence[Table]) -> dict[str, Table]:
    return {t.name.lower(): t for t in tables}


def _column(table: Table, name: str) -> Column | None:
    lowered = name.lower()
    return next((c for c in table.columns if c.name.lower() == lowered), None)


def affinity(declared_type: str) -> str:
    """SQLite's type affinity of a declared column type (INTEGER, TEXT, BLOB, REAL or NUMERIC)."""
    upper = declared_type.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(t in upper for t in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if not upper or "BLOB" in upper:
        return "BLOB"
    if any(t in upper for t in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _is_numeric(column: Column) -> bool:
    # NUMERIC affinity also covers DATE / BOOLEAN columns, which make poor sums.
    upper = column.type.upper()
    return affinity(upper) in ("INTEGER", "REAL") or any(t in upper for t in ("NUM", "DEC"))


def _identifier(name: str) -> exp.Identifier:
    quoted = not _SIMPLE_IDENTIFIER.fullmatch(name) or name.lower() in _KEYWORDS
    return exp.to_identifier(name, quoted=quoted)


def _sources(select: exp.Select, schema: Mapping[str, Table]) -> list[_Source]:
    """The FROM and JOIN sources of `select`, in order."""
    from_ = select.args.get("from_")
    nodes = [from_.this] if from_ is not None else []
    nodes += [join.this for join in select.args.get("joins") or ()]
    return [
        _Source(node.alias_or_name, schema.get(node.name.lower()) if isinstance(node, exp.Table) else None)
        for node in nodes
    ]


def _resolve(column: exp.Column, schema: Mapping[str, Table]) -> tuple[exp.Select, str, Table] | None:
    """The SELECT whose source `column` reads, that source's alias and its table, if in the schema.

    Unqualified names go to the one source of the innermost SELECT that has such a column, then
    outwards (correlated subqueries); ambiguity or a possible subquery source gives None.
    """
    name, qualifier = column.name.lower(), column.table.lower()
    select = column.find_ancestor(exp.Select)
    while select is not None:
        sources = _sources(select, schema)
        if qualifier:
            source = next((s for s in sources if s.alias.lower() == qualifier), None)
            if source is not None:
                if source.table is None or _column(source.table, name) is None:
                    return None
                return select, source.alias, source.table
        else:
            owners = [s for s in sources if s.table is not None and _column(s.table, name) is not None]
            if len(owners) == 1 and owners[0].table is not None:
                return select, owners[0].alias, owners[0].table
            if owners or any(s.table is None for s in sources):
                return None
        select = select.find_ancestor(exp.Select)
    return None


def _clause(node: exp.Expression) -> str | None:
    """The argument of the innermost enclosing SELECT that holds `node` ("expressions", "where", ...)."""
    while node.parent is not None and not isinstance(node.parent, exp.Select):
        node = node.parent
    return node.arg_key if node.parent is not None else None


def _qualify_if_ambiguous(
    column: exp.Column, select: exp.Select, alias: str, schema: Mapping[str, Table]
) -> None:
    """Qualify an unqualified `column` of source `alias` when another source of `select` may have it."""
    if column.table:
        return
    others = [s for s in _sources(select, schema) if s.alias.lower() != alias.lower()]
    if any(s.table is None or _column(s.table, column.name) is not None for s in others):
        column.set("table", _identifier(alias))


# ---------------------------------------------------------------------------------- tree surgery


def _top_of_conjunction(node: exp.Expression) -> exp.Expression:
    while isinstance(node.parent, exp.And):
        node = node.parent
    return node


def _container(node: exp.Expression, select: exp.Select) -> exp.Expression | None:
    """The smallest part of `select` holding `node` that can be left out whole.

    That is a projection, a top-level conjunct of WHERE, HAVING or a JOIN's ON, or a GROUP BY or
    ORDER BY item; None when `node` sits elsewhere (FROM, LIMIT ...).
    """
    while node.parent is not None and node is not select:
        parent = node.parent
        if parent is select:
            return node if node.arg_key == "expressions" else None
        if isinstance(parent, exp.Where | exp.Having | exp.Group | exp.Order) and parent.parent is select:
            return node
        if isinstance(parent, exp.Join) and node.arg_key == "on" and parent.parent is select:
            return node
        if isinstance(parent, exp.And):
            top = _top_of_conjunction(parent)
            holder = top.parent
            if (isinstance(holder, exp.Where | exp.Having) and holder.parent is select) or (
                isinstance(holder, exp.Join) and top.arg_key == "on" and holder.parent is select
            ):
                return node
        node = parent
    return None


def _remove(node: exp.Expression) -> None:
    """Detach a part found by :func:`_container`, keeping the rest of its clause valid."""
    parent = node.parent
    if isinstance(parent, exp.And):
        parent.replace(parent.expression if node.arg_key == "this" else parent.this)
    elif isinstance(parent, exp.Where | exp.Having):
        parent.pop()
    elif isinstance(parent, exp.Join):
        parent.set("on", None)
    else:
        node.pop()
        if isinstance(parent, exp.Group | exp.Order) and not parent.expressions:
            parent.pop()


def _is_within(node: exp.Expression, ancestor: exp.Expression) -> bool:
    while node is not None:
        if node is ancestor:
            return True
        node = node.parent
    return False


def _aggregates(select: exp.Select, arg: str) -> bool:
    """Whether argument `arg` of `select` holds an aggregate of `select` itself (not of a subquery)."""
    value = select.args.get(arg)
    nodes = value if isinstance(value, list) else [value] if value is not None else []
    return any(
        agg.find_ancestor(exp.Select) is select for node in nodes for agg in node.find_all(exp.AggFunc)
    )


def _valid_without_group(select: exp.Select) -> bool:
    """Whether SQLite accepts `select` without GROUP BY.

    Only aggregates among the projections make it an aggregate query; otherwise SQLite refuses a
    HAVING clause and aggregates in ORDER BY.
    """
    if _aggregates(select, "expressions"):
        return True
    return select.args.get("having") is None and not _aggregates(select, "order")


def _conjuncts(condition: exp.Expression | None) -> list[exp.Expression]:
    return list(condition.flatten()) if isinstance(condition, exp.And) else [condition] if condition else []


# ------------------------------------------------------------------------------------ perturbations


def wrong_column(tree: exp.Expression, tables: Sequence[Table], rng: random.Random) -> exp.Expression | None:
    """Swap one selected or filtered column for another column of the same table.

    The column's table is resolved through aliases and FROM; a column of the same type affinity is
    preferred, and the qualifier is kept. None when no such column resolves to a schema table with
    a second column.
    """
    schema = _schema(tables)
    new = tree.copy()
    edits = []
    for column in new.find_all(exp.Column):
        if _clause(column) not in ("expressions", *_FILTER_CLAUSES):
            continue
        resolved = _resolve(column, schema)
        if resolved is None:
            continue
        select, alias, table = resolved
        current = _column(table, column.name)
        others = [c for c in table.columns if c.name.lower() != column.name.lower()]
        if current is None or not others:
            continue
        alike = [c for c in others if affinity(c.type) == affinity(current.type)]
        edits.append((column, select, alias, alike or others))
    if not edits:
        return None
    column, select, alias, pool = rng.choice(edits)
    column.set("this", _identifier(rng.choice(pool).name))
    _qualify_if_ambiguous(column, select, alias, schema)
    return new


def missing_join(tree: exp.Expression, tables: Sequence[Table], rng: random.Random) -> exp.Expression | None:
    """Leave out one table of a join, with its ON condition.

    References to the dropped table's columns move to a remaining table with a same-named column
    (a table of the dropped ON condition first); projections, conjuncts and GROUP BY / ORDER BY
    items that still need it are left out, and join conditions that became ``x = x`` too. None
    when the query has no join of a schema table, or nothing sensible remains (no projection left,
    or a reference that cannot be moved or left out).
    """
    schema = _schema(tables)
    choices = []
    for index, select in enumerate(tree.find_all(exp.Select)):
        sources = _sources(select, schema)
        if len(sources) > 1:
            choices += [(index, position) for position, s in enumerate(sources) if s.table is not None]
    rng.shuffle(choices)
    for index, position in choices:
        new = tree.copy()
        select = next(s for i, s in enumerate(new.find_all(exp.Select)) if i == index)
        if _drop_source(select, position, schema):
            return new
    return None


def _drop_source(select: exp.Select, position: int, schema: Mapping[str, Table]) -> bool:
    """Remove source `position` of `select` in place; False when the result would not make sense."""
    sources = _sources(select, schema)
    dropped = sources[position]
    gone = dropped.alias.lower()
    joins: list[exp.Join] = select.args["joins"]
    dangling = [
        c
        for c in select.find_all(exp.Column)
        if (r := _resolve(c, schema)) is not None and r[0] is select and r[1].lower() == gone
    ]
    if position == 0:
        condition = joins[0].args.get("on")
        select.set("from_", exp.From(this=joins[0].this.pop()))
        joins[0].pop()
    else:
        condition = joins[position - 1].args.get("on")
        joins[position - 1].pop()
    remaining = [s for i, s in enumerate(sources) if i != position and s.table is not None]
    partners = {c.table.lower() for c in condition.find_all(exp.Column)} if condition else set()
    remaining.sort(key=lambda s: s.alias.lower() not in partners)
    width = len(select.expressions)
    orphans = []
    for column in dangling:
        target = next((s.alias for s in remaining if s.table and _column(s.table, column.name)), None)
        if target is None:
            orphans.append(column)
        elif column.table:
            column.set("table", _identifier(target))
        else:
            _qualify_if_ambiguous(column, select, target, schema)
    for column in orphans:
        if not _is_within(column, select):
            continue  # left out with an earlier orphan
        part = _container(column, select)
        if part is None:
            return False
        _remove(part)
    where = select.args.get("where")
    conditions = [join.args.get("on") for join in select.args.get("joins") or ()]
    for conjunct in [c for condition in [*conditions, where and where.this] for c in _conjuncts(condition)]:
        if isinstance(conjunct, exp.EQ) and conjunct.this == conjunct.expression:
            _remove(conjunct)
    if select.args.get("group") is None and not _valid_without_group(select):
        return False
    if isinstance(select.parent, exp.SetOperation) and len(select.expressions) != width:
        return False
    return bool(select.expressions) and not any(
        c.table.lower() == gone and c.find_ancestor(exp.Select) is select for c in select.find_all(exp.Column)
    )


def wrong_aggregation(
    tree: exp.Expression, tables: Sequence[Table], rng: random.Random
) -> exp.Expression | None:
    """Swap one aggregate function for another, or drop GROUP BY, or group by another column.

    MAX <-> MIN, AVG -> SUM/MAX/MIN, SUM -> AVG/COUNT, COUNT(col) -> SUM/MAX, COUNT(DISTINCT col) ->
    COUNT/SUM/MAX of it, COUNT(*) -> SUM of a numeric column of the query's tables (COUNT(DISTINCT col)
    when there is none). A regrouped column comes from the same table. None without aggregates.
    """
    schema = _schema(tables)
    new = tree.copy()
    edits: list[tuple[exp.Expression, list[exp.Expression]]] = []
    for node in new.find_all(*_AGGREGATIONS):
        replacements = _other_aggregations(node, schema)
        if replacements:
            edits.append((node, replacements))
    for select in new.find_all(exp.Select):
        group = select.args.get("group")
        if group is None:
            continue
        if _valid_without_group(select):
            edits.append((group, [None]))
        for column in group.expressions:
            resolved = _resolve(column, schema) if isinstance(column, exp.Column) else None
            if resolved is not None:
                _, alias, table = resolved
                others = [c for c in table.columns if c.name.lower() != column.name.lower()]
                renamed = [_renamed(column, c.name, select, alias, schema) for c in others]
                edits += [(column, renamed)] if renamed else []
    if not edits:
        return None
    node, replacements = rng.choice(edits)
    replacement = rng.choice(replacements)
    if replacement is None:
        node.pop()
    else:
        node.replace(replacement)
    return new


def _renamed(
    column: exp.Column, name: str, select: exp.Select, alias: str, schema: Mapping[str, Table]
) -> exp.Column:
    """A copy of `column` (of source `alias` in `select`) naming column `name` instead."""
    renamed = column.copy()
    renamed.set("this", _identifier(name))
    _qualify_if_ambiguous(renamed, select, alias, schema)
    return renamed


def _other_aggregations(node: exp.Expression, schema: Mapping[str, Table]) -> list[exp.Expression]:
    arg = node.this
    if node.expressions or (arg is None and not isinstance(node, exp.Count)):  # MAX(a, b) is scalar
        return []
    if isinstance(node, exp.Count):
        if isinstance(arg, exp.Star) or arg is None:
            return _instead_of_count_star(node, schema)
        if isinstance(arg, exp.Distinct):
            inner = arg.expressions[0] if len(arg.expressions) == 1 else None
            # COUNT(x) only differs from the gold when DISTINCT is kept at matching
            return [cls(this=inner.copy()) for cls in (exp.Count, exp.Sum, exp.Max)] if inner else []
        return [exp.Sum(this=arg.copy()), exp.Max(this=arg.copy())]
    others = {
        exp.Max: (exp.Min, exp.Avg),
        exp.Min: (exp.Max, exp.Avg),
        exp.Avg: (exp.Sum, exp.Max, exp.Min),
        exp.Sum: (exp.Avg, exp.Count),
    }[type(node)]
    return [cls(this=arg.copy()) for cls in others]


def _instead_of_count_star(node: exp.Expression, schema: Mapping[str, Table]) -> list[exp.Expression]:
    select = node.find_ancestor(exp.Select)
    if select is None:
        return []
    sources = [s for s in _sources(select, schema) if s.table is not None]
    qualify = len(_sources(select, schema)) > 1
    columns = [(s, c) for s in sources for c in s.table.columns]
    numeric = [(s, c) for s, c in columns if _is_numeric(c)]
    plain = [(s, c) for s, c in numeric if not c.is_primary_key and not c.fk_table]

    def ref(source: _Source, column: Column) -> exp.Column:
        return exp.Column(this=_identifier(column.name), table=_identifier(source.alias) if qualify else None)

    if numeric:
        return [exp.Sum(this=ref(s, c)) for s, c in plain or numeric]
    return [exp.Count(this=exp.Distinct(expressions=[ref(s, c)])) for s, c in columns]


_OTHER_COMPARISONS: dict[type[exp.Expression], tuple[type[exp.Expression], ...]] = {
    exp.EQ: (exp.NEQ,),
    exp.NEQ: (exp.EQ,),
    exp.GT: (exp.LT, exp.GTE),
    exp.LT: (exp.GT, exp.LTE),
    exp.GTE: (exp.LTE, exp.GT),
    exp.LTE: (exp.GTE, exp.LT),
    exp.Like: (exp.EQ,),
}


def wrong_comparison(
    tree: exp.Expression, tables: Sequence[Table], rng: random.Random
) -> exp.Expression | None:
    """Change one comparison in a WHERE or HAVING condition.

    ``=`` <-> ``!=``, ``>`` -> ``<`` or ``>=``, ``<`` -> ``>`` or ``<=``, ``>=`` -> ``<=`` or ``>``,
    ``<=`` -> ``>=`` or ``<``, LIKE -> ``=`` (NOT LIKE -> ``!=``). Join conditions, ``col = col``
    included, are left alone: negating them makes cross products, not hard negatives. None
    without such a comparison.
    """
    new = tree.copy()
    edits = [
        node
        for node in new.find_all(*_OTHER_COMPARISONS)
        if _clause(node) in _FILTER_CLAUSES
        and not (isinstance(node, exp.EQ) and _is_column(node.this) and _is_column(node.expression))
    ]
    if not edits:
        return None
    node = rng.choice(edits)
    cls = rng.choice(_OTHER_COMPARISONS[type(node)])
    if isinstance(node, exp.Like) and node.args.get("negate"):
        cls = exp.NEQ
    node.replace(cls(this=node.this.copy(), expression=node.expression.copy()))
    return new


def _is_column(node: exp.Expression) -> bool:
    # A double-quoted Spider string ("France") parses as a quoted column: that one is a value.
    return isinstance(node, exp.Column) and not (node.this.args.get("quoted") and not node.table)


def _is_string(node: exp.Expression, schema: Mapping[str, Table]) -> bool:
    """A double-quoted name that names no column in reach, which SQLite reads as a string."""
    return isinstance(node, exp.Column) and not _is_column(node) and _resolve(node, schema) is None


def wrong_order(tree: exp.Expression, tables: Sequence[Table], rng: random.Random) -> exp.Expression | None:
    """Flip the direction of every ORDER BY key of one query, or change its LIMIT (1 -> 3, n -> n + 1).

    None without ORDER BY or an integer LIMIT.
    """
    new = tree.copy()
    edits: list[exp.Expression] = []
    for query in new.find_all(exp.Query):
        order, limit = query.args.get("order"), query.args.get("limit")
        if order is not None and order.expressions:
            edits.append(order)
        if limit is not None and _integer(limit.expression) is not None:
            edits.append(limit)
    if not edits:
        return None
    node = rng.choice(edits)
    if isinstance(node, exp.Order):
        for ordered in node.expressions:
            desc = not ordered.args.get("desc")
            # SQLite sorts NULLs first ascending and last descending: keep that default implicit.
            ordered.set("desc", desc)
            ordered.set("nulls_first", not desc)
    else:
        n = _integer(node.expression)
        node.set("expression", exp.Literal.number(3 if n == 1 else n + 1))
    return new


def _integer(node: exp.Expression | None) -> int | None:
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return int(node.this)
        except ValueError:
            return None
    return None


def missing_distinct(
    tree: exp.Expression, tables: Sequence[Table], rng: random.Random
) -> exp.Expression | None:
    """Remove one DISTINCT: ``SELECT DISTINCT``, ``agg(DISTINCT x)``, or UNION -> UNION ALL.

    Spider's execution match deletes every DISTINCT keyword from both queries before running them
    (unless ``keep_distinct``), so the first two kinds match the gold there and are dropped by
    :func:`build_synthetic`; only UNION -> UNION ALL survives by default. None without DISTINCT.
    """
    new = tree.copy()
    edits: list[exp.Expression] = [s for s in new.find_all(exp.Select) if s.args.get("distinct")]
    edits += [
        d for d in new.find_all(exp.Distinct) if isinstance(d.parent, exp.AggFunc) and len(d.expressions) == 1
    ]
    edits += [u for u in new.find_all(exp.Union) if u.args.get("distinct")]
    if not edits:
        return None
    node = rng.choice(edits)
    if isinstance(node, exp.Select):
        node.set("distinct", None)
    elif isinstance(node, exp.Union):
        node.set("distinct", False)
    else:
        node.replace(node.expressions[0].copy())
    return new


def wrong_literal(
    tree: exp.Expression, tables: Sequence[Table], rng: random.Random, values: Values | None = None
) -> exp.Expression | None:
    """Replace one value of a WHERE or HAVING condition.

    The new value is another value of the compared column taken from `values` (keyed by lowercased
    (table, column); see :func:`literal_columns` and :func:`column_values`), or, for a number, the
    number plus or minus one. LIKE patterns keep their ``%`` ends. None without such a value.
    """
    schema = _schema(tables)
    values = values or {}
    new = tree.copy()
    edits = []
    for node, key in _compared_values(new, schema):
        pool = [v for v in values.get(key, ()) if _is_new_value(v, node)] if key else []
        if pool:
            edits.append((node, pool))
        if _number(node) is not None:
            # Decimal keeps the literal's digits: 37.4 - 1 is 36.4, not 36.400000000000006
            number = Decimal(node.this)
            edits.append((node, [number - 1, number + 1]))
    if not edits:
        return None
    node, pool = rng.choice(edits)
    node.replace(_literal(rng.choice(pool), like=node if isinstance(node.parent, exp.Like) else None))
    return new


def literal_columns(tree: exp.Expression, tables: Sequence[Table]) -> set[tuple[str, str]]:
    """The lowercased (table, column) pairs whose values :func:`wrong_literal` may use for `tree`."""
    return {key for _, key in _compared_values(tree, _schema(tables)) if key is not None}


def _compared_values(
    tree: exp.Expression, schema: Mapping[str, Table]
) -> Iterable[tuple[exp.Expression, tuple[str, str] | None]]:
    """Values compared with something in WHERE / HAVING, each with its column's (table, column)."""
    for node in tree.find_all(exp.Literal, exp.Column):
        if isinstance(node, exp.Column) and not _is_string(node, schema):
            continue
        parent = node.parent
        listed = isinstance(parent, exp.In) and node.arg_key == "expressions"
        bound = isinstance(parent, exp.Between) and node.arg_key in ("low", "high")
        if isinstance(parent, exp.Binary) and type(parent) in _OTHER_COMPARISONS:
            other = parent.this if node.arg_key == "expression" else parent.expression
        elif listed or bound:
            other = parent.this
        else:
            continue
        if _clause(node) not in _FILTER_CLAUSES:
            continue
        key = None
        is_column = isinstance(other, exp.Column) and not _is_string(other, schema)
        if is_column and (resolved := _resolve(other, schema)) is not None:
            key = (resolved[2].name.lower(), other.name.lower())
        yield node, key


def _text(node: exp.Expression) -> str:
    return node.name if isinstance(node, exp.Column) else node.this


def _number(node: exp.Expression) -> int | float | None:
    if not isinstance(node, exp.Literal) or node.is_string:
        return None
    try:
        return int(node.this)
    except ValueError:
        try:
            return float(node.this)
        except ValueError:
            return None


def _is_new_value(value: object, node: exp.Expression) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str) or value == "":
        return False
    old = _number(node)
    if old is not None and not isinstance(value, str):
        return value != old
    new, text = str(value).strip(), _text(node).strip("%").strip()
    # LIKE ignores ASCII case
    return new.lower() != text.lower() if isinstance(node.parent, exp.Like) else new != text


def _literal(value: object, like: exp.Expression | None = None) -> exp.Literal:
    if isinstance(value, str):
        if like is not None:
            old = _text(like)
            value = ("%" if old.startswith("%") else "") + value + ("%" if old.endswith("%") else "")
        return exp.Literal.string(value)
    return exp.Literal.number(value)


NEGATIVE_TYPES: dict[str, Perturbation] = {
    "wrong_column": wrong_column,
    "missing_join": missing_join,
    "wrong_aggregation": wrong_aggregation,
    "wrong_comparison": wrong_comparison,
    "wrong_order": wrong_order,
    "missing_distinct": missing_distinct,
    "wrong_literal": wrong_literal,
}


# ------------------------------------------------------------------------------------------ making


def parse(sql: str) -> exp.Query | None:
    """The sqlglot tree (sqlite dialect) of one query, after Spider's operator fix-up; None if unparseable."""
    try:
        statements = sqlglot.parse(postprocess(sql), read="sqlite")
    except SqlglotError:
        return None
    statements = [s for s in statements if s is not None]
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        return None
    return statements[0]


def render(tree: exp.Expression) -> str:
    """SQL text of a tree, in the sqlite dialect."""
    return tree.sql(dialect="sqlite")


def make_negatives(
    gold_sql: str,
    tables: Sequence[Table],
    *,
    types: Sequence[str],
    seed: int,
    per_type: int = 1,
    values: Values | None = None,
) -> list[Negative]:
    """Up to `per_type` distinct negatives of each type for one gold query, in `types` order.

    Deterministic for a seed (each type draws from ``Random(f"{seed}:{type}:{gold_sql}")``); none
    equals the gold SQL or another negative once rendered; an unparseable gold SQL gives [].
    `values` feeds ``wrong_literal``.
    """
    unknown = [t for t in types if t not in NEGATIVE_TYPES]
    if unknown:
        raise ValueError(f"unknown negative types {unknown}; known: {', '.join(NEGATIVE_TYPES)}")
    tree = parse(gold_sql)
    if tree is None:
        return []
    return _make(tree, gold_sql, tables, types, seed, per_type, values)


def _make(
    tree: exp.Expression,
    gold_sql: str,
    tables: Sequence[Table],
    types: Sequence[str],
    seed: int,
    per_type: int,
    values: Values | None,
) -> list[Negative]:
    seen = {render(tree), " ".join(postprocess(gold_sql).split()).rstrip(";")}
    out = []
    for name in types:
        rng = random.Random(f"{seed}:{name}:{gold_sql}")
        made = 0
        for _ in range(per_type * ATTEMPTS_PER_NEGATIVE):
            if name == "wrong_literal":
                new = wrong_literal(tree, tables, rng, values)
            else:
                new = NEGATIVE_TYPES[name](tree, tables, rng)
            if new is None:
                break  # not applicable: every perturbation is, or is not, whatever the draw
            sql = render(new)
            if sql in seen:
                continue
            seen.add(sql)
            out.append(Negative(name, sql))
            made += 1
            if made == per_type:
                break
    return out


def column_values(
    db_path: str | Path,
    columns: Collection[tuple[str, str]],
    tables: Sequence[Table],
    per_column: int = VALUES_PER_COLUMN,
) -> dict[tuple[str, str], list[object]]:
    """Up to `per_column` distinct non-NULL values of each lowercased (table, column), read-only.

    Columns missing from `tables` are skipped; a query that fails or runs past a short time limit
    gives no values for its column.
    """
    schema = _schema(tables)
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
    out: dict[tuple[str, str], list[object]] = {}
    try:
        for table_name, column_name in sorted(columns):
            table = schema.get(table_name)
            column = _column(table, column_name) if table is not None else None
            if column is None:
                continue
            quoted_column = '"' + column.name.replace('"', '""') + '"'
            quoted_table = '"' + table.name.replace('"', '""') + '"'
            query = (
                f"SELECT DISTINCT {quoted_column} FROM {quoted_table} "
                f"WHERE {quoted_column} IS NOT NULL LIMIT {int(per_column)}"
            )
            deadline = time.monotonic() + VALUES_TIMEOUT_S
            conn.set_progress_handler(lambda d=deadline: time.monotonic() > d, 10_000)
            try:
                out[(table_name, column_name)] = [row[0] for row in conn.execute(query)]
            except sqlite3.Error:
                continue
    finally:
        conn.close()
    return out


def build_synthetic(
    examples: pd.DataFrame,
    gold: pd.DataFrame,
    schema: pd.DataFrame,
    sandbox: Sandbox,
    match: MatchSettings,
    *,
    types: Sequence[str],
    per_type: int,
    seed: int,
    progress: bool = False,
) -> pd.DataFrame:
    """Make, execute and judge the negatives of every example with a cached gold result.

    All negatives run in one ``execute_many`` call, prepared by `match`. ``kept`` is true when the
    verdict against the gold result is neither ``correct`` nor ``truncated`` (undecidable); a
    negative that fails to execute is kept (``executes`` false): it is a real mistake too.
    """
    merged = examples.merge(gold, on="id", how="inner", validate="one_to_one")
    tables_by_db: dict[str, list[Table]] = {}
    value_cache: dict[tuple[str, str, str], list[object]] = {}
    made: list[tuple[dict, Negative]] = []
    for row in merged.to_dict("records"):
        tree = parse(row["gold_sql"])
        if tree is None:
            continue
        if row["db_id"] not in tables_by_db:
            tables_by_db[row["db_id"]] = tables_from_schema(schema, row["db_id"])
        tables = tables_by_db[row["db_id"]]
        values = None
        if "wrong_literal" in types:
            values = _cached_values(row["db_path"], literal_columns(tree, tables), tables, value_cache)
        for negative in _make(tree, row["gold_sql"], tables, types, seed, per_type, values):
            made.append((row, negative))
    jobs = [(row["db_path"], match.prepare(negative.sql)) for row, negative in made]
    results = sandbox.execute_many(jobs, progress="synthetic negatives" if progress else False)
    out = []
    for (row, negative), result in zip(made, results, strict=True):
        v = match.verdict(gold_result(row), result, order_matters=bool(row["order_matters"]))
        out.append(
            {
                "example_id": row["id"],
                "db_id": row["db_id"],
                "question": row["question"],
                "gold_sql": row["gold_sql"],
                "type": negative.type,
                "sql": negative.sql,
                "status": result.status,
                "error_class": result.error_class,
                "executes": result.status == "ok",
                "verdict": v,
                "kept": v not in (CORRECT, TRUNCATED),
            }
        )
    return pd.DataFrame(out, columns=SYNTHETIC_COLUMNS)


def _cached_values(
    db_path: str,
    columns: set[tuple[str, str]],
    tables: Sequence[Table],
    cache: dict[tuple[str, str, str], list[object]],
) -> dict[tuple[str, str], list[object]]:
    missing = {c for c in columns if (db_path, *c) not in cache}
    if missing:
        fetched = column_values(db_path, missing, tables)
        for key in missing:
            cache[(db_path, *key)] = fetched.get(key, [])
    return {c: cache[(db_path, *c)] for c in columns}
