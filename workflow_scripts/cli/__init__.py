"""The command-line layer: every rule calls one of these modules; they parse arguments, do I/O and call
the library. Only modules here define `main` or use argparse."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from workflow_scripts.core.errors import UserError
from workflow_scripts.core.scoring import MatchSettings


def setup_logging() -> None:
    """Log INFO and above to stderr, which each rule sends to its file under results/logs/."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def read_parquet(path: Path, what: str) -> pd.DataFrame:
    """Read a Parquet input, or raise UserError naming it."""
    if not path.is_file():
        raise UserError(f"the {what} file {str(path)!r} does not exist. Fix: run the stage that writes it.")
    return pd.read_parquet(path)


def run_cli(main: Callable[[], None]) -> None:
    """Run an entry point; a UserError ends it with one line on stderr and exit status 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def add_execution_argument(parser: argparse.ArgumentParser) -> None:
    """`--execution JSON`: how SQL is executed and compared (config.yaml's `sandbox` and `matching`)."""
    parser.add_argument(
        "--execution", default="{}", help='{"sandbox": {...}, "matching": {...}} as JSON (config sections)'
    )


def execution_settings(args: argparse.Namespace) -> tuple[dict, MatchSettings]:
    """The sandbox keyword arguments and the match settings of `--execution`."""
    execution = json.loads(args.execution)
    return dict(execution.get("sandbox", {})), MatchSettings.from_config(execution.get("matching", {}))
