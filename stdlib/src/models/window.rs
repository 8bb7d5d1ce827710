//! What the window-attention transformers (SwinIR, Uformer) share: LayerNorm over tokens, the
//! softmax, the split of a token grid into (shifted) windows and back, the relative position
//! bias and the shifted windows' mask, and attention inside each window. LayerNorm is mio's
//! kernel on the CPU (kernels/norm.rs); the rest is differentiable ops (candle's fused softmax
//! returns no gradient).

use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::kernels::attention::window_softmax;
use crate::kernels::bias::add_bias_rows;
use crate::kernels::norm::row_norm;
use crate::kernels::{matmul, widened};

/// `torch.nn.Linear` on tokens `[.., in]` (`weight [out, in]`, `bias [out]`): one matrix
/// product over all the tokens and the bias added by mio's row op (kernels/bias.rs), whose
/// gradient is a fast column sum.
pub(super) struct TokenLinear {
    weight: Tensor,
    bias: Tensor,
}

impl TokenLinear {
    pub(super) fn new(cin: usize, cout: usize, vb: VarBuilder) -> Result<Self> {
        // Placeholder values: the models' init functions set every variable from the seed.
        let bound = 1.0 / (cin as f64).sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(TokenLinear {
            weight: vb.get_with_hints((cout, cin), "weight", init)?,
            bias: vb.get_with_hints(cout, "bias", init)?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let cin = *dims.last().unwrap_or(&0);
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = self.weight.dim(0)?;
        }
        let y = matmul(&x.reshape(((), cin))?, &self.weight.t()?)?;
        add_bias_rows(&y, &self.bias)?.reshape(out_dims)
    }

    /// Part `i` of `parts` equal parts of the output features (`qkv`'s queries, keys or
    /// values), from the matching rows of the weight: each part comes out contiguous, and its
    /// gradient reaches the small weight through the narrow instead of the activations (a
    /// narrow's backward is a zero-padded copy of the whole: three of them over a `qkv` output
    /// were 5% of a SwinIR step).
    pub(super) fn forward_part(&self, x: &Tensor, i: usize, parts: usize) -> Result<Tensor> {
        let dims = x.dims();
        let cin = *dims.last().unwrap_or(&0);
        let len = self.weight.dim(0)? / parts;
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = len;
        }
        let w = self.weight.narrow(0, i * len, len)?;
        let b = self.bias.narrow(0, i * len, len)?;
        let y = matmul(&x.reshape(((), cin))?, &w.t()?)?;
        add_bias_rows(&y, &b)?.reshape(out_dims)
    }
}

/// `torch.nn.LayerNorm` over the last dimension (eps 1e-5): `weight`, `bias`.
pub(super) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    pub(super) fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        row_norm(x, &self.weight, &self.bias)
    }
}

/// The softmax over the last dimension (in f32 for a bf16 `x`).
pub(super) fn softmax_last(x: &Tensor) -> Result<Tensor> {
    if let Some(y) = widened([x], |[x]| softmax_last(&x))? {
        return Ok(y);
    }
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// The relative position bias table of a window attention: `relative_position_bias_table`
/// `[(2 ws - 1)^2, heads]`.
pub(super) fn bias_table(ws: usize, heads: usize, vb: &VarBuilder) -> Result<Tensor> {
    vb.get_with_hints(
        ((2 * ws - 1) * (2 * ws - 1), heads),
        "relative_position_bias_table",
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
    )
}

/// For each token of the windows in order (row-major windows, row-major inside each), the grid
/// position it comes from once the grid is rolled back by `shift` on both axes: the cyclic
/// shift and the split into windows as one gather. `inverse`: where each grid position went.
fn window_order(h: usize, w: usize, ws: usize, shift: usize, inverse: bool) -> Vec<u32> {
    let mut order = vec![0u32; h * w];
    let (nh, nw) = (h / ws, w / ws);
    let mut o = 0;
    for wy in 0..nh {
        for wx in 0..nw {
            for py in 0..ws {
                for px in 0..ws {
                    let y = (wy * ws + py + shift) % h;
                    let x = (wx * ws + px + shift) % w;
                    let g = y * w + x;
                    if inverse {
                        order[g] = o as u32;
                    } else {
                        order[o] = g as u32;
                    }
                    o += 1;
                }
            }
        }
    }
    order
}

/// A token grid `[B, H, W, C]`, rolled back by `shift` on both axes, as windows
/// `[B * nW, ws * ws, C]` in row-major window order (one gather; its backward a scatter).
pub(super) fn partition(t: &Tensor, ws: usize, shift: usize) -> Result<Tensor> {
    let (b, h, w, c) = t.dims4()?;
    let order = window_order(h, w, ws, shift, false);
    let idx = Tensor::from_vec(order, h * w, t.device())?;
    t.reshape((b, h * w, c))?
        .contiguous()?
        .index_select(&idx, 1)?
        .reshape((b * (h / ws) * (w / ws), ws * ws, c))
}

/// [`partition`] undone: windows back to the grid `[B, H, W, C]`, rolled forward by `shift`.
pub(super) fn merge(
    windows: &Tensor,
    b: usize,
    h: usize,
    w: usize,
    ws: usize,
    shift: usize,
) -> Result<Tensor> {
    let c = windows.dim(D::Minus1)?;
    let order = window_order(h, w, ws, shift, true);
    let idx = Tensor::from_vec(order, h * w, windows.device())?;
    windows
        .reshape((b, h * w, c))?
        .contiguous()?
        .index_select(&idx, 1)?
        .reshape((b, h, w, c))
}

/// Attention inside each window: queries `q`, keys `k` and values `v`, each
/// `[B * nW, N, heads, hd]` (as the linear projections lay them out), the products scaled
/// by `hd^-1/2`, plus the relative position bias, plus the shifted windows' mask when `shift` >
/// 0 (the grid is `h` x `w`), the softmax of the three one op on the CPU
/// (kernels/attention.rs). Returns `[B * nW, N, heads * hd]`.
pub(super) fn attend(
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    bias_table: &Tensor,
    ws: usize,
    shift: usize,
    (h, w): (usize, usize),
) -> Result<Tensor> {
    let (bw, n, heads, hd) = q.dims4()?;
    let q = (q.transpose(1, 2)? * (hd as f64).powf(-0.5))?.contiguous()?;
    let k = k.transpose(1, 2)?.contiguous()?; // [B * nW, heads, N, hd]
    let v = v.transpose(1, 2)?.contiguous()?;
    let logits = matmul(&q, &k.t()?)?;
    let idx = relative_index(ws, q.device())?;
    let bias = bias_table
        .index_select(&idx, 0)?
        .reshape((n, n, heads))?
        .permute((2, 0, 1))?;
    let mask = (shift > 0)
        .then(|| shift_mask(h, w, ws, shift, q.device())) // [nW, N, N]
        .transpose()?;
    let attn = window_softmax(&logits, &bias, mask.as_ref())?;
    matmul(&attn, &v)? // [B * nW, heads, N, hd]
        .transpose(1, 2)?
        .contiguous()?
        .reshape((bw, n, heads * hd))
}

/// Index into the bias table for every pair of positions in a window.
fn relative_index(ws: usize, dev: &candle_core::Device) -> Result<Tensor> {
    let n = ws * ws;
    let mut idx = Vec::with_capacity(n * n);
    for a in 0..n {
        for b in 0..n {
            let (ya, xa) = ((a / ws) as i64, (a % ws) as i64);
            let (yb, xb) = ((b / ws) as i64, (b % ws) as i64);
            let dy = ya - yb + ws as i64 - 1;
            let dx = xa - xb + ws as i64 - 1;
            idx.push((dy * (2 * ws as i64 - 1) + dx) as u32);
        }
    }
    Tensor::from_vec(idx, n * n, dev)
}

/// -100 between positions of a shifted window that came from different regions, else 0.
fn shift_mask(
    h: usize,
    w: usize,
    ws: usize,
    s: usize,
    dev: &candle_core::Device,
) -> Result<Tensor> {
    let region = |i: usize, len: usize| -> usize {
        if i < len - ws {
            0
        } else if i < len - s {
            1
        } else {
            2
        }
    };
    let (nh, nw) = (h / ws, w / ws);
    let n = ws * ws;
    let mut m = vec![0f32; nh * nw * n * n];
    for wy in 0..nh {
        for wx in 0..nw {
            let ids: Vec<usize> = (0..n)
                .map(|p| region(wy * ws + p / ws, h) * 3 + region(wx * ws + p % ws, w))
                .collect();
            let base = (wy * nw + wx) * n * n;
            for a in 0..n {
                for b in 0..n {
                    if ids[a] != ids[b] {
                        m[base + a * n + b] = -100.0;
                    }
                }
            }
        }
    }
    Tensor::from_vec(m, (nh * nw, n, n), dev)
}
