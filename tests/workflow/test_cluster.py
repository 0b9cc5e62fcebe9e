"""Running beyond one machine: the profiles, the rules' scheduler resources, lint, and the SLURM proof."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from scripts import slurm_proof
from tests.conftest import REPO

GPU_RESOURCES = {"gpu", "cpus_per_gpu", "mem_mb", "runtime"}
JOB = re.compile(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", re.M)


# Every variant, including those the demo's config leaves out for time (train_dpo, train_grpo): the
# profiles must know every rule. Snakemake merges --config into config.yaml key by key.
ALL_VARIANTS = ["--config", "evaluation={variants: [base, sft, dpo, sft_dpo, grpo, sft_grpo]}"]


def declared_resources() -> dict[str, set[str]]:
    """The resource names of every rule's jobs, as Snakemake resolves them in a dry run of the main job
    with every variant."""
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--forceall", *ALL_VARIANTS],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found: dict[str, set[str]] = {}
    for rule, resources in JOB.findall(done.stdout):
        found.setdefault(rule, set()).update(item.split("=", 1)[0] for item in resources.split(", "))
    assert "rollout_shard" in found and "report" in found, done.stdout[-2000:]
    return found


def profile(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())


def test_gpu_rules_declare_their_scheduler_resources():
    rules = declared_resources()
    gpu_rules = {rule for rule, names in rules.items() if "gpu" in names}
    assert {
        "rollout_shard",
        "train_sft",
        "train_dpo",
        "train_sft_dpo",
        "train_grpo",
        "train_sft_grpo",
    } <= gpu_rules
    for rule in gpu_rules:
        assert rules[rule] >= GPU_RESOURCES, f"rule {rule} lacks {GPU_RESOURCES - rules[rule]}"
    # CPU rules stay small: they take the profile's defaults.
    assert all(not names & {"gpu", "cpus_per_gpu"} for rule, names in rules.items() if rule not in gpu_rules)


def test_slurm_profile_sends_every_gpu_rule_to_a_gpu_partition():
    shipped = profile("slurm")
    rules = declared_resources()
    gpu_rules = {rule for rule, names in rules.items() if "gpu" in names}
    assert shipped["executor"] == "slurm"
    assert {"jobs", "latency-wait", "retries"} <= set(shipped)
    assert {"slurm_account", "slurm_partition", "mem_mb", "runtime"} <= set(shipped["default-resources"])
    assert set(shipped["set-resources"]) <= set(rules), "set-resources names a rule that does not exist"
    assert set(shipped["set-resources"]) == gpu_rules
    for rule, resources in shipped["set-resources"].items():
        assert resources["slurm_partition"] == "YOUR_GPU_PARTITION", rule


def test_local_profile_limits_gpu_jobs_to_the_machines_gpus():
    local = profile("local")
    assert local["cores"] == "all" and local["resources"]["gpu"] >= 1


@pytest.mark.parametrize("name", ["local", "slurm"])
def test_profiles_plan_the_whole_workflow(tmp_path: Path, name: str):
    """A dry run with each profile parses it and evaluates every rule's resources."""
    for item in ["Snakefile", "rules", "schemas", "workflow_scripts", "config.yaml", "profiles", "envs"]:
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    cmd = [sys.executable, "-m", "snakemake", "-n", "--profile", f"profiles/{name}", "--quiet", "rules"]
    cmd += ALL_VARIANTS
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for rule in ["demo_data", "ingest", "rollout_shard", "train_dpo", "report"]:
        assert re.search(rf"^{rule}\s+\d+$", done.stdout, re.M), f"{rule} not planned:\n{done.stdout}"


def test_snakemake_lint_reports_nothing():
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0 and "Lints for" not in done.stdout + done.stderr, done.stdout + done.stderr


# ---------------------------------------------------------------- the proof's own logic


def test_proof_profile_fills_the_placeholders_of_the_shipped_profile():
    shipped = profile("slurm")
    filled = slurm_proof.proof_profile(shipped, "proof")
    text = json.dumps(filled)
    assert not any(p in text for p in slurm_proof.PLACEHOLDERS)
    assert "slurm_account" not in filled["default-resources"]
    assert filled["default-resources"]["slurm_partition"] == "proof"
    for rule, resources in filled["set-resources"].items():
        assert resources["slurm_partition"] == "proof"
        assert resources["mem_mb"] == shipped["set-resources"][rule]["mem_mb"]
    assert filled["jobs"] == shipped["jobs"] and filled["retries"] == shipped["retries"]


def test_gpu_request_is_read_from_sbatch_arguments():
    args = ["--parsable", "--job-name", "abc", "-p", "gpu", "-t", "240", "--mem", "32000", "--cpus-per-gpu=4",
            "-D", "/w", "--gpus=2", "--wrap=python -m snakemake --target-jobs 'x:y=1'"]  # fmt: skip
    options = slurm_proof.sbatch_options(args)
    assert options["--gpus"] == "2" and options["-t"] == "240" and options["--mem"] == "32000"
    assert options["--wrap"].startswith("python -m snakemake")
    prof = {
        "default-resources": {"mem_mb": 4000, "runtime": 60, "slurm_partition": "cpu"},
        "set-resources": {"rollout_shard": {"mem_mb": 32000, "runtime": 240, "slurm_partition": "gpu"}},
    }
    expected = slurm_proof.expected_gpu_request(prof, gpus=2, threads=8, rule="rollout_shard")
    assert slurm_proof.request_problems(options, expected) == []
    without_gpu = slurm_proof.sbatch_options([a for a in args if not a.startswith("--gpus")])
    assert slurm_proof.request_problems(without_gpu, expected) == ["--gpus: expected 2, got (missing)"]


def write_run(root: Path, value: int, elapsed: float) -> Path:
    (root / "results" / "data").mkdir(parents=True)
    (root / "results" / "logs").mkdir()
    (root / "resources" / "demo").mkdir(parents=True)
    df = pd.DataFrame({"id": ["a", "b"], "n_rows": [value, 2], "elapsed_s": [elapsed, elapsed]})
    df.to_parquet(root / "results" / "data" / "gold.parquet")
    (root / "results" / "data" / "summary.json").write_text(
        json.dumps({"records": 2, "gold_exec_seconds": elapsed})
    )
    (root / "results" / "logs" / "ingest.log").write_text(f"took {elapsed}")
    conn = sqlite3.connect(root / "resources" / "demo" / "db.sqlite")
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.execute("INSERT INTO t VALUES (?)", (value,))
    conn.commit()
    conn.close()
    return root


def test_run_comparison_ignores_timings_and_logs_but_not_content(tmp_path: Path):
    a = write_run(tmp_path / "a", value=1, elapsed=0.1)
    b = write_run(tmp_path / "b", value=1, elapsed=9.9)
    assert len(slurm_proof.artifacts(a)) == 3
    assert slurm_proof.run_differences(a, b) == []
    c = write_run(tmp_path / "c", value=5, elapsed=0.1)
    (c / "results" / "extra.json").write_text("{}")
    problems = slurm_proof.run_differences(a, c)
    assert any(p.startswith("results/data/gold.parquet: column 'n_rows'") for p in problems)
    assert any(p.startswith("resources/demo/db.sqlite") for p in problems)
    assert any(p.startswith("results/extra.json: only in") for p in problems)


# ---------------------------------------------------------------- the proof on a real SLURM


def proof_unavailable() -> str | None:
    if shutil.which("slurmctld") is None:
        return "SLURM is not installed (apt-get install slurm-wlm munge; .ci/run does)"
    if os.geteuid() != 0:
        return "slurmd needs root"
    if slurm_proof.SYSTEM_CONF.exists() or (slurm_proof.CONF_DIR / "slurm.conf").exists():
        return "a SLURM is already configured on this machine"
    return None


@pytest.mark.skipif(proof_unavailable() is not None, reason=str(proof_unavailable()))
def test_demo_stages_run_through_a_real_slurm_as_they_run_locally():
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "slurm_proof.py")],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SLURM proof passed" in done.stdout
    assert re.search(r"SLURM run: 5 jobs .* all COMPLETED in sacct", done.stdout), done.stdout
    assert "--gpus 1 --cpus-per-gpu 2" in done.stdout
    assert re.search(r"training job \d+ requeued after checkpoint-\d+, resumed at step [1-9]", done.stdout)
    assert not (slurm_proof.CONF_DIR / "slurm.conf").exists()
