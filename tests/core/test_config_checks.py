"""Cross-key checks of config.yaml (core/config.py), on the shipped configs and on broken copies of them."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.conftest import REPO
from workflow_scripts.core.config import config_problem


def shipped(*files: str) -> dict:
    """config.yaml with later files merged in key by key, as Snakemake's --configfile does."""
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for name in files:
        update_config(config, yaml.safe_load((REPO / name).read_text()))
    return config


@pytest.mark.parametrize("files", [(), ("config/qwen2.5-coder-3b.yaml",)], ids=["demo", "qwen"])
def test_the_shipped_configs_have_no_problem(files):
    assert config_problem(shipped(*files)) is None


def broken(edit) -> str | None:
    config = copy.deepcopy(shipped())
    edit(config)
    return config_problem(config)


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        (lambda c: c.update(eval_dataset="nope"), "eval_dataset names data set 'nope'"),
        (lambda c: c["evaluation"].update(num_samples=4, temperature=0.0), "evaluation.temperature > 0"),
        (lambda c: c["evaluation"].update(num_samples=1, answer="maj"), "evaluation.answer is maj"),
        (
            lambda c: c["evaluation"].update(repair_samples=4, repair_temperature=0.0),
            "evaluation.repair_temperature > 0",
        ),
        (lambda c: c["runs"]["train_mining"].update(dataset="nope"), "runs.train_mining.dataset"),
        (
            lambda c: c["mining"].update(runs=["missing_run"]),
            "mining.runs[0] names rollout run",
        ),
        (lambda c: c["synthetic"].update(run="missing_run"), "synthetic.run"),
        (lambda c: c["training"]["sft_data"].update(runs=["missing_run"]), "training.sft_data.runs[0]"),
        (lambda c: c["evaluation"].update(variants=["sft"]), "lacks `base`"),
        (lambda c: c["training"]["grpo"].update(micro_batch_size=3), "training.grpo.micro_batch_size is 3"),
    ],
)
def test_a_broken_reference_is_named_with_its_fix(edit, names):
    problem = broken(edit)
    assert problem is not None and names in problem and "Fix:" in problem


def test_sft_runs_on_two_data_sets_are_refused():
    def edit(config):
        config["runs"]["other"] = {**config["runs"]["train_mining"], "dataset": config["eval_dataset"]}
        config["training"]["sft_data"]["runs"] = ["train_mining", "other"]

    assert "different data sets" in broken(edit)


def test_without_base_the_alignment_stage_is_refused_even_without_the_study():
    def edit(config):
        config["repair_study"]["enabled"] = False
        config["evaluation"]["variants"] = ["sft"]

    assert "alignment stage" in broken(edit)
