"""LoRA SFT of the policy with trl's SFTTrainer on correct SQL.

    lora, settings = settings_from_dict({"max_steps": 100, "lora": {"r": 16}})
    data = sft_examples([trajectories], examples, include_gold=True, include_correct=True)
    train_sft(model_path, data, "results/train/sft", lora, settings)

Every run saves ONE PEFT LoRA adapter on the BASE model (adapter_config.json, adapter_model.safetensors and
the run's metrics.json, nothing else), so both generation backends load it: vLLM as a `LoRARequest`,
transformers as a `PeftModel` (see `generation.TransformersBackend`). The adapter is trained in a staging
directory beside `out_dir` and renamed into place only when the run succeeded. With `checkpoint_steps`, a
killed run resumes from its last checkpoint when it is run again (`train.checkpoints`).

Measured on a 2-core CPU (SmolLM2-135M, r=16 on q/k/v/o, batch 4, ~365-token sequences, fp32, gradient
checkpointing; benchmarks/train.py): 9.9 s/step at 2.0 GiB peak RSS.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from workflow_scripts.core.model import check_model_dir
from workflow_scripts.train.checkpoints import drop_checkpoints, resume_point, run_identity
from workflow_scripts.train.common import (
    common_args,
    completion_only_lm_head,
    load_model,
    run_training,
    save_adapter,
    staging_dir,
)
from workflow_scripts.train.data import SFT_COLUMNS, require_columns, require_rows, sft_dataset
from workflow_scripts.train.settings import LoraSettings, TrainSettings, check_trackers


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
    with staging_dir(Path(out_dir)) as staging, completion_only_lm_head():
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
