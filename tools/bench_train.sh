#!/usr/bin/env bash
# Training and inference speed, side by side in one run on this machine: `mio bench` (mio's
# kernels, and candle's own for comparison) against PyTorch running the same architectures,
# shapes, batch, patch and thread count (tools/bench_train.py). Installs torch into
# ~/.cache/mio-tools-venv on first use (large; nothing in mio depends on it).
# This VM's speed drifts by 10-30% over minutes, so mio and PyTorch take turns REPEATS times
# and each case reports the median over the repeats (candle's kernels, slow, run once).
# Usage: tools/bench_train.sh [ROUNDS] [REPEATS]
# On a GPU machine with PyTorch installed: MIO=path/to/cuda/mio PYTHON=python3 DEVICE=cuda tools/bench_train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
repeats="${2:-3}"
device="${DEVICE:-cpu}"
threads=$(nproc)
python="${PYTHON:-}"
if [ -z "$python" ]; then
  venv="$HOME/.cache/mio-tools-venv"
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q torch safetensors
  fi
  python="$venv/bin/python"
fi
mio="${MIO:-}"
if [ -z "$mio" ]; then
  cargo build -q --release
  mio=./target/release/mio
fi
candle=""
[ "$device" = cpu ] && candle="--candle"
ours=""
theirs=""
for r in $(seq "$repeats"); do
  ours+=$(RAYON_NUM_THREADS=$threads "$mio" bench --raw --device "$device" --rounds "$rounds" $candle)$'\n'
  theirs+=$("$python" tools/bench_train.py --device "$device" --rounds "$rounds" --threads "$threads")$'\n'
  candle=""
done
# The median of a case's values over the repeats.
median() { awk -v k="$1" '$1 == k {print $2}' | sort -g | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]}'; }
echo "machine: $threads cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); device $device; median of $rounds rounds, then of $repeats alternating runs"
echo "$theirs" | head -1
printf '%-26s %10s %10s %10s %10s %12s\n' case mio candle torch "mio/torch" "candle/torch"
for c in $(echo "$ours" | awk '{print $1}' | sed 's/^[a-z]*\.//' | awk '!seen[$0]++'); do
  m=$(echo "$ours" | median "mio.$c")
  d=$(echo "$ours" | median "candle.$c")
  t=$(echo "$theirs" | median "torch.$c")
  ratio() { if [ -n "$1" ] && [ -n "$2" ]; then echo "$1 / $2" | bc -l | xargs printf '%.2fx'; else echo -; fi; }
  printf '%-26s %10s %10s %10s %10s %12s\n' "$c" "${m:--}" "${d:--}" "${t:--}" "$(ratio "$m" "$t")" "$(ratio "$d" "$t")"
done
echo "(gemm1024_gflops is GFLOP/s, higher is better; every other row is milliseconds)"
