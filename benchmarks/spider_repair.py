"""Base-model rollout with repair on a held-out slice of Spider (split by db_id), with the default model.

Usage: python benchmarks/spider_repair.py [--spider DIR] [--dbs N] [--per-db K] [--max-turns T]
                                          [--feedback-mode M] [--feedback-detail D] [--schema-mode S]

Turn 1 of the run is the one-shot result; the final turn is with repair.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, SPIDER, spider_heldout, tempdir  # noqa: E402
from workflow_scripts.core.sandbox import Sandbox  # noqa: E402
from workflow_scripts.core.scoring import MatchSettings  # noqa: E402
from workflow_scripts.rollout.generation import SamplingConfig, TransformersBackend  # noqa: E402
from workflow_scripts.rollout.loop import prepare_examples, run_rollout  # noqa: E402
from workflow_scripts.rollout.settings import RolloutSettings  # noqa: E402
from workflow_scripts.rollout.summary import summarize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spider", type=Path, default=SPIDER)
    parser.add_argument("--model", type=Path, default=REPO / "resources" / "models" / "smollm2-135m-instruct")
    parser.add_argument("--dbs", type=int, default=20)
    parser.add_argument("--per-db", type=int, default=3)
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--feedback-mode", default="online_visible")
    parser.add_argument("--repair-scope", default="online_guarded")
    parser.add_argument("--feedback-detail", default="column")
    parser.add_argument("--schema-mode", default="bm25_fk")
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    settings = RolloutSettings(
        schema_mode=args.schema_mode,
        top_k_tables=args.top_k,
        max_turns=args.max_turns,
        feedback_mode=args.feedback_mode,
        feedback_detail=args.feedback_detail,
        repair_scope=args.repair_scope,
        sampling=SamplingConfig(max_new_tokens=args.max_new_tokens, stop=(";",)),
    )
    with tempdir() as tmp:
        data = spider_heldout(Path(tmp), args.spider, args.dbs, args.per_db)
    prepared = prepare_examples(data["examples"], data["gold"], data["schema"], settings)
    backend = TransformersBackend(args.model, batch_size=8, threads=args.threads)
    start = time.perf_counter()
    with Sandbox(workers=1) as sandbox:
        trajectories = run_rollout(prepared, backend, sandbox, settings, MatchSettings())
    seconds = time.perf_counter() - start
    summary = summarize(trajectories, len(prepared), args.max_turns)
    print(
        f"Spider train, {args.dbs} held-out databases x {args.per_db} questions = {len(prepared)} examples; "
        f"schema {args.schema_mode} top-{args.top_k}; "
        f"feedback {args.feedback_mode}/{args.feedback_detail}/{args.repair_scope}; "
        f"{args.max_turns} turns; {seconds:.0f} s"
    )
    for key in (
        "first_turn_ex",
        "final_ex",
        "first_turn_executable",
        "final_executable",
        "schema_valid",
        "repair_attempted",
        "repair_success_rate",
        "mean_table_recall",
        "generated_tokens",
    ):
        print(f"{key:<24}{summary[key]}")
    print("errors by turn:", json.dumps(summary["errors_by_turn"]))


if __name__ == "__main__":
    main()
