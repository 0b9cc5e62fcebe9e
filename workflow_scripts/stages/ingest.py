"""Stage `ingest`: one data set to examples, schema, cached gold results and an ingestion summary."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from workflow_scripts.artifacts import write_json, write_parquet
from workflow_scripts.errors import run_cli
from workflow_scripts.ingest import DatasetSpec, build_schema, normalize_records, read_records
from workflow_scripts.sandbox import Sandbox
from workflow_scripts.scoring import MatchSettings, execute_gold
from workflow_scripts.stages import setup_logging

log = logging.getLogger("ingest")


def ingest(
    spec: DatasetSpec, out_dir: Path, *, missing_db: str, sandbox_cfg: dict, keep_distinct: bool
) -> dict:
    """Ingest `spec` into `out_dir`; return the summary that is also written as summary.json."""
    records = read_records(spec.path)
    examples, skipped = normalize_records(records, spec, missing_db)  # type: ignore[arg-type]
    log.info(
        "%s: %d records, %d with a database, %d skipped", spec.name, len(records), len(examples), len(skipped)
    )
    schema = build_schema(examples, spec.tables)
    settings = MatchSettings(keep_distinct=keep_distinct)
    with Sandbox(**sandbox_cfg) as sandbox:
        gold, failed = execute_gold(examples, sandbox, settings, progress=f"gold SQL of {spec.name}")
    for row in failed.itertuples(index=False):
        log.warning("excluded %s (%s): %s: %s", row.id, row.db_id, row.reason, row.error_message)
    usable = examples[examples["id"].isin(gold["id"])].reset_index(drop=True)
    excluded = _excluded(skipped, failed)
    provenance = {
        "dataset": spec.name,
        "missing_db": missing_db,
        "sandbox": sandbox_cfg,
        "keep_distinct": keep_distinct,
    }
    write_parquet(usable, out_dir / "examples.parquet", provenance)
    write_parquet(gold, out_dir / "gold.parquet", provenance)
    write_parquet(excluded, out_dir / "excluded.parquet", provenance)
    write_parquet(schema, out_dir / "schema.parquet", provenance)
    summary = {
        "dataset": spec.name,
        "path": str(spec.path),
        "records": len(records),
        "usable": len(usable),
        "skipped_missing_db": len(skipped),
        "gold_failed": int((failed["reason"] == "gold_error").sum()),
        "gold_truncated": int((failed["reason"] == "gold_truncated").sum()),
        "databases": int(usable["db_id"].nunique()),
        "tables": int(schema.groupby("db_id")["table"].nunique().sum()),
        "gold_empty_results": int((gold["n_rows"] == 0).sum()),
        "gold_exec_seconds": round(float(gold["elapsed_s"].sum()), 3),
    }
    write_json(summary, out_dir / "summary.json")
    return summary


def _excluded(skipped: pd.DataFrame, failed: pd.DataFrame) -> pd.DataFrame:
    """The examples that are never scored: missing database, failing or truncated gold SQL."""
    columns = ["id", "position", "db_id", "question", "gold_sql", "reason", "error_class", "error_message"]
    frames = [f.reindex(columns=columns) for f in (skipped, failed) if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns}).astype({"position": "int64"})
    return pd.concat(frames, ignore_index=True).sort_values("position", kind="stable").reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="data set name")
    parser.add_argument("--dataset", required=True, help="the data set's config entry as JSON")
    parser.add_argument("--missing-db", choices=["error", "skip"], default="error")
    parser.add_argument("--sandbox", default="{}", help="sandbox settings as JSON")
    parser.add_argument("--keep-distinct", action="store_true")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    setup_logging()
    spec = DatasetSpec.from_config(args.name, json.loads(args.dataset))
    summary = ingest(
        spec,
        args.out_dir,
        missing_db=args.missing_db,
        sandbox_cfg=json.loads(args.sandbox),
        keep_distinct=args.keep_distinct,
    )
    log.info("summary: %s", json.dumps(summary))


if __name__ == "__main__":
    run_cli(main)
