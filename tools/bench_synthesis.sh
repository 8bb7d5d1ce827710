#!/usr/bin/env bash
# Synthesis speed, mio against numpy/OpenCV, on the same bundled images in the same run:
# images per second for each of the seven tasks and the ratio. Uses the tools venv (see
# tools/reference.sh). Usage: tools/bench_synthesis.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$HOME/.cache/mio-tools-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy opencv-python-headless
fi
rounds="${1:-5}"
cargo build -q --release -p mio-stdlib --example synthesis_bench
mio=$(./target/release/examples/synthesis_bench "$rounds")
py=$("$venv/bin/python" tools/bench_synthesis.py "$rounds")
echo "machine: $(nproc) cores; mio $(echo "$mio" | head -1); python $(echo "$py" | head -1)"
printf '%-9s %12s %12s %7s\n' task "mio img/s" "numpy img/s" ratio
paste <(echo "$mio" | tail -n +2) <(echo "$py" | tail -n +2) | while read -r t a _ b; do
  printf '%-9s %12s %12s %6.1fx\n' "$t" "$a" "$b" "$(echo "$a / $b" | bc -l)"
done
