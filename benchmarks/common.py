"""Helpers shared by the benchmark scripts: data sets ingested into a temporary directory."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import pandas as pd

from workflow_scripts.cli.data import ingest
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.data.demo import build_demo
from workflow_scripts.data.ingest import DatasetSpec

REPO = Path(__file__).resolve().parents[1]
SPIDER = REPO.parent / "shared" / "data" / "spider"


def load(spec: DatasetSpec, workdir: Path) -> dict[str, pd.DataFrame]:
    """Ingest `spec` and return its examples, gold and schema frames."""
    out = workdir / spec.name
    ingest(
        spec, out, missing_db="skip", sandbox_cfg={"workers": 2, "max_rows": 100_000}, match=MatchSettings()
    )
    return {name: pd.read_parquet(out / f"{name}.parquet") for name in ("examples", "gold", "schema")}


def demo_dev(workdir: Path) -> dict[str, pd.DataFrame]:
    """The embedded demo's dev split."""
    build_demo(workdir / "demo", seed=0)
    return load(
        DatasetSpec("demo_dev", workdir / "demo" / "dev.json", workdir / "demo" / "database"), workdir
    )


def spider_heldout(
    workdir: Path, spider: Path, n_dbs: int, per_db: int, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Spider train examples from `n_dbs` databases held out at random (split by db_id), `per_db` each."""
    records = json.loads((spider / "train_spider.json").read_text())
    db_ids = sorted({r["db_id"] for r in records if (spider / "database" / r["db_id"]).is_dir()})
    held = set(random.Random(seed).sample(db_ids, n_dbs))
    picked, seen = [], {}
    for r in records:
        if r["db_id"] in held and seen.get(r["db_id"], 0) < per_db:
            seen[r["db_id"]] = seen.get(r["db_id"], 0) + 1
            picked.append(r)
    path = workdir / "spider_heldout.json"
    path.write_text(json.dumps(picked))
    return load(DatasetSpec("spider_heldout", path, spider / "database"), workdir)


def tempdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="bench-")
