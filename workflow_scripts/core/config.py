"""Checks of config.yaml that its schema cannot express: keys whose values must name each other, and paths
the run reads that are not there (both run by rules/common.smk before any job)."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from typing import Any

from workflow_scripts.core.packaged import PACKAGED_MODELS, is_packaged

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
    if ev["num_samples"] > 1 and not ev["temperature"] > 0:
        return (
            f"config key evaluation.num_samples is {ev['num_samples']} but evaluation.temperature is "
            f"{ev['temperature']}: greedy samples are all the same. "
            "Fix: set evaluation.temperature > 0."
        )
    if ev["repair_samples"] > 1 and not ev["repair_temperature"] > 0:
        return (
            f"config key evaluation.repair_samples is {ev['repair_samples']} but "
            f"evaluation.repair_temperature is {ev['repair_temperature']}: greedy repair candidates "
            "are all the same. "
            "Fix: set evaluation.repair_temperature > 0."
        )
    if ev["answer"] == "maj" and ev["num_samples"] < 2:
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


def used_datasets(config: Mapping[str, Any]) -> list[str]:
    """The data sets a run or a predictions file reads: train and eval sets, every run's and prediction's."""
    names = {config["train_dataset"], config["eval_dataset"]}
    names |= {run["dataset"] for run in config["runs"].values()}
    names |= {pred["dataset"] for pred in config["predictions"].values()}
    return sorted(names)


def _is_built(path: str, built: Collection[str]) -> bool:
    """Whether the workflow makes `path`: it is one of `built` or lies inside one of them."""
    norm = os.path.normpath(path)
    return any(norm == b or norm.startswith(b + os.sep) for b in map(os.path.normpath, built))


def _absent(key: str, path: str, kind: str, fix: str) -> str:
    # a relative path is the usual surprise: say what it is relative to
    where = "" if os.path.isabs(path) else " (relative to the directory snakemake runs in)"
    return f"config key {key} is {path!r}{where}, which is not {kind} here. Fix: {fix}"


def path_problems(
    config: Mapping[str, Any],
    *,
    built: Collection[str] = (),
    is_file: Callable[[str], bool] = os.path.isfile,
    is_dir: Callable[[str], bool] = os.path.isdir,
) -> list[str]:
    """Every path the run reads that is not there, one message per key naming the path and the fix.

    Checked: the used data sets' `path`, `db_root`, `tables` and `test_suite_root`, `model.path` and every
    run's `model` (a directory holding config.json, or a packaged model's name, which the workflow builds),
    every run's `adapter` and every `predictions.NAME.path`. Paths in `built` (and inside them) are outputs
    of the workflow (the demo data, the adapters it trains) and are not required to exist yet. Relative paths
    are relative to the working directory, as Snakemake reads them. Run after `config_problem` (this needs
    the names to resolve).
    """
    problems: list[str] = []
    for name in used_datasets(config):
        entry = config["datasets"][name]
        wanted = (
            ("path", is_file, "a file", "the data set's JSON or JSONL file of examples"),
            ("db_root", is_dir, "a directory", "the directory holding its SQLite databases"),
            ("tables", is_file, "a file", "its Spider tables.json, or null"),
            ("test_suite_root", is_dir, "a directory", "its test-suite databases, or null"),
        )
        for field, exists, kind, what in wanted:
            path = entry.get(field)
            if path and not _is_built(path, built) and not exists(path):
                problems.append(_absent(f"datasets.{name}.{field}", path, kind, f"point it at {what}."))
    models = [("model.path", config["model"]["path"])]
    models += [(f"runs.{n}.model", r["model"]) for n, r in config["runs"].items() if r.get("model")]
    for key, value in models:
        if is_packaged(value) or _is_built(str(value), built):
            continue
        if not is_dir(value):
            problems.append(
                f"config key {key} is {value!r}, which is neither a directory here nor a packaged model's "
                f"name ({', '.join(PACKAGED_MODELS)}). Fix: set it to a local Hugging Face model directory "
                "or to one of those names."
            )
        elif not is_file(os.path.join(value, "config.json")):
            problems.append(
                f"config key {key} is {value!r}, a directory without config.json, so not a Hugging Face "
                "model. Fix: point it at the directory that holds config.json and the weights."
            )
    for name, run in config["runs"].items():
        adapter = run.get("adapter")
        if not adapter or _is_built(adapter, built):
            continue
        if not is_file(os.path.join(adapter, "adapter_config.json")):
            kind = "a directory" if not is_dir(adapter) else "a PEFT adapter (it has no adapter_config.json)"
            problems.append(
                _absent(
                    f"runs.{name}.adapter",
                    adapter,
                    kind,
                    "point it at a PEFT adapter directory, or at one the workflow trains "
                    "(results/adapters/<variant>), or remove the key.",
                )
            )
    for name, pred in config["predictions"].items():
        if not _is_built(pred["path"], built) and not is_file(pred["path"]):
            problems.append(
                _absent(
                    f"predictions.{name}.path",
                    pred["path"],
                    "a file",
                    "point it at the predictions file (one SQL per line, or JSONL with id and sql).",
                )
            )
    return problems
