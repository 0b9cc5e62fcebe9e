"""`python -m workflow_scripts.evaluate --pred PRED ...`: score a predictions file (execution match).

An alias of `python -m workflow_scripts.cli.evaluate score`, kept so the documented command goes on working.
"""

import sys

from workflow_scripts.cli import run_cli
from workflow_scripts.cli.evaluate import main

if __name__ == "__main__":
    sys.argv[0] = "python -m workflow_scripts.cli.evaluate"  # usage names the real command, not this file
    run_cli(lambda: main(["score", *sys.argv[1:]]))
