"""Rollout throughput: the batched transformers path against a per-example loop, same examples.

Usage: python benchmarks/rollout.py [--limit N] [--max-turns T] [--batch-size B] [--threads K]

The per-example loop makes one generate call per example per turn (batch 1), as a naive implementation
would. Both use greedy decoding, so their SQL should agree; the script prints the share that does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, demo_dev, tempdir  # noqa: E402
from workflow_scripts.generation import SamplingConfig, TransformersBackend  # noqa: E402
from workflow_scripts.rollout import RolloutSettings, prepare_examples, run_rollout  # noqa: E402
from workflow_scripts.sandbox import Sandbox  # noqa: E402
from workflow_scripts.scoring import MatchSettings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=REPO / "resources" / "models" / "smollm2-135m-instruct")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-turns", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    settings = RolloutSettings(
        max_turns=args.max_turns, sampling=SamplingConfig(max_new_tokens=args.max_new_tokens, stop=(";",))
    )
    with tempdir() as tmp:
        data = demo_dev(Path(tmp))
    examples = data["examples"].head(args.limit) if args.limit else data["examples"]
    prepared = prepare_examples(examples, data["gold"], data["schema"], settings)
    batched_backend = TransformersBackend(args.model, batch_size=args.batch_size, threads=args.threads)
    single_backend = TransformersBackend(args.model, batch_size=1, threads=args.threads)
    match = MatchSettings()
    with Sandbox(workers=1) as sandbox:
        run_rollout(prepared[:1], batched_backend, sandbox, settings, match, progress=False)  # warm-up
        start = time.perf_counter()
        batched = run_rollout(prepared, batched_backend, sandbox, settings, match, progress=False)
        batched_s = time.perf_counter() - start
        start = time.perf_counter()
        looped = [
            run_rollout([ex], single_backend, sandbox, settings, match, progress=False) for ex in prepared
        ]
        loop_s = time.perf_counter() - start
    import pandas as pd

    looped_df = pd.concat(looped, ignore_index=True)
    key = ["candidate_id"]
    joined = batched[[*key, "sql"]].merge(
        looped_df[[*key, "sql"]], on=key, how="outer", suffixes=("_b", "_l")
    )
    same = (joined["sql_b"] == joined["sql_l"]).mean()
    n = len(prepared)
    print(
        f"examples: {n} (demo dev), max_turns={args.max_turns}, max_new_tokens={args.max_new_tokens}, "
        f"threads={args.threads}"
    )
    print(f"candidates: batched {len(batched)}, loop {len(looped_df)}; identical SQL: {same:.1%}")
    print(
        f"generated tokens: batched {int(batched['completion_tokens'].sum())}, "
        f"loop {int(looped_df['completion_tokens'].sum())}"
    )
    print(f"batched (batch {args.batch_size}, length-sorted): {batched_s:7.1f} s  {n / batched_s:.3f} ex/s")
    print(f"per-example loop (batch 1):          {loop_s:7.1f} s  {n / loop_s:.3f} ex/s")
    print(f"speed-up: {loop_s / batched_s:.2f}x")


if __name__ == "__main__":
    main()
