"""Checks of config.yaml that its schema cannot express: keys whose values must name each other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# alignment.selection.subsets when a config has no such key (the schema's default; the stages and the report
# read it from a config or selection.json written before the key existed).
DEFAULT_SUBSETS = ("aligned", "random")


def config_problem(config: Mapping[str, Any]) -> str | None:
    """The first cross-key mistake of a schema-valid config, as a message naming the key and the fix."""
    refs = [("train_dataset", config["train_dataset"]), ("eval_dataset", config["eval_dataset"])]
    refs += [(f"predictions.{n}.dataset", p["dataset"]) for n, p in config["predictions"].items()]
    refs += [(f"runs.{n}.dataset", r["dataset"]) for n, r in config["runs"].items()]
    run_refs = [(f"mining.runs[{i}]", r) for i, r in enumerate(config["mining"]["runs"])]
    run_refs.append(("synthetic.run", config["synthetic"]["run"]))
    run_refs += [
        (f"training.sft_data.runs[{i}]", r) for i, r in enumerate(config["training"]["sft_data"]["runs"])
    ]
    sft_datasets = {config["runs"].get(r, {}).get("dataset") for r in config["training"]["sft_data"]["runs"]}
    if len(sft_datasets) > 1:
        return (
            "config key training.sft_data.runs names runs on different data sets "
            f"({', '.join(sorted(map(str, sft_datasets)))}). Fix: list runs of one data set."
        )
    for key, name in run_refs:
        if name not in config["runs"]:
            return (
                f"config key {key} names rollout run {name!r}, which is not under `runs` "
                f"(defined: {', '.join(sorted(config['runs']))}). Fix: add the run or correct {key}."
            )
    if config["repair_study"]["enabled"] and "base" not in config["evaluation"]["variants"]:
        return (
            "config key repair_study.enabled is true, but the study starts from the answers of eval_base and "
            "evaluation.variants lacks `base`. Fix: add base to evaluation.variants or disable the study."
        )
    for key, name in refs:
        if name not in config["datasets"]:
            return (
                f"config key {key} names data set {name!r}, which is not under `datasets` "
                f"(defined: {', '.join(sorted(config['datasets']))}). "
                f"Fix: add it to `datasets` or correct {key}."
            )
    ev = config["evaluation"]
    if ev.get("num_samples", 1) > 1 and not ev.get("temperature", 0.0) > 0:
        return (
            f"config key evaluation.num_samples is {ev['num_samples']} but evaluation.temperature is "
            f"{ev.get('temperature', 0.0)}: greedy samples are all the same. "
            "Fix: set evaluation.temperature > 0."
        )
    if ev.get("repair_samples", 1) > 1 and not ev.get("repair_temperature", 0.0) > 0:
        return (
            f"config key evaluation.repair_samples is {ev['repair_samples']} but "
            f"evaluation.repair_temperature is {ev.get('repair_temperature', 0.0)}: greedy repair candidates "
            "are all the same. "
            "Fix: set evaluation.repair_temperature > 0."
        )
    if ev.get("answer", "greedy") == "maj" and ev.get("num_samples", 1) < 2:
        return (
            "config key evaluation.answer is maj, but evaluation.num_samples is 1: maj@k votes over several "
            "samples. Fix: set evaluation.num_samples >= 2 (and temperature > 0) or answer: greedy."
        )
    grpo = config["training"].get("grpo", {})
    episodes = grpo.get("prompts_per_step", 2) * grpo.get("num_generations", 4)
    if grpo.get("micro_batch_size") and episodes % grpo["micro_batch_size"]:
        return (
            f"config key training.grpo.micro_batch_size is {grpo['micro_batch_size']}, which does not divide "
            f"the {episodes} episodes of a GRPO step (prompts_per_step x num_generations). Fix: choose a "
            "divisor, or null to train all of a step's episodes at once."
        )
    if "base" not in config["evaluation"]["variants"]:
        variants = ", ".join(config["evaluation"]["variants"])
        return (
            "the alignment stage measures AR against the base model's predictions, but evaluation.variants "
            f"({variants}) lacks base. Fix: add base to evaluation.variants."
        )
    return None
