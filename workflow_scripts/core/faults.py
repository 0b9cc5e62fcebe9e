"""Faults of the GPU path turned into one clear UserError that names the setting to change.

CUDA running out of memory while training or generating, and a vLLM engine that does not start (most often:
not enough free GPU memory for the weights and the KV cache), end a job with a long traceback whose cause is
a setting in config.yaml. `gpu_memory_guard` reports them in one line instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from workflow_scripts.core.errors import UserError


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is torch's out-of-memory error (CUDA or another accelerator)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    # vLLM and accelerate re-raise some as RuntimeError with CUDA's message
    return isinstance(err, torch.OutOfMemoryError) or "cuda out of memory" in str(err).lower()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


@contextlib.contextmanager
def gpu_memory_guard(what: str, fix: str) -> Iterator[None]:
    """Re-raise an out-of-memory error inside the block as a UserError: `what` ran out of memory; `fix`."""
    try:
        yield
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        raise UserError(f"{what} ran out of GPU memory ({_first_line(err)}). Fix: {fix}.") from None


def vllm_start_error(
    err: BaseException, model: str, gpu_memory_utilization: float, max_model_len: int | None
) -> UserError:
    """Return the UserError of a vLLM engine that failed to start, naming the settings behind its memory."""
    context = "the model's" if max_model_len is None else str(max_model_len)
    return UserError(
        f"the vLLM engine for {model!r} did not start ({_first_line(err)}). Fix: if other processes hold GPU "
        f"memory, lower rollout.vllm.gpu_memory_utilization (now {gpu_memory_utilization}); if the KV cache "
        f"does not fit, set rollout.vllm.max_model_len below {context} context length (e.g. 4096) or raise "
        "rollout.vllm.tensor_parallel_size to spread the model over more GPUs; or use backend: transformers."
    )
