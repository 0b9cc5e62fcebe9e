"""Rewards of a final SQL answer from its execution verdict, for online RL (GRPO).

Two schemes, chosen by `training.grpo.reward`:

- ``rule``: the rollout's rule reward (`rollout.loop.rule_reward`): 1.0 correct at turn 1,
  0.7 − 0.1·(turn − 2) correct after repair, −0.5 wrong at the last allowed turn, else 0.2 executable
  but wrong, −0.2 an error.
- ``arctic``: Arctic-Text2SQL-R1's: 1 correct, 0.1 executable but wrong, 0 otherwise; a correct answer
  after repair earns the rule reward's turn discount instead of 1, so a repair-aware episode prefers
  answers that are right at once.

Both are functions of the verdict alone, which the sandbox computes in its worker processes: a completion
that writes, loops or crashes gets the reward of its failure class (not executable), never an exception.
An optional format term adds `format_weight` when the reply is the SQL alone (no prose, no code fence).
"""

from __future__ import annotations

from workflow_scripts.rollout.extraction import extract_sql
from workflow_scripts.rollout.loop import rule_reward, turn_discount

REWARD_SCHEMES: tuple[str, ...] = ("rule", "arctic")


def execution_reward(scheme: str, *, turn: int, max_turns: int, correct: bool, executable: bool) -> float:
    """The reward of an answer given at `turn` of `max_turns` with this verdict, under `scheme`."""
    if scheme == "rule":
        return rule_reward(turn, max_turns, correct, executable)
    if scheme == "arctic":
        if correct:
            return turn_discount(turn)
        return 0.1 if executable else 0.0
    raise ValueError(f"unknown reward scheme {scheme!r}; known: {', '.join(REWARD_SCHEMES)}")


def plain_sql(reply: str) -> bool:
    """Whether a model reply is one SQL query and nothing else (a trailing semicolon allowed)."""
    text = reply.strip()
    sql = extract_sql(text)
    return bool(sql) and text.rstrip(";").strip() == sql.rstrip(";").strip()


def episode_reward(
    scheme: str,
    format_weight: float,
    *,
    turn: int,
    max_turns: int,
    correct: bool,
    executable: bool,
    reply: str,
) -> float:
    """The reward of an episode's final answer: its execution reward plus the format term."""
    reward = execution_reward(scheme, turn=turn, max_turns=max_turns, correct=correct, executable=executable)
    return reward + (format_weight if format_weight and plain_sql(reply) else 0.0)
