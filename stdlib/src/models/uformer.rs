//! Uformer (Wang et al., CVPR 2022) as the reference trains it (Uformer-B), with its parameter
//! names: `input_proj.proj.0` (conv 3 -> embed, LeakyReLU 0.01), `encoderlayer_{0..3}`, the
//! bottleneck `conv`, `decoderlayer_{0..3}` (each `.blocks.{i}`: `norm1`,
//! `attn.{relative_position_bias_table, qkv.to_q, qkv.to_kv, proj}`, `norm2`,
//! `mlp.{linear1.0, dwconv.0, linear2.0}`, and `modulator` in the decoder),
//! `dowsample_{0..3}.conv.0` (4x4 stride-2 convolutions; the reference's spelling),
//! `upsample_{0..3}.deconv.0` (2x2 stride-2 transposed convolutions) and `output_proj.proj.0`
//! (conv 2 embed -> 3), plus the input. The reference saves each block's
//! `attn.relative_position_index` buffer too; mio computes it (checkpoint.rs accepts it).
//!
//! Features stay tokens `[B, H*W, C]` throughout, in row-major order; the sides are carried, so
//! rectangles work (the reference infers a square side from the token count and pads its test
//! images to squares: [`Arch::pads_to_square`](mio_catalog::config::Arch::pads_to_square)).
//! With a prompt it is MiOIR's Uformer_EP/_AP: five extractors `F_ext_net{1..5}` and
//! modulations `prompt_{scale,shift}{0..5}` on the bottleneck's output (extractor 1), after
//! each decoder level (extractors 1, 2, 3, 4) and on the output conv (extractor 5).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::conv::{conv2d, Activation, Conv2d, Conv2dConfig};
use crate::kernels::gate::gelu;
use crate::kernels::tokens::depthwise_tokens;

use super::prompt::{Extractor, Modulation};
use super::window::{attend, bias_table, merge, partition, LayerNorm, TokenLinear};
use super::{with_latent, InitRule, PromptMode};

pub use mio_catalog::config::UformerConfig;

/// Window attention with the linear token projection (`qkv.to_q`, `qkv.to_kv`).
struct Attention {
    to_q: TokenLinear,
    to_kv: TokenLinear,
    proj: TokenLinear,
    bias_table: Tensor,
    heads: usize,
}

impl Attention {
    fn new(dim: usize, heads: usize, ws: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Attention {
            to_q: TokenLinear::new(dim, dim, vb.pp("qkv").pp("to_q"))?,
            to_kv: TokenLinear::new(dim, 2 * dim, vb.pp("qkv").pp("to_kv"))?,
            proj: TokenLinear::new(dim, dim, vb.pp("proj"))?,
            bias_table: bias_table(ws, heads, &vb)?,
            heads,
        })
    }

    /// Windows `[B * nW, N, C]` of an `h` x `w` grid.
    fn forward(&self, x: &Tensor, ws: usize, shift: usize, grid: (usize, usize)) -> Result<Tensor> {
        let (bw, n, c) = x.dims3()?;
        let hd = c / self.heads;
        let q = self.to_q.forward(x)?.reshape((bw, n, self.heads, hd))?;
        let part = |i| {
            self.to_kv
                .forward_part(x, i, 2)?
                .reshape((bw, n, self.heads, hd))
        };
        let (k, v) = (part(0)?, part(1)?);
        let out = attend((&q, &k, &v), &self.bias_table, ws, shift, grid)?;
        self.proj.forward(&out)
    }
}

/// LeFF: linear and GELU, a 3x3 depthwise convolution over the token grid and GELU, linear.
struct LeFF {
    linear1: TokenLinear,
    dw_weight: Tensor,
    dw_bias: Tensor,
    linear2: TokenLinear,
}

impl LeFF {
    fn new(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        let dw = vb.pp("dwconv").pp("0");
        let bound = 1.0 / 3.0;
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(LeFF {
            linear1: TokenLinear::new(dim, hidden, vb.pp("linear1").pp("0"))?,
            dw_weight: dw.get_with_hints((hidden, 1, 3, 3), "weight", init)?,
            dw_bias: dw.get_with_hints(hidden, "bias", init)?,
            linear2: TokenLinear::new(hidden, dim, vb.pp("linear2").pp("0"))?,
        })
    }

    fn forward(&self, x: &Tensor, b: usize, h: usize, w: usize) -> Result<Tensor> {
        let t = gelu(&self.linear1.forward(x)?)?;
        let hidden = t.dim(2)?;
        let t = depthwise_tokens(
            &t.reshape((b, h, w, hidden))?,
            &self.dw_weight,
            &self.dw_bias,
        )?;
        self.linear2
            .forward(&gelu(&t)?.reshape((b, h * w, hidden))?)
    }
}

struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: LeFF,
    modulator: Option<Tensor>,
    window: usize,
    shift: usize,
}

impl Block {
    fn new(
        dim: usize,
        heads: usize,
        shift: usize,
        cfg: &UformerConfig,
        modulator: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let ws = cfg.window;
        let modulator = modulator
            .then(|| {
                vb.pp("modulator").get_with_hints(
                    (ws * ws, dim),
                    "weight",
                    candle_nn::Init::Randn {
                        mean: 0.0,
                        stdev: 1.0,
                    },
                )
            })
            .transpose()?;
        Ok(Block {
            norm1: LayerNorm::new(dim, vb.pp("norm1"))?,
            attn: Attention::new(dim, heads, ws, vb.pp("attn"))?,
            norm2: LayerNorm::new(dim, vb.pp("norm2"))?,
            mlp: LeFF::new(dim, (dim as f64 * cfg.mlp_ratio) as usize, vb.pp("mlp"))?,
            modulator,
            window: ws,
            shift,
        })
    }

    /// Tokens `[B, H*W, C]` of an `h` x `w` grid.
    fn forward(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let (b, _, c) = x.dims3()?;
        let (ws, s) = (self.window, self.shift);
        let t = self.norm1.forward(x)?.reshape((b, h, w, c))?;
        let mut windows = partition(&t, ws, s)?;
        if let Some(m) = &self.modulator {
            windows = windows.broadcast_add(m)?;
        }
        let attended = self.attn.forward(&windows, ws, s, (h, w))?;
        let t = merge(&attended, b, h, w, ws, s)?;
        let x = (x + t.reshape((b, h * w, c))?)?;
        let m = self.mlp.forward(&self.norm2.forward(&x)?, b, h, w)?;
        x + m
    }
}

fn layer(place: usize, cfg: &UformerConfig, modulator: bool, vb: VarBuilder) -> Result<Vec<Block>> {
    let dim = cfg.channels()[place];
    let vb = vb.pp("blocks");
    (0..cfg.depths[place])
        .map(|i| {
            let shift = if i % 2 == 0 { 0 } else { cfg.window / 2 };
            Block::new(
                dim,
                cfg.heads[place],
                shift,
                cfg,
                modulator,
                vb.pp(i.to_string()),
            )
        })
        .collect()
}

fn run(blocks: &[Block], x: Tensor, h: usize, w: usize) -> Result<Tensor> {
    blocks.iter().try_fold(x, |x, b| b.forward(&x, h, w))
}

/// The 2x2 stride-2 transposed convolution of `upsample_{i}.deconv.0` (`weight [Cin, Cout, 2,
/// 2]`, `bias [Cout]`) on tokens: the four taps of every output pixel come from one input
/// token, so it is one matrix product `[B*H*W, Cin] x [Cin, 4 Cout]` and a rearrangement of
/// each token's 2x2 outputs into the doubled grid.
struct Upsample {
    weight: Tensor,
    bias: Tensor,
}

impl Upsample {
    fn new(cin: usize, cout: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("deconv").pp("0");
        let bound = 1.0 / ((cout * 4) as f64).sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Upsample {
            weight: vb.get_with_hints((cin, cout, 2, 2), "weight", init)?,
            bias: vb.get_with_hints(cout, "bias", init)?,
        })
    }

    /// `[B, H*W, Cin]` -> `[B, 2H*2W, Cout]`.
    fn forward(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let (b, _, cin) = x.dims3()?;
        let cout = self.weight.dim(1)?;
        // Columns ordered (dy, dx, c).
        let wmat = self
            .weight
            .permute((0, 2, 3, 1))?
            .contiguous()?
            .reshape((cin, 4 * cout))?;
        let y = crate::kernels::matmul(&x.reshape((b * h * w, cin))?, &wmat)?;
        y.reshape((b, h, w, 2, 2, cout))?
            .permute((0, 1, 3, 2, 4, 5))?
            .contiguous()?
            .reshape((b, 4 * h * w, cout))?
            .broadcast_add(&self.bias)
    }
}

fn to_image(t: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (b, _, c) = t.dims3()?;
    t.transpose(1, 2)?.contiguous()?.reshape((b, c, h, w))
}

fn to_tokens(t: &Tensor) -> Result<Tensor> {
    t.flatten_from(2)?.transpose(1, 2)?.contiguous()
}

/// The prompt branch: five extractors and six modulation points.
struct Prompted {
    extractors: Vec<Extractor>,
    /// Bottleneck, decoder levels 4..1, output.
    points: Vec<Modulation>,
    dim: usize,
}

/// Which extractor feeds each modulation point, as in the reference.
const POINT_EXTRACTOR: [usize; 6] = [0, 0, 1, 2, 3, 4];

pub struct Uformer {
    input_proj: Conv2d,
    encoder: Vec<Vec<Block>>,
    downs: Vec<Conv2d>,
    bottleneck: Vec<Block>,
    ups: Vec<Upsample>,
    decoder: Vec<Vec<Block>>,
    output_proj: Conv2d,
    multiple: usize,
    prompt: Option<Prompted>,
}

impl Uformer {
    pub fn new(cfg: &UformerConfig, prompt: PromptMode, vb: VarBuilder) -> Result<Self> {
        let e = cfg.embed;
        let ch = cfg.channels();
        let same = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let down = Conv2dConfig {
            padding: 1,
            stride: 2,
            groups: 1,
        };
        let prompt = match prompt.branch() {
            None => None,
            Some((dim, source)) => {
                let widths = [16 * e, 16 * e, 8 * e, 4 * e, 2 * e, 3];
                Some(Prompted {
                    extractors: (1..=5)
                        .map(|i| Extractor::new(source, dim, vb.pp(format!("F_ext_net{i}"))))
                        .collect::<Result<_>>()?,
                    points: widths
                        .iter()
                        .enumerate()
                        .map(|(i, &w)| Modulation::new(dim, w, &i.to_string(), &vb))
                        .collect::<Result<_>>()?,
                    dim,
                })
            }
        };
        // Upsampling i reads the level below (the bottleneck, then each decoder level) and
        // gives half of the next decoder level's channels; the skip gives the other half.
        let ups_in = [16 * e, 16 * e, 8 * e, 4 * e];
        Ok(Uformer {
            input_proj: conv2d(3, e, 3, same, vb.pp("input_proj").pp("proj").pp("0"))?,
            encoder: (0..4)
                .map(|i| layer(i, cfg, false, vb.pp(format!("encoderlayer_{i}"))))
                .collect::<Result<_>>()?,
            downs: (0..4)
                .map(|i| {
                    let v = vb.pp(format!("dowsample_{i}")).pp("conv").pp("0");
                    conv2d(ch[i], 2 * ch[i], 4, down, v)
                })
                .collect::<Result<_>>()?,
            bottleneck: layer(4, cfg, false, vb.pp("conv"))?,
            ups: (0..4)
                .map(|i| Upsample::new(ups_in[i], ch[5 + i] / 2, vb.pp(format!("upsample_{i}"))))
                .collect::<Result<_>>()?,
            decoder: (0..4)
                .map(|i| {
                    layer(
                        5 + i,
                        cfg,
                        cfg.modulator,
                        vb.pp(format!("decoderlayer_{i}")),
                    )
                })
                .collect::<Result<_>>()?,
            output_proj: conv2d(2 * e, 3, 3, same, vb.pp("output_proj").pp("proj").pp("0"))?,
            multiple: cfg.side_multiple(),
            prompt,
        })
    }

    /// The latent prompts `[B, 5 * dim]` (the five extractors' outputs side by side) from the
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

    /// Restores `x` `[B, 3, H, W]` (sides multiples of 16 windows) with the latent prompt `z`.
    pub fn forward(&self, x: &Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let m = self.multiple;
        if h % m != 0 || w % m != 0 {
            candle_core::bail!(
                "Uformer needs sides that are multiples of {m} (16 windows; got {h}x{w})"
            );
        }
        let prompt = with_latent(&self.prompt, z, "Uformer")?;
        let latent_of = |p: &Prompted, z: &Tensor, point: usize| -> Result<Tensor> {
            // Contiguous: CUDA's matmul refuses a row stride wider than the row.
            z.narrow(1, POINT_EXTRACTOR[point] * p.dim, p.dim)?
                .contiguous()
        };
        let modulate = |point: usize, t: Tensor| -> Result<Tensor> {
            match prompt {
                Some((p, z)) => p.points[point].forward_tokens(&t, &latent_of(p, z, point)?),
                None => Ok(t),
            }
        };
        let mut y = to_tokens(
            &self
                .input_proj
                .forward_act(x, Activation::LeakyRelu(0.01))?,
        )?;
        let (mut hh, mut ww) = (h, w);
        let mut skips = Vec::with_capacity(4);
        for (blocks, down) in self.encoder.iter().zip(&self.downs) {
            y = run(blocks, y, hh, ww)?;
            let next = to_tokens(&down.forward(&to_image(&y, hh, ww)?)?)?;
            skips.push((y, hh, ww));
            (y, hh, ww) = (next, hh / 2, ww / 2);
        }
        y = modulate(0, run(&self.bottleneck, y, hh, ww)?)?;
        for (i, (up, blocks)) in self.ups.iter().zip(&self.decoder).enumerate() {
            let upsampled = up.forward(&y, hh, ww)?;
            let (skip, sh, sw) = skips.pop().expect("one skip per level");
            (hh, ww) = (sh, sw);
            y = Tensor::cat(&[upsampled, skip], 2)?;
            y = modulate(i + 1, run(blocks, y, hh, ww)?)?;
        }
        let mut out = self.output_proj.forward(&to_image(&y, h, w)?)?;
        if let Some((p, z)) = prompt {
            out = p.points[5].forward(&out, &latent_of(p, z, 5)?)?;
        }
        out + x
    }
}

/// How the reference initialises each variable (Uformer's `_init_weights`): linear layers (the
/// prompt's too) normal with std 0.02 and zero biases, the relative position bias table
/// likewise, LayerNorm weights 1 and biases 0, the modulators' embeddings standard normal,
/// convolutions (transposed too) PyTorch's default.
pub fn init_rule(name: &str, weight_dims: &[usize]) -> InitRule {
    let layer = name.rsplit('.').nth(1).unwrap_or("");
    if layer.starts_with("norm") {
        InitRule::Const(if name.ends_with(".weight") { 1.0 } else { 0.0 })
    } else if layer == "modulator" {
        InitRule::Normal(1.0)
    } else if name.ends_with("relative_position_bias_table") || weight_dims.len() == 2 {
        InitRule::Normal(0.02)
    } else {
        InitRule::TorchDefault
    }
}
