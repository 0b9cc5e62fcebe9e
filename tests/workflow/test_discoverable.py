"""The workflow explains itself: a description per rule, the stages' commands listed, a Snakemake report."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO
from tests.workflow import touched


def defined_rules() -> set[str]:
    """Every rule the Snakefile and rules/*.smk define, `use rule ... as NAME` included."""
    text = "\n".join(p.read_text() for p in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))])
    return set(re.findall(r"^\s*rule (\w+):", text, re.M)) | set(
        re.findall(r"^use rule \w+ as (\w+)", text, re.M)
    )


def test_every_rule_has_a_one_line_description_in_list_rules():
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--list-rules"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    listed = dict(re.findall(r"^(\w+)(?: \((.+)\))?$", done.stdout, re.M))
    assert set(listed) == defined_rules() and len(listed) > 20, done.stdout
    undescribed = sorted(rule for rule, text in listed.items() if not text)
    assert not undescribed, f"rules without a docstring: {undescribed}"
    # `use rule ... with:` gets its own description, not the one of the rule it reuses
    assert listed["train_sft_dpo"] != listed["train_dpo"] and listed["train_sft_grpo"] != listed["train_grpo"]


def test_the_cli_package_lists_every_stage_with_its_purpose():
    done = subprocess.run(
        [sys.executable, "-m", "workflow_scripts.cli"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    stages = sorted(
        p.stem for p in (REPO / "workflow_scripts" / "cli").glob("*.py") if not p.stem.startswith("_")
    )
    assert len(stages) >= 8
    for stage in stages:
        (line,) = [x for x in done.stdout.splitlines() if f"python -m workflow_scripts.cli.{stage} " in x]
        assert len(line.split(f"cli.{stage} ", 1)[1].strip()) > 20, line  # its one-line purpose
    # every stage a rule runs is listed
    rules_text = "".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    assert set(re.findall(r"workflow_scripts\.cli\.(\w+)", rules_text)) <= set(stages)


def test_snakemake_report_holds_the_html_page_and_the_key_tables(completed: Path):
    out = completed / "report.zip"
    touched.snakemake(completed, "--report", str(out))
    names = [Path(n).name for n in zipfile.ZipFile(out).namelist()]
    assert "report.html" in names
    for item in (
        "index.html",
        "compare.parquet",
        "paired_repair.parquet",
        "alignment.parquet",
        "study.parquet",
    ):
        assert item in names, names
    page = zipfile.ZipFile(out).read(
        next(n for n in zipfile.ZipFile(out).namelist() if n.endswith("report.html"))
    )
    assert b"Execution-guided Text-to-SQL post-training" in page  # report/workflow.rst
