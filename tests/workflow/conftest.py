"""Fixtures shared by the workflow tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workflow import touched


@pytest.fixture(scope="session")
def completed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workflow copy (default config) whose every output is present and up to date, made without running a
    job (touched.complete): `snakemake -n` has nothing to do. Tests that edit its config.yaml restore it."""
    work = touched.complete(touched.copy_workflow(tmp_path_factory.mktemp("completed")))
    assert touched.planned_rules(work) == []
    return work
