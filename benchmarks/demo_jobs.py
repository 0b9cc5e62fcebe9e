"""The demo's rollout jobs, as the workflow runs them, with each generation backend.

Usage: python benchmarks/demo_jobs.py [--runs train_mining,eval_base,eval_sft]
                                      [--backends auto,prefer_vllm,prefer_vllm:mp]

Needs a finished main job in this checkout (`snakemake --cores all`: ingested data and the SFT adapter). For
each run and backend it takes the shard command Snakemake would run (`snakemake -n -p`), sets the run's
`backend`, runs it as its own process into a temporary directory and prints the job's wall time (process
start to exit: imports, model or engine start, rollout, shutdown), the rollout's own time from the job's log,
first-turn and final EX, and how many candidates have the same SQL as under the first backend listed.
`BACKEND:mp` runs vLLM's engine in child processes, vLLM's own default (`VLLM_ENABLE_V1_MULTIPROCESSING=1`),
where a stage command on a CPU runs it in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from benchmarks.common import REPO, tempdir  # noqa: E402


def shard_command(run: str) -> list[str]:
    """The argument list of run `run`'s shard 0 as Snakemake plans it (its output and log left off)."""
    target = f"results/rollouts/{run}/shards/0.parquet"
    plan = subprocess.run(
        ["snakemake", "-n", "-p", "--cores", "2", "--forcerun", target, "--", target],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    line = next(ln for ln in plan.splitlines() if "cli.rollout shard" in ln and f"--run {run} " in ln)
    command = line.removeprefix("Shell command: ").split(" > ")[0]
    return shlex.split(command)


def with_backend(command: list[str], backend: str, out: Path) -> list[str]:
    """`command` with its run's backend set to `backend` and its output at `out`."""
    args = list(command)
    settings = json.loads(args[args.index("--settings") + 1])
    args[args.index("--settings") + 1] = json.dumps({**settings, "backend": backend})
    args[args.index("--out") + 1] = str(out)
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", default="train_mining,eval_base,eval_sft")
    parser.add_argument("--backends", default="auto,prefer_vllm,prefer_vllm:mp")
    args = parser.parse_args()
    backends = args.backends.split(",")
    print(f"{'run':<14} {'backend':<15} {'job s':>7} {'rollout s':>9} {'cands':>6} {'EX 1st':>7} "
          f"{'final':>6}  same SQL as {backends[0]}")  # fmt: skip
    with tempdir() as tmp:
        for run in args.runs.split(","):
            command, first = shard_command(run), None
            for backend in backends:
                kind, _, mode = backend.partition(":")
                out = Path(tmp) / f"{run}-{kind}-{mode}.parquet"
                env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"} if mode == "mp" else None
                start = time.perf_counter()
                job = subprocess.run(
                    with_backend(command, kind, out), cwd=REPO, env=env, capture_output=True, text=True
                )
                job_s = time.perf_counter() - start
                if job.returncode != 0:
                    print(f"{run:<14} {backend:<15} failed ({job.returncode}): {job.stderr[-300:]}")
                    continue
                rolled = re.search(r"rolled out in ([0-9.]+) s", job.stderr)
                rollout_s = float(rolled[1]) if rolled else float("nan")
                table = pd.read_parquet(out)
                first = table if first is None else first
                same = first[["candidate_id", "sql"]].merge(table[["candidate_id", "sql"]], on="candidate_id")
                print(
                    f"{run:<14} {backend:<15} {job_s:7.1f} {rollout_s:9.1f} "
                    f"{len(table):6d} {table[table['turn'] == 1]['correct'].mean():7.1%} "
                    f"{table.groupby('example_id')['correct'].any().mean():6.1%}  "
                    f"{int((same['sql_x'] == same['sql_y']).sum())} / {len(first)}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
