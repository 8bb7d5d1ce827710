//! SwinIR at scale 1 (image restoration), with BasicSR's parameter names: `conv_first`,
//! `patch_embed.norm`, `layers.{i}.residual_group.blocks.{j}.{norm1, attn.qkv, attn.proj,
//! attn.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2}`, `layers.{i}.conv`, `norm`,
//! `conv_after_body`, `conv_last`. The input is shifted by the RGB mean (MIOIR.md) and its
//! sides must be multiples of the window (callers pad at test time). LayerNorm and softmax are
//! written from differentiable ops: candle's fused versions return no gradient.
//!
//! Plain, it is BasicSR's restoration SwinIR (`upsampler = ""`: the input plus conv_last of the
//! features). With a prompt it is MiOIR's SwinIR_EP/_AP (their `pixelshuffle` path at scale 1):
//! `F_ext_net`, a modulation `layers.{i}.prompt_{scale,shift}` after each residual group,
//! `prompt_{scale,shift}_after_body` after the conv after the body, `conv_before_upsample.0`
//! (to 64 channels, LeakyReLU 0.01) and `prompt_{scale,shift}_before_upsample`, then
//! `conv_last` (64 -> 3) and `prompt_{scale,shift}_last`; its output is that plus the mean,
//! without the input added back.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};

use crate::kernels::conv::{conv2d, Activation, Conv2d, Conv2dConfig};

use super::prompt::{Extractor, Modulation};
use super::{with_latent, InitRule, PromptMode};

/// The RGB mean the reference subtracts (DF2K's).
pub const RGB_MEAN: [f32; 3] = [0.4488, 0.4371, 0.4040];

pub use mio_catalog::config::SwinConfig;

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?,
        })
    }

    /// Over the last dimension, eps 1e-5, as `torch.nn.LayerNorm`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(var + 1e-5)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    bias_table: Tensor,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    window: usize,
    shift: usize,
}

impl Block {
    fn new(
        dim: usize,
        heads: usize,
        window: usize,
        shift: usize,
        mlp_ratio: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let hidden = (dim as f64 * mlp_ratio) as usize;
        let a = vb.pp("attn");
        Ok(Block {
            norm1: LayerNorm::new(dim, vb.pp("norm1"))?,
            qkv: linear(dim, 3 * dim, a.pp("qkv"))?,
            proj: linear(dim, dim, a.pp("proj"))?,
            bias_table: a.get_with_hints(
                ((2 * window - 1) * (2 * window - 1), heads),
                "relative_position_bias_table",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            norm2: LayerNorm::new(dim, vb.pp("norm2"))?,
            fc1: linear(dim, hidden, vb.pp("mlp").pp("fc1"))?,
            fc2: linear(hidden, dim, vb.pp("mlp").pp("fc2"))?,
            heads,
            window,
            shift,
        })
    }

    /// Tokens `[B, H*W, C]` of an `h` x `w` image.
    fn forward(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let (b, _, c) = x.dims3()?;
        let (ws, s) = (self.window, self.shift);
        let mut t = self.norm1.forward(x)?.reshape((b, h, w, c))?;
        if s > 0 {
            t = t.roll(-(s as i32), 1)?.roll(-(s as i32), 2)?;
        }
        // Windows: [B * nW, ws * ws, C].
        let windows = t
            .reshape((b, h / ws, ws, w / ws, ws, c))?
            .permute((0, 1, 3, 2, 4, 5))?
            .contiguous()?
            .reshape((b * (h / ws) * (w / ws), ws * ws, c))?;
        let attended = self.attention(&windows, b, h, w)?;
        let mut t = attended
            .reshape((b, h / ws, w / ws, ws, ws, c))?
            .permute((0, 1, 3, 2, 4, 5))?
            .contiguous()?
            .reshape((b, h, w, c))?;
        if s > 0 {
            t = t.roll(s as i32, 1)?.roll(s as i32, 2)?;
        }
        let x = (x + t.reshape((b, h * w, c))?)?;
        let m = self
            .fc2
            .forward(&self.fc1.forward(&self.norm2.forward(&x)?)?.gelu_erf()?)?;
        x + m
    }

    fn attention(&self, x: &Tensor, b: usize, h: usize, w: usize) -> Result<Tensor> {
        let (bw, n, c) = x.dims3()?;
        let hd = c / self.heads;
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((bw, n, 3, self.heads, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)? * (hd as f64).powf(-0.5))?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let mut attn = q.matmul(&k.transpose(2, 3)?.contiguous()?)?;
        let idx = relative_index(self.window, x.device())?;
        let bias = self
            .bias_table
            .index_select(&idx, 0)?
            .reshape((n, n, self.heads))?
            .permute((2, 0, 1))?;
        attn = attn.broadcast_add(&bias.unsqueeze(0)?)?;
        if self.shift > 0 {
            let mask = shift_mask(h, w, self.window, self.shift, x.device())?; // [nW, N, N]
            let nw = mask.dim(0)?;
            attn = attn
                .reshape((b, nw, self.heads, n, n))?
                .broadcast_add(&mask.unsqueeze(1)?.unsqueeze(0)?)?
                .reshape((bw, self.heads, n, n))?;
        }
        let out = softmax_last(&attn)?.matmul(&v)?; // [bw, heads, N, hd]
        self.proj
            .forward(&out.transpose(1, 2)?.contiguous()?.reshape((bw, n, c))?)
    }
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

/// The prompted model's branch and reconstruction (MiOIR's SwinIR_EP/_AP).
struct Prompted {
    extractor: Extractor,
    groups: Vec<Modulation>,
    after_body: Modulation,
    conv_before_upsample: Conv2d,
    before_upsample: Modulation,
    last: Modulation,
}

/// Features before the last conv of a prompted SwinIR (the reference's `num_feat`).
const PROMPTED_FEATURES: usize = 64;

pub struct SwinIr {
    conv_first: Conv2d,
    patch_norm: LayerNorm,
    layers: Vec<(Vec<Block>, Conv2d)>,
    norm: LayerNorm,
    conv_after_body: Conv2d,
    conv_last: Conv2d,
    window: usize,
    prompt: Option<Prompted>,
}

impl SwinIr {
    pub fn new(cfg: &SwinConfig, prompt: PromptMode, vb: VarBuilder) -> Result<Self> {
        let same = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let c = cfg.embed;
        let layers = cfg
            .depths
            .iter()
            .enumerate()
            .map(|(i, &depth)| {
                let l = vb.pp("layers").pp(i.to_string());
                let blocks = (0..depth)
                    .map(|j| {
                        let shift = if j % 2 == 0 { 0 } else { cfg.window / 2 };
                        let bv = l.pp("residual_group").pp("blocks").pp(j.to_string());
                        Block::new(c, cfg.heads, cfg.window, shift, cfg.mlp_ratio, bv)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((blocks, conv2d(c, c, 3, same, l.pp("conv"))?))
            })
            .collect::<Result<Vec<_>>>()?;
        let prompt = match prompt.branch() {
            None => None,
            Some((dim, source)) => {
                let f = PROMPTED_FEATURES;
                Some(Prompted {
                    extractor: Extractor::new(source, dim, vb.pp("F_ext_net"))?,
                    groups: (0..cfg.depths.len())
                        .map(|i| Modulation::new(dim, c, "", &vb.pp("layers").pp(i.to_string())))
                        .collect::<Result<_>>()?,
                    after_body: Modulation::new(dim, c, "_after_body", &vb)?,
                    conv_before_upsample: conv2d(
                        c,
                        f,
                        3,
                        same,
                        vb.pp("conv_before_upsample").pp("0"),
                    )?,
                    before_upsample: Modulation::new(dim, f, "_before_upsample", &vb)?,
                    last: Modulation::new(dim, 3, "_last", &vb)?,
                })
            }
        };
        let last_in = if prompt.is_some() {
            PROMPTED_FEATURES
        } else {
            c
        };
        Ok(SwinIr {
            conv_first: conv2d(3, c, 3, same, vb.pp("conv_first"))?,
            patch_norm: LayerNorm::new(c, vb.pp("patch_embed").pp("norm"))?,
            layers,
            norm: LayerNorm::new(c, vb.pp("norm"))?,
            conv_after_body: conv2d(c, c, 3, same, vb.pp("conv_after_body"))?,
            conv_last: conv2d(last_in, 3, 3, same, vb.pp("conv_last"))?,
            window: cfg.window,
            prompt,
        })
    }

    /// The latent prompt `[B, dim]` from the task maps (explicit) or the degraded input
    /// (adaptive); `None` for a plain model.
    pub fn latent(&self, source: &Tensor) -> Result<Option<Tensor>> {
        self.prompt
            .as_ref()
            .map(|p| p.extractor.forward(source))
            .transpose()
    }

    /// Restores `x` `[B, 3, H, W]`, H and W multiples of the window; `z` is the latent prompt
    /// (required by a prompted model, ignored by a plain one).
    pub fn forward(&self, x: &Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        if h % self.window != 0 || w % self.window != 0 {
            candle_core::bail!(
                "SwinIR needs sides that are multiples of its window {} (got {h}x{w})",
                self.window
            );
        }
        let prompt = with_latent(&self.prompt, z, "SwinIR")?;
        let mean = Tensor::new(&RGB_MEAN, x.device())?
            .to_dtype(x.dtype())?
            .reshape((1, 3, 1, 1))?;
        let input = x.broadcast_sub(&mean)?;
        let first = self.conv_first.forward(&input)?;
        let c = first.dim(1)?;
        let to_tokens = |t: &Tensor| -> Result<Tensor> { t.flatten_from(2)?.transpose(1, 2) };
        let to_image = |t: &Tensor| -> Result<Tensor> { t.transpose(1, 2)?.reshape((b, c, h, w)) };
        let mut tokens = self.patch_norm.forward(&to_tokens(&first)?)?;
        for (i, (blocks, conv)) in self.layers.iter().enumerate() {
            let mut t = tokens.clone();
            for blk in blocks {
                t = blk.forward(&t, h, w)?;
            }
            let r = conv.forward(&to_image(&t)?.contiguous()?)?;
            tokens = (to_tokens(&r)? + tokens)?;
            if let Some((p, z)) = prompt {
                tokens = p.groups[i].forward_tokens(&tokens, z)?;
            }
        }
        let feat = to_image(&self.norm.forward(&tokens)?)?.contiguous()?;
        let res = (self.conv_after_body.forward(&feat)? + first)?;
        let out = match prompt {
            None => (input + self.conv_last.forward(&res)?)?,
            Some((p, z)) => {
                let res = p.after_body.forward(&res, z)?;
                let f = p
                    .conv_before_upsample
                    .forward_act(&res, Activation::LeakyRelu(0.01))?;
                let f = p.before_upsample.forward(&f, z)?;
                p.last.forward(&self.conv_last.forward(&f)?, z)?
            }
        };
        out.broadcast_add(&mean)
    }
}

/// How the reference initialises each variable (SwinIR's `_init_weights`): linear layers
/// (the prompt's too) normal with std 0.02 and zero biases, the relative position bias table
/// likewise, LayerNorm weights 1 and biases 0, convolutions PyTorch's default.
pub fn init_rule(name: &str, weight_dims: &[usize]) -> InitRule {
    let layer = name.rsplit('.').nth(1).unwrap_or("");
    if layer.starts_with("norm") {
        InitRule::Const(if name.ends_with(".weight") { 1.0 } else { 0.0 })
    } else if name.ends_with("relative_position_bias_table") || weight_dims.len() == 2 {
        InitRule::Normal(0.02)
    } else {
        InitRule::TorchDefault
    }
}
