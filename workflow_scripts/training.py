"""LoRA fine-tuning of the policy with peft + trl: SFT on correct SQL, DPO on mined preference pairs.

    lora, settings = settings_from_dict({"max_steps": 100, "lora": {"r": 16}})
    data = sft_examples([trajectories], examples, include_gold=True, include_correct=True)
    train_sft(model_path, data, "results/train/sft", lora, settings)
    train_dpo(model_path, pairs, "results/train/dpo", lora, settings, init_adapter=Path("results/train/sft"))

Every run saves ONE PEFT LoRA adapter on the BASE model (adapter_config.json, adapter_model.safetensors and
the run's metrics.json, nothing else), so both generation backends load it: vLLM as a `LoRARequest`,
transformers as a `PeftModel` (see `generation.TransformersBackend`). The adapter is trained in a staging
directory beside `out_dir` and renamed into place only when the run succeeded.

Measured on a 2-core CPU (SmolLM2-135M, r=16 on q/k/v/o, batch 4, ~365-token sequences, fp32, gradient
checkpointing; benchmarks/train.py, figures in the README): SFT 9.9 s/step at 2.0 GiB peak RSS; DPO 19.4
s/step plus a 25 s reference pass, at 3.8 GiB (a DPO batch of 4 pairs runs 8 sequences). bf16 autocast is
slower on that CPU and changes outputs, so precision "auto" means bf16 on a CUDA GPU and fp32 elsewhere. On
CPU trl's fused LM head is made to score the completion tokens only (`_completion_only_lm_head`), which halves
DPO's memory.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from workflow_scripts.errors import UserError
from workflow_scripts.model import check_model_dir

log = logging.getLogger("training")

Messages = list[dict[str, str]]

# Learning rates when the settings give none: common LoRA values (trl's own defaults, 2e-5 for SFT and 1e-6
# for DPO, are meant for full fine-tuning and barely move a LoRA adapter).
DEFAULT_LR = {"sft": 2e-4, "dpo": 5e-6}
PRECISIONS = ("auto", "fp32", "bf16")
# The DPO losses of trl 1.16.
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip
# DPO losses that margin-aware training supports: both compare β·(Δ_policy − Δ_ref) with a target, which the
# per-pair margin raises (see `margin_dpo_loss`).
MARGIN_LOSS_TYPES = ("sigmoid", "hinge")
SFT_COLUMNS = ("prompt", "completion")
PAIR_COLUMNS = ("prompt", "chosen", "rejected")
TRAJECTORY_COLUMNS = ("example_id", "turn", "prompt", "sql", "correct")
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


# ------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class LoraSettings:
    """The LoRA adapter: rank `r`, scaling `alpha`, dropout and the (attention) modules it wraps."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def __post_init__(self) -> None:
        # JSON gives lists (or one name); keep the dataclass hashable and comparable.
        modules = self.target_modules
        object.__setattr__(self, "target_modules", (modules,) if isinstance(modules, str) else tuple(modules))
        problems = []
        if self.r < 1:
            problems.append(f"r={self.r} (must be >= 1)")
        if self.alpha <= 0:
            problems.append(f"alpha={self.alpha} (must be > 0)")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout={self.dropout} (must be in [0, 1))")
        if not self.target_modules:
            problems.append("target_modules is empty")
        _raise_problems("LoRA", problems)

    def peft_config(self) -> Any:
        """Return the `peft.LoraConfig` of these settings (a causal-LM task)."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )


@dataclass(frozen=True)
class TrainSettings:
    """How to train. `max_steps` (optimizer steps), when set, wins over `epochs`.

    `learning_rate` None takes `DEFAULT_LR` of the method. `precision` "auto" is bf16 on a CUDA GPU (base
    weights in bf16, LoRA weights in fp32, bf16 autocast) and fp32 elsewhere. `warmup_ratio` is the share of
    the steps with a linear warm-up. The DPO keys: `beta`, `loss_type` (a trl DPO loss), margin-aware
    training (`margin_aware`, `margin_scale`; see `margin_dpo_loss`) and `precompute_ref`: compute the
    reference log-probs of all pairs in one pass before training (True) or inside every step (False).
    """

    learning_rate: float | None = None
    max_steps: int | None = None
    epochs: float = 1.0
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = True
    max_length: int = 1024
    seed: int = 0
    precision: str = "auto"
    logging_steps: int = 1
    warmup_ratio: float = 0.0
    beta: float = 0.1
    loss_type: str = "sigmoid"
    margin_aware: bool = False
    margin_scale: float = 1.0
    precompute_ref: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.learning_rate is not None and not self.learning_rate > 0:
            problems.append(f"learning_rate={self.learning_rate} (must be > 0)")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            problems.append(f"max_steps={self.max_steps} (must be a positive integer, or null to use epochs)")
        if self.max_steps is None and not self.epochs > 0:
            problems.append(f"epochs={self.epochs} (must be > 0)")
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "logging_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be >= 1)")
        if self.max_length < 16:
            problems.append(f"max_length={self.max_length} (must be >= 16)")
        if self.precision not in PRECISIONS:
            problems.append(f"precision={self.precision!r} (must be one of {', '.join(PRECISIONS)})")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"warmup_ratio={self.warmup_ratio} (must be in [0, 1))")
        if not self.beta > 0:
            problems.append(f"beta={self.beta} (must be > 0)")
        if self.loss_type not in DPO_LOSS_TYPES:
            problems.append(f"loss_type={self.loss_type!r} (trl's DPO losses: {', '.join(DPO_LOSS_TYPES)})")
        elif self.margin_aware and self.loss_type not in MARGIN_LOSS_TYPES:
            problems.append(
                f"margin_aware with loss_type={self.loss_type!r} (supported: {', '.join(MARGIN_LOSS_TYPES)})"
            )
        if self.margin_aware and not self.precompute_ref:
            problems.append(
                "margin_aware with precompute_ref=false (the margins shift precomputed log-probs)"
            )
        if self.margin_scale < 0:
            problems.append(f"margin_scale={self.margin_scale} (must be >= 0)")
        _raise_problems("training", problems)

    def lr(self, method: str) -> float:
        """Return the learning rate of `method` ("sft" or "dpo")."""
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LR[method]


def _raise_problems(what: str, problems: Sequence[str]) -> None:
    if problems:
        raise UserError(f"invalid {what} settings: {'; '.join(problems)}. Fix: correct them in config.yaml.")


def settings_from_dict(cfg: Mapping[str, Any]) -> tuple[LoraSettings, TrainSettings]:
    """Return the LoRA and training settings of a config mapping.

    The keys of `TrainSettings` sit at the top level; those of `LoraSettings` either at the top level too
    (`r`, `alpha`, `dropout`, `target_modules`) or nested under `lora:`, not both. Unknown keys are an error,
    so that a misspelt setting does not silently fall back to its default.
    """
    cfg = dict(cfg)
    nested = cfg.pop("lora", None) or {}
    if not isinstance(nested, Mapping):
        raise UserError("the training setting `lora` must be a mapping. Fix: write `lora: {r: 16, ...}`.")
    lora_keys = {f.name for f in fields(LoraSettings)}
    train_keys = {f.name for f in fields(TrainSettings)}
    flat_lora = {k: v for k, v in cfg.items() if k in lora_keys}
    both = sorted(set(flat_lora) & set(nested))
    unknown = sorted((set(cfg) - lora_keys - train_keys) | (set(nested) - lora_keys))
    if both or unknown:
        raise UserError(
            "invalid training settings: "
            + "; ".join(
                ([f"{', '.join(both)} given both flat and under `lora`"] if both else [])
                + ([f"unknown keys {', '.join(unknown)}"] if unknown else [])
            )
            + f". Fix: use the keys {', '.join(sorted(lora_keys | train_keys))} "
            "(the LoRA ones flat or under `lora`)."
        )
    train = {k: v for k, v in cfg.items() if k in train_keys}
    wrong = _wrong_types(LoraSettings, {**flat_lora, **nested}) + _wrong_types(TrainSettings, train)
    _raise_problems("training", wrong)
    return LoraSettings(**flat_lora, **nested), TrainSettings(**train)


_SCALARS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _wrong_types(cls: type, values: Mapping[str, Any]) -> list[str]:
    """Describe each value whose type does not fit its field of `cls` (scalar fields; None where allowed)."""
    problems = []
    for field in fields(cls):
        if field.name not in values:
            continue
        value, kinds = values[field.name], [k.strip() for k in str(field.type).split("|")]
        if value is None and "None" in kinds:
            continue
        allowed = [t for k in kinds for t in _SCALARS.get(k, ())]
        if not allowed or any(k not in _SCALARS and k != "None" for k in kinds):
            continue  # not a scalar field (e.g. target_modules): checked in __post_init__
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, tuple(allowed)):
            problems.append(f"{field.name}={value!r} (must be {' or '.join(kinds)})")
    return problems


# ---------------------------------------------------------------------------------------------- data


def sft_examples(
    trajectories: Sequence[pd.DataFrame],
    examples: pd.DataFrame,
    *,
    include_gold: bool,
    include_correct: bool,
) -> pd.DataFrame:
    """Return SFT examples: conversational `prompt` messages and a one-message assistant `completion`.

    Each frame of `trajectories` is one rollout's output; an example's first-turn prompt is that of its
    turn-1 rows in the same frame. With `include_correct`, every correct candidate's SQL is a completion:
    a first-turn one under the prompt it answered, a repair-turn one under its example's FIRST-turn prompt
    (not the repair prompt), so SFT teaches getting the query right at once rather than after feedback.
    With `include_gold`, the gold SQL of `examples` (columns `id`, `gold_sql`) is a completion under each
    distinct first-turn prompt of the example (examples without trajectories have no prompt, so no row).

    Rows with the same prompt and SQL are kept once (a gold row wins over an equal model row); the order is
    sorted by example id, prompt, SQL and source, so it does not depend on the order of the inputs. Columns:
    `example_id`, `source` ("gold" or "model"), `prompt`, `completion`.
    """
    gold_sql = dict(zip(examples["id"], examples["gold_sql"], strict=True)) if include_gold else {}
    rows: list[tuple[str, str, str, str]] = []
    for index, frame in enumerate(trajectories):
        _require_columns(frame, TRAJECTORY_COLUMNS, f"trajectories #{index + 1}")
        first_prompt = (
            frame[frame["turn"] == 1].drop_duplicates("example_id").set_index("example_id")["prompt"]
        )
        if include_correct:
            correct = frame[frame["correct"].astype(bool) & (frame["sql"].fillna("").str.strip() != "")]
            for row in correct.itertuples(index=False):
                prompt = row.prompt if row.turn == 1 else first_prompt.get(row.example_id)
                if prompt is not None:
                    rows.append((row.example_id, "model", prompt, row.sql.strip()))
        for example_id, prompt in first_prompt.items():
            if example_id in gold_sql:
                rows.append((example_id, "gold", prompt, str(gold_sql[example_id]).strip()))
    table = pd.DataFrame(rows, columns=["example_id", "source", "prompt_json", "sql"])
    table = table.sort_values(["example_id", "prompt_json", "sql", "source"], kind="stable")
    table = table.drop_duplicates(["prompt_json", "sql"]).reset_index(drop=True)
    return pd.DataFrame({
        "example_id": table["example_id"].to_list(),
        "source": table["source"].to_list(),
        "prompt": [json.loads(p) for p in table["prompt_json"]],
        "completion": [[{"role": "assistant", "content": sql}] for sql in table["sql"]],
    })  # fmt: skip


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise UserError when `frame` lacks any of `columns`."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(
            f"the {what} lack the column(s) {', '.join(missing)} "
            f"(they have {', '.join(map(str, frame.columns))}). Fix: pass the file the workflow wrote for it."
        )


def _require_rows(frame: pd.DataFrame, what: str, fix: str) -> None:
    if frame.empty:
        raise UserError(f"an empty {what} for training. Fix: {fix}")


def _messages(value: Any, role: str, what: str) -> Messages:
    """Return chat messages from a list of {role, content} (as read from Parquet), JSON text or plain text.

    Plain text (not a JSON list) is one message of `role`: the SQL of a flat pairs file.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return [{"role": role, "content": value}]
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return [{"role": role, "content": value}]
    try:
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    except (TypeError, KeyError):
        raise UserError(
            f"a {what} value is not chat messages ({str(value)[:120]!r}). "
            "Fix: give lists of {role, content} messages (TRL's conversational format), or JSON text of them."
        ) from None
    if not messages:
        raise UserError(f"a {what} value holds no message. Fix: drop that row from the training data.")
    return messages


def _sft_dataset(data: pd.DataFrame) -> Any:
    """Return the `datasets.Dataset` of SFT rows (prompt and completion messages only)."""
    from datasets import Dataset

    return Dataset.from_dict({
        "prompt": [_messages(p, "user", "prompt") for p in data["prompt"]],
        "completion": [_messages(c, "assistant", "completion") for c in data["completion"]],
    })  # fmt: skip


def _pair_dataset(pairs: pd.DataFrame, *, with_margin: bool) -> Any:
    """Return the `datasets.Dataset` of preference pairs (prompt, chosen and rejected messages, margin)."""
    from datasets import Dataset

    columns: dict[str, list[Any]] = {
        "prompt": [_messages(p, "user", "prompt") for p in pairs["prompt"]],
        "chosen": [_messages(c, "assistant", "chosen") for c in pairs["chosen"]],
        "rejected": [_messages(r, "assistant", "rejected") for r in pairs["rejected"]],
    }
    if with_margin:
        margins = pd.to_numeric(pairs["margin"], errors="coerce").astype(float)
        bad = int((~margins.map(math.isfinite)).sum())  # NaN (missing or not a number) is not finite
        if bad:
            raise UserError(
                f"{bad} pair(s) have no finite `margin`, which "
                "margin-aware DPO needs. Fix: use the pairs written by the pairs stage, or set margin_aware "
                "to false."
            )
        columns["margin"] = margins.to_list()
    return Dataset.from_dict(columns)


def _subsample_for_steps(pairs: pd.DataFrame, settings: TrainSettings) -> pd.DataFrame:
    """Return the (seeded) random subset of pairs that `max_steps` steps use, when that is less than all.

    The reference log-probs are computed for every pair before training, so pairs the steps never reach
    would only cost time. Sampling them here is the same as the trainer's shuffled order stopping early.
    """
    if settings.max_steps is None:
        return pairs
    needed = settings.max_steps * settings.per_device_batch_size * settings.gradient_accumulation_steps
    if needed >= len(pairs):
        return pairs
    return pairs.sample(n=needed, random_state=settings.seed).sort_index()


# ---------------------------------------------------------------------------------------- margin DPO


def margin_dpo_loss(
    chosen_logps: Any,
    rejected_logps: Any,
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    margins: Any,
    *,
    beta: float,
    margin_scale: float,
) -> Any:
    """Per-pair margin-aware DPO loss: −log σ(β·(Δ_policy − Δ_ref) − margin_scale·margin).

    Δ is log π(chosen) − log π(rejected) (summed over completion tokens). This is DPO with an offset
    (ODPO; the margin-aware objective of LearNAT): a pair whose chosen SQL earned a much higher reward than
    its rejected SQL asks the policy to prefer it by more before the loss flattens out. With margin 0 it is
    the plain sigmoid DPO loss; for the same log-probs a bigger margin gives a bigger loss.
    """
    import torch.nn.functional as F

    delta = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * delta - margin_scale * margins)


def offset_reference(ref_chosen_logps: Any, margins: Any, *, beta: float, margin_scale: float) -> Any:
    """Return the reference log π_ref(chosen) raised by margin_scale·margin/β.

    Feeding trl's DPO loss this shifted reference turns its β·(Δ_policy − Δ_ref) into
    β·(Δ_policy − Δ_ref) − margin_scale·margin: the loss of `margin_dpo_loss` (and for the hinge loss,
    relu(1 + margin_scale·margin − β·(Δ_policy − Δ_ref))).
    """
    return ref_chosen_logps + margin_scale * margins / beta


@functools.cache
def _margin_trainer_class() -> type:
    """Return `MarginDPOTrainer` (defined lazily so that importing this module does not import trl)."""
    from trl import DPOTrainer

    class MarginDPOTrainer(DPOTrainer):
        """A DPOTrainer whose loss asks for a per-pair target margin (see `margin_dpo_loss`).

        It needs `precompute_ref_log_probs=True`: after trl has computed the reference log-probs of every
        pair, the reference log-prob of each chosen SQL is raised by margin_scale·margin/β
        (`offset_reference`), which turns trl's own loss into the margin-aware one without copying its loss
        code. trl's logged `rewards/chosen` and `rewards/margins` then include the offset: `rewards/margins`
        > 0 means that a pair beat its target margin, not just its reference.
        """

        def __init__(self, *args: Any, margin_scale: float, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not self.precompute_ref_logps:
                raise ValueError("MarginDPOTrainer needs precompute_ref_log_probs=True")
            beta = self.beta

            def shift(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
                import torch

                shifted = offset_reference(
                    torch.tensor(batch["ref_chosen_logps"], dtype=torch.float64),
                    torch.tensor(batch["margin"], dtype=torch.float64),
                    beta=beta,
                    margin_scale=margin_scale,
                )
                return {"ref_chosen_logps": shifted.tolist()}

            self.train_dataset = self.train_dataset.map(
                shift, batched=True, desc="Offsetting by pair margins"
            )

    return MarginDPOTrainer


# ------------------------------------------------------------------------------------------- training


def train_sft(
    model_path: Path | str,
    data: pd.DataFrame,
    out_dir: Path | str,
    lora: LoraSettings,
    settings: TrainSettings,
    *,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter with trl's SFTTrainer on `data` and save it to `out_dir`; return the metrics.

    `data` has conversational `prompt` and `completion` columns (see `sft_examples`); the loss covers the
    completion tokens only. `out_dir` gets the PEFT adapter and `metrics.json` (the returned metrics plus
    `provenance`); it replaces an existing `out_dir` only when training succeeded.
    """
    model_path = Path(model_path)
    check_model_dir(model_path)
    _require_columns(data, SFT_COLUMNS, "SFT examples")
    _require_rows(
        data,
        "example set",
        "roll out more train examples (or enable the gold SQL) so that some SQL is correct.",
    )
    dataset = _sft_dataset(data)
    from trl import SFTConfig, SFTTrainer  # imported after the input checks: it takes seconds

    with _staging_dir(Path(out_dir)) as staging, _completion_only_lm_head():
        model, tokenizer, dtype = _load(model_path, settings)
        config = SFTConfig(
            **_common_args(staging / "trainer", settings, "sft", dtype),
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
        metrics = _run(trainer, time.perf_counter() - start, "sft", settings, lora)
        metrics["examples"] = len(data)
        _save(trainer, staging / "adapter", metrics, provenance)
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
) -> dict[str, Any]:
    """Train a LoRA adapter with trl's DPOTrainer on preference `pairs`, save it to `out_dir`; return metrics.

    `pairs` has `prompt`, `chosen` and `rejected` columns, either in TRL's conversational format (as in
    `pairs/merged/train.parquet`) or as JSON prompt text and plain SQL (as in `pairs.parquet`), plus a
    numeric `margin` for margin-aware training (`settings.margin_aware`, see `MarginDPOTrainer`).

    By default (`settings.precompute_ref`) the reference log-probs are computed once for all pairs before
    training: the steps then run no reference forward, and margin-aware training shifts those stored values.
    With `max_steps` shorter than one pass, only the pairs the steps use are kept (`_subsample_for_steps`).

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
        from workflow_scripts.generation import check_adapter

        check_adapter(init_adapter, model_path)
    _require_columns(pairs, PAIR_COLUMNS + (("margin",) if settings.margin_aware else ()), "preference pairs")
    _require_rows(
        pairs,
        "pair set",
        "mine more pairs (more rollout samples, use_gold_when_failed, looser merge filters) before DPO.",
    )
    n_pairs = len(pairs)
    dataset = _pair_dataset(_subsample_for_steps(pairs, settings), with_margin=settings.margin_aware)
    with _staging_dir(Path(out_dir)) as staging, _completion_only_lm_head():
        model, tokenizer, dtype = _load(model_path, settings)
        peft_config = lora.peft_config()
        if init_adapter is not None:
            model = _load_adapter(model, Path(init_adapter))
            peft_config = None  # trl refuses a PeftModel together with a peft_config
            log.info(
                "continuing the adapter %s %s; the lora settings are not used", init_adapter, _shape(model)
            )
        trainer, setup_seconds = _dpo_trainer(
            model, tokenizer, dataset, peft_config, staging / "trainer", settings, dtype
        )
        metrics = _run(trainer, setup_seconds, "dpo", settings, lora)
        metrics.update(pairs=n_pairs, pairs_used=len(dataset), init_adapter=_str_or_none(init_adapter))
        if init_adapter is not None:
            metrics["lora"] = _shape(model)
        _save(trainer, staging / "adapter", metrics, provenance)
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
        **_common_args(work_dir, settings, "dpo", dtype),
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
        trainer = _margin_trainer_class()(
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


def _load(model_path: Path, settings: TrainSettings) -> tuple[Any, Any, Any]:
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


def _load_adapter(model: Any, adapter: Path) -> Any:
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


def _common_args(work_dir: Path, settings: TrainSettings, method: str, dtype: Any) -> dict[str, Any]:
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
        "seed": settings.seed,
        "logging_steps": settings.logging_steps,
        # transformers 5 reads a float in [0, 1) as a share of the steps.
        "warmup_steps": settings.warmup_ratio,
        "report_to": [],
        "save_strategy": "no",
        "eval_strategy": "no",
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }


def _run(
    trainer: Any, setup_seconds: float, method: str, settings: TrainSettings, lora: LoraSettings
) -> dict:
    """Train and return the metrics: losses per logged step, step times, seconds and peak memory."""
    import torch

    timer = _step_timer()
    trainer.add_callback(timer)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = trainer.train()
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


def _save(
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
def _staging_dir(out_dir: Path) -> Iterator[Path]:
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


def _str_or_none(path: Path | str | None) -> str | None:
    return None if path is None else str(path)


__all__ = [
    "LoraSettings",
    "TrainSettings",
    "margin_dpo_loss",
    "offset_reference",
    "settings_from_dict",
    "sft_examples",
    "train_dpo",
    "train_sft",
]
