//! Prompt learning (MIOIR.md): the extractor F_ext that turns a prompt map (explicit) or the
//! degraded input (adaptive) into a latent prompt z, and the modulation f * (1 + s(z)) + b(z)
//! applied at each modulation point.

use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::kernels::conv::{conv2d, Activation, Conv2d, Conv2dConfig};
use crate::kernels::modulate::residual_modulate;

use super::window::TokenLinear;

/// The latent prompt's size in the reference.
pub const PROMPT_DIM: usize = 64;

/// F_ext: pad 1, conv 7x7 stride 2, ReLU, pad 1, conv 3x3 stride 2, ReLU, pad 1, conv 3x3
/// stride 2, ReLU, mean over space. Names `F_ext_net.conv{1,2,3}` as the reference's.
pub struct Extractor {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
}

impl Extractor {
    pub fn new(in_channels: usize, dim: usize, vb: VarBuilder) -> Result<Self> {
        let s2 = Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        Ok(Extractor {
            conv1: conv2d(in_channels, dim, 7, s2, vb.pp("conv1"))?,
            conv2: conv2d(dim, dim, 3, s2, vb.pp("conv2"))?,
            conv3: conv2d(dim, dim, 3, s2, vb.pp("conv3"))?,
        })
    }

    /// `[B, C, H, W]` -> `[B, dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward_act(x, Activation::Relu)?;
        let h = self.conv2.forward_act(&h, Activation::Relu)?;
        let h = self.conv3.forward_act(&h, Activation::Relu)?;
        h.mean(D::Minus1)?.mean(D::Minus1)
    }
}

/// One modulation point: `prompt_scale{name}` and `prompt_shift{name}`, linear maps from z to
/// the point's channels.
pub struct Modulation {
    scale: TokenLinear,
    shift: TokenLinear,
}

impl Modulation {
    pub fn new(dim: usize, channels: usize, name: &str, vb: &VarBuilder) -> Result<Self> {
        Ok(Modulation {
            scale: TokenLinear::new(dim, channels, vb.pp(format!("prompt_scale{name}")))?,
            shift: TokenLinear::new(dim, channels, vb.pp(format!("prompt_shift{name}")))?,
        })
    }

    /// f * (1 + scale(z)) + shift(z), broadcast over space: `f` `[B, C, H, W]`, `z` `[B, dim]`.
    pub fn forward(&self, f: &Tensor, z: &Tensor) -> Result<Tensor> {
        residual_modulate(f, None, &self.scale.forward(z)?, &self.shift.forward(z)?)
    }

    /// `scale(z)` and `shift(z)`, `[B, C]` each.
    pub fn scale_shift(&self, z: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.scale.forward(z)?, self.shift.forward(z)?))
    }

    /// The modulation of `f + r` (a residual block's output), in one pass on the CPU.
    pub fn forward_residual(&self, f: &Tensor, r: &Tensor, z: &Tensor) -> Result<Tensor> {
        residual_modulate(f, Some(r), &self.scale.forward(z)?, &self.shift.forward(z)?)
    }

    /// The same on tokens: `f` `[B, N, C]`.
    pub fn forward_tokens(&self, f: &Tensor, z: &Tensor) -> Result<Tensor> {
        let s = self.scale.forward(z)?.unsqueeze(1)?;
        let b = self.shift.forward(z)?.unsqueeze(1)?;
        f.broadcast_mul(&(s + 1.0)?)?.broadcast_add(&b)
    }
}
