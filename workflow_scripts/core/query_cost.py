"""A cost signal of a query read from SQLite's `EXPLAIN QUERY PLAN` rows.

The plan says how SQLite will run the query, independent of timer noise: which tables it reads and how
(`SCAN t` is a full table scan, `SEARCH t USING INDEX ...` an index lookup), where it sorts or de-duplicates
in a temporary B-tree, where it builds an automatic index because no index exists, and which loops are
nested without any index (a cartesian product, or a join on a condition no index can serve). The counts are
combined into one unitless `cost` with the weights in `COST_WEIGHTS`; it orders queries that answer the same
question on the same database, it is not a time estimate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

PlanRow = tuple[int, int, str]

COST_WEIGHTS: dict[str, float] = {
    "table_accesses": 1.0,
    "full_scans": 2.0,
    "temp_btrees": 2.0,
    "automatic_indexes": 2.0,
    "correlated_subqueries": 3.0,
    "cartesian_joins": 8.0,
}

# `SCAN t`, `SEARCH t USING ...`, `SCAN (subquery-1)`; before SQLite 3.36 `SCAN TABLE t`, `SCAN SUBQUERY 1`.
_ACCESS = re.compile(r"^(SCAN|SEARCH) (?:TABLE |SUBQUERY )?(\S+)(?: AS \S+)?(?: USING (.*))?$")


@dataclass(frozen=True)
class QueryCost:
    """Counts read from a query plan and the weighted `cost` they add up to."""

    table_accesses: int = 0
    full_scans: int = 0
    temp_btrees: int = 0
    automatic_indexes: int = 0
    correlated_subqueries: int = 0
    cartesian_joins: int = 0

    @property
    def cost(self) -> float:
        """The weighted sum of the counts (`COST_WEIGHTS`)."""
        return sum(weight * getattr(self, name) for name, weight in COST_WEIGHTS.items())


def _access(detail: str) -> tuple[str, str, str] | None:
    """(SCAN or SEARCH, table, how) of a plan row that reads a table or subquery; None otherwise."""
    match = _ACCESS.match(detail)  # `SCAN CONSTANT ROW` (no FROM) does not match
    if match is None:
        return None
    return match.group(1), match.group(2), match.group(3) or ""


def _full_scan(kind: str, how: str) -> bool:
    """A loop that reads every row without an index (a scan of a table or of a materialized subquery).

    `SEARCH t` with no index named (SQLite's min()/max() plan on an unindexed column) reads every row too.
    """
    return "INDEX" not in how and (kind == "SCAN" or not how)


def plan_cost(plan: Iterable[Sequence]) -> QueryCost:
    """Return the cost of a query from its `EXPLAIN QUERY PLAN` rows `(id, parent, detail)`.

    Rows with the same parent are the nested loops of one join, outermost first: every loop after the first
    that still scans fully without an index is counted as a cartesian join.
    """
    rows = [(int(r[0]), int(r[1]), str(r[-1])) for r in plan]
    counts = dict.fromkeys(COST_WEIGHTS, 0)
    loops_seen: dict[int, int] = {}
    for _, parent, detail in rows:
        if detail.startswith("USE TEMP B-TREE") or "USING TEMP B-TREE" in detail:
            counts["temp_btrees"] += 1
        if detail.startswith("CORRELATED "):
            counts["correlated_subqueries"] += 1
        access = _access(detail)
        if access is None:
            continue
        kind, _, how = access
        counts["table_accesses"] += 1
        if "AUTOMATIC" in how:
            counts["automatic_indexes"] += 1
        full = _full_scan(kind, how)
        counts["full_scans"] += full
        if full and loops_seen.get(parent, 0) > 0:
            counts["cartesian_joins"] += 1
        loops_seen[parent] = loops_seen.get(parent, 0) + 1
    return QueryCost(**counts)


def cost_columns(plan: Sequence[Sequence] | None) -> dict[str, object]:
    """Trajectory columns of one candidate: the plan as JSON detail lines, its counts and its cost.

    An empty or missing plan (the query failed or was not explained) gives None everywhere.
    """
    if not plan:
        return {"plan": None, "plan_cost": None, **{f"plan_{k}": None for k in COST_WEIGHTS}}
    cost = plan_cost(plan)
    return {
        "plan": json.dumps([str(r[-1]) for r in plan]),
        "plan_cost": cost.cost,
        **{f"plan_{k}": v for k, v in asdict(cost).items()},
    }


COST_COLUMNS: list[str] = ["plan", "plan_cost", *(f"plan_{k}" for k in COST_WEIGHTS)]
