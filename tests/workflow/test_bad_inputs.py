"""Expected mistakes across the stages, run as a user runs them (the stage commands and Snakemake).

Each fails fast with exit status 2 (1 for Snakemake), one message that names the input and the fix, no
traceback, and no output left behind for Snakemake to trust.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO
from tests.workflow import touched

WORKFLOW_FILES = ["Snakefile", "rules", "schemas", "workflow_scripts", "config.yaml", "config", "envs"]


def run_module(module: str, *args: str | Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)


def run_ingest(spec: dict, out: Path) -> subprocess.CompletedProcess:
    """The ingest stage's command on one data set entry of config.yaml."""
    return run_module(
        "workflow_scripts.cli.data",
        "ingest",
        "--name",
        "bad",
        "--dataset",
        json.dumps(spec),
        "--out-dir",
        out,
    )


def assert_clean_failure(done: subprocess.CompletedProcess, names: str, outputs: list[Path]) -> str:
    """One `error:` line naming `names` and the fix, exit status 2, no traceback, no output left."""
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    assert names in errors[0] and "Fix:" in errors[0], errors[0]
    for path in outputs:
        leftovers = list(path.iterdir()) if path.is_dir() else []
        assert not path.exists() or not leftovers, f"{path} was left behind: {leftovers}"
    return errors[0]


# --- data sets (ingest stage) ---------------------------------------------------------------------------


def _dataset_file(tmp: Path, demo: Path, make: Callable[[Path, list[dict]], Path]) -> Path:
    records = json.loads((demo / "dev.json").read_text())[:5]
    return make(tmp, records)


def _missing(tmp: Path, records: list[dict]) -> Path:
    return tmp / "nowhere.json"


def _empty(tmp: Path, records: list[dict]) -> Path:
    (tmp / "empty.json").write_text("[]")
    return tmp / "empty.json"


def _malformed_json(tmp: Path, records: list[dict]) -> Path:
    (tmp / "broken.json").write_text(json.dumps(records)[:-40])
    return tmp / "broken.json"


def _malformed_jsonl(tmp: Path, records: list[dict]) -> Path:
    lines = [json.dumps(r) for r in records]
    lines[2] = lines[2][:-5]
    (tmp / "broken.jsonl").write_text("\n".join(lines) + "\n")
    return tmp / "broken.jsonl"


def _unknown_db(tmp: Path, records: list[dict]) -> Path:
    records[1]["db_id"] = "no_such_db"
    (tmp / "unknown.json").write_text(json.dumps(records))
    return tmp / "unknown.json"


def _no_question(tmp: Path, records: list[dict]) -> Path:
    del records[3]["question"]
    (tmp / "noquestion.json").write_text(json.dumps(records))
    return tmp / "noquestion.json"


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (_missing, "nowhere.json"),
        (_empty, "empty.json"),
        (_malformed_json, "broken.json"),
        (_malformed_jsonl, "broken.jsonl: malformed JSON on line 3"),
        (_unknown_db, "no_such_db"),
        (_no_question, "noquestion.json"),
    ],
    ids=["missing-file", "empty", "malformed-json", "malformed-jsonl-line", "unknown-db-id", "missing-field"],
)
def test_bad_data_sets(tmp_path: Path, demo_dir: Path, make: Callable, names: str) -> None:
    path = _dataset_file(tmp_path, demo_dir, make)
    out = tmp_path / "out"
    spec = {"path": str(path), "db_root": str(demo_dir / "database")}
    done = run_ingest(spec, out)
    assert_clean_failure(done, names, [out])


def test_a_database_file_that_is_not_sqlite(tmp_path: Path, demo_dir: Path) -> None:
    root = tmp_path / "db"
    shutil.copytree(demo_dir / "database", root)
    (root / "flights" / "flights.sqlite").write_bytes(b"this is a text file, not a database\n" * 50)
    out = tmp_path / "out"
    spec = {"path": str(demo_dir / "dev.json"), "db_root": str(root)}
    done = run_ingest(spec, out)
    assert_clean_failure(done, "flights.sqlite", [out])


# --- predictions (evaluate) --------------------------------------------------------------------------------


def test_predictions_with_the_wrong_line_count(tmp_path: Path, demo_dir: Path) -> None:
    pred = tmp_path / "pred.sql"
    n = len(json.loads((demo_dir / "dev.json").read_text()))
    pred.write_text("SELECT 1\n" * (n - 3))
    out = tmp_path / "out"
    done = run_module(
        "workflow_scripts.evaluate", "--dataset", demo_dir / "dev.json", "--db-root", demo_dir / "database",
        "--pred", pred, "--out", out,
    )  # fmt: skip
    message = assert_clean_failure(done, "pred.sql", [out])
    assert str(n - 3) in message and str(n) in message


@pytest.mark.parametrize(
    ("module", "args", "flag"),
    [
        ("workflow_scripts.cli.data", ["ingest", "--name", "bad", "--dataset", "{'path': 1}"], "--dataset"),
        ("workflow_scripts.evaluate", ["--sandbox", "[30]"], "--sandbox"),
        ("workflow_scripts.cli.train", ["sft", "--settings", "{max_steps: 1}"], "--settings"),
    ],
    ids=["ingest --dataset", "evaluate --sandbox", "train --settings"],
)
def test_settings_that_are_not_a_json_object(
    tmp_path: Path, demo_dir: Path, module: str, args: list[str], flag: str
) -> None:
    """A stage command given settings that are not a JSON object names the flag, before reading anything."""
    out = tmp_path / "out"
    paths = {
        "workflow_scripts.cli.data": ["--out-dir", out],
        "workflow_scripts.evaluate": [
            "--dataset", demo_dir / "dev.json", "--db-root", demo_dir / "database",
            "--pred", tmp_path / "pred.sql", "--out", out,
        ],
        "workflow_scripts.cli.train": ["--model", tmp_path / "model", "--data-dir", demo_dir, "--out", out],
    }[module]  # fmt: skip
    done = run_module(module, *args, *paths)
    assert_clean_failure(done, flag, [out])


# --- models, adapters and training data (train stage) ------------------------------------------------------


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "train.parquet"
    prompt = [{"role": "user", "content": "How many singers are there?"}]
    pd.DataFrame({
        "prompt": [prompt] * 2,
        "chosen": [[{"role": "assistant", "content": "SELECT count(*) FROM singer"}]] * 2,
        "rejected": [[{"role": "assistant", "content": "SELECT count(*) FROM concert"}]] * 2,
        "margin": [1.2, 1.2],
    }).to_parquet(path)  # fmt: skip
    return path


def test_a_model_path_that_is_not_a_model(tmp_path: Path, pairs_file: Path) -> None:
    (tmp_path / "not_a_model").mkdir()
    out = tmp_path / "adapter"
    done = run_module(
        "workflow_scripts.cli.train", "dpo", "--model", tmp_path / "not_a_model", "--pairs", pairs_file,
        "--out", out,
    )  # fmt: skip
    assert_clean_failure(done, "not_a_model", [out])


def test_an_adapter_that_does_not_fit_the_model(
    tmp_path: Path, pairs_file: Path, default_model: Path
) -> None:
    import torch
    from safetensors.torch import save_file

    adapter = tmp_path / "other_adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    # A LoRA pair for a model whose hidden size is 100, not the default model's.
    save_file(
        {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(4, 100),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(100, 4),
        },
        str(adapter / "adapter_model.safetensors"),
    )
    out = tmp_path / "adapter"
    done = run_module(
        "workflow_scripts.cli.train", "dpo", "--model", default_model, "--pairs", pairs_file,
        "--init-adapter", adapter, "--out", out,
    )  # fmt: skip
    assert_clean_failure(done, "other_adapter", [out])


def test_an_empty_pair_set(tmp_path: Path, pairs_file: Path, default_model: Path) -> None:
    empty = tmp_path / "empty.parquet"
    pd.read_parquet(pairs_file).iloc[:0].to_parquet(empty)
    out = tmp_path / "adapter"
    done = run_module(
        "workflow_scripts.cli.train", "dpo", "--model", default_model, "--pairs", empty, "--out", out
    )
    message = assert_clean_failure(done, "empty", [out])
    assert "pairs" in message


def test_training_settings_of_the_wrong_type(tmp_path: Path, pairs_file: Path, default_model: Path) -> None:
    out = tmp_path / "adapter"
    done = run_module(
        "workflow_scripts.cli.train", "dpo", "--model", default_model, "--pairs", pairs_file,
        "--settings", json.dumps({"learning_rate": "fast"}), "--out", out,
    )  # fmt: skip
    assert_clean_failure(done, "learning_rate", [out])


# --- config.yaml (checked by Snakemake before any job runs) ---------------------------------------------


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize(
    ("key", "value", "names"),
    [
        ("sandbox.timeout_s", "fast", "timeout_s"),
        ("rollout.max_turns", 0, "max_turns"),
        ("rollout.schema_mode", "magic", "schema_mode"),
        ("mining.runs", ["no_such_run"], "no_such_run"),
        ("train_dataset", "no_such_dataset", "no_such_dataset"),
    ],
    ids=["wrong-type", "out-of-range", "unknown-choice", "unknown-run", "unknown-dataset"],
)
def test_bad_config_values(workflow: Path, key: str, value: object, names: str) -> None:
    config = yaml.safe_load((workflow / "config.yaml").read_text())
    node = config
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    (workflow / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", str(workflow)],
        capture_output=True,
        text=True,
        cwd=workflow,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert names in output and "Traceback" not in output, output[-3000:]
    assert not (workflow / "results").exists() and not (workflow / "resources").exists()


# --- paths the config names (checked by Snakemake before any job runs, results or not) -----------------


def _overlay_missing_paths(work: Path) -> tuple[Path, list[str]]:
    overlay = {
        "model": {"path": "/models/nope"},
        "datasets": {"demo_dev": {"path": "data/missing_dev.json"}},
        "runs": {"tuned": {"dataset": "demo_dev", "adapter": "adapters/gone"}},
        "predictions": {"theirs": {"dataset": "demo_dev", "path": "preds/gone.sql"}},
    }
    (work / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    keys = [
        "datasets.demo_dev.path is 'data/missing_dev.json'",
        "model.path is '/models/nope'",
        "runs.tuned.adapter is 'adapters/gone'",
        "predictions.theirs.path is 'preds/gone.sql'",
    ]
    return work / "overlay.yaml", keys


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_missing_paths_fail_before_any_job_even_when_results_exist(completed: Path, dry: bool) -> None:
    """Up-to-date results used to hide a wrong path ("Nothing to be done", exit 0): now each is named."""
    overlay, keys = _overlay_missing_paths(completed)
    done = touched.snakemake(completed, *(["-n"] if dry else []), "--configfile", str(overlay), check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "Nothing to be done" not in output and "Job stats" not in output and "Traceback" not in output
    problems = [line for line in output.splitlines() if line.startswith("- config key ")]
    assert len(problems) == len(keys), output[-3000:]
    for key in keys:
        (line,) = [p for p in problems if key in p]
        assert "Fix:" in line, line
    assert touched.planned_rules(completed) == []  # the default config still has nothing to do


def test_missing_paths_fail_on_a_fresh_copy_without_a_missing_input_error(workflow: Path) -> None:
    overlay, keys = _overlay_missing_paths(workflow)
    done = touched.snakemake(workflow, "-n", "--configfile", str(overlay), check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "MissingInputException" not in output, output[-3000:]
    assert all(key in output for key in keys), output[-3000:]
    assert not (workflow / "results").exists()


@pytest.mark.skipif(Path("/data/spider").exists(), reason="this machine has the Spider data")
def test_the_real_run_config_names_its_missing_spider_data_and_model(completed: Path) -> None:
    done = touched.snakemake(completed, "-n", "--configfile", "config/qwen2.5-coder-3b.yaml", check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "names 7 path(s) that are not there" in output
    assert "datasets.spider_train.path is '/data/spider/train_spider.json'" in output
    assert "model.path is '/models/Qwen2.5-Coder-3B-Instruct'" in output


# --- rollouts: inputs verified before anything is loaded or written -------------------------------------


@pytest.mark.parametrize(
    ("broken", "names"),
    [("model", "no config.json"), ("adapter", "no adapter_config.json"), ("data", "no examples.parquet")],
)
def test_a_rollout_shard_checks_its_inputs_before_anything(
    tmp_path: Path, demo_dir: Path, broken: str, names: str
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    if broken != "model":
        (model / "config.json").write_text("{}")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    if broken != "adapter":
        (adapter / "adapter_config.json").write_text("{}")
    data = tmp_path / "data"
    data.mkdir()
    if broken != "data":
        for table in ("examples", "gold", "schema"):
            (data / f"{table}.parquet").write_bytes(b"")  # never read: the check fails earlier
    settings = {"model": str(model), "adapter": str(adapter), "shards": 1}
    out = tmp_path / "0.parquet"
    out.write_bytes(b"an earlier, valid shard")
    done = run_module(
        "workflow_scripts.cli.rollout", "shard", "--run", "eval_sft", "--settings", json.dumps(settings),
        "--data-dir", data, "--shard", "0", "--out", out,
    )  # fmt: skip
    assert_clean_failure(done, names, [])
    assert out.read_bytes() == b"an earlier, valid shard"
