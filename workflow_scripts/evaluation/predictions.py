"""Scoring of an external predictions file against a data set under a named metric mode.

PRED is one SQL per line in data set order (the Spider convention; a TAB and what follows it is ignored) or
JSONL with `id` and `sql`; the command is `python -m workflow_scripts.evaluate` (cli/evaluate.py, `score`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from workflow_scripts.core.efficiency import r_ves, reward, time_ratios
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.matching import BIRD, VERDICTS
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.scoring import MatchSettings, score_predictions
from workflow_scripts.core.ts_databases import suite_verdicts, ts_golds

EXCLUDED_VERDICTS = {"missing_db": "skipped", "gold_error": "gold_error", "gold_truncated": "gold_error"}


def read_predictions(path: Path, record_ids: list[str]) -> list[str]:
    """Return one predicted SQL per record, in data set order; `record_ids` are the records' ids in order."""
    if not path.is_file():
        raise UserError(f"predictions file {str(path)!r} does not exist. Fix: give the right --pred path.")
    if path.suffix == ".json":
        return _read_bird_predictions(path, len(record_ids))
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".jsonl":
        by_id: dict[str, str] = {}
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                by_id[str(item["id"])] = str(item["sql"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(
                    f"{path}: line {lineno} is not a JSON object with `id` and `sql`. "
                    'Fix: write one {"id": ..., "sql": ...} per line.'
                ) from None
        missing = [i for i in record_ids if i not in by_id]
        unknown = sorted(set(by_id) - set(record_ids))
        if missing or unknown:
            raise UserError(
                f"{path}: {len(missing)} examples have no prediction (e.g. {missing[:3]}) and "
                f"{len(unknown)} ids are not in the data set (e.g. {unknown[:3]}). "
                "Fix: give exactly one prediction per example id."
            )
        return [by_id[i] for i in record_ids]
    if lines and lines[-1] == "" and len(lines) == len(record_ids) + 1:
        lines = lines[:-1]
    if len(lines) != len(record_ids):
        raise UserError(
            f"{path} has {len(lines)} lines but the data set has {len(record_ids)} examples. "
            "Fix: write exactly one SQL per line, in data set order (empty line for no prediction)."
        )
    return [line.split("\t", 1)[0].strip() for line in lines]


def _read_bird_predictions(path: Path, n_records: int) -> list[str]:
    """BIRD's predictions file: a JSON object {"0": "SQL\t----- bird -----\tdb_id", ...} by position."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(
            f"{path}: malformed JSON at line {err.lineno}: {err.msg}. Fix: repair the file."
        ) from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and k.isdigit() for k in obj):
        raise UserError(
            f"{path} is not BIRD's predictions format. Fix: write a JSON object mapping each question's "
            'position to its SQL ({"0": "SELECT ...\\t----- bird -----\\tdb_id", ...}), or use .sql / .jsonl.'
        )
    by_position = {int(k): str(v) for k, v in obj.items()}
    missing = [p for p in range(n_records) if p not in by_position]
    unknown = sorted(p for p in by_position if p >= n_records)
    if missing or unknown:
        raise UserError(
            f"{path}: {len(missing)} questions have no prediction (e.g. {missing[:3]}) and {len(unknown)} "
            f"keys are beyond the data set's {n_records} questions (e.g. {unknown[:3]}). "
            "Fix: give one prediction per question position 0..N-1."
        )
    return [by_position[p].split("\t", 1)[0].strip() for p in range(n_records)]


def evaluate(
    examples: pd.DataFrame,
    gold: pd.DataFrame,
    excluded: pd.DataFrame,
    predictions: list[str],
    sandbox: Sandbox,
    settings: MatchSettings,
    gold_ts: pd.DataFrame | None = None,
    r_ves_repeats: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Return (per-example verdicts, summary); `predictions` are indexed by data set position.

    `ex` is over the scored examples (a database and runnable gold SQL) in ``spider`` and ``strict`` mode;
    in ``bird`` mode every question is in the denominator, so an example whose gold SQL fails or times
    out, or whose database is missing, counts as wrong (BIRD's evaluator scores each question 0 or 1).
    With `gold_ts` (test-suite gold results), a prediction correct on its main database must also match
    on every test-suite database of its example (`ts_failed_db` names the first one it fails on).
    With `r_ves_repeats` > 0, correct predictions are timed against their gold SQL that many times and
    R-VES (BIRD's reward-based valid efficiency score, `core.efficiency`) is added: `time_ratio` and
    `ves_reward` per example, `r_ves` in the summary, over the same denominator as EX.
    """
    usable = examples[examples["id"].isin(gold["id"])]
    scored = score_predictions(
        usable, gold, [predictions[p] for p in usable["position"]], sandbox, settings, progress="predictions"
    )
    checks = ts_golds(gold_ts)
    scored["ts_failed_db"] = None
    if checks and len(scored):
        ids = scored["id"].astype(str)
        items = [
            (v, s, checks.get(i, ()))
            for v, s, i in zip(scored["verdict"], scored["pred_sql"], ids, strict=True)
        ]
        final = suite_verdicts(items, sandbox, settings, progress="test-suite databases")
        scored["verdict"] = [v for v, _ in final]
        scored["ts_failed_db"] = [p for _, p in final]
        scored["correct"] = scored["verdict"] == "correct"
    if r_ves_repeats > 0 and len(scored):
        _add_r_ves(scored, examples, sandbox, settings, r_ves_repeats)
    rest = pd.DataFrame(
        {
            "id": excluded["id"],
            "index": excluded["position"],
            "db_id": excluded["db_id"],
            "question": excluded["question"],
            "difficulty": excluded.get("difficulty"),
            "gold_sql": excluded["gold_sql"],
            "pred_sql": [predictions[p] for p in excluded["position"]],
            "verdict": excluded["reason"].map(EXCLUDED_VERDICTS),
            "error_class": excluded.get("error_class"),
            "error_message": excluded.get("error_message"),
            "correct": False,
        }
    )
    frames = [f for f in (scored, rest) if len(f)]
    per_example = pd.concat(frames, ignore_index=True).sort_values("index").reset_index(drop=True)
    if "ves_reward" in per_example:
        per_example["ves_reward"] = per_example["ves_reward"].fillna(0.0)
    counts = scored["verdict"].value_counts()
    n_scored = len(scored)
    n_correct = int(scored["correct"].sum()) if n_scored else 0
    denominator = len(per_example) if settings.metric == BIRD else n_scored
    summary = {
        "ex": round(n_correct / denominator, 6) if denominator else None,
        "metric": settings.metric,
        "denominator": denominator,
        "examples": len(per_example),
        "scored": n_scored,
        "correct": n_correct,
        "executable": round(float((scored["status"] == "ok").mean()), 6) if n_scored else None,
        "skipped_missing_db": int((rest["verdict"] == "skipped").sum()),
        "gold_failed": int((rest["verdict"] == "gold_error").sum()),
        "verdicts": {v: int(counts.get(v, 0)) for v in VERDICTS if counts.get(v, 0)},
        "keep_distinct": settings.keep_distinct,
        "by_difficulty": by_difficulty(per_example, settings.metric),
        "test_suite_databases": int(gold_ts["db_path"].nunique()) if gold_ts is not None else 0,
        "failed_only_on_test_suite": int(scored["ts_failed_db"].notna().sum()) if n_scored else 0,
        "r_ves": _r_ves(per_example, settings.metric),
        "r_ves_repeats": r_ves_repeats,
    }
    return per_example, summary


def _counted(per_example: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The examples in the denominator: all in bird mode, else the scored ones."""
    if metric == BIRD:
        return per_example
    return per_example[~per_example["verdict"].isin(["skipped", "gold_error"])]


def _add_r_ves(
    scored: pd.DataFrame, examples: pd.DataFrame, sandbox: Sandbox, settings: MatchSettings, repeats: int
) -> None:
    """Time the correct predictions against their gold SQL: `time_ratio` and `ves_reward` columns."""
    db_of = dict(zip(examples["id"], examples["db_path"], strict=True))
    right = scored[scored["correct"]]
    items = [
        (db_of[i], settings.prepare(p), settings.prepare(g))
        for i, p, g in zip(right["id"], right["pred_sql"], right["gold_sql"], strict=True)
    ]
    ratios = time_ratios(items, sandbox, repeats, progress="R-VES")
    by_id = dict(zip(right["id"], ratios, strict=True))
    scored["time_ratio"] = scored["id"].map(by_id)
    scored["ves_reward"] = [0.0 if r is None or pd.isna(r) else reward(r) for r in scored["time_ratio"]]


def _r_ves(per_example: pd.DataFrame, metric: str) -> float | None:
    if "ves_reward" not in per_example:
        return None
    value = r_ves(list(_counted(per_example, metric)["ves_reward"].astype(float)))
    return round(value, 4) if value is not None else None


def by_difficulty(per_example: pd.DataFrame, metric: str) -> dict[str, dict]:
    """EX per `difficulty` (BIRD's simple / moderate / challenging), with the mode's denominator rule."""
    if "difficulty" not in per_example or per_example["difficulty"].isna().all():
        return {}
    out = {}
    for level, group in per_example.groupby(per_example["difficulty"].fillna("unknown"), sort=False):
        counted = _counted(group, metric)
        correct = int(counted["correct"].sum())
        out[str(level)] = {
            "examples": len(counted),
            "correct": correct,
            "ex": round(correct / len(counted), 6) if len(counted) else None,
        }
        if "ves_reward" in group:
            out[str(level)]["r_ves"] = _r_ves(group, metric)
    order = {"simple": 0, "moderate": 1, "challenging": 2}
    return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], 3), kv[0])))


def format_summary(summary: dict) -> str:
    """Return the summary as a small text table."""
    lines = [
        f"{'EX':<22}{summary['ex'] if summary['ex'] is not None else 'n/a'}",
        f"{'metric':<22}{summary.get('metric', 'spider')} (denominator {summary.get('denominator')})",
        f"{'scored':<22}{summary['scored']} of {summary['examples']}",
        f"{'correct':<22}{summary['correct']}",
        f"{'executable':<22}{summary['executable']}",
        f"{'skipped (no database)':<22}{summary['skipped_missing_db']}",
        f"{'gold SQL failed':<22}{summary['gold_failed']}",
        *([f"{'R-VES':<22}{summary['r_ves']}"] if summary.get("r_ves") is not None else []),
        "verdicts:",
    ]
    lines += [f"  {v:<20}{n}" for v, n in summary["verdicts"].items()]
    if summary.get("by_difficulty"):
        lines.append("EX by difficulty:")
        lines += [
            f"  {level:<20}{d['ex']} ({d['correct']} of {d['examples']})"
            for level, d in summary["by_difficulty"].items()
        ]
    return "\n".join(lines)


def load_ingested(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """Return (examples, gold, excluded, number of records) written by the ingest stage."""
    summary = json.loads((data_dir / "summary.json").read_text())
    return (
        pd.read_parquet(data_dir / "examples.parquet"),
        pd.read_parquet(data_dir / "gold.parquet"),
        pd.read_parquet(data_dir / "excluded.parquet"),
        int(summary["records"]),
    )


def record_ids(examples: pd.DataFrame, excluded: pd.DataFrame, n_records: int) -> list[str]:
    by_position = dict(zip(examples["position"], examples["id"], strict=True))
    by_position |= dict(zip(excluded["position"], excluded["id"], strict=True))
    return [by_position.get(p, f"#{p}") for p in range(n_records)]
