//! What the network tests share: small networks of every backbone, and seeded random inputs.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use mio_stdlib::models::network::{Arch, Network, Spec, SrResNetConfig};
use mio_stdlib::models::promptir::PromptIrConfig;
use mio_stdlib::models::restormer::RestormerConfig;
use mio_stdlib::models::swinir::SwinConfig;
use mio_stdlib::models::uformer::UformerConfig;
use mio_stdlib::models::PromptMode;
use mio_stdlib::rng::Rng;

/// U[0, 1) values from `seed`, on the CPU.
pub fn random(seed: &str, dims: &[usize]) -> Tensor {
    let mut rng = Rng::derive(3, &[seed]);
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn restormer() -> RestormerConfig {
    RestormerConfig {
        dim: 8,
        blocks: [1, 1, 1, 1],
        refinement: 1,
        heads: [1, 2, 2, 4],
        ffn_expansion: 2.66,
        bias: false,
    }
}

/// A small one of each backbone that takes the prompt strategies, with an input side it takes.
pub fn archs() -> Vec<(&'static str, Arch, usize)> {
    vec![
        (
            "srresnet",
            Arch::SrResNet(SrResNetConfig {
                channels: 16,
                blocks: 2,
                init_scale: 0.1,
            }),
            24,
        ),
        (
            "swinir",
            Arch::SwinIr(SwinConfig {
                embed: 12,
                depths: vec![2, 1],
                heads: 2,
                window: 4,
                mlp_ratio: 2.0,
            }),
            16,
        ),
        ("restormer", Arch::Restormer(restormer()), 32),
        (
            "uformer",
            Arch::Uformer(UformerConfig {
                embed: 8,
                depths: [1, 1, 1, 1, 1, 1, 1, 1, 1],
                window: 2,
                ..UformerConfig::reference()
            }),
            32,
        ),
    ]
}

/// A small PromptIR (its own prompt blocks only), on the body of [`archs`]'s Restormer.
pub fn promptir() -> Arch {
    Arch::PromptIr(PromptIrConfig {
        body: restormer(),
        ..PromptIrConfig::reference()
    })
}

pub const MODES: [PromptMode; 3] = [
    PromptMode::None,
    PromptMode::Explicit { dim: 8 },
    PromptMode::Adaptive { dim: 8 },
];

/// `arch` with `prompt`, three tasks, seed 7, on `dev`.
pub fn network(arch: &Arch, prompt: PromptMode, dev: &Device) -> Network {
    let spec = Spec {
        arch: arch.clone(),
        prompt,
        map_size: 32,
        tasks: vec!["a".into(), "b".into(), "c".into()],
    };
    Network::new(spec, 7, dev).unwrap()
}
