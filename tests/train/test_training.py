"""LoRA SFT and DPO training: SFT data, settings, the margin-aware loss, input checks and real short runs.

The slow tests train the real default model for one or two steps of batch 2 on tiny demo-like prompts,
at a high learning rate so that the adapter moves measurably.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from workflow_scripts.cli import run_cli
from workflow_scripts.core.errors import UserError
from workflow_scripts.rollout.prompts import first_prompt, repair_prompt
from workflow_scripts.train.data import sft_examples
from workflow_scripts.train.dpo import train_dpo
from workflow_scripts.train.losses import margin_dpo_loss, offset_reference
from workflow_scripts.train.settings import LoraSettings, TrainSettings, settings_from_dict
from workflow_scripts.train.sft import train_sft

SCHEMA = "CREATE TABLE singer (\n  singer_id INTEGER,\n  name TEXT,\n  country TEXT,\n  age INTEGER\n);"
# (question, gold SQL, a wrong SQL)
DEMO = [
    ("How many singers are there?", "SELECT count(*) FROM singer", "SELECT name FROM singer"),
    (
        "List the names of singers from France.",
        "SELECT name FROM singer WHERE country = 'France'",
        "SELECT name FROM singer",
    ),
    ("What is the average age of singers?", "SELECT avg(age) FROM singer", "SELECT max(age) FROM singer"),
    (
        "Who is the oldest singer?",
        "SELECT name FROM singer ORDER BY age DESC LIMIT 1",
        "SELECT name FROM singer",
    ),
]
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors", "metrics.json"}


def prompt_of(question: str) -> list[dict[str, str]]:
    return first_prompt(SCHEMA, question)


# --------------------------------------------------------------------------------------- sft_examples


def trajectory_row(
    example_id: str, turn: int, prompt: list, sql: str, correct: bool, feedback: str | None = None
) -> dict:
    return {
        "example_id": example_id,
        "turn": turn,
        "prompt": json.dumps(prompt),
        "sql": sql,
        "correct": correct,
        "feedback": feedback,
    }


@pytest.fixture
def trajectories() -> pd.DataFrame:
    p1, p2 = prompt_of("q1"), prompt_of("q2")
    r2 = repair_prompt(p2, "SELECT x FROM singer", "Error: no such column: x")
    return pd.DataFrame([
        trajectory_row("e1", 1, p1, "SELECT count(*) FROM singer", True),
        trajectory_row("e1", 1, p1, "SELECT count(*) FROM singer", True),  # a second sample, same SQL
        trajectory_row("e1", 1, p1, "SELECT name FROM singer", False),
        trajectory_row("e2", 1, p2, "SELECT x FROM singer", False, "Error: no such column: x"),
        trajectory_row("e2", 2, r2, "SELECT name FROM singer", True),  # a correct repair
        # the turn limit: its feedback is what a further repair prompt would show
        trajectory_row("e2", 2, r2, "SELECT age FROM singer", False, "The query returned no rows."),
    ])  # fmt: skip


@pytest.fixture
def examples() -> pd.DataFrame:
    gold = ["SELECT count(*) FROM singer", "SELECT name FROM singer", "SELECT 1"]
    return pd.DataFrame({"id": ["e1", "e2", "e3"], "gold_sql": gold})


def as_tuples(df: pd.DataFrame) -> list[tuple]:
    return [
        (r.example_id, r.source, r.prompt[-1]["content"].split("Question: ")[1], r.completion[0]["content"])
        for r in df.itertuples()
    ]


def test_sft_examples_correct_only(trajectories, examples):
    df = sft_examples([trajectories], examples, include_gold=False, include_correct=True)
    assert list(df.columns) == ["example_id", "source", "prompt", "completion"]
    # The repair candidate is taught under the FIRST-turn prompt of its example; duplicates are kept once.
    assert as_tuples(df) == [
        ("e1", "model", "q1\nSQL:", "SELECT count(*) FROM singer"),
        ("e2", "model", "q2\nSQL:", "SELECT name FROM singer"),
    ]
    assert df["prompt"][1] == prompt_of("q2")
    assert df["completion"][0] == [{"role": "assistant", "content": "SELECT count(*) FROM singer"}]


def test_sft_examples_with_gold_dedups_and_skips_examples_without_prompt(trajectories, examples):
    df = sft_examples([trajectories], examples, include_gold=True, include_correct=True)
    # e1's gold equals its correct sample (kept once, as gold); e2's gold equals the repaired SQL; e3 was
    # never rolled out, so it has no prompt.
    assert as_tuples(df) == [
        ("e1", "gold", "q1\nSQL:", "SELECT count(*) FROM singer"),
        ("e2", "gold", "q2\nSQL:", "SELECT name FROM singer"),
    ]
    gold_only = sft_examples([trajectories], examples, include_gold=True, include_correct=False)
    assert as_tuples(gold_only) == as_tuples(df)
    examples = examples.assign(gold_sql=["SELECT COUNT(*) FROM singer", "SELECT name FROM singer", "x"])
    both = sft_examples([trajectories], examples, include_gold=True, include_correct=True)
    assert [t[1] for t in as_tuples(both)] == ["gold", "model", "gold"]


def test_sft_examples_is_deterministic_and_merges_runs(trajectories, examples):
    shuffled = trajectories.sample(frac=1.0, random_state=3)
    a = sft_examples([trajectories], examples, include_gold=True, include_correct=True)
    b = sft_examples([shuffled], examples, include_gold=True, include_correct=True)
    assert as_tuples(a) == as_tuples(b)
    # A second run with another first-turn prompt for e1 adds gold under that prompt too.
    other = pd.DataFrame([trajectory_row("e1", 1, prompt_of("q1 again"), "SELECT 2", False)])
    merged = sft_examples(
        [trajectories, other, trajectories], examples, include_gold=True, include_correct=True
    )
    assert len(merged) == len(a) + 1
    assert sft_examples([trajectories], examples, include_gold=False, include_correct=False).empty


def test_sft_examples_with_repair_teaches_gold_under_each_repair_prompt(trajectories, examples):
    df = sft_examples([trajectories], examples, include_gold=True, include_correct=True, include_repair=True)
    repair = df[df["source"] == "repair"]
    # e2's two candidates with feedback: the repaired one (its repair prompt is r2, the prompt of the next
    # turn) and the one at the turn limit (a repair prompt no turn used); both built from the FIRST prompt
    assert repair["example_id"].tolist() == ["e2", "e2"]
    prompts = repair["prompt"].tolist()

    def after_q2(failed: str, feedback: str) -> list[dict[str, str]]:
        return prompt_of("q2") + [
            {"role": "assistant", "content": failed},
            {"role": "user", "content": feedback},
        ]

    assert after_q2("SELECT x FROM singer", "Error: no such column: x") in prompts
    assert json.loads(trajectories["prompt"].iloc[4]) in prompts  # the rollout's own repair prompt, r2
    assert after_q2("SELECT age FROM singer", "The query returned no rows.") in prompts
    gold = [{"role": "assistant", "content": "SELECT name FROM singer"}]
    assert all(c == gold for c in repair["completion"])
    # the first-turn rows are those without include_repair, and repair rows need no include_gold
    without = sft_examples([trajectories], examples, include_gold=True, include_correct=True)
    assert as_tuples(df[df["source"] != "repair"]) == as_tuples(without)
    alone = sft_examples(
        [trajectories], examples, include_gold=False, include_correct=False, include_repair=True
    )
    assert alone["source"].tolist() == ["repair", "repair"]


def test_sft_examples_names_missing_columns(trajectories, examples):
    with pytest.raises(UserError, match="trajectories #1 lack the column"):
        sft_examples(
            [trajectories.drop(columns=["correct"])], examples, include_gold=True, include_correct=True
        )


# ------------------------------------------------------------------------------------------- settings


def test_settings_flat_and_nested():
    lora, train = settings_from_dict({"max_steps": 5, "r": 8, "target_modules": ["q_proj", "v_proj"]})
    assert lora == LoraSettings(r=8, target_modules=("q_proj", "v_proj"))
    assert train.max_steps == 5 and train.lr("sft") == 2e-4 and train.lr("dpo") == 5e-6
    nested, _ = settings_from_dict({"lora": {"r": 8, "target_modules": ["q_proj", "v_proj"]}})
    assert nested == lora
    assert settings_from_dict({}) == (LoraSettings(), TrainSettings())


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"max_step": 3}, "unknown keys max_step"),
        ({"r": 4, "lora": {"r": 8}}, "r given both"),
        ({"max_steps": 0}, "max_steps=0"),
        ({"precision": "fp16"}, "precision='fp16'"),
        ({"lora": {"r": 0}}, "r=0"),
        ({"margin_aware": True, "loss_type": "ipo"}, "margin_aware with loss_type='ipo'"),
        ({"margin_aware": True, "precompute_ref": False}, "precompute_ref=false"),
    ],
)
def test_settings_errors(cfg, message):
    with pytest.raises(UserError, match=message):
        settings_from_dict(cfg)


# ---------------------------------------------------------------------------------------- margin loss


def test_margin_dpo_loss_grows_with_the_margin():
    import torch
    import torch.nn.functional as F

    chosen, rejected = torch.tensor([-10.0, -12.0]), torch.tensor([-14.0, -11.0])
    ref_chosen, ref_rejected = torch.tensor([-11.0, -12.5]), torch.tensor([-13.0, -11.5])
    loss = [
        margin_dpo_loss(
            chosen, rejected, ref_chosen, ref_rejected, torch.full((2,), m), beta=0.1, margin_scale=1.0
        )
        for m in (0.0, 0.5, 1.5)
    ]
    assert torch.all(loss[0] < loss[1]) and torch.all(loss[1] < loss[2])
    # Margin 0 (or scale 0) is plain sigmoid DPO.
    delta = (chosen - ref_chosen) - (rejected - ref_rejected)
    assert torch.allclose(loss[0], -F.logsigmoid(0.1 * delta))
    scaled = margin_dpo_loss(
        chosen, rejected, ref_chosen, ref_rejected, torch.full((2,), 1.5), beta=0.1, margin_scale=0.0
    )
    assert torch.allclose(scaled, loss[0])


def test_offset_reference_turns_the_dpo_loss_into_the_margin_loss():
    import torch
    import torch.nn.functional as F

    chosen, rejected = torch.tensor([-10.0, -12.0]), torch.tensor([-14.0, -11.0])
    ref_chosen, ref_rejected = torch.tensor([-11.0, -12.5]), torch.tensor([-13.0, -11.5])
    margins, beta, scale = torch.tensor([1.2, 0.3]), 0.2, 0.7
    shifted = offset_reference(ref_chosen, margins, beta=beta, margin_scale=scale)
    # trl's sigmoid loss, fed the shifted reference.
    trl_loss = -F.logsigmoid(beta * ((chosen - shifted) - (rejected - ref_rejected)))
    expected = margin_dpo_loss(
        chosen, rejected, ref_chosen, ref_rejected, margins, beta=beta, margin_scale=scale
    )
    assert torch.allclose(trl_loss, expected)


# ------------------------------------------------------------------------------------------ input checks


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    """A directory that passes the cheap model check (config.json), for checks that run before loading."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return model


def pairs_frame(margin: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame({
        "prompt": [prompt_of(q) for q, _, _ in DEMO],
        "chosen": [[{"role": "assistant", "content": g}] for _, g, _ in DEMO],
        "rejected": [[{"role": "assistant", "content": b}] for _, _, b in DEMO],
        "margin": [margin] * len(DEMO),
    })  # fmt: skip


def sft_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "prompt": [prompt_of(q) for q, _, _ in DEMO],
        "completion": [[{"role": "assistant", "content": g}] for _, g, _ in DEMO],
    })  # fmt: skip


def test_flat_and_trl_pair_files_give_the_same_training_rows(tmp_path):
    from workflow_scripts.pairs.mining import to_trl
    from workflow_scripts.train.data import pair_dataset

    flat = pd.DataFrame({
        "pair_id": ["a", "b"], "type": ["t", "t"], "origin": ["natural"] * 2, "edit_ratio": [0.5, 0.2],
        "prompt": [json.dumps(prompt_of(q)) for q, _, _ in DEMO[:2]],
        "chosen": [g for _, g, _ in DEMO[:2]], "rejected": [b for _, _, b in DEMO[:2]], "margin": [1.2, 0.4],
    })  # fmt: skip
    path = tmp_path / "train.parquet"
    to_trl(flat).to_parquet(path)  # as the pairs stage writes it; lists come back as numpy arrays
    from_trl = pair_dataset(pd.read_parquet(path), with_margin=True)
    from_flat = pair_dataset(flat, with_margin=True)
    assert from_trl.to_list() == from_flat.to_list()
    assert from_flat[0]["chosen"] == [{"role": "assistant", "content": DEMO[0][1]}]
    assert from_flat[0]["prompt"] == prompt_of(DEMO[0][0]) and from_flat["margin"] == [1.2, 0.4]
    with pytest.raises(UserError, match="1 pair.*no finite `margin`"):
        pair_dataset(flat.assign(margin=[1.0, None]), with_margin=True)


def dpo(model: Path, pairs: pd.DataFrame, out: Path, settings: TrainSettings | None = None, **kw) -> dict:
    return train_dpo(model, pairs, out, LoraSettings(), settings or TrainSettings(), **kw)


def sft(model: Path, data: pd.DataFrame, out: Path) -> dict:
    return train_sft(model, data, out, LoraSettings(), TrainSettings())


def test_empty_pairs_raise(fake_model, tmp_path):
    with pytest.raises(UserError, match="an empty pair set for training"):
        dpo(fake_model, pairs_frame().iloc[:0], tmp_path / "out")
    with pytest.raises(UserError, match="an empty example set for training"):
        sft(fake_model, sft_frame().iloc[:0], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_input_errors_name_the_input(fake_model, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UserError, match="preference pairs lack the column.*rejected"):
        dpo(fake_model, pairs_frame().drop(columns="rejected"), out)
    with pytest.raises(UserError, match="preference pairs lack the column.*margin"):
        dpo(fake_model, pairs_frame().drop(columns="margin"), out, TrainSettings(margin_aware=True))
    with pytest.raises(UserError, match="SFT examples lack the column.*completion"):
        sft(fake_model, sft_frame().drop(columns="completion"), out)
    with pytest.raises(UserError, match="not a directory"):
        sft(tmp_path / "nothing", sft_frame(), out)
    with pytest.raises(UserError, match="no config.json"):
        dpo(tmp_path, pairs_frame(), out)
    not_adapter = tmp_path / "not_adapter"
    not_adapter.mkdir()
    with pytest.raises(UserError, match="not a PEFT adapter"):
        dpo(fake_model, pairs_frame(), out, init_adapter=not_adapter)


def test_an_init_adapter_for_another_model_is_refused_before_training(default_model, tmp_path):
    import torch
    from safetensors.torch import save_file

    adapter = tmp_path / "other_adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    tensors = {
        f"{prefix}.lora_A.weight": torch.zeros(2, 1024),
        f"{prefix}.lora_B.weight": torch.zeros(1024, 2),
    }
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(UserError, match="does not fit the model"):
        dpo(default_model, pairs_frame(), tmp_path / "out", init_adapter=adapter)
    assert not (tmp_path / "out").exists()


def test_stage_reports_an_empty_pair_set(fake_model, tmp_path, capsys):
    from workflow_scripts.cli.train import main

    pairs = tmp_path / "train.parquet"
    pairs_frame().iloc[:0].to_parquet(pairs)
    argv = [
        "dpo",
        "--model",
        str(fake_model),
        "--pairs",
        str(pairs),
        "--settings",
        "{}",
        "--out",
        str(tmp_path / "a"),
    ]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(argv))
    assert exit_info.value.code == 2
    assert "an empty pair set for training" in capsys.readouterr().err


# -------------------------------------------------------------------------------------- real model runs

FAST = {"per_device_batch_size": 2, "max_length": 256, "learning_rate": 1e-3, "logging_steps": 1}


def lora_b_weights(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(adapter / "adapter_model.safetensors").items() if "lora_B" in k}


def assert_single_adapter(adapter: Path) -> None:
    """The directory holds exactly one PEFT adapter (no trl `ref/` copy) whose LoRA B weights moved."""
    assert {p.name for p in adapter.iterdir()} == ADAPTER_FILES
    b = lora_b_weights(adapter)
    assert b and all(".ref." not in k for k in b)
    assert any(float(w.abs().max()) > 0 for w in b.values())
    assert not list(adapter.parent.glob(f".{adapter.name}.*"))  # no staging directory left behind


@pytest.fixture(scope="module")
def sft_run(default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sft") / "adapter"
    metrics = train_sft(default_model, sft_frame(), out, LoraSettings(), TrainSettings(max_steps=2, **FAST))
    return out, metrics


@pytest.fixture(scope="module")
def base_backend(default_model: Path):
    from workflow_scripts.rollout.generation import TransformersBackend

    return TransformersBackend(default_model, batch_size=1, threads=2)


def next_token_logits(backend, question: str):
    import torch

    from workflow_scripts.rollout.generation import encode_prompt

    ids = torch.tensor([encode_prompt(backend.tokenizer, prompt_of(question))])
    with torch.inference_mode():
        return backend.model(input_ids=ids).logits[0, -1]


@pytest.mark.slow
def test_sft_saves_an_adapter_that_the_backend_loads(sft_run, default_model, base_backend):
    from workflow_scripts.rollout.generation import SamplingConfig, TransformersBackend

    adapter, metrics = sft_run
    assert_single_adapter(adapter)
    assert metrics["steps"] == 2 and len(metrics["log"]) == 2 and len(metrics["step_seconds"]) == 2
    losses = [entry["loss"] for entry in metrics["log"]]
    assert all(math.isfinite(x) for x in losses) and losses[1] < losses[0]
    assert metrics["peak_rss_mib"] > 0 and metrics["examples"] == len(DEMO)
    # LoRA A and B only: 30 layers, r=16, q/o map 576 -> 576, k/v 576 -> 192.
    assert metrics["trainable_params"] == 30 * 16 * (2 * (576 + 576) + 2 * (576 + 192))
    assert json.loads((adapter / "metrics.json").read_text())["steps"] == 2

    tuned = TransformersBackend(default_model, adapter_path=adapter, batch_size=1, threads=2)
    question = DEMO[0][0]
    diff = (next_token_logits(tuned, question) - next_token_logits(base_backend, question)).abs().max()
    assert float(diff) > 1e-3
    sampling = SamplingConfig(max_new_tokens=12)
    assert tuned.generate([prompt_of(question)], sampling)[0][0].completion_tokens > 0


@pytest.mark.slow
def test_dpo_trains_against_the_base_model(default_model, tmp_path):
    out = tmp_path / "dpo"
    metrics = train_dpo(default_model, pairs_frame(), out, LoraSettings(), TrainSettings(max_steps=2, **FAST))
    assert_single_adapter(out)
    first, second = metrics["log"]
    # A new adapter starts as the base model, which is the reference: the first loss is exactly log 2.
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-4)
    assert math.isfinite(second["loss"]) and second["loss"] < first["loss"]
    assert metrics["pairs"] == metrics["pairs_used"] == len(DEMO)
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(out)).r == 16


@pytest.mark.slow
def test_sft_then_margin_dpo_saves_one_adapter_on_the_base_model(sft_run, default_model, tmp_path):
    from safetensors.torch import load_file

    from workflow_scripts.rollout.generation import TransformersBackend

    sft_adapter, _ = sft_run
    out = tmp_path / "sft_dpo"
    settings = TrainSettings(max_steps=1, margin_aware=True, margin_scale=1.0, **FAST)
    # A different LoRA shape is ignored: DPO continues the SFT adapter as it is.
    metrics = train_dpo(
        default_model, pairs_frame(margin=1.0), out, LoraSettings(r=4), settings, init_adapter=sft_adapter
    )
    assert_single_adapter(out)
    assert not (out / "ref").exists()
    assert metrics["lora"]["r"] == 16 and metrics["init_adapter"] == str(sft_adapter)
    assert metrics["trainable_params"] == 30 * 16 * (
        2 * (576 + 576) + 2 * (576 + 192)
    )  # not trl's `ref` copy
    # The reference is the SFT policy, equal to the policy at step 1, so the only loss left is the target
    # margin's: -log sigmoid(-1) = softplus(1).
    (first,) = metrics["log"]
    assert first["loss"] == pytest.approx(math.log1p(math.e), abs=1e-4)
    assert first["rewards/margins"] == pytest.approx(-1.0, abs=1e-4)
    before, after = (
        load_file(sft_adapter / "adapter_model.safetensors"),
        load_file(out / "adapter_model.safetensors"),
    )
    assert before.keys() == after.keys()
    assert any(float((after[k] - before[k]).abs().max()) > 0 for k in before)
    TransformersBackend(default_model, adapter_path=out, batch_size=1, threads=2)  # loads on the base model


def test_completion_only_lm_head_gives_the_same_log_probs():
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from workflow_scripts.train.common import completion_only_lm_head

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    model = LlamaForCausalLM(config).eval()
    add_fused_lm_head(model)
    ids = torch.randint(0, 300, (2, 12))
    labels = ids.masked_fill(torch.arange(12) < 8, -100)  # only the last 4 tokens are the completion
    every = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
    cpu = torch.device("cpu")
    with completion_only_lm_head():
        assert trl_utils._use_triton(cpu)  # trl takes the completion-only path
        compact = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
    assert not trl_utils._use_triton(cpu)  # restored
    assert torch.allclose(every, compact, atol=1e-5)
    assert int((compact != 0).sum()) == 2 * 4  # labels are shifted: positions 7..10 score tokens 8..11
