import json
import mimetypes
import os
import re
import shlex

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from workflow_scripts.core.config import config_problem, path_problems, used_datasets
from workflow_scripts.core.packaged import MODELS_DIR, PACKAGED_MODELS, model_dir
from workflow_scripts.rollout.settings import EPISODE_KEYS, PROMPT_KEYS, RESOURCE_KEYS, STUDY_UNUSED_KEYS

min_version("9.0")


validate(config, "../schemas/config.schema.yaml")

# `snakemake --report` offers the Parquet tables marked with report() as downloads (unknown to Python's
# mimetypes, they would be shown as text).
mimetypes.add_type("application/vnd.apache.parquet", ".parquet")

DEMO_DIR = "resources/demo"
# The files that demo_data writes (rules/data.smk); data set paths under them are built, need not exist yet.
DEMO_OUTPUTS = {
    "train": f"{DEMO_DIR}/train.json",
    "dev": f"{DEMO_DIR}/dev.json",
    "indomain": f"{DEMO_DIR}/indomain.json",
    "tables": f"{DEMO_DIR}/tables.json",
    "databases": f"{DEMO_DIR}/database",
}
# The base model's directory: model.path itself, or resources/models/<name> for a packaged model's name.
MODEL_DIR = model_dir(config["model"]["path"])
DATASETS = sorted(config["datasets"])
# The data sets a run or a predictions file reads: only these are ingested and reported by default, so that
# the demo sets of config.yaml, which a --configfile cannot remove, are not built in a run on other data.
USED_DATASETS = used_datasets(config)
PREDICTIONS = sorted(config["predictions"])


# Cross-key checks the schema cannot express (names that must refer to each other), before any job runs.
problem = config_problem(config)
if problem:
    raise WorkflowError(problem)


wildcard_constraints:
    dataset="|".join(DATASETS) or "NONE",
    name="[A-Za-z0-9_-]+",
    run="[A-Za-z0-9_-]+",
    shard=r"\d+",
    packaged="|".join(map(re.escape, PACKAGED_MODELS)),


def as_json(value):
    """Serialise a config value for a rule's params (sorted keys, so equal values compare equal)."""
    return json.dumps(value, sort_keys=True)


def dataset_inputs(wildcards):
    """Files a data set is read from (Snakemake builds the demo ones)."""
    entry = config["datasets"][wildcards.dataset]
    files = {"data": entry["path"]}
    if entry.get("tables"):
        files["tables"] = entry["tables"]
    return files


def data_dir(dataset):
    return f"results/data/{dataset}"


def data_files(dataset, *names):
    """The ingested Parquet files `names` of a data set, by name."""
    return {name: f"{data_dir(dataset)}/{name}.parquet" for name in names}


# How SQL is executed and compared, passed to every stage that runs SQL as one value (--execution).
EXECUTION = as_json({"sandbox": config["sandbox"], "matching": config["matching"]})


ADAPTER_DIR = "results/adapters"
VARIANTS = config["evaluation"]["variants"]
# Variants trained online (their adapters hold rewarded.parquet: the correct answers sampled in training).
GRPO_VARIANTS = ("grpo", "sft_grpo")


def eval_run_entry(variant):
    """The rollout run that evaluates a variant: greedy, with repair, on the eval set."""
    ev = config["evaluation"]
    return {
        "dataset": config["eval_dataset"],
        "adapter": None if variant == "base" else f"{ADAPTER_DIR}/{variant}",
        "max_turns": ev["max_turns"],
        "feedback_mode": ev["feedback_mode"],
        "feedback_detail": ev["feedback_detail"],
        "repair_scope": ev["repair_scope"],
        "limit": ev["limit"],
        # greedy, or with evaluation.num_samples > 1 one greedy and k sampled candidates (greedy, maj@k and
        # pass@k side by side); `answer` (greedy | maj) is the candidate that goes to repair
        "num_samples": ev["num_samples"],
        "temperature": ev["temperature"] if ev["num_samples"] > 1 else 0.0,
        "answer": ev["answer"],
        # k repair candidates at repair_temperature; the first the repair scope's verifier accepts goes on
        "repair_samples": ev["repair_samples"],
        "repair_temperature": ev["repair_temperature"],
        "repair_prompt": ev["repair_prompt"],
    }


EVAL_RUNS = {f"eval_{v}": eval_run_entry(v) for v in VARIANTS}
# The alignment-aware selection study: SFT adapters on the subsets alignment.selection.subsets names (aligned,
# random, misaligned), evaluated like a variant on the first alignment.selection.eval_limit examples
# (rules/alignment.smk).
SELECTION = config["alignment"]["selection"]
SELECTION_SUBSETS = list(SELECTION["subsets"]) if SELECTION["enabled"] else []
SELECTION_LIMIT = SELECTION["eval_limit"] or config["evaluation"]["limit"]
EVAL_RUNS.update(
    {f"eval_sft_{s}": {**eval_run_entry(f"sft_{s}"), "limit": SELECTION_LIMIT} for s in SELECTION_SUBSETS}
)
# Every adapter the workflow trains: the evaluated variants' and the selection subsets'.
ADAPTERS = [v for v in VARIANTS if v != "base"] + [f"sft_{s}" for s in SELECTION_SUBSETS]
# Adapters a run may name that the workflow trains on demand (rules/train.smk, rules/alignment.smk).
TRAINABLE_ADAPTERS = [f"{ADAPTER_DIR}/{v}" for v in ("sft", "dpo", "sft_dpo", "grpo", "sft_grpo")]
TRAINABLE_ADAPTERS += [f"{ADAPTER_DIR}/sft_{s}" for s in SELECTION_SUBSETS]

# Every path the run reads (data sets, model, adapters, predictions) must be there or be built by the
# workflow: caught here, all at once, rather than as a MissingInputException or, once results exist, not at
# all (Snakemake does not recheck inputs of up-to-date outputs).
problems = path_problems(config, built=[*DEMO_OUTPUTS.values(), *TRAINABLE_ADAPTERS])
if problems:
    raise WorkflowError(
        f"the config (config.yaml and any --configfile) names {len(problems)} path(s) that are not there:\n" + "\n".join(f"- {p}" for p in problems)
    )
RUNS = sorted(config["runs"])
# The feedback mode x repair scope study on eval_base's first turn (rule repair_study, rules/rollout.smk).
REPAIR_STUDY = config["repair_study"]


def run_settings(run):
    """A rollout run's settings: the `rollout` defaults overridden by the run's own keys."""
    entry = config["runs"][run] if run in config["runs"] else EVAL_RUNS[run]
    settings = {**config["rollout"], **entry}
    settings["vllm"] = {**config["rollout"]["vllm"], **entry.get("vllm", {})}
    settings["model"] = model_dir(entry.get("model", config["model"]["path"]))
    settings["adapter"] = entry.get("adapter")
    settings["evidence"] = config["prompt"]["evidence"]
    return settings


def run_shards(run):
    return [f"results/rollouts/{run}/shards/{i}.parquet" for i in range(run_settings(run)["shards"])]


def run_data(wildcards):
    """Input function: the ingested examples, gold results and schema of a run's data set."""
    return data_files(run_settings(wildcards.run)["dataset"], "examples", "gold", "gold_ts", "schema")


def rollout_model_inputs(wildcards):
    """The model (and adapter) directories a run reads, so Snakemake builds the default model first."""
    run = run_settings(wildcards.run)
    files = {"model": run["model"]}
    if run["adapter"]:
        files["adapter"] = run["adapter"]
    return files


def run_env(run):
    """The conda environment of a job that generates for `run`: the one with CUDA's vLLM when the job asks
    for GPUs (its backend is chosen inside the job, by `rollout.backends.resolve_backend_kind`)."""
    return "../envs/gpu.yaml" if run_settings(run)["gpus"] else "../envs/cpu.yaml"


def cpus_per_gpu(settings):
    """CPUs a GPU job asks the scheduler for per GPU: its `threads` over its `gpus` (0 for a CPU job)."""
    return -(-settings["threads"] // settings["gpus"]) if settings["gpus"] else 0


def gpu_resources(settings, mem_mb, runtime):
    """The `resources` of a job that may use GPUs: rollout and training jobs, from their config section."""
    return {"gpu": settings["gpus"], "cpus_per_gpu": cpus_per_gpu(settings), "mem_mb": mem_mb, "runtime": runtime}


# A rule's params hold exactly the run keys its stage reads (rollout/settings.py says which), so that an
# edit reruns only the jobs whose output it can change: e.g. evaluation.repair_temperature reruns the eval
# rollouts and what reads them, not GRPO, which samples its own repairs.
def only(settings, keys):
    return {k: settings[k] for k in keys}


def without(settings, keys):
    return {k: v for k, v in settings.items() if k not in keys}


def rollout_params(run):
    """A rollout run's settings as its shard and gather jobs read them: all but the scheduler's keys."""
    return as_json(without(run_settings(run), RESOURCE_KEYS))


# GRPO's episodes are rollouts on the train data set with the evaluation's prompts and feedback.
GRPO_ROLLOUT = as_json(only(run_settings("eval_base"), EPISODE_KEYS))


# Settings of `training` shared by every training job: checkpoints and experiment trackers.
RUN_KEYS = ("checkpoint_steps", "save_total_limit", "report_to")


def training_run_keys():
    """The shared run settings of `training` that config.yaml sets (the trainer has defaults for the rest)."""
    return {k: config["training"][k] for k in RUN_KEYS if k in config["training"]}


def training_settings(method):
    """The settings JSON of a training method: its section plus the shared LoRA and run settings."""
    return as_json(
        {**config["training"][method], "lora": config["training"]["lora"], **training_run_keys()}
    )


SFT_RUNS = config["training"]["sft_data"]["runs"]
# The data set the SFT runs roll out (one: config_problem checks it).
SFT_DATA_DIR = data_dir(run_settings(SFT_RUNS[0])["dataset"])
SFT_DATA_FLAGS = " ".join(
    [
        "--include-gold" if config["training"]["sft_data"]["include_gold"] else "--no-include-gold",
        "--include-correct" if config["training"]["sft_data"]["include_correct"] else "--no-include-correct",
        "--include-repair" if config["training"]["sft_data"].get("include_repair") else "--no-include-repair",
    ]
)
