"""``wrong_comparison``: a comparison operator changed (``=`` to ``!=``, ``>`` to ``<`` ...)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from sqlglot import exp

from workflow_scripts.core.schema import Table
from workflow_scripts.pairs.negatives.ast_helpers import FILTER_CLAUSES, OTHER_COMPARISONS, clause, is_column


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
        for node in new.find_all(*OTHER_COMPARISONS)
        if clause(node) in FILTER_CLAUSES
        and not (isinstance(node, exp.EQ) and is_column(node.this) and is_column(node.expression))
    ]
    if not edits:
        return None
    node = rng.choice(edits)
    cls = rng.choice(OTHER_COMPARISONS[type(node)])
    if isinstance(node, exp.Like) and node.args.get("negate"):
        cls = exp.NEQ
    node.replace(cls(this=node.this.copy(), expression=node.expression.copy()))
    return new
