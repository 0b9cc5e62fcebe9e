"""`python -m workflow_scripts.alignment --target T --against NAME=FILE ...`: alignment table of SQL files.

An alias of `python -m workflow_scripts.cli.alignment table`, kept so the documented command goes on working.
"""

import sys

from workflow_scripts.cli import run_cli
from workflow_scripts.cli.alignment import main

sys.argv[0] = "python -m workflow_scripts.cli.alignment"  # usage names the real command, not this file
run_cli(lambda: main(["table", *sys.argv[1:]]))
