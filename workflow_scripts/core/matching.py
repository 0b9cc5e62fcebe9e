"""Execution match under three named metric modes, and per-query verdicts.

Modes (:data:`METRICS`; ``matching.metric`` in config.yaml, ``--metric`` of ``evaluate``):

- ``spider`` (the default): Spider's official test-suite-sql-eval ``exec_eval.py``, below.
- ``bird``: BIRD's official ``evaluation.py``: both queries run as written and
  ``set(pred_rows) == set(gold_rows)``: row order and duplicates are ignored, columns must be in the
  gold's order, a failure or timeout is wrong, and every question is in the denominator (see
  ``evaluate``).
- ``strict``: both queries run as written (no DISTINCT removal, no rewrites) and the rows must be
  equal as ordered lists (an ordered bag: order and duplicates count) with the columns in the gold's
  order.

Official pipeline for one (gold, prediction) pair on one database: both strings go through
``postprocess`` (``"> ="`` -> ``">="`` ...) and :func:`remove_distinct`, then ``YEAR(CURDATE())``
is replaced by 2020 (:func:`prepare_sql` does all three), both run, the gold must succeed, a
failing prediction is wrong, and otherwise :func:`results_match` decides with
``order_matters = 'order by' in gold.lower()``.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any, Final

from sqlglot.dialects.sqlite import SQLite

from workflow_scripts.core.error_classes import ERROR_CLASSES, OTHER_EXECUTION_ERROR
from workflow_scripts.core.exec_result import ExecResult

SPIDER: Final = "spider"
BIRD: Final = "bird"
STRICT: Final = "strict"
#: The named metric modes, the default first.
METRICS: Final[tuple[str, ...]] = (SPIDER, BIRD, STRICT)

CORRECT: Final = "correct"
WRONG_RESULT: Final = "wrong_result"
WRONG_ROW_COUNT: Final = "wrong_row_count"
EMPTY_RESULT: Final = "empty_result"
TRUNCATED: Final = "truncated"
GOLD_ERROR: Final = "gold_error"
# The prompt did not fit the model's context: nothing was generated or executed (see `generation`).
PROMPT_TOO_LONG: Final = "prompt_too_long"

#: Every value :func:`verdict` can return: the four result verdicts, the prediction's error
#: classes, ``truncated`` (both results hit the row cap: undecidable) and ``gold_error``; plus
#: ``prompt_too_long``, the class of an answer that was never generated.
VERDICTS: Final[tuple[str, ...]] = (
    CORRECT,
    WRONG_RESULT,
    WRONG_ROW_COUNT,
    EMPTY_RESULT,
    *ERROR_CLASSES,
    TRUNCATED,
    GOLD_ERROR,
    PROMPT_TOO_LONG,
)

_SQLITE = SQLite()
_QUOTED_OR_WORD = re.compile(
    r"'(?:[^']|'')*'?|\"(?:[^\"]|\"\")*\"?|`[^`]*`?|\[[^\]]*\]?|\b(distinct)\b", re.I
)
_CUR_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.I)


def remove_distinct(sql: str) -> str:
    """Delete every DISTINCT keyword (also inside ``COUNT(DISTINCT x)``), leaving the rest intact.

    The official code drops sqlparse tokens whose text lowercases to ``distinct``; string literals,
    quoted identifiers and comments are single tokens there, so they are kept. Deviation: the
    official code keeps only the first statement of a multi-statement string.
    """
    if "distinct" not in sql.lower():
        return sql
    try:
        tokens = _SQLITE.tokenize(sql)
    except Exception:
        return _QUOTED_OR_WORD.sub(lambda m: "" if m.group(1) else m.group(0), sql)
    spans = [(t.start, t.end + 1) for t in tokens if sql[t.start : t.end + 1].lower() == "distinct"]
    if not spans:
        return sql
    parts, last = [], 0
    for start, end in spans:
        parts.append(sql[last:start])
        last = end
    parts.append(sql[last:])
    return "".join(parts)


def postprocess(sql: str) -> str:
    """The official fix-up of spaced comparison operators (``"> ="`` -> ``">="`` ...)."""
    return sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")


def prepare_sql(sql: str, *, keep_distinct: bool = False) -> str:
    """Apply the official rewrites in order: postprocess, remove_distinct, YEAR(CURDATE()) -> 2020."""
    sql = postprocess(sql)
    if not keep_distinct:
        sql = remove_distinct(sql)
    return _CUR_YEAR.sub("2020", sql)


def order_matters(gold_sql: str) -> bool:
    """The official rule: row order counts iff the gold query contains ``order by``."""
    return "order by" in gold_sql.lower()


def _unorder_row(row: tuple) -> tuple:
    return tuple(sorted(row, key=lambda x: str(x) + str(type(x))))


def _quick_rej(result1: Sequence[tuple], result2: Sequence[tuple], order_matters: bool) -> bool:
    s1 = [_unorder_row(row) for row in result1]
    s2 = [_unorder_row(row) for row in result2]
    if order_matters:
        return s1 == s2
    return set(s1) == set(s2)


def _multiset_eq(l1: Sequence[Any], l2: Sequence[Any]) -> bool:
    if len(l1) != len(l2):
        return False
    d: defaultdict[Any, int] = defaultdict(int)
    for e in l1:
        d[e] += 1
    for e in l2:
        d[e] -= 1
        if d[e] < 0:
            return False
    return True


def _constraint_permutations(tab1_sets_by_columns: list[set], result2: Sequence[tuple]) -> Iterator[tuple]:
    num_cols = len(result2[0])
    perm_constraints = [set(range(num_cols)) for _ in range(num_cols)]
    if num_cols > 3:
        # sample 20 rows to constrain the space, as upstream; pruning only drops column mappings
        # that cannot match, so the seed affects speed, never the outcome
        rng = random.Random(0)
        for _ in range(20):
            row = rng.choice(result2)
            for tab1_col in range(num_cols):
                for tab2_col in set(perm_constraints[tab1_col]):
                    if row[tab2_col] not in tab1_sets_by_columns[tab1_col]:
                        perm_constraints[tab1_col].remove(tab2_col)
    options = [sorted(c) for c in perm_constraints]
    used: set[int] = set()
    chosen: list[int] = []

    def extend(col: int) -> Iterator[tuple]:
        if col == num_cols:
            yield tuple(chosen)
            return
        for cand in options[col]:
            if cand not in used:
                used.add(cand)
                chosen.append(cand)
                yield from extend(col + 1)
                chosen.pop()
                used.remove(cand)

    return extend(0)


def results_match(gold_rows: Sequence[tuple], pred_rows: Sequence[tuple], order_matters: bool) -> bool:
    """test-suite-sql-eval's ``result_eq``: equal up to a column permutation, as bags or lists.

    Both empty -> True (whatever the columns); row or column counts (of the first rows) differ ->
    False; then a quick rejection on per-row sorted values, then every column permutation of
    the prediction consistent with the gold's per-column value sets is tried. Deviations, none
    changing the outcome: the 20 sampled rows come from a fixed seed, and permutations are
    enumerated directly instead of filtering a Cartesian product.
    """
    if len(gold_rows) == 0 and len(pred_rows) == 0:
        return True
    if len(gold_rows) != len(pred_rows):
        return False
    num_cols = len(gold_rows[0])
    if len(pred_rows[0]) != num_cols:
        return False
    if not _quick_rej(gold_rows, pred_rows, order_matters):
        return False
    gold_list = list(gold_rows)
    tab1_sets_by_columns = [{row[i] for row in gold_rows} for i in range(num_cols)]
    for perm in _constraint_permutations(tab1_sets_by_columns, pred_rows):
        pred_perm = list(pred_rows) if num_cols == 1 else [tuple(row[i] for i in perm) for row in pred_rows]
        if order_matters:
            if gold_list == pred_perm:
                return True
        elif set(gold_list) == set(pred_perm) and _multiset_eq(gold_list, pred_perm):
            return True
    return False


def results_equal(
    gold_rows: Sequence[tuple], pred_rows: Sequence[tuple], *, order_matters: bool, metric: str = SPIDER
) -> bool:
    """Whether two results are equal under `metric` (one of :data:`METRICS`).

    ``spider``: :func:`results_match` (bags up to a column permutation; lists when `order_matters`).
    ``bird``: BIRD's ``set(predicted_res) == set(ground_truth_res)``. ``strict``: equal lists of rows.
    `order_matters` (the gold has ORDER BY) is used by ``spider`` only.
    """
    if metric == SPIDER:
        return results_match(gold_rows, pred_rows, order_matters)
    if metric == BIRD:
        return set(map(tuple, gold_rows)) == set(map(tuple, pred_rows))
    if metric == STRICT:
        return [tuple(r) for r in gold_rows] == [tuple(r) for r in pred_rows]
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")


def verdict(gold: ExecResult, pred: ExecResult, *, order_matters: bool, metric: str = SPIDER) -> str:
    """Classify a prediction against the gold result (one of :data:`VERDICTS`) under `metric`.

    ``gold_error`` when the gold failed; the prediction's error class when it failed; then
    ``correct`` / ``empty_result`` / ``wrong_row_count`` / ``wrong_result``. Results cut at the row
    cap (same cap assumed for both): if only one was cut, the full row counts differ, so it is
    ``wrong_row_count`` (or ``empty_result``); if both were cut the match is undecidable and the
    verdict is ``truncated`` -- raise ``max_rows`` to avoid it.
    """
    if gold.status != "ok":
        return GOLD_ERROR
    if pred.status != "ok":
        return pred.error_class or ("timeout" if pred.status == "timeout" else OTHER_EXECUTION_ERROR)
    if gold.truncated and pred.truncated:
        return TRUNCATED
    if not (gold.truncated or pred.truncated) and results_equal(
        gold.rows, pred.rows, order_matters=order_matters, metric=metric
    ):
        return CORRECT
    if not pred.rows:
        return EMPTY_RESULT
    if gold.truncated or pred.truncated or len(gold.rows) != len(pred.rows):
        return WRONG_ROW_COUNT
    return WRONG_RESULT
