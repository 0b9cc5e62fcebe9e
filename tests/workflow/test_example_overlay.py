"""config/examples/my-paths.yaml, the README's own-data overlay, names keys of the config it is laid over."""

from __future__ import annotations

import copy
import re

import yaml
from snakemake.utils import update_config, validate

from tests.conftest import REPO
from tests.workflow.test_qwen_config import QWEN, SCHEMA, has, leaves, load, lookup

OVERLAY = REPO / "config" / "examples" / "my-paths.yaml"


def merged(overlay: dict) -> dict:
    """config.yaml, then the Qwen file, then the overlay, as `--configfile QWEN OVERLAY` merges them."""
    config = load(REPO / "config.yaml")
    update_config(config, load(QWEN))
    update_config(config, overlay)
    return config


def test_the_overlay_over_the_qwen_config_is_valid():
    config = merged(load(OVERLAY))
    validate(copy.deepcopy(config), str(SCHEMA))
    assert config["model"]["path"] == load(OVERLAY)["model"]["path"]


def test_the_overlay_only_replaces_paths_the_qwen_config_has():
    overlay, qwen = load(OVERLAY), load(QWEN)
    paths = list(leaves(overlay))
    assert "model.path" in paths and "datasets.spider_dev.db_root" in paths
    assert [p for p in paths if not has(qwen, p)] == []
    assert all(isinstance(lookup(overlay, p), str) for p in paths)


def test_its_commented_test_suite_key_is_a_schema_key():
    text = OVERLAY.read_text()
    assert "# test_suite_root:" in text
    overlay = yaml.safe_load(re.sub(r"# (test_suite_root:)", r"\1", text))
    validate(copy.deepcopy(merged(overlay)), str(SCHEMA))


def test_the_readme_names_the_overlay():
    readme = (REPO / "README.md").read_text()
    assert "--configfile config/qwen2.5-coder-3b.yaml config/examples/my-paths.yaml" in readme
