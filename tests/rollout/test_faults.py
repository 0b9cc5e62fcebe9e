"""Faults of the GPU path, injected (no GPU here): CUDA out of memory while generating and a vLLM engine that
does not start each end in one UserError that names the settings to change."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from workflow_scripts.core.errors import UserError
from workflow_scripts.core.faults import gpu_memory_guard
from workflow_scripts.rollout.generation import SamplingConfig


def test_the_guard_converts_out_of_memory_only():
    import torch

    expected = r"^step ran out of GPU memory \(CUDA out of memory\.[^)]*\)\. Fix: less\.$"
    with pytest.raises(UserError, match=expected), gpu_memory_guard("step", "less"):
        raise torch.OutOfMemoryError("CUDA out of memory.")
    # as vLLM and accelerate re-raise it
    with pytest.raises(UserError, match=expected), gpu_memory_guard("step", "less"):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20 MiB")
    with pytest.raises(ValueError, match="not memory"), gpu_memory_guard("step", "less"):
        raise ValueError("not memory")


@pytest.mark.slow
def test_out_of_memory_while_generating_names_batch_size_and_max_new_tokens(default_model, monkeypatch):
    import torch

    from tests.train.test_training import prompt_of
    from workflow_scripts.rollout.generation import TransformersBackend

    backend = TransformersBackend(default_model, batch_size=16, threads=2)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")

    monkeypatch.setattr(backend, "_generate_batch", out_of_memory)
    with pytest.raises(UserError) as err:
        backend.generate([prompt_of("How many singers are there?")], SamplingConfig(max_new_tokens=256))
    message = str(err.value)
    assert message.startswith(
        "generation of a batch of 1 sequences ran out of GPU memory (CUDA out of memory"
    )
    assert "rollout.batch_size" in message and "now 16 prompts" in message and "(now 256)" in message


@pytest.mark.parametrize(
    "error",
    [
        ValueError("To serve at least one request with the models's max seq len (32768), (6.0 GiB KV cache) "
                   "is needed, which is larger than the available KV cache memory (2.1 GiB)."),
        RuntimeError("Engine core initialization failed. See root cause above."),
    ],
)  # fmt: skip
def test_a_vllm_engine_that_does_not_start_names_memory_settings(tmp_path: Path, monkeypatch, error):
    from workflow_scripts.rollout.vllm_backend import VLLMBackend

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")

    def refuse(**kwargs):
        raise error

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=refuse))  # vLLM's own start fails
    with pytest.raises(UserError) as err:
        VLLMBackend(model, gpu_memory_utilization=0.85, max_model_len=None)
    message = str(err.value)
    assert message.startswith(f"the vLLM engine for {str(model)!r} did not start ({str(error)[:40]}")
    assert "rollout.vllm.gpu_memory_utilization (now 0.85)" in message
    assert "rollout.vllm.max_model_len below the model's context length" in message
    assert "backend: transformers" in message
