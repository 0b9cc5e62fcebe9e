"""Report section on training: every adapter's run, and the GRPO curves (reward, correct, KL, length)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from workflow_scripts.report.html import figure_html, section, table_html

# The per-step GRPO metrics drawn, as trl logs them.
CURVES = {
    "reward": "mean reward",
    "rewards/correct/mean": "share correct",
    "kl": "KL to the reference",
    "completions/mean_length": "completion tokens",
}


def read_metrics(adapter_dirs: dict[str, Path]) -> dict[str, dict]:
    """The metrics.json of each adapter that has one."""
    return {
        name: json.loads((d / "metrics.json").read_text())
        for name, d in adapter_dirs.items()
        if (d / "metrics.json").is_file()
    }


def runs_table(metrics: dict[str, dict]) -> pd.DataFrame:
    """One row per adapter: method, steps, examples, seconds per step, final loss and peak memory."""
    rows = []
    for name, m in metrics.items():
        last = m["log"][-1] if m.get("log") else {}
        rows.append(
            {
                "adapter": name,
                "method": m.get("method"),
                "steps": m.get("steps"),
                "examples": m.get("examples"),
                "s/step": m.get("seconds_per_step"),
                "final loss": last.get("loss"),
                "final reward": last.get("reward"),
                "peak RSS (MiB)": m.get("peak_rss_mib"),
            }
        )
    return pd.DataFrame(rows)


def step_split_table(metrics: dict[str, dict]) -> pd.DataFrame:
    """Per GRPO adapter: the mean seconds of a step in generation, reward (sandbox) and optimisation."""
    rows = []
    for name, m in metrics.items():
        split = pd.DataFrame(m.get("step_split") or [])
        if split.empty:
            continue
        means = split[["generation_s", "reward_s", "optimisation_s"]].mean()
        total = float(means.sum()) or 1.0
        rows.append(
            {
                "adapter": name,
                **{k: round(float(v), 2) for k, v in means.items()},
                "reward share": f"{means['reward_s'] / total:.1%}",
            }
        )
    return pd.DataFrame(rows)


def grpo_figure(metrics: dict[str, dict]) -> plt.Figure:
    """The GRPO curves per step, one line per adapter, one panel per metric."""
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
    for ax, (key, label) in zip(axes, CURVES.items(), strict=True):
        for name, m in metrics.items():
            log = pd.DataFrame(m["log"])
            if key in log:
                ax.plot(log["step"], log[key], marker="o", label=name)
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels))
    fig.tight_layout()
    return fig


def training_section(adapter_dirs: dict[str, Path]) -> str:
    """Every adapter's training run and, for GRPO, its curves and where a step's time goes."""
    metrics = read_metrics(adapter_dirs)
    if not metrics:
        return section("training", "Training", "<p>No adapter has been trained.</p>")
    body = [table_html(runs_table(metrics), text_columns=("adapter", "method"))]
    grpo = {n: m for n, m in metrics.items() if m.get("method") == "grpo"}
    if grpo:
        body += [
            "<h3>GRPO</h3>",
            "<p>Online RL rewarded by the sandbox: each step rolls out prompts_per_step × num_generations "
            "episodes with the policy being trained, executes every answer in the sandbox's worker processes "
            'and scores the final one (README, "GRPO"). Share correct is the share of episodes whose final '
            "answer matches gold; KL is logged only when beta > 0.</p>",
            figure_html(grpo_figure(grpo), "GRPO training curves"),
            "<p>Mean seconds of a step: generation (the policy writing SQL), reward (sandbox execution and "
            "verdicts) and optimisation (the rest of the step).</p>",
            table_html(step_split_table(grpo), text_columns=("adapter", "reward share")),
        ]
    return section("training", "Training", "\n".join(body))
