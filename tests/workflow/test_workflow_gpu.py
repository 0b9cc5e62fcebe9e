"""GPU jobs of the real run (config/qwen2.5-coder-3b.yaml): one at a time on one machine, not on a cluster.

Each test runs the real Snakemake on a copy of the workflow with the Qwen config merged over config.yaml, its
Spider paths pointed at the demo data and its model path at a directory holding only config.json (planning
only needs the inputs to exist; no job of a GPU rule runs). The workflow profile (profiles/default) provides
`gpu: 1`.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from scripts import slurm_proof
from tests.conftest import REPO

pytestmark = pytest.mark.slow

COPIED = ["Snakefile", "rules", "schemas", "workflow_scripts", "config.yaml", "config", "profiles", "envs"]
QWEN = "config/qwen2.5-coder-3b.yaml"
GPU_RULES = {
    "rollout_shard", "train_sft", "train_dpo", "train_sft_dpo", "train_grpo", "train_sft_grpo",
    "train_sft_subset", "repair_study",
}  # fmt: skip
# 9 rollout runs (train_mining, 6 variants, 2 selection subsets) of 4 shards, 7 trainings, the repair study
GPU_JOBS = 9 * 4 + 7 + 1
JOB = re.compile(r"^(?:local)?rule (\w+):$")
RESOURCES_BEFORE = re.compile(r"^Resources before job selection: (\{.*\})$", re.M)
FAKE_SBATCH = """#!/bin/bash
echo "$*" >> "$FAKE_SBATCH_LOG"
wc -l < "$FAKE_SBATCH_LOG"
"""


@pytest.fixture
def workdir(tmp_path: Path, demo_dir: Path) -> Path:
    """A copy of the workflow plus `overlay.yaml`: the Qwen run's data and model paths set to small files."""
    work = tmp_path / "workflow"
    work.mkdir()
    for name in COPIED:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    (work / "model").mkdir()
    (work / "model" / "config.json").write_text("{}")  # the config check wants a model's config.json
    spider = {"path": None, "db_root": str(demo_dir / "database"), "tables": str(demo_dir / "tables.json")}
    overlay = {
        "datasets": {
            "spider_train": {**spider, "path": str(demo_dir / "train.json")},
            "spider_dev": {**spider, "path": str(demo_dir / "dev.json")},
        },
        "model": {"path": "model"},
    }
    (work / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    return work


def snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run snakemake on the Qwen config in `workdir` (the workflow profile applies); return its output."""
    cmd = [sys.executable, "-m", "snakemake", "--configfile", QWEN, "overlay.yaml", *args]
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"snakemake {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def jobs(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, {resource: value}) of every job Snakemake printed, in order."""
    found: list[tuple[str, dict[str, str]]] = []
    for line in output.splitlines():
        if match := JOB.match(line):
            found.append((match.group(1), {}))
        elif found and line.startswith("    resources: "):
            pairs = line.removeprefix("    resources: ").split(", ")
            found[-1][1].update(pair.split("=", 1) for pair in pairs)
    return found


def rounds(output: str) -> list[tuple[dict, list[tuple[str, dict[str, str]]]]]:
    """Scheduler rounds of a verbose run: (resources free before selection, jobs started in the round)."""
    starts = list(RESOURCES_BEFORE.finditer(output))
    return [
        (
            ast.literal_eval(m.group(1)),
            jobs(output[m.end() : starts[i + 1].start() if i + 1 < len(starts) else None]),
        )
        for i, m in enumerate(starts)
    ]


def gpu_jobs_per_round(output: str) -> list[int]:
    return [sum(int(res.get("gpu", 0)) for _, res in started) for _, started in rounds(output)]


def test_the_real_run_plans_its_own_data_and_every_gpu_job_asks_for_one_gpu(workdir: Path):
    output = snakemake(workdir, "-n", "--cores", "16")
    planned = jobs(output)
    rules = [rule for rule, _ in planned]
    assert "demo_data" not in rules and "default_model" not in rules, "the demo is built in a run on Spider"
    assert rules.count("ingest") == 2
    assert set(re.findall(r"wildcards: dataset=(\w+)", output)) == {"spider_dev", "spider_train"}
    gpu = [(rule, res) for rule, res in planned if rule in GPU_RULES]
    assert len(gpu) == GPU_JOBS and {rule for rule, _ in gpu} == GPU_RULES
    assert all(res.get("gpu") == "1" for _, res in gpu), [(r, res) for r, res in gpu if res.get("gpu") != "1"]
    assert all(int(res.get("gpu", 0)) == 0 for rule, res in planned if rule not in GPU_RULES)


def test_one_machine_runs_one_gpu_job_at_a_time(workdir: Path):
    """--touch runs the real scheduler (jobs finish at once): no round may start two GPU jobs."""
    output = snakemake(workdir, "--touch", "--verbose", "--cores", "64")
    assert re.search(r"^Provided resources: .*gpu", output, re.M)
    steps = rounds(output)
    assert steps and all(free["gpu"] == 1 for free, _ in steps), "the workflow profile provides gpu=1"
    per_round = gpu_jobs_per_round(output)
    assert sum(per_round) == GPU_JOBS and max(per_round) == 1
    # With 64 cores CPU jobs still run beside a GPU job.
    assert any(len(started) > 1 and n == 1 for (_, started), n in zip(steps, per_round, strict=True))


def test_resources_gpu_on_the_command_line_allows_that_many(workdir: Path):
    output = snakemake(workdir, "--touch", "--verbose", "--cores", "64", "--resources", "gpu=4")
    assert rounds(output)[0][0]["gpu"] == 4
    per_round = gpu_jobs_per_round(output)
    assert sum(per_round) == GPU_JOBS and max(per_round) == 4  # e.g. the 4 shards of a run at once


def test_a_cluster_submits_gpu_jobs_at_once_despite_the_limit(workdir: Path, tmp_path: Path):
    """The SLURM executor leaves the local `gpu` scope out of its tally: all 4 ready GPU shards are submitted.

    The shipped SLURM profile (placeholders filled in) with stubs for sbatch (it records its arguments),
    squeue, sacct, sinfo, scontrol and scancel. Without `resource_scopes: gpu="local"` in the Snakefile the
    workflow profile's gpu=1 would let only one shard be submitted at a time.
    """
    snakemake(workdir, "--cores", "2", "--", "results/data/spider_train/summary.json")  # a real ingest
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in ("sbatch", "squeue", "sacct", "sinfo", "scontrol", "scancel"):
        (stubs / tool).write_text(FAKE_SBATCH if tool == "sbatch" else "#!/bin/bash\nexit 0\n")
        (stubs / tool).chmod(0o755)
    shipped = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    (workdir / "proof").mkdir()
    (workdir / "proof" / "config.yaml").write_text(yaml.safe_dump(slurm_proof.proof_profile(shipped, "gpu")))
    log = tmp_path / "sbatch.log"
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "FAKE_SBATCH_LOG": str(log)}
    targets = [f"results/rollouts/train_mining/shards/{i}.parquet" for i in range(4)]
    cmd = [sys.executable, "-m", "snakemake", "--profile", "proof", "--configfile", QWEN, "overlay.yaml"]
    out = tmp_path / "snakemake.out"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [*cmd, "--", *targets], cwd=workdir, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    calls: list[str] = []
    try:  # it would wait for the stub jobs forever: stop it once every shard is submitted (or after 90 s)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            calls = log.read_text().splitlines() if log.is_file() else []
            if len({re.search(r"--comment (\S+)", call).group(1) for call in calls}) == len(targets):
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    text = out.read_text()
    assert re.search(r"^Provided resources: .*gpu", text, re.M), text
    submitted = {re.search(r"--comment (\S+)", call).group(1) for call in calls}
    assert submitted == {f"rule_rollout_shard_wildcards_train_mining_{i}" for i in range(4)}, text[-3000:]
    assert all("--gpus=1" in call for call in calls)
