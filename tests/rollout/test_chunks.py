"""Resumable rollout shards: a shard killed with SIGKILL keeps its finished chunks, and a rerun rolls out only
the missing ones and writes the same trajectories as an uninterrupted shard; chunks of another
configuration are never reused.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, ingest_concert_questions
from workflow_scripts.rollout.chunks import ChunkStore, chunk_dir, chunk_ranges

QUESTIONS = {
    "How many singers are there?": "SELECT count(*) FROM singer",
    "Names of singers from Peru?": "SELECT name FROM singer WHERE country = 'Peru'",
    "How many concerts are there?": "SELECT count(*) FROM concert",
    "What is the oldest singer's age?": "SELECT max(age) FROM singer",
    "Which venues held concerts in 2012?": "SELECT DISTINCT venue FROM concert WHERE year = 2012",
    "How many singers are from Japan?": "SELECT count(*) FROM singer WHERE country = 'Japan'",
}
# Wall-clock columns: the only ones a rerun may change.
TIMING = ["latency_s", "exec_s"]


def test_chunk_ranges_cover_every_example_once():
    assert chunk_ranges(5, 2) == [range(0, 2), range(2, 4), range(4, 5)]
    assert chunk_ranges(5, None) == [range(5)] and chunk_ranges(5, 0) == [range(5)]
    assert chunk_ranges(0, 3) == [range(0)]


def test_a_chunk_is_reused_only_for_the_same_fingerprint_and_examples(tmp_path):
    root = tmp_path / ".0.chunks"
    frame = pd.DataFrame({"example_id": ["a", "b"], "sql": ["SELECT 1", "SELECT 2"]})
    store = ChunkStore(root, "f" * 64)
    store.save(0, frame, ["a", "b"])
    again = ChunkStore(root, "f" * 64)
    pd.testing.assert_frame_equal(again.load(0, ["a", "b"]), frame)
    assert again.load(0, ["a", "c"]) is None  # other examples (e.g. another shard split)
    assert again.load(1, ["c"]) is None  # not written yet
    other = ChunkStore(root, "e" * 64)  # another configuration or data: discarded
    assert other.load(0, ["a", "b"]) is None and not store.path(0).exists()
    assert not list(root.glob("*.tmp"))


# ------------------------------------------------------------------------- real kill -9 of a real shard


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return ingest_concert_questions(tmp_path_factory.mktemp("chunks"), QUESTIONS, "c")["dir"]


def run_entry(model: Path, **change) -> dict:
    """A resolved run entry as the workflow passes it: config.yaml's `rollout`, greedy, one repair turn."""
    rollout = yaml.safe_load((REPO / "config.yaml").read_text())["rollout"]
    entry = {**rollout, "dataset": "c", "model": str(model), "adapter": None, "evidence": "auto"}
    return entry | {"backend": "transformers", "batch_size": 2, "max_new_tokens": 24, "max_turns": 2} | change


def shard_command(run: dict, data_dir: Path, out: Path) -> list[str]:
    execution = json.dumps({"sandbox": {"workers": 1, "timeout_s": 2.0}, "matching": {}})
    return [sys.executable, "-m", "workflow_scripts.cli.rollout", "shard", "--run", "r", "--settings",
            json.dumps(run), "--data-dir", str(data_dir), "--shard", "0", "--execution", execution,
            "--threads", "2", "--out", str(out)]  # fmt: skip


def run_shard(run: dict, data_dir: Path, out: Path) -> str:
    done = subprocess.run(
        shard_command(run, data_dir, out), cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def kill_after_first_chunk(run: dict, data_dir: Path, out: Path) -> int:
    """Start a shard, SIGKILL it once a chunk is written; return how many chunks were written."""
    root = chunk_dir(out)
    proc = subprocess.Popen(
        shard_command(run, data_dir, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while proc.poll() is None and not list(root.glob("chunk-*.parquet")):
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the shard ended before it could be killed"
    return len(list(root.glob("chunk-*.parquet")))


def test_the_shard_fingerprint_changes_with_what_decides_the_trajectories(tmp_path):
    from workflow_scripts.cli.rollout import shard_identity
    from workflow_scripts.core.fingerprint import fingerprint
    from workflow_scripts.core.scoring import MatchSettings

    data = tmp_path / "data"
    data.mkdir()
    for name in ("examples", "gold", "schema"):
        (data / f"{name}.parquet").write_bytes(name.encode())
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    run = run_entry(model, chunk_size=2)

    def identity(run=run, shard=0, match: MatchSettings | None = None) -> str:
        return fingerprint(shard_identity(run, data, shard, {"workers": 1}, match or MatchSettings()))

    same = identity()
    assert identity(run | {"threads": 7}) == same  # the cores a (requeued) job gets
    changed = {
        identity(run | {"max_new_tokens": 25}),
        identity(run | {"temperature": 0.5}),
        identity(shard=1),
        identity(match=MatchSettings(metric="strict")),
    }
    (data / "gold.parquet").write_bytes(b"other gold")
    changed.add(identity())
    (model / "config.json").write_text('{"layers": 2}')
    changed.add(identity())
    assert same not in changed and len(changed) == 6


@pytest.mark.slow
def test_a_killed_shard_resumes_to_the_uninterrupted_trajectories(default_model, data_dir, tmp_path):
    run = run_entry(default_model, chunk_size=2, limit=4)  # 2 chunks of 2 examples
    whole, resumed = tmp_path / "whole" / "0.parquet", tmp_path / "resumed" / "0.parquet"
    run_shard(run, data_dir, whole)
    assert not chunk_dir(whole).exists()  # removed once the shard is written

    written = kill_after_first_chunk(run, data_dir, resumed)
    assert written == 1 and not resumed.exists()
    log = run_shard(run, data_dir, resumed)
    assert "2 chunks of up to 2 examples: 1 done by an earlier run, 1 to roll out" in log
    a, b = (pd.read_parquet(p).drop(columns=TIMING) for p in (whole, resumed))
    assert a["example_id"].nunique() == 4 and (a["turn"] == 2).any()  # repairs inside the chunks too
    pd.testing.assert_frame_equal(a, b)
    assert not chunk_dir(resumed).exists()


def test_a_terminated_vllm_shard_leaves_no_engine_process_behind(default_model, data_dir, tmp_path):
    """SIGTERM (Snakemake's Ctrl-C, SLURM's time limit) of a vLLM shard: the shard ends and so do its child
    processes (before, a GPU-style engine process kept computing until killed by hand). On a CPU the engine
    runs inside the shard's process (its children are the sandbox's workers)."""
    import psutil
    import torch

    run = run_entry(default_model, backend="vllm", chunk_size=2, limit=8)
    out = tmp_path / "terminated" / "0.parquet"
    proc = subprocess.Popen(
        shard_command(run, data_dir, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline, engine = time.monotonic() + 300, []
        while (
            proc.poll() is None and time.monotonic() < deadline and not list(chunk_dir(out).glob("chunk-*"))
        ):
            time.sleep(0.5)  # the engine is up once a chunk is written
            engine = psutil.Process(proc.pid).children(recursive=True)
        assert proc.poll() is None and engine, "the shard ended before its engine was up"
        names = [p.name() for p in engine]
        if not torch.cuda.is_available():
            assert not [n for n in names if n.startswith("VLLM")], names  # no engine process of its own
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
        _, alive = psutil.wait_procs(engine, timeout=60)
        assert not alive, [(p.pid, p.name()) for p in alive]
    finally:
        for process in (*engine, proc):
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                process.kill()
