"""Rule guards: conservative static checks that flag a query which runs but is very likely wrong.

A deployed system sees these without any reference answer, like SQLite's errors. Each guard fires only on
patterns that are almost never intended in a Text-to-SQL answer:

- `aggregate_without_group_by`: a SELECT mixes aggregate functions with plain columns and has no GROUP BY
  (SQLite then returns one arbitrary row instead of an error); a column WHERE pins to a literal is fine;
- `join_without_condition`: a table is joined without ON or USING (not NATURAL), and no column-to-column
  comparison in WHERE or in another join's ON names it: a cartesian product.

Subqueries are checked on their own; window functions are not aggregates here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

GUARDS: tuple[str, ...] = ("aggregate_without_group_by", "join_without_condition")


@dataclass(frozen=True)
class GuardSignal:
    """One guard that fired: its name and the sentence a feedback message shows."""

    guard: str
    message: str


_NESTED = (exp.Select, exp.Subquery, exp.Window)


def _in_scope(node: exp.Expression, skip: tuple[type, ...] = _NESTED) -> Iterator[exp.Expression]:
    """`node` and the nodes under it that belong to its own SELECT (skipping `skip` nodes and their trees)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, skip):
            continue
        yield current
        stack.extend(current.iter_expressions())


def _bare_columns(projection: exp.Expression) -> list[str]:
    """Columns of a projection that are outside every aggregate function."""
    nodes = _in_scope(projection, (*_NESTED, exp.AggFunc))
    return [n.sql("sqlite") for n in nodes if isinstance(n, exp.Column)]


def _has_aggregate(projection: exp.Expression) -> bool:
    return any(isinstance(n, exp.AggFunc) for n in _in_scope(projection))


def _constant(node: exp.Expression) -> bool:
    """A literal, or a double-quoted name without table (SQLite reads it as text when no column has it)."""
    if isinstance(node, exp.Literal):
        return True
    return isinstance(node, exp.Column) and not node.table and bool(node.this.args.get("quoted"))


def _fixed_by_where(select: exp.Select) -> set[str]:
    """Columns that WHERE pins to one value (`col = literal` conjuncts), as SQL text."""
    where = select.args.get("where")
    if where is None:
        return set()
    conjuncts = list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this]
    fixed = set()
    for c in conjuncts:
        if isinstance(c, exp.EQ):
            for column, value in ((c.left, c.right), (c.right, c.left)):
                if isinstance(column, exp.Column) and _constant(value):
                    fixed.add(column.sql("sqlite"))
    return fixed


def _aggregate_without_group_by(select: exp.Select) -> GuardSignal | None:
    if select.args.get("group"):
        return None
    projections = [p.unalias() for p in select.expressions]
    if not any(_has_aggregate(p) for p in projections):
        return None
    fixed = _fixed_by_where(select)
    bare = [c for p in projections for c in _bare_columns(p) if c not in fixed]
    if not bare:
        return None
    return GuardSignal(
        "aggregate_without_group_by",
        f"The query mixes aggregate functions with plain columns ({', '.join(dict.fromkeys(bare))}) but has "
        "no GROUP BY, so SQLite returns one arbitrary row. Group by those columns or aggregate them.",
    )


def _column_comparisons(select: exp.Select) -> list[exp.Binary]:
    """Comparisons of a column with another column in WHERE or in any join's ON (they may join tables)."""
    clauses = [select.args.get("where"), *(j.args.get("on") for j in select.args.get("joins") or [])]
    return [
        n
        for clause in clauses
        if clause is not None
        for n in _in_scope(clause)
        if isinstance(n, exp.Binary)
        and not isinstance(n, exp.Connector)
        and isinstance(n.left, exp.Column)
        and isinstance(n.right, exp.Column)
    ]


def _linked(name: str, comparisons: list[exp.Binary]) -> bool:
    """Whether a comparison may link table (or alias) `name`: it names it, or leaves a column unqualified."""
    for comparison in comparisons:
        tables = {comparison.left.table.lower(), comparison.right.table.lower()}
        if name.lower() in tables or "" in tables:
            return True
    return False


def _join_without_condition(select: exp.Select) -> GuardSignal | None:
    comparisons = _column_comparisons(select)
    unconditioned = []
    for join in select.args.get("joins") or []:
        if not isinstance(join.this, exp.Table) or (join.args.get("method") or "").upper() == "NATURAL":
            continue
        on = join.args.get("on")
        if join.args.get("using") or (on is not None and not isinstance(on, exp.Boolean)):
            continue
        if not _linked(join.this.alias_or_name, comparisons):
            unconditioned.append(join.this.alias_or_name)
    if not unconditioned:
        return None
    return GuardSignal(
        "join_without_condition",
        f"Table(s) {', '.join(f'`{t}`' for t in unconditioned)} are joined without an ON or USING condition, "
        "which pairs every row with every row. Add the join condition.",
    )


def rule_guards(sql: str) -> list[GuardSignal]:
    """Return the guards that fire on `sql` (none when it does not parse: SQLite reports that itself)."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError, ValueError):
        return []
    if tree is None:
        return []
    signals: list[GuardSignal] = []
    for select in tree.find_all(exp.Select):
        for check in (_aggregate_without_group_by, _join_without_condition):
            signal = check(select)
            if signal is not None and signal.guard not in {s.guard for s in signals}:
                signals.append(signal)
    return signals
