"""LoRA fine-tuning of the policy with peft + trl: SFT on correct SQL, DPO on mined preference pairs.

    lora, settings = settings_from_dict({"max_steps": 100, "lora": {"r": 16}})
    data = sft_examples([trajectories], examples, include_gold=True, include_correct=True)
    train_sft(model_path, data, "results/train/sft", lora, settings)
    train_dpo(model_path, pairs, "results/train/dpo", lora, settings, init_adapter=Path("results/train/sft"))

Every run saves ONE PEFT LoRA adapter on the BASE model (adapter_config.json, adapter_model.safetensors and
the run's metrics.json, nothing else), so both generation backends load it: vLLM as a `LoRARequest`,
transformers as a `PeftModel` (see `generation.TransformersBackend`). The adapter is trained in a staging
directory beside `out_dir` and renamed into place only when the run succeeded. With `checkpoint_steps`, a
killed run resumes from its last checkpoint when it is run again (`train.checkpoints`).

Measured on a 2-core CPU (SmolLM2-135M, r=16 on q/k/v/o, batch 4, ~365-token sequences, fp32, gradient
checkpointing; benchmarks/train.py and its README): SFT 9.9 s/step at 2.0 GiB peak RSS; DPO 19.4
s/step plus a 25 s reference pass, at 3.8 GiB (a DPO batch of 4 pairs runs 8 sequences). bf16 autocast is
slower on that CPU and changes outputs, so precision "auto" means bf16 on a CUDA GPU and fp32 elsewhere. On
CPU trl's fused LM head is made to score the completion tokens only (`_completion_only_lm_head`), which halves
DPO's memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from workflow_scripts.core.errors import UserError
from workflow_scripts.core.faults import gpu_memory_guard
from workflow_scripts.core.model import check_model_dir
from workflow_scripts.train.checkpoints import (
    Resume,
    checkpoint_callback,
    checkpoint_step,
    drop_checkpoints,
    oom_fix,
    point_tensorboard,
    resume_point,
    run_identity,
)
from workflow_scripts.train.data import (
    PAIR_COLUMNS,
    SFT_COLUMNS,
    pair_dataset,
    require_columns,
    require_rows,
    sft_dataset,
    subsample_for_steps,
)
from workflow_scripts.train.losses import margin_trainer_class
from workflow_scripts.train.settings import LoraSettings, TrainSettings, check_trackers

log = logging.getLogger("training")

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
    # GRPO
    "reward",
    "reward_std",
    "rewards/correct/mean",
    "kl",
    "entropy",
    "completions/mean_length",
    "frac_reward_zero_std",
)


def train_sft(
    model_path: Path | str,
    data: pd.DataFrame,
    out_dir: Path | str,
    lora: LoraSettings,
    settings: TrainSettings,
    *,
    provenance: Mapping[str, Any] | None = None,
    tracking_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter with trl's SFTTrainer on `data` and save it to `out_dir`; return the metrics.

    `data` has conversational `prompt` and `completion` columns (see `sft_examples`); the loss covers the
    completion tokens only. `out_dir` gets the PEFT adapter and `metrics.json` (the returned metrics plus
    `provenance`); it replaces an existing `out_dir` only when training succeeded. With `tensorboard` in
    `settings.report_to`, the event files go to `tracking_dir` (default: `OUT_DIR.tracking` beside it).
    """
    model_path = Path(model_path)
    check_model_dir(model_path)
    require_columns(data, SFT_COLUMNS, "SFT examples")
    require_rows(
        data,
        "example set",
        "roll out more train examples (or enable the gold SQL) so that some SQL is correct.",
    )
    dataset = sft_dataset(data)
    check_trackers(settings.report_to)
    from trl import SFTConfig, SFTTrainer  # imported after the input checks: it takes seconds

    identity = run_identity("sft", model_path, settings, lora, dataset)
    with staging_dir(Path(out_dir)) as staging, _completion_only_lm_head():
        resume = resume_point(Path(out_dir), staging, settings, identity, tracking_dir)
        model, tokenizer, dtype = load_model(model_path, settings)
        config = SFTConfig(
            **common_args(resume.work_dir, settings, "sft", dtype),
            max_length=settings.max_length,
            completion_only_loss=True,
            packing=False,
            dataset_num_proc=None,
        )
        start = time.perf_counter()
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora.peft_config(),
        )
        metrics = run_training(trainer, time.perf_counter() - start, "sft", settings, lora, resume)
        metrics["examples"] = len(data)
        save_adapter(trainer, staging / "adapter", metrics, provenance)
    drop_checkpoints(Path(out_dir))
    return metrics


def train_dpo(
    model_path: Path | str,
    pairs: pd.DataFrame,
    out_dir: Path | str,
    lora: LoraSettings,
    settings: TrainSettings,
    *,
    init_adapter: Path | str | None = None,
    provenance: Mapping[str, Any] | None = None,
    tracking_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter with trl's DPOTrainer on preference `pairs`, save it to `out_dir`; return metrics.

    `pairs` has `prompt`, `chosen` and `rejected` columns, either in TRL's conversational format (as in
    `pairs/merged/train.parquet`) or as JSON prompt text and plain SQL (as in `pairs.parquet`), plus a
    numeric `margin` for margin-aware training (`settings.margin_aware`, see `MarginDPOTrainer`).

    By default (`settings.precompute_ref`) the reference log-probs are computed once for all pairs before
    training: the steps then run no reference forward, and margin-aware training shifts those stored values.
    With `max_steps` shorter than one pass, only the pairs the steps use are kept (`subsample_for_steps`).

    Without `init_adapter`, a new adapter (`lora`) is trained on the base model and the reference is the base
    model (the adapter disabled: trl's `ref_model=None` with `peft_config`).

    With `init_adapter` (SFT→DPO), DPO continues training that adapter, NOT merged first: it is loaded
    trainable on the base model, trl keeps a frozen copy of it as the reference (so the reference is the SFT
    policy, as DPO after SFT expects), and the trained copy is saved. The result is one adapter on the base
    model holding SFT + DPO, which loads in both backends; merging first would give an adapter on the merged
    model, which vLLM's per-request LoRA on the base model cannot serve. The adapter's shape (r, alpha, target
    modules) is then that of `init_adapter`, and `lora` is not used. Only the trained adapter is saved, not
    trl's frozen `ref` copy.
    """
    model_path = Path(model_path)
    check_model_dir(model_path)
    if init_adapter is not None:
        from workflow_scripts.rollout.generation import check_adapter

        check_adapter(init_adapter, model_path)
    require_columns(pairs, PAIR_COLUMNS + (("margin",) if settings.margin_aware else ()), "preference pairs")
    require_rows(
        pairs,
        "pair set",
        "mine more pairs (more rollout samples, use_gold_when_failed, looser merge filters) before DPO.",
    )
    n_pairs = len(pairs)
    dataset = pair_dataset(subsample_for_steps(pairs, settings), with_margin=settings.margin_aware)
    check_trackers(settings.report_to)
    identity = run_identity("dpo", model_path, settings, lora, dataset, init_adapter)
    with staging_dir(Path(out_dir)) as staging, _completion_only_lm_head():
        resume = resume_point(Path(out_dir), staging, settings, identity, tracking_dir)
        model, tokenizer, dtype = load_model(model_path, settings)
        peft_config = lora.peft_config()
        if init_adapter is not None:
            model = load_adapter(model, Path(init_adapter))
            peft_config = None  # trl refuses a PeftModel together with a peft_config
            log.info(
                "continuing the adapter %s %s; the lora settings are not used", init_adapter, _shape(model)
            )
        trainer, setup_seconds = _dpo_trainer(
            model, tokenizer, dataset, peft_config, resume.work_dir, settings, dtype
        )
        metrics = run_training(trainer, setup_seconds, "dpo", settings, lora, resume)
        metrics.update(pairs=n_pairs, pairs_used=len(dataset), init_adapter=str_or_none(init_adapter))
        if init_adapter is not None:
            metrics["lora"] = _shape(model)
        save_adapter(trainer, staging / "adapter", metrics, provenance)
    drop_checkpoints(Path(out_dir))
    return metrics


def _dpo_trainer(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    peft_config: Any,
    work_dir: Path,
    settings: TrainSettings,
    dtype: Any,
) -> tuple[Any, float]:
    """Return a DPOTrainer (margin-aware when asked) and the seconds its construction took.

    With `precompute_ref`, construction includes the reference pass over all pairs (and the tokenization).
    """
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(
        **common_args(work_dir, settings, "dpo", dtype),
        max_length=settings.max_length,
        beta=settings.beta,
        loss_type=[settings.loss_type],
        precompute_ref_log_probs=settings.precompute_ref,
        # The reference pass runs without gradients, so it can take bigger batches than training.
        precompute_ref_batch_size=2 * settings.per_device_batch_size,
        dataset_num_proc=None,
    )
    start = time.perf_counter()
    if settings.margin_aware:
        trainer = margin_trainer_class()(
            model=model,
            ref_model=None,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            margin_scale=settings.margin_scale,
        )
    else:
        trainer = DPOTrainer(
            model=model,
            ref_model=None,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    setup_seconds = time.perf_counter() - start
    if len(trainer.train_dataset) == 0:
        raise UserError(
            f"every preference pair's prompt fills max_length={settings.max_length} tokens, so no pair is "
            "left for training. Fix: raise max_length in the training settings."
        )
    return trainer, setup_seconds


# --------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _completion_only_lm_head() -> Iterator[None]:
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


def _shape(model: Any) -> dict[str, Any]:
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
        {"step": int(entry["step"]), **{k: float(entry[k]) for k in LOGGED_KEYS if k in entry}}
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
