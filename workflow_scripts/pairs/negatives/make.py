"""The registry of perturbation families, and the making of one gold query's negatives from it."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from workflow_scripts.core.matching import postprocess
from workflow_scripts.core.schema import Table
from workflow_scripts.pairs.negatives.missing_distinct import missing_distinct
from workflow_scripts.pairs.negatives.missing_join import missing_join
from workflow_scripts.pairs.negatives.wrong_aggregation import wrong_aggregation
from workflow_scripts.pairs.negatives.wrong_column import wrong_column
from workflow_scripts.pairs.negatives.wrong_comparison import wrong_comparison
from workflow_scripts.pairs.negatives.wrong_literal import Values, wrong_literal
from workflow_scripts.pairs.negatives.wrong_order import wrong_order

Perturbation = Callable[[exp.Expression, Sequence[Table], random.Random], exp.Expression | None]

#: Every perturbation family by name: `synthetic.types` in the configuration picks from these.
NEGATIVE_TYPES: dict[str, Perturbation] = {
    "wrong_column": wrong_column,
    "missing_join": missing_join,
    "wrong_aggregation": wrong_aggregation,
    "wrong_comparison": wrong_comparison,
    "wrong_order": wrong_order,
    "missing_distinct": missing_distinct,
    "wrong_literal": wrong_literal,
}

ATTEMPTS_PER_NEGATIVE = 4


@dataclass(frozen=True)
class Negative:
    """One synthetic negative: its perturbation type and its SQL (rendered by sqlglot, sqlite)."""

    type: str
    sql: str


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
    return make_from_tree(tree, gold_sql, tables, types, seed, per_type, values)


def make_from_tree(
    tree: exp.Expression,
    gold_sql: str,
    tables: Sequence[Table],
    types: Sequence[str],
    seed: int,
    per_type: int,
    values: Values | None,
) -> list[Negative]:
    """:func:`make_negatives` for a gold query already parsed into `tree` (and its types already checked)."""
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
