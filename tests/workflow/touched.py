"""A copy of the workflow whose every output exists and is up to date, without running a job.

`complete(workdir)` creates each output Snakemake plans (an empty file, or a directory for the outputs
without a suffix: adapters, the packaged model, the demo databases) and then `snakemake --touch --forceall`
marks them done in DAG order, recording each job's params as a real run would. Dry runs on such a copy then
show what an edit reruns (`planned_rules`) in seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO

WORKFLOW_FILES = [
    "Snakefile",
    "rules",
    "schemas",
    "workflow_scripts",
    "config.yaml",
    "config",
    "envs",
    "report",
]


def copy_workflow(dest: Path) -> Path:
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--directory", str(workdir), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def complete(workdir: Path) -> Path:
    """Create every planned output of `workdir` and mark them up to date (no job runs)."""
    summary = snakemake(workdir, "--summary").stdout.splitlines()[1:]
    for line in summary:
        path = workdir / line.split("\t")[0]
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    snakemake(workdir, "--touch", "--forceall", "--quiet")
    return workdir


def set_config(workdir: Path, **changes: object) -> None:
    """Edit config.yaml as a user would: change nested keys given as dotted paths."""
    path = workdir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def planned_rules(workdir: Path) -> list[str]:
    """Rules a dry run would execute (one entry per job), from the job table `snakemake -n` prints."""
    out = snakemake(workdir, "-n", "--quiet", "rules").stdout
    if "Nothing to be done" in out:
        return []
    rules = []
    for line in out.split("Job stats:")[1].splitlines():
        parts = line.split()
        if parts and parts[0] == "total":
            break
        if len(parts) == 2 and parts[1].isdigit():
            rules += [parts[0]] * int(parts[1])
    return sorted(rules)
