"""``wrong_column``: a selected or filtered column swapped for another column of the same table."""

from __future__ import annotations

import random
from collections.abc import Sequence

from sqlglot import exp

from workflow_scripts.core.schema import Table
from workflow_scripts.pairs.negatives.ast_helpers import (
    FILTER_CLAUSES,
    affinity,
    clause,
    column_of,
    identifier,
    qualify_if_ambiguous,
    resolve,
    schema_of,
)


def wrong_column(tree: exp.Expression, tables: Sequence[Table], rng: random.Random) -> exp.Expression | None:
    """Swap one selected or filtered column for another column of the same table.

    The column's table is resolved through aliases and FROM; a column of the same type affinity is
    preferred, and the qualifier is kept. None when no such column resolves to a schema table with
    a second column.
    """
    schema = schema_of(tables)
    new = tree.copy()
    edits = []
    for column in new.find_all(exp.Column):
        if clause(column) not in ("expressions", *FILTER_CLAUSES):
            continue
        resolved = resolve(column, schema)
        if resolved is None:
            continue
        select, alias, table = resolved
        current = column_of(table, column.name)
        others = [c for c in table.columns if c.name.lower() != column.name.lower()]
        if current is None or not others:
            continue
        alike = [c for c in others if affinity(c.type) == affinity(current.type)]
        edits.append((column, select, alias, alike or others))
    if not edits:
        return None
    column, select, alias, pool = rng.choice(edits)
    column.set("this", identifier(rng.choice(pool).name))
    qualify_if_ambiguous(column, select, alias, schema)
    return new
