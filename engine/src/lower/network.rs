//! A checked backbone call lowered to the network's configuration (`mio_catalog::config`): the
//! one place a backbone's and a prompt's names are matched. It needs no tensors, so the checker
//! uses it too (patch multiples and the backbone's own constraints come from the configuration).

use mio_catalog::config::{Arch, PromptMode, RestormerConfig, Spec, SrResNetConfig, SwinConfig};

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
        "restormer" => {
            let four = |name: &str| -> Result<[usize; 4]> {
                ints(b, name)?.try_into().map_or_else(
                    |_| bug(format!("restormer's `{name}` does not have four entries")),
                    Ok,
                )
            };
            Arch::Restormer(RestormerConfig {
                dim: int(b, "dim")?,
                blocks: four("blocks")?,
                refinement: int(b, "refinement")?,
                heads: four("heads")?,
                ffn_expansion: float(b, "ffn_expansion")?,
                bias: boolean(b, "bias")?,
            })
        }
        other => return bug(format!("no lowering for the backbone `{other}`")),
    };
    let p = call(b.arg("prompt"), "the backbone's prompt")?;
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
