//! Prompt modulation `(f + r) * (1 + scale) + shift` (with an optional residual `r` added
//! first) as one candle custom op on the CPU. Written with candle's broadcasting ops it is
//! four graph nodes whose backward passes (zeroed gradients, accumulations, reductions over
//! three strided dimensions) cost more than the modulation itself; here the forward is one pass
//! and the backward two (the features' gradient, and the per-channel sums for scale and
//! shift). On a GPU the same ops run as NVRTC kernels (elementwise_cuda.rs).

#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv::{dims4, fast, slice};

/// `scale` and `shift` side by side: `[B, 2C]`.
fn packed(scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    Tensor::cat(&[scale, shift], 1)?.contiguous()
}

/// `(f + r) * (1 + scale) + shift`, broadcast over space: `f`, `r` `[B, C, H, W]`, `scale`,
/// `shift` `[B, C]`.
pub fn residual_modulate(
    f: &Tensor,
    r: Option<&Tensor>,
    scale: &Tensor,
    shift: &Tensor,
) -> Result<Tensor> {
    let wide = match r {
        Some(r) => super::widened([f, r, scale, shift], |[f, r, s, t]| {
            residual_modulate(&f, Some(&r), &s, &t)
        })?,
        None => super::widened([f, scale, shift], |[f, s, t]| {
            residual_modulate(&f, None, &s, &t)
        })?,
    };
    if let Some(y) = wide {
        return Ok(y);
    }
    let ours =
        |t: &Tensor| t.dtype() == DType::F32 && (t.device().is_cpu() || super::on_gpu(t.device()));
    if fast() && ours(f) && ours(scale) && r.is_none_or(ours) {
        let st = packed(scale, shift)?;
        let f = f.contiguous()?;
        return match r {
            Some(r) => f.apply_op3(&r.contiguous()?, &st, Modulate),
            None => f.apply_op2(&st, Modulate),
        };
    }
    let x = match r {
        Some(r) => (f + r)?,
        None => f.clone(),
    };
    let s = scale.unsqueeze(2)?.unsqueeze(3)?;
    let b = shift.unsqueeze(2)?.unsqueeze(3)?;
    x.broadcast_mul(&(s + 1.0)?)?.broadcast_add(&b)
}

/// The forward of both arities: `inputs` are `f` and optionally `r`.
struct Modulate;

pub(super) fn forward(
    inputs: &[&[f32]],
    st: &[f32],
    (b, c, plane): (usize, usize, usize),
) -> Vec<f32> {
    let mut out = vec![0f32; b * c * plane];
    out.par_chunks_mut(plane).enumerate().for_each(|(i, o)| {
        let (bi, ci) = (i / c, i % c);
        let (s, t) = (1.0 + st[bi * 2 * c + ci], st[bi * 2 * c + c + ci]);
        let f = &inputs[0][i * plane..(i + 1) * plane];
        match inputs.get(1) {
            Some(r) => {
                let r = &r[i * plane..(i + 1) * plane];
                for ((o, &f), &r) in o.iter_mut().zip(f).zip(r) {
                    *o = (f + r) * s + t;
                }
            }
            None => {
                for (o, &f) in o.iter_mut().zip(f) {
                    *o = f * s + t;
                }
            }
        }
    });
    out
}

fn check(l: &Layout, st: &Layout) -> Result<(usize, usize, usize)> {
    let (b, c, h, w) = dims4(l, "the features")?;
    if st.shape().dims() != [b, 2 * c] {
        candle_core::bail!(
            "modulation: scale and shift {:?} for features {:?}",
            st.shape(),
            l.shape()
        );
    }
    Ok((b, c, h * w))
}

impl CustomOp2 for Modulate {
    fn name(&self) -> &'static str {
        "mio-modulate"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = check(l1, l2)?;
        let f = slice(s1, l1, "the features")?;
        let st = slice(s2, l2, "scale and shift")?;
        Ok((CpuStorage::F32(forward(&[f], st, dims)), l1.shape().clone()))
    }

    fn bwd(
        &self,
        f: &Tensor,
        st: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let df = dy.apply_op2_no_bwd(st, &ScaleByChannel)?;
        let dst = dy.apply_op2_no_bwd(f, &ChannelSums)?;
        Ok((Some(df), Some(dst)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (_, c, plane) = check(l1, l2)?;
        let y = super::elementwise_cuda::modulate(&s1.device, (s1, l1), None, (s2, l2), c, plane)?;
        Ok((y, l1.shape().clone()))
    }
}

impl CustomOp3 for Modulate {
    fn name(&self) -> &'static str {
        "mio-residual-modulate"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = check(l1, l3)?;
        if l2.shape() != l1.shape() {
            candle_core::bail!(
                "modulation: a residual {:?} for features {:?}",
                l2.shape(),
                l1.shape()
            );
        }
        let f = slice(s1, l1, "the features")?;
        let r = slice(s2, l2, "the residual")?;
        let st = slice(s3, l3, "scale and shift")?;
        Ok((
            CpuStorage::F32(forward(&[f, r], st, dims)),
            l1.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        f: &Tensor,
        r: &Tensor,
        st: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        // f and r get the same gradient.
        let df = dy.apply_op2_no_bwd(st, &ScaleByChannel)?;
        let dst = dy.apply_op3_no_bwd(f, r, &ChannelSums)?;
        Ok((Some(df.clone()), Some(df), Some(dst)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (_, c, plane) = check(l1, l3)?;
        if l2.shape() != l1.shape() {
            candle_core::bail!(
                "modulation: a residual {:?} for features {:?}",
                l2.shape(),
                l1.shape()
            );
        }
        let y = super::elementwise_cuda::modulate(
            &s1.device,
            (s1, l1),
            Some((s2, l2)),
            (s3, l3),
            c,
            plane,
        )?;
        Ok((y, l1.shape().clone()))
    }
}

/// The backward of `(f + r) * (1 + scale) + shift` in one pass over `dy`: `dy * (1 + scale)`
/// (the gradient of `f` and of `r`) and, as [`sums`], the scale's and shift's `[B, 2C]`
/// gradients from `sum = f + r`.
pub(super) fn residual_backward(
    dy: &[f32],
    sum: &[f32],
    st: &[f32],
    (b, c, plane): (usize, usize, usize),
) -> (Vec<f32>, Vec<f32>) {
    let mut dsum = vec![0f32; b * c * plane];
    let pairs: Vec<(f64, f64)> = dsum
        .par_chunks_mut(plane)
        .enumerate()
        .map(|(i, out)| {
            let s = 1.0 + st[(i / c) * 2 * c + i % c];
            let (d, f) = (
                &dy[i * plane..(i + 1) * plane],
                &sum[i * plane..(i + 1) * plane],
            );
            let (mut ds, mut dt) = (0f64, 0f64);
            // Rows of f32 partial sums, accumulated in f64 across rows (as `sums`).
            for ((o, d), f) in out.chunks_mut(256).zip(d.chunks(256)).zip(f.chunks(256)) {
                let (mut a, mut t) = (0f32, 0f32);
                for ((o, &d), &f) in o.iter_mut().zip(d).zip(f) {
                    *o = d * s;
                    a += d * f;
                    t += d;
                }
                ds += a as f64;
                dt += t as f64;
            }
            (ds, dt)
        })
        .collect();
    (dsum, scale_shift_rows(pairs, b, c))
}

/// Per-(image, channel) pairs of the scale's and the shift's gradients laid out as `[B, 2C]`.
fn scale_shift_rows(pairs: Vec<(f64, f64)>, b: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0f32; b * 2 * c];
    for (i, (ds, dt)) in pairs.into_iter().enumerate() {
        let (bi, ci) = (i / c, i % c);
        out[bi * 2 * c + ci] = ds as f32;
        out[bi * 2 * c + c + ci] = dt as f32;
    }
    out
}

/// `(dy, st)` to `dy * (1 + scale)`.
struct ScaleByChannel;

impl CustomOp2 for ScaleByChannel {
    fn name(&self) -> &'static str {
        "mio-modulate-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, plane) = check(l1, l2)?;
        let dy = slice(s1, l1, "the output gradient")?;
        let st = slice(s2, l2, "scale and shift")?;
        let mut out = vec![0f32; dy.len()];
        out.par_chunks_mut(plane).enumerate().for_each(|(i, o)| {
            let s = 1.0 + st[(i / c) * 2 * c + i % c];
            for (o, &d) in o.iter_mut().zip(&dy[i * plane..(i + 1) * plane]) {
                *o = d * s;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (_, c, plane) = check(l1, l2)?;
        let g =
            super::elementwise_cuda::scale_by_channel(&s1.device, (s1, l1), (s2, l2), c, plane)?;
        Ok((g, l1.shape().clone()))
    }
}

/// `(dy, f[, r])` to `[B, 2C]`: per image and channel, the sum over space of `dy * (f + r)`
/// (the scale's gradient) and of `dy` (the shift's).
struct ChannelSums;

fn sums(dy: &[f32], inputs: &[&[f32]], (b, c, plane): (usize, usize, usize)) -> Vec<f32> {
    let pairs: Vec<(f64, f64)> = (0..b * c)
        .into_par_iter()
        .map(|i| {
            let d = &dy[i * plane..(i + 1) * plane];
            let f = &inputs[0][i * plane..(i + 1) * plane];
            let (mut ds, mut dt) = (0f64, 0f64);
            // Rows of f32 partial sums, accumulated in f64 across rows.
            for (k, dd) in d.chunks(256).enumerate() {
                let ff = &f[k * 256..k * 256 + dd.len()];
                let (mut s, mut t) = (0f32, 0f32);
                match inputs.get(1) {
                    Some(r) => {
                        let rr = &r[i * plane + k * 256..i * plane + k * 256 + dd.len()];
                        for ((&d, &f), &r) in dd.iter().zip(ff).zip(rr) {
                            s += d * (f + r);
                            t += d;
                        }
                    }
                    None => {
                        for (&d, &f) in dd.iter().zip(ff) {
                            s += d * f;
                            t += d;
                        }
                    }
                }
                ds += s as f64;
                dt += t as f64;
            }
            (ds, dt)
        })
        .collect();
    scale_shift_rows(pairs, b, c)
}

impl CustomOp2 for ChannelSums {
    fn name(&self) -> &'static str {
        "mio-modulate-sums"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = dims4(l1, "the output gradient")?;
        let dy = slice(s1, l1, "the output gradient")?;
        let f = slice(s2, l2, "the features")?;
        Ok((
            CpuStorage::F32(sums(dy, &[f], (b, c, h * w))),
            Shape::from((b, 2 * c)),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (b, c, h, w) = dims4(l1, "the output gradient")?;
        let out = super::elementwise_cuda::channel_sums(
            &s1.device,
            (s1, l1),
            (s2, l2),
            None,
            (b, c, h * w),
        )?;
        Ok((out, Shape::from((b, 2 * c))))
    }
}

impl CustomOp3 for ChannelSums {
    fn name(&self) -> &'static str {
        "mio-residual-modulate-sums"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = dims4(l1, "the output gradient")?;
        let dy = slice(s1, l1, "the output gradient")?;
        let f = slice(s2, l2, "the features")?;
        let r = slice(s3, l3, "the residual")?;
        Ok((
            CpuStorage::F32(sums(dy, &[f, r], (b, c, h * w))),
            Shape::from((b, 2 * c)),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (b, c, h, w) = dims4(l1, "the output gradient")?;
        let out = super::elementwise_cuda::channel_sums(
            &s1.device,
            (s1, l1),
            (s2, l2),
            Some((s3, l3)),
            (b, c, h * w),
        )?;
        Ok((out, Shape::from((b, 2 * c))))
    }
}
