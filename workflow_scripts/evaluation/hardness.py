"""Spider's hardness levels (easy, medium, hard, extra) of a query, counted over sqlglot's tree.

Spider's evaluation.py (`Evaluator.eval_hardness`) counts three things on its own parse of the gold query and
maps them to a level: component 1 (WHERE, GROUP BY, ORDER BY, LIMIT, each join, each OR and each LIKE),
component 2 (subqueries in conditions, and a set operation) and "others" (more than one aggregation, select
column, WHERE condition or GROUP BY column). This module counts the same things on sqlglot's tree, quirks
included, so that its levels are the labels Spider's script gives: the script's aggregation count reads a
condition's NOT flag where it means an aggregate (a NOT condition in WHERE counts as one) and counts every
AND/OR of HAVING, while an aggregate inside a WHERE or HAVING condition does not count.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

LEVELS = ("easy", "medium", "hard", "extra")
AGGREGATES = (exp.Count, exp.Max, exp.Min, exp.Sum, exp.Avg)


def _conditions(node: exp.Expression | None) -> tuple[list[exp.Expression], int]:
    """The leaf conditions of an AND/OR tree, left to right, and how many of its connectives are OR."""
    if node is None:
        return [], 0
    if isinstance(node, (exp.Where, exp.Having, exp.Paren)):
        return _conditions(node.this)
    if isinstance(node, exp.Connector):
        left, left_ors = _conditions(node.this)
        right, right_ors = _conditions(node.expression)
        return left + right, left_ors + right_ors + isinstance(node, exp.Or)
    return [node], 0


def _negated(condition: exp.Expression) -> bool:
    # sqlglot writes `x NOT IN`, `NOT BETWEEN` as Not(...) and `NOT LIKE` as Like(negate=True)
    return isinstance(condition, exp.Not) or bool(condition.args.get("negate"))


def _is_like(condition: exp.Expression) -> bool:
    inner = condition.this if isinstance(condition, exp.Not) else condition
    return isinstance(inner, (exp.Like, exp.ILike))


def _subqueries(node: exp.Expression) -> int:
    """Queries directly inside `node` (not counting queries nested in those)."""
    if isinstance(node, exp.Query):
        return 1
    return sum(_subqueries(child) for child in node.iter_expressions())


def _starts_with_aggregate(node: exp.Expression) -> bool:
    """Whether an item's leftmost operand is an aggregate (`max(a) - min(a)` counts once, as in Spider)."""
    node = node.unalias()
    while isinstance(node, exp.Binary) and not isinstance(node, exp.Connector):
        node = node.this
    return isinstance(node, AGGREGATES)


def _order_aggregates(node: exp.Expression) -> int:
    """Aggregated operands of one ORDER BY item: Spider's value unit holds at most two column units."""
    node = node.this if isinstance(node, exp.Ordered) else node
    if isinstance(node, exp.Binary):
        return sum(isinstance(side, AGGREGATES) for side in (node.this, node.expression))
    return int(isinstance(node, AGGREGATES))


def hardness_counts(sql: str) -> tuple[int, int, int] | None:
    """(component 1, component 2, others) of `sql` as Spider's evaluation counts them; None if unparsed."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except SqlglotError:
        return None
    main, set_operation = tree, 0
    while isinstance(main, (exp.Subquery, exp.Paren, exp.SetOperation)):
        # the left query of a set operation is Spider's main query; the right side counts as one nested query
        set_operation |= isinstance(main, exp.SetOperation)
        main = main.this
    if not isinstance(main, exp.Select):
        return None
    joins = main.args.get("joins") or []
    tables = int(main.args.get("from_") is not None or main.args.get("from") is not None) + len(joins)
    join_conds, join_ors = [], 0
    for join in joins:
        conds, ors = _conditions(join.args.get("on"))
        join_conds, join_ors = join_conds + conds, join_ors + ors
    where, where_ors = _conditions(main.args.get("where"))
    having, having_ors = _conditions(main.args.get("having"))
    group = main.args["group"].expressions if main.args.get("group") else []
    order = main.args["order"].expressions if main.args.get("order") else []
    conditions = join_conds + where + having

    component1 = (
        bool(where) + bool(group) + bool(order) + (main.args.get("limit") is not None) + max(tables - 1, 0)
    )
    component1 += join_ors + where_ors + having_ors + sum(map(_is_like, conditions))
    component2 = set_operation + sum(_subqueries(c) for c in conditions)
    aggregates = (
        sum(map(_starts_with_aggregate, main.expressions))
        + sum(map(_negated, where))  # Spider's quirk: a WHERE condition's NOT flag read as an aggregate
        + sum(map(_starts_with_aggregate, group))
        + sum(map(_order_aggregates, order))
        + sum(map(_negated, having))
        + max(len(having) - 1, 0)  # Spider's quirk: each AND/OR of HAVING counts as an aggregate
    )
    others = (aggregates > 1) + (len(main.expressions) > 1) + (len(where) > 1) + (len(group) > 1)
    return component1, component2, others


def level(component1: int, component2: int, others: int) -> str:
    """Spider's `eval_hardness` rule on the three counts."""
    if component1 <= 1 and others == 0 and component2 == 0:
        return "easy"
    if component2 == 0 and ((others <= 2 and component1 <= 1) or (component1 <= 2 and others < 2)):
        return "medium"
    if (
        (others > 2 and component1 <= 2 and component2 == 0)
        or (2 < component1 <= 3 and others <= 2 and component2 == 0)
        or (component1 <= 1 and others == 0 and component2 <= 1)
    ):
        return "hard"
    return "extra"


def spider_hardness(sql: str) -> str | None:
    """Spider's hardness of `sql` (easy, medium, hard, extra), or None when sqlglot cannot parse it."""
    counts = hardness_counts(sql)
    return None if counts is None else level(*counts)
