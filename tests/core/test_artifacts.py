"""Artifacts: atomic writes and the provenance (code version, config values) stored in Parquet metadata."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from workflow_scripts.core.artifacts import code_version, read_provenance, write_json, write_parquet


def test_parquet_carries_the_code_version_and_the_given_provenance(tmp_path: Path) -> None:
    path = tmp_path / "out" / "table.parquet"
    write_parquet(pd.DataFrame({"a": [1, 2]}), path, {"settings": {"temperature": 0.3}, "run": "probe"})
    meta = read_provenance(path)
    assert meta["settings"] == {"temperature": 0.3} and meta["run"] == "probe"
    assert meta["source_sha256"] == code_version()["source_sha256"]
    assert len(meta["source_sha256"]) == 64 and meta["version"]
    pd.testing.assert_frame_equal(pd.read_parquet(path), pd.DataFrame({"a": [1, 2]}))


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path: Path) -> None:
    path = tmp_path / "table.parquet"
    unconvertible = pd.DataFrame({"a": [object()]})
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's error type is not the point
        write_parquet(unconvertible, path)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_previous_artifact(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json({"ex": 0.5}, path)
    circular: dict = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular"):
        write_json(circular, path)
    assert path.read_text().strip().startswith("{") and "0.5" in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
