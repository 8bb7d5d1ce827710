//! The CUDA path against the CPU: every backbone with every prompt strategy gives the same
//! output and the same gradients on the GPU as on the CPU (where mio's own kernels run), a
//! training step moves the weights the same way, and the convolutions that fall back to
//! candle's CUDA kernels agree with mio's CPU kernels.
//!
//! Built only with `--features cuda` and run on a machine with an NVIDIA GPU (docs/cuda.md
//! says how to build here and run there); the default build and CI have neither.
#![cfg(feature = "cuda")]

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use mio_stdlib::kernels::conv::conv2d_op;
use mio_stdlib::kernels::depthwise::depthwise_op;
use mio_stdlib::models::network::{Arch, Network, Spec, SrResNetConfig};
use mio_stdlib::models::restormer::RestormerConfig;
use mio_stdlib::models::swinir::SwinConfig;
use mio_stdlib::models::PromptMode;
use mio_stdlib::rng::Rng;
use mio_stdlib::train::{Adam, AdamConfig, Loss};

fn gpu() -> Device {
    Device::new_cuda(0).expect("a CUDA device (these tests need a GPU)")
}

fn random(seed: &str, dims: &[usize]) -> Tensor {
    let mut rng = Rng::derive(3, &[seed]);
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

/// Largest |a - b| relative to the largest |b| (at least 1e-3).
fn rel(a: &Tensor, b: &Tensor) -> f32 {
    let a: Vec<f32> = a
        .to_device(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = b
        .to_device(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

fn archs() -> Vec<(&'static str, Arch, usize)> {
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
        (
            "restormer",
            Arch::Restormer(RestormerConfig {
                dim: 8,
                blocks: [1, 1, 1, 1],
                refinement: 1,
                heads: [1, 2, 2, 4],
                ffn_expansion: 2.66,
                bias: false,
            }),
            32,
        ),
    ]
}

const MODES: [PromptMode; 3] = [
    PromptMode::None,
    PromptMode::Explicit { dim: 8 },
    PromptMode::Adaptive { dim: 8 },
];

fn network(arch: &Arch, prompt: PromptMode, dev: &Device) -> Network {
    let spec = Spec {
        arch: arch.clone(),
        prompt,
        map_size: 32,
        tasks: vec!["a".into(), "b".into(), "c".into()],
    };
    Network::new(spec, 7, dev).unwrap()
}

/// The output and every variable's gradient of an L1 loss.
fn output_and_gradients(
    net: &Network,
    side: usize,
    dev: &Device,
) -> (Tensor, HashMap<String, Tensor>) {
    let x = random("x", &[2, 3, side, side]).to_device(dev).unwrap();
    let t = random("t", &[2, 3, side, side]).to_device(dev).unwrap();
    let ids = Tensor::new(&[0u32, 2], dev).unwrap();
    let y = net.forward(&x, &ids).unwrap();
    let grads = Loss::L1.compute(&y, &t).unwrap().backward().unwrap();
    let named = net
        .varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), grads.get(v).expect("a gradient").clone()))
        .collect();
    (y, named)
}

#[test]
fn every_backbone_gives_the_cpus_output_and_gradients_on_the_gpu() {
    let gpu = gpu();
    for (name, arch, side) in archs() {
        for mode in MODES {
            let what = format!("{name} {mode:?}");
            let cpu_net = network(&arch, mode, &Device::Cpu);
            let gpu_net = network(&arch, mode, &gpu);
            let (y_cpu, g_cpu) = output_and_gradients(&cpu_net, side, &Device::Cpu);
            let (y_gpu, g_gpu) = output_and_gradients(&gpu_net, side, &gpu);
            let e = rel(&y_gpu, &y_cpu);
            assert!(e < 1e-4, "{what}: output differs by {e}");
            for (n, g) in &g_cpu {
                let e = rel(&g_gpu[n], g);
                assert!(e < 2e-3, "{what}: gradient of {n} differs by {e}");
            }
            // Inference through the frozen copy agrees too.
            let x = random("x", &[1, 3, side, side]);
            let ids = Tensor::new(&[1u32], &Device::Cpu).unwrap();
            let a = cpu_net.frozen().unwrap().forward(&x, &ids).unwrap();
            let b = gpu_net
                .frozen()
                .unwrap()
                .forward(&x.to_device(&gpu).unwrap(), &ids.to_device(&gpu).unwrap())
                .unwrap();
            let e = rel(&b, &a);
            assert!(e < 1e-4, "{what}: frozen output differs by {e}");
        }
    }
}

#[test]
fn adam_steps_move_the_weights_as_on_the_cpu() {
    let gpu = gpu();
    let arch = Arch::SrResNet(SrResNetConfig {
        channels: 16,
        blocks: 2,
        init_scale: 0.1,
    });
    let mode = PromptMode::Explicit { dim: 8 };
    let cfg = AdamConfig {
        betas: (0.9, 0.99),
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    };
    let weights = |dev: &Device| -> HashMap<String, Tensor> {
        let net = network(&arch, mode, dev);
        let mut opt = Adam::new(net.varmap.all_vars(), cfg).unwrap();
        for _ in 0..3 {
            let x = random("x", &[2, 3, 24, 24]).to_device(dev).unwrap();
            let t = random("t", &[2, 3, 24, 24]).to_device(dev).unwrap();
            let ids = Tensor::new(&[0u32, 1], dev).unwrap();
            let y = net.forward(&x, &ids).unwrap();
            let g = Loss::L1.compute(&y, &t).unwrap().backward().unwrap();
            opt.step(&g, 1e-3).unwrap();
        }
        let weights = net
            .varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        weights
    };
    let (a, b) = (weights(&Device::Cpu), weights(&gpu));
    for (n, w) in &a {
        let e = rel(&b[n], w);
        assert!(e < 1e-3, "{n} differs by {e} after three steps");
    }
}

#[test]
fn candles_cuda_convolutions_agree_with_mios_cpu_kernels() {
    let gpu = gpu();
    let cases: [(&str, Tensor, Tensor, usize, usize); 3] = [
        (
            "dense 3x3",
            random("a", &[2, 5, 13, 17]),
            random("b", &[4, 5, 3, 3]),
            1,
            1,
        ),
        (
            "dense 7x7 stride 2",
            random("c", &[2, 3, 20, 20]),
            random("d", &[6, 3, 7, 7]),
            1,
            2,
        ),
        (
            "depthwise 3x3",
            random("e", &[2, 6, 11, 9]),
            random("f", &[6, 1, 3, 3]),
            1,
            1,
        ),
    ];
    for (what, x, w, pad, stride) in cases {
        let run = |dev: &Device| {
            let xv = Var::from_tensor(&x.to_device(dev).unwrap()).unwrap();
            let wv = Var::from_tensor(&w.to_device(dev).unwrap()).unwrap();
            let y = if what.starts_with("depthwise") {
                depthwise_op(xv.as_tensor(), wv.as_tensor(), pad, stride).unwrap()
            } else {
                conv2d_op(xv.as_tensor(), wv.as_tensor(), pad, stride).unwrap()
            };
            let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            [
                y.clone(),
                g.get(xv.as_tensor()).unwrap().clone(),
                g.get(wv.as_tensor()).unwrap().clone(),
            ]
        };
        let (c, g) = (run(&Device::Cpu), run(&gpu));
        for (part, (a, b)) in ["output", "input gradient", "weight gradient"]
            .iter()
            .zip(g.iter().zip(&c))
        {
            let e = rel(a, b);
            assert!(e < 1e-4, "{what}: {part} differs by {e}");
        }
    }
}
