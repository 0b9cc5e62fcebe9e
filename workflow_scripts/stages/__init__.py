"""Entry points that Snakemake rules call: parse arguments, do I/O, call the library."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from workflow_scripts.errors import UserError


def setup_logging() -> None:
    """Log INFO and above to stderr, which each rule sends to its file under results/logs/."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def read_parquet(path: Path, what: str) -> pd.DataFrame:
    """Read a Parquet input, or raise UserError naming it."""
    if not path.is_file():
        raise UserError(f"the {what} file {str(path)!r} does not exist. Fix: run the stage that writes it.")
    return pd.read_parquet(path)
