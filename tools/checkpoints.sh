#!/usr/bin/env bash
# Checkpoints in the reference's formats written by PyTorch (tests' fixtures), and the check
# that `mio export` loads into PyTorch. Installs torch into ~/.cache/mio-tools-venv on first use.
# Usage: tools/checkpoints.sh make | load EXPORT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$HOME/.cache/mio-tools-venv"
if ! "$venv/bin/python" -c "import torch, safetensors, numpy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch safetensors numpy
fi
"$venv/bin/python" tools/checkpoints.py "$@"
