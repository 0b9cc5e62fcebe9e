"""Synthetic hard negatives for preference training: SQL close to the gold SQL, but wrong.

Each perturbation takes the sqlglot AST (sqlite dialect) of a gold query, the tables of its
database and a ``random.Random``, and returns a new tree with one plausible mistake, or None when
the query has no place for that kind of mistake. The input tree is never changed. One module a family:

- ``wrong_column``: a selected or filtered column swapped for another column of the same table.
- ``missing_join``: one joined table (and its ON condition) left out.
- ``wrong_aggregation``: COUNT/SUM/AVG/MAX/MIN swapped, or GROUP BY dropped or regrouped.
- ``wrong_comparison``: a comparison operator changed (``=`` to ``!=``, ``>`` to ``<`` ...).
- ``wrong_order``: ORDER BY direction flipped, or the LIMIT changed.
- ``missing_distinct``: DISTINCT removed (also ``UNION`` to ``UNION ALL``). Spider's execution match
  deletes DISTINCT from both queries unless ``keep_distinct``, so by default only UNION ALL survives.
- ``wrong_literal``: a literal replaced by another value of the same column, or a number shifted.

They share the helpers of ``ast_helpers`` (resolving a column to its table, removing a node with its
conjunction, the clause a node sits in). ``make`` holds the registry, :data:`NEGATIVE_TYPES`, and
:func:`make_negatives`, which renders and de-duplicates them; ``build`` holds :func:`build_synthetic`,
which executes them in the sandbox and keeps those whose result differs from the gold result.
"""

from workflow_scripts.pairs.negatives.ast_helpers import affinity
from workflow_scripts.pairs.negatives.build import (
    SYNTHETIC_COLUMNS,
    VALUES_PER_COLUMN,
    VALUES_TIMEOUT_S,
    build_synthetic,
    column_values,
)
from workflow_scripts.pairs.negatives.make import (
    ATTEMPTS_PER_NEGATIVE,
    NEGATIVE_TYPES,
    Negative,
    Perturbation,
    make_negatives,
    parse,
    render,
)
from workflow_scripts.pairs.negatives.missing_distinct import missing_distinct
from workflow_scripts.pairs.negatives.missing_join import missing_join
from workflow_scripts.pairs.negatives.wrong_aggregation import wrong_aggregation
from workflow_scripts.pairs.negatives.wrong_column import wrong_column
from workflow_scripts.pairs.negatives.wrong_comparison import wrong_comparison
from workflow_scripts.pairs.negatives.wrong_literal import Values, literal_columns, wrong_literal
from workflow_scripts.pairs.negatives.wrong_order import wrong_order

__all__ = [
    "ATTEMPTS_PER_NEGATIVE",
    "NEGATIVE_TYPES",
    "SYNTHETIC_COLUMNS",
    "VALUES_PER_COLUMN",
    "VALUES_TIMEOUT_S",
    "Negative",
    "Perturbation",
    "Values",
    "affinity",
    "build_synthetic",
    "column_values",
    "literal_columns",
    "make_negatives",
    "missing_distinct",
    "missing_join",
    "parse",
    "render",
    "wrong_aggregation",
    "wrong_column",
    "wrong_comparison",
    "wrong_literal",
    "wrong_order",
]
