"""Long training runs: checkpoints that survive a kill, where tracker files go, what to change on OOM.

A training job's adapter is written only at its end (`trainer.staging_dir`), and Snakemake deletes the
outputs of a failed job, so checkpoints live in a sibling directory that is no output of any rule:
`results/adapters/.sft.checkpoints/` for `results/adapters/sft`. It holds `fingerprint.json` (a hash of
everything that decides the trained weights: method, model, settings, LoRA shape, the training rows, the
initial adapter) and transformers' `checkpoint-STEP/` directories (adapter, optimizer, scheduler, RNG
states, trainer state). transformers writes a checkpoint in place, so a kill can leave half of one; a
checkpoint counts only once its files are flushed and `COMPLETE` is renamed into it (`CheckpointCallback`).
A rerun resumes from the newest complete checkpoint of the same fingerprint; one of another fingerprint is
deleted, never resumed. The directory is removed once the adapter is in place.

TensorBoard's event files go to a tracking directory that outlives the run (`point_tensorboard`), and a run
that runs out of GPU memory is told which settings to lower (`oom_fix`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workflow_scripts.core.fingerprint import (
    claim_state_dir,
    file_digest,
    fingerprint,
    model_identity,
    write_atomic,
)
from workflow_scripts.train.settings import LoraSettings, TrainSettings

log = logging.getLogger("training")

COMPLETE_FILE = "COMPLETE"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def checkpoint_dir(out_dir: Path) -> Path:
    """Return the checkpoint directory of the adapter `out_dir`: a hidden sibling no rule declares."""
    return out_dir.parent / f".{out_dir.name}.checkpoints"


def complete_checkpoints(root: Path) -> list[Path]:
    """Return the complete `checkpoint-STEP` directories under `root`, oldest step first."""
    found = []
    for path in root.glob("checkpoint-*"):
        match = _CHECKPOINT.fullmatch(path.name)
        if match and (path / COMPLETE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def prepare_checkpoints(root: Path, expected: str) -> Path | None:
    """Make `root` ready for this run and return the checkpoint to resume from (None: start at step 0).

    Checkpoints of another fingerprint are deleted (a different configuration or data must never be
    resumed), as are incomplete ones (a kill while writing).
    """
    claim_state_dir(root, expected, "checkpoints", log)
    complete = set(complete_checkpoints(root))
    for path in root.glob("checkpoint-*"):
        if path not in complete:
            log.info("deleting the incomplete checkpoint %s (the run was stopped while writing it)", path)
            shutil.rmtree(path, ignore_errors=True)
    latest = complete_checkpoints(root)
    return latest[-1] if latest else None


def checkpoint_step(path: Path) -> int:
    """Return the optimizer step of a `checkpoint-STEP` directory."""
    match = _CHECKPOINT.fullmatch(path.name)
    if match is None:
        raise ValueError(f"not a checkpoint directory: {path}")
    return int(match.group(1))


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def mark_complete(checkpoint: Path) -> None:
    """Flush a checkpoint's files to disk, then mark it complete (a rename: a kill leaves it unmarked)."""
    _fsync_tree(checkpoint)
    write_atomic(checkpoint / COMPLETE_FILE, "")


def rotate(root: Path, keep: int | None) -> None:
    """Delete all but the newest `keep` complete checkpoints (None: keep all)."""
    if keep is None:
        return
    for path in complete_checkpoints(root)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def checkpoint_callback(root: Path, keep: int | None, extra: Callable[[Path], None] | None = None) -> Any:
    """Return a trainer callback that marks each saved checkpoint complete, rotates, and times the saves.

    `extra(checkpoint)` writes the caller's own state into a checkpoint before it is marked (GRPO: the
    rewarded SQL so far).

    transformers calls `on_save` after a checkpoint's files are written; its own rotation is off
    (`save_total_limit` None in the trainer args) so that it never deletes a complete checkpoint before
    the newer one is marked. `save_seconds` are the wall times from the end of a step to its checkpoint's
    mark, which is the cost of a checkpoint.
    """
    from transformers import TrainerCallback

    class CheckpointCallback(TrainerCallback):
        def __init__(self) -> None:
            self.save_seconds: list[float] = []
            self._step_end = 0.0

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._step_end = time.perf_counter()

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            checkpoint = root / f"checkpoint-{state.global_step}"
            # SFT->DPO also saves trl's frozen reference copy, in ref/; transformers would then resume only
            # the adapters in subdirectories and skip the trained one. The reference is rebuilt from the
            # initial adapter on resume, so it is not kept.
            shutil.rmtree(checkpoint / "ref", ignore_errors=True)
            if extra is not None:
                extra(checkpoint)
            mark_complete(checkpoint)
            rotate(root, keep)
            self.save_seconds.append(round(time.perf_counter() - self._step_end, 3))
            log.info("checkpoint %s written (%.2f s)", checkpoint, self.save_seconds[-1])

    return CheckpointCallback()


@dataclass(frozen=True)
class Resume:
    """Where the trainer writes (`work_dir`), the checkpoint directory (None: off), the checkpoint to resume
    from and where TensorBoard's event files go."""

    work_dir: Path
    root: Path | None = None
    checkpoint: Path | None = None
    tracking_dir: Path | None = None


def run_identity(
    method: str,
    model_path: Path,
    settings: TrainSettings,
    lora: LoraSettings,
    dataset: Any,
    init_adapter: Path | str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Return what decides a run's trained weights, the parts of its checkpoints' fingerprint.

    The training rows stand for the input files they were read from (the same rows give the same run,
    whatever file holds them); settings that only shape the run (`RUN_ONLY_KEYS`) are left out.
    """
    return {
        "method": method,
        "model": model_identity(model_path),
        "settings": settings.weights_settings(),
        "lora": asdict(lora),
        "rows": fingerprint({"rows": dataset.to_list()}),
        "init_adapter": file_digest(Path(init_adapter)) if init_adapter is not None else None,
        **extra,
    }


def resume_point(
    out_dir: Path,
    staging: Path,
    settings: TrainSettings,
    identity: dict[str, Any],
    tracking_dir: Path | str | None = None,
) -> Resume:
    """Return where this run trains and the checkpoint it resumes from; log which it is."""
    tracking = Path(tracking_dir) if tracking_dir else out_dir.with_name(f"{out_dir.name}.tracking")
    if not settings.checkpointing:
        return Resume(staging / "trainer", tracking_dir=tracking)
    root = checkpoint_dir(out_dir)
    checkpoint = prepare_checkpoints(root, fingerprint(identity))
    if checkpoint is None:
        log.info("checkpoints every %d steps in %s; starting at step 0", settings.checkpoint_steps, root)
    else:
        step = checkpoint_step(checkpoint)
        log.info("resuming from %s (step %d), written by an interrupted run", checkpoint, step)
    return Resume(root, root, checkpoint, tracking)


def drop_checkpoints(out_dir: Path) -> None:
    """Delete the checkpoints of `out_dir` once its adapter is in place: the next run starts anew."""
    shutil.rmtree(checkpoint_dir(out_dir), ignore_errors=True)


def oom_fix(method: str, settings: TrainSettings, resume: Resume) -> str:
    """The settings that lower a training job's GPU memory, with their values (for `gpu_memory_guard`)."""
    if method == "grpo":
        fix = (
            "lower training.grpo.micro_batch_size (episodes per forward and backward pass), "
            "max_new_tokens or prompts_per_step x num_generations (episodes generated at once)"
        )
    else:
        fix = (
            f"lower training.{method}.per_device_batch_size (now {settings.per_device_batch_size}; raise "
            "gradient_accumulation_steps to keep the effective batch) or max_length "
            f"(now {settings.max_length})"
        )
    if not settings.gradient_checkpointing:
        fix += f", or set training.{method}.gradient_checkpointing: true"
    if resume.root is not None:
        fix += "; the rerun resumes from the last checkpoint"
    return fix


def point_tensorboard(trainer: Any, directory: Path) -> None:
    """Send TensorBoard's event files to `directory` (transformers' default is inside the trainer's
    output_dir, which is deleted after the run); a resumed run adds its own event file there."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(directory)
            log.info("TensorBoard event files in %s", directory)
