"""Settings of a LoRA training run (LoraSettings, TrainSettings, GRPOSettings) and their checks against
config.yaml."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from workflow_scripts.core.errors import UserError
from workflow_scripts.train.rewards import REWARD_SCHEMES

# Learning rates when the settings give none: common LoRA values (trl's own defaults, 2e-5 for SFT and 1e-6
# for DPO, are meant for full fine-tuning and barely move a LoRA adapter).
DEFAULT_LR = {"sft": 2e-4, "dpo": 5e-6, "grpo": 2e-5}
PRECISIONS = ("auto", "fp32", "bf16")
# The DPO losses of trl 1.16.
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip
# DPO losses that margin-aware training supports: both compare β·(Δ_policy − Δ_ref) with a target, which the
# per-pair margin raises (see `margin_dpo_loss`).
MARGIN_LOSS_TYPES = ("sigmoid", "hinge")
# Experiment trackers that `report_to` may name: transformers' callback name -> the module it imports and the
# pip package that provides it.
TRACKERS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "trackio": ("trackio", "trackio"),
}
# The GRPO losses of trl 1.16.
GRPO_LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo")
# Settings that do not change the trained weights: a checkpoint stays resumable when only they change.
RUN_ONLY_KEYS = ("checkpoint_steps", "save_total_limit", "report_to", "logging_steps")


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
    `checkpoint_steps` (None or 0 = off) saves a resumable checkpoint every that many optimizer steps, of
    which the newest `save_total_limit` are kept (see `train.checkpoints`); `report_to` names the experiment
    trackers that receive the logged metrics (`TRACKERS`).
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
    checkpoint_steps: int | None = None
    save_total_limit: int | None = 2
    report_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        trackers = self.report_to
        object.__setattr__(self, "report_to", (trackers,) if isinstance(trackers, str) else tuple(trackers))
        problems = []
        if self.checkpoint_steps is not None and self.checkpoint_steps < 0:
            problems.append(f"checkpoint_steps={self.checkpoint_steps} (must be >= 0; 0 or null = off)")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            problems.append(f"save_total_limit={self.save_total_limit} (must be >= 1, or null = keep all)")
        unknown = [t for t in self.report_to if t not in TRACKERS]
        if unknown:
            problems.append(f"report_to {', '.join(map(repr, unknown))} (supported: {', '.join(TRACKERS)})")
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
        """Return the learning rate of `method` ("sft", "dpo" or "grpo")."""
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LR[method]

    @property
    def checkpointing(self) -> bool:
        return bool(self.checkpoint_steps)

    def weights_settings(self) -> dict[str, Any]:
        """Return the settings that decide the trained weights (all but `RUN_ONLY_KEYS`)."""
        return {k: v for k, v in asdict(self).items() if k not in RUN_ONLY_KEYS}


def check_trackers(trackers: Sequence[str]) -> None:
    """Raise a UserError naming the pip package of each tracker in `trackers` that is not installed."""
    import importlib.util

    missing = [t for t in trackers if importlib.util.find_spec(TRACKERS[t][0]) is None]
    if missing:
        packages = " ".join(TRACKERS[t][1] for t in missing)
        raise UserError(
            f"training.report_to names {', '.join(missing)}, which is not installed. "
            f"Fix: `pip install {packages}`, or remove it from training.report_to."
        )


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


@dataclass(frozen=True)
class GRPOSettings:
    """What GRPO adds to a training run's settings (see `training.grpo` in config.yaml)."""

    reward: str = "arctic"  # rule | arctic (train.rewards)
    format_weight: float = 0.0  # added when the reply is the SQL alone
    num_generations: int = 4  # episodes per prompt: the group whose rewards are compared
    prompts_per_step: int = 2  # distinct prompts per optimizer step
    max_turns: int = 1  # 1: one-shot; 2: repair-aware (one repair turn)
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128  # per turn
    beta: float = 0.0  # KL coefficient against the reference (0: no reference model)
    loss_type: str = "dapo"
    limit: int | None = None  # train on the first N examples (None: all)
    micro_batch_size: int | None = None  # episodes per forward/backward pass (None: all of a step's)
    use_vllm: bool = False  # generate episodes with trl's colocated vLLM engine (GPU) instead of transformers
    vllm_gpu_memory_utilization: float = 0.3  # the engine's share of GPU memory beside the trainer

    def __post_init__(self) -> None:
        problems = []
        if self.reward not in REWARD_SCHEMES:
            problems.append(f"reward={self.reward!r} is not one of {', '.join(REWARD_SCHEMES)}")
        if self.loss_type not in GRPO_LOSS_TYPES:
            problems.append(f"loss_type={self.loss_type!r} is not one of {', '.join(GRPO_LOSS_TYPES)}")
        if self.num_generations < 2:
            problems.append(f"num_generations={self.num_generations} must be >= 2 (GRPO compares a group)")
        if self.prompts_per_step < 1 or self.max_new_tokens < 1:
            problems.append("prompts_per_step and max_new_tokens must be >= 1")
        if self.max_turns not in (1, 2):
            problems.append(f"max_turns={self.max_turns} must be 1 (one-shot) or 2 (repair-aware)")
        if self.temperature <= 0:
            problems.append(f"temperature={self.temperature} must be > 0: GRPO needs different samples")
        episodes = self.prompts_per_step * self.num_generations
        micro = self.micro_batch_size
        if micro is not None and (micro < 1 or episodes % micro):
            problems.append(
                f"micro_batch_size={self.micro_batch_size} must divide the {episodes} episodes of a step "
                "(prompts_per_step x num_generations)"
            )
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            problems.append(f"vllm_gpu_memory_utilization={self.vllm_gpu_memory_utilization} not in (0, 1]")
        if problems:
            raise UserError(f"invalid GRPO settings: {'; '.join(problems)}. Fix: correct training.grpo.")

    @classmethod
    def from_config(cls, grpo: Mapping[str, Any]) -> GRPOSettings:
        """The GRPO keys of config.yaml's `training.grpo` section (the others are TrainSettings')."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in grpo.items() if k in names})
