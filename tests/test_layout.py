"""The package reads like the DAG: imports go forward, only cli/ parses arguments, modules stay short."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PACKAGE = REPO / "workflow_scripts"
# Stages in the order data flows; a module may import its own stage and any earlier one, never a later one.
ORDER = ("core", "data", "rollout", "pairs", "train", "evaluation", "alignment", "report", "cli")
# Thin aliases that keep documented commands working; they belong to the CLI layer.
ALIASES = {"evaluate.py"}
MAX_LINES = 500
# The modules allowed past MAX_LINES, each with the reason it stays one module.
LONG_MODULES = {
    "core/sandbox.py": (
        "the security boundary between model-written SQL and the machine: the worker's guards "
        "(read-only URI, authorizer, progress handler, heap limit) and the parent's (wall-clock kill and "
        "replacement of a stuck worker, the pool's bookkeeping) only hold together, and are reviewed together"
    ),
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def stage_of(path: Path) -> str | None:
    """The stage a module belongs to (None for the package's own __init__)."""
    rel = path.relative_to(PACKAGE).as_posix()
    if rel in ALIASES:
        return "cli"
    parts = rel.split("/")
    return parts[0] if len(parts) > 1 else None


def imported_stages(tree: ast.Module) -> set[tuple[str, int]]:
    """(stage, line) of every `workflow_scripts.<stage>` the module imports."""
    found = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "workflow_scripts" and len(parts) > 1 and parts[1] in ORDER:
                found.add((parts[1], node.lineno))
    return found


def test_every_module_belongs_to_a_stage():
    stray = [p.relative_to(PACKAGE).as_posix() for p in modules() if stage_of(p) not in (*ORDER, None)]
    assert not stray, f"modules outside the stage subpackages {ORDER}: {stray}"
    assert [p.name for p in PACKAGE.glob("*.py")] and {p.name for p in PACKAGE.glob("*.py")} <= {
        "__init__.py",
        "evaluate.py",
    }


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_go_forward(path: Path):
    stage = stage_of(path)
    rank = ORDER.index(stage) if stage else -1
    tree = ast.parse(path.read_text())
    backward = sorted(
        f"line {line}: workflow_scripts.{target}"
        for target, line in imported_stages(tree)
        if ORDER.index(target) > rank
    )
    assert not backward, f"{path.relative_to(REPO)} ({stage}) imports a later stage: {backward}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_only_the_cli_layer_parses_arguments(path: Path):
    if stage_of(path) == "cli":
        return
    tree = ast.parse(path.read_text())
    mains = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    argparse = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Import) and any(a.name == "argparse" for a in n.names)
    ]
    assert not mains and not argparse, (
        f"{path.relative_to(REPO)} defines main() or imports argparse: move it to cli/"
    )


def lines(path: Path) -> int:
    return path.read_text().count("\n")


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_long_modules_have_a_stated_reason(path: Path):
    rel = path.relative_to(PACKAGE).as_posix()
    assert lines(path) <= MAX_LINES or LONG_MODULES.get(rel), (
        f"{path.relative_to(REPO)} has {lines(path)} lines: split it, or state why it is one module in "
        f"LONG_MODULES of {Path(__file__).relative_to(REPO)}"
    )


def test_the_long_modules_listed_are_long():
    """An entry of LONG_MODULES goes once its module is split (or gone)."""
    stale = [
        rel for rel in LONG_MODULES if not (PACKAGE / rel).is_file() or lines(PACKAGE / rel) <= MAX_LINES
    ]
    assert not stale, f"LONG_MODULES lists modules of at most {MAX_LINES} lines: {stale}"


def test_the_check_catches_a_backward_import():
    """The import check itself: a rollout module importing the CLI layer is found."""
    tree = ast.parse("from workflow_scripts.cli import run_cli\nimport workflow_scripts.core.sandbox\n")
    assert imported_stages(tree) == {("cli", 1), ("core", 2)}


def schema_defaulted(node: object) -> set[str]:
    """Names of the config keys whose default the schema sets (Snakemake's `validate` fills them in)."""
    if isinstance(node, list):
        return set().union(*map(schema_defaulted, node))
    if not isinstance(node, dict):
        return set()
    own = {key for key, spec in node.get("properties", {}).items() if "default" in spec}
    return own.union(*map(schema_defaulted, node.values()))


def test_rules_and_the_config_checks_take_defaults_from_the_schema():
    """A default written again where the config is read could drift from the schema's."""
    keys = "|".join(
        sorted(schema_defaulted(yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())))
    )
    fallback = re.compile(rf"""\.get\(\s*["']({keys})["']\s*,""")
    readers = [*sorted((REPO / "rules").glob("*.smk")), PACKAGE / "core" / "config.py"]
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in readers
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if fallback.search(line)
    ]
    assert not found, found
