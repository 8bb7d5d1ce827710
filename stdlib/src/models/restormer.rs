//! Restormer (Zamir et al.) at scale 1, with the reference implementation's parameter names:
//! `patch_embed.proj`, `encoder_level{1,2,3}.{i}`, `latent.{i}`, `decoder_level{3,2,1}.{i}`,
//! `refinement.{i}` (each a transformer block: `norm1.body`, `attn.{temperature, qkv,
//! qkv_dwconv, project_out}`, `norm2.body`, `ffn.{project_in, dwconv, project_out}`),
//! `down{1_2,2_3,3_4}.body.0`, `up{4_3,3_2,2_1}.body.0`, `reduce_chan_level{3,2}`, `output`.
//! With prompts (MiOIR's Restormer_EP/_AP): four extractors `F_ext_net{1..4}` and modulations
//! `prompt_{scale,shift}{1..5,out}` after the latent (extractor 1), decoder level 3 (2), decoder
//! levels 2 and 1 and the refinement (3), and the output conv (4).
//!
//! The blocks: MDTA, attention across channels (a `C/heads x C/heads` map per head from
//! L2-normalised queries and keys over all pixels, scaled by a learnt temperature), and GDFN, a
//! GELU-gated feed-forward network; both mix space through 3x3 depthwise convolutions
//! (mio's depthwise kernel on the CPU). LayerNorm over channels ("WithBias", the reference's
//! default) and the gated GELU are mio's kernels on the CPU and differentiable ops elsewhere.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::kernels::conv::{conv2d, conv2d_no_bias, Conv2d, Conv2dConfig};
use crate::kernels::gate::gated_gelu;
use crate::kernels::norm::channel_norm;
use crate::kernels::{matmul, widened};

use super::prompt::{Extractor, Modulation};
use super::window::softmax_last;
use super::{with_latent, InitRule, PromptMode};

pub use mio_catalog::config::RestormerConfig;

/// Inputs' sides must be multiples of this (three halvings).
pub const SIDE_MULTIPLE: usize = RestormerConfig::SIDE_MULTIPLE;

/// LayerNorm over the channels of `[B, C, H, W]` (eps 1e-5, biased variance), the reference's
/// "WithBias" variant: `norm*.body.{weight, bias}`.
struct ChannelNorm {
    weight: Tensor,
    bias: Tensor,
}

impl ChannelNorm {
    fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("body");
        Ok(ChannelNorm {
            weight: vb.get_with_hints(c, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(c, "bias", candle_nn::Init::Const(0.0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        channel_norm(x, &self.weight, &self.bias)
    }
}

/// `x / max(|x|, 1e-12)` along the last dimension (`F.normalize`; in f32 for a bf16 `x`).
fn l2_normalise(x: &Tensor) -> Result<Tensor> {
    if let Some(y) = widened([x], |[x]| l2_normalise(&x))? {
        return Ok(y);
    }
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    x.broadcast_div(&norm)
}

pub(super) fn pointwise(cin: usize, cout: usize, bias: bool, vb: VarBuilder) -> Result<Conv2d> {
    let cfg = Conv2dConfig::default();
    if bias {
        conv2d(cin, cout, 1, cfg, vb)
    } else {
        conv2d_no_bias(cin, cout, 1, cfg, vb)
    }
}

pub(super) fn conv3x3(cin: usize, cout: usize, bias: bool, vb: VarBuilder) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    if bias {
        conv2d(cin, cout, 3, cfg, vb)
    } else {
        conv2d_no_bias(cin, cout, 3, cfg, vb)
    }
}

fn depthwise3x3(c: usize, bias: bool, vb: VarBuilder) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: 1,
        stride: 1,
        groups: c,
    };
    if bias {
        conv2d(c, c, 3, cfg, vb)
    } else {
        conv2d_no_bias(c, c, 3, cfg, vb)
    }
}

/// Multi-Dconv head transposed attention.
struct Attention {
    temperature: Tensor,
    qkv: Conv2d,
    qkv_dwconv: Conv2d,
    project_out: Conv2d,
    heads: usize,
}

impl Attention {
    fn new(dim: usize, heads: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Attention {
            temperature: vb.get_with_hints(
                (heads, 1, 1),
                "temperature",
                candle_nn::Init::Const(1.0),
            )?,
            qkv: pointwise(dim, 3 * dim, bias, vb.pp("qkv"))?,
            qkv_dwconv: depthwise3x3(3 * dim, bias, vb.pp("qkv_dwconv"))?,
            project_out: pointwise(dim, dim, bias, vb.pp("project_out"))?,
            heads,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let qkv = self.qkv_dwconv.forward(&self.qkv.forward(x)?)?;
        let per_head = |i: usize| -> Result<Tensor> {
            qkv.narrow(1, i * c, c)?
                .reshape((b, self.heads, c / self.heads, h * w))
        };
        let q = l2_normalise(&per_head(0)?)?;
        let k = l2_normalise(&per_head(1)?)?;
        let v = per_head(2)?;
        let attn =
            matmul(&q, &k.transpose(2, 3)?)?.broadcast_mul(&self.temperature.unsqueeze(0)?)?;
        let out = matmul(&softmax_last(&attn)?, &v)?.reshape((b, c, h, w))?;
        self.project_out.forward(&out)
    }
}

/// Gated-Dconv feed-forward network.
struct FeedForward {
    project_in: Conv2d,
    dwconv: Conv2d,
    project_out: Conv2d,
}

impl FeedForward {
    fn new(dim: usize, expansion: f64, bias: bool, vb: VarBuilder) -> Result<Self> {
        let hidden = (dim as f64 * expansion) as usize;
        Ok(FeedForward {
            project_in: pointwise(dim, 2 * hidden, bias, vb.pp("project_in"))?,
            dwconv: depthwise3x3(2 * hidden, bias, vb.pp("dwconv"))?,
            project_out: pointwise(hidden, dim, bias, vb.pp("project_out"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let t = self.dwconv.forward(&self.project_in.forward(x)?)?;
        self.project_out.forward(&gated_gelu(&t)?)
    }
}

pub(super) struct Block {
    norm1: ChannelNorm,
    attn: Attention,
    norm2: ChannelNorm,
    ffn: FeedForward,
}

impl Block {
    pub(super) fn new(
        dim: usize,
        heads: usize,
        cfg: &RestormerConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Block {
            norm1: ChannelNorm::new(dim, vb.pp("norm1"))?,
            attn: Attention::new(dim, heads, cfg.bias, vb.pp("attn"))?,
            norm2: ChannelNorm::new(dim, vb.pp("norm2"))?,
            ffn: FeedForward::new(dim, cfg.ffn_expansion, cfg.bias, vb.pp("ffn"))?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.norm1.forward(x)?)?)?;
        &x + self.ffn.forward(&self.norm2.forward(&x)?)?
    }
}

pub(super) fn level(
    n: usize,
    dim: usize,
    heads: usize,
    cfg: &RestormerConfig,
    vb: VarBuilder,
) -> Result<Vec<Block>> {
    (0..n)
        .map(|i| Block::new(dim, heads, cfg, vb.pp(i.to_string())))
        .collect()
}

pub(super) fn run(blocks: &[Block], x: Tensor) -> Result<Tensor> {
    blocks.iter().try_fold(x, |x, b| b.forward(&x))
}

/// The prompt branch: four extractors and six modulation points.
struct Prompted {
    extractors: Vec<Extractor>,
    /// latent, decoder 3, decoder 2, decoder 1, refinement, output.
    points: Vec<Modulation>,
    dim: usize,
}

/// Which extractor feeds each modulation point, as in the reference.
const POINT_EXTRACTOR: [usize; 6] = [0, 1, 2, 2, 2, 3];

pub struct Restormer {
    patch_embed: Conv2d,
    encoder: [Vec<Block>; 3],
    downs: [Conv2d; 3],
    latent: Vec<Block>,
    ups: [Conv2d; 3],
    reduce3: Conv2d,
    reduce2: Conv2d,
    decoder: [Vec<Block>; 3],
    refinement: Vec<Block>,
    output: Conv2d,
    prompt: Option<Prompted>,
}

impl Restormer {
    pub fn new(cfg: &RestormerConfig, prompt: PromptMode, vb: VarBuilder) -> Result<Self> {
        let d = cfg.dim;
        let c = [d, 2 * d, 4 * d, 8 * d];
        let h = cfg.heads;
        let n = cfg.blocks;
        let prompt = match prompt.branch() {
            None => None,
            Some((dim, source)) => {
                let widths = [c[3], c[2], c[1], c[1], c[1], 3];
                let names = ["1", "2", "3", "4", "5", "out"];
                Some(Prompted {
                    extractors: (1..=4)
                        .map(|i| Extractor::new(source, dim, vb.pp(format!("F_ext_net{i}"))))
                        .collect::<Result<_>>()?,
                    points: widths
                        .iter()
                        .zip(names)
                        .map(|(&w, name)| Modulation::new(dim, w, name, &vb))
                        .collect::<Result<_>>()?,
                    dim,
                })
            }
        };
        Ok(Restormer {
            patch_embed: conv3x3(3, d, cfg.bias, vb.pp("patch_embed").pp("proj"))?,
            encoder: [
                level(n[0], c[0], h[0], cfg, vb.pp("encoder_level1"))?,
                level(n[1], c[1], h[1], cfg, vb.pp("encoder_level2"))?,
                level(n[2], c[2], h[2], cfg, vb.pp("encoder_level3"))?,
            ],
            downs: [
                conv3x3(c[0], c[0] / 2, false, vb.pp("down1_2").pp("body").pp("0"))?,
                conv3x3(c[1], c[1] / 2, false, vb.pp("down2_3").pp("body").pp("0"))?,
                conv3x3(c[2], c[2] / 2, false, vb.pp("down3_4").pp("body").pp("0"))?,
            ],
            latent: level(n[3], c[3], h[3], cfg, vb.pp("latent"))?,
            ups: [
                conv3x3(c[3], c[3] * 2, false, vb.pp("up4_3").pp("body").pp("0"))?,
                conv3x3(c[2], c[2] * 2, false, vb.pp("up3_2").pp("body").pp("0"))?,
                conv3x3(c[1], c[1] * 2, false, vb.pp("up2_1").pp("body").pp("0"))?,
            ],
            reduce3: pointwise(c[3], c[2], cfg.bias, vb.pp("reduce_chan_level3"))?,
            reduce2: pointwise(c[2], c[1], cfg.bias, vb.pp("reduce_chan_level2"))?,
            decoder: [
                level(n[2], c[2], h[2], cfg, vb.pp("decoder_level3"))?,
                level(n[1], c[1], h[1], cfg, vb.pp("decoder_level2"))?,
                // Level 1's decoder works on the concatenation: twice the channels.
                level(n[0], c[1], h[0], cfg, vb.pp("decoder_level1"))?,
            ],
            refinement: level(cfg.refinement, c[1], h[0], cfg, vb.pp("refinement"))?,
            output: conv3x3(c[1], 3, cfg.bias, vb.pp("output"))?,
            prompt,
        })
    }

    /// The latent prompts `[B, 4 * dim]` (the four extractors' outputs side by side) from the
    /// task maps (explicit) or the degraded input (adaptive); `None` for a plain model.
    pub fn latent(&self, source: &Tensor) -> Result<Option<Tensor>> {
        let Some(p) = &self.prompt else {
            return Ok(None);
        };
        let zs = p
            .extractors
            .iter()
            .map(|e| e.forward(source))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Tensor::cat(&zs, 1)?))
    }

    /// Restores `x` `[B, 3, H, W]` (sides multiples of 8) with the latent prompt `z`.
    pub fn forward(&self, x: &Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        if h % SIDE_MULTIPLE != 0 || w % SIDE_MULTIPLE != 0 {
            candle_core::bail!(
                "Restormer needs sides that are multiples of {SIDE_MULTIPLE} (got {h}x{w})"
            );
        }
        let prompt = with_latent(&self.prompt, z, "Restormer")?;
        let modulate = |point: usize, f: Tensor| -> Result<Tensor> {
            match prompt {
                Some((p, z)) => {
                    // Contiguous: CUDA's matmul refuses a row stride wider than the row.
                    let zi = z
                        .narrow(1, POINT_EXTRACTOR[point] * p.dim, p.dim)?
                        .contiguous()?;
                    p.points[point].forward(&f, &zi)
                }
                None => Ok(f),
            }
        };
        let unshuffle = |t: Tensor| candle_nn::ops::pixel_unshuffle(&t, 2);
        let shuffle = |t: Tensor| candle_nn::ops::pixel_shuffle(&t, 2);
        let e1 = run(&self.encoder[0], self.patch_embed.forward(x)?)?;
        let e2 = run(&self.encoder[1], unshuffle(self.downs[0].forward(&e1)?)?)?;
        let e3 = run(&self.encoder[2], unshuffle(self.downs[1].forward(&e2)?)?)?;
        let lat = run(&self.latent, unshuffle(self.downs[2].forward(&e3)?)?)?;
        let lat = modulate(0, lat)?;
        let d3 = Tensor::cat(&[shuffle(self.ups[0].forward(&lat)?)?, e3], 1)?;
        let d3 = modulate(1, run(&self.decoder[0], self.reduce3.forward(&d3)?)?)?;
        let d2 = Tensor::cat(&[shuffle(self.ups[1].forward(&d3)?)?, e2], 1)?;
        let d2 = modulate(2, run(&self.decoder[1], self.reduce2.forward(&d2)?)?)?;
        let d1 = Tensor::cat(&[shuffle(self.ups[2].forward(&d2)?)?, e1], 1)?;
        let d1 = modulate(3, run(&self.decoder[2], d1)?)?;
        let r = modulate(4, run(&self.refinement, d1)?)?;
        let out = modulate(5, self.output.forward(&r)?)?;
        out + x
    }
}

/// How the reference initialises each variable: PyTorch's defaults throughout (no scaled
/// Kaiming), LayerNorm weights 1 and biases 0, temperatures 1.
pub fn init_rule(name: &str, _weight_dims: &[usize]) -> InitRule {
    if name.ends_with("temperature") || (name.contains(".norm") && name.ends_with(".weight")) {
        InitRule::Const(1.0)
    } else if name.contains(".norm") && name.ends_with(".bias") {
        InitRule::Const(0.0)
    } else {
        InitRule::TorchDefault
    }
}
