#!/usr/bin/env bash
# GPU smoke test of the real training and generation path (LoRA SFT, transformers, vLLM): scripts/gpu_smoke.py.
#   bash scripts/gpu_smoke.sh [MODEL_DIR] [--tiny] [--device auto|cuda|cpu] [--steps N] [--keep]
# Runs with the active environment's python (PYTHON=... to choose another); exit status 1 when a phase failed.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m scripts.gpu_smoke "$@"
