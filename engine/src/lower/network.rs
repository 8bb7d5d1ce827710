//! A checked backbone call lowered to the network's configuration (`mio_catalog::config`): the
//! one place a backbone's and a prompt's names are matched. It needs no tensors, so the checker
//! uses it too (patch multiples and the backbone's own constraints come from the configuration).

use mio_catalog::config::{
    Arch, PromptIrConfig, PromptMode, RestormerConfig, Spec, SrResNetConfig, SwinConfig,
    UformerConfig,
};

use super::values::{boolean, bug, call, float, int, ints, Result};
use crate::ir;

/// The network a checked backbone call describes, for tasks named in id order.
pub fn network(b: &ir::Call, tasks: Vec<String>) -> Result<Spec> {
    let arch = match b.name.as_str() {
        "srresnet" => Arch::SrResNet(SrResNetConfig {
            channels: int(b, "channels")?,
            blocks: int(b, "blocks")?,
            init_scale: float(b, "init_scale")?,
        }),
        "swinir" => Arch::SwinIr(SwinConfig {
            embed: int(b, "embed")?,
            depths: ints(b, "depths")?,
            heads: int(b, "heads")?,
            window: int(b, "window")?,
            mlp_ratio: float(b, "mlp_ratio")?,
        }),
        "restormer" => Arch::Restormer(restormer_body(b)?),
        "uformer" => Arch::Uformer(UformerConfig {
            embed: int(b, "embed")?,
            depths: fixed(b, "depths")?,
            heads: fixed(b, "heads")?,
            window: int(b, "window")?,
            mlp_ratio: float(b, "mlp_ratio")?,
            modulator: boolean(b, "modulator")?,
        }),
        "promptir" => Arch::PromptIr(PromptIrConfig {
            body: restormer_body(b)?,
            prompt_dims: fixed(b, "prompt_dims")?,
            prompt_sizes: fixed(b, "prompt_sizes")?,
            prompt_len: int(b, "prompt_len")?,
        }),
        other => return bug(format!("no lowering for the backbone `{other}`")),
    };
    // PromptIR has no `prompt` setting: its prompt blocks are part of it.
    let Some(p) = b.arg("prompt") else {
        return Ok(Spec {
            arch,
            prompt: PromptMode::None,
            map_size: 0,
            tasks,
        });
    };
    let p = call(Some(p), "the backbone's prompt")?;
    let (prompt, map_size) = match p.name.as_str() {
        "none" => (PromptMode::None, 0),
        "explicit" => (
            PromptMode::Explicit {
                dim: int(p, "dim")?,
            },
            int(p, "map_size")?,
        ),
        "adaptive" => (
            PromptMode::Adaptive {
                dim: int(p, "dim")?,
            },
            0,
        ),
        other => return bug(format!("no lowering for the prompt `{other}`")),
    };
    Ok(Spec {
        arch,
        prompt,
        map_size,
        tasks,
    })
}

/// A list setting with exactly `N` entries (the checker reports other lengths).
fn fixed<const N: usize>(b: &ir::Call, name: &str) -> Result<[usize; N]> {
    ints(b, name)?.try_into().map_or_else(
        |_| bug(format!("{}'s `{name}` does not have {N} entries", b.name)),
        Ok,
    )
}

/// Restormer's body (PromptIR's too).
fn restormer_body(b: &ir::Call) -> Result<RestormerConfig> {
    Ok(RestormerConfig {
        dim: int(b, "dim")?,
        blocks: fixed(b, "blocks")?,
        refinement: int(b, "refinement")?,
        heads: fixed(b, "heads")?,
        ffn_expansion: float(b, "ffn_expansion")?,
        bias: boolean(b, "bias")?,
    })
}
