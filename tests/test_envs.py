"""The conda environments (`--sdm conda`) install the versions the pip requirements pin."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)\s*==\s*([^\s;#]+)")
CONDA_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)\s*=+\s*([^\s=]+)")
# vLLM pins its own torch (the CUDA build it was compiled against), so the GPU environment's torch differs.
VLLM_OWNED = {"torch"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(path: Path) -> dict[str, str]:
    """{package: version} of a requirements file, following `-r` includes relative to the file."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")):
            included = path.parent / line.split(maxsplit=1)[1]
            assert included.is_file(), f"{path.name} includes {included}, which does not exist"
            pins.update(requirement_pins(included))
        elif line:
            match = PIN.match(line)
            assert match, f"{path.name}: {line!r} is not pinned with =="
            pins[normalize(match.group(1))] = match.group(2)
    return pins


def env_pins(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """({conda package: version}, {pip package: version}) of a conda environment file."""
    env = yaml.safe_load(path.read_text())
    conda: dict[str, str] = {}
    pip: dict[str, str] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                if line.startswith("-r "):
                    included = path.parent / line.split(maxsplit=1)[1]
                    assert included.is_file(), f"{path.name} installs {included}, which does not exist"
                    pip.update(requirement_pins(included))
                else:
                    match = PIN.match(line)
                    assert match, f"{path.name}: pip entry {line!r} is not pinned with =="
                    pip[normalize(match.group(1))] = match.group(2)
        elif match := CONDA_PIN.match(dep):
            conda[normalize(match.group(1))] = match.group(2)
    return conda, pip


def test_the_environments_exist_and_the_rules_use_only_them():
    assert [p.name for p in ENVS] == ["cpu.yaml", "gpu.yaml"]
    used = set()
    for smk in (REPO / "rules").glob("*.smk"):
        used |= set(re.findall(r"\"\.\./(envs/[\w.-]+\.yaml)\"", smk.read_text()))
    assert used == {"envs/cpu.yaml", "envs/gpu.yaml"}


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_environment_versions_agree_with_the_pip_requirements(env: Path):
    conda, pip = env_pins(env)
    requirements = requirement_pins(
        REPO / ("requirements-gpu.txt" if env.name == "gpu.yaml" else "requirements.txt")
    )
    assert pip == requirements
    for name, version in conda.items():
        if name in pip:
            assert pip[name] == version, f"{env.name}: conda pins {name} {version}, pip {pip[name]}"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(part) for part in requires.removeprefix(">=").split("."))
    assert tuple(int(part) for part in conda["python"].split(".")) >= minimum, f"{env.name}: python too old"


def test_cpu_environment_runs_the_workflow_and_its_slurm_executor():
    _, pip = env_pins(REPO / "envs" / "cpu.yaml")
    assert {"snakemake", "snakemake-executor-plugin-slurm", "torch", "sqlglot"} <= set(pip)


def test_gpu_environment_shares_every_version_but_the_ones_vllm_pins():
    cpu = requirement_pins(REPO / "requirements.txt")
    gpu = requirement_pins(REPO / "requirements-gpu.txt")
    assert "vllm" in gpu and "torch" in gpu
    shared = (set(cpu) & set(gpu)) - VLLM_OWNED
    assert len(shared) >= 8
    assert {name: gpu[name] for name in shared} == {name: cpu[name] for name in shared}
