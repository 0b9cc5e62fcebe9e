"""The Snakemake workflow run for real in a temporary directory: end to end, incremental, validated."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow

COPIED = [
    "Snakefile",
    "rules",
    "schemas",
    "workflow_scripts",
    "config.yaml",
    "config",
    "profiles",
    "envs",
    "requirements.txt",
    "requirements-gpu.txt",
]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "2",
        "--directory",
        str(workdir),
        "--snakefile",
        str(workdir / "Snakefile"),
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def set_config(workdir: Path, **changes) -> None:
    """Edit config.yaml as a user would: change nested keys given as dotted paths."""
    path = workdir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def planned_rules(workdir: Path) -> list[str]:
    """Rules a dry run would execute, from the job table that `snakemake -n` prints."""
    out = snakemake(workdir, "-n", "--quiet", "rules").stdout
    if "Nothing to be done" in out:
        return []
    rules = []
    for line in out.split("Job stats:")[1].splitlines():
        parts = line.split()
        if parts and parts[0] == "total":
            break
        if len(parts) == 2 and parts[1].isdigit():
            rules += [parts[0]] * int(parts[1])
    return sorted(rules)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, default_model: Path) -> Path:
    """A copy of the workflow, run once end to end with the real default model."""
    work = tmp_path_factory.mktemp("workflow")
    for name in COPIED:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    # The real model on a small slice, so that the whole DAG runs in a few minutes.
    set_config(
        work,
        **{
            "model.path": str(default_model),
            "rollout.limit": 3,
            "rollout.max_new_tokens": 32,
            "rollout.threads": 1,
            "runs.train_mining.limit": 4,
            "runs.probe": {"dataset": "demo_dev", "max_turns": 2},  # a greedy run for the shard test
            "training.threads": 1,
            "training.sft.max_steps": 2,
            "training.sft.max_length": 512,
            "training.dpo.max_steps": 1,
            "training.dpo.max_length": 512,
            "evaluation.limit": 3,
            # Tiny rollouts of a 135M model give few natural pairs: no caps, so the DPO set is never empty.
            "merge.input_fractions": {},
            "merge.type_fractions": {},
        },
    )
    snakemake(work)
    return work


EVAL = ["eval_base", "eval_dpo", "eval_sft", "eval_sft_dpo"]
RUNS = sorted(["probe", "train_mining", *EVAL])


def rollout_jobs(*runs: str) -> list[str]:
    return [*["rollout_gather"] * len(runs), *["rollout_shard"] * len(runs)]


def test_main_job_reaches_the_report(workdir: Path):
    report = (workdir / "results" / "report" / "index.html").read_text()
    for title in (
        "Data sets",
        "Base model",
        "Rollouts",
        "gold-table recall",
        "Preference pairs",
        "Evaluation matrix",
        "Paired differences",
    ):
        assert title in report
    assert "data:image/png;base64," in report
    for run in RUNS:
        summary = json.loads((workdir / "results" / "rollouts" / run / "summary.json").read_text())
        trajectories = pd.read_parquet(workdir / "results" / "rollouts" / run / "trajectories.parquet")
        assert (workdir / "results" / "rollouts" / run / "grpo_rollouts.parquet").is_file()
        assert trajectories["turn"].max() <= summary["max_turns"]
        assert run in report
    for run in EVAL:
        summary = json.loads((workdir / "results" / "rollouts" / run / "summary.json").read_text())
        assert summary["examples"] == 3 and summary["max_turns"] == 2
    for name in ("demo_train", "demo_dev"):
        summary = json.loads((workdir / "results" / "data" / name / "summary.json").read_text())
        assert summary["usable"] > 0 and summary["gold_failed"] == 0
        assert name in report
        examples = pd.read_parquet(workdir / "results" / "data" / name / "examples.parquet")
        assert len(examples) == summary["usable"]
    assert (workdir / "results" / "logs" / "ingest" / "demo_dev.log").is_file()
    assert (workdir / "results" / "benchmarks" / "report.tsv").is_file()


def test_pairs_and_adapters(workdir: Path):
    import datasets

    merged = workdir / "results" / "pairs" / "merged"
    quality = json.loads((merged / "quality.json").read_text())
    assert quality["after"]["pairs"] > 0 and quality["after"]["chosen_executable_rate"] == 1.0
    train = datasets.load_dataset("parquet", data_files=str(merged / "train.parquet"), split="train")
    assert len(train) == quality["after"]["pairs"]
    assert train[0]["prompt"][0]["role"] == "system" and train[0]["chosen"][0]["role"] == "assistant"
    negatives = pd.read_parquet(workdir / "results" / "pairs" / "synthetic" / "negatives.parquet")
    assert {"wrong_column", "missing_join", "wrong_aggregation"} <= set(negatives[negatives["kept"]]["type"])
    for variant in ("sft", "dpo", "sft_dpo"):
        adapter = workdir / "results" / "adapters" / variant
        assert (adapter / "adapter_config.json").is_file() and (
            adapter / "adapter_model.safetensors"
        ).is_file()
        assert not (adapter / "ref").exists()
    compare = pd.read_parquet(workdir / "results" / "evaluation" / "compare.parquet")
    assert sorted(compare["variant"].unique()) == ["base", "dpo", "sft", "sft_dpo"]
    assert set(compare["mode"]) == {"one-shot", "repair"}
    paired = pd.read_parquet(workdir / "results" / "evaluation" / "paired_repair.parquet")
    assert len(paired) == 6 and paired["McNemar p"].between(0, 1).all()


def test_second_run_does_nothing(workdir: Path):
    assert planned_rules(workdir) == []


def test_editing_a_key_reruns_only_what_uses_it(workdir: Path):
    original = (workdir / "config.yaml").read_text()
    everything = ["all", "compare_variants", "demo_data", "ingest", "ingest", "merge_pairs", "mine_pairs",
                  "report", "retrieval_recall", *rollout_jobs(*RUNS), "synthetic_negatives", "train_dpo",
                  "train_sft", "train_sft_dpo"]  # fmt: skip
    expected = {
        "report.title": ["all", "report"],
        "runs.probe.feedback_detail": ["all", "report", *rollout_jobs("probe")],
        "evaluation.feedback_detail": ["all", "compare_variants", "report", *rollout_jobs(*EVAL)],
        "training.sft.max_steps": ["all", "compare_variants", "report",
                                   *rollout_jobs("eval_sft", "eval_sft_dpo"), "train_sft", "train_sft_dpo"],
        "merge.min_reward_margin": ["all", "compare_variants", "merge_pairs", "report",
                                    *rollout_jobs("eval_dpo", "eval_sft_dpo"), "train_dpo", "train_sft_dpo"],
        "sandbox.timeout_s": [r for r in everything if r != "demo_data"],
        "demo.seed": everything,
    }  # fmt: skip
    values = {"report.title": "Another title", "runs.probe.feedback_detail": "minimal",
              "evaluation.feedback_detail": "minimal", "training.sft.max_steps": 3,
              "merge.min_reward_margin": 0.2, "sandbox.timeout_s": 7.5, "demo.seed": 3}  # fmt: skip
    try:
        for key, rules in expected.items():
            (workdir / "config.yaml").write_text(original)
            set_config(workdir, **{key: values[key]})
            assert planned_rules(workdir) == sorted(rules), key
    finally:
        (workdir / "config.yaml").write_text(original)
    assert planned_rules(workdir) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ingest.missing_db": "ignore"}, "missing_db"),
        ({"sandbox.timeout_s": -1}, "timeout_s"),
        ({"sandbox.workers": "two"}, "workers"),
        ({"eval_dataset": "spider_dev"}, "eval_dataset"),
    ],
)
def test_invalid_config_fails_before_any_job(workdir: Path, changes: dict, message: str):
    original = (workdir / "config.yaml").read_text()
    try:
        set_config(workdir, **changes)
        done = snakemake(workdir, "-n", check=False)
    finally:
        (workdir / "config.yaml").write_text(original)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr
    assert "Job stats" not in done.stdout


def test_external_predictions_are_scored_inside_the_workflow(workdir: Path):
    dev = json.loads((workdir / "resources" / "demo" / "dev.json").read_text())
    pred = workdir / "pred.sql"
    # Gold for the first half, a broken query for the rest.
    lines = [r["query"] if i < len(dev) // 2 else "SELECT nothing FROM nowhere" for i, r in enumerate(dev)]
    pred.write_text("\n".join(lines) + "\n")
    original = (workdir / "config.yaml").read_text()
    try:
        set_config(workdir, predictions={"half": {"dataset": "demo_dev", "path": str(pred)}})
        snakemake(workdir)
        summary = json.loads((workdir / "results" / "predictions" / "half" / "summary.json").read_text())
        assert summary["correct"] == len(dev) // 2 and summary["scored"] == len(dev)
        assert "External predictions" in (workdir / "results" / "report" / "index.html").read_text()
    finally:
        (workdir / "config.yaml").write_text(original)


def test_bad_dataset_fails_with_one_clear_message_and_no_output(workdir: Path):
    bad = workdir / "bad.jsonl"
    bad.write_text('{"db_id": "flights", "question": "q", "query": "SELECT 1"}\n{"db_id": "flights", oops}\n')
    original = (workdir / "config.yaml").read_text()
    out = workdir / "results" / "data" / "demo_dev"
    try:
        set_config(workdir, **{"datasets.demo_dev.path": str(bad)})
        done = snakemake(workdir, check=False)
        assert done.returncode != 0
        assert f"error: {bad}: malformed JSON on line 2" in done.stdout + done.stderr
        assert "Traceback" not in (workdir / "results" / "logs" / "ingest" / "demo_dev.log").read_text()
        assert not any(out.glob("*.parquet")) and not (out / "summary.json").exists()
    finally:
        (workdir / "config.yaml").write_text(original)
    snakemake(workdir)
    assert planned_rules(workdir) == []


def test_shards_give_the_same_trajectories(workdir: Path):
    path = workdir / "results" / "rollouts" / "probe" / "trajectories.parquet"
    timing = ["latency_s", "exec_s"]
    before = pd.read_parquet(path).drop(columns=timing)
    original = (workdir / "config.yaml").read_text()
    try:
        set_config(workdir, **{"runs.probe.shards": 2})
        assert planned_rules(workdir) == ["all", "report", "rollout_gather", "rollout_shard", "rollout_shard"]
        snakemake(workdir)
        after = pd.read_parquet(path).drop(columns=timing)
    finally:
        (workdir / "config.yaml").write_text(original)
    pd.testing.assert_frame_equal(before, after)
