"""Execution-guided rollouts: prompt → generate → execute → feedback → repair, for up to `max_turns`.

Turns are synchronous: turn t generates for every still-failing trajectory at once, so a backend sees
large batches. A trajectory is one first-turn sample; at each repair turn it gets `repair_samples` candidates
from the same repair prompt and goes on from the first one the scope's verifier accepts (else the first).
Only failures inside `repair_scope` are repaired: any other attempt is the trajectory's final answer.
Every executed candidate also gets its rule-guard signals and its query plan and cost (`query_cost`).
A rollout may start from given first-turn completions (`first_turn`), e.g. those of an earlier greedy run,
and then only generates the repair turns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workflow_scripts.core.guards import GuardSignal, rule_guards
from workflow_scripts.core.matching import PROMPT_TOO_LONG
from workflow_scripts.core.query_cost import COST_COLUMNS, cost_columns
from workflow_scripts.core.sandbox import ExecResult, Sandbox
from workflow_scripts.core.schema import Table
from workflow_scripts.core.scoring import MatchSettings, gold_result
from workflow_scripts.core.ts_databases import TsGold, suite_verdicts, ts_golds
from workflow_scripts.rollout.extraction import extract_sql
from workflow_scripts.rollout.feedback import (
    GoldShape,
    RepairScope,
    error_line,
    feedback_text,
    refocus_tables,
    repair_signal,
)
from workflow_scripts.rollout.generation import Backend, Completion, SamplingConfig
from workflow_scripts.rollout.prompts import Messages, first_prompt, repair_prompt, shown_evidence
from workflow_scripts.rollout.retrieval import (
    gold_tables,
    load_tables,
    retrieval_query,
    schema_prompt,
    select_tables,
    table_recall,
)
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.rollout.voting import choose_answers, generate_with_greedy, voting_first_turn

SCHEMA_ERROR_CLASSES = frozenset({"syntax_error", "no_such_table", "no_such_column", "ambiguous_column"})


@dataclass(frozen=True)
class PreparedExample:
    """An example with its retrieved schema and first-turn prompt."""

    id: str
    db_id: str
    db_path: str
    question: str
    gold: ExecResult
    order_matters: bool
    shown: list[Table]
    all_tables: list[Table]
    selected_tables: list[str]
    gold_tables: list[str]
    table_recall: float | None
    prompt: Messages
    evidence: str | None = None  # as the prompt shows it
    # test-suite checks (database, gold result there, order matters): correct only when it matches on all
    ts_gold: tuple[TsGold, ...] = ()


def turn_discount(turn: int) -> float:
    """The reward of a correct answer at `turn`: 1.0 at turn 1, 0.7 − 0.1·(turn − 2) at a repair turn."""
    return 1.0 if turn == 1 else round(0.7 - 0.1 * (turn - 2), 4)


def rule_reward(turn: int, max_turns: int, correct: bool, executable: bool) -> float:
    """Rule reward of one candidate.

    1.0 correct at turn 1; 0.7 − 0.1·(turn − 2) correct at a repair turn; −0.5 wrong at the last allowed
    turn; otherwise 0.2 executable but wrong, −0.2 an execution (syntax/schema/runtime) error.
    """
    if correct:
        return turn_discount(turn)
    if turn >= max_turns:
        return -0.5
    return 0.2 if executable else -0.2


def prepare_examples(
    examples: pd.DataFrame,
    gold: pd.DataFrame,
    schema: pd.DataFrame,
    settings: RolloutSettings,
    gold_ts: pd.DataFrame | None = None,
) -> list[PreparedExample]:
    """Retrieve the schema of every example and build its first-turn prompt.

    `gold_ts` (the data set's `gold_ts.parquet`) adds the test-suite checks of each example.
    """
    gold_by_id = gold.set_index("id")
    checks = ts_golds(gold_ts)
    tables_cache: dict[str, list[Table]] = {}
    prepared = []
    for row in examples.itertuples(index=False):
        if row.db_id not in tables_cache:
            tables_cache[row.db_id] = load_tables(schema, row.db_id, row.db_path, settings.cell_values)
        tables = tables_cache[row.db_id]
        evidence = shown_evidence(getattr(row, "evidence", None), settings.evidence)
        selected = select_tables(
            retrieval_query(row.question, evidence),
            tables,
            mode=settings.schema_mode,
            top_k=settings.top_k_tables,
            fk_hops=settings.fk_hops,
        )
        shown = [t for t in tables if t.name in selected]
        wanted = sorted(gold_tables(row.gold_sql))
        g = gold_by_id.loc[row.id]
        prepared.append(
            PreparedExample(
                id=row.id,
                db_id=row.db_id,
                db_path=row.db_path,
                question=row.question,
                gold=gold_result(g),
                order_matters=bool(g["order_matters"]),
                shown=shown,
                all_tables=tables,
                selected_tables=list(selected),
                gold_tables=wanted,
                table_recall=table_recall(selected, wanted),
                prompt=first_prompt(
                    schema_prompt(shown, with_values=settings.cell_values > 0),
                    row.question,
                    evidence,
                ),
                evidence=evidence,
                ts_gold=tuple(checks.get(str(row.id), ())),
            )
        )
    return prepared


@dataclass
class _Candidate:
    example: int
    sample: int
    turn: int
    index: int  # position among the candidates generated from the same prompt
    parent: str | None
    prompt: Messages
    raw: str
    sql: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    finish_reason: str
    result: ExecResult | None = None
    verdict: str = ""
    guards: list[GuardSignal] = field(default_factory=list)
    signal: str | None = None  # why the scope's verifier sends it to repair (None: accepted)
    stop_reason: str | None = None  # set on the candidate a trajectory ends with
    logprob: float | None = None
    is_answer: bool | None = None  # turn 1: the example's answer, the candidate that goes to repair
    is_vote: bool | None = None  # turn 1 with voting: the maj@k winner among the sampled candidates
    vote_count: int | None = None  # turn 1 with voting: sampled candidates in its result group

    def id(self, examples: Sequence[PreparedExample]) -> str:
        return f"{examples[self.example].id}/s{self.sample}/t{self.turn}/c{self.index}"


def _generate(
    backend: Backend,
    requests: list[tuple[int, int, str | None, Messages]],
    sampling: SamplingConfig,
    turn: int,
    outputs: Sequence[Sequence[Completion]] | None = None,
) -> list[_Candidate]:
    """Generate for (example, sample, parent id, prompt) requests; `sampling.num_samples` each.

    Given `outputs` (one list of completions per request) are used instead of generating.
    """
    if outputs is None:
        outputs = backend.generate([r[3] for r in requests], sampling)
    candidates = []
    for (example, sample, parent, prompt), completions in zip(requests, outputs, strict=True):
        for index, c in enumerate(completions):
            candidates.append(
                _Candidate(
                    example=example,
                    sample=sample if turn > 1 else index,
                    turn=turn,
                    index=index if turn > 1 else 0,
                    parent=parent,
                    prompt=prompt,
                    raw=c.text,
                    sql=extract_sql(c.text),
                    prompt_tokens=c.prompt_tokens,
                    completion_tokens=c.completion_tokens,
                    latency_s=c.latency_s,
                    finish_reason=c.finish_reason,
                    logprob=c.logprob,
                )
            )
    return candidates


def _execute(
    candidates: list[_Candidate],
    examples: Sequence[PreparedExample],
    sandbox: Sandbox,
    match: MatchSettings,
    scope: RepairScope,
) -> None:
    """Execute the candidates (with query plans), score them and ask the scope's verifier about them.

    A candidate whose prompt did not fit the context is not executed: it fails as `prompt_too_long`, and
    it is not repaired (a repair prompt would be longer still).
    """
    runnable = [c for c in candidates if c.finish_reason != PROMPT_TOO_LONG]
    jobs = [(examples[c.example].db_path, match.prepare(c.sql)) for c in runnable]
    for c, result in zip(runnable, sandbox.execute_many(jobs, explain=True), strict=True):
        ex = examples[c.example]
        c.result = result
        c.verdict = match.verdict(ex.gold, result, order_matters=ex.order_matters)
    if any(examples[c.example].ts_gold for c in runnable):
        items = [(c.verdict, c.sql, examples[c.example].ts_gold) for c in runnable]
        for c, (v, _) in zip(runnable, suite_verdicts(items, sandbox, match), strict=True):
            c.verdict = v
    for c in runnable:
        assert c.result is not None
        result = c.result
        c.guards = rule_guards(c.sql) if result.status == "ok" else []
        c.signal = repair_signal(result, c.verdict, scope, c.guards)
    for c in candidates:
        if c.finish_reason == PROMPT_TOO_LONG:
            c.result = _too_long_result(c.prompt_tokens)
            c.verdict, c.signal = PROMPT_TOO_LONG, None


def _too_long_result(prompt_tokens: int) -> ExecResult:
    """The failed result of a candidate whose prompt did not fit the model's context."""
    message = (
        f"the prompt has {prompt_tokens} tokens, which with max_new_tokens do not fit the model's context. "
        "Fix: show fewer tables (rollout.top_k_tables, schema_mode), lower max_new_tokens, or raise "
        "rollout.vllm.max_model_len"
    )
    return ExecResult("error", PROMPT_TOO_LONG, message, (), [], False, 0.0)


def _gold_shape(ex: PreparedExample, mode: str) -> GoldShape:
    """What feedback of `mode` may know about the gold result (its rows only for `oracle_rows`)."""
    rows = tuple(ex.gold.rows[:3]) if mode == "oracle_rows" else ()
    return GoldShape(len(ex.gold.rows), len(ex.gold.columns), rows)


def first_turn_outputs(
    trajectories: pd.DataFrame, examples: Sequence[PreparedExample]
) -> list[list[Completion]]:
    """Return the turn-1 completions of `trajectories` for each example, for `run_rollout(first_turn=...)`.

    Raises ValueError when an example has no turn-1 candidate or its stored prompt differs from the one the
    settings build now (then the completions would answer another prompt).
    """
    first = trajectories[trajectories["turn"] == 1].sort_values(["example_id", "sample"], kind="stable")
    by_id = {eid: group for eid, group in first.groupby("example_id", sort=False)}
    outputs = []
    for ex in examples:
        if ex.id not in by_id:
            raise ValueError(f"example {ex.id} has no turn-1 candidate in the given trajectories")
        group = by_id[ex.id]
        if json.loads(group["prompt"].iloc[0]) != ex.prompt:
            raise ValueError(
                f"the stored turn-1 prompt of example {ex.id} differs from the prompt built now: the first "
                "turn was rolled out with other retrieval or schema settings"
            )
        outputs.append(
            [
                Completion(
                    r.raw_output,
                    int(r.prompt_tokens),
                    int(r.completion_tokens),
                    float(r.latency_s),
                    getattr(r, "finish_reason", None) or "eos",
                )
                for r in group.itertuples(index=False)
            ]
        )
    return outputs


def run_rollout(
    examples: Sequence[PreparedExample],
    backend: Backend,
    sandbox: Sandbox,
    settings: RolloutSettings,
    match: MatchSettings,
    *,
    progress: bool = True,
    first_turn: Sequence[Sequence[Completion]] | None = None,
) -> pd.DataFrame:
    """Run the rollout and return its trajectories: one row per candidate per turn.

    `first_turn` (one list of completions per example, e.g. from `first_turn_outputs`) replaces the
    generation of turn 1; the backend then only generates repairs.
    """
    from tqdm.auto import tqdm

    scope: RepairScope = settings.repair_scope  # type: ignore[assignment]
    first_sampling = settings.sampling
    repair_sampling = settings.repair_sampling
    generated: list[_Candidate] = []
    feedback_of: dict[str, str] = {}
    turns = tqdm(range(1, settings.max_turns + 1), desc="rollout turns", disable=not progress, unit="turn")
    heads: list[_Candidate] = []
    for turn in turns:
        given = None
        if turn == 1:
            requests = [(i, 0, None, ex.prompt) for i, ex in enumerate(examples)]
            sampling, given = first_sampling, first_turn
            if given is None and voting_first_turn(settings):
                given = generate_with_greedy(backend, [ex.prompt for ex in examples], first_sampling)
        else:
            requests = []
            for head in heads:
                head_id = head.id(examples)
                feedback_of[head_id] = text = _feedback(head, examples[head.example], settings)
                prompt = _repair_prompt(head, examples[head.example], settings, text)
                requests.append((head.example, head.sample, head_id, prompt))
            sampling = repair_sampling
        if not requests:
            break
        candidates = _generate(backend, requests, sampling, turn, given)
        _execute(candidates, examples, sandbox, match, scope)
        if turn == 1:
            choose_answers(candidates, settings, match.metric)
        generated += candidates
        heads = []
        for head in _heads(candidates):
            if head.is_answer is False:
                head.stop_reason = "not_answer"  # a voting sample: scored, never repaired
            elif head.verdict == PROMPT_TOO_LONG:
                head.stop_reason = PROMPT_TOO_LONG
            elif head.signal is None:
                head.stop_reason = "correct" if head.verdict == "correct" else "out_of_scope"
            elif turn == settings.max_turns:
                head.stop_reason = "turn_limit"
                # the feedback a further turn would show: SFT data can teach repair from it (include_repair)
                feedback_of[head.id(examples)] = _feedback(head, examples[head.example], settings)
            else:
                heads.append(head)
        turns.set_postfix(failing=len(heads))
    rows = [_row(c, examples, settings) for c in generated]
    for row in rows:
        row["feedback"] = feedback_of.get(row["candidate_id"])
    return pd.DataFrame(rows, columns=TRAJECTORY_COLUMNS)


def _feedback(head: _Candidate, ex: PreparedExample, settings: RolloutSettings) -> str:
    """The execution feedback on a failed candidate that its repair prompt shows, in the run's mode."""
    assert head.result is not None
    return feedback_text(
        head.sql,
        head.result,
        mode=settings.feedback_mode,
        detail=settings.feedback_detail,
        shown=ex.shown,
        all_tables=ex.all_tables,
        gold=_gold_shape(ex, settings.feedback_mode),
        verdict=head.verdict,
        guards=head.guards,
    )


def _repair_prompt(
    head: _Candidate, ex: PreparedExample, settings: RolloutSettings, feedback: str
) -> Messages:
    """The prompt of a failed candidate's repair turn.

    `conversation`: the first prompt, the failed SQL and the feedback. `refocus`, for a column the query
    reads from the wrong table: a first-turn prompt over the tables that own the column, noting the SQLite
    error as the feedback words it; a small model repeats its SQL under the conversation, but answers the
    question anew over the refocused schema. Other failures get the conversation.
    """
    assert head.result is not None
    if settings.repair_prompt == "refocus":
        tables = refocus_tables(head.result, ex.all_tables)
        if tables:
            schema = schema_prompt(tables, with_values=settings.cell_values > 0)
            return first_prompt(schema, ex.question, ex.evidence, note=error_line(head.result))
    return repair_prompt(ex.prompt, head.sql, feedback)


def _heads(candidates: list[_Candidate]) -> list[_Candidate]:
    """The candidate each trajectory goes on from: the first its scope's verifier accepts, else the first."""
    groups: dict[tuple[int, int], list[_Candidate]] = {}
    for c in candidates:
        groups.setdefault((c.example, c.sample), []).append(c)
    return [next((c for c in group if c.signal is None), group[0]) for group in groups.values()]


TRAJECTORY_COLUMNS = [
    "example_id", "db_id", "sample", "turn", "candidate", "candidate_id", "parent_id", "prompt", "raw_output",
    "sql", "status", "error_class", "error_message", "verdict", "correct", "executable", "schema_valid",
    "reward", "n_rows", "prompt_tokens", "completion_tokens", "finish_reason", "latency_s", "exec_s",
    "feedback", "selected_tables", "gold_tables", "table_recall", "guards", "repair_signal", "stop_reason",
    "logprob", "is_answer", "is_vote", "vote_count", *COST_COLUMNS,
]  # fmt: skip


def _row(c: _Candidate, examples: Sequence[PreparedExample], settings: RolloutSettings) -> dict[str, Any]:
    ex = examples[c.example]
    result = c.result
    assert result is not None
    correct = c.verdict == "correct"
    executable = result.status == "ok"
    return {
        "example_id": ex.id,
        "db_id": ex.db_id,
        "sample": c.sample,
        "turn": c.turn,
        "candidate": c.index,
        "candidate_id": c.id(examples),
        "parent_id": c.parent,
        "prompt": json.dumps(c.prompt),
        "raw_output": c.raw,
        "sql": c.sql,
        "status": result.status,
        "error_class": result.error_class,
        "error_message": result.error_message,
        "verdict": c.verdict,
        "correct": correct,
        "executable": executable,
        "schema_valid": result.error_class not in SCHEMA_ERROR_CLASSES,
        "reward": rule_reward(c.turn, settings.max_turns, correct, executable),
        "n_rows": len(result.rows),
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "finish_reason": c.finish_reason,
        "latency_s": c.latency_s,
        "exec_s": result.elapsed_s,
        "feedback": None,
        "selected_tables": json.dumps(ex.selected_tables),
        "gold_tables": json.dumps(ex.gold_tables),
        "table_recall": ex.table_recall,
        "guards": json.dumps([g.guard for g in c.guards]),
        "repair_signal": c.signal,
        "stop_reason": c.stop_reason,
        "logprob": c.logprob,
        "is_answer": c.is_answer,
        "is_vote": c.is_vote,
        "vote_count": c.vote_count,
        **cost_columns(result.plan),
    }
