"""What the perturbations share: resolving columns against the schema, and cutting parts out of a tree.

Every perturbation module reads a gold query's sqlglot tree (sqlite dialect) through these helpers: the
FROM / JOIN sources of a SELECT, the table a column reads (through aliases, and outwards for correlated
subqueries), the clause a node sits in, and the removal of a projection, conjunct or GROUP BY / ORDER BY
item that keeps the rest of its clause valid. They are the package's own: the public names are re-exported
by ``workflow_scripts.pairs.negatives``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.sqlite import SQLite

from workflow_scripts.core.schema import Column, Table

FILTER_CLAUSES = ("where", "having")
#: Each comparison operator with the operators ``wrong_comparison`` may put in its place; its keys are the
#: comparisons whose values ``wrong_literal`` may change.
OTHER_COMPARISONS: dict[type[exp.Expression], tuple[type[exp.Expression], ...]] = {
    exp.EQ: (exp.NEQ,),
    exp.NEQ: (exp.EQ,),
    exp.GT: (exp.LT, exp.GTE),
    exp.LT: (exp.GT, exp.LTE),
    exp.GTE: (exp.LTE, exp.GT),
    exp.LTE: (exp.GTE, exp.LT),
    exp.Like: (exp.EQ,),
}

_SIMPLE_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORDS = frozenset(word.lower() for key in SQLite.Tokenizer.KEYWORDS for word in key.split())


# ------------------------------------------------------------------------------------------ schema


@dataclass(frozen=True)
class Source:
    """A FROM / JOIN source of a SELECT: its alias (the table name when unaliased) and its table."""

    alias: str
    table: Table | None  # None for subqueries, CTEs and tables missing from the schema


def schema_of(tables: Sequence[Table]) -> dict[str, Table]:
    """The tables by lowercased name."""
    return {t.name.lower(): t for t in tables}


def column_of(table: Table, name: str) -> Column | None:
    """The column `name` of `table`, compared case-insensitively."""
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


def is_numeric(column: Column) -> bool:
    """Whether `column` holds numbers worth summing: INTEGER or REAL affinity, or a NUM or DEC type."""
    # NUMERIC affinity also covers DATE / BOOLEAN columns, which make poor sums.
    upper = column.type.upper()
    return affinity(upper) in ("INTEGER", "REAL") or any(t in upper for t in ("NUM", "DEC"))


def identifier(name: str) -> exp.Identifier:
    """An identifier for `name`, quoted when SQLite needs it (not a simple name, or a keyword)."""
    quoted = not _SIMPLE_IDENTIFIER.fullmatch(name) or name.lower() in _KEYWORDS
    return exp.to_identifier(name, quoted=quoted)


def sources(select: exp.Select, schema: Mapping[str, Table]) -> list[Source]:
    """The FROM and JOIN sources of `select`, in order."""
    from_ = select.args.get("from_")
    nodes = [from_.this] if from_ is not None else []
    nodes += [join.this for join in select.args.get("joins") or ()]
    return [
        Source(node.alias_or_name, schema.get(node.name.lower()) if isinstance(node, exp.Table) else None)
        for node in nodes
    ]


def resolve(column: exp.Column, schema: Mapping[str, Table]) -> tuple[exp.Select, str, Table] | None:
    """The SELECT whose source `column` reads, that source's alias and its table, if in the schema.

    Unqualified names go to the one source of the innermost SELECT that has such a column, then
    outwards (correlated subqueries); ambiguity or a possible subquery source gives None.
    """
    name, qualifier = column.name.lower(), column.table.lower()
    select = column.find_ancestor(exp.Select)
    while select is not None:
        found = sources(select, schema)
        if qualifier:
            source = next((s for s in found if s.alias.lower() == qualifier), None)
            if source is not None:
                if source.table is None or column_of(source.table, name) is None:
                    return None
                return select, source.alias, source.table
        else:
            owners = [s for s in found if s.table is not None and column_of(s.table, name) is not None]
            if len(owners) == 1 and owners[0].table is not None:
                return select, owners[0].alias, owners[0].table
            if owners or any(s.table is None for s in found):
                return None
        select = select.find_ancestor(exp.Select)
    return None


def clause(node: exp.Expression) -> str | None:
    """The argument of the innermost enclosing SELECT that holds `node` ("expressions", "where", ...)."""
    while node.parent is not None and not isinstance(node.parent, exp.Select):
        node = node.parent
    return node.arg_key if node.parent is not None else None


def qualify_if_ambiguous(
    column: exp.Column, select: exp.Select, alias: str, schema: Mapping[str, Table]
) -> None:
    """Qualify an unqualified `column` of source `alias` when another source of `select` may have it."""
    if column.table:
        return
    others = [s for s in sources(select, schema) if s.alias.lower() != alias.lower()]
    if any(s.table is None or column_of(s.table, column.name) is not None for s in others):
        column.set("table", identifier(alias))


def is_column(node: exp.Expression) -> bool:
    """Whether `node` is a column reference, not a double-quoted string."""
    # A double-quoted Spider string ("France") parses as a quoted column: that one is a value.
    return isinstance(node, exp.Column) and not (node.this.args.get("quoted") and not node.table)


def is_string(node: exp.Expression, schema: Mapping[str, Table]) -> bool:
    """A double-quoted name that names no column in reach, which SQLite reads as a string."""
    return isinstance(node, exp.Column) and not is_column(node) and resolve(node, schema) is None


# ---------------------------------------------------------------------------------- tree surgery


def _top_of_conjunction(node: exp.Expression) -> exp.Expression:
    while isinstance(node.parent, exp.And):
        node = node.parent
    return node


def container(node: exp.Expression, select: exp.Select) -> exp.Expression | None:
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


def remove(node: exp.Expression) -> None:
    """Detach a part found by :func:`container`, keeping the rest of its clause valid."""
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


def is_within(node: exp.Expression, ancestor: exp.Expression) -> bool:
    """Whether `node` is `ancestor` or sits below it."""
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


def valid_without_group(select: exp.Select) -> bool:
    """Whether SQLite accepts `select` without GROUP BY.

    Only aggregates among the projections make it an aggregate query; otherwise SQLite refuses a
    HAVING clause and aggregates in ORDER BY.
    """
    if _aggregates(select, "expressions"):
        return True
    return select.args.get("having") is None and not _aggregates(select, "order")


def conjuncts(condition: exp.Expression | None) -> list[exp.Expression]:
    """The top-level conjuncts of `condition` (none for None)."""
    return list(condition.flatten()) if isinstance(condition, exp.And) else [condition] if condition else []
