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

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from workflow_scripts.core.errors import UserError
from workflow_scripts.core.faults import gpu_memory_guard
from workflow_scripts.core.model import check_model_dir

Messages = list[dict[str, str]]
BackendKind = Literal["auto", "prefer_vllm", "vllm", "transformers"]
# Why generation of a completion ended: a stop string, the model's end-of-sequence token, the token budget
# (`max_new_tokens`: the SQL may be cut off), or not at all because the prompt does not fit the context.
FinishReason = Literal["stop", "eos", "length", "prompt_too_long"]


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample: `temperature == 0` is greedy decoding, whose `num_samples` completions are identical."""

    num_samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0
    stop: tuple[str, ...] = ()  # generation of a sequence ends after any of these strings
    logprobs: bool = False  # report each completion's summed token log-probability (Completion.logprob)

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
    # summed log-probability of the generated tokens, when the backend reports it (voting's tie-break)
    logprob: float | None = None
    # prompt tokens the engine served from its prefix cache instead of computing them (vLLM)
    cached_tokens: int = 0


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


def lora_rank(adapter_path: Path) -> int:
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

        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=self.dtype)
        if adapter_path is not None:
            model = merge_adapter(model, Path(adapter_path))
        self._use(model.to(self.device).eval(), AutoTokenizer.from_pretrained(model_path))

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, batch_size: int = 8) -> TransformersBackend:
        """A backend over a model already loaded (e.g. the policy a trainer updates), on the model's device.

        The caller keeps the model's mode: generate with it in eval mode. `tokenizer` is set to pad on the
        left, so pass one the caller does not share.
        """
        backend = cls.__new__(cls)
        backend.device, backend.dtype = model.device, model.dtype
        backend.batch_size, backend.progress = batch_size, False
        backend._use(model, tokenizer)
        return backend

    def _use(self, model: Any, tokenizer: Any) -> None:
        """Generate with `model` and `tokenizer` (left padding, a pad token, the model's stop ids)."""
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = model
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
            with gpu_memory_guard(f"generation of a batch of {len(rows)} sequences", self._oom_fix(sampling)):
                outputs = self._generate_batch(
                    [prompt_ids[i] for i, _ in rows], sampling, sampling.seed + index
                )
            done.update(zip(rows, outputs, strict=True))
        return [
            [done[(i, s if copies > 1 else 0)] for s in range(sampling.num_samples)]
            if fits[i]
            else too_long(len(prompt_ids[i]), sampling.num_samples)
            for i in range(len(prompts))
        ]

    def _oom_fix(self, sampling: SamplingConfig) -> str:
        return (
            f"lower rollout.batch_size (or the run's batch_size; now {self.batch_size} prompts per batch) or "
            f"max_new_tokens (now {sampling.max_new_tokens}); the batch holds num_samples copies of a "
            "sampled prompt"
        )

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
        if sampling.logprobs:
            kwargs |= {"output_scores": True, "return_dict_in_generate": True}
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
        token_logprobs = None
        if sampling.logprobs:
            # log-probabilities of the chosen tokens under the (temperature-scaled) sampling distribution
            token_logprobs = self.model.compute_transition_scores(
                output.sequences, output.scores, normalize_logits=True
            ).tolist()
            output = output.sequences
        new_tokens = output[:, padded["input_ids"].shape[1] :].tolist()
        completions = []
        for row, (ids, generated) in enumerate(zip(batch_ids, new_tokens, strict=True)):
            # Rows that ended early on a stop string are padded after it: cut there too, and do not count
            # the padding, whose presence depends on the other rows of the batch.
            ends = (*self.stop_ids, self.tokenizer.pad_token_id)
            generated = generated[: _count_until_stop(generated, ends)]
            if sampling.stop and generated and generated[-1] in ends:
                head = self.tokenizer.decode(generated[:-1], skip_special_tokens=True).rstrip()
                if head.endswith(tuple(sampling.stop)):
                    generated = generated[:-1]
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            logprob = None
            if token_logprobs is not None:
                logprob = float(sum(v for v in token_logprobs[row][: len(generated)] if math.isfinite(v)))
            completions.append(
                Completion(
                    text=text,
                    prompt_tokens=len(ids),
                    completion_tokens=len(generated),
                    latency_s=latency,
                    finish_reason=_finish_reason(text, generated, ends, sampling),
                    logprob=logprob,
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


def merge_adapter(model: Any, adapter_path: Path) -> Any:
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
