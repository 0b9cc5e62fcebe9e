"""Exact reruns: editing a key plans exactly the jobs whose output it can change, and their dependents.

Real Snakemake dry runs on a copy of the workflow whose every output is present and up to date (made with
`--touch`, no job runs; tests/workflow/touched.py). Each rule's params hold only the settings its stage
reads (rules/common.smk, rollout/settings.py), so e.g. evaluation.repair_temperature no longer retrains GRPO,
and keys that only size a job for the scheduler (threads, gpus) rerun nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workflow import touched

# The demo config's rollout runs: the mining run, the evaluated variants and the alignment subsets.
EVAL = ["eval_base", "eval_sft", "eval_sft_dpo", "eval_sft_grpo", "eval_sft_aligned", "eval_sft_misaligned"]
SFT_EVAL = [run for run in EVAL if run != "eval_base"]


def rollouts(*runs: str) -> list[str]:
    return ["rollout_shard", "rollout_gather"] * len(runs)


# What reads the eval rollouts (the comparison, the repair study on eval_base, alignment) and the report.
AFTER_EVAL = ["compare_variants", "repair_study", "alignment", "report", "all"]
# What an adapter change reruns: its evaluation and what reads it (no repair study: base has no adapter).
AFTER_ADAPTER = ["compare_variants", "alignment", "report", "all"]
# What the mining run feeds: pairs and every SFT-based adapter (then their evaluations).
MINED = ["mine_pairs", "merge_pairs", "train_sft", "train_sft_dpo", "train_sft_grpo", "alignment_select",
         "train_sft_subset", "train_sft_subset"]  # fmt: skip

EXPECTED: dict[str, tuple[object, list[str]]] = {
    # evaluation-only keys: the eval rollouts and their readers; GRPO samples its own repairs and turns
    "evaluation.repair_temperature": (0.5, [*rollouts(*EVAL), *AFTER_EVAL]),
    "evaluation.max_turns": (3, [*rollouts(*EVAL), *AFTER_EVAL]),
    # ... but GRPO's episodes get the evaluation's feedback: its adapter is trained again
    "evaluation.feedback_detail": ("minimal", [*rollouts(*EVAL), *AFTER_EVAL, "train_sft_grpo"]),
    # the k samples' temperature, unused while evaluation.num_samples is 1
    "evaluation.temperature": (0.9, []),
    "evaluation.bootstrap_seed": (1, ["compare_variants", "report", "all"]),
    # a rollout-only key of one run: that run and what it feeds (not synthetic pairs, which read its prompts)
    "runs.train_mining.max_new_tokens": (32, [*rollouts("train_mining", *SFT_EVAL), *MINED, *AFTER_ADAPTER]),
    # batched generation pads prompts to the batch's longest, which can change a greedy token: every rollout
    "rollout.batch_size": (8, [*rollouts("train_mining", *EVAL), *MINED, *AFTER_EVAL]),
    # the scheduler's keys: no output depends on them
    "rollout.threads": (1, []),
    "rollout.gpus": (1, []),
    "training.threads": (1, []),
    "training.gpus": (1, []),
    # training-only keys: the adapter, its evaluation and what reads it
    "training.grpo.temperature": (0.5, ["train_sft_grpo", *rollouts("eval_sft_grpo"), *AFTER_ADAPTER]),
    "training.dpo.beta": (0.2, ["train_sft_dpo", *rollouts("eval_sft_dpo"), *AFTER_ADAPTER]),
    "synthetic.per_type": (
        2,
        ["synthetic_negatives", "merge_pairs", "train_sft_dpo", *rollouts("eval_sft_dpo"), *AFTER_ADAPTER],
    ),  # fmt: skip
    "repair_study.limit": (4, ["repair_study", "report", "all"]),
    # the analysis reads ngram_max, alpha, c and sample_size; the demo's subsets (aligned, misaligned) no seed
    "alignment.sample_size.draws": (10, ["alignment", "report", "all"]),
    "alignment.selection.seed": (1, []),
}


@pytest.mark.parametrize("key", list(EXPECTED))
def test_editing_a_key_plans_exactly_its_dependents(completed: Path, key: str) -> None:
    value, rules = EXPECTED[key]
    original = (completed / "config.yaml").read_text()
    try:
        touched.set_config(completed, **{key: value})
        assert touched.planned_rules(completed) == sorted(rules), key
    finally:
        (completed / "config.yaml").write_text(original)
