//! Restormer's gated feed-forward activation, `gelu(a) * b` for the two halves `a`, `b` of the
//! channels of `[B, 2C, H, W]` (GELU with the exact erf), as one candle custom op on the CPU:
//! with candle's ops it is a strided split, an erf per element from libm, and a backward of
//! several more nodes. The plain GELU of the transformers' MLPs (SwinIR, Uformer's LeFF) too.

#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv::{dims4, fast, slice};
use crate::simd::vector_fn;

/// e^x for x <= 0 (all the gate needs), without a call into libm so loops over it vectorise:
/// x = n ln 2 + r with |r| <= ln 2 / 2, e^r from its degree-6 Taylor polynomial (relative
/// error under 2e-7), times 2^n built in the exponent bits. Below -87 it is e^-87.
#[inline(always)]
pub(super) fn exp_neg(x: f32) -> f32 {
    let x = x.max(-87.0);
    // Rounded to the nearest integer by adding and taking away 1.5 * 2^23, which leaves no
    // fraction bits: `f32::round` is a call into libm on the baseline x86-64 target and
    // would keep the loops from vectorising.
    const SHIFT: f32 = 12_582_912.0;
    let shifted = x * std::f32::consts::LOG2_E + SHIFT;
    let n = shifted - SHIFT;
    // ln 2 in two parts (Cody and Waite), so r keeps its precision.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n from the integer n in `shifted`'s low bits (its ulp is 1), in integer arithmetic:
    // a float-to-integer `as` saturates, which kept the loops scalar. n is in -126..=0.
    let biased = shifted
        .to_bits()
        .wrapping_sub(SHIFT.to_bits())
        .wrapping_add(127);
    p * f32::from_bits(biased << 23)
}

/// erf to 1.5e-7 (Abramowitz and Stegun 7.1.26), in f32.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp_neg(-a * a);
    if x < 0.0 {
        -y
    } else {
        y
    }
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// gelu(x) and its derivative.
#[inline(always)]
fn gelu_and_slope(x: f32) -> (f32, f32) {
    let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
    let pdf = INV_SQRT_2PI * exp_neg(-0.5 * x * x);
    (x * cdf, cdf + x * pdf)
}

/// `gelu(t[:, :C]) * t[:, C:]` for `t` `[B, 2C, H, W]`.
pub fn gated_gelu(t: &Tensor) -> Result<Tensor> {
    if let Some(y) = super::widened([t], |[t]| gated_gelu(&t))? {
        return Ok(y);
    }
    let half = t.dim(1)? / 2;
    if ours(t) {
        return t.contiguous()?.apply_op1(GatedGelu);
    }
    t.narrow(1, 0, half)?.gelu_erf()? * t.narrow(1, half, half)?
}

/// Whether mio's op runs for `t`: f32 on the CPU, or on a GPU (NVRTC kernels).
fn ours(t: &Tensor) -> bool {
    fast() && t.dtype() == DType::F32 && (t.device().is_cpu() || super::on_gpu(t.device()))
}

struct GatedGelu;

fn halves(l: &Layout) -> Result<(usize, usize, usize)> {
    let (b, c2, h, w) = dims4(l, "the features")?;
    if c2 % 2 != 0 {
        candle_core::bail!("gated gelu: an odd channel count {c2}");
    }
    Ok((b, c2 / 2, h * w))
}

impl CustomOp1 for GatedGelu {
    fn name(&self) -> &'static str {
        "mio-gated-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, plane) = halves(l)?;
        let t = slice(s, l, "the features")?;
        let n = c * plane;
        let mut out = vec![0f32; b * n];
        out.par_chunks_mut(plane).enumerate().for_each(|(i, o)| {
            let (bi, ci) = (i / c, i % c);
            let a = &t[bi * 2 * n + ci * plane..][..plane];
            let v = &t[bi * 2 * n + n + ci * plane..][..plane];
            gated_gelu_rows(o, a, v)
        });
        let (_, _, h, w) = dims4(l, "the features")?;
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }

    fn bwd(&self, t: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(t.apply_op2_no_bwd(&dy.contiguous()?, &GatedGeluGrad)?))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (b, c, plane) = halves(l)?;
        let (_, _, h, w) = dims4(l, "the features")?;
        let y = super::elementwise_cuda::gated_gelu(&s.device, (s, l), c * plane)?;
        Ok((y, Shape::from((b, c, h, w))))
    }
}

/// `(t, dy)` to `t`'s gradient: `dy * v * gelu'(a)` for the gate half, `dy * gelu(a)` for the
/// value half.
struct GatedGeluGrad;

impl candle_core::CustomOp2 for GatedGeluGrad {
    fn name(&self) -> &'static str {
        "mio-gated-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, plane) = halves(l1)?;
        let t = slice(s1, l1, "the features")?;
        let dy = slice(s2, l2, "the output gradient")?;
        let n = c * plane;
        let mut g = vec![0f32; 2 * b * n];
        g.par_chunks_mut(2 * n).enumerate().for_each(|(bi, gi)| {
            let (ga, gv) = gi.split_at_mut(n);
            let (a, v) = t[bi * 2 * n..(bi + 1) * 2 * n].split_at(n);
            let d = &dy[bi * n..(bi + 1) * n];
            gated_gelu_grad_rows(ga, gv, a, v, d)
        });
        Ok((CpuStorage::F32(g), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (_, c, plane) = halves(l1)?;
        let g =
            super::elementwise_cuda::gated_gelu_grad(&s1.device, (s1, l1), (s2, l2), c * plane)?;
        Ok((g, l1.shape().clone()))
    }
}

/// GELU with the exact erf, `x * Phi(x)`, element by element: one custom op on the CPU (candle's
/// `gelu_erf` calls libm's scalar erf per element and records a backward of several nodes).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if let Some(y) = super::widened([x], |[x]| gelu(&x))? {
        return Ok(y);
    }
    if ours(x) {
        return x.contiguous()?.apply_op1(Gelu);
    }
    x.gelu_erf()
}

// The loops, each compiled for AVX2 too (`vector_fn!`).

vector_fn! {
    fn gated_gelu_rows(o: &mut [f32], a: &[f32], v: &[f32]) {
        for ((o, &a), &v) in o.iter_mut().zip(a).zip(v) {
            *o = gelu_and_slope(a).0 * v;
        }
    }
}

vector_fn! {
    fn gated_gelu_grad_rows(ga: &mut [f32], gv: &mut [f32], a: &[f32], v: &[f32], d: &[f32]) {
        for ((((ga, gv), &a), &v), &d) in ga.iter_mut().zip(gv).zip(a).zip(v).zip(d) {
            let (gelu, slope) = gelu_and_slope(a);
            *ga = d * v * slope;
            *gv = d * gelu;
        }
    }
}

vector_fn! {
    fn gelu_rows(o: &mut [f32], x: &[f32]) {
        for (o, &v) in o.iter_mut().zip(x) {
            *o = gelu_and_slope(v).0;
        }
    }
}

vector_fn! {
    fn gelu_grad_rows(g: &mut [f32], x: &[f32], d: &[f32]) {
        for ((g, &v), &d) in g.iter_mut().zip(x).zip(d) {
            *g = d * gelu_and_slope(v).1;
        }
    }
}

/// Elements per rayon task of the element-wise ops.
const CHUNK: usize = 1 << 14;

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "mio-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "the input")?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, x)| gelu_rows(o, x));
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&dy.contiguous()?, &GeluGrad)?))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let y = super::elementwise_cuda::gelu(&s.device, (s, l))?;
        Ok((y, l.shape().clone()))
    }
}

/// `(x, dy)` to `dy * gelu'(x)`.
struct GeluGrad;

impl candle_core::CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "mio-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "the input")?;
        let dy = slice(s2, l2, "the output gradient")?;
        let mut g = vec![0f32; x.len()];
        g.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
            .for_each(|(g, (x, d))| gelu_grad_rows(g, x, d));
        Ok((CpuStorage::F32(g), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let g = super::elementwise_cuda::gelu_grad(&s1.device, (s1, l1), (s2, l2))?;
        Ok((g, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exponential_and_erf_are_accurate_over_the_range_the_gate_uses() {
        let mut worst_exp = 0f64;
        let mut worst_erf = 0f64;
        for i in 0..=200_000 {
            let x = (-87.0 * i as f64 / 200_000.0) as f32;
            let want = (x as f64).exp();
            worst_exp = worst_exp.max(((exp_neg(x) as f64 - want) / want).abs());
        }
        assert!(worst_exp < 5e-7, "exp relative error {worst_exp}");
        assert_eq!(exp_neg(0.0), 1.0);
        let tiny = exp_neg(-1e4);
        assert!(
            tiny.is_finite() && (0.0..1e-37).contains(&tiny),
            "e^-10000 gave {tiny}"
        );
        // erf at points whose values are known to 10 digits.
        for (x, want) in [
            (0.0f32, 0.0f64),
            (0.1, 0.112_462_916_0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (2.0, 0.995_322_265_0),
            (-1.5, -0.966_105_146_5),
            (3.5, 0.999_999_256_9),
        ] {
            worst_erf = worst_erf.max((erf(x) as f64 - want).abs());
        }
        assert!(worst_erf < 5e-7, "erf error {worst_erf}");
    }
}
