"""LoRA DPO of the policy with trl's DPOTrainer on mined preference pairs, from the base model or
continuing an SFT adapter (SFT→DPO).

    train_dpo(model_path, pairs, "results/train/dpo", lora, settings, init_adapter=Path("results/train/sft"))

Measured on a 2-core CPU (SmolLM2-135M, r=16 on q/k/v/o, batch 4 pairs, fp32, gradient checkpointing;
benchmarks/train.py): 19.4 s/step plus a 25 s reference pass, at 3.8 GiB (a DPO batch of 4 pairs runs 8
sequences).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from workflow_scripts.core.errors import UserError
from workflow_scripts.core.model import check_model_dir
from workflow_scripts.train.checkpoints import drop_checkpoints, resume_point, run_identity
from workflow_scripts.train.common import (
    adapter_shape,
    common_args,
    completion_only_lm_head,
    load_adapter,
    load_model,
    run_training,
    save_adapter,
    staging_dir,
    str_or_none,
)
from workflow_scripts.train.data import (
    PAIR_COLUMNS,
    pair_dataset,
    require_columns,
    require_rows,
    subsample_for_steps,
)
from workflow_scripts.train.losses import margin_trainer_class
from workflow_scripts.train.settings import LoraSettings, TrainSettings, check_trackers

log = logging.getLogger("training")


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
    with staging_dir(Path(out_dir)) as staging, completion_only_lm_head():
        resume = resume_point(Path(out_dir), staging, settings, identity, tracking_dir)
        model, tokenizer, dtype = load_model(model_path, settings)
        peft_config = lora.peft_config()
        if init_adapter is not None:
            model = load_adapter(model, Path(init_adapter))
            peft_config = None  # trl refuses a PeftModel together with a peft_config
            log.info(
                "continuing the adapter %s %s; the lora settings are not used",
                init_adapter,
                adapter_shape(model),
            )
        trainer, setup_seconds = _dpo_trainer(
            model, tokenizer, dataset, peft_config, resume.work_dir, settings, dtype
        )
        metrics = run_training(trainer, setup_seconds, "dpo", settings, lora, resume)
        metrics.update(pairs=n_pairs, pairs_used=len(dataset), init_adapter=str_or_none(init_adapter))
        if init_adapter is not None:
            metrics["lora"] = adapter_shape(model)
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
    trainer_class, extra = (
        (margin_trainer_class(), {"margin_scale": settings.margin_scale})
        if settings.margin_aware
        else (DPOTrainer, {})
    )
    start = time.perf_counter()
    trainer = trainer_class(
        model=model,
        ref_model=None,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        **extra,
    )
    setup_seconds = time.perf_counter() - start
    if len(trainer.train_dataset) == 0:
        raise UserError(
            f"every preference pair's prompt fills max_length={settings.max_length} tokens, so no pair is "
            "left for training. Fix: raise max_length in the training settings."
        )
    return trainer, setup_seconds
