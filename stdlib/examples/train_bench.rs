//! Training and inference speed of mio's networks, with mio's convolution kernels and with
//! candle's, in one run: one 64->64 3x3 conv forward+backward on 8x64x64x64, training steps
//! (patches per second) of the quickstart's SRResNet (32 channels, 4 blocks) and of the
//! reference SRResNet with explicit prompts (64 x 16 + EP), both at patch 48 and batch 8, and
//! single-image inference of a 512x512 image. tools/bench_train.sh runs it beside PyTorch.
//!
//! Usage: train_bench [ROUNDS]; prints `case milliseconds` lines (median of ROUNDS).

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use mio_stdlib::kernels::conv::{conv2d_op, set_fast};
use mio_stdlib::models::network::{Arch, Network, Spec};
use mio_stdlib::models::PromptMode;
use mio_stdlib::train::{Adam, AdamConfig, Loss};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time(rounds: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn net(channels: usize, blocks: usize, prompt: PromptMode) -> Network {
    let spec = Spec {
        arch: Arch::SrResNet { channels, blocks },
        prompt,
        map_size: 128,
        tasks: (0..7).map(|i| format!("t{i}")).collect(),
    };
    Network::new(spec, 0, &Device::Cpu).unwrap()
}

fn train_step_ms(n: &Network, rounds: usize) -> f64 {
    let dev = Device::Cpu;
    let lq = Tensor::rand(0f32, 1f32, (8, 3, 48, 48), &dev).unwrap();
    let gt = Tensor::rand(0f32, 1f32, (8, 3, 48, 48), &dev).unwrap();
    let ids = Tensor::new(&[0u32, 1, 2, 3, 4, 5, 6, 0], &dev).unwrap();
    let cfg = AdamConfig {
        betas: (0.9, 0.99),
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    };
    let mut opt = Adam::new(n.varmap.all_vars(), cfg).unwrap();
    time(rounds, || {
        let out = n.forward(&lq, &ids).unwrap();
        let loss = Loss::L1.compute(&out, &gt).unwrap();
        let g = loss.backward().unwrap();
        opt.step(&g, 1e-4).unwrap();
    })
}

fn infer_ms(n: &Network, rounds: usize) -> f64 {
    let dev = Device::Cpu;
    let x = Tensor::rand(0f32, 1f32, (1, 3, 512, 512), &dev).unwrap();
    let ids = Tensor::new(&[0u32], &dev).unwrap();
    time(rounds, || {
        n.forward(&x, &ids).unwrap();
    })
}

fn main() {
    mio_stdlib::kernels::tune_allocator();
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::rand(0f32, 1f32, (8, 64, 64, 64), &dev).unwrap()).unwrap();
    let w = Var::from_tensor(&Tensor::rand(0f32, 1f32, (64, 64, 3, 3), &dev).unwrap()).unwrap();
    let small = net(32, 4, PromptMode::None);
    let big = net(64, 16, PromptMode::Explicit { dim: 64 });
    println!("threads {}", rayon::current_num_threads());
    for (label, fast) in [("mio", true), ("candle", false)] {
        set_fast(fast);
        let conv = time(rounds, || {
            let y = conv2d_op(&x, &w, 1, 1).unwrap();
            y.sum_all().unwrap().backward().unwrap();
        });
        println!("{label}.conv3x3_fwd_bwd {conv:.2}");
        println!(
            "{label}.srresnet32x4_step {:.2}",
            train_step_ms(&small, rounds)
        );
        println!(
            "{label}.srresnet32x4_infer512 {:.2}",
            infer_ms(&small, rounds)
        );
        println!(
            "{label}.srresnet64x16ep_step {:.2}",
            train_step_ms(&big, rounds.min(3))
        );
        println!(
            "{label}.srresnet64x16ep_infer512 {:.2}",
            infer_ms(&big, rounds.min(3))
        );
    }
}
