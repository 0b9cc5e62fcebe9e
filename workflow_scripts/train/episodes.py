"""GRPO's episodes: the project's rollout loop as trl's `rollout_func`, each episode one token sequence
(the model's turns and, masked out of the loss, the feedback between them) with the reward of its final
answer (`train.rewards`), and the reward functions that pass those rewards on to trl."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from workflow_scripts.core.errors import UserError
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
from workflow_scripts.rollout.loop import PreparedExample, run_rollout
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.rollout.summary import final_answers
from workflow_scripts.train.rewards import episode_reward
from workflow_scripts.train.settings import GRPOSettings


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
    from workflow_scripts.rollout.prompts import repair_prompt

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
