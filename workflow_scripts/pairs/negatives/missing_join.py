"""``missing_join``: one joined table (and its ON condition) left out."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from sqlglot import exp

from workflow_scripts.core.schema import Table
from workflow_scripts.pairs.negatives.ast_helpers import (
    column_of,
    conjuncts,
    container,
    identifier,
    is_within,
    qualify_if_ambiguous,
    remove,
    resolve,
    schema_of,
    sources,
    valid_without_group,
)


def missing_join(tree: exp.Expression, tables: Sequence[Table], rng: random.Random) -> exp.Expression | None:
    """Leave out one table of a join, with its ON condition.

    References to the dropped table's columns move to a remaining table with a same-named column
    (a table of the dropped ON condition first); projections, conjuncts and GROUP BY / ORDER BY
    items that still need it are left out, and join conditions that became ``x = x`` too. None
    when the query has no join of a schema table, or nothing sensible remains (no projection left,
    or a reference that cannot be moved or left out).
    """
    schema = schema_of(tables)
    choices = []
    for index, select in enumerate(tree.find_all(exp.Select)):
        found = sources(select, schema)
        if len(found) > 1:
            choices += [(index, position) for position, s in enumerate(found) if s.table is not None]
    rng.shuffle(choices)
    for index, position in choices:
        new = tree.copy()
        select = next(s for i, s in enumerate(new.find_all(exp.Select)) if i == index)
        if _drop_source(select, position, schema):
            return new
    return None


def _drop_source(select: exp.Select, position: int, schema: Mapping[str, Table]) -> bool:
    """Remove source `position` of `select` in place; False when the result would not make sense."""
    found = sources(select, schema)
    dropped = found[position]
    gone = dropped.alias.lower()
    joins: list[exp.Join] = select.args["joins"]
    dangling = [
        c
        for c in select.find_all(exp.Column)
        if (r := resolve(c, schema)) is not None and r[0] is select and r[1].lower() == gone
    ]
    if position == 0:
        condition = joins[0].args.get("on")
        select.set("from_", exp.From(this=joins[0].this.pop()))
        joins[0].pop()
    else:
        condition = joins[position - 1].args.get("on")
        joins[position - 1].pop()
    remaining = [s for i, s in enumerate(found) if i != position and s.table is not None]
    partners = {c.table.lower() for c in condition.find_all(exp.Column)} if condition else set()
    remaining.sort(key=lambda s: s.alias.lower() not in partners)
    width = len(select.expressions)
    orphans = []
    for column in dangling:
        target = next((s.alias for s in remaining if s.table and column_of(s.table, column.name)), None)
        if target is None:
            orphans.append(column)
        elif column.table:
            column.set("table", identifier(target))
        else:
            qualify_if_ambiguous(column, select, target, schema)
    for column in orphans:
        if not is_within(column, select):
            continue  # left out with an earlier orphan
        part = container(column, select)
        if part is None:
            return False
        remove(part)
    where = select.args.get("where")
    conditions = [join.args.get("on") for join in select.args.get("joins") or ()]
    for conjunct in [c for condition in [*conditions, where and where.this] for c in conjuncts(condition)]:
        if isinstance(conjunct, exp.EQ) and conjunct.this == conjunct.expression:
            remove(conjunct)
    if select.args.get("group") is None and not valid_without_group(select):
        return False
    if isinstance(select.parent, exp.SetOperation) and len(select.expressions) != width:
        return False
    return bool(select.expressions) and not any(
        c.table.lower() == gone and c.find_ancestor(exp.Select) is select for c in select.find_all(exp.Column)
    )
