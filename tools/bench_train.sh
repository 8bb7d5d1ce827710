#!/usr/bin/env bash
# Training and inference speed, mio (its own conv kernels, and candle's for comparison) against
# PyTorch on the CPU, same shapes, batch, patch and threads, in the same run. Installs torch
# into the tools venv on first use (large; nothing in mio depends on it).
# Usage: tools/bench_train.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$HOME/.cache/mio-tools-venv"
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch
fi
rounds="${1:-5}"
threads=$(nproc)
cargo build -q --release -p mio-stdlib --example train_bench
mio=$(RAYON_NUM_THREADS=$threads ./target/release/examples/train_bench "$rounds")
py=$("$venv/bin/python" tools/bench_train.py "$rounds" "$threads")
echo "machine: $threads cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); milliseconds, median of $rounds"
printf '%-26s %10s %10s %10s %12s %14s\n' case mio candle torch "mio/torch" "candle/torch"
for c in conv3x3_fwd_bwd srresnet32x4_step srresnet32x4_infer512 srresnet64x16ep_step srresnet64x16ep_infer512; do
  m=$(echo "$mio" | awk -v k="mio.$c" '$1 == k {print $2}')
  d=$(echo "$mio" | awk -v k="candle.$c" '$1 == k {print $2}')
  t=$(echo "$py" | awk -v k="torch.$c" '$1 == k {print $2}')
  printf '%-26s %10s %10s %10s %11.2fx %13.2fx\n' "$c" "$m" "$d" "$t" "$(echo "$m / $t" | bc -l)" "$(echo "$d / $t" | bc -l)"
done
