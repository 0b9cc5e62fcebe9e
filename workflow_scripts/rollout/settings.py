"""The settings of one rollout run, and their translation from config.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args

from workflow_scripts.core.errors import UserError
from workflow_scripts.rollout.feedback import FeedbackDetail, FeedbackMode, RepairScope, canonical_mode
from workflow_scripts.rollout.generation import SamplingConfig
from workflow_scripts.rollout.retrieval import Mode

Answer = Literal["all", "greedy", "maj"]
RepairPrompt = Literal["conversation", "refocus"]

# Which keys of a resolved run entry each consumer reads, so that each rule's params hold exactly those
# (rules/common.smk): an edit then reruns only the jobs whose output it can change.
# The first-turn prompt: schema retrieval and shown evidence (all that synthetic pairs take from their run).
PROMPT_KEYS = ("schema_mode", "top_k_tables", "fk_hops", "cell_values", "evidence")
# GRPO's episodes: the evaluation's prompts, feedback and stop strings; GRPO sets its own sampling, turns,
# answer (every episode) and repair prompt (the conversation: an episode is one token sequence).
EPISODE_KEYS = (*PROMPT_KEYS, "feedback_mode", "feedback_detail", "repair_scope", "stop")
# Only size a job for the scheduler (Snakemake `threads`, `resources.gpu`): no output depends on them.
RESOURCE_KEYS = ("threads", "gpus")
# What the repair study (cli.rollout.study) overrides or never reads of eval_base's run: it repairs greedily,
# one candidate per prompt, for repair_study.max_turns turns, on the examples of eval_base's trajectories.
STUDY_UNUSED_KEYS = ("repair_samples", "repair_temperature", "max_turns", "limit", "shards")


@dataclass(frozen=True)
class RolloutSettings:
    """One rollout run's settings (see `runs` and `rollout` in config.yaml)."""

    schema_mode: Mode = "bm25_fk"
    top_k_tables: int = 4
    fk_hops: int = 1
    cell_values: int = 0
    max_turns: int = 1
    feedback_mode: FeedbackMode = "online_visible"
    feedback_detail: FeedbackDetail = "column"
    repair_scope: RepairScope = "online_guarded"
    repair_samples: int = 1
    # temperature of the repair turns (None: the first turn's); with repair_samples > 1 and a temperature > 0
    # the repair candidates differ, and the trajectory goes on from the first one its verifier accepts
    repair_temperature: float | None = None
    # the repair prompt: "conversation" (first prompt, failed SQL, feedback) or "refocus" (a column read from
    # the wrong table: the question anew over the tables that own it; `loop._repair_prompt`)
    repair_prompt: RepairPrompt = "conversation"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # `prompt.evidence`: show an example's evidence (BIRD's external knowledge) in its prompt: "auto" (when
    # the example has one: BIRD-style data), True (same; the key says it is wanted) or False (never).
    evidence: bool | str = "auto"
    # Which turn-1 candidate is an example's answer, the one that goes to repair: "all" (every sample is its
    # own trajectory: mining), "greedy" or "maj" (maj@k: the majority vote over the executed results of
    # the samples). With num_samples > 1 and temperature > 0, "greedy" and "maj" generate one greedy
    # candidate (sample 0) plus num_samples sampled ones (samples 1..k); only the answer is repaired.
    answer: Answer = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "feedback_mode", canonical_mode(self.feedback_mode))
        for name, choices in (
            ("schema_mode", Mode),
            ("feedback_detail", FeedbackDetail),
            ("repair_scope", RepairScope),
            ("repair_prompt", RepairPrompt),
            ("answer", Answer),
        ):
            check_choice(name, getattr(self, name), choices)
        if self.evidence not in (True, False, "auto"):
            raise ValueError(f"prompt.evidence must be true, false or auto, not {self.evidence!r}")
        if self.answer == "maj" and (self.sampling.num_samples < 2 or self.sampling.greedy):
            raise UserError(
                "maj@k needs several sampled candidates. Fix: set evaluation.num_samples >= 2 and "
                "evaluation.temperature > 0, or evaluation.answer: greedy."
            )

    @property
    def repair_sampling(self) -> SamplingConfig:
        """Repair turns: `repair_samples` candidates at `repair_temperature` (None: the first turn's)."""
        temperature = (
            self.sampling.temperature if self.repair_temperature is None else self.repair_temperature
        )
        return replace(self.sampling, num_samples=self.repair_samples, temperature=temperature)

    @classmethod
    def from_keys(cls, run: Mapping[str, Any]) -> RolloutSettings:
        """The settings of the keys `run` has (e.g. only EPISODE_KEYS); every other one keeps its default."""
        names = {f.name for f in fields(cls)} - {"sampling"}
        sampling = SamplingConfig(stop=tuple(run["stop"])) if "stop" in run else SamplingConfig()
        return cls(**{k: v for k, v in run.items() if k in names}, sampling=sampling)

    @classmethod
    def from_config(cls, run: Mapping[str, Any]) -> RolloutSettings:
        """The settings of a resolved run entry of config.yaml (`rollout` defaults and the run's keys)."""
        return cls(
            schema_mode=run["schema_mode"],
            top_k_tables=run["top_k_tables"],
            fk_hops=run["fk_hops"],
            cell_values=run["cell_values"],
            max_turns=run["max_turns"],
            feedback_mode=run["feedback_mode"],
            feedback_detail=run["feedback_detail"],
            repair_scope=run["repair_scope"],
            repair_samples=run["repair_samples"],
            repair_temperature=run["repair_temperature"],
            repair_prompt=run["repair_prompt"],
            evidence=run["evidence"],
            # only the evaluation's runs choose an answer; in every other run each sample is a trajectory
            answer=run.get("answer", "all"),
            sampling=SamplingConfig(
                num_samples=run["num_samples"],
                temperature=run["temperature"],
                top_p=run["top_p"],
                max_new_tokens=run["max_new_tokens"],
                seed=run["seed"],
                stop=tuple(run["stop"]),
            ),
        )


def check_choice(name: str, value: Any, choices: Any) -> None:
    """Raise ValueError unless `value` is one of the `Literal` type `choices`."""
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, not {value!r}")
