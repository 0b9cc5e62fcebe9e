"""Cross-key checks of config.yaml (core/config.py), on the shipped configs and on broken copies of them."""

from __future__ import annotations

import copy
import os

import pytest
import yaml

from tests.conftest import REPO
from workflow_scripts.core.config import config_problem, path_problems


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


# --- paths the run reads (path_problems) ----------------------------------------------------------------

DEMO_BUILT = [
    f"resources/demo/{n}" for n in ("train.json", "dev.json", "indomain.json", "tables.json", "database")
]


def test_the_demo_config_reads_only_what_the_workflow_builds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing of the demo exists here: rule demo_data and packaged_model build it
    assert path_problems(shipped(), built=DEMO_BUILT) == []
    # without rule demo_data's outputs, every path of the two used demo sets is named (not demo_indomain)
    problems = path_problems(shipped())
    assert len(problems) == 6 and all("Fix:" in p for p in problems), problems
    assert not any("demo_indomain" in p for p in problems)
    assert any("datasets.demo_dev.db_root is 'resources/demo/database' (relative to" in p for p in problems)


def test_the_qwen_config_names_every_missing_spider_path_and_the_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = shipped("config/qwen2.5-coder-3b.yaml")
    spider_paths = [p for d in ("spider_train", "spider_dev") for p in config["datasets"][d].values() if p]
    gone = [p for p in spider_paths if not os.path.exists(p)]
    problems = path_problems(config, built=DEMO_BUILT)
    keys = [p.split(" is ")[0].removeprefix("config key ") for p in problems]
    expected = [
        f"datasets.{d}.{f}" for d in ("spider_dev", "spider_train") for f in ("path", "db_root", "tables")
    ]
    if len(gone) == len(spider_paths):  # a machine without /data/spider
        assert keys[:6] == expected
    assert keys[-1] == "model.path" and "neither a directory here nor a packaged model's name" in problems[-1]


def _real_dataset(root) -> dict:
    (root / "db").mkdir(parents=True)
    (root / "dev.json").write_text("[]")
    (root / "tables.json").write_text("[]")
    return {"path": str(root / "dev.json"), "db_root": str(root / "db"), "tables": str(root / "tables.json")}


def test_every_broken_path_is_named_with_its_key_and_fix_all_at_once(tmp_path):
    config = copy.deepcopy(shipped())
    data = _real_dataset(tmp_path)
    config["datasets"]["demo_dev"] = data
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    config["model"]["path"] = str(model)
    preds = tmp_path / "pred.sql"
    preds.write_text("SELECT 1\n")
    config["predictions"] = {"mine": {"dataset": "demo_dev", "path": str(preds)}}
    config["runs"]["tuned"] = {"dataset": "demo_dev", "adapter": "results/adapters/sft"}
    assert path_problems(config, built=DEMO_BUILT + ["results/adapters/sft"]) == []

    (tmp_path / "tables.json").unlink()
    (model / "config.json").unlink()
    preds.unlink()
    config["runs"]["tuned"]["adapter"] = str(tmp_path / "no_adapter")
    config["runs"]["other"] = {"dataset": "demo_dev", "model": str(tmp_path / "nope")}
    problems = path_problems(config, built=DEMO_BUILT + ["results/adapters/sft"])
    named = {
        "datasets.demo_dev.tables": str(tmp_path / "tables.json"),
        "model.path": str(model),
        "runs.other.model": str(tmp_path / "nope"),
        "runs.tuned.adapter": str(tmp_path / "no_adapter"),
        "predictions.mine.path": str(preds),
    }
    assert len(problems) == len(named), problems
    for key, path in named.items():
        (message,) = [p for p in problems if p.startswith(f"config key {key} is {path!r}")]
        assert "Fix:" in message
    assert any("without config.json" in p for p in problems)


def test_an_unused_data_set_is_not_checked(tmp_path):
    config = copy.deepcopy(shipped())
    config["datasets"]["elsewhere"] = {"path": str(tmp_path / "missing.json"), "db_root": None}
    assert path_problems(config, built=DEMO_BUILT) == []
    config["runs"]["probe"] = {"dataset": "elsewhere"}
    (problem,) = path_problems(config, built=DEMO_BUILT)
    assert problem.startswith(f"config key datasets.elsewhere.path is {str(tmp_path / 'missing.json')!r}")
