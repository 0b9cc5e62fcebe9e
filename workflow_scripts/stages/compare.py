"""Stage `compare`: the evaluation matrix of the trained variants from their eval rollouts.

python -m workflow_scripts.stages.compare --variant NAME=ROLLOUT_DIR ... --out-dir DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from workflow_scripts.artifacts import write_json, write_parquet
from workflow_scripts.errors import run_cli
from workflow_scripts.evaluation import compare_table, outcomes, paired_stats, routing, taxonomy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=ROLLOUT_DIR")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    results = {}
    for item in args.variant:
        name, _, path = item.partition("=")
        results[name] = outcomes(pd.read_parquet(Path(path) / "trajectories.parquet"))
    tables = {
        "compare": compare_table(results),
        "taxonomy": taxonomy(results),
        "routing": routing(results),
        "paired_one_shot": paired_stats(results, "first_correct", seed=args.seed),
        "paired_repair": paired_stats(results, "final_correct", seed=args.seed),
        "outcomes": pd.concat(
            {n: o for n, o in results.items()}, names=["variant", "example_id"]
        ).reset_index(),
    }
    for name, table in tables.items():
        write_parquet(table, args.out_dir / f"{name}.parquet", {"variants": list(results)})
    write_json(json.loads(tables["compare"].to_json(orient="records")), args.out_dir / "compare.json")


if __name__ == "__main__":
    run_cli(main)
