"""Stage `data`: the embedded demo benchmark, and the ingestion of one data set.

python -m workflow_scripts.cli.data demo --out DIR --seed N
python -m workflow_scripts.cli.data ingest --name NAME --dataset JSON --execution JSON --out-dir DIR ...
python -m workflow_scripts.cli.data split --input train_spider.json --heldout-dbs 30 --per-db 8 --out-dir DIR
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from workflow_scripts.cli import (
    add_execution_argument,
    command_parser,
    execution_settings,
    json_argument,
    run_cli,
    setup_logging,
)
from workflow_scripts.core.artifacts import file_sha256, write_json, write_parquet
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.scoring import MatchSettings, execute_gold
from workflow_scripts.core.ts_databases import empty_gold_ts, execute_gold_ts
from workflow_scripts.data.demo import build_demo
from workflow_scripts.data.ingest import (
    DatasetSpec,
    build_schema,
    candidate_db_paths,
    normalize_records,
    read_records,
)
from workflow_scripts.data.split import split_by_db

log = logging.getLogger("ingest")


def ingest(
    spec: DatasetSpec, out_dir: Path, *, missing_db: str, sandbox_cfg: dict, match: MatchSettings
) -> dict:
    """Ingest `spec` into `out_dir`; return the summary that is also written as summary.json."""
    records = read_records(spec.path)
    examples, skipped = normalize_records(records, spec, missing_db)  # type: ignore[arg-type]
    log.info(
        "%s: %d records, %d with a database, %d skipped", spec.name, len(records), len(examples), len(skipped)
    )
    schema = build_schema(examples, spec.tables)
    with Sandbox(**sandbox_cfg) as sandbox:
        timeout_s = sandbox.timeout_s
        gold, failed = execute_gold(examples, sandbox, match, progress=f"gold SQL of {spec.name}")
        gold_ts = empty_gold_ts()
        if spec.test_suite_root is not None:
            runnable = examples[examples["id"].isin(gold["id"])]
            gold_ts, ts_failed = execute_gold_ts(
                runnable, spec.test_suite_root, sandbox, match, progress="gold SQL on test-suite databases"
            )
            gold = gold[~gold["id"].isin(ts_failed["id"])].reset_index(drop=True)
            failed = pd.concat([f for f in (failed, ts_failed) if len(f)] or [failed], ignore_index=True)
    for row in failed.itertuples(index=False):
        log.warning("excluded %s (%s): %s: %s", row.id, row.db_id, row.reason, row.error_message)
    usable = examples[examples["id"].isin(gold["id"])].reset_index(drop=True)
    excluded = _excluded(skipped, failed)
    provenance = {
        "dataset": spec.name,
        "missing_db": missing_db,
        "sandbox": sandbox_cfg,
        "keep_distinct": match.keep_distinct,
        "matching": match.to_config(),
    }
    write_parquet(usable, out_dir / "examples.parquet", provenance)
    write_parquet(gold, out_dir / "gold.parquet", provenance)
    write_parquet(gold_ts, out_dir / "gold_ts.parquet", provenance)
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
        "metric": match.metric,
        "test_suite_root": str(spec.test_suite_root) if spec.test_suite_root else None,
        "test_suite_databases": int(gold_ts["db_path"].nunique()),
        # BIRD-style data: examples with evidence (shown in prompts unless prompt.evidence is false)
        "with_evidence": int(usable["evidence"].notna().sum()),
        "difficulties": {str(k): int(n) for k, n in usable["difficulty"].dropna().value_counts().items()},
        "data_sha256": file_sha256(spec.path),
        "sandbox_timeout_s": timeout_s,
    }
    write_json(summary, out_dir / "summary.json")
    return summary


def _excluded(skipped: pd.DataFrame, failed: pd.DataFrame) -> pd.DataFrame:
    """The examples that are never scored: missing database, failing or truncated gold SQL."""
    columns = ["id", "position", "db_id", "question", "gold_sql", "reason", "error_class", "error_message",
               "evidence", "difficulty"]  # fmt: skip
    frames = [f.reindex(columns=columns) for f in (skipped, failed) if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns}).astype({"position": "int64"})
    return pd.concat(frames, ignore_index=True).sort_values("position", kind="stable").reset_index(drop=True)


def write_split(args: argparse.Namespace) -> dict:
    """Write the cross-domain split of `args.input` to `args.out_dir`; return its summary (split.json)."""
    records = read_records(args.input)
    if args.db_root is not None:  # databases missing from db_root would be skipped at ingestion: not drawn
        records = [
            r for r in records if any(p.is_file() for p in candidate_db_paths(args.db_root, r["db_id"]))
        ]
    train, heldout, held = split_by_db(records, args.heldout_dbs, per_db=args.per_db, seed=args.seed)
    summary = {
        "input": str(args.input),
        "input_sha256": file_sha256(args.input),
        "db_root": None if args.db_root is None else str(args.db_root),
        "seed": args.seed,
        "per_db": args.per_db,
        "heldout_dbs": held,
        "train_questions": len(train),
        "heldout_questions": len(heldout),
    }
    write_json(train, args.out_dir / "train.json")
    write_json(heldout, args.out_dir / "heldout.json")
    write_json(summary, args.out_dir / "split.json")
    return summary


def demo_command(args: argparse.Namespace) -> None:
    print(json.dumps(build_demo(args.out, args.seed), indent=2))


def split_command(args: argparse.Namespace) -> None:
    print(json.dumps(write_split(args), indent=2))


def ingest_command(args: argparse.Namespace) -> None:
    spec = DatasetSpec.from_config(args.name, json_argument(args.dataset, "--dataset"))
    sandbox_cfg, match = execution_settings(args)
    summary = ingest(spec, args.out_dir, missing_db=args.missing_db, sandbox_cfg=sandbox_cfg, match=match)
    log.info("summary: %s", json.dumps(summary))


def main(argv: list[str] | None = None) -> None:
    parser, commands = command_parser(__doc__)
    demo = commands.add_parser("demo", help="build the embedded demo benchmark")
    demo.add_argument("--out", type=Path, required=True, help="output directory")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(func=demo_command)
    one = commands.add_parser("ingest", help="ingest one data set")
    one.add_argument("--name", required=True, help="data set name")
    one.add_argument("--dataset", required=True, help="the data set's config entry as JSON")
    one.add_argument("--missing-db", choices=["error", "skip"], default="error")
    add_execution_argument(one)
    one.add_argument("--out-dir", type=Path, required=True)
    one.set_defaults(func=ingest_command)
    split = commands.add_parser("split", help="hold out whole databases of a data set (cross-domain split)")
    split.add_argument(
        "--input", type=Path, required=True, help="JSON or JSONL data set (e.g. train_spider.json)"
    )
    split.add_argument("--heldout-dbs", type=int, required=True, help="databases to hold out")
    split.add_argument("--per-db", type=int, help="at most this many held-out questions per database")
    split.add_argument("--db-root", type=Path, help="keep only questions whose database is under this root")
    split.add_argument("--seed", type=int, default=0, help="seed of the database draw (default 0)")
    split.add_argument(
        "--out-dir", type=Path, required=True, help="writes train.json, heldout.json, split.json"
    )
    split.set_defaults(func=split_command)
    args = parser.parse_args(argv)
    setup_logging()
    args.func(args)


if __name__ == "__main__":
    run_cli(main)
