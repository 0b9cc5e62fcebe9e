"""Report header: the reproducibility record, the settings that change the numbers.

Per data set the metric mode, test-suite databases, query timeout, evidence in prompts and the data file's
SHA-256 (from the ingest summaries); per evaluated run the decoding; the prompt template's SHA-256 (from the
rollout summaries). Missing keys (artifacts written before they were recorded) show as n/a.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def decoding_text(summary: dict) -> str:
    """A rollout run's decoding in words: greedy, sampled, or greedy with k voting samples."""
    k, temperature = int(summary.get("num_samples", 1)), float(summary.get("temperature", 0.0))
    answer = summary.get("answer", "all")
    if answer != "all" and k > 1 and temperature > 0:
        chosen = f"maj@{k}" if answer == "maj" else "greedy"
        return f"greedy + {k} samples (T={temperature:g}); answer: {chosen}; maj@{k} and pass@{k} reported"
    if temperature == 0:
        return "greedy"
    return f"{k} samples per example (T={temperature:g}, top_p={summary.get('top_p', 1.0)})"


def reproducibility_record(
    data_dirs: dict[str, Path], run_dirs: dict[str, Path] | None = None
) -> pd.DataFrame:
    """What changes the numbers: per data set the metric mode, test-suite databases, timeout, data file
    SHA-256 and evidence; per evaluated run the decoding; the prompt template's hash."""
    rows = []
    runs = {n: json.loads((d / "summary.json").read_text()) for n, d in (run_dirs or {}).items()}
    for name, d in data_dirs.items():
        s = json.loads((d / "summary.json").read_text())
        evidence_setting = {r.get("evidence", "auto") for r in runs.values() if r.get("dataset") == name}
        with_evidence = s.get("with_evidence", 0)
        if not with_evidence:
            evidence = "none in the data"
        elif evidence_setting == {False}:
            evidence = f"off (prompt.evidence: false; {with_evidence} examples have evidence)"
        else:
            evidence = f"on ({with_evidence} of {s['usable']} examples have evidence)"
        ts = s.get("test_suite_databases", 0)
        timeout = s.get("sandbox_timeout_s")
        sha = s.get("data_sha256")
        rows += [
            {"applies to": name, "setting": "metric mode", "value": s.get("metric", "spider")},
            {"applies to": name, "setting": "test-suite databases", "value": f"{ts}" if ts else "none"},
            {"applies to": name, "setting": "query timeout", "value": f"{timeout:g} s" if timeout else "n/a"},
            {"applies to": name, "setting": "evidence in prompts", "value": evidence},
            {
                "applies to": name,
                "setting": "data file SHA-256",
                "value": f"{s.get('path', '')}: {sha or 'n/a'}",
            },
        ]
    for name, r in sorted(runs.items()):
        if name.startswith("eval_"):
            rows.append({"applies to": name, "setting": "decoding", "value": decoding_text(r)})
    hashes = sorted({r["prompt_template_sha256"] for r in runs.values() if r.get("prompt_template_sha256")})
    if hashes:
        rows.append(
            {"applies to": "all runs", "setting": "prompt template SHA-256", "value": ", ".join(hashes)}
        )
    return pd.DataFrame(rows, columns=["applies to", "setting", "value"])
