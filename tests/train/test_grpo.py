"""GRPO: rewards from sandbox verdicts on real SQLite, episodes as trl trains on them, a real short run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tests.conftest import ingest_concert_questions
from tests.rollout.test_rollout import ScriptedBackend
from tests.train.test_checkpoints import stop_after_first_checkpoint
from workflow_scripts.core.artifacts import read_provenance
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.rollout.generation import SamplingConfig, render_prompt
from workflow_scripts.rollout.loop import prepare_examples
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.train.episodes import SandboxRollout, episode_tokens
from workflow_scripts.train.grpo import train_grpo, vllm_args
from workflow_scripts.train.rewards import execution_reward, plain_sql
from workflow_scripts.train.settings import GRPOSettings, LoraSettings, TrainSettings

QUESTIONS = {
    "How many singers are there?": "SELECT count(*) FROM singer",
    "Names of singers from Peru?": "SELECT name FROM singer WHERE country = 'Peru'",
}
# One group of answers per question, one answer per episode: every verdict class, a write and a runaway query.
ANSWERS = {
    "How many singers are there?": [
        "SELECT count(*) FROM singer",  # correct
        "SELECT count(*) FROM concert",  # wrong result
        "SELEC count(*) FROM singer",  # syntax error
        "SELECT count(*) FROM singers",  # no such table
    ],
    "Names of singers from Peru?": [
        "DELETE FROM singer",  # a write: refused
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",  # runaway
        "Sure! ```sql\nSELECT name FROM singer WHERE country = 'Peru'\n```",  # correct, with prose
        "SELECT name FROM singer WHERE country = 'France'",  # wrong result
    ],
}
ARCTIC = [1.0, 0.1, 0.0, 0.0, 0.0, 0.0, 1.0, 0.1]
VERDICTS = ["correct", "wrong_result", "syntax_error", "no_such_table"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return ingest_concert_questions(tmp_path_factory.mktemp("grpo"), QUESTIONS, "g")


@pytest.fixture(scope="module")
def tokenizer(default_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model)


class FakeTrainer:
    """What the rollout function reads of trl's trainer: the step and the (unwrapped) model."""

    def __init__(self) -> None:
        self.state = SimpleNamespace(global_step=0)
        self.model = SimpleNamespace(training=True, eval=lambda: None, train=lambda mode=True: None)
        self.accelerator = SimpleNamespace(unwrap_model=lambda m: m)


def rollout_func(
    data, tokenizer, sandbox, grpo: GRPOSettings, script, settings: RolloutSettings | None = None
) -> tuple[SandboxRollout, list]:
    settings = settings or RolloutSettings(sampling=SamplingConfig(stop=(";",)))
    examples = prepare_examples(data["examples"], data["gold"], data["schema"], settings)
    func = SandboxRollout(
        examples, tokenizer, sandbox, MatchSettings(), settings, grpo, batch_size=4, seed=0,
        make_backend=lambda model: ScriptedBackend(script),
    )  # fmt: skip
    return func, examples


def test_reward_schemes():
    assert execution_reward("arctic", turn=1, max_turns=1, correct=True, executable=True) == 1.0
    assert execution_reward("arctic", turn=2, max_turns=2, correct=True, executable=True) == 0.7
    assert execution_reward("arctic", turn=1, max_turns=1, correct=False, executable=True) == 0.1
    assert execution_reward("arctic", turn=1, max_turns=1, correct=False, executable=False) == 0.0
    assert execution_reward("rule", turn=1, max_turns=2, correct=False, executable=False) == -0.2
    assert execution_reward("rule", turn=2, max_turns=2, correct=False, executable=True) == -0.5
    with pytest.raises(ValueError, match="unknown reward scheme"):
        execution_reward("bleu", turn=1, max_turns=1, correct=True, executable=True)
    assert plain_sql("SELECT a FROM t;") and plain_sql("  SELECT a FROM t\n")
    assert not plain_sql("Here it is: SELECT a FROM t") and not plain_sql("```sql\nSELECT 1\n```")
    assert not plain_sql("no SQL here")


def test_every_verdict_class_gets_its_reward_and_the_database_is_unchanged(data, tokenizer):
    db = Path(data["examples"]["db_path"].iloc[0])
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    script = {q: [answers] for q, answers in ANSWERS.items()}
    with Sandbox(workers=2, timeout_s=1.0) as sandbox:
        func, examples = rollout_func(data, tokenizer, sandbox, GRPOSettings(num_generations=4), script)
        prompts = [ex.prompt for ex in examples for _ in range(4)]
        out = func(prompts, FakeTrainer())
        # the pool goes on serving after the refused write and the runaway query
        assert sandbox.execute(db, "SELECT count(*) FROM singer").rows[0][0] == 20
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert out["episode_reward"] == ARCTIC
    assert out["episode_correct"] == [1.0, 0, 0, 0, 0, 0, 1.0, 0]
    assert len(out["prompt_ids"]) == len(out["completion_ids"]) == len(out["env_mask"]) == 8
    assert all(set(mask) == {1} for mask in out["env_mask"])  # one-shot: every token is the model's
    assert tokenizer.decode(out["completion_ids"][0]) == "SELECT count(*) FROM singer"
    assert [r["sql"] for r in func.rewarded] == [
        "SELECT count(*) FROM singer",
        "SELECT name FROM singer WHERE country = 'Peru'",
    ]
    assert func.generation_seconds and func.reward_seconds[0] > 0


def test_an_eval_runs_answer_and_repair_prompt_do_not_reach_the_episodes(data, tokenizer):
    """GRPO rolls out with eval_base's prompt and feedback keys; its answer (greedy) and repair prompt
    (refocus) would add a greedy candidate to every group and break the one-sequence repair episode."""
    script = {q: [answers] for q, answers in ANSWERS.items()}
    settings = RolloutSettings.from_keys(
        {"answer": "greedy", "repair_prompt": "refocus", "repair_temperature": 0.0, "stop": [";"]}
    )
    assert (settings.answer, settings.repair_prompt, settings.sampling.stop) == ("greedy", "refocus", (";",))
    with Sandbox(workers=2, timeout_s=1.0) as sandbox:
        func, examples = rollout_func(
            data, tokenizer, sandbox, GRPOSettings(num_generations=4), script, settings
        )
        out = func([ex.prompt for ex in examples for _ in range(4)], FakeTrainer())
    assert out["episode_reward"] == ARCTIC  # the four scripted samples of each prompt, no greedy one
    assert (func.rollout.answer, func.rollout.repair_prompt) == ("all", "conversation")


def test_the_format_term_and_the_rule_reward(data, tokenizer):
    script = {q: [answers] for q, answers in ANSWERS.items()}
    with Sandbox(workers=2, timeout_s=1.0) as sandbox:
        grpo = GRPOSettings(num_generations=4, reward="rule", format_weight=0.5)
        func, examples = rollout_func(data, tokenizer, sandbox, grpo, script)
        out = func([ex.prompt for ex in examples for _ in range(4)], FakeTrainer())
    # rule reward at the last allowed turn (one-shot): 1.0 correct, -0.5 wrong; +0.5 for a bare query
    assert out["episode_reward"][:2] == [1.5, 0.0] and out["episode_reward"][6] == 1.0


def test_a_repair_aware_episode_masks_the_feedback(data, tokenizer):
    script = {
        "How many singers are there?": [["SELECT count(*) FROM singers"], ["SELECT count(*) FROM singer"]],
        "Names of singers from Peru?": [["SELECT name FROM singer WHERE country = 'Peru'"]],
    }
    with Sandbox(workers=1, timeout_s=1.0) as sandbox:
        func, examples = rollout_func(
            data, tokenizer, sandbox, GRPOSettings(num_generations=2, max_turns=2), script
        )
        out = func([ex.prompt for ex in examples for _ in range(2)], FakeTrainer())
    assert out["episode_reward"] == [0.7, 0.7, 1.0, 1.0]  # repaired at turn 2: the turn discount
    ids, mask = out["completion_ids"][0], out["env_mask"][0]
    text = tokenizer.decode(ids)
    assert text.startswith("SELECT count(*) FROM singers") and text.endswith("SELECT count(*) FROM singer")
    feedback = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m == 0])
    assert "no such table" in feedback.lower() and "singers" in feedback
    model_tokens = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m == 1])
    assert model_tokens == "SELECT count(*) FROM singersSELECT count(*) FROM singer"
    assert set(out["env_mask"][2]) == {1}  # right at once: no feedback turn


def test_a_template_that_is_not_a_continuation_is_refused(tokenizer):
    prompt = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    first = render_prompt(tokenizer, prompt)
    ids, mask = episode_tokens(tokenizer, prompt, [("SELECT 1", "SELECT 1", None)])
    assert mask == [1] * len(ids) and first.endswith("assistant\n")

    class Reversed:  # a template that renders later turns before the first prompt
        eos_token_id = tokenizer.eos_token_id

        def __call__(self, text, add_special_tokens=False):
            return tokenizer(text, add_special_tokens=add_special_tokens)

        def apply_chat_template(self, messages, **kw):
            return tokenizer.apply_chat_template(list(reversed(messages)), **kw)

    with pytest.raises(UserError, match="max_turns: 1"):
        episode_tokens(Reversed(), prompt, [("SELECT 1", "SELECT 1", "error")])


def test_bad_settings_are_named():
    with pytest.raises(UserError, match="num_generations=1"):
        GRPOSettings(num_generations=1)
    with pytest.raises(UserError, match="max_turns=3"):
        GRPOSettings(max_turns=3)
    with pytest.raises(UserError, match="reward='bleu'"):
        GRPOSettings(reward="bleu")
    with pytest.raises(UserError, match="micro_batch_size=3 must divide the 8 episodes"):
        GRPOSettings(num_generations=4, prompts_per_step=2, micro_batch_size=3)
    with pytest.raises(UserError, match="vllm_gpu_memory_utilization=1.5"):
        GRPOSettings(vllm_gpu_memory_utilization=1.5)


def test_vllm_generation_is_trls_colocated_engine_without_importance_correction():
    import torch

    assert vllm_args(GRPOSettings()) == {"use_vllm": False}
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="use_vllm needs a CUDA GPU"):
            vllm_args(GRPOSettings(use_vllm=True))
        return
    on = vllm_args(GRPOSettings(use_vllm=True, vllm_gpu_memory_utilization=0.4))
    assert on["use_vllm"] and on["vllm_mode"] == "colocate" and on["vllm_gpu_memory_utilization"] == 0.4
    # the rollout returns no sampling log-probs: trl must not correct with them
    assert on["vllm_importance_sampling_correction"] is False
    from trl import GRPOConfig

    assert set(on) <= {f for f in GRPOConfig.__dataclass_fields__}  # trl 1.16 knows every argument


@pytest.mark.slow
def test_a_short_real_run_changes_the_adapter(data, default_model, tmp_path):
    """Two GRPO steps of the default model on real prompts: the saved LoRA weights leave their zero init."""
    from safetensors.torch import load_file

    settings = RolloutSettings(sampling=SamplingConfig(stop=(";",)))
    examples = prepare_examples(data["examples"], data["gold"], data["schema"], settings)
    grpo = GRPOSettings(
        num_generations=4,
        prompts_per_step=1,
        micro_batch_size=2,  # two accumulated micro-batches, still one optimizer step per generation
        max_new_tokens=24,
        temperature=1.0,
        reward="rule",
        format_weight=0.5,
    )
    out = tmp_path / "grpo"
    metrics = train_grpo(
        default_model, examples, out, LoraSettings(r=4, alpha=8),
        TrainSettings(max_steps=2, learning_rate=1e-3), grpo,
        rollout=settings, sandbox={"workers": 1, "timeout_s": 2.0}, match=MatchSettings(),
    )  # fmt: skip
    assert metrics["steps"] == 2 and len(metrics["step_split"]) == 2
    assert all(s["generation_s"] > 0 and s["reward_s"] > 0 for s in metrics["step_split"])
    assert {"reward", "rewards/correct/mean"} <= set(metrics["log"][0])
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and any(float(w.abs().max()) > 0 for w in lora_b)
    rewarded = pd.read_parquet(out / "rewarded.parquet")
    assert "source_sha256" in read_provenance(out / "rewarded.parquet")  # as every artifact
    assert list(rewarded.columns) == ["step", "example_id", "sample", "turns", "sql"]
    assert json.loads((out / "metrics.json").read_text())["grpo"]["num_generations"] == 4


@pytest.mark.slow
def test_a_stopped_run_resumes_to_the_uninterrupted_adapter_and_rewarded_sql(
    data, default_model, tmp_path, monkeypatch
):
    """GRPO with a checkpoint every step, stopped after step 1 of 2 and run again, ends as an uninterrupted
    run: the same adapter weights and the same rewarded SQL (step 1's comes from the checkpoint)."""
    import torch
    from safetensors.torch import load_file

    import workflow_scripts.train.checkpoints as checkpoints

    settings = RolloutSettings(sampling=SamplingConfig(stop=(";",)))
    examples = prepare_examples(data["examples"], data["gold"], data["schema"], settings)
    grpo = GRPOSettings(
        num_generations=2, prompts_per_step=2, max_new_tokens=16, temperature=1.0, reward="rule"
    )
    train = TrainSettings(max_steps=2, learning_rate=1e-3, gradient_checkpointing=False, checkpoint_steps=1)

    def run(out: Path) -> dict:
        return train_grpo(
            default_model, examples, out, LoraSettings(r=4, alpha=8), train, grpo,
            rollout=settings, sandbox={"workers": 1, "timeout_s": 2.0}, match=MatchSettings(),
        )  # fmt: skip

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run(whole)
    stop_after_first_checkpoint(run, resumed, monkeypatch)
    assert not resumed.exists() and checkpoints.complete_checkpoints(checkpoints.checkpoint_dir(resumed))
    metrics = run(resumed)
    assert metrics["resumed_from_step"] == 1 and [s["step"] for s in metrics["step_split"]] == [2]
    a, b = (load_file(p / "adapter_model.safetensors") for p in (whole, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(
        pd.read_parquet(whole / "rewarded.parquet"), pd.read_parquet(resumed / "rewarded.parquet")
    )
    assert not checkpoints.checkpoint_dir(resumed).exists()
