"""The GPU smoke script, run for real on CPU with a tiny random model: every phase must pass or be skipped.

With `--tiny` the script reads only the default model's config and tokenizer (a SmolLM2-shaped config and
a tokenizer trained on the demo text when the default model has not been converted), so this needs no
weights. The real default model takes minutes on 2 cores, so it is left to `bash scripts/gpu_smoke.sh`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

PHASE = re.compile(r"^SMOKE phase=(\w+) (PASS|FAIL|SKIP) ", re.MULTILINE)


@pytest.mark.slow
def test_tiny_model_on_cpu_passes_every_phase():
    done = subprocess.run(
        ["bash", "scripts/gpu_smoke.sh", "--device", "cpu", "--tiny", "--steps", "2"],
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert dict(PHASE.findall(done.stdout)) == {
        "setup": "PASS",
        "train": "PASS",
        "transformers": "PASS",
        "vllm": "SKIP",
    }, output[-4000:]
    assert "SMOKE device=cpu dtype=fp32" in done.stdout
    assert "LoRA B moved in 7 modules x 2 layers" in done.stdout
    assert "adapter merged into 7/7 modules" in done.stdout
    assert "SMOKE result=PASS" in done.stdout
    assert re.search(
        r"^SMOKE versions torch=\S+ transformers=\S+ peft=\S+ trl=\S+ vllm=\S+$", done.stdout, re.M
    )
