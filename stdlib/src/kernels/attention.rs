//! The softmax of window attention with its additive terms, as one candle custom op on the
//! CPU: `softmax(logits + bias + mask)` over the last dimension, for logits `[B * nW, heads, N,
//! N]` (one `N x N` map per window and head), the relative position bias `[heads, N, N]` and,
//! for shifted windows, the mask `[nW, N, N]`. With candle's ops it is two broadcast adds (the
//! mask's through a reshape), a max, a subtraction, an exponential, a sum and a division, each
//! a pass over the maps and a node of the backward; here one pass each way. The backward gives
//! the logits' gradient `y * (dy - sum(dy * y))` and, summed over the windows, the bias's.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::conv::{fast, slice};
use super::gate::exp_neg;
use crate::simd::{dot, lane_max, lane_sum, vector_fn};

/// `softmax(logits + bias + mask)` over the last dimension; see the module's docs for shapes.
pub fn window_softmax(logits: &Tensor, bias: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let wide = match mask {
        Some(m) => super::widened([logits, bias, m], |[l, b, m]| {
            window_softmax(&l, &b, Some(&m))
        })?,
        None => super::widened([logits, bias], |[l, b]| window_softmax(&l, &b, None))?,
    };
    if let Some(y) = wide {
        return Ok(y);
    }
    let ours = fast()
        && logits.device().is_cpu()
        && [Some(logits), Some(bias), mask]
            .iter()
            .flatten()
            .all(|t| t.dtype() == DType::F32);
    if ours {
        let mask = mask
            .map(|m| m.flatten_all()?.to_vec1::<f32>())
            .transpose()?;
        return logits
            .contiguous()?
            .apply_op2(&bias.contiguous()?, WindowSoftmax { mask });
    }
    let mut a = logits.broadcast_add(&bias.unsqueeze(0)?)?;
    if let Some(m) = mask {
        let (bw, heads, n, _) = a.dims4()?;
        let nw = m.dim(0)?;
        a = a
            .reshape((bw / nw, nw, heads, n, n))?
            .broadcast_add(&m.unsqueeze(1)?.unsqueeze(0)?)?
            .reshape((bw, heads, n, n))?;
    }
    let e = a.broadcast_sub(&a.max_keepdim(D::Minus1)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

struct WindowSoftmax {
    /// `[nW, N, N]`, row-major.
    mask: Option<Vec<f32>>,
}

impl CustomOp2 for WindowSoftmax {
    fn name(&self) -> &'static str {
        "mio-window-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (bw, heads, n, n2) = match *l1.dims() {
            [a, b, c, d] => (a, b, c, d),
            ref d => {
                candle_core::bail!("window softmax: logits must be [B*nW, heads, N, N], got {d:?}")
            }
        };
        let logits = slice(s1, l1, "the logits")?;
        let bias = slice(s2, l2, "the bias")?;
        let plane = n * n2;
        if bias.len() != heads * plane {
            candle_core::bail!(
                "window softmax: a bias of {} values for {heads} maps of {n}x{n2}",
                bias.len()
            );
        }
        let nw = match &self.mask {
            Some(m) if m.len() % plane == 0 && m.len() >= plane && bw % (m.len() / plane) == 0 => {
                m.len() / plane
            }
            Some(m) => candle_core::bail!(
                "window softmax: a mask of {} values for {bw} windows of {n}x{n2}",
                m.len()
            ),
            None => 1,
        };
        let mut out = vec![0f32; logits.len()];
        out.par_chunks_mut(plane)
            .zip(logits.par_chunks(plane))
            .enumerate()
            .for_each(|(p, (o, l))| {
                let (window, head) = (p / heads, p % heads);
                let b = &bias[head * plane..][..plane];
                let m = self
                    .mask
                    .as_ref()
                    .map(|m| &m[(window % nw) * plane..][..plane]);
                softmax_plane(o, l, b, m, n2)
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _logits: &Tensor,
        bias: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dl = y.apply_op2_no_bwd(&dy.contiguous()?, &SoftmaxGrad)?;
        let bw = dl.dim(0)?;
        let db = super::bias::column_sums(&dl.reshape((bw, ()))?)?.reshape(bias.shape())?;
        Ok((Some(dl), Some(db)))
    }
}

vector_fn! {
    /// One window's and head's map `o` (rows of `width`) as `softmax(l + b + m)` row by row: one
    /// pass per step over a row, each a vector loop (the exponential in the same loop as the
    /// running sum kept both scalar: 13% of SwinIR's step).
    fn softmax_plane(o: &mut [f32], l: &[f32], b: &[f32], m: Option<&[f32]>, width: usize) {
        for (r, o) in o.chunks_exact_mut(width).enumerate() {
            let row = r * width..(r + 1) * width;
            for ((o, &v), &bv) in o.iter_mut().zip(&l[row.clone()]).zip(&b[row.clone()]) {
                *o = v + bv;
            }
            if let Some(m) = m {
                for (o, &mv) in o.iter_mut().zip(&m[row]) {
                    *o += mv;
                }
            }
            let max = lane_max(o);
            for o in o.iter_mut() {
                *o = exp_neg(*o - max);
            }
            let inv = 1.0 / lane_sum(o);
            o.iter_mut().for_each(|o| *o *= inv);
        }
    }
}

vector_fn! {
    /// Rows of `n` of the softmax's gradient, `y * (dy - sum(dy * y))`.
    fn softmax_grad_rows(g: &mut [f32], y: &[f32], d: &[f32], n: usize) {
        for ((g, y), d) in g
            .chunks_exact_mut(n)
            .zip(y.chunks_exact(n))
            .zip(d.chunks_exact(n))
        {
            let dot = dot(y, d);
            for ((g, &yv), &dv) in g.iter_mut().zip(y).zip(d) {
                *g = yv * (dv - dot);
            }
        }
    }
}

/// `(y, dy)` to the softmax input's gradient, `y * (dy - sum(dy * y))` per row.
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "mio-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = *l1.dims().last().unwrap_or(&1);
        let y = slice(s1, l1, "the softmax")?;
        let dy = slice(s2, l2, "the output gradient")?;
        let rows = 1024 * n;
        let mut g = vec![0f32; y.len()];
        g.par_chunks_mut(rows)
            .zip(y.par_chunks(rows).zip(dy.par_chunks(rows)))
            .for_each(|(g, (y, d))| softmax_grad_rows(g, y, d, n));
        Ok((CpuStorage::F32(g), l1.shape().clone()))
    }
}
