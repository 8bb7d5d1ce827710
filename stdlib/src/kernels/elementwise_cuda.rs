//! mio's fused ops on a GPU, as CUDA kernels compiled once per process with NVRTC: the bias and
//! activation after a cuDNN convolution's forward (one pass over the output, in place) and the
//! activation's derivative before its backward; GELU and Restormer's gated GELU with their
//! gradients; the prompt modulation `(f + r) * (1 + scale) + shift` with its gradients (the
//! per-channel sums one block per image and channel). Each is one launch where candle's ops take
//! several, and the backward kernels write their gradients directly (no zero-filled buffers).

use std::sync::OnceLock;

use candle_core::cuda::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use candle_core::cuda::cudarc::nvrtc;
use candle_core::{CudaDevice, CudaStorage, Layout, Result};

use super::conv::Activation;

const SOURCE: &str = r#"
__device__ __forceinline__ float act(float v, int kind, float slope) {
    if (kind == 1) return v > 0.f ? v : 0.f;
    if (kind == 2) return v > 0.f ? v : v * slope;
    return v;
}
// y[b, c, p] = act(y[b, c, p] + bias[c]) over n values, `plane` values per channel.
extern "C" __global__ void mio_bias_act(float* y, const float* bias, unsigned long long n,
                                        unsigned long long plane, unsigned long long channels,
                                        int kind, float slope) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        y[i] = act(y[i] + bias[(i / plane) % channels], kind, slope);
    }
}
// dx = dy * act'(out), the derivative read off the activation's output.
extern "C" __global__ void mio_act_grad(const float* dy, const float* out, float* dx,
                                        unsigned long long n, int kind, float slope) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        float s = kind == 0 ? 1.f : (out[i] > 0.f ? 1.f : (kind == 1 ? 0.f : slope));
        dx[i] = dy[i] * s;
    }
}

#define GRID_STRIDE(i, n) \
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < (n); \
         i += (unsigned long long)blockDim.x * gridDim.x)

__device__ __forceinline__ float gelu_of(float x) {
    return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
}
__device__ __forceinline__ float gelu_slope(float x) {
    float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
    return cdf + x * 0.3989422804014327f * expf(-0.5f * x * x);
}
extern "C" __global__ void mio_gelu(const float* x, float* y, unsigned long long n) {
    GRID_STRIDE(i, n) { y[i] = gelu_of(x[i]); }
}
extern "C" __global__ void mio_gelu_grad(const float* x, const float* dy, float* g,
                                         unsigned long long n) {
    GRID_STRIDE(i, n) { g[i] = dy[i] * gelu_slope(x[i]); }
}
// t [B, 2C, plane]: y [B, C, plane] = gelu(t[:, :C]) * t[:, C:]; half = C * plane, n = B * half.
extern "C" __global__ void mio_gated_gelu(const float* t, float* y, unsigned long long half,
                                          unsigned long long n) {
    GRID_STRIDE(i, n) {
        unsigned long long b = i / half, r = i % half;
        y[i] = gelu_of(t[b * 2 * half + r]) * t[b * 2 * half + half + r];
    }
}
extern "C" __global__ void mio_gated_gelu_grad(const float* t, const float* dy, float* g,
                                               unsigned long long half, unsigned long long n) {
    GRID_STRIDE(i, n) {
        unsigned long long b = i / half, r = i % half;
        float a = t[b * 2 * half + r], v = t[b * 2 * half + half + r], d = dy[i];
        g[b * 2 * half + r] = d * v * gelu_slope(a);
        g[b * 2 * half + half + r] = d * gelu_of(a);
    }
}
// y = (f + r) * (1 + scale) + shift; st [B, 2C] holds scale then shift; r is read when has_r.
extern "C" __global__ void mio_modulate(const float* f, const float* r, int has_r, const float* st,
                                        float* y, unsigned long long c, unsigned long long plane,
                                        unsigned long long n) {
    GRID_STRIDE(i, n) {
        unsigned long long row = i / plane, b = row / c, k = row % c;
        float v = has_r ? f[i] + r[i] : f[i];
        y[i] = v * (1.f + st[b * 2 * c + k]) + st[b * 2 * c + c + k];
    }
}
// The features' gradient: dy * (1 + scale).
extern "C" __global__ void mio_scale_by_channel(const float* dy, const float* st, float* g,
                                                unsigned long long c, unsigned long long plane,
                                                unsigned long long n) {
    GRID_STRIDE(i, n) {
        unsigned long long row = i / plane;
        g[i] = dy[i] * (1.f + st[(row / c) * 2 * c + row % c]);
    }
}
// One block of 256 threads per (image, channel) row: the sums over the row's plane of
// dy * (f + r) (the scale's gradient) and of dy (the shift's), into out [B, 2C].
extern "C" __global__ void mio_channel_sums(const float* dy, const float* f, const float* r,
                                            int has_r, float* out, unsigned long long c,
                                            unsigned long long plane) {
    __shared__ float ss[256];
    __shared__ float ts[256];
    unsigned long long row = blockIdx.x, base = row * plane;
    float s = 0.f, t = 0.f;
    for (unsigned long long p = threadIdx.x; p < plane; p += blockDim.x) {
        float d = dy[base + p];
        float v = has_r ? f[base + p] + r[base + p] : f[base + p];
        s += d * v;
        t += d;
    }
    ss[threadIdx.x] = s;
    ts[threadIdx.x] = t;
    __syncthreads();
    for (unsigned int w = blockDim.x / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) {
            ss[threadIdx.x] += ss[threadIdx.x + w];
            ts[threadIdx.x] += ts[threadIdx.x + w];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        unsigned long long b = row / c, k = row % c;
        out[b * 2 * c + k] = ss[0];
        out[b * 2 * c + c + k] = ts[0];
    }
}

// LayerNorm over C values of each of G groups: value k of group g sits at
// (g / inner) * C * inner + g % inner + k * inner (inner = H * W: over the channels of
// [B, C, H, W]; inner = 1: over the last dimension of rows). eps 1e-5, biased variance.
__device__ __forceinline__ unsigned long long group_base(unsigned long long g, unsigned long long c,
                                                         unsigned long long inner) {
    return (g / inner) * c * inner + g % inner;
}
__device__ __forceinline__ void group_stats(const float* x, unsigned long long base,
                                            unsigned long long c, unsigned long long inner,
                                            float* mean, float* rstd) {
    float m = 0.f;
    for (unsigned long long k = 0; k < c; k++) m += x[base + k * inner];
    m /= (float)c;
    float v = 0.f;
    for (unsigned long long k = 0; k < c; k++) {
        float d = x[base + k * inner] - m;
        v += d * d;
    }
    *mean = m;
    *rstd = rsqrtf(v / (float)c + 1e-5f);
}
extern "C" __global__ void mio_norm(const float* x, const float* w, const float* b, float* y,
                                    unsigned long long groups, unsigned long long c,
                                    unsigned long long inner) {
    GRID_STRIDE(g, groups) {
        unsigned long long base = group_base(g, c, inner);
        float m, r;
        group_stats(x, base, c, inner, &m, &r);
        for (unsigned long long k = 0; k < c; k++) {
            unsigned long long i = base + k * inner;
            y[i] = (x[i] - m) * r * w[k] + b[k];
        }
    }
}
// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w.
extern "C" __global__ void mio_norm_input_grad(const float* x, const float* w, const float* dy,
                                               float* dx, unsigned long long groups,
                                               unsigned long long c, unsigned long long inner) {
    GRID_STRIDE(g, groups) {
        unsigned long long base = group_base(g, c, inner);
        float m, r;
        group_stats(x, base, c, inner, &m, &r);
        float mg = 0.f, mgx = 0.f;
        for (unsigned long long k = 0; k < c; k++) {
            unsigned long long i = base + k * inner;
            float gk = dy[i] * w[k];
            mg += gk;
            mgx += gk * (x[i] - m) * r;
        }
        mg /= (float)c;
        mgx /= (float)c;
        for (unsigned long long k = 0; k < c; k++) {
            unsigned long long i = base + k * inner;
            dx[i] = r * (dy[i] * w[k] - mg - (x[i] - m) * r * mgx);
        }
    }
}
// Each group's mean and rstd, into stats [2G].
extern "C" __global__ void mio_norm_stats(const float* x, float* stats, unsigned long long groups,
                                          unsigned long long c, unsigned long long inner) {
    GRID_STRIDE(g, groups) {
        float m, r;
        group_stats(x, group_base(g, c, inner), c, inner, &m, &r);
        stats[2 * g] = m;
        stats[2 * g + 1] = r;
    }
}
// Partial sums of dy * xhat (weight) and dy (bias) per value k over the groups of chunk
// blockIdx.y: partial [chunks, 2C].
extern "C" __global__ void mio_norm_param_partials(const float* x, const float* dy,
                                                   const float* stats, float* partial,
                                                   unsigned long long groups, unsigned long long c,
                                                   unsigned long long inner,
                                                   unsigned long long per_chunk) {
    unsigned long long k = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (k >= c) return;
    unsigned long long g0 = blockIdx.y * per_chunk, g1 = g0 + per_chunk;
    if (g1 > groups) g1 = groups;
    float sw = 0.f, sb = 0.f;
    for (unsigned long long g = g0; g < g1; g++) {
        unsigned long long i = group_base(g, c, inner) + k * inner;
        float d = dy[i];
        sw += d * (x[i] - stats[2 * g]) * stats[2 * g + 1];
        sb += d;
    }
    partial[blockIdx.y * 2 * c + k] = sw;
    partial[blockIdx.y * 2 * c + c + k] = sb;
}
// out [width] = the sum over `rows` rows of partial [rows, width].
extern "C" __global__ void mio_sum_rows(const float* partial, float* out, unsigned long long rows,
                                        unsigned long long width) {
    GRID_STRIDE(j, width) {
        float s = 0.f;
        for (unsigned long long r = 0; r < rows; r++) s += partial[r * width + j];
        out[j] = s;
    }
}
"#;

const MODULE: &str = "mio_elementwise";

fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        nvrtc::compile_ptx(SOURCE)
            .map(|p| p.to_src())
            .map_err(|e| format!("{e:?}"))
    })
    .as_deref()
    .map_err(|e| candle_core::Error::Msg(format!("compiling mio's CUDA kernels: {e}")))
}

fn code(a: Activation) -> (i32, f32) {
    match a {
        Activation::None => (0, 0.0),
        Activation::Relu => (1, 0.0),
        Activation::LeakyRelu(s) => (2, s),
    }
}

fn config(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn view<'a>(
    s: &'a CudaStorage,
    l: &Layout,
) -> Result<candle_core::cuda::cudarc::driver::CudaView<'a, f32>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(s.as_cuda_slice::<f32>()?.slice(a..b)),
        None => candle_core::bail!("mio's CUDA kernels: the tensors must be contiguous"),
    }
}

/// `y [B, C, H, W] = act(y + bias[C])` in place.
pub fn bias_act(
    dev: &CudaDevice,
    y: &mut CudaSlice<f32>,
    (bias, lb): (&CudaStorage, &Layout),
    channels: usize,
    plane: usize,
    act: Activation,
) -> Result<()> {
    let f = dev.get_or_load_custom_func("mio_bias_act", MODULE, ptx()?)?;
    let bias = view(bias, lb)?;
    let n = y.len() as u64;
    let (plane, channels) = (plane as u64, channels as u64);
    let (kind, slope) = code(act);
    let mut b = f.builder();
    b.arg(y).arg(&bias).arg(&n).arg(&plane).arg(&channels);
    b.arg(&kind).arg(&slope);
    // SAFETY: the kernel reads `n` values of `y`, `channels` of `bias`, and writes `y`.
    unsafe { b.launch(config(n as usize)) }
        .map(|_| ())
        .map_err(|e| candle_core::Error::Msg(format!("mio_bias_act: {e:?}")))
}

fn launch_error(
    name: &'static str,
) -> impl Fn(candle_core::cuda::cudarc::driver::DriverError) -> candle_core::Error {
    move |e| candle_core::Error::Msg(format!("{name}: {e:?}"))
}

/// A new uninitialised f32 buffer of `n` values (every kernel below writes all of its output).
fn output(dev: &CudaDevice, n: usize) -> Result<CudaSlice<f32>> {
    // SAFETY: the kernel that gets it writes every value before anything reads it.
    unsafe { dev.alloc::<f32>(n) }
}

/// GELU (exact erf) of every value.
pub fn gelu(dev: &CudaDevice, (x, lx): (&CudaStorage, &Layout)) -> Result<CudaStorage> {
    let f = dev.get_or_load_custom_func("mio_gelu", MODULE, ptx()?)?;
    let x = view(x, lx)?;
    let n = x.len();
    let mut y = output(dev, n)?;
    let n64 = n as u64;
    let mut b = f.builder();
    b.arg(&x).arg(&mut y).arg(&n64);
    // SAFETY: reads and writes `n` values.
    unsafe { b.launch(config(n)) }.map_err(launch_error("mio_gelu"))?;
    Ok(CudaStorage::wrap_cuda_slice(y, dev.clone()))
}

/// `dy * gelu'(x)`.
pub fn gelu_grad(
    dev: &CudaDevice,
    (x, lx): (&CudaStorage, &Layout),
    (dy, ldy): (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    let f = dev.get_or_load_custom_func("mio_gelu_grad", MODULE, ptx()?)?;
    let (x, dy) = (view(x, lx)?, view(dy, ldy)?);
    let n = x.len();
    let mut g = output(dev, n)?;
    let n64 = n as u64;
    let mut b = f.builder();
    b.arg(&x).arg(&dy).arg(&mut g).arg(&n64);
    // SAFETY: reads `n` values of `x` and `dy`, writes `n` of `g`.
    unsafe { b.launch(config(n)) }.map_err(launch_error("mio_gelu_grad"))?;
    Ok(CudaStorage::wrap_cuda_slice(g, dev.clone()))
}

/// `gelu(t[:, :C]) * t[:, C:]` for `t [B, 2C, H, W]` into `[B, C, H, W]`; `half` = C * H * W.
pub fn gated_gelu(
    dev: &CudaDevice,
    (t, lt): (&CudaStorage, &Layout),
    half: usize,
) -> Result<CudaStorage> {
    let f = dev.get_or_load_custom_func("mio_gated_gelu", MODULE, ptx()?)?;
    let t = view(t, lt)?;
    let n = t.len() / 2;
    let mut y = output(dev, n)?;
    let (half, n64) = (half as u64, n as u64);
    let mut b = f.builder();
    b.arg(&t).arg(&mut y).arg(&half).arg(&n64);
    // SAFETY: reads 2n values of `t`, writes n of `y`.
    unsafe { b.launch(config(n)) }.map_err(launch_error("mio_gated_gelu"))?;
    Ok(CudaStorage::wrap_cuda_slice(y, dev.clone()))
}

/// `t`'s gradient `[B, 2C, H, W]` of the gated GELU from `dy [B, C, H, W]`.
pub fn gated_gelu_grad(
    dev: &CudaDevice,
    (t, lt): (&CudaStorage, &Layout),
    (dy, ldy): (&CudaStorage, &Layout),
    half: usize,
) -> Result<CudaStorage> {
    let f = dev.get_or_load_custom_func("mio_gated_gelu_grad", MODULE, ptx()?)?;
    let (t, dy) = (view(t, lt)?, view(dy, ldy)?);
    let n = dy.len();
    let mut g = output(dev, 2 * n)?;
    let (half, n64) = (half as u64, n as u64);
    let mut b = f.builder();
    b.arg(&t).arg(&dy).arg(&mut g).arg(&half).arg(&n64);
    // SAFETY: each of the `n` threads' indices writes its two values of `g` (2n in all).
    unsafe { b.launch(config(n)) }.map_err(launch_error("mio_gated_gelu_grad"))?;
    Ok(CudaStorage::wrap_cuda_slice(g, dev.clone()))
}

/// `(f + r) * (1 + scale) + shift` with `st [B, 2C]` (scale, then shift); `c` channels of
/// `plane` values.
pub fn modulate(
    dev: &CudaDevice,
    (f, lf): (&CudaStorage, &Layout),
    r: Option<(&CudaStorage, &Layout)>,
    (st, lst): (&CudaStorage, &Layout),
    c: usize,
    plane: usize,
) -> Result<CudaStorage> {
    let func = dev.get_or_load_custom_func("mio_modulate", MODULE, ptx()?)?;
    let f = view(f, lf)?;
    let r = r.map(|(r, lr)| view(r, lr)).transpose()?;
    let st = view(st, lst)?;
    let n = f.len();
    let mut y = output(dev, n)?;
    let has_r = r.is_some() as i32;
    let (c, plane, n64) = (c as u64, plane as u64, n as u64);
    let mut b = func.builder();
    b.arg(&f)
        .arg(r.as_ref().unwrap_or(&f))
        .arg(&has_r)
        .arg(&st)
        .arg(&mut y);
    b.arg(&c).arg(&plane).arg(&n64);
    // SAFETY: reads `n` values of `f` (and `r`), 2BC of `st`, writes `n` of `y`.
    unsafe { b.launch(config(n)) }.map_err(launch_error("mio_modulate"))?;
    Ok(CudaStorage::wrap_cuda_slice(y, dev.clone()))
}

/// The modulation's features gradient `dy * (1 + scale)`.
pub fn scale_by_channel(
    dev: &CudaDevice,
    (dy, ldy): (&CudaStorage, &Layout),
    (st, lst): (&CudaStorage, &Layout),
    c: usize,
    plane: usize,
) -> Result<CudaStorage> {
    let func = dev.get_or_load_custom_func("mio_scale_by_channel", MODULE, ptx()?)?;
    let (dy, st) = (view(dy, ldy)?, view(st, lst)?);
    let n = dy.len();
    let mut g = output(dev, n)?;
    let (c, plane, n64) = (c as u64, plane as u64, n as u64);
    let mut b = func.builder();
    b.arg(&dy)
        .arg(&st)
        .arg(&mut g)
        .arg(&c)
        .arg(&plane)
        .arg(&n64);
    // SAFETY: reads `n` values of `dy`, 2BC of `st`, writes `n` of `g`.
    unsafe { b.launch(config(n)) }.map_err(launch_error("mio_scale_by_channel"))?;
    Ok(CudaStorage::wrap_cuda_slice(g, dev.clone()))
}

/// The scale's and shift's gradients `[B, 2C]`: per image and channel, the sums over space of
/// `dy * (f + r)` and of `dy`.
pub fn channel_sums(
    dev: &CudaDevice,
    (dy, ldy): (&CudaStorage, &Layout),
    (f, lf): (&CudaStorage, &Layout),
    r: Option<(&CudaStorage, &Layout)>,
    (batch, c, plane): (usize, usize, usize),
) -> Result<CudaStorage> {
    let func = dev.get_or_load_custom_func("mio_channel_sums", MODULE, ptx()?)?;
    let (dy, f) = (view(dy, ldy)?, view(f, lf)?);
    let r = r.map(|(r, lr)| view(r, lr)).transpose()?;
    let mut out = output(dev, batch * 2 * c)?;
    let has_r = r.is_some() as i32;
    let (c64, plane) = (c as u64, plane as u64);
    let mut b = func.builder();
    b.arg(&dy)
        .arg(&f)
        .arg(r.as_ref().unwrap_or(&f))
        .arg(&has_r)
        .arg(&mut out);
    b.arg(&c64).arg(&plane);
    let cfg = LaunchConfig {
        grid_dim: ((batch * c) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: one block per (image, channel) row reads that row of `dy`, `f` (and `r`) and
    // writes its two sums.
    unsafe { b.launch(cfg) }.map_err(launch_error("mio_channel_sums"))?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// `dy * act'(out)` into a new tensor.
pub fn act_grad(
    dev: &CudaDevice,
    (dy, ldy): (&CudaStorage, &Layout),
    (out, lo): (&CudaStorage, &Layout),
    act: Activation,
) -> Result<CudaStorage> {
    let f = dev.get_or_load_custom_func("mio_act_grad", MODULE, ptx()?)?;
    let (dy, out) = (view(dy, ldy)?, view(out, lo)?);
    let n = dy.len();
    // SAFETY: the kernel writes all `n` values.
    let mut dx = unsafe { dev.alloc::<f32>(n)? };
    let n64 = n as u64;
    let (kind, slope) = code(act);
    let mut b = f.builder();
    b.arg(&dy)
        .arg(&out)
        .arg(&mut dx)
        .arg(&n64)
        .arg(&kind)
        .arg(&slope);
    // SAFETY: the kernel reads `n` values of `dy` and `out` and writes `n` of `dx`.
    unsafe { b.launch(config(n)) }
        .map_err(|e| candle_core::Error::Msg(format!("mio_act_grad: {e:?}")))?;
    Ok(CudaStorage::wrap_cuda_slice(dx, dev.clone()))
}

/// LayerNorm of `groups` groups of `c` values, `inner` apart (see the kernels' comment): the
/// channels of `[B, C, H, W]` with `inner` = H * W, rows of `[.., C]` with `inner` = 1.
#[derive(Clone, Copy)]
pub struct NormShape {
    pub groups: usize,
    pub c: usize,
    pub inner: usize,
}

impl NormShape {
    fn args(&self) -> (u64, u64, u64) {
        (self.groups as u64, self.c as u64, self.inner as u64)
    }
}

/// The normalised `x` times `w` plus `b`.
pub fn norm(
    dev: &CudaDevice,
    (x, lx): (&CudaStorage, &Layout),
    (w, lw): (&CudaStorage, &Layout),
    (b, lb): (&CudaStorage, &Layout),
    shape: NormShape,
) -> Result<CudaStorage> {
    let func = dev.get_or_load_custom_func("mio_norm", MODULE, ptx()?)?;
    let (x, w, b) = (view(x, lx)?, view(w, lw)?, view(b, lb)?);
    let mut y = output(dev, x.len())?;
    let (groups, c, inner) = shape.args();
    let mut l = func.builder();
    l.arg(&x)
        .arg(&w)
        .arg(&b)
        .arg(&mut y)
        .arg(&groups)
        .arg(&c)
        .arg(&inner);
    // SAFETY: each group's thread reads and writes its C values.
    unsafe { l.launch(config(shape.groups)) }.map_err(launch_error("mio_norm"))?;
    Ok(CudaStorage::wrap_cuda_slice(y, dev.clone()))
}

/// The input's gradient of [`norm`].
pub fn norm_input_grad(
    dev: &CudaDevice,
    (x, lx): (&CudaStorage, &Layout),
    (w, lw): (&CudaStorage, &Layout),
    (dy, ldy): (&CudaStorage, &Layout),
    shape: NormShape,
) -> Result<CudaStorage> {
    let func = dev.get_or_load_custom_func("mio_norm_input_grad", MODULE, ptx()?)?;
    let (x, w, dy) = (view(x, lx)?, view(w, lw)?, view(dy, ldy)?);
    let mut dx = output(dev, x.len())?;
    let (groups, c, inner) = shape.args();
    let mut l = func.builder();
    l.arg(&x).arg(&w).arg(&dy).arg(&mut dx);
    l.arg(&groups).arg(&c).arg(&inner);
    // SAFETY: each group's thread reads and writes its C values.
    unsafe { l.launch(config(shape.groups)) }.map_err(launch_error("mio_norm_input_grad"))?;
    Ok(CudaStorage::wrap_cuda_slice(dx, dev.clone()))
}

/// The weight's then the bias's gradient of [`norm`], `[2C]`: each group's statistics, partial
/// sums over chunks of groups, then the chunks summed.
pub fn norm_param_grad(
    dev: &CudaDevice,
    (x, lx): (&CudaStorage, &Layout),
    (dy, ldy): (&CudaStorage, &Layout),
    shape: NormShape,
) -> Result<CudaStorage> {
    let (x, dy) = (view(x, lx)?, view(dy, ldy)?);
    let (groups, c, inner) = shape.args();
    let mut stats = output(dev, 2 * shape.groups)?;
    let func = dev.get_or_load_custom_func("mio_norm_stats", MODULE, ptx()?)?;
    let mut l = func.builder();
    l.arg(&x).arg(&mut stats).arg(&groups).arg(&c).arg(&inner);
    // SAFETY: one thread per group writes its two statistics.
    unsafe { l.launch(config(shape.groups)) }.map_err(launch_error("mio_norm_stats"))?;

    let chunks = shape.groups.clamp(1, 512);
    let per_chunk = shape.groups.div_ceil(chunks) as u64;
    let mut partial = output(dev, chunks * 2 * shape.c)?;
    let func = dev.get_or_load_custom_func("mio_norm_param_partials", MODULE, ptx()?)?;
    let mut l = func.builder();
    l.arg(&x).arg(&dy).arg(&stats).arg(&mut partial);
    l.arg(&groups).arg(&c).arg(&inner).arg(&per_chunk);
    let cfg = LaunchConfig {
        grid_dim: (shape.c.div_ceil(128) as u32, chunks as u32, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: thread (k, chunk) reads its chunk's groups at value k and writes its two
    // partial sums; chunks past the last group write zeros.
    unsafe { l.launch(cfg) }.map_err(launch_error("mio_norm_param_partials"))?;

    let width = 2 * shape.c;
    let mut out = output(dev, width)?;
    let (rows, width64) = (chunks as u64, width as u64);
    let func = dev.get_or_load_custom_func("mio_sum_rows", MODULE, ptx()?)?;
    let mut l = func.builder();
    l.arg(&partial).arg(&mut out).arg(&rows).arg(&width64);
    // SAFETY: one thread per column sums `rows` values.
    unsafe { l.launch(config(width)) }.map_err(launch_error("mio_sum_rows"))?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

#[cfg(test)]
mod tests {
    /// The kernels' source compiles with NVRTC (no GPU needed: NVRTC runs on the CPU), and the
    /// PTX names every kernel the wrappers load.
    #[test]
    fn the_kernels_compile_with_nvrtc() {
        let ptx = super::ptx().expect("NVRTC compiles mio's kernels");
        for name in [
            "mio_bias_act",
            "mio_act_grad",
            "mio_gelu",
            "mio_gelu_grad",
            "mio_gated_gelu",
            "mio_gated_gelu_grad",
            "mio_modulate",
            "mio_scale_by_channel",
            "mio_channel_sums",
            "mio_norm",
            "mio_norm_input_grad",
            "mio_norm_stats",
            "mio_norm_param_partials",
            "mio_sum_rows",
        ] {
            assert!(
                ptx.contains(&format!(".entry {name}(")),
                "no kernel {name} in the PTX"
            );
        }
    }
}
