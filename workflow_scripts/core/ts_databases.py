"""Test-suite databases (Spider's ``database_ts``): several databases per db_id; correct only on all of them.

test-suite-sql-eval (Zhong et al., 2020) runs gold and prediction on every ``*.sqlite`` file in the
directory of the db_id (``{test_suite_root}/{db_id}/``) and counts a prediction correct only when it
matches on each one: a query that is right by accident on one database's contents is caught on another.
Here an example keeps its main database (``db_root``: the schema, the prompt, feedback and query plans
come from it); the test-suite databases are extra checks of an answer that is correct on the main one.
The gold SQL is executed on every test-suite database once, at ingest (``gold_ts.parquet``); an example
whose gold fails on one of them is excluded like one whose gold fails on its main database.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from workflow_scripts.core.errors import UserError
from workflow_scripts.core.exec_result import ExecResult
from workflow_scripts.core.matching import CORRECT, order_matters
from workflow_scripts.core.row_codec import decode_rows, encode_rows
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.scoring import MatchSettings

GOLD_TS_COLUMNS = ["id", "db_path", "columns", "rows", "n_rows", "order_matters", "elapsed_s"]

#: One test-suite check: (database path, gold result there, whether row order matters).
TsGold = tuple[str, ExecResult, bool]


def suite_paths(root: Path, db_id: str, main_db: str | Path) -> list[str]:
    """The test-suite databases of `db_id` under `root`, sorted, without the main database itself.

    As test-suite-sql-eval: every file in ``{root}/{db_id}/`` whose name contains ``.sqlite``.
    """
    folder = Path(root) / db_id
    files = sorted(p for p in folder.glob("*.sqlite*") if p.is_file()) if folder.is_dir() else []
    if not files:
        raise UserError(
            f"no test-suite database for db_id {db_id!r}: {folder} holds no .sqlite file. Fix: point "
            "`test_suite_root` at Spider's database_ts layout ({root}/{db_id}/*.sqlite) or remove it."
        )
    main = Path(main_db)
    return [str(p) for p in files if not (main.is_file() and os.path.samefile(p, main))]


def execute_gold_ts(
    examples: pd.DataFrame,
    root: Path,
    sandbox: Sandbox,
    settings: MatchSettings,
    *,
    progress: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run each example's gold SQL on its test-suite databases.

    Returns (one row per example and test-suite database, the examples whose gold SQL fails or is cut at
    the row cap on one of them, with `reason` ``gold_error`` / ``gold_truncated``).
    """
    paths = {
        db_id: suite_paths(root, db_id, main)
        for db_id, main in zip(examples["db_id"], examples["db_path"], strict=True)
    }
    jobs, owners = [], []
    for row in examples.itertuples(index=False):
        for path in paths[row.db_id]:
            jobs.append((path, settings.prepare(row.gold_sql)))
            owners.append(row)
    results = sandbox.execute_many(jobs, progress=progress or False)
    gold, failed, failed_ids = [], [], set()
    for (path, _), row, result in zip(jobs, owners, results, strict=True):
        if row.id in failed_ids:
            continue
        if result.status != "ok" or result.truncated:
            failed_ids.add(row.id)
            reason = "gold_truncated" if result.status == "ok" else "gold_error"
            detail = f"more than {sandbox.max_rows} rows" if result.status == "ok" else result.error_message
            failed.append(
                {
                    **row._asdict(),
                    "reason": reason,
                    "error_class": result.error_class,
                    "error_message": f"on test-suite database {path}: {detail}",
                }
            )
            continue
        gold.append(
            {
                "id": row.id,
                "db_path": path,
                "columns": json.dumps(list(result.columns)),
                "rows": encode_rows(result.rows),
                "n_rows": len(result.rows),
                "order_matters": order_matters(row.gold_sql),
                "elapsed_s": result.elapsed_s,
            }
        )
    gold_df = pd.DataFrame(gold, columns=GOLD_TS_COLUMNS)
    gold_df = gold_df[~gold_df["id"].isin(failed_ids)].reset_index(drop=True)
    failed_columns = [*examples.columns, "reason", "error_class", "error_message"]
    return gold_df, pd.DataFrame(failed, columns=failed_columns)


def empty_gold_ts() -> pd.DataFrame:
    """The `gold_ts.parquet` of a data set without test-suite databases."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in GOLD_TS_COLUMNS}).astype(
        {"n_rows": "int64", "order_matters": "bool", "elapsed_s": "float64"}
    )


def ts_golds(gold_ts: pd.DataFrame | None) -> dict[str, list[TsGold]]:
    """The test-suite checks of each example id, from a `gold_ts.parquet` frame (None: none)."""
    out: dict[str, list[TsGold]] = {}
    if gold_ts is None:
        return out
    for row in gold_ts.to_dict("records"):
        result = ExecResult(
            "ok",
            None,
            None,
            tuple(json.loads(row["columns"])),
            decode_rows(row["rows"]),
            False,
            float(row["elapsed_s"]),
        )
        out.setdefault(str(row["id"]), []).append((str(row["db_path"]), result, bool(row["order_matters"])))
    return out


def suite_verdicts(
    items: Sequence[tuple[str, str, Sequence[TsGold]]],
    sandbox: Sandbox,
    settings: MatchSettings,
    *,
    progress: str | None = None,
) -> list[tuple[str, str | None]]:
    """Final verdicts of (verdict on the main database, SQL, test-suite checks) items.

    An item correct on its main database is run on each of its test-suite databases (prepared by
    `settings`, in one batch) and stays ``correct`` only if it matches on every one; otherwise its verdict
    is that of the first database it fails on. Returns (verdict, path of that database or None).
    """
    jobs, owners = [], []
    for i, (main_verdict, sql, checks) in enumerate(items):
        if main_verdict != CORRECT:
            continue
        for path, gold, ordered in checks:
            jobs.append((path, settings.prepare(sql)))
            owners.append((i, path, gold, ordered))
    out: list[tuple[str, str | None]] = [(v, None) for v, _, _ in items]
    results = sandbox.execute_many(jobs, progress=progress or False) if jobs else []
    for (i, path, gold, ordered), result in zip(owners, results, strict=True):
        if out[i][0] != CORRECT:
            continue
        v = settings.verdict(gold, result, order_matters=ordered)
        if v != CORRECT:
            out[i] = (v, path)
    return out
