"""Executing gold SQL once and scoring predicted SQL against it under a named metric mode."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from workflow_scripts.core.errors import UserError
from workflow_scripts.core.exec_result import ExecResult
from workflow_scripts.core.matching import METRICS, SPIDER, order_matters, prepare_sql, verdict
from workflow_scripts.core.row_codec import decode_rows, encode_rows
from workflow_scripts.core.sandbox import Sandbox

GOLD_COLUMNS = ["id", "columns", "rows", "n_rows", "order_matters", "elapsed_s"]


@dataclass(frozen=True)
class MatchSettings:
    """How predictions are compared with gold: the `matching` section of config.yaml as one value.

    `metric` is one of :data:`~workflow_scripts.matching.METRICS` (``spider``: test-suite-sql-eval, the
    default; ``bird``; ``strict``); `keep_distinct` applies to ``spider`` only (the other modes never
    remove DISTINCT).
    """

    keep_distinct: bool = False
    metric: str = SPIDER

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UserError(
                f"unknown metric mode {self.metric!r}. Fix: set matching.metric (or --metric) to one of "
                f"{', '.join(METRICS)}."
            )

    @classmethod
    def from_config(cls, entry: Mapping[str, Any] | None) -> MatchSettings:
        """Build from the `matching` config section (missing keys take their defaults)."""
        entry = dict(entry or {})
        unknown = sorted(set(entry) - {"keep_distinct", "metric"})
        if unknown:
            raise UserError(
                f"unknown matching setting(s) {', '.join(unknown)}. Fix: use keep_distinct and metric only."
            )
        return cls(keep_distinct=bool(entry.get("keep_distinct", False)), metric=entry.get("metric", SPIDER))

    def to_config(self) -> dict[str, Any]:
        """The settings as the `matching` section (what provenance records)."""
        return {"keep_distinct": self.keep_distinct, "metric": self.metric}

    def prepare(self, sql: str) -> str:
        """Return the SQL that is actually executed for comparison (``bird``, ``strict``: as written)."""
        if self.metric != SPIDER:
            return sql
        return prepare_sql(sql, keep_distinct=self.keep_distinct)

    def verdict(self, gold: ExecResult, pred: ExecResult, *, order_matters: bool) -> str:
        """The verdict of `pred` against `gold` under this metric (``correct`` for a match)."""
        return verdict(gold, pred, order_matters=order_matters, metric=self.metric)


def execute_gold(
    examples: pd.DataFrame, sandbox: Sandbox, settings: MatchSettings, *, progress: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (gold results of the examples whose gold SQL runs, the examples whose gold SQL fails)."""
    jobs = [(p, settings.prepare(s)) for p, s in zip(examples["db_path"], examples["gold_sql"], strict=True)]
    results = sandbox.execute_many(jobs, progress=progress or False)
    gold, failed = [], []
    for row, result in zip(examples.itertuples(index=False), results, strict=True):
        if result.status != "ok" or result.truncated:
            reason = "gold_truncated" if result.status == "ok" else "gold_error"
            message = (
                f"more than {sandbox.max_rows} rows: raise sandbox.max_rows"
                if result.status == "ok"
                else result.error_message
            )
            failed.append(
                {
                    **row._asdict(),
                    "reason": reason,
                    "error_class": result.error_class,
                    "error_message": message,
                }
            )
            continue
        gold.append(
            {
                "id": row.id,
                "columns": json.dumps(list(result.columns)),
                "rows": encode_rows(result.rows),
                "n_rows": len(result.rows),
                "order_matters": order_matters(row.gold_sql),
                "elapsed_s": result.elapsed_s,
            }
        )
    failed_columns = [*examples.columns, "reason", "error_class", "error_message"]
    return pd.DataFrame(gold, columns=GOLD_COLUMNS), pd.DataFrame(failed, columns=failed_columns)


def gold_result(gold_row: pd.Series | dict) -> ExecResult:
    """Rebuild the gold ExecResult cached by `execute_gold`."""
    return ExecResult(
        status="ok",
        error_class=None,
        error_message=None,
        columns=tuple(json.loads(gold_row["columns"])),
        rows=decode_rows(gold_row["rows"]),
        truncated=False,
        elapsed_s=float(gold_row["elapsed_s"]),
    )


def score_predictions(
    examples: pd.DataFrame,
    gold: pd.DataFrame,
    predictions: list[str],
    sandbox: Sandbox,
    settings: MatchSettings,
    *,
    progress: str | None = None,
) -> pd.DataFrame:
    """Return one row per example with the verdict of its predicted SQL (aligned with `examples`)."""
    merged = examples.merge(gold, on="id", how="inner", validate="one_to_one")
    pred_by_id = dict(zip(examples["id"], predictions, strict=True))
    jobs = [
        (p, settings.prepare(pred_by_id[i])) for p, i in zip(merged["db_path"], merged["id"], strict=True)
    ]
    results = sandbox.execute_many(jobs, progress=progress or False)
    rows = []
    for row, result in zip(merged.to_dict("records"), results, strict=True):
        v = settings.verdict(gold_result(row), result, order_matters=bool(row["order_matters"]))
        rows.append(
            {
                "id": row["id"],
                "index": row["position"],
                "db_id": row["db_id"],
                "question": row["question"],
                "difficulty": row.get("difficulty"),
                "gold_sql": row["gold_sql"],
                "pred_sql": pred_by_id[row["id"]],
                "status": result.status,
                "error_class": result.error_class,
                "error_message": result.error_message,
                "verdict": v,
                "correct": v == "correct",
                "n_rows": len(result.rows),
                "elapsed_s": result.elapsed_s,
            }
        )
    return pd.DataFrame(rows)
