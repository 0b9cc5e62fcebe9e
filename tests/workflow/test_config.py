"""The config schema: every key is documented, the shipped config is valid, bad values are rejected."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from tests.conftest import REPO

SCHEMA = REPO / "schemas" / "config.schema.yaml"


def resolve(node: dict, root: dict) -> dict:
    """Merge the properties that `allOf: [{$ref: ...}]` brings into `node`."""
    merged = dict(node)
    for part in [*node.get("allOf", []), *([node] if "$ref" in node else [])]:
        target = root
        for step in part["$ref"].removeprefix("#/").split("/"):
            target = target[step]
        merged["properties"] = {**target.get("properties", {}), **node.get("properties", {})}
    return merged


def schema_keys(node: dict, prefix: str = "", root: dict | None = None) -> Iterator[tuple[str, dict]]:
    """Yield (dotted key, schema) for every property; `NAME` stands for user-chosen names."""
    root = root or node
    node = resolve(node, root)
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        yield path, resolve(sub, root)
        yield from schema_keys(sub, path, root)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from schema_keys(extra, f"{prefix}.NAME" if prefix else "NAME", root)


def load_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_every_key_has_a_description_and_a_readme_entry():
    schema = yaml.safe_load(SCHEMA.read_text())
    readme = (REPO / "README.md").read_text()
    keys = list(schema_keys(schema))
    assert len(keys) > 15
    for key, sub in keys:
        assert sub.get("description"), f"{key} has no description in the schema"
        if "properties" in sub:  # sections; their keys are listed one by one
            continue
        # A run may override any rollout key: `runs.NAME.x` is documented as `rollout.x`.
        # ... and the methods share settings: `training.dpo.x` or `.grpo.x` may be documented as `.sft.x`.
        names = {key, key.replace("runs.NAME.", "rollout."), key.replace("training.dpo.", "training.sft."),
                 key.replace("training.sft.", "training.dpo."),
                 key.replace("training.grpo.", "training.sft.")}  # fmt: skip
        assert any(f"`{n}`" in readme for n in names), f"{key} is not documented in the README"


def test_shipped_config_is_valid():
    validate(load_config(), str(SCHEMA))


@pytest.mark.parametrize(
    ("dotted", "value"),
    [
        ("ingest.missing_db", "ignore"),
        ("sandbox.timeout_s", 0),
        ("sandbox.workers", 1.5),
        ("matching.keep_distinct", "no"),
        ("datasets.demo_dev.limit", 0),
        ("datasets.demo_dev.unknown", 1),
        ("model.path", ""),
        ("rollout.schema_mode", "dense"),
        ("rollout.vllm.gpu_memory_utilization", 1.5),
        ("runs.train_mining.max_turns", 0),
        ("runs.train_mining.feedback_mode", "oracle"),
        ("runs.train_mining.unknown_key", 1),
        ("alignment.alpha", 0),
        ("alignment.c", -1.0),
        ("alignment.ngram_max", 0),
        ("alignment.sample_size.k", [0]),
        ("alignment.selection.size", 0),
        ("alignment.selection.unknown", 1),
    ],
)
def test_invalid_values_are_rejected(dotted: str, value):
    config = load_config()
    node = config
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    with pytest.raises(WorkflowError):
        validate(config, str(SCHEMA))


def test_gpu_config_file_is_valid_on_top_of_the_default():
    def update(base: dict, override: dict) -> None:
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                update(base[key], value)
            else:
                base[key] = value

    config = load_config()
    update(config, yaml.safe_load((REPO / "config" / "qwen2.5-coder-3b.yaml").read_text()))
    validate(config, str(SCHEMA))
    assert config["rollout"]["backend"] == "vllm" and config["training"]["sft"]["precision"] == "bf16"


def test_a_run_takes_the_rollout_sections_value_of_a_key_it_does_not_set():
    """Snakemake's `validate` fills schema defaults into every run entry, where they would override the
    `rollout` section (a run is `{**rollout, **entry}`): the settings that runs share carry no default."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["rollout"]["chunk_size"] = 8
    validate(config, str(SCHEMA))
    entry = config["runs"]["train_mining"]
    assert {**config["rollout"], **entry}["chunk_size"] == 8
    shared = yaml.safe_load(SCHEMA.read_text())["$defs"]["rollout_settings"]["properties"]
    assert not [key for key, spec in shared.items() if "default" in spec]
