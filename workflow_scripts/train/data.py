"""Training data: SFT examples from rollouts and gold, and trl datasets of SFT rows and preference pairs."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from workflow_scripts.core.errors import UserError
from workflow_scripts.rollout.prompts import repair_prompt
from workflow_scripts.train.settings import TrainSettings

Messages = list[dict[str, str]]

SFT_COLUMNS = ("prompt", "completion")
PAIR_COLUMNS = ("prompt", "chosen", "rejected")
TRAJECTORY_COLUMNS = ("example_id", "turn", "prompt", "sql", "correct")


def sft_examples(
    trajectories: Sequence[pd.DataFrame],
    examples: pd.DataFrame,
    *,
    include_gold: bool,
    include_correct: bool,
    include_repair: bool = False,
) -> pd.DataFrame:
    """Return SFT examples: conversational `prompt` messages and a one-message assistant `completion`.

    Each frame of `trajectories` is one rollout's output; an example's first-turn prompt is that of its
    turn-1 rows in the same frame. With `include_correct`, every correct candidate's SQL is a completion:
    a first-turn one under the prompt it answered, a repair-turn one under its example's FIRST-turn prompt
    (not the repair prompt), so SFT teaches getting the query right at once rather than after feedback.
    With `include_gold`, the gold SQL of `examples` (columns `id`, `gold_sql`) is a completion under each
    distinct first-turn prompt of the example (examples without trajectories have no prompt, so no row).
    With `include_repair`, the gold SQL is also a completion under the repair prompt of each candidate that
    got execution feedback (column `feedback`: the first prompt, the failed SQL and the feedback on it, as the
    rollout builds it, whether or not a repair turn followed), so SFT also teaches using feedback.

    Rows with the same prompt and SQL are kept once (a gold row wins over an equal model row); the order is
    sorted by example id, prompt, SQL and source, so it does not depend on the order of the inputs. Columns:
    `example_id`, `source` ("gold", "model", or "repair": gold under a repair prompt), `prompt`, `completion`.
    """
    gold_sql = (
        dict(zip(examples["id"], examples["gold_sql"], strict=True)) if include_gold or include_repair else {}
    )
    rows: list[tuple[str, str, str, str]] = []
    for index, frame in enumerate(trajectories):
        require_columns(frame, TRAJECTORY_COLUMNS, f"trajectories #{index + 1}")
        first_prompt = (
            frame[frame["turn"] == 1].drop_duplicates("example_id").set_index("example_id")["prompt"]
        )
        if include_correct:
            correct = frame[frame["correct"].astype(bool) & (frame["sql"].fillna("").str.strip() != "")]
            for row in correct.itertuples(index=False):
                prompt = row.prompt if row.turn == 1 else first_prompt.get(row.example_id)
                if prompt is not None:
                    rows.append((row.example_id, "model", prompt, row.sql.strip()))
        if include_gold:
            for example_id, prompt in first_prompt.items():
                if example_id in gold_sql:
                    rows.append((example_id, "gold", prompt, str(gold_sql[example_id]).strip()))
        if include_repair and "feedback" in frame:
            for row in frame[frame["feedback"].notna()].itertuples(index=False):
                first = first_prompt.get(row.example_id)
                if first is not None and row.example_id in gold_sql:
                    failed = "" if pd.isna(row.sql) else str(row.sql)
                    prompt = json.dumps(repair_prompt(json.loads(first), failed, str(row.feedback)))
                    rows.append((row.example_id, "repair", prompt, str(gold_sql[row.example_id]).strip()))
    table = pd.DataFrame(rows, columns=["example_id", "source", "prompt_json", "sql"])
    table = table.sort_values(["example_id", "prompt_json", "sql", "source"], kind="stable")
    table = table.drop_duplicates(["prompt_json", "sql"]).reset_index(drop=True)
    return pd.DataFrame({
        "example_id": table["example_id"].to_list(),
        "source": table["source"].to_list(),
        "prompt": [json.loads(p) for p in table["prompt_json"]],
        "completion": [[{"role": "assistant", "content": sql}] for sql in table["sql"]],
    })  # fmt: skip


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise UserError when `frame` lacks any of `columns`."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(
            f"the {what} lack the column(s) {', '.join(missing)} "
            f"(they have {', '.join(map(str, frame.columns))}). Fix: pass the file the workflow wrote for it."
        )


def require_rows(frame: pd.DataFrame, what: str, fix: str) -> None:
    if frame.empty:
        raise UserError(f"an empty {what} for training. Fix: {fix}")


def messages_of(value: Any, role: str, what: str) -> Messages:
    """Return chat messages from a list of {role, content} (as read from Parquet), JSON text or plain text.

    Plain text (not a JSON list) is one message of `role`: the SQL of a flat pairs file.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return [{"role": role, "content": value}]
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return [{"role": role, "content": value}]
    try:
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    except (TypeError, KeyError):
        raise UserError(
            f"a {what} value is not chat messages ({str(value)[:120]!r}). "
            "Fix: give lists of {role, content} messages (TRL's conversational format), or JSON text of them."
        ) from None
    if not messages:
        raise UserError(f"a {what} value holds no message. Fix: drop that row from the training data.")
    return messages


def sft_dataset(data: pd.DataFrame) -> Any:
    """Return the `datasets.Dataset` of SFT rows (prompt and completion messages only)."""
    from datasets import Dataset

    return Dataset.from_dict({
        "prompt": [messages_of(p, "user", "prompt") for p in data["prompt"]],
        "completion": [messages_of(c, "assistant", "completion") for c in data["completion"]],
    })  # fmt: skip


def pair_dataset(pairs: pd.DataFrame, *, with_margin: bool) -> Any:
    """Return the `datasets.Dataset` of preference pairs (prompt, chosen and rejected messages, margin)."""
    from datasets import Dataset

    columns: dict[str, list[Any]] = {
        "prompt": [messages_of(p, "user", "prompt") for p in pairs["prompt"]],
        "chosen": [messages_of(c, "assistant", "chosen") for c in pairs["chosen"]],
        "rejected": [messages_of(r, "assistant", "rejected") for r in pairs["rejected"]],
    }
    if with_margin:
        margins = pd.to_numeric(pairs["margin"], errors="coerce").astype(float)
        bad = int((~margins.map(math.isfinite)).sum())  # NaN (missing or not a number) is not finite
        if bad:
            raise UserError(
                f"{bad} pair(s) have no finite `margin`, which "
                "margin-aware DPO needs. Fix: use the pairs written by the pairs stage, or set margin_aware "
                "to false."
            )
        columns["margin"] = margins.to_list()
    return Dataset.from_dict(columns)


def subsample_for_steps(pairs: pd.DataFrame, settings: TrainSettings) -> pd.DataFrame:
    """Return the (seeded) random subset of pairs that `max_steps` steps use, when that is less than all.

    The reference log-probs are computed for every pair before training, so pairs the steps never reach
    would only cost time. Sampling them here is the same as the trainer's shuffled order stopping early.
    """
    if settings.max_steps is None:
        return pairs
    needed = settings.max_steps * settings.per_device_batch_size * settings.gradient_accumulation_steps
    if needed >= len(pairs):
        return pairs
    return pairs.sample(n=needed, random_state=settings.seed).sort_index()
