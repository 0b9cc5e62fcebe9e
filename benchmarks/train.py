"""LoRA training cost on this machine: seconds per step and peak memory (RSS) of SFT, DPO and GRPO.

Usage: python benchmarks/train.py [--steps N] [--batch-size B] [--threads K] [--variants sft,dpo,...]

Each measurement runs in a fresh subprocess, so its peak RSS (`getrusage` high-water mark, model loading
included) is its own. Every run trains the default model with LoRA r=16 on q/k/v/o, fp32 with gradient
checkpointing, on demo prompts (~350 tokens with the SQL), for one warm-up step plus `--steps` measured
steps. Variants:
- sft: `train_sft` (completion-only loss);
- dpo: `train_dpo` as the workflow runs it (reference log-probs precomputed in one pass before training);
- dpo-inline: the reference forward inside every step instead (trl's default);
- dpo-margin: margin-aware DPO (precomputed reference, shifted by the pair margins);
- sft-all-positions, dpo-all-positions: as sft and dpo, but with trl's fused LM head scoring every position
  (prompt included), as trl 1.16 does on CPU unless `train.common.completion_only_lm_head` is in effect;
- grpo, grpo-repair: `train_grpo` one-shot and repair-aware (max_turns 2), `--batch-size` prompts per step x
  4 generations of up to 64 tokens, arctic reward, all of a step's episodes in one forward/backward pass;
  each step split into generation, reward (sandbox) and optimisation;
- grpo-micro, grpo-repair-micro: the same in micro-batches of `--batch-size` episodes (`micro_batch_size`).
For DPO, "ref pass" is the time of the trainer's setup (tokenization and the precomputed reference pass),
and "s/step incl. ref" spreads it over the steps, to compare with dpo-inline. Other processes on the
machine slow every figure down: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, demo_dev, tempdir  # noqa: E402

VARIANTS = (
    "sft", "dpo", "dpo-inline", "dpo-margin", "sft-all-positions", "dpo-all-positions", "grpo", "grpo-repair",
    "grpo-micro", "grpo-repair-micro",
)  # fmt: skip
GRPO_GENERATIONS = 4


def build_data(workdir: Path, model: Path, rows: int) -> tuple[Path, Path, float]:
    """Write SFT examples and DPO pairs from demo prompts; return their paths and the mean token length."""
    import pandas as pd
    from transformers import AutoTokenizer

    from workflow_scripts.rollout.loop import prepare_examples
    from workflow_scripts.rollout.settings import RolloutSettings

    data = demo_dev(workdir)
    # Six tables and one example value per column give demo prompts of ~330 tokens (about 290 by default).
    prepared = prepare_examples(
        data["examples"], data["gold"], data["schema"], RolloutSettings(top_k_tables=6, cell_values=1)
    )
    gold = dict(zip(data["examples"]["id"], data["examples"]["gold_sql"], strict=True))
    picked = (prepared * (rows // len(prepared) + 1))[:rows]
    chosen = [gold[p.id] for p in picked]
    # Any other SQL is as costly to score: take the next example's gold SQL as the rejected answer.
    rejected = chosen[1:] + chosen[:1]
    prompts = [p.prompt for p in picked]
    sft = pd.DataFrame({
        "prompt": prompts,
        "completion": [[{"role": "assistant", "content": sql}] for sql in chosen],
    })  # fmt: skip
    pairs = pd.DataFrame({
        "prompt": [json.dumps(p) for p in prompts],
        "chosen": chosen,
        "rejected": rejected,
        "margin": [1.0 + 0.1 * (i % 5) for i in range(rows)],
    })  # fmt: skip
    sft_path, pairs_path = workdir / "sft.pkl", workdir / "pairs.pkl"
    sft.to_pickle(sft_path)
    pairs.to_pickle(pairs_path)
    pd.to_pickle(picked, workdir / "prompts.pkl")  # the prepared examples, for GRPO
    tokenizer = AutoTokenizer.from_pretrained(model)
    lengths = [
        len(tokenizer.apply_chat_template([*p, {"role": "assistant", "content": sql}])["input_ids"])
        for p, sql in zip(prompts, chosen, strict=True)
    ]
    return sft_path, pairs_path, sum(lengths) / len(lengths)


def worker(args: argparse.Namespace) -> None:
    """Run one measurement in this (fresh) process and print its metrics as one JSON line."""
    import contextlib

    import pandas as pd
    import torch

    from workflow_scripts.core.scoring import MatchSettings
    from workflow_scripts.rollout.generation import SamplingConfig
    from workflow_scripts.rollout.settings import RolloutSettings
    from workflow_scripts.train import dpo, sft
    from workflow_scripts.train.dpo import train_dpo
    from workflow_scripts.train.grpo import train_grpo
    from workflow_scripts.train.settings import GRPOSettings, LoraSettings, TrainSettings
    from workflow_scripts.train.sft import train_sft

    torch.set_num_threads(args.threads)
    if args.worker.endswith("-all-positions"):
        # The counterfactual: trl's own choice on CPU, scoring every position through the LM head.
        sft.completion_only_lm_head = dpo.completion_only_lm_head = contextlib.nullcontext
    settings = TrainSettings(
        max_steps=args.steps + 1,
        per_device_batch_size=args.batch_size,
        max_length=512,
        precision="fp32",
        gradient_checkpointing=True,
        logging_steps=1,
        precompute_ref=args.worker != "dpo-inline",
        margin_aware=args.worker == "dpo-margin",
    )
    out = Path(args.out)
    if args.worker.startswith("grpo"):
        grpo = GRPOSettings(
            num_generations=GRPO_GENERATIONS,
            prompts_per_step=args.batch_size,
            max_turns=2 if args.worker.startswith("grpo-repair") else 1,
            micro_batch_size=args.batch_size if args.worker.endswith("-micro") else None,
            max_new_tokens=64,
            temperature=1.0,
        )
        rollout = RolloutSettings(sampling=SamplingConfig(stop=(";",)))
        metrics = train_grpo(
            args.model, pd.read_pickle(args.data), out, LoraSettings(), settings, grpo,
            rollout=rollout, sandbox={"workers": 1, "timeout_s": 5.0}, match=MatchSettings(),
        )  # fmt: skip
    elif args.worker.startswith("sft"):
        metrics = train_sft(args.model, pd.read_pickle(args.data), out, LoraSettings(), settings)
    else:
        metrics = train_dpo(args.model, pd.read_pickle(args.data), out, LoraSettings(), settings)
    print("METRICS " + json.dumps(metrics), flush=True)


def measure(variant: str, data: Path, args: argparse.Namespace, workdir: Path) -> dict:
    """Run `variant` in a fresh subprocess and return its metrics."""
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        variant,
        "--data",
        str(data),
        "--out",
        str(workdir / f"adapter-{variant}"),
        "--model",
        str(args.model),
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
    ]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((x for x in done.stdout.splitlines() if x.startswith("METRICS ")), None)
    if done.returncode != 0 or line is None:
        sys.exit(f"{variant} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(line.removeprefix("METRICS "))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=REPO / "resources" / "models" / "smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=3, help="measured steps, after one warm-up step")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--variants",
        default="sft,dpo,dpo-inline,sft-all-positions,dpo-all-positions",
        help=f"among {', '.join(VARIANTS)}",
    )
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    variants = [v for v in args.variants.split(",") if v]
    if unknown := sorted(set(variants) - set(VARIANTS)):
        parser.error(f"unknown variants {unknown}")
    rows = (args.steps + 1) * args.batch_size
    with tempdir() as tmp:
        workdir = Path(tmp)
        sft_path, pairs_path, mean_len = build_data(workdir, args.model, rows)
        print(
            f"default model, LoRA r=16 q/k/v/o, fp32, gradient checkpointing, batch {args.batch_size}, "
            f"{mean_len:.0f} tokens per sequence on average, threads={args.threads}; 1 warm-up + "
            f"{args.steps} measured steps; each in a fresh process; load average {load()}",
            flush=True,
        )
        print(
            f"{'variant':<17} {'s/step':>7} {'ref pass s':>10} {'s/step incl. ref':>16} {'peak RSS GiB':>12}"
        )
        results = {}
        for variant in variants:
            data = {"sft": sft_path, "dpo": pairs_path, "grp": workdir / "prompts.pkl"}[variant[:3]]
            metrics = measure(variant, data, args, workdir)
            measured = metrics["step_seconds"][1:]
            per_step = sum(measured) / len(measured)
            ref = metrics["setup_seconds"] if variant.startswith("dpo") and variant != "dpo-inline" else 0.0
            with_ref = per_step + ref / metrics["steps"]
            results[variant] = metrics
            print(
                f"{variant:<17} {per_step:7.1f} {ref:10.1f} {with_ref:16.1f} "
                f"{metrics['peak_rss_mib'] / 1024:12.2f}",
                flush=True,
            )
        grpo = {v: m for v, m in results.items() if v.startswith("grpo")}
        if grpo:
            header = ("GRPO step split", "generation s", "reward s", "optimisation s", "reward %")
            print(f"{header[0]:<17} {header[1]:>12} {header[2]:>9} {header[3]:>14} {header[4]:>8}")
        for variant, metrics in grpo.items():
            split = metrics["step_split"][1:]  # after the warm-up step
            gen, rew, opt = (
                sum(s[k] for s in split) / len(split) for k in ("generation_s", "reward_s", "optimisation_s")
            )
            print(f"{variant:<17} {gen:12.1f} {rew:9.2f} {opt:14.1f} {rew / (gen + rew + opt):8.1%}")
        print(f"load average after: {load()}")
        for variant in (v for v in variants if v.startswith("dpo")):
            # Compare with the SFT run that scores the LM head the same way.
            base = "sft-all-positions" if variant.endswith("-all-positions") else "sft"
            if base in results:
                ratio = results[variant]["peak_rss_mib"] / results[base]["peak_rss_mib"]
                print(f"{variant} / {base} peak RSS: {ratio:.2f}x")


def load() -> str:
    """The 1, 5 and 15 minute load averages (this machine has os.cpu_count() cores)."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


if __name__ == "__main__":
    main()
