//! PromptIR (Potlapalli et al., NeurIPS 2023) with the reference's parameter names: a
//! Restormer body (restormer.rs: `patch_embed.proj`, `encoder_level{1,2,3}`, `down*`,
//! `latent`, `decoder_level{3,2,1}`, `refinement`, `output`) whose decoder reads three prompt
//! blocks of its own. After the latent and after decoder levels 3 and 2, `prompt{3,2,1}` makes
//! a prompt from the features, which is concatenated to them, passed through a transformer
//! block `noise_level{3,2,1}` and reduced by `reduce_noise_level{3,2,1}` (1x1). The latent's
//! prompt path leaves it at level 3's width, so `up4_3` and `reduce_chan_level3` are narrower
//! than Restormer's.
//!
//! A prompt block (`prompt_param` `[1, L, P, S, S]`, `linear_layer`, `conv3x3`): the features'
//! spatial mean through a linear map and a softmax weighs the `L` learnt components; their sum
//! is resized bilinearly (PyTorch's `align_corners = False`) to the features' size, as two
//! matrix products, then convolved 3x3. The reference trains PromptIR only as M and S: it has
//! no explicit or adaptive prompt branch.

use candle_core::{Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::kernels::conv::Conv2d;

use super::restormer::{conv3x3, level, pointwise, run, Block};
use super::window::{softmax_last, TokenLinear};
use super::InitRule;
use crate::kernels::{broadcast_matmul, matmul};

pub use mio_catalog::config::PromptIrConfig;

/// The `[out, in]` matrix of PyTorch's bilinear resize along one axis (`align_corners =
/// False`): each output sample is a blend of its two nearest inputs.
fn resize_matrix(input: usize, output: usize, dev: &Device) -> Result<Tensor> {
    let scale = input as f32 / output as f32;
    let mut m = vec![0f32; output * input];
    for o in 0..output {
        let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src as usize).min(input - 1);
        let i1 = (i0 + 1).min(input - 1);
        let l1 = src - i0 as f32;
        m[o * input + i0] += 1.0 - l1;
        m[o * input + i1] += l1;
    }
    Tensor::from_vec(m, (output, input), dev)
}

struct PromptBlock {
    /// `prompt_param` `[1, L, P, S, S]`.
    components: Tensor,
    linear_layer: TokenLinear,
    conv3x3: Conv2d,
    dim: usize,
    size: usize,
}

impl PromptBlock {
    fn new(features: usize, dim: usize, size: usize, len: usize, vb: VarBuilder) -> Result<Self> {
        let param = vb.get_with_hints(
            (1, len, dim, size, size),
            "prompt_param",
            candle_nn::Init::Uniform { lo: 0.0, up: 1.0 },
        )?;
        Ok(PromptBlock {
            components: param,
            linear_layer: TokenLinear::new(features, len, vb.pp("linear_layer"))?,
            conv3x3: conv3x3(dim, dim, false, vb.pp("conv3x3"))?,
            dim,
            size,
        })
    }

    /// The prompt `[B, P, H, W]` for features `[B, C, H, W]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let (p, s) = (self.dim, self.size);
        let pooled = x.mean(D::Minus1)?.mean(D::Minus1)?;
        let weights = softmax_last(&self.linear_layer.forward(&pooled)?)?;
        let len = self.components.dim(1)?;
        let components = self.components.reshape((len, p * s * s))?;
        let prompt = matmul(&weights, &components)?.reshape((b * p, s, s))?;
        let dev = x.device();
        let across = resize_matrix(s, w, dev)?
            .t()?
            .contiguous()?
            .to_dtype(x.dtype())?; // [S, W]
        let down = resize_matrix(s, h, dev)?
            .unsqueeze(0)?
            .to_dtype(x.dtype())?; // [1, H, S]
        let resized = broadcast_matmul(&down, &broadcast_matmul(&prompt, &across)?)?;
        self.conv3x3.forward(&resized.reshape((b, p, h, w))?)
    }
}

/// One prompt stage: the prompt beside the features, a transformer block over both, reduced.
struct Stage {
    prompt: PromptBlock,
    noise: Block,
    reduce: Conv2d,
}

impl Stage {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let t = Tensor::cat(&[x, &self.prompt.forward(x)?], 1)?;
        self.reduce.forward(&self.noise.forward(&t)?)
    }
}

pub struct PromptIr {
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
    /// After the latent, decoder level 3 and decoder level 2.
    stages: [Stage; 3],
}

impl PromptIr {
    pub fn new(cfg: &PromptIrConfig, vb: VarBuilder) -> Result<Self> {
        let body = &cfg.body;
        let d = body.dim;
        let c = [d, 2 * d, 4 * d, 8 * d];
        let (h, n, bias) = (body.heads, body.blocks, body.bias);
        let noise = cfg.noise_channels();
        // Stage i (1..3) reads features of 2d, 4d, 8d channels; reduces to 2d, 4d, 4d.
        let stage = |i: usize| -> Result<Stage> {
            let (feat, out) = [(c[1], c[1]), (c[2], c[2]), (c[3], c[2])][i - 1];
            Ok(Stage {
                prompt: PromptBlock::new(
                    feat,
                    cfg.prompt_dims[i - 1],
                    cfg.prompt_sizes[i - 1],
                    cfg.prompt_len,
                    vb.pp(format!("prompt{i}")),
                )?,
                noise: Block::new(noise[i - 1], h[2], body, vb.pp(format!("noise_level{i}")))?,
                reduce: pointwise(
                    noise[i - 1],
                    out,
                    bias,
                    vb.pp(format!("reduce_noise_level{i}")),
                )?,
            })
        };
        let resample = |cin: usize, cout: usize, name: &str| {
            conv3x3(cin, cout, false, vb.pp(name).pp("body").pp("0"))
        };
        Ok(PromptIr {
            patch_embed: conv3x3(3, d, bias, vb.pp("patch_embed").pp("proj"))?,
            encoder: [
                level(n[0], c[0], h[0], body, vb.pp("encoder_level1"))?,
                level(n[1], c[1], h[1], body, vb.pp("encoder_level2"))?,
                level(n[2], c[2], h[2], body, vb.pp("encoder_level3"))?,
            ],
            downs: [
                resample(c[0], c[0] / 2, "down1_2")?,
                resample(c[1], c[1] / 2, "down2_3")?,
                resample(c[2], c[2] / 2, "down3_4")?,
            ],
            latent: level(n[3], c[3], h[3], body, vb.pp("latent"))?,
            ups: [
                resample(c[2], c[3], "up4_3")?,
                resample(c[2], c[3], "up3_2")?,
                resample(c[1], c[2], "up2_1")?,
            ],
            reduce3: pointwise(c[1] + c[2], c[2], bias, vb.pp("reduce_chan_level3"))?,
            reduce2: pointwise(c[2], c[1], bias, vb.pp("reduce_chan_level2"))?,
            decoder: [
                level(n[2], c[2], h[2], body, vb.pp("decoder_level3"))?,
                level(n[1], c[1], h[1], body, vb.pp("decoder_level2"))?,
                level(n[0], c[1], h[0], body, vb.pp("decoder_level1"))?,
            ],
            refinement: level(body.refinement, c[1], h[0], body, vb.pp("refinement"))?,
            output: conv3x3(c[1], 3, bias, vb.pp("output"))?,
            stages: [stage(1)?, stage(2)?, stage(3)?],
        })
    }

    /// Restores `x` `[B, 3, H, W]` (sides multiples of 8).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let m = mio_catalog::config::RestormerConfig::SIDE_MULTIPLE;
        if h % m != 0 || w % m != 0 {
            candle_core::bail!("PromptIR needs sides that are multiples of {m} (got {h}x{w})");
        }
        let unshuffle = |t: Tensor| candle_nn::ops::pixel_unshuffle(&t, 2);
        let shuffle = |t: Tensor| candle_nn::ops::pixel_shuffle(&t, 2);
        let e1 = run(&self.encoder[0], self.patch_embed.forward(x)?)?;
        let e2 = run(&self.encoder[1], unshuffle(self.downs[0].forward(&e1)?)?)?;
        let e3 = run(&self.encoder[2], unshuffle(self.downs[1].forward(&e2)?)?)?;
        let lat = run(&self.latent, unshuffle(self.downs[2].forward(&e3)?)?)?;
        let lat = self.stages[2].forward(&lat)?;
        let d3 = Tensor::cat(&[shuffle(self.ups[0].forward(&lat)?)?, e3], 1)?;
        let d3 = run(&self.decoder[0], self.reduce3.forward(&d3)?)?;
        let d3 = self.stages[1].forward(&d3)?;
        let d2 = Tensor::cat(&[shuffle(self.ups[1].forward(&d3)?)?, e2], 1)?;
        let d2 = run(&self.decoder[1], self.reduce2.forward(&d2)?)?;
        let d2 = self.stages[0].forward(&d2)?;
        let d1 = Tensor::cat(&[shuffle(self.ups[2].forward(&d2)?)?, e1], 1)?;
        let r = run(&self.refinement, run(&self.decoder[2], d1)?)?;
        self.output.forward(&r)? + x
    }
}

/// How the reference initialises each variable: Restormer's rule, and the prompt components
/// uniform in [0, 1) (`torch.rand`).
pub fn init_rule(name: &str, weight_dims: &[usize]) -> InitRule {
    if name.ends_with("prompt_param") {
        InitRule::Uniform(0.0, 1.0)
    } else {
        super::restormer::init_rule(name, weight_dims)
    }
}
