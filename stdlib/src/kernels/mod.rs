//! Fast CPU kernels for what candle does slowly (issue 5): convolution forward and backward
//! (with the bias and activation fused in), depthwise convolution, prompt modulation, and
//! Restormer's channel LayerNorm and gated GELU; the channels-last depthwise convolution of
//! Uformer's tokens (tokens.rs);
//! and the allocator setting that training on the CPU needs. On a GPU (the `cuda` feature) the
//! convolutions run on cuDNN (cudnn.rs) with their bias and activation passes as NVRTC kernels
//! (elementwise_cuda.rs); precision.rs holds the fp32/tf32/bf16 setting of a training run, and
//! `widened` lets the f32 kernels take bf16 tensors.

pub mod attention;
pub mod bias;
pub mod conv;
#[cfg(feature = "cuda")]
pub mod cudnn;
pub mod depthwise;
pub mod direct;
#[cfg(feature = "cuda")]
mod elementwise_cuda;
pub mod gate;
pub mod modulate;
pub mod norm;
pub mod precision;
pub mod resblock;
mod scratch;
pub mod tokens;

/// bf16 storage, f32 arithmetic: when any of `inputs` is bf16, runs `f` on f32 copies of them
/// and rounds its result to bf16, the casts being graph nodes (gradients come back as bf16);
/// `None` when none is bf16, and the caller goes on as before. mio's own kernels compute in
/// f32; under `precision = bf16` this is how they take the network's bf16 tensors: the norms,
/// softmax, GELU and modulations everywhere, as PyTorch's autocast keeps norms and softmax in
/// fp32, and on the CPU (which has no bf16 products) the convolutions and matrix products too.
pub(crate) fn widened<const N: usize>(
    inputs: [&candle_core::Tensor; N],
    f: impl FnOnce([candle_core::Tensor; N]) -> candle_core::Result<candle_core::Tensor>,
) -> candle_core::Result<Option<candle_core::Tensor>> {
    use candle_core::DType;
    if inputs.iter().all(|t| t.dtype() != DType::BF16) {
        return Ok(None);
    }
    let mut wide = Vec::with_capacity(N);
    for t in inputs {
        wide.push(t.to_dtype(DType::F32)?);
    }
    let wide: [candle_core::Tensor; N] = wide.try_into().expect("N tensors");
    f(wide)?.to_dtype(DType::BF16).map(Some)
}

/// [`widened`] on the CPU only: the products (convolutions, matrix products), which a GPU
/// computes in bf16 on its own.
pub(crate) fn widened_on_cpu<const N: usize>(
    inputs: [&candle_core::Tensor; N],
    f: impl FnOnce([candle_core::Tensor; N]) -> candle_core::Result<candle_core::Tensor>,
) -> candle_core::Result<Option<candle_core::Tensor>> {
    if inputs.first().is_some_and(|t| t.device().is_cpu()) {
        widened(inputs, f)
    } else {
        Ok(None)
    }
}

/// `a.matmul(b)` in any dtype: a bf16 product on the CPU (where candle has none) is computed
/// in f32 and rounded to bf16, as a GPU's bf16 product accumulates in f32.
pub(crate) fn matmul(
    a: &candle_core::Tensor,
    b: &candle_core::Tensor,
) -> candle_core::Result<candle_core::Tensor> {
    match widened_on_cpu([a, b], |[a, b]| a.matmul(&b))? {
        Some(y) => Ok(y),
        None => a.matmul(b),
    }
}

/// `a.broadcast_matmul(b)`, as [`matmul`].
pub(crate) fn broadcast_matmul(
    a: &candle_core::Tensor,
    b: &candle_core::Tensor,
) -> candle_core::Result<candle_core::Tensor> {
    match widened_on_cpu([a, b], |[a, b]| a.broadcast_matmul(&b))? {
        Some(y) => Ok(y),
        None => a.broadcast_matmul(b),
    }
}

/// Whether mio's GPU kernels (cuDNN's convolutions, the NVRTC ops) run on this device: a GPU,
/// in a build with the `cuda` feature.
pub fn on_gpu(dev: &candle_core::Device) -> bool {
    cfg!(feature = "cuda") && dev.is_cuda()
}

/// glibc returns freed multi-megabyte blocks to the system at once and maps them again on the
/// next allocation, so every tensor of a training step costs page faults and zeroing (measured
/// on the quickstart: a quarter of a step's time, and a third of the process's time spent in
/// the kernel). Keeping freed blocks in the heap, as PyTorch's caching allocator does, avoids
/// it. Call once at start-up, before other threads exist; a no-op off glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes allocator parameters.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 1 << 30);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

/// Returns the heap's free blocks to the system (what [`tune_allocator`] otherwise keeps), so
/// that the resident size measures what is live. A no-op off glibc.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns free memory to the system.
        unsafe {
            malloc_trim(0);
        }
    }
}
