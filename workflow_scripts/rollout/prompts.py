"""The chat prompts of a rollout: the first-turn prompt (schema, evidence, question) and the repair prompt.

`prompt_template_sha256` hashes the fixed text (system prompt and templates): equal hashes mean equal
prompts for equal schema, evidence and question, which the report's reproducibility record states.
"""

from __future__ import annotations

import hashlib

Messages = list[dict[str, str]]

SYSTEM_PROMPT = (
    "You are an expert in SQLite. Given a database schema and a question, write one SQLite query that "
    "answers the question. Reply with the SQL query only."
)
USER_TEMPLATE = "Database schema:\n{schema}\n\n{evidence}Question: {question}\n{note}SQL:"
EVIDENCE_TEMPLATE = "External knowledge: {evidence}\n"
NOTE_TEMPLATE = "Note: {note}\n"


def first_prompt(
    schema_text: str, question: str, evidence: str | None = None, note: str | None = None
) -> Messages:
    """Return the first-turn chat prompt; `evidence` (BIRD's external knowledge) precedes the question.

    `note` (a refocused repair prompt's execution error) follows the question.
    """
    shown = EVIDENCE_TEMPLATE.format(evidence=evidence) if evidence else ""
    noted = NOTE_TEMPLATE.format(note=note) if note else ""
    user = USER_TEMPLATE.format(schema=schema_text, evidence=shown, question=question, note=noted)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def repair_prompt(first: Messages, previous_sql: str, feedback: str) -> Messages:
    """Return the repair prompt: the first prompt, the failed SQL and the feedback on it."""
    return [*first, {"role": "assistant", "content": previous_sql}, {"role": "user", "content": feedback}]


def prompt_template_sha256() -> str:
    """SHA-256 of the prompt's fixed text (system prompt and templates): what changes every prompt."""
    text = "\0".join((SYSTEM_PROMPT, USER_TEMPLATE, EVIDENCE_TEMPLATE, NOTE_TEMPLATE))
    return hashlib.sha256(text.encode()).hexdigest()


def shown_evidence(evidence: object, setting: bool | str) -> str | None:
    """The evidence an example's prompt shows under `prompt.evidence` (auto, true, false; None: none)."""
    if setting is False or not isinstance(evidence, str) or not evidence.strip():
        return None
    return evidence.strip()
