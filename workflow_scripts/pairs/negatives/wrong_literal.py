"""``wrong_literal``: a literal replaced by another value of the same column, or a number shifted."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

from sqlglot import exp

from workflow_scripts.core.schema import Table
from workflow_scripts.pairs.negatives.ast_helpers import (
    FILTER_CLAUSES,
    OTHER_COMPARISONS,
    clause,
    is_string,
    resolve,
    schema_of,
)

#: Candidate values per (table, column), both lowercased, for ``wrong_literal``.
Values = Mapping[tuple[str, str], Sequence[object]]


def wrong_literal(
    tree: exp.Expression, tables: Sequence[Table], rng: random.Random, values: Values | None = None
) -> exp.Expression | None:
    """Replace one value of a WHERE or HAVING condition.

    The new value is another value of the compared column taken from `values` (keyed by lowercased
    (table, column); see :func:`literal_columns` and
    :func:`~workflow_scripts.pairs.negatives.column_values`), or, for a number, the number plus or
    minus one. LIKE patterns keep their ``%`` ends. None without such a value.
    """
    schema = schema_of(tables)
    values = values or {}
    new = tree.copy()
    edits = []
    for node, key in _compared_values(new, schema):
        pool = [v for v in values.get(key, ()) if _is_new_value(v, node)] if key else []
        if pool:
            edits.append((node, pool))
        if _number(node) is not None:
            # Decimal keeps the literal's digits: 37.4 - 1 is 36.4, not 36.400000000000006
            number = Decimal(node.this)
            edits.append((node, [number - 1, number + 1]))
    if not edits:
        return None
    node, pool = rng.choice(edits)
    node.replace(_literal(rng.choice(pool), like=node if isinstance(node.parent, exp.Like) else None))
    return new


def literal_columns(tree: exp.Expression, tables: Sequence[Table]) -> set[tuple[str, str]]:
    """The lowercased (table, column) pairs whose values :func:`wrong_literal` may use for `tree`."""
    return {key for _, key in _compared_values(tree, schema_of(tables)) if key is not None}


def _compared_values(
    tree: exp.Expression, schema: Mapping[str, Table]
) -> Iterable[tuple[exp.Expression, tuple[str, str] | None]]:
    """Values compared with something in WHERE / HAVING, each with its column's (table, column)."""
    for node in tree.find_all(exp.Literal, exp.Column):
        if isinstance(node, exp.Column) and not is_string(node, schema):
            continue
        parent = node.parent
        listed = isinstance(parent, exp.In) and node.arg_key == "expressions"
        bound = isinstance(parent, exp.Between) and node.arg_key in ("low", "high")
        if isinstance(parent, exp.Binary) and type(parent) in OTHER_COMPARISONS:
            other = parent.this if node.arg_key == "expression" else parent.expression
        elif listed or bound:
            other = parent.this
        else:
            continue
        if clause(node) not in FILTER_CLAUSES:
            continue
        key = None
        is_column = isinstance(other, exp.Column) and not is_string(other, schema)
        if is_column and (resolved := resolve(other, schema)) is not None:
            key = (resolved[2].name.lower(), other.name.lower())
        yield node, key


def _text(node: exp.Expression) -> str:
    return node.name if isinstance(node, exp.Column) else node.this


def _number(node: exp.Expression) -> int | float | None:
    if not isinstance(node, exp.Literal) or node.is_string:
        return None
    try:
        return int(node.this)
    except ValueError:
        try:
            return float(node.this)
        except ValueError:
            return None


def _is_new_value(value: object, node: exp.Expression) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str) or value == "":
        return False
    old = _number(node)
    if old is not None and not isinstance(value, str):
        return value != old
    new, text = str(value).strip(), _text(node).strip("%").strip()
    # LIKE ignores ASCII case
    return new.lower() != text.lower() if isinstance(node.parent, exp.Like) else new != text


def _literal(value: object, like: exp.Expression | None = None) -> exp.Literal:
    if isinstance(value, str):
        if like is not None:
            old = _text(like)
            value = ("%" if old.startswith("%") else "") + value + ("%" if old.endswith("%") else "")
        return exp.Literal.string(value)
    return exp.Literal.number(value)
