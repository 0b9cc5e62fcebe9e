"""Report section on training: every adapter's run, its loss per step, and the GRPO curves (reward, ...)."""

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


def loss_figure(metrics: dict[str, dict]) -> plt.Figure | None:
    """Training loss per logged step, one line per adapter and one panel per method (SFT's cross-entropy and
    DPO's sigmoid loss are on different scales); GRPO's loss is a policy-gradient surrogate, left out (its
    reward is drawn instead). None when no adapter logged a loss."""
    logs = {
        name: (m.get("method"), pd.DataFrame(m.get("log") or []))
        for name, m in metrics.items()
        if m.get("method") != "grpo"
    }
    logs = {n: (method, log) for n, (method, log) in logs.items() if "loss" in log and len(log)}
    methods = list(dict.fromkeys(method for method, _ in logs.values()))
    if not methods:
        return None
    fig, axes = plt.subplots(1, len(methods), figsize=(4.6 * len(methods), 3.0), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        for name, (m, log) in logs.items():
            if m == method:
                ax.plot(
                    log["step"], log["loss"], marker="o", markersize=3, label=f"{name} ({len(log)} steps)"
                )
        ax.set_title(f"{method} loss", fontsize=9)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(frameon=False, fontsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].set_ylabel("training loss")
    fig.tight_layout()
    return fig


def drawn_curves(metrics: dict[str, dict]) -> dict[str, str]:
    """The GRPO curves that some adapter logged (trl logs no KL when beta = 0): no empty panels."""
    logged = {key for m in metrics.values() for entry in m.get("log") or [] for key in entry}
    return {key: label for key, label in CURVES.items() if key in logged}


def grpo_figure(metrics: dict[str, dict]) -> plt.Figure:
    """The logged GRPO curves per step, one line per adapter, one panel per metric."""
    curves = drawn_curves(metrics)
    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.0), squeeze=False)
    for ax, (key, label) in zip(axes[0], curves.items(), strict=True):
        for name, m in metrics.items():
            log = pd.DataFrame(m["log"])
            if key in log:
                ax.plot(log["step"], log[key], marker="o", label=name)
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels))
    fig.tight_layout()
    return fig


def missing_curves_note(metrics: dict[str, dict]) -> str:
    """Why a GRPO curve is not drawn: KL needs beta > 0; any other curve was simply not logged."""
    missing = [key for key in CURVES if key not in drawn_curves(metrics)]
    betas = {(m.get("grpo") or {}).get("beta") for m in metrics.values()}
    notes = []
    for key in missing:
        if key == "kl" and betas == {0.0}:
            notes.append(
                "No KL panel: beta = 0, so the GRPO loss has no KL term and no reference model, and trl logs "
                "no KL to the reference."
            )
        else:
            notes.append(f"No {CURVES[key]} panel: no GRPO adapter logged {key}.")
    return " ".join(notes)


def training_section(adapter_dirs: dict[str, Path]) -> str:
    """Every adapter's training run, its loss curve and, for GRPO, its curves and where a step's time goes."""
    metrics = read_metrics(adapter_dirs)
    if not metrics:
        return section("training", "Training", "<p>No adapter has been trained.</p>")
    body = [table_html(runs_table(metrics), text_columns=("adapter", "method"))]
    losses = loss_figure(metrics)
    if losses is not None:
        body += [
            "<h3>Training loss</h3>",
            figure_html(losses, "training loss per step"),
            '<p class="note">The loss at every logged step of each adapter (metrics.json). With a few steps '
            "on a few examples a curve shows whether the loss moved, not that the model converged.</p>",
        ]
    grpo = {n: m for n, m in metrics.items() if m.get("method") == "grpo"}
    if grpo:
        body += [
            "<h3>GRPO</h3>",
            "<p>Online RL rewarded by the sandbox: each step rolls out prompts_per_step × num_generations "
            "episodes with the policy being trained, executes every answer in the sandbox's worker processes "
            'and scores the final one (README, "GRPO"). Share correct is the share of episodes whose final '
            "answer matches gold.</p>",
        ]
        if drawn_curves(grpo):
            body.append(figure_html(grpo_figure(grpo), "GRPO training curves"))
        if note := missing_curves_note(grpo):
            body.append(f'<p class="note">{note}</p>')
        body += [
            "<p>Mean seconds of a step: generation (the policy writing SQL), reward (sandbox execution and "
            "verdicts) and optimisation (the rest of the step).</p>",
            table_html(step_split_table(grpo), text_columns=("adapter", "reward share")),
        ]
    return section("training", "Training", "\n".join(body))
