#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one short script for a GPU machine (docs/cuda.md):
#   1. the CUDA test binary (stdlib/tests/cuda.rs): every backbone's output and gradients on the
#      GPU against the CPU (in fp32, and in bf16 against the CPU's bf16), Adam steps, the cuDNN
#      convolutions against mio's CPU kernels in fp32, tf32 and bf16, the precision setting;
#   2. `mio bench --device cuda` in fp32, tf32 and bf16 and PyTorch on the same GPU
#      (tools/bench_train.py: fp32, tf32, and AMP bf16 with channels-last), then a table of the
#      step times and ratios (summary.txt);
#   3. the quickstart end to end on the GPU (`device = auto` picks it).
# Each step has its own time limit and writes under $OUT as it goes, so a slow step costs only
# itself. Built here (no GPU needed):
#   source tools/cuda-env.sh && cargo build --release --features cuda \
#     && cargo test --release --features cuda --workspace --test cuda --no-run
#   tools/gpu_check.sh --pack      # strips and compresses both binaries into target/gpu/
# and run there from the repository root, with target/gpu carried: tools/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--pack" ]; then
  mkdir -p target/gpu
  test_bin=$(ls -t target/cuda/release/deps/cuda-* | grep -v '\.d$' | head -1)
  for pair in "target/cuda/release/mio:mio" "$test_bin:cuda_tests"; do
    src=${pair%%:*} name=${pair##*:}
    strip -o "target/gpu/$name" "$src" && xz -f -T2 -6 "target/gpu/$name"
  done
  ls -la target/gpu
  exit 0
fi
out=${OUT:-/tmp/mio-gpu-check}
mkdir -p "$out"
# Every step gets at most its own limit and what is left of the whole run's.
deadline=$(( $(date +%s) + ${TOTAL_LIMIT:-420} ))
limit() { local left=$(( deadline - $(date +%s) - 5 )); [ "$left" -lt "$1" ] && echo $(( left > 1 ? left : 1 )) || echo "$1"; }
log() { echo "[$(date +%T)] $*" | tee -a "$out/log.txt"; }
for f in mio cuda_tests; do
  [ -x "target/gpu/$f" ] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "target/gpu/$f.xz" "target/gpu/$f"
  chmod +x "target/gpu/$f"
done
py=""
for p in python3 python /usr/bin/python3 /opt/conda/bin/python /usr/local/bin/python3; do
  if "$p" -c "import torch" 2>/dev/null; then py=$p; break; fi
done
# The CUDA 13 libraries (cuBLAS, cuRAND, NVRTC) that PyTorch ships.
libs=""
[ -n "$py" ] && libs=$("$py" -c "import glob, os, site, torch; d=[os.path.dirname(torch.__file__)+'/..'] + site.getsitepackages(); print(next((os.path.dirname(f) for s in d for f in glob.glob(s+'/nvidia/**/libcublas.so.13', recursive=True)), ''))" 2>/dev/null)
[ -z "$libs" ] && libs=$(dirname "$(find / -name 'libcublas.so.13' -not -path '/proc/*' -not -path '/sys/*' 2>/dev/null | head -1)")
# cuDNN, from the same place (PyTorch's nvidia-cudnn package).
cudnn=""
[ -n "$py" ] && cudnn=$("$py" -c "import glob, os, site, torch; d=[os.path.dirname(torch.__file__)+'/..'] + site.getsitepackages(); print(next((os.path.dirname(f) for s in d for f in glob.glob(s+'/nvidia/**/libcudnn.so.9', recursive=True)), ''))" 2>/dev/null)
[ -z "$cudnn" ] && cudnn=$(dirname "$(find / -name 'libcudnn.so.9' -not -path '/proc/*' -not -path '/sys/*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH="$libs:$cudnn:${LD_LIBRARY_PATH:-}"
log "python with torch: ${py:-none}; CUDA libraries from ${libs:-nowhere}; cuDNN from ${cudnn:-nowhere}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
log "$(tail -1 "$out/gpu.txt")"

log "1. CUDA tests"
timeout "$(limit 60)" target/gpu/cuda_tests --test-threads 1 > "$out/cuda_tests.txt" 2>&1
log "cuda tests exit $? ($(grep -E '^test result' "$out/cuda_tests.txt"))"

log "2. mio bench on the GPU (fp32, tf32 and bf16)"
timeout "$(limit 120)" target/gpu/mio bench --device cuda --precision fp32,tf32,bf16 --rounds 5 --budget 4 --raw > "$out/bench_mio.txt" 2> "$out/bench_mio.err"
log "mio bench exit $?"
if [ -n "$py" ]; then
  for p in fp32 tf32 amp; do
    log "2b. PyTorch on the same GPU ($p)"
    (cd tools && timeout "$(limit 45)" "$py" bench_train.py --device cuda --rounds 5 --budget 4 --precision "$p") >> "$out/bench_torch.txt" 2>&1
    log "torch bench ($p) exit $?"
  done
fi
# One row per case: the step times and mio's ratios to PyTorch in the same arithmetic.
awk '{v[$1] = $2} END {
  printf "%-18s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n", "case (step ms)", "torch", "tf32", "amp", "mio fp32", "mio tf32", "mio bf16", "loader", "ratio", "ratio tf", "bf16/amp"
  n = split("srresnet32x4 srresnet64x16ep restormer_ep swinir_small", cs, " ")
  for (i = 1; i <= n; i++) { c = cs[i]
    t = v["torch." c "_step"]; tt = v["torch_tf32." c "_step"]; ta = v["torch_amp." c "_step"]
    m = v["mio_fp32." c "_step"]; mt = v["mio_tf32." c "_step"]; mb = v["mio_bf16." c "_step"]; l = v["loader." c "_batch"]
    printf "%-18s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n", c, t, tt, ta, m, mt, mb, l,
      (t && m) ? sprintf("%.2f", m / t) : "-", (tt && mt) ? sprintf("%.2f", mt / tt) : "-", (ta && mb) ? sprintf("%.2f", mb / ta) : "-" }
}' "$out/bench_mio.txt" "$out/bench_torch.txt" > "$out/summary.txt" 2>/dev/null
cat "$out/summary.txt" | tee -a "$out/log.txt"

log "3. the quickstart on the GPU"
start=$(date +%s)
timeout "$(limit 150)" target/gpu/mio run workflows/quickstart.mio --quiet > "$out/quickstart.txt" 2>&1
log "quickstart exit $? after $(( $(date +%s) - start )) s"
cp workflows/runs/quickstart/report.md workflows/runs/quickstart/manifest.yaml "$out/" 2>/dev/null
log "done"
