//! The 3x3 depthwise convolution (pad 1, stride 1, with a bias) of tokens laid out as a grid
//! `[B, H, W, C]`, channels last: Uformer's LeFF. Channels-first kernels would need the tokens
//! transposed there and back (two full copies of LeFF's widest tensor, each way); here the
//! channels are the innermost run, so every tap of every pixel is one multiply-add over `C`
//! contiguous values, which the compiler vectorises, and each (image, row) is one rayon task.
//!
//! Forward and input gradient are the same kernel (the input gradient is the output gradient
//! convolved with the filter turned 180 degrees); the weight and bias gradients sum, per tap,
//! the products of shifted rows, per row in f32 and across rows in f64. Other devices and
//! dtypes go through the channels-first depthwise op.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv::{fast, slice};
use crate::simd::vector_fn;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Grid {
    batch: usize,
    h: usize,
    w: usize,
    c: usize,
}

fn grid(l: &Layout, what: &str) -> Result<Grid> {
    match *l.dims() {
        [batch, h, w, c] => Ok(Grid { batch, h, w, c }),
        ref d => {
            candle_core::bail!("token depthwise kernel: {what} must be [B, H, W, C], got {d:?}")
        }
    }
}

/// The filter as nine rows of `C` (tap-major), optionally turned 180 degrees.
fn taps(w: &[f32], c: usize, flip: bool) -> Vec<f32> {
    let mut t = vec![0f32; 9 * c];
    for ch in 0..c {
        for k in 0..9 {
            let src = if flip { 8 - k } else { k };
            t[k * c + ch] = w[ch * 9 + src];
        }
    }
    t
}

/// `out = bias + x (*) taps` over the grid, zero padding 1.
fn convolve(g: Grid, x: &[f32], taps: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let Grid { batch, h, w, c } = g;
    let row = w * c;
    let mut out = vec![0f32; batch * h * row];
    out.par_chunks_mut(row).enumerate().for_each(|(r, o)| {
        let (b, y) = (r / h, r % h);
        convolve_row(o, x, taps, bias, b * h, y, h)
    });
    out
}

/// Row `shifted - 1` (a row of the 3x3 window, `shifted = y + ky`) of the image whose rows are
/// `first..first + h` in `x` (rows of `row` values), or none past its edges (zero padding).
#[inline(always)]
fn source_row(x: &[f32], first: usize, shifted: usize, h: usize, row: usize) -> Option<&[f32]> {
    let sy = shifted.checked_sub(1).filter(|&sy| sy < h)?;
    Some(&x[(first + sy) * row..][..row])
}

/// The output pixels of a row of `w` whose tap in column `kx` of the 3x3 window lands inside
/// the row.
#[inline(always)]
fn inside(kx: usize, w: usize) -> std::ops::Range<usize> {
    match kx {
        0 => 1..w,
        1 => 0..w,
        _ => 0..w.saturating_sub(1),
    }
}

vector_fn! {
    /// Output row `y` of image rows `first..first + h`: bias, then the nine taps' products.
    fn convolve_row(
        o: &mut [f32],
        x: &[f32],
        taps: &[f32],
        bias: Option<&[f32]>,
        first: usize,
        y: usize,
        h: usize,
    ) {
        let c = taps.len() / 9;
        let (row, w) = (o.len(), o.len() / c);
        if let Some(bias) = bias {
            for px in o.chunks_exact_mut(c) {
                px.copy_from_slice(bias);
            }
        }
        for ky in 0..3 {
            let Some(src) = source_row(x, first, y + ky, h, row) else {
                continue;
            };
            for kx in 0..3 {
                let t = &taps[(ky * 3 + kx) * c..][..c];
                for px in inside(kx, w) {
                    let sx = px + kx - 1;
                    let (dst, s) = (&mut o[px * c..][..c], &src[sx * c..][..c]);
                    for ((d, &v), &k) in dst.iter_mut().zip(s).zip(t) {
                        *d += v * k;
                    }
                }
            }
        }
    }
}

vector_fn! {
    /// Adds output row `y`'s share (gradient `d`, image rows `first..first + h` of `x`) to the
    /// tap-major sums `part` (`[9 + 1, C]`: the nine taps, then the bias).
    fn weight_grad_row(part: &mut [f32], d: &[f32], x: &[f32], first: usize, y: usize, h: usize) {
        let c = part.len() / 10;
        let (row, w) = (d.len(), d.len() / c);
        for px in d.chunks_exact(c) {
            for (a, &v) in part[9 * c..].iter_mut().zip(px) {
                *a += v;
            }
        }
        for ky in 0..3 {
            let Some(src) = source_row(x, first, y + ky, h, row) else {
                continue;
            };
            for kx in 0..3 {
                let p = &mut part[(ky * 3 + kx) * c..][..c];
                for px in inside(kx, w) {
                    let sx = px + kx - 1;
                    let (dd, s) = (&d[px * c..][..c], &src[sx * c..][..c]);
                    for ((a, &v), &gv) in p.iter_mut().zip(s).zip(dd) {
                        *a += v * gv;
                    }
                }
            }
        }
    }
}

/// The weight gradient `[C, 9]` and the bias gradient `[C]`, as `[C, 10]`.
fn weight_grad(g: Grid, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let Grid { batch, h, w, c } = g;
    let row = w * c;
    let acc = (0..batch * h)
        .into_par_iter()
        .fold(
            || vec![0f64; 10 * c],
            |mut acc, r| {
                let (b, y) = (r / h, r % h);
                let d = &dy[r * row..][..row];
                let mut part = vec![0f32; 10 * c];
                weight_grad_row(&mut part, d, x, b * h, y, h);
                for (a, p) in acc.iter_mut().zip(part) {
                    *a += p as f64;
                }
                acc
            },
        )
        .reduce(|| vec![0f64; 10 * c], super::bias::add_f64);
    // Tap-major to the weight's layout: channel-major, nine taps then the bias.
    let mut out = vec![0f32; 10 * c];
    for ch in 0..c {
        for k in 0..10 {
            out[ch * 10 + k] = acc[k * c + ch] as f32;
        }
    }
    out
}

/// `(x [B, H, W, C], w [C, 1, 3, 3], b [C])` to the convolved grid.
struct TokensOp;

impl CustomOp3 for TokensOp {
    fn name(&self) -> &'static str {
        "mio-depthwise-tokens"
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
        let g = grid(l1, "the input")?;
        let w = slice(s2, l2, "the weight")?;
        let b = slice(s3, l3, "the bias")?;
        if w.len() != 9 * g.c || b.len() != g.c {
            candle_core::bail!(
                "token depthwise kernel: {} channels but a filter of {} values",
                g.c,
                w.len()
            );
        }
        let out = convolve(
            g,
            slice(s1, l1, "the input")?,
            &taps(w, g.c, false),
            Some(b),
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = dy.apply_op2_no_bwd(w, &TokensInputGrad)?;
        let dwb = x.apply_op2_no_bwd(&dy, &TokensWeightGrad)?; // [C, 10]
        let c = dwb.dim(0)?;
        let dw = dwb.narrow(1, 0, 9)?.reshape((c, 1, 3, 3))?;
        let db = dwb.narrow(1, 9, 1)?.reshape(c)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `(dy, w)` to the input gradient.
struct TokensInputGrad;

impl CustomOp2 for TokensInputGrad {
    fn name(&self) -> &'static str {
        "mio-depthwise-tokens-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = grid(l1, "the output gradient")?;
        let w = slice(s2, l2, "the weight")?;
        let dx = convolve(
            g,
            slice(s1, l1, "the output gradient")?,
            &taps(w, g.c, true),
            None,
        );
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// `(x, dy)` to the weight and bias gradients, `[C, 10]`.
struct TokensWeightGrad;

impl CustomOp2 for TokensWeightGrad {
    fn name(&self) -> &'static str {
        "mio-depthwise-tokens-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = grid(l1, "the input")?;
        let out = weight_grad(
            g,
            slice(s1, l1, "the input")?,
            slice(s2, l2, "the output gradient")?,
        );
        Ok((CpuStorage::F32(out), Shape::from((g.c, 10))))
    }
}

/// `x [B, H, W, C]` convolved channel by channel with `w [C, 1, 3, 3]` (zero padding 1),
/// plus `b [C]`: mio's channels-last kernel on the CPU for f32; elsewhere the grid goes
/// channels-first through [`depthwise_op`](super::depthwise::depthwise_op) and back.
pub fn depthwise_tokens(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    if let Some(y) = super::widened_on_cpu([x, w, b], |[x, w, b]| depthwise_tokens(&x, &w, &b))? {
        return Ok(y);
    }
    let ours = fast()
        && x.device().is_cpu()
        && [x.dtype(), w.dtype(), b.dtype()]
            .iter()
            .all(|&d| d == DType::F32)
        && w.dims4()
            .is_ok_and(|(_, one, kh, kw)| (one, kh, kw) == (1, 3, 3));
    if ours {
        return x
            .contiguous()?
            .apply_op3(&w.contiguous()?, &b.contiguous()?, TokensOp);
    }
    let c = b.elem_count();
    let y = super::depthwise::depthwise_op(&x.permute((0, 3, 1, 2))?.contiguous()?, w, 1, 1)?
        .broadcast_add(&b.reshape((1, c, 1, 1))?)?;
    y.permute((0, 2, 3, 1))?.contiguous()
}
