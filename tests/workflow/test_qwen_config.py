"""The real-model configs stand on their own: config/qwen2.5-coder-3b.yaml (GPU) and
config/qwen2.5-coder-0.5b-cpu.yaml (CPU), each merged over config.yaml, keep no demo-sized value."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config, validate

from tests.conftest import REPO

QWEN = REPO / "config" / "qwen2.5-coder-3b.yaml"
QWEN_CPU = REPO / "config" / "qwen2.5-coder-0.5b-cpu.yaml"
CONFIGS = [QWEN, QWEN_CPU]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
# Keys of config.yaml the Qwen file may leave alone: none of them depends on the demo's size.
KEPT = {
    "datasets.demo_train",  # a --configfile cannot remove a data set; nothing in the real run refers to it
    "datasets.demo_dev",
    "datasets.demo_indomain",
    "demo.seed",  # the demo data is not built in the real run
    "matching.keep_distinct",  # false = Spider's official execution match
    "matching.metric",  # spider = Spider's official execution match
    "prompt.evidence",  # auto = shown whenever the data set has it (BIRD-style)
    "alignment.ngram_max",  # the alignment paper's settings (arXiv 2510.04919)
    "alignment.alpha",
    "alignment.c",
}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def leaves(node: dict, prefix: str = "") -> Iterator[str]:
    """Dotted paths of every value of a nested mapping that is not itself a non-empty mapping."""
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{path}.")
        else:
            yield path


def lookup(node: dict, dotted: str) -> object:
    for key in dotted.split("."):
        node = node[key]
    return node


def has(node: dict, dotted: str) -> bool:
    try:
        lookup(node, dotted)
    except (KeyError, TypeError):
        return False
    return True


def merge(path: Path) -> dict:
    """config.yaml updated with a Qwen file, as Snakemake does for `--configfile` (snakemake.utils)."""
    config = load(REPO / "config.yaml")
    update_config(config, load(path))
    return config


@pytest.fixture(scope="module")
def merged() -> dict:
    return merge(QWEN)


@pytest.fixture(scope="module")
def merged_cpu() -> dict:
    return merge(QWEN_CPU)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_the_merged_config_is_valid(path: Path):
    validate(copy.deepcopy(merge(path)), str(SCHEMA))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_demo_value_is_set_again(path: Path):
    demo, qwen = load(REPO / "config.yaml"), load(path)
    kept = [p for p in leaves(demo) if not any(p == k or p.startswith(f"{k}.") for k in KEPT)]
    assert len(kept) > 100, "the walk reaches the leaves"
    missing = [path for path in kept if not has(qwen, path)]
    assert missing == [], f"the Qwen file keeps config.yaml's {missing}"


def test_the_allowlist_names_real_keys():
    demo = load(REPO / "config.yaml")
    assert all(has(demo, key) for key in KEPT)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_nothing_refers_to_the_demo_data(path: Path):
    merged = merge(path)
    used = {merged["train_dataset"], merged["eval_dataset"]}
    used |= {run["dataset"] for run in merged["runs"].values()}
    used |= {pred["dataset"] for pred in merged["predictions"].values()}
    assert used == {"spider_train", "spider_dev"}
    assert "qwen2.5-coder" in merged["model"]["path"].lower()


def test_the_published_setup(merged: dict):
    runs = merged["runs"]
    assert set(runs) == {"train_mining"} and runs["train_mining"]["limit"] == 1000
    assert merged["mining"]["runs"] == merged["training"]["sft_data"]["runs"] == ["train_mining"]
    evaluation = merged["evaluation"]
    assert evaluation["limit"] is None and evaluation["feedback_detail"] == "minimal"
    assert evaluation["variants"][:4] == ["base", "sft", "dpo", "sft_dpo"] and evaluation["max_turns"] >= 2
    # GRPO as the peers run it on one GPU: groups of 5-16, repair-aware like the evaluation, no KL term.
    grpo = merged["training"]["grpo"]
    assert {"grpo", "sft_grpo"} <= set(evaluation["variants"])
    assert 5 <= grpo["num_generations"] <= 16 and grpo["max_turns"] == 2 and grpo["beta"] == 0
    assert grpo["precision"] == "bf16" and grpo["max_steps"] >= 100
    assert merged["alignment"]["selection"]["eval_limit"] is None  # the subsets on the same 1,034 examples
    assert merged["merge"]["input_fractions"] == {"synthetic": 0.2}
    assert merged["merge"]["type_fractions"]["gold_vs_failed_attempt"] == 0.2
    for method in ("sft", "dpo"):
        assert merged["training"][method]["precision"] == "bf16"
        assert merged["training"][method]["max_steps"] is None and merged["training"][method]["epochs"] >= 1
    assert (
        merged["rollout"]["backend"] == "vllm"
        and merged["rollout"]["gpus"] == merged["training"]["gpus"] == 1
    )


def test_generation_is_long_enough_everywhere(merged: dict):
    """Every rollout (the runs; the eval runs and the repair study take `rollout`) allows 256 tokens."""
    assert merged["rollout"]["max_new_tokens"] >= 256
    for name, run in merged["runs"].items():
        assert run.get("max_new_tokens", merged["rollout"]["max_new_tokens"]) >= 256, name
    assert merged["rollout"]["vllm"]["max_model_len"] >= merged["training"]["sft"]["max_length"]


def test_sizes_fit_a_real_run(merged: dict):
    mining = merged["runs"]["train_mining"]
    assert mining["num_samples"] >= 4 and mining["temperature"] > 0.3 and mining["max_turns"] >= 2
    assert merged["rollout"]["shards"] >= 2 and merged["sandbox"]["workers"] >= 4
    # the selection subsets: fewer than the gold SQL of the mined examples alone
    assert 100 <= merged["alignment"]["selection"]["size"] < mining["limit"]
    assert merged["repair_study"]["enabled"] and merged["repair_study"]["limit"] >= 200


def test_the_cpu_config_is_the_seeds_experiment_at_laptop_scale(merged_cpu: dict):
    from workflow_scripts.core.packaged import PACKAGED_MODELS

    assert merged_cpu["model"]["path"] == "qwen2.5-coder-0.5b-instruct" in PACKAGED_MODELS
    evaluation = merged_cpu["evaluation"]
    assert evaluation["variants"] == ["base", "sft", "dpo", "sft_dpo"]
    assert evaluation["limit"] >= 200 and evaluation["feedback_detail"] == "minimal"  # a paired test's size
    assert evaluation["max_turns"] >= 2 and merged_cpu["rollout"]["max_new_tokens"] >= 256
    assert len(merged_cpu["training"]["lora"]["target_modules"]) == 7
    assert merged_cpu["merge"]["input_fractions"] == {"synthetic": 0.2}
    assert merged_cpu["merge"]["type_fractions"]["gold_vs_failed_attempt"] == 0.2
    # a CPU machine: no GPU asked for, no CUDA-only engine, both cores for one job at a time
    assert merged_cpu["rollout"]["gpus"] == merged_cpu["training"]["gpus"] == 0
    assert merged_cpu["rollout"]["backend"] in ("prefer_vllm", "transformers", "auto")
    assert not merged_cpu["training"]["grpo"]["use_vllm"]
    mining = merged_cpu["runs"]["train_mining"]
    assert mining["num_samples"] >= 4 and mining["temperature"] > 0.3 and mining["max_turns"] >= 2
    assert merged_cpu["alignment"]["selection"]["size"] < mining["limit"]


def test_the_held_out_overlay_keeps_the_data_set_names_and_validates(merged_cpu: dict):
    overlay = load(REPO / "config" / "examples" / "spider-train-heldout.yaml")
    assert set(overlay) == {"datasets"} and set(overlay["datasets"]) == {"spider_train", "spider_dev"}
    config = copy.deepcopy(merged_cpu)
    update_config(config, overlay)
    validate(config, str(SCHEMA))
    assert config["datasets"]["spider_dev"]["path"].endswith("heldout.json")
