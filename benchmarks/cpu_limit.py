"""The CPU path against this machine's limit: GEMM peak, rollout paths and LoRA training of a real model.

Usage: python benchmarks/cpu_limit.py [--model DIR] [--spider DIR] [--dbs 20] [--per-db 3]
           [--paths transformers,vllm_fp32,vllm_bf16] [--train sft_fp32,sft_bf16,dpo_fp32,dpo_bf16]

Prints, in one run on this machine:
- the dense matmul peak of torch on `--threads` threads, fp32 and bf16 ((512x896) @ (896x4864), Qwen-0.5B's
  MLP shape), best of 20;
- per rollout path, the project's rollout (generate, execute, feedback, repair: the 3B config's settings, 3
  turns, greedy, 256 new tokens) on held-out Spider questions (whole databases drawn with seed 0): the job's
  wall time (a fresh process: imports, model load or engine start, rollout), the engine/model start, the
  rollout, tokens/s, achieved GFLOP/s over *computed* tokens (prompt tokens not served from the prefix cache,
  plus generated tokens; 2 x the matmul parameters per token, attention left out) and its share of the peak
  of the path's dtype, first-turn and final EX, and the share of candidates whose SQL equals the first path's;
- per training path, LoRA (r=16, all seven projections) SFT or DPO steps on the same questions' gold SQL:
  s/step, trained tokens/s, achieved GFLOP/s (3 x the forward FLOPs of the real tokens) against the bf16 peak.
Each path runs in its own process, one after another, so they do not share cores or engine settings.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, SPIDER, spider_heldout, tempdir  # noqa: E402

ROLLOUT_PATHS = {
    "transformers": {"backend": "transformers", "dtype": "float32"},
    "vllm_fp32": {"backend": "vllm", "dtype": "float32"},
    "vllm_bf16": {"backend": "vllm", "dtype": "bfloat16"},
    "transformers_bf16": {"backend": "transformers", "dtype": "bfloat16"},
}
TRAIN_PATHS = {
    "sft_fp32": {"method": "sft", "precision": "fp32"},
    "sft_bf16": {"method": "sft", "precision": "bf16"},
    "dpo_fp32": {"method": "dpo", "precision": "fp32"},
    "dpo_bf16": {"method": "dpo", "precision": "bf16"},
}
SEVEN = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def gemm_peak(threads: int, repeats: int = 20) -> dict[str, float]:
    """GFLOP/s of torch's best (512x896) @ (896x4864) matmul in fp32 and bf16."""
    import torch

    torch.set_num_threads(threads)
    m, k, n = 512, 896, 4864
    peak = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(3):
            a @ b
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        peak[name] = 2 * m * k * n / best / 1e9
    return peak


def matmul_params(model: Path) -> int:
    """Parameters that take part in a matmul per token: all but the input embedding table."""
    from safetensors import safe_open

    total = 0
    for file in model.glob("*.safetensors"):
        with safe_open(str(file), "pt") as f:
            total += sum(math.prod(f.get_slice(n).get_shape()) for n in f.keys() if "embed_tokens" not in n)  # noqa: SIM118
    config = json.loads((model / "config.json").read_text())
    if config.get("tie_word_embeddings"):  # the output layer is the embedding table: count it once
        total += config["vocab_size"] * config["hidden_size"]
    return total


# ------------------------------------------------------------------------------------------ one path


class Recording:
    """A backend wrapper that keeps every completion it returns (token counts for the FLOP figure)."""

    def __init__(self, backend) -> None:
        self.backend, self.completions = backend, []
        self.name = backend.name
        self.context_length = getattr(backend, "context_length", None)

    def generate(self, prompts, sampling):
        out = self.backend.generate(prompts, sampling)
        self.completions.extend(c for group in out for c in group[:1])  # greedy: one computed sequence
        return out


def rollout_path(name: str, data_dir: Path, model: Path, threads: int) -> dict:
    import pandas as pd

    from workflow_scripts.core.sandbox import Sandbox
    from workflow_scripts.core.scoring import MatchSettings
    from workflow_scripts.rollout.backends import make_backend
    from workflow_scripts.rollout.generation import SamplingConfig
    from workflow_scripts.rollout.loop import prepare_examples, run_rollout
    from workflow_scripts.rollout.settings import RolloutSettings
    from workflow_scripts.rollout.summary import summarize

    path = ROLLOUT_PATHS[name]
    frames = {n: pd.read_parquet(data_dir / f"{n}.parquet") for n in ("examples", "gold", "schema")}
    settings = RolloutSettings(
        schema_mode="bm25_fk",
        top_k_tables=4,
        max_turns=3,
        feedback_mode="online_visible",
        feedback_detail="minimal",
        repair_scope="online_guarded",
        sampling=SamplingConfig(max_new_tokens=256, stop=(";",)),
    )
    prepared = prepare_examples(frames["examples"], frames["gold"], frames["schema"], settings)
    start = time.perf_counter()
    backend = Recording(
        make_backend(
            path["backend"],
            model,
            threads=threads,
            transformers={"batch_size": 16, "dtype": path["dtype"]},
            vllm={"max_model_len": 4096, "dtype": path["dtype"]},
        )
    )
    start_s = time.perf_counter() - start
    with Sandbox(workers=1) as sandbox:
        start = time.perf_counter()
        trajectories = run_rollout(prepared, backend, sandbox, settings, MatchSettings(), progress=False)
        rollout_s = time.perf_counter() - start
    summary = summarize(trajectories, len(prepared), settings.max_turns)
    prompt = sum(c.prompt_tokens for c in backend.completions)
    cached = sum(c.cached_tokens for c in backend.completions)
    generated = sum(c.completion_tokens for c in backend.completions)
    sql = trajectories.sort_values(["example_id", "turn", "sample"])[["example_id", "turn", "sql"]]
    return {
        "path": name,
        "start_s": start_s,
        "rollout_s": rollout_s,
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "generated_tokens": generated,
        "first_turn_ex": summary["first_turn_ex"],
        "final_ex": summary["final_ex"],
        "examples": len(prepared),
        "cpu_env": getattr(backend.backend, "cpu_env", {}),
        "sql": [[str(e), int(t), s] for e, t, s in sql.itertuples(index=False)],
    }


def train_path(name: str, data_dir: Path, model: Path, threads: int, steps: int) -> dict:
    import pandas as pd
    import torch
    from transformers import AutoTokenizer

    from workflow_scripts.rollout.generation import render_prompt
    from workflow_scripts.rollout.loop import prepare_examples
    from workflow_scripts.rollout.settings import RolloutSettings
    from workflow_scripts.train.dpo import train_dpo
    from workflow_scripts.train.settings import LoraSettings, TrainSettings
    from workflow_scripts.train.sft import train_sft

    torch.set_num_threads(threads)
    path = TRAIN_PATHS[name]
    frames = {n: pd.read_parquet(data_dir / f"{n}.parquet") for n in ("examples", "gold", "schema")}
    prepared = prepare_examples(frames["examples"], frames["gold"], frames["schema"], RolloutSettings())
    batch = 4
    rows = prepared[: steps * batch]
    gold = frames["examples"].set_index("id")["gold_sql"]
    answer = [{"role": "assistant", "content": gold[ex.id] + ";"} for ex in rows]
    lora = LoraSettings(r=16, alpha=32, target_modules=SEVEN)
    settings = TrainSettings(
        max_steps=steps,
        per_device_batch_size=batch,
        max_length=1024,
        precision=path["precision"],
        gradient_checkpointing=False,
        learning_rate=1e-4,
    )
    tokenizer = AutoTokenizer.from_pretrained(model)
    lengths = [
        len(tokenizer.encode(render_prompt(tokenizer, ex.prompt) + a["content"], add_special_tokens=False))
        for ex, a in zip(rows, answer, strict=True)
    ]
    with tempdir() as tmp:
        if path["method"] == "sft":
            data = pd.DataFrame({"prompt": [ex.prompt for ex in rows], "completion": [[a] for a in answer]})
            metrics = train_sft(model, data, Path(tmp) / "a", lora, settings)
            tokens = sum(lengths)
        else:
            wrong = [{"role": "assistant", "content": "SELECT * FROM " + ex.db_id + ";"} for ex in rows]
            pairs = pd.DataFrame({
                "prompt": [ex.prompt for ex in rows],
                "chosen": [[a] for a in answer],
                "rejected": [[w] for w in wrong],
            })  # fmt: skip
            metrics = train_dpo(model, pairs, Path(tmp) / "a", lora, settings)
            tokens = 2 * sum(
                lengths
            )  # chosen and rejected sequences (the rejected ones are shorter: an upper bound)
    return {
        "path": name,
        "steps": metrics["steps"],
        "step_seconds": metrics["step_seconds"],
        "train_seconds": metrics["train_seconds"],
        "tokens": tokens,
        "peak_rss_mib": metrics["peak_rss_mib"],
    }


# -------------------------------------------------------------------------------------------- driver


def run_child(args: argparse.Namespace, path: str, data_dir: Path) -> dict:
    """Run one path in a fresh process; its wall time is the path's job time."""
    result_file = data_dir.parent / f"{path}.json"
    cmd = [sys.executable, __file__, "--one", path, "--data-dir", str(data_dir), "--model", str(args.model)]
    cmd += ["--threads", str(args.threads), "--steps", str(args.steps), "--result", str(result_file)]
    start = time.perf_counter()
    done = subprocess.run(
        cmd, capture_output=True, text=True
    )  # engines print to stdout: results go to a file
    job_s = time.perf_counter() - start
    if done.returncode != 0:  # reported in its row; the other paths still run
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"path": path, "error": last[0][:200]}
    return {**json.loads(result_file.read_text()), "job_s": job_s}


def identical(a: list, b: list) -> str:
    ref = {(e, t): s for e, t, s in b}
    same = sum(ref.get((e, t)) == s for e, t, s in a)
    return f"{same}/{len(a)}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, default=REPO / "resources" / "models" / "qwen2.5-coder-0.5b-instruct"
    )
    parser.add_argument("--spider", type=Path, default=SPIDER)
    parser.add_argument("--dbs", type=int, default=20)
    parser.add_argument("--per-db", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paths", default="transformers,vllm_fp32,vllm_bf16")
    parser.add_argument("--train", default="sft_fp32,sft_bf16,dpo_fp32,dpo_bf16")
    parser.add_argument("--steps", type=int, default=4, help="training steps per path (the first is warm-up)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        if args.one in ROLLOUT_PATHS:
            result = rollout_path(args.one, args.data_dir, args.model, args.threads)
        else:
            result = train_path(args.one, args.data_dir, args.model, args.threads, args.steps)
        args.result.write_text(json.dumps(result))
        return

    peak = gemm_peak(args.threads)
    params = matmul_params(args.model)
    fp32, bf16 = peak["fp32"], peak["bf16"]
    print(f"GEMM peak, torch, {args.threads} threads: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s")
    print(f"model {args.model.name}: {params / 1e6:.0f}M matmul parameters")
    with tempdir() as tmp:
        spider_heldout(Path(tmp), args.spider, args.dbs, args.per_db)
        data_dir = Path(tmp) / "spider_heldout"
        rollouts = [p for p in args.paths.split(",") if p]
        trains = [t for t in args.train.split(",") if t]
        if rollouts:
            print(f"\nRollout, held-out Spider ({args.dbs} databases x {args.per_db}), 3 turns, greedy")
            print(
                "| path | job s | start s | rollout s | computed tok | gen tok/s | GFLOP/s | of peak "
                "| EX first/final | same SQL |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
        reference = None
        for path in rollouts:
            r = run_child(args, path, data_dir)
            if "error" in r:
                print(f"| {path} | failed: {r['error']} |", flush=True)
                continue
            reference = reference or r
            print(rollout_row(r, params, peak, reference), flush=True)
        if trains:
            print(
                f"\nLoRA training (r=16, seven projections, batch 4, {args.steps} steps, first step left out)"
            )
            print("| path | s/step | tokens/s | GFLOP/s | of bf16 peak | peak RSS MiB |")
            print("|---|---|---|---|---|---|", flush=True)
        for path in trains:
            t = run_child(args, path, data_dir)
            print(
                f"| {path} | failed: {t['error']} |" if "error" in t else train_row(t, params, peak),
                flush=True,
            )


def rollout_row(r: dict, params: int, peak: dict[str, float], reference: dict) -> str:
    computed = r["prompt_tokens"] - r["cached_tokens"] + r["generated_tokens"]
    gflops = 2 * params * computed / r["rollout_s"] / 1e9
    dtype = "bf16" if r["path"].endswith("bf16") else "fp32"
    tokens_s = r["generated_tokens"] / r["rollout_s"]
    return (
        f"| {r['path']} | {r['job_s']:.0f} | {r['start_s']:.1f} | {r['rollout_s']:.1f} "
        f"| {computed:,} (cached {r['cached_tokens']:,}) | {tokens_s:.1f} | {gflops:.1f} "
        f"| {gflops / peak[dtype]:.0%} {dtype} | {r['first_turn_ex']:.1%} / {r['final_ex']:.1%} "
        f"| {identical(r['sql'], reference['sql'])} |"
    )


def train_row(t: dict, params: int, peak: dict[str, float]) -> str:
    timed = t["step_seconds"][1:] or t["step_seconds"]
    per_step = sum(timed) / len(timed)
    tokens_per_step = t["tokens"] / t["steps"]
    gflops = 3 * 2 * params * tokens_per_step / per_step / 1e9
    return (
        f"| {t['path']} | {per_step:.1f} | {tokens_per_step / per_step:.0f} | {gflops:.0f} | "
        f"{gflops / peak['bf16']:.0%} | {t['peak_rss_mib']:.0f} |"
    )


if __name__ == "__main__":
    main()
