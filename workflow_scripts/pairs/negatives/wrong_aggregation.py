"""``wrong_aggregation``: COUNT/SUM/AVG/MAX/MIN swapped, or GROUP BY dropped or regrouped."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from sqlglot import exp

from workflow_scripts.core.schema import Column, Table
from workflow_scripts.pairs.negatives.ast_helpers import (
    Source,
    identifier,
    is_numeric,
    qualify_if_ambiguous,
    resolve,
    schema_of,
    sources,
    valid_without_group,
)

_AGGREGATIONS = (exp.Count, exp.Sum, exp.Avg, exp.Max, exp.Min)


def wrong_aggregation(
    tree: exp.Expression, tables: Sequence[Table], rng: random.Random
) -> exp.Expression | None:
    """Swap one aggregate function for another, or drop GROUP BY, or group by another column.

    MAX <-> MIN, AVG -> SUM/MAX/MIN, SUM -> AVG/COUNT, COUNT(col) -> SUM/MAX, COUNT(DISTINCT col) ->
    COUNT/SUM/MAX of it, COUNT(*) -> SUM of a numeric column of the query's tables (COUNT(DISTINCT col)
    when there is none). A regrouped column comes from the same table. None without aggregates.
    """
    schema = schema_of(tables)
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
        if valid_without_group(select):
            edits.append((group, [None]))
        for column in group.expressions:
            resolved = resolve(column, schema) if isinstance(column, exp.Column) else None
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
    renamed.set("this", identifier(name))
    qualify_if_ambiguous(renamed, select, alias, schema)
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
    found = [s for s in sources(select, schema) if s.table is not None]
    qualify = len(sources(select, schema)) > 1
    columns = [(s, c) for s in found for c in s.table.columns]
    numeric = [(s, c) for s, c in columns if is_numeric(c)]
    plain = [(s, c) for s, c in numeric if not c.is_primary_key and not c.fk_table]

    def ref(source: Source, column: Column) -> exp.Column:
        return exp.Column(this=identifier(column.name), table=identifier(source.alias) if qualify else None)

    if numeric:
        return [exp.Sum(this=ref(s, c)) for s, c in plain or numeric]
    return [exp.Count(this=exp.Distinct(expressions=[ref(s, c)])) for s, c in columns]
