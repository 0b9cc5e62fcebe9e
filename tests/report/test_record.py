"""The report's reproducibility record: what changes the numbers, under the title."""

from __future__ import annotations

import json
from pathlib import Path

from workflow_scripts.report.html import build_report
from workflow_scripts.report.record import decoding_text, reproducibility_record
from workflow_scripts.rollout.prompts import prompt_template_sha256


def write(path: Path, obj: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "summary.json").write_text(json.dumps(obj))
    return path


def test_record_lists_metric_evidence_decoding_timeout_hashes(tmp_path: Path) -> None:
    data = {
        "bird_dev": write(tmp_path / "data" / "bird_dev", {
            "dataset": "bird_dev", "path": "data/bird/dev.json", "usable": 10, "metric": "bird",
            "with_evidence": 9, "test_suite_databases": 0, "sandbox_timeout_s": 30.0,
            "data_sha256": "ab" * 32,
        }),
        "spider_dev": write(tmp_path / "data" / "spider_dev", {
            "dataset": "spider_dev", "path": "dev.json", "usable": 5, "metric": "bird", "with_evidence": 0,
            "test_suite_databases": 12, "sandbox_timeout_s": 5.0, "data_sha256": "cd" * 32,
        }),
    }  # fmt: skip
    sha = prompt_template_sha256()
    runs = {
        "eval_base": write(tmp_path / "runs" / "eval_base", {
            "dataset": "bird_dev", "num_samples": 8, "temperature": 0.7, "answer": "maj", "evidence": "auto",
            "prompt_template_sha256": sha,
        }),
        "train_mining": write(tmp_path / "runs" / "train_mining", {
            "dataset": "spider_dev", "num_samples": 4, "temperature": 0.3, "answer": "all",
            "prompt_template_sha256": sha,
        }),
    }  # fmt: skip
    record = reproducibility_record(data, runs)
    got = {(r["applies to"], r["setting"]): r["value"] for r in record.to_dict("records")}
    assert got[("bird_dev", "metric mode")] == "bird"
    assert got[("bird_dev", "evidence in prompts")] == "on (9 of 10 examples have evidence)"
    assert got[("spider_dev", "evidence in prompts")] == "none in the data"
    assert got[("bird_dev", "query timeout")] == "30 s"
    assert got[("spider_dev", "test-suite databases")] == "12"
    assert got[("bird_dev", "data file SHA-256")] == "data/bird/dev.json: " + "ab" * 32
    assert got[("eval_base", "decoding")].startswith("greedy + 8 samples (T=0.7); answer: maj@8")
    assert ("train_mining", "decoding") not in got  # only evaluated runs
    assert got[("all runs", "prompt template SHA-256")] == sha
    page = build_report("t", [("a", "A", "<p>x</p>")], record)
    assert "Reproducibility record" in page and sha in page and "maj@8" in page
    # evidence switched off is said so
    write(runs["eval_base"], {"dataset": "bird_dev", "evidence": False, "num_samples": 1, "temperature": 0.0})
    off = reproducibility_record(data, runs).set_index(["applies to", "setting"])["value"]
    assert off[("bird_dev", "evidence in prompts")].startswith("off (prompt.evidence: false")
    assert off[("eval_base", "decoding")] == "greedy"


def test_decoding_text() -> None:
    assert decoding_text({"num_samples": 1, "temperature": 0.0}) == "greedy"
    assert decoding_text({"num_samples": 4, "temperature": 0.7, "answer": "greedy"}).endswith(
        "answer: greedy; maj@4 and pass@4 reported"
    )
    assert decoding_text({"num_samples": 4, "temperature": 0.3, "answer": "all", "top_p": 0.95}) == (
        "4 samples per example (T=0.3, top_p=0.95)"
    )
