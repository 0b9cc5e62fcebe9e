"""``wrong_order``: ORDER BY direction flipped, or the LIMIT changed."""

from __future__ import annotations

import random
from collections.abc import Sequence

from sqlglot import exp

from workflow_scripts.core.schema import Table


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
