# Source this (bash) to build candle's `cuda` feature on a machine with no GPU and no CUDA toolkit, for running the
# binary on a GPU machine (CUDA 13.0 driver, sm_90). Everything comes from PyPI into ~/.cache/mio-cuda.
# candle-core 0.11.1 --features cuda compiles and links with it (kernels take ~15 min on 2 cores); the binaries ran
# on an H200 (docs/cuda.md). Usage, from the repository root:
#   source tools/cuda-env.sh && cargo build --release --features cuda   (goes to target/cuda)
# On the GPU machine, before running the binary:
#   export LD_LIBRARY_PATH=$(dirname "$(find / -name libcublas.so.13 2>/dev/null | head -1)"):$LD_LIBRARY_PATH
MIO_CUDA=${MIO_CUDA:-$HOME/.cache/mio-cuda}
if [ ! -x "$MIO_CUDA/venv/bin/python" ]; then
  python3 -m venv "$MIO_CUDA/venv"
  "$MIO_CUDA/venv/bin/pip" install -q "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-crt==13.0.88" \
    "nvidia-nvvm==13.0.88" "nvidia-cuda-cccl==13.0.85" "nvidia-cublas==13.0.*" "nvidia-curand==10.4.0.*" "nvidia-cuda-nvrtc==13.0.*"
fi
if ! "$MIO_CUDA/venv/bin/python" -c "import nvidia.cudnn" 2>/dev/null; then
  "$MIO_CUDA/venv/bin/pip" install -q "nvidia-cudnn-cu13==9.*"   # cuDNN for the convolutions (docs/cuda.md)
fi
_c=$("$MIO_CUDA/venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
mkdir -p "$MIO_CUDA/link"
for _l in cublas cublasLt cudart nvrtc; do ln -sf "$_c/lib/lib$_l.so.13" "$MIO_CUDA/link/lib$_l.so"; done
ln -sf "$_c/lib/libcurand.so.10" "$MIO_CUDA/link/libcurand.so"
_d=$("$MIO_CUDA/venv/bin/python" -c 'import nvidia.cudnn, os; print(list(nvidia.cudnn.__path__)[0])')
ln -sf "$_d/lib/libcudnn.so.9" "$MIO_CUDA/link/libcudnn.so"
if [ ! -f "$MIO_CUDA/link/libcuda.so" ]; then
  # a link-time stub for the driver library (the real libcuda.so.1 is on the GPU machine): every cu* symbol cudarc names
  grep -ohE '\bcu[A-Z][A-Za-z0-9_]+' $(find "$HOME/.cargo/registry/src" -path '*cudarc-*/src/driver/sys/*.rs' 2>/dev/null) 2>/dev/null \
    | sort -u | awk '{print "void " $1 "(void){}"}' > "$MIO_CUDA/stub.c"
  gcc -shared -fPIC -o "$MIO_CUDA/link/libcuda.so" "$MIO_CUDA/stub.c" -Wl,-soname,libcuda.so.1
fi
export PATH="$_c/bin:$PATH" CUDA_HOME="$_c" CUDA_ROOT="$_c" CUDA_PATH="$_c" CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$MIO_CUDA/link" CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}
unset _c _d _l
