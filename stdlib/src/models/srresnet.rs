//! SRResNet at scale 1 (MIOIR.md), with BasicSR's parameter names so reference weights load by
//! name: plain `conv_first`, `body.{i}.conv{1,2}`, `conv_hr`, `conv_last`; with prompts
//! `body{k}.0.conv{1,2}` (k from 1), `F_ext_net.*`, `prompt_{scale,shift}{k,hr,out}`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::conv::{conv2d, Activation, Conv2d, Conv2dConfig};
use crate::kernels::modulate::residual_modulate;
use crate::kernels::resblock::residual_blocks;

use super::prompt::{Extractor, Modulation};
use super::{with_latent, PromptMode};

pub struct SrResNet {
    conv_first: Conv2d,
    body: Vec<(Conv2d, Conv2d)>,
    conv_hr: Conv2d,
    conv_last: Conv2d,
    prompt: Option<Prompted>,
}

/// The prompt branch: the extractor and a modulation after each block, after conv_hr and after
/// conv_last.
struct Prompted {
    extractor: Extractor,
    blocks: Vec<Modulation>,
    hr: Modulation,
    out: Modulation,
}

impl SrResNet {
    pub fn new(channels: usize, blocks: usize, prompt: PromptMode, vb: VarBuilder) -> Result<Self> {
        let same = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let prompted = prompt != PromptMode::None;
        let body = (0..blocks)
            .map(|i| {
                let pre = if prompted {
                    vb.pp(format!("body{}", i + 1)).pp("0")
                } else {
                    vb.pp("body").pp(i.to_string())
                };
                Ok((
                    conv2d(channels, channels, 3, same, pre.pp("conv1"))?,
                    conv2d(channels, channels, 3, same, pre.pp("conv2"))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let prompt = match prompt.branch() {
            None => None,
            Some((dim, source)) => Some(Prompted {
                extractor: Extractor::new(source, dim, vb.pp("F_ext_net"))?,
                blocks: (1..=blocks)
                    .map(|k| Modulation::new(dim, channels, &k.to_string(), &vb))
                    .collect::<Result<Vec<_>>>()?,
                hr: Modulation::new(dim, channels, "hr", &vb)?,
                out: Modulation::new(dim, 3, "out", &vb)?,
            }),
        };
        Ok(SrResNet {
            conv_first: conv2d(3, channels, 3, same, vb.pp("conv_first"))?,
            body,
            conv_hr: conv2d(channels, channels, 3, same, vb.pp("conv_hr"))?,
            conv_last: conv2d(channels, 3, 3, same, vb.pp("conv_last"))?,
            prompt,
        })
    }

    /// The latent prompt from what the extractor reads: the task maps `[B, 1, S, S]` (explicit)
    /// or the degraded input `[B, 3, H, W]` (adaptive). `None` for a plain model.
    pub fn latent(&self, source: &Tensor) -> Result<Option<Tensor>> {
        self.prompt
            .as_ref()
            .map(|p| p.extractor.forward(source))
            .transpose()
    }

    /// Restores `x` `[B, 3, H, W]`; `z` `[B, dim]` is the latent prompt (ignored by a plain
    /// model, required by a prompted one).
    pub fn forward(&self, x: &Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        let lrelu = Activation::LeakyRelu(0.1);
        let p = with_latent(&self.prompt, z, "SRResNet")?;
        let mut feat = self.conv_first.forward_act(x, lrelu)?;
        let modulations = match p {
            Some((p, z)) => Some(
                p.blocks
                    .iter()
                    .map(|m| m.scale_shift(z))
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let blocks: Vec<(&Conv2d, &Conv2d)> = self.body.iter().map(|(a, b)| (a, b)).collect();
        // The whole body as one op on the CPU (see kernels::resblock); separate ops elsewhere.
        match residual_blocks(&feat, &blocks, modulations.as_deref())? {
            Some(out) => feat = out,
            None => {
                for (i, (c1, c2)) in blocks.into_iter().enumerate() {
                    let r = c2.forward(&c1.forward_act(&feat, Activation::Relu)?)?;
                    feat = match &modulations {
                        Some(m) => residual_modulate(&feat, Some(&r), &m[i].0, &m[i].1)?,
                        None => (feat + r)?,
                    };
                }
            }
        }
        let feat = self.conv_hr.forward_act(&feat, lrelu)?;
        let feat = match p {
            Some((p, z)) => p.hr.forward(&feat, z)?,
            None => feat,
        };
        let out = self.conv_last.forward(&feat)?;
        let out = match p {
            Some((p, z)) => p.out.forward(&out, z)?,
            None => out,
        };
        out + x
    }
}
