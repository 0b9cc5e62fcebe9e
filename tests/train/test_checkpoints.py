"""Training checkpoints: a training job killed with SIGKILL resumes from its last complete checkpoint and
ends with the adapter an uninterrupted run writes; checkpoints of another configuration are never resumed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.train.test_training import DEMO, prompt_of
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.fingerprint import fingerprint
from workflow_scripts.train import checkpoints
from workflow_scripts.train.checkpoints import (
    COMPLETE_FILE,
    checkpoint_dir,
    complete_checkpoints,
    prepare_checkpoints,
    run_identity,
)
from workflow_scripts.train.settings import LoraSettings, TrainSettings, check_trackers

# 3 steps of batch 2 over 4 examples: a run killed after step 1 resumes across an epoch boundary (a new
# shuffle); LoRA dropout is on (the default 0.05), so the restored RNG state matters too.
SETTINGS = {
    "max_steps": 3,
    "per_device_batch_size": 2,
    "max_length": 256,
    "learning_rate": 1e-3,
    "gradient_checkpointing": False,
    "checkpoint_steps": 1,
    "save_total_limit": 2,
}


def make_checkpoint(root: Path, step: int, complete: bool) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        (path / COMPLETE_FILE).write_text("")
    return path


def test_prepare_resumes_the_newest_complete_checkpoint_of_the_same_fingerprint(tmp_path):
    root = tmp_path / ".sft.checkpoints"
    assert prepare_checkpoints(root, "a" * 64) is None  # nothing yet: step 0
    make_checkpoint(root, 2, complete=True)
    make_checkpoint(root, 10, complete=True)
    make_checkpoint(root, 12, complete=False)  # killed while writing it
    assert prepare_checkpoints(root, "a" * 64) == root / "checkpoint-10"
    assert not (root / "checkpoint-12").exists()
    assert complete_checkpoints(root) == [root / "checkpoint-2", root / "checkpoint-10"]
    # another configuration: everything is discarded, and its fingerprint recorded
    assert prepare_checkpoints(root, "b" * 64) is None
    assert list(root.iterdir()) == [root / "fingerprint.json"]
    assert json.loads((root / "fingerprint.json").read_text()) == {"fingerprint": "b" * 64}


def test_the_fingerprint_changes_with_settings_data_model_and_initial_adapter(tmp_path):
    from datasets import Dataset

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    init = tmp_path / "init"
    init.mkdir()
    (init / "adapter_model.safetensors").write_bytes(b"1")
    rows = Dataset.from_dict({"prompt": ["a", "b"], "completion": ["x", "y"]})
    base = {"method": "sft", "model_path": model, "settings": TrainSettings(), "lora": LoraSettings()}
    base |= {"dataset": rows}

    def identity(**change) -> str:
        return fingerprint(run_identity(**(base | change)))

    same = identity()
    # settings that only shape the run keep it: their checkpoints stay resumable
    assert identity(settings=TrainSettings(checkpoint_steps=5, save_total_limit=1, logging_steps=3)) == same
    assert identity() == same
    changed = [
        identity(settings=TrainSettings(seed=1)),
        identity(lora=LoraSettings(r=8)),
        identity(method="dpo"),
        identity(dataset=Dataset.from_dict({"prompt": ["a", "b"], "completion": ["x", "z"]})),
        identity(init_adapter=init),
    ]
    (model / "config.json").write_text('{"hidden_size": 1}')
    changed.append(identity())
    assert len({same, *changed}) == 1 + len(changed)
    (init / "adapter_model.safetensors").write_bytes(b"2")
    assert identity(init_adapter=init) not in changed


def test_checkpoint_settings_and_trackers_are_checked():
    assert not TrainSettings().checkpointing and not TrainSettings(checkpoint_steps=0).checkpointing
    with pytest.raises(UserError, match="checkpoint_steps=-1"):
        TrainSettings(checkpoint_steps=-1)
    with pytest.raises(UserError, match="save_total_limit=0"):
        TrainSettings(save_total_limit=0)
    with pytest.raises(UserError, match="report_to 'neptune'"):
        TrainSettings(report_to=["neptune"])


def test_a_missing_tracker_is_named_with_its_pip_command():
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(UserError, match=r"report_to names wandb.*Fix: `pip install wandb`"):
        check_trackers(["wandb"])


# ------------------------------------------------------------------------- real kill -9 of a real run


def train_command(model: Path, data: Path, out: Path) -> list[str]:
    settings = json.dumps(SETTINGS)
    return [sys.executable, "-m", "workflow_scripts.cli.train", "sft", "--model", str(model)]\
        + ["--sft-data", str(data), "--settings", settings, "--out", str(out)]  # fmt: skip


def run_train(model: Path, data: Path, out: Path) -> str:
    done = subprocess.run(
        train_command(model, data, out), cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def kill_after_first_checkpoint(model: Path, data: Path, out: Path) -> int:
    """Start a training run, SIGKILL it once a checkpoint is complete; return the step it was killed at."""
    root = checkpoint_dir(out)
    proc = subprocess.Popen(
        train_command(model, data, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while proc.poll() is None and not (root.is_dir() and complete_checkpoints(root)):
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return int(complete_checkpoints(root)[-1].name.split("-")[1])


def adapter_tensors(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(adapter / "adapter_model.safetensors")


@pytest.mark.slow
def test_a_killed_training_run_resumes_to_the_uninterrupted_adapter(default_model, tmp_path):
    import pandas as pd
    import torch

    data = tmp_path / "sft.parquet"
    pd.DataFrame({
        "prompt": [json.dumps(prompt_of(q)) for q, _, _ in DEMO],
        "completion": [json.dumps([{"role": "assistant", "content": g}]) for _, g, _ in DEMO],
    }).to_parquet(data)  # fmt: skip
    whole, resumed = tmp_path / "adapters" / "whole", tmp_path / "adapters" / "resumed"
    run_train(default_model, data, whole)
    assert not checkpoint_dir(whole).exists()  # removed once the adapter is in place

    killed_at = kill_after_first_checkpoint(default_model, data, resumed)
    assert 1 <= killed_at < SETTINGS["max_steps"] and not resumed.exists()
    log = run_train(default_model, data, resumed)
    assert f"resuming from {checkpoint_dir(resumed)}/checkpoint-" in log
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["resumed_from_step"] >= killed_at and metrics["steps"] == SETTINGS["max_steps"]
    assert [e["step"] for e in metrics["log"]] == list(range(1, SETTINGS["max_steps"] + 1))
    assert not checkpoint_dir(resumed).exists()

    a, b = adapter_tensors(whole), adapter_tensors(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the training moved the adapter, so equal weights say something
    assert any(float(t.abs().max()) > 0 for k, t in a.items() if "lora_B" in k)


# --------------------------------------------------------------------------------- faults on the GPU path


class FakeTrainer:
    """What run_training touches of a trainer, whose train() raises CUDA's out-of-memory error."""

    def __init__(self, output_dir: Path) -> None:
        self.args = type("Args", (), {"output_dir": str(output_dir)})()

    def add_callback(self, callback) -> None:
        pass

    def train(self, resume_from_checkpoint=None):
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.parametrize(
    ("method", "names"),
    [
        ("sft", ["training.sft.per_device_batch_size (now 8", "max_length (now 2048)"]),
        ("dpo", ["training.dpo.per_device_batch_size (now 8", "gradient_checkpointing: true"]),
        ("grpo", ["training.grpo.micro_batch_size", "prompts_per_step x num_generations"]),
    ],
)
def test_out_of_memory_in_training_names_the_settings_to_change(tmp_path, method, names):
    from workflow_scripts.train.checkpoints import Resume
    from workflow_scripts.train.common import run_training

    settings = TrainSettings(per_device_batch_size=8, max_length=2048, gradient_checkpointing=False)
    with pytest.raises(UserError) as err:
        run_training(FakeTrainer(tmp_path), 0.0, method, settings, LoraSettings(), Resume(tmp_path))
    message = str(err.value)
    assert message.startswith(f"{method.upper()} training ran out of GPU memory (CUDA out of memory. Tried")
    assert all(name in message for name in names), message
    # with checkpoints, the message says what a rerun does
    with pytest.raises(UserError, match="the rerun resumes from the last checkpoint"):
        run_training(FakeTrainer(tmp_path), 0.0, method, settings, LoraSettings(), Resume(tmp_path, tmp_path))


def test_other_training_errors_pass_through(tmp_path):
    from workflow_scripts.train.checkpoints import Resume
    from workflow_scripts.train.common import run_training

    trainer = FakeTrainer(tmp_path)
    trainer.train = lambda resume_from_checkpoint=None: (_ for _ in ()).throw(RuntimeError("a real bug"))
    with pytest.raises(RuntimeError, match="a real bug"):
        run_training(trainer, 0.0, "sft", TrainSettings(), LoraSettings(), Resume(tmp_path))


# ------------------------------------------------------------------------------ experiment tracking


@pytest.mark.slow
def test_report_to_tensorboard_writes_event_files_tensorboard_reads(default_model, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.train.test_training import sft_frame
    from workflow_scripts.train.sft import train_sft

    settings = TrainSettings(
        **{**SETTINGS, "max_steps": 2, "checkpoint_steps": 0, "report_to": ["tensorboard"]}
    )
    tracking = tmp_path / "tracking" / "sft"
    train_sft(default_model, sft_frame(), tmp_path / "sft", LoraSettings(), settings, tracking_dir=tracking)
    events = EventAccumulator(str(tracking))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [1, 2] and all(e.value > 0 for e in losses)
    logged = json.loads((tmp_path / "sft" / "metrics.json").read_text())["log"]
    assert [round(e.value, 4) for e in losses] == [round(e["loss"], 4) for e in logged]


def test_snakemake_deletes_a_failed_jobs_output_but_keeps_its_checkpoints(tmp_path):
    """What the checkpoint directory's place relies on, with the Snakemake this project pins."""
    out = tmp_path / "results" / "adapters" / "sft"
    root = checkpoint_dir(out)
    (tmp_path / "Snakefile").write_text(
        "rule train:\n"
        '    output: directory("results/adapters/sft")\n'
        f'    shell: "mkdir -p {root}/checkpoint-1 {{output}} && touch {{output}}/partial && exit 1"\n'
    )
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--directory", str(tmp_path)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode != 0, done.stderr[-2000:]
    assert not out.exists()  # the failed job's output is removed
    assert (root / "checkpoint-1").is_dir()  # its checkpoints are not


class Stopped(Exception):
    """Stands for a kill right after a checkpoint (the SIGKILL itself: the SFT test above)."""


def stop_after_first_checkpoint(run: Callable[[Path], dict], out: Path, monkeypatch) -> None:
    """Run `run(out)` until its first checkpoint is complete, then stop it as a kill would."""
    rotate = checkpoints.rotate

    def stop_after_first(root: Path, keep: int | None) -> None:
        rotate(root, keep)
        raise Stopped

    monkeypatch.setattr(checkpoints, "rotate", stop_after_first)
    with pytest.raises(Stopped):
        run(out)
    monkeypatch.setattr(checkpoints, "rotate", rotate)


@pytest.mark.slow
def test_a_stopped_sft_to_dpo_run_resumes_to_the_uninterrupted_adapter(default_model, tmp_path, monkeypatch):
    """SFT->DPO checkpoints hold trl's frozen reference copy too; resuming must continue the trained adapter
    (not the reference) and end with the uninterrupted run's weights."""
    import torch
    from safetensors.torch import load_file

    from tests.train.test_training import pairs_frame, sft_frame
    from workflow_scripts.train.dpo import train_dpo
    from workflow_scripts.train.sft import train_sft

    fast = {"per_device_batch_size": 2, "max_length": 256, "gradient_checkpointing": False}
    init = tmp_path / "sft"
    train_sft(
        default_model,
        sft_frame(),
        init,
        LoraSettings(),
        TrainSettings(max_steps=1, learning_rate=1e-3, **fast),
    )
    settings = TrainSettings(max_steps=2, learning_rate=1e-3, checkpoint_steps=1, **fast)

    def run(out: Path) -> dict:
        return train_dpo(default_model, pairs_frame(), out, LoraSettings(), settings, init_adapter=init)

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run(whole)
    stop_after_first_checkpoint(run, resumed, monkeypatch)
    (saved,) = complete_checkpoints(checkpoint_dir(resumed))
    assert not (saved / "ref").exists() and (saved / "adapter_model.safetensors").is_file()
    assert run(resumed)["resumed_from_step"] == 1
    a, b = (load_file(p / "adapter_model.safetensors") for p in (whole, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = load_file(init / "adapter_model.safetensors")
    assert any(not torch.equal(a[k], start[k]) for k in a)  # DPO moved the SFT adapter
