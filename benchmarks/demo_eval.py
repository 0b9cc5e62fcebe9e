"""The default main job's evaluation: each variant's EX on the eval set with its paired difference to base.

Usage: python benchmarks/demo_eval.py [--workdir DIR] [--run] [--check] [--min-gain 0.15] [--alpha 0.05]

Reads `results/evaluation/paired_one_shot.parquet`, `paired_repair.parquet` and `compare.json` under
`--workdir` (default: the repository root, where `snakemake --cores all` writes them); with `--run` it first
runs the main job's evaluation there (`snakemake --cores all results/evaluation/compare.json`, which builds
what it needs). Prints, per variant, first-turn and final EX, repair SR, and against base the first-turn ΔEX
with its bootstrap 95% CI and McNemar's p. `--check` exits 1 unless some trained variant beats base by at
least `--min-gain` first-turn EX with p < `--alpha`, and repair fixes first-turn failures in some variant
(final EX above first-turn EX): a guard against regressions of the demo's measured gains, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def variant_table(compare: pd.DataFrame, paired: pd.DataFrame) -> pd.DataFrame:
    """One row per variant: EX (first turn, final), repair SR and the first-turn comparison with base."""
    rep = compare[compare["mode"] == "repair"].set_index("variant")
    vs_base = paired[paired["a"] == "base"].set_index("b")
    rows = []
    for variant, r in rep.iterrows():
        row = {
            "variant": variant,
            "examples": int(r["examples"]),
            "first-turn EX": r["first-turn EX"],
            "final EX": r["final EX"],
            "repair SR": r["repair SR"],
        }
        if variant in vs_base.index:
            p = vs_base.loc[variant]
            row |= {
                "ΔEX vs base": p["ΔEX (b − a)"],
                "95% CI": f"[{p['95% CI low']:+.3f}, {p['95% CI high']:+.3f}]",
                "McNemar p": p["McNemar p"],
            }
        rows.append(row)
    return pd.DataFrame(rows)


def passes(table: pd.DataFrame, min_gain: float, alpha: float) -> bool:
    """Whether some trained variant beats base by `min_gain` first-turn EX with McNemar p < `alpha`."""
    trained = table.dropna(subset=["ΔEX vs base"]) if "ΔEX vs base" in table else table.iloc[0:0]
    return bool(((trained["ΔEX vs base"] >= min_gain) & (trained["McNemar p"] < alpha)).any())


def repair_fixes(table: pd.DataFrame) -> bool:
    """Whether some variant's repair turn fixed first-turn failures (final EX above first-turn EX)."""
    return bool((table["final EX"] > table["first-turn EX"]).any())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=REPO)
    parser.add_argument("--run", action="store_true", help="run the main job's evaluation first")
    parser.add_argument("--check", action="store_true", help="exit 1 unless both bars hold")
    parser.add_argument("--min-gain", type=float, default=0.15)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    if args.run:
        cmd = [sys.executable, "-m", "snakemake", "--cores", "all", "results/evaluation/compare.json"]
        subprocess.run(cmd, cwd=args.workdir, check=True)
    out = args.workdir / "results" / "evaluation"
    compare = pd.DataFrame(json.loads((out / "compare.json").read_text()))
    table = variant_table(compare, pd.read_parquet(out / "paired_one_shot.parquet"))
    with pd.option_context(
        "display.width", 160, "display.max_columns", 20, "display.float_format", "{:.3f}".format
    ):
        print(table.to_string(index=False))
    gain = passes(table, args.min_gain, args.alpha)
    fixes = repair_fixes(table)
    print(f"\nsome variant beats base by >= {args.min_gain:.0%} first-turn EX with p < {args.alpha}: {gain}")
    print(f"repair fixes first-turn failures in some variant: {fixes}")
    if args.check and not (gain and fixes):
        sys.exit(1)


if __name__ == "__main__":
    main()
