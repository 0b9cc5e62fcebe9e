"""Shared fixtures: small real SQLite databases, the demo data set and the real default model."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "resources" / "models" / "smollm2-135m-instruct"
# Packaged models' wheels and converted directories, kept across test sessions on one machine (the Qwen
# wheels are ~490 MB): TEXT2SQL_CACHE, else ~/.cache/text2sql-workflow.
CACHE = Path(os.environ.get("TEXT2SQL_CACHE", Path.home() / ".cache" / "text2sql-workflow"))
QWEN = "qwen2.5-coder-0.5b-instruct"


def make_concert_db(path: Path) -> Path:
    """Create a small two-table SQLite database with a foreign key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER);
        CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, singer_id INTEGER, year INTEGER, venue TEXT,
                              FOREIGN KEY (singer_id) REFERENCES singer(singer_id));
        """
    )
    singers = [(i, f"Singer {i}", ["France", "Peru", "Japan"][i % 3], 20 + i) for i in range(1, 21)]
    conn.executemany("INSERT INTO singer VALUES (?, ?, ?, ?)", singers)
    concerts = [(i, 1 + i % 20, 2010 + i % 6, f"Hall {i % 4}") for i in range(1, 41)]
    conn.executemany("INSERT INTO concert VALUES (?, ?, ?, ?)", concerts)
    conn.commit()
    conn.close()
    return path


def ingest_concert_questions(root: Path, questions: dict[str, str], name: str) -> dict:
    """Ingest data set `name` = {question: gold SQL} on a concert database under `root`: frames and `dir`."""
    import pandas as pd

    from workflow_scripts.cli.data import ingest
    from workflow_scripts.core.scoring import MatchSettings
    from workflow_scripts.data.ingest import DatasetSpec

    make_concert_db(root / "db" / "concert" / "concert.sqlite")
    records = [{"db_id": "concert", "question": q, "query": s} for q, s in questions.items()]
    (root / "data.json").write_text(json.dumps(records))
    out = root / "ingested"
    ingest(
        DatasetSpec(name, root / "data.json", root / "db"),
        out,
        missing_db="error",
        sandbox_cfg={"workers": 1, "timeout_s": 2.0},
        match=MatchSettings(),
    )
    frames = {name: pd.read_parquet(out / f"{name}.parquet") for name in ("examples", "gold", "schema")}
    return {**frames, "dir": out}


@pytest.fixture
def concert_root(tmp_path: Path) -> Path:
    """A db_root with databases `concert` ({root}/concert/concert.sqlite) and `flat` ({root}/flat.sqlite)."""
    root = tmp_path / "db"
    make_concert_db(root / "concert" / "concert.sqlite")
    make_concert_db(root / "flat.sqlite")
    return root


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded demo data set, built once per test session."""
    from workflow_scripts.data.demo import build_demo

    out = tmp_path_factory.mktemp("demo")
    build_demo(out, seed=0)
    return out


@pytest.fixture(scope="session")
def default_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real default model: the converted one of a previous main run, else fetched and converted now."""
    from workflow_scripts.core.packaged import build_packaged_model

    override = os.environ.get("TEXT2SQL_TEST_MODEL")
    if override:
        return Path(override)
    if (DEFAULT_MODEL / "SOURCE.json").is_file():
        return DEFAULT_MODEL
    return build_packaged_model(
        "smollm2-135m-instruct", tmp_path_factory.mktemp("model") / "smollm2-135m-instruct"
    )


def converted(path: Path, name: str) -> bool:
    """Whether `path` holds packaged model `name`, completely converted from the registry's GGUF."""
    from workflow_scripts.core.packaged import PACKAGED_MODELS, read_source

    entry = PACKAGED_MODELS[name]
    source = (read_source(path) if path.is_dir() else None) or {}
    return source.get("gguf_sha256") == entry.gguf_sha256 and source.get("eos_token") == entry.eos_token


@pytest.fixture(scope="session")
def qwen_wheels() -> Path:
    """The Qwen2.5-Coder-0.5B-Instruct wheels, downloaded (hash-checked) into the machine's cache once."""
    from workflow_scripts.core.packaged import PACKAGED_MODELS, download_wheels

    dest = CACHE / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    download_wheels(PACKAGED_MODELS[QWEN], dest)  # pip skips files it finds with the right hash
    return dest


@pytest.fixture(scope="session")
def qwen_model(request: pytest.FixtureRequest) -> Path:
    """Qwen2.5-Coder-0.5B-Instruct converted from its wheels: the workflow's copy, the machine's cache, or
    built into the cache now (~1.5 minutes)."""
    from workflow_scripts.core.packaged import build_packaged_model

    for path in (REPO / "resources" / "models" / QWEN, CACHE / "models" / QWEN):
        if converted(path, QWEN):
            return path
    wheels = request.getfixturevalue("qwen_wheels")
    return build_packaged_model(QWEN, CACHE / "models" / QWEN, wheel_dir=wheels)
