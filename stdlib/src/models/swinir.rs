//! SwinIR at scale 1 (image restoration), with BasicSR's parameter names: `conv_first`,
//! `patch_embed.norm`, `layers.{i}.residual_group.blocks.{j}.{norm1, attn.qkv, attn.proj,
//! attn.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2}`, `layers.{i}.conv`, `norm`,
//! `conv_after_body`, `conv_last`. The input is shifted by the RGB mean (MIOIR.md) and its
//! sides must be multiples of the window (callers pad at test time). The window machinery is
//! shared with Uformer (window.rs).
//!
//! Plain, it is BasicSR's restoration SwinIR (`upsampler = ""`: the input plus conv_last of the
//! features). With a prompt it is MiOIR's SwinIR_EP/_AP (their `pixelshuffle` path at scale 1):
//! `F_ext_net`, a modulation `layers.{i}.prompt_{scale,shift}` after each residual group,
//! `prompt_{scale,shift}_after_body` after the conv after the body, `conv_before_upsample.0`
//! (to 64 channels, LeakyReLU 0.01) and `prompt_{scale,shift}_before_upsample`, then
//! `conv_last` (64 -> 3) and `prompt_{scale,shift}_last`; its output is that plus the mean,
//! without the input added back.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::conv::{conv2d, Activation, Conv2d, Conv2dConfig};
use crate::kernels::gate::gelu;

use super::prompt::{Extractor, Modulation};
use super::window::{attend, bias_table, merge, partition, LayerNorm, TokenLinear};
use super::{with_latent, InitRule, PromptMode};

/// The RGB mean the reference subtracts (DF2K's).
pub const RGB_MEAN: [f32; 3] = [0.4488, 0.4371, 0.4040];

pub use mio_catalog::config::SwinConfig;

struct Block {
    norm1: LayerNorm,
    qkv: TokenLinear,
    proj: TokenLinear,
    bias_table: Tensor,
    norm2: LayerNorm,
    fc1: TokenLinear,
    fc2: TokenLinear,
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
            qkv: TokenLinear::new(dim, 3 * dim, a.pp("qkv"))?,
            proj: TokenLinear::new(dim, dim, a.pp("proj"))?,
            bias_table: bias_table(window, heads, &a)?,
            norm2: LayerNorm::new(dim, vb.pp("norm2"))?,
            fc1: TokenLinear::new(dim, hidden, vb.pp("mlp").pp("fc1"))?,
            fc2: TokenLinear::new(hidden, dim, vb.pp("mlp").pp("fc2"))?,
            heads,
            window,
            shift,
        })
    }

    /// Tokens `[B, H*W, C]` of an `h` x `w` image.
    fn forward(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let (b, _, c) = x.dims3()?;
        let (ws, s) = (self.window, self.shift);
        let t = self.norm1.forward(x)?.reshape((b, h, w, c))?;
        let windows = partition(&t, ws, s)?;
        let attended = self.attention(&windows, h, w)?;
        let t = merge(&attended, b, h, w, ws, s)?;
        let x = (x + t.reshape((b, h * w, c))?)?;
        let m = self
            .fc2
            .forward(&gelu(&self.fc1.forward(&self.norm2.forward(&x)?)?)?)?;
        x + m
    }

    fn attention(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let (bw, n, c) = x.dims3()?;
        let hd = c / self.heads;
        let part = |i| {
            self.qkv
                .forward_part(x, i, 3)?
                .reshape((bw, n, self.heads, hd))
        };
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let out = attend(
            (&q, &k, &v),
            &self.bias_table,
            self.window,
            self.shift,
            (h, w),
        )?;
        self.proj.forward(&out)
    }
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
