//! Fast CPU kernels for what candle does slowly (issue 5): convolution forward and backward
//! (with the bias and activation fused in), depthwise convolution, prompt modulation, and
//! Restormer's channel LayerNorm and gated GELU; the channels-last depthwise convolution of
//! Uformer's tokens (tokens.rs);
//! and the allocator setting that training on the CPU needs. On a GPU (the `cuda` feature) the
//! convolutions run on cuDNN (cudnn.rs) with their bias and activation passes as NVRTC kernels
//! (elementwise_cuda.rs); precision.rs holds the fp32/tf32 setting of the GPU's products.

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
