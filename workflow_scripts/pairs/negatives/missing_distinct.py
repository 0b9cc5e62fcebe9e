"""``missing_distinct``: DISTINCT removed (also ``UNION`` to ``UNION ALL``).

Spider's execution match deletes DISTINCT from both queries unless ``keep_distinct``, so by default only
UNION ALL survives.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from sqlglot import exp

from workflow_scripts.core.schema import Table


def missing_distinct(
    tree: exp.Expression, tables: Sequence[Table], rng: random.Random
) -> exp.Expression | None:
    """Remove one DISTINCT: ``SELECT DISTINCT``, ``agg(DISTINCT x)``, or UNION -> UNION ALL.

    Spider's execution match deletes every DISTINCT keyword from both queries before running them
    (unless ``keep_distinct``), so the first two kinds match the gold there and are dropped by
    :func:`~workflow_scripts.pairs.negatives.build_synthetic`; only UNION -> UNION ALL survives by
    default. None without DISTINCT.
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
