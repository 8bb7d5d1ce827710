//! LayerNorm over the channels of `[B, C, H, W]` (Restormer's "WithBias" LayerNorm: per pixel,
//! eps 1e-5, biased variance, a weight and a bias per channel) as candle custom ops on the CPU.
//! With candle's ops it is nine graph nodes whose reductions run across the strided channel
//! dimension on one thread; here each image is a task, its statistics are accumulated plane by
//! plane (contiguous rows, vectorised), and the backward is two passes: the input's gradient,
//! and the weight's and bias's. And the transformers' LayerNorm over the last dimension of
//! tokens ([`row_norm`]), the same ops on contiguous rows. On a GPU both run as NVRTC kernels
//! (elementwise_cuda.rs: one thread per normalised group of values).

#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::conv::{dims4, fast, slice};
use crate::simd::{lane_sum, lane_sum_by, vector_fn};

const EPS: f32 = 1e-5;

/// `(x - mean_c(x)) / sqrt(var_c(x) + 1e-5) * weight + bias`, over the channels of `x`
/// `[B, C, H, W]`; `weight` and `bias` `[C]`.
pub fn channel_norm(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if let Some(y) = super::widened([x, weight, bias], |[x, w, b]| channel_norm(&x, &w, &b))? {
        return Ok(y);
    }
    let c = x.dim(1)?;
    if ours(x, weight, bias) {
        return x
            .contiguous()?
            .apply_op3(&weight.contiguous()?, &bias.contiguous()?, ChannelNorm);
    }
    let mean = x.mean_keepdim(1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(1)?;
    centred
        .broadcast_div(&(var + EPS as f64)?.sqrt()?)?
        .broadcast_mul(&weight.reshape((1, c, 1, 1))?)?
        .broadcast_add(&bias.reshape((1, c, 1, 1))?)
}

/// Whether mio's ops run: f32 on the CPU, or on a GPU (NVRTC kernels).
fn ours(x: &Tensor, weight: &Tensor, bias: &Tensor) -> bool {
    fast()
        && (x.device().is_cpu() || super::on_gpu(x.device()))
        && [x, weight, bias].iter().all(|t| t.dtype() == DType::F32)
}

/// The GPU kernels' view of a channel norm over `[B, C, H, W]`.
#[cfg(feature = "cuda")]
fn channel_groups(l: &Layout) -> Result<super::elementwise_cuda::NormShape> {
    let (b, c, h, w) = dims4(l, "the features")?;
    Ok(super::elementwise_cuda::NormShape {
        groups: b * h * w,
        c,
        inner: h * w,
    })
}

/// The GPU kernels' view of a row norm over the last dimension.
#[cfg(feature = "cuda")]
fn row_groups(l: &Layout) -> Result<super::elementwise_cuda::NormShape> {
    let c = *l.dims().last().unwrap_or(&0);
    if c == 0 {
        candle_core::bail!("row norm: empty rows");
    }
    Ok(super::elementwise_cuda::NormShape {
        groups: l.shape().elem_count() / c,
        c,
        inner: 1,
    })
}

/// Per pixel of one image `[C, P]`: the mean and the reciprocal standard deviation.
fn statistics(img: &[f32], c: usize, plane: usize) -> (Vec<f32>, Vec<f32>) {
    let mut mean = vec![0f32; plane];
    for ch in img.chunks_exact(plane) {
        for (m, &v) in mean.iter_mut().zip(ch) {
            *m += v;
        }
    }
    let inv = 1.0 / c as f32;
    mean.iter_mut().for_each(|m| *m *= inv);
    // Two passes (the centred sum of squares), as stable as PyTorch's.
    let mut var = vec![0f32; plane];
    for ch in img.chunks_exact(plane) {
        for ((s, &v), &m) in var.iter_mut().zip(ch).zip(&mean) {
            let d = v - m;
            *s += d * d;
        }
    }
    let rstd = var.iter().map(|&s| 1.0 / (s * inv + EPS).sqrt()).collect();
    (mean, rstd)
}

struct ChannelNorm;

impl CustomOp3 for ChannelNorm {
    fn name(&self) -> &'static str {
        "mio-channel-norm"
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
        let (_, c, h, w) = dims4(l1, "the features")?;
        let x = slice(s1, l1, "the features")?;
        let weight = slice(s2, l2, "the weight")?;
        let bias = slice(s3, l3, "the bias")?;
        if weight.len() != c || bias.len() != c {
            candle_core::bail!("channel norm: a weight or bias of the wrong size for {c} channels");
        }
        let plane = h * w;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(c * plane)
            .zip(x.par_chunks(c * plane))
            .for_each(|(o, img)| {
                let (mean, rstd) = statistics(img, c, plane);
                for (k, (oc, xc)) in o
                    .chunks_exact_mut(plane)
                    .zip(img.chunks_exact(plane))
                    .enumerate()
                {
                    let (wk, bk) = (weight[k], bias[k]);
                    for (((o, &v), &m), &r) in oc.iter_mut().zip(xc).zip(&mean).zip(&rstd) {
                        *o = (v - m) * r * wk + bk;
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = x.apply_op3_no_bwd(weight, &dy, &NormInputGrad)?;
        let params = x.apply_op2_no_bwd(&dy, &NormParamGrad)?;
        let c = weight.dim(0)?;
        Ok((
            Some(dx),
            Some(params.narrow(0, 0, c)?),
            Some(params.narrow(0, c, c)?),
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
        let shape = channel_groups(l1)?;
        if l2.shape().elem_count() != shape.c || l3.shape().elem_count() != shape.c {
            candle_core::bail!(
                "channel norm: a weight or bias of the wrong size for {} channels",
                shape.c
            );
        }
        let y = super::elementwise_cuda::norm(&s1.device, (s1, l1), (s2, l2), (s3, l3), shape)?;
        Ok((y, l1.shape().clone()))
    }
}

/// `(x, weight, dy)` to the input's gradient: with `xhat` the normalised input and
/// `g = dy * weight`, `rstd * (g - mean_c(g) - xhat * mean_c(g * xhat))`.
struct NormInputGrad;

impl CustomOp3 for NormInputGrad {
    fn name(&self) -> &'static str {
        "mio-channel-norm-input-grad"
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
        let (_, c, h, w) = dims4(l1, "the features")?;
        let x = slice(s1, l1, "the features")?;
        let weight = slice(s2, l2, "the weight")?;
        let dy = slice(s3, l3, "the output gradient")?;
        let plane = h * w;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(c * plane)
            .zip(x.par_chunks(c * plane).zip(dy.par_chunks(c * plane)))
            .for_each(|(o, (img, d))| {
                let (mean, rstd) = statistics(img, c, plane);
                // Per pixel: the channel means of g and of g * xhat.
                let (mut mg, mut mgx) = (vec![0f32; plane], vec![0f32; plane]);
                for k in 0..c {
                    let (xc, dc) = (
                        &img[k * plane..(k + 1) * plane],
                        &d[k * plane..(k + 1) * plane],
                    );
                    let wk = weight[k];
                    for p in 0..plane {
                        let g = dc[p] * wk;
                        mg[p] += g;
                        mgx[p] += g * (xc[p] - mean[p]) * rstd[p];
                    }
                }
                let inv = 1.0 / c as f32;
                for k in 0..c {
                    let (xc, dc) = (
                        &img[k * plane..(k + 1) * plane],
                        &d[k * plane..(k + 1) * plane],
                    );
                    let oc = &mut o[k * plane..(k + 1) * plane];
                    let wk = weight[k];
                    for p in 0..plane {
                        let xhat = (xc[p] - mean[p]) * rstd[p];
                        oc[p] = rstd[p] * (dc[p] * wk - mg[p] * inv - xhat * mgx[p] * inv);
                    }
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
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
        let shape = channel_groups(l1)?;
        let dx = super::elementwise_cuda::norm_input_grad(
            &s1.device,
            (s1, l1),
            (s2, l2),
            (s3, l3),
            shape,
        )?;
        Ok((dx, l1.shape().clone()))
    }
}

/// `(x, dy)` to `[2C]`: the weight's gradient (the sum of `dy * xhat` over images and pixels)
/// then the bias's (the sum of `dy`).
struct NormParamGrad;

impl CustomOp2 for NormParamGrad {
    fn name(&self) -> &'static str {
        "mio-channel-norm-param-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = dims4(l1, "the features")?;
        let x = slice(s1, l1, "the features")?;
        let dy = slice(s2, l2, "the output gradient")?;
        let plane = h * w;
        let per_image: Vec<Vec<f64>> = x
            .par_chunks(c * plane)
            .zip(dy.par_chunks(c * plane))
            .map(|(img, d)| {
                let (mean, rstd) = statistics(img, c, plane);
                let mut sums = vec![0f64; 2 * c];
                for k in 0..c {
                    let (xc, dc) = (
                        &img[k * plane..(k + 1) * plane],
                        &d[k * plane..(k + 1) * plane],
                    );
                    let (mut sw, mut sb) = (0f32, 0f32);
                    for p in 0..plane {
                        sw += dc[p] * (xc[p] - mean[p]) * rstd[p];
                        sb += dc[p];
                    }
                    sums[k] = sw as f64;
                    sums[c + k] = sb as f64;
                }
                sums
            })
            .collect();
        let mut out = vec![0f32; 2 * c];
        for (k, o) in out.iter_mut().enumerate() {
            *o = per_image.iter().map(|s| s[k]).sum::<f64>() as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from(2 * c)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let shape = channel_groups(l1)?;
        let g = super::elementwise_cuda::norm_param_grad(&s1.device, (s1, l1), (s2, l2), shape)?;
        Ok((g, Shape::from(2 * shape.c)))
    }
}

/// `torch.nn.LayerNorm(C)`: each row of `C` values along the last dimension normalised (eps
/// 1e-5, biased variance), times `weight`, plus `bias` (`[C]` each). On the CPU one op whose
/// rows are contiguous runs (SwinIR's and Uformer's tokens); candle's ops elsewhere.
pub fn row_norm(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if let Some(y) = super::widened([x, weight, bias], |[x, w, b]| row_norm(&x, &w, &b))? {
        return Ok(y);
    }
    if ours(x, weight, bias) {
        return x
            .contiguous()?
            .apply_op3(&weight.contiguous()?, &bias.contiguous()?, RowNorm);
    }
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + EPS as f64)?.sqrt()?)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)
}

/// Rows per rayon task.
const ROWS: usize = 256;

// The row kernels' loops, each compiled for AVX2 too (`vector_fn!`). Rows are as wide as
// `weight`.

vector_fn! {
    fn row_norm_rows(o: &mut [f32], x: &[f32], weight: &[f32], bias: &[f32]) {
        let c = weight.len();
        for (o, row) in o.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            let (mean, rstd) = row_statistics(row);
            for (((o, &v), &w), &b) in o.iter_mut().zip(row).zip(weight).zip(bias) {
                *o = (v - mean) * rstd * w + b;
            }
        }
    }
}

vector_fn! {
    fn row_norm_input_grad_rows(o: &mut [f32], x: &[f32], d: &[f32], weight: &[f32]) {
        let c = weight.len();
        let inv = 1.0 / c as f32;
        for ((o, row), d) in o
            .chunks_exact_mut(c)
            .zip(x.chunks_exact(c))
            .zip(d.chunks_exact(c))
        {
            let (mean, rstd) = row_statistics(row);
            // g = dy * weight, kept in the output row for the two sums.
            for ((o, &dv), &w) in o.iter_mut().zip(d).zip(weight) {
                *o = dv * w;
            }
            let mg = lane_sum(o) * inv;
            let mgx = lane_sum_by(o, row, |g, v| g * (v - mean) * rstd) * inv;
            for (o, &v) in o.iter_mut().zip(row) {
                let xhat = (v - mean) * rstd;
                *o = rstd * (*o - mg - xhat * mgx);
            }
        }
    }
}

vector_fn! {
    /// Adds the rows' `dy * xhat` to `part[..c]` and their `dy` to `part[c..]`.
    fn row_norm_param_sums(part: &mut [f32], x: &[f32], d: &[f32]) {
        let c = part.len() / 2;
        for (row, d) in x.chunks_exact(c).zip(d.chunks_exact(c)) {
            let (mean, rstd) = row_statistics(row);
            let (pw, pb) = part.split_at_mut(c);
            for (((sw, sb), &v), &dv) in pw.iter_mut().zip(pb.iter_mut()).zip(row).zip(d) {
                *sw += dv * (v - mean) * rstd;
                *sb += dv;
            }
        }
    }
}

/// A row's mean and reciprocal standard deviation (two passes, as stable as PyTorch's).
#[inline(always)]
fn row_statistics(row: &[f32]) -> (f32, f32) {
    let inv = 1.0 / row.len() as f32;
    let mean = lane_sum(row) * inv;
    let var = lane_sum_by(row, row, |v, _| (v - mean) * (v - mean)) * inv;
    (mean, 1.0 / (var + EPS).sqrt())
}

fn row_width(l: &Layout, weight: usize, bias: usize) -> Result<usize> {
    let c = *l.dims().last().unwrap_or(&0);
    if c == 0 || weight != c || bias != c {
        candle_core::bail!(
            "row norm: rows of {c} values but a weight of {weight} and a bias of {bias}"
        );
    }
    Ok(c)
}

struct RowNorm;

impl CustomOp3 for RowNorm {
    fn name(&self) -> &'static str {
        "mio-row-norm"
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
        let x = slice(s1, l1, "the input")?;
        let weight = slice(s2, l2, "the weight")?;
        let bias = slice(s3, l3, "the bias")?;
        let c = row_width(l1, weight.len(), bias.len())?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(c * ROWS)
            .zip(x.par_chunks(c * ROWS))
            .for_each(|(o, x)| row_norm_rows(o, x, weight, bias));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = x.apply_op3_no_bwd(weight, &dy, &RowNormInputGrad)?;
        let params = x.apply_op2_no_bwd(&dy, &RowNormParamGrad)?;
        let c = weight.dim(0)?;
        Ok((
            Some(dx),
            Some(params.narrow(0, 0, c)?),
            Some(params.narrow(0, c, c)?),
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
        let shape = row_groups(l1)?;
        row_width(l1, l2.shape().elem_count(), l3.shape().elem_count())?;
        let y = super::elementwise_cuda::norm(&s1.device, (s1, l1), (s2, l2), (s3, l3), shape)?;
        Ok((y, l1.shape().clone()))
    }
}

/// `(x, weight, dy)` to the input's gradient: `rstd * (g - mean(g) - xhat * mean(g * xhat))`
/// per row, with `g = dy * weight`.
struct RowNormInputGrad;

impl CustomOp3 for RowNormInputGrad {
    fn name(&self) -> &'static str {
        "mio-row-norm-input-grad"
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
        let x = slice(s1, l1, "the input")?;
        let weight = slice(s2, l2, "the weight")?;
        let dy = slice(s3, l3, "the output gradient")?;
        let c = row_width(l1, weight.len(), weight.len())?;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(c * ROWS)
            .zip(x.par_chunks(c * ROWS).zip(dy.par_chunks(c * ROWS)))
            .for_each(|(o, (x, d))| row_norm_input_grad_rows(o, x, d, weight));
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
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
        let shape = row_groups(l1)?;
        let dx = super::elementwise_cuda::norm_input_grad(
            &s1.device,
            (s1, l1),
            (s2, l2),
            (s3, l3),
            shape,
        )?;
        Ok((dx, l1.shape().clone()))
    }
}

/// `(x, dy)` to `[2C]`: the weight's gradient (the sum of `dy * xhat` over rows) then the
/// bias's (the sum of `dy`).
struct RowNormParamGrad;

impl CustomOp2 for RowNormParamGrad {
    fn name(&self) -> &'static str {
        "mio-row-norm-param-grad"
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
        let c = *l1.dims().last().unwrap_or(&0);
        if c == 0 {
            candle_core::bail!("row norm: empty rows");
        }
        let sums = x
            .par_chunks(c * ROWS)
            .zip(dy.par_chunks(c * ROWS))
            .map(|(x, d)| {
                let mut part = vec![0f32; 2 * c];
                row_norm_param_sums(&mut part, x, d);
                part.into_iter().map(f64::from).collect::<Vec<f64>>()
            })
            .reduce(|| vec![0f64; 2 * c], super::bias::add_f64);
        let out: Vec<f32> = sums.into_iter().map(|v| v as f32).collect();
        Ok((CpuStorage::F32(out), Shape::from(2 * c)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let shape = row_groups(l1)?;
        let g = super::elementwise_cuda::norm_param_grad(&s1.device, (s1, l1), (s2, l2), shape)?;
        Ok((g, Shape::from(2 * shape.c)))
    }
}
