"""Executing gold SQL once and scoring predicted SQL against it with Spider's execution match."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from workflow_scripts.core.matching import order_matters, prepare_sql, verdict
from workflow_scripts.core.sandbox import ExecResult, Sandbox, decode_rows, encode_rows

GOLD_COLUMNS = ["id", "columns", "rows", "n_rows", "order_matters", "elapsed_s"]


@dataclass(frozen=True)
class MatchSettings:
    """How predictions are compared with gold (test-suite-sql-eval semantics by default)."""

    keep_distinct: bool = False

    @classmethod
    def from_config(cls, matching: Mapping[str, Any]) -> MatchSettings:
        """The settings of config.yaml's `matching` section."""
        return cls(keep_distinct=bool(matching.get("keep_distinct", False)))

    def prepare(self, sql: str) -> str:
        """Return the SQL that is actually executed for comparison."""
        return prepare_sql(sql, keep_distinct=self.keep_distinct)


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
        v = verdict(gold_result(row), result, order_matters=row["order_matters"])
        rows.append(
            {
                "id": row["id"],
                "index": row["position"],
                "db_id": row["db_id"],
                "question": row["question"],
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
