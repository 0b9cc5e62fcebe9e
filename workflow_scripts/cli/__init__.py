"""The command-line layer: every rule calls one of these modules; they parse arguments, do I/O and call
the library. Only modules here define `main` or use argparse."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from workflow_scripts.core.artifacts import inherited, read_provenance
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.matching import METRICS
from workflow_scripts.core.scoring import MatchSettings


def command_parser(doc: str | None) -> tuple[argparse.ArgumentParser, Any]:
    """A stage's argument parser, described by its module docstring, and the subparsers of its commands."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser, parser.add_subparsers(dest="command", required=True)


def setup_logging() -> None:
    """Log INFO and above to stderr, which each rule sends to its file under results/logs/."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def read_parquet(path: Path, what: str) -> pd.DataFrame:
    """Read a Parquet input, or raise UserError naming it."""
    if not path.is_file():
        raise UserError(f"the {what} file {str(path)!r} does not exist. Fix: run the stage that writes it.")
    return pd.read_parquet(path)


def exit_on_sigterm(signum: int, _frame: Any) -> None:
    """End the process through Python's own exit on SIGTERM (Snakemake stopping a job, SLURM's time limit or
    requeue), so that engines running in child processes (vLLM's) are shut down rather than orphaned."""
    raise SystemExit(128 + signum)


def run_cli(main: Callable[[], None]) -> None:
    """Run an entry point; a UserError ends it with one line on stderr and exit status 2."""
    if getattr(main, "__module__", None) == "__main__":
        signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        if getattr(main, "__module__", None) == "__main__":
            # A native library thread can abort the interpreter's teardown after an early error ("terminate
            # called without an active exception", exit -6, seen under load): end the process at once.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        sys.exit(2)


def add_execution_argument(parser: argparse.ArgumentParser) -> None:
    """`--execution JSON`: how SQL is executed and compared (config.yaml's `sandbox` and `matching`)."""
    parser.add_argument(
        "--execution", default="{}", help='{"sandbox": {...}, "matching": {...}} as JSON (config sections)'
    )
    parser.add_argument("--metric", choices=METRICS, help="metric mode (wins over --execution's matching)")


def json_argument(text: str, flag: str) -> dict[str, Any]:
    """The JSON object passed to `flag`, or a UserError naming the flag."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{flag} is not valid JSON ({err}). Fix: pass a JSON object.") from None
    if not isinstance(value, dict):
        raise UserError(f"{flag} must be a JSON object, not {type(value).__name__}. Fix: pass {{...}}.")
    return value


def execution_settings(args: argparse.Namespace) -> tuple[dict, MatchSettings]:
    """The sandbox keyword arguments and the match settings of `--execution` (and `--metric`)."""
    execution = json_argument(args.execution, "--execution")
    matching = dict(execution.get("matching", {}))
    if getattr(args, "metric", None):
        matching["metric"] = args.metric
    if getattr(args, "keep_distinct", False):
        matching["keep_distinct"] = True
    return dict(execution.get("sandbox", {})), MatchSettings.from_config(matching)


def ingested_matching(data_dir: Path) -> MatchSettings:
    """The matching settings a data set directory was ingested (its gold SQL executed) under."""
    meta = read_provenance(data_dir / "gold.parquet")
    if "matching" in meta:
        return MatchSettings.from_config(meta["matching"])
    return MatchSettings(keep_distinct=bool(meta.get("keep_distinct", False)))


def check_ingested(data_dir: Path, match: MatchSettings) -> None:
    """Raise UserError when `data_dir`'s gold results were executed under other matching settings."""
    ingested = ingested_matching(data_dir)
    if ingested != match:
        raise UserError(
            f"{data_dir} was ingested with matching {ingested.to_config()} but this job scores with "
            f"{match.to_config()}: the gold results differ between modes. Fix: ingest the data set again "
            "with the same matching settings (Snakemake does so when matching changes)."
        )


def inherited_matching(paths: list[Path] | tuple[Path, ...]) -> dict | None:
    """The matching settings the Parquet inputs were made under (UserError when they disagree)."""
    try:
        return inherited([Path(p) for p in paths], "matching")
    except ValueError as err:
        raise UserError(f"{err}. Fix: rerun the stages that made them with one matching setting.") from None
