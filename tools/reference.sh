#!/usr/bin/env bash
# Recomputes the reference values the stdlib tests pin (run by hand; needs PyPI):
# scikit-image PSNR/SSIM, PyTorch bicubic, libjpeg (OpenCV) sizes and quality.
# Installs numpy, scikit-image, opencv-python-headless and torch into ~/.cache/mio-tools-venv
# on first use (torch is large: ~5 GB, a minute or two).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$HOME/.cache/mio-tools-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy scikit-image opencv-python-headless pillow torch safetensors
  "$venv/bin/pip" install -q --no-deps basicsr  # only its swinir_arch.py is used
fi
"$venv/bin/python" tools/reference.py "$@"
