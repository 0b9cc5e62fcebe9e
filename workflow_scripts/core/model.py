"""Converting a GGUF model to a plain Hugging Face directory, and reading model directories.

transformers can load a GGUF file with `gguf_file=`, but a model loaded that way keeps a GGUF quantization
marker, so `save_pretrained` refuses it and trainers treat it as frozen. `convert_gguf` therefore rebuilds a
plain fp32 model from the de-quantized weights and saves that once; later loads take seconds, not tens of
seconds. The packaged models (`core.packaged`) are built this way.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from workflow_scripts.core.errors import UserError


def convert_gguf(gguf_path: Path, out_dir: Path, *, source: dict, eos_token: str | None = None) -> Path:
    """Write a plain fp32 transformers model and its tokenizer, converted from `gguf_path`, to `out_dir`,
    with `source` (where the GGUF came from) as SOURCE.json; `eos_token` replaces the tokenizer's EOS."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # Built on the meta device and given the loaded tensors themselves (assign): a second, randomly
    # initialised copy of the weights would double the peak memory (~14 GB for the 1.5B model in fp32).
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False, assign=True)
    # Tied output embeddings are the only keys allowed to be absent from the GGUF state dict.
    if [k for k in missing if "lm_head" not in k] or unexpected:
        raise RuntimeError(f"GGUF conversion lost weights: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    for name, buffer in loaded.named_buffers():  # non-persistent buffers (rotary frequencies) stay on meta
        owner, _, attr = name.rpartition(".")
        model.get_submodule(owner).register_buffer(attr, buffer, persistent=False)
    del loaded
    tokenizer.padding_side = "left"
    if eos_token is not None:
        tokenizer.eos_token = eos_token

    # Write next to the target and rename, so an interrupted conversion leaves nothing to trust.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.work-", dir=out_dir.parent))
    tmp_dir.chmod(0o755)  # mkdtemp makes it private; the model directory is not
    try:
        model.save_pretrained(tmp_dir)
        tokenizer.save_pretrained(tmp_dir)
        (tmp_dir / "SOURCE.json").write_text(json.dumps(source, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp_dir.replace(out_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
    return out_dir


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
