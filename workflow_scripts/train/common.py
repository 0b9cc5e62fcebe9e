"""What the LoRA trainers share: loading the policy, trl's common arguments, the training run and its
metrics, and saving the one adapter into place only when the run succeeded.

Measured on a 2-core CPU (SmolLM2-135M, r=16 on q/k/v/o, batch 4, ~365-token sequences, fp32, gradient
checkpointing; benchmarks/train.py and its README): bf16 autocast is slower at that size, so precision "auto"
means bf16 on a CUDA GPU and fp32 elsewhere; at 0.5B bf16 is faster (benchmarks/README.md, "CPU limit"), and
the 0.5B CPU config asks for it. On CPU trl's fused LM head is made to score the completion tokens only
(`completion_only_lm_head`), which halves DPO's memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from workflow_scripts.core.errors import UserError
from workflow_scripts.core.faults import gpu_memory_guard
from workflow_scripts.train.checkpoints import (
    Resume,
    checkpoint_callback,
    checkpoint_step,
    oom_fix,
    point_tensorboard,
)
from workflow_scripts.train.settings import LoraSettings, TrainSettings

# Keys of trl's log entries that the returned metrics keep per logged step.
LOGGED_KEYS = (
    "loss",
    "grad_norm",
    "learning_rate",
    "rewards/accuracies",
    "rewards/margins",
    "rewards/chosen",
    "rewards/rejected",
    "mean_token_accuracy",
)


@contextlib.contextmanager
def completion_only_lm_head() -> Iterator[None]:
    """Make trl's fused LM head score only the completion tokens on CPU too, while the block runs.

    trl 1.16 (SFT and DPO) computes per-token log-probs with a fused, tiled LM head. On devices with Triton
    it scores only the positions that have a label (the completion); elsewhere it scores every position,
    prompt included, so that tile shapes stay fixed for compilers such as Neuron's. On CPU that is pure
    waste: with ~330-token prompts and ~30-token SQL, it projects 10x more positions through the 49k-word
    head in tiles of up to 4096 x 32768 floats. Measured here (benchmarks/train.py: batch 4, ~365 tokens,
    fp32, checkpointing), scoring every position -> the completion only: DPO 6.8 -> 3.7 GiB peak RSS and
    30.1 -> 16.5 s/step; SFT 3.6 -> 2.1 GiB and 16.6 -> 11.2 s/step; the log-probs are the same. trl
    decides through `trl.trainer.utils._use_triton` (bound there at import; the kernels keep their own
    reference, so they still run their torch code on CPU). With a trl that lacks it, nothing changes.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original


def load_model(model_path: Path, settings: TrainSettings) -> tuple[Any, Any, Any]:
    """Return the model (in the dtype of `settings.precision`), its tokenizer and that dtype."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = _train_dtype(settings.precision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    except (OSError, ValueError) as err:
        raise UserError(
            f"model.path {str(model_path)!r} could not be loaded as a causal LM: {str(err)[:300]}. "
            "Fix: point `model.path` at a Hugging Face model directory (config.json, weights, tokenizer)."
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model, tokenizer, dtype


def _train_dtype(precision: str) -> Any:
    """Return the torch dtype of the base weights: bf16 for "bf16", and for "auto" on a bf16-capable GPU."""
    import torch

    cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "bf16" or (precision == "auto" and cuda_bf16):
        return torch.bfloat16
    return torch.float32


def load_adapter(model: Any, adapter: Path) -> Any:
    """Return `model` wrapped in the PEFT adapter at `adapter`, trainable."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, adapter, is_trainable=True)
    except (ValueError, RuntimeError, KeyError, OSError) as err:
        raise UserError(
            f"init_adapter {str(adapter)!r} does not fit the model: {str(err)[:300]}. "
            "Fix: use the SFT adapter trained on this base model."
        ) from None


def adapter_shape(model: Any) -> dict[str, Any]:
    """Return r, alpha, dropout and target modules of a PeftModel's default adapter."""
    config = model.peft_config["default"]
    return {
        "r": config.r,
        "alpha": config.lora_alpha,
        "dropout": config.lora_dropout,
        "target_modules": sorted(config.target_modules),
    }


def common_args(work_dir: Path, settings: TrainSettings, method: str, dtype: Any) -> dict[str, Any]:
    """Return the trl config arguments that SFT and DPO share."""
    import torch

    return {
        "output_dir": str(work_dir),
        "learning_rate": settings.lr(method),
        "max_steps": settings.max_steps if settings.max_steps is not None else -1,
        "num_train_epochs": settings.epochs,
        "per_device_train_batch_size": settings.per_device_batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        # transformers 5.17 (the version vLLM 0.31 supports) knows only this name; later versions rename
        # it `activation_checkpointing` and still accept it.
        "gradient_checkpointing": settings.gradient_checkpointing,
        "bf16": dtype == torch.bfloat16,
        "fp16": False,
        # transformers refuses bf16 without a GPU unless told that the CPU is meant (precision: bf16 on a CPU)
        "use_cpu": not torch.cuda.is_available(),
        "seed": settings.seed,
        "logging_steps": settings.logging_steps,
        # transformers 5 reads a float in [0, 1) as a share of the steps.
        "warmup_steps": settings.warmup_ratio,
        "report_to": list(settings.report_to),
        # Checkpoints (train.checkpoints): complete ones are marked and rotated by `checkpoint_callback`,
        # so transformers' own rotation, which could delete the last complete one, stays off.
        "save_strategy": "steps" if settings.checkpointing else "no",
        "save_steps": settings.checkpoint_steps or 500,
        "save_total_limit": None,
        "eval_strategy": "no",
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }


def run_training(
    trainer: Any,
    setup_seconds: float,
    method: str,
    settings: TrainSettings,
    lora: LoraSettings,
    resume: Resume | None = None,
    save_extra: Callable[[Path], None] | None = None,
    logged_keys: tuple[str, ...] = LOGGED_KEYS,
) -> dict:
    """Train (from `resume.checkpoint` when set) and return the metrics: losses per logged step, step times,
    seconds, peak memory and, with checkpoints, the step resumed from and each checkpoint's write time."""
    import torch

    resume = resume or Resume(Path(trainer.args.output_dir))
    timer = _step_timer()
    trainer.add_callback(timer)
    saver = checkpoint_callback(resume.root, settings.save_total_limit, save_extra) if resume.root else None
    if saver is not None:
        trainer.add_callback(saver)
    if "tensorboard" in settings.report_to and resume.tracking_dir is not None:
        point_tensorboard(trainer, resume.tracking_dir)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with gpu_memory_guard(f"{method.upper()} training", oom_fix(method, settings, resume)):
        result = trainer.train(resume_from_checkpoint=str(resume.checkpoint) if resume.checkpoint else None)
    seconds = time.perf_counter() - start
    steps = int(trainer.state.global_step)
    logged = [
        {"step": int(entry["step"]), **{k: float(entry[k]) for k in logged_keys if k in entry}}
        for entry in trainer.state.log_history
        if "loss" in entry and "step" in entry
    ]
    return {
        "method": method,
        "steps": steps,
        "train_loss": float(result.training_loss),
        "log": logged,
        "setup_seconds": round(setup_seconds, 3),
        "train_seconds": round(seconds, 3),
        "seconds_per_step": round(seconds / steps, 3) if steps else None,
        "step_seconds": [round(s, 3) for s in timer.durations],
        "peak_rss_mib": _peak_rss_mib(),
        "peak_cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if torch.cuda.is_available()
        else None,
        "learning_rate": settings.lr(method),
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "settings": asdict(settings),
        "lora": asdict(lora) | {"target_modules": list(lora.target_modules)},
        "resumed_from_step": checkpoint_step(resume.checkpoint) if resume.checkpoint else None,
        "checkpoint_seconds": saver.save_seconds if saver is not None else [],
    }


def _step_timer() -> Any:
    """Return a trainer callback whose `durations` are the wall times of the optimizer steps so far."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.durations: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.durations.append(time.perf_counter() - self._start)

    return StepTimer()


def _peak_rss_mib() -> float:
    """Return this process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if os.uname().sysname == "Darwin" else 2**10), 1)


def save_adapter(
    trainer: Any, adapter_dir: Path, metrics: dict[str, Any], provenance: Mapping[str, Any] | None
) -> None:
    """Save only the trained (default) adapter, in PEFT format, and metrics.json to `adapter_dir`."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    # `selected_adapters` leaves out trl's frozen `ref` copy (SFT→DPO), which `save_model` writes to ref/.
    model.save_pretrained(adapter_dir, selected_adapters=["default"], safe_serialization=True)
    stray = adapter_dir / "ref"
    if stray.exists():
        shutil.rmtree(stray)
    with contextlib.suppress(FileNotFoundError):
        (adapter_dir / "README.md").unlink()  # a template model card, no information
    record = {**metrics, **({"provenance": dict(provenance)} if provenance else {})}
    (adapter_dir / "metrics.json").write_text(
        json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
    )


@contextlib.contextmanager
def staging_dir(out_dir: Path) -> Iterator[Path]:
    """Yield a staging directory beside `out_dir`; its `adapter/` replaces `out_dir` if the block succeeds."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        yield staging
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging / "adapter", out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def str_or_none(path: Path | str | None) -> str | None:
    return None if path is None else str(path)
