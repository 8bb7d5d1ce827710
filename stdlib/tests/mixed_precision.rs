//! bf16 mixed precision (`precision = bf16`) on the CPU: every backbone with every prompt
//! strategy runs its forward and backward on bf16 tensors through `Network::cast`, and the fp32
//! variables get fp32 gradients within bf16's rounding of the fp32 run's; a training stage in
//! bf16 learns, keeps its weights, Adam's moments and the EMA in fp32, and resumes from its
//! checkpoint to the same weights bit for bit.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use mio_stdlib::data::{Augment, TaskSpec, TrainSet};
use mio_stdlib::degrade::Degradation;
use mio_stdlib::kernels::precision::Precision;
use mio_stdlib::models::network::{Arch, Network};
use mio_stdlib::models::PromptMode;
use mio_stdlib::train::{AdamConfig, Loss, Schedule};
use mio_stdlib::trainer::{checkpoint_path, run_stage, sorted_vars, StageConfig};

mod common;
use common::{archs, network, promptir, random, MODES};

/// The output (as f32) and every variable's gradient of an L1 loss, computing in `dtype`.
fn run(net: &Network, dtype: DType, side: usize) -> (Tensor, HashMap<String, Tensor>) {
    let x = random("x", &[2, 3, side, side]);
    let t = random("t", &[2, 3, side, side]);
    let ids = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
    let y = net.forward_in(dtype, &x, &ids).unwrap();
    assert_eq!(y.dtype(), DType::F32);
    let grads = Loss::L1.compute(&y, &t).unwrap().backward().unwrap();
    let named = sorted_vars(&net.varmap)
        .into_iter()
        .map(|(n, v)| {
            let g = grads
                .get(&v)
                .unwrap_or_else(|| panic!("no gradient for {n}"));
            (n, g.clone())
        })
        .collect();
    (y, named)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn every_backbone_computes_in_bf16_and_its_fp32_variables_get_the_gradients() {
    let mut all = archs();
    all.push(("promptir", promptir(), 32));
    for (name, arch, side) in all {
        let modes: &[PromptMode] = if matches!(arch, Arch::PromptIr(_)) {
            &[PromptMode::None]
        } else {
            &MODES
        };
        for &mode in modes {
            let what = format!("{name} {mode:?}");
            let net = network(&arch, mode, &Device::Cpu);
            // The body really computes in bf16.
            let x = random("x", &[1, 3, side, side])
                .to_dtype(DType::BF16)
                .unwrap();
            let ids = Tensor::new(&[1u32], &Device::Cpu).unwrap();
            let y = net.cast(DType::BF16).unwrap().forward(&x, &ids).unwrap();
            assert_eq!(y.dtype(), DType::BF16, "{what}");

            let (y32, g32) = run(&net, DType::F32, side);
            let (y16, g16) = run(&net, DType::BF16, side);
            // Measured: outputs within 0.004-0.011 of fp32's (values near 1; bf16 keeps 8
            // bits of mantissa), and different from them (the casts took effect).
            let (a, b) = (values(&y32), values(&y16));
            let diff = a
                .iter()
                .zip(&b)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(diff < 0.03, "{what}: bf16 output {diff} from fp32's");
            assert!(diff > 1e-4, "{what}: the bf16 output is fp32's ({diff})");
            // The whole gradient points where fp32's does (cosine measured 0.9994-1.0000;
            // a single small tensor can be off by more, as in PyTorch's AMP).
            let (mut dot, mut n32, mut n16) = (0f64, 0f64, 0f64);
            for (n, g) in &g32 {
                let h = &g16[n];
                assert_eq!(h.dtype(), DType::F32, "{what}: {n}'s gradient");
                let (p, q) = (values(g), values(h));
                assert!(q.iter().all(|v| v.is_finite()), "{what}: {n}");
                dot += p.iter().zip(&q).map(|(x, y)| (x * y) as f64).sum::<f64>();
                n32 += p.iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
                n16 += q.iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
            }
            let cosine = dot / (n32.sqrt() * n16.sqrt());
            assert!(cosine > 0.995, "{what}: gradient cosine {cosine}");
            assert!(sorted_vars(&net.varmap)
                .iter()
                .all(|(_, v)| v.dtype() == DType::F32));
        }
    }
}

fn train_set() -> TrainSet {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/train");
    let augment = Augment {
        flip: true,
        rot90: true,
    };
    TrainSet::load(&root, 16, augment, 0).unwrap().0
}

fn stage(iters: u64, precision: Precision) -> StageConfig {
    StageConfig {
        seed: 7,
        stage: 0,
        iters,
        batch: 2,
        lr: 2e-3,
        adam: AdamConfig {
            betas: (0.9, 0.99),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        },
        schedule: Schedule::CosineRestart {
            min_lr: 1e-5,
            periods: vec![],
        },
        loss: Loss::L1,
        ema: 0.999,
        grad_clip: 0.0,
        checkpoint_every: 20,
        precision: Some(precision),
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mio-bf16-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// One stage of `cfg` on a fresh explicit-prompt SRResNet (stopped after `stop_after` steps
/// if given), in `dir`: the network and its losses.
fn train(cfg: &StageConfig, dir: &Path, stop_after: Option<u64>) -> (Network, Vec<f32>) {
    let arch = archs().remove(0).1;
    let net = network(&arch, PromptMode::Explicit { dim: 8 }, &Device::Cpu);
    let tasks = vec![TaskSpec {
        id: 0,
        name: "lowlight".into(),
        degradation: Degradation::paper("lowlight").unwrap(),
        text: "lowlight()".into(),
    }];
    let forward = |lq: &Tensor, ids: &Tensor| {
        let dtype = mio_stdlib::kernels::precision::get().dtype();
        net.forward_in(dtype, lq, ids)
    };
    let out = run_stage(
        &net.varmap,
        &forward,
        &train_set(),
        &tasks,
        cfg,
        dir,
        stop_after,
        None,
        |_, _, _| {},
    )
    .unwrap();
    let losses = out.losses.iter().map(|(_, l)| *l).collect();
    (net, losses)
}

fn weights(net: &Network) -> Vec<Vec<f32>> {
    sorted_vars(&net.varmap)
        .iter()
        .map(|(_, v)| values(v.as_tensor()))
        .collect()
}

#[test]
fn a_bf16_stage_learns_keeps_fp32_state_and_resumes_bit_for_bit() {
    let iters = 60;
    let (_, fp32) = train(&stage(iters, Precision::Fp32), &temp("fp32"), None);
    let dir = temp("bf16");
    let (net, bf16) = train(&stage(iters, Precision::Bf16), &dir, None);
    // The bf16 stage follows the fp32 one within bf16's rounding (measured: 0.6% apart on
    // average, 2.6% at most, over 60 steps), and is not the fp32 run itself.
    assert_ne!(bf16, fp32, "bf16 trained exactly as fp32");
    let apart: Vec<f32> = fp32
        .iter()
        .zip(&bf16)
        .map(|(a, b)| (a - b).abs() / a)
        .collect();
    let mean = apart.iter().sum::<f32>() / apart.len() as f32;
    let most = apart.iter().copied().fold(0f32, f32::max);
    assert!(
        mean < 0.02 && most < 0.08,
        "bf16 {mean} apart on average, {most} at most"
    );
    assert!(sorted_vars(&net.varmap)
        .iter()
        .all(|(_, v)| v.dtype() == DType::F32));

    // Stopped at step 30 (its checkpoint at 20): the checkpoint holds fp32 weights, moments
    // and EMA; a fresh process resumes from it to the uninterrupted run's weights.
    let dir_b = temp("bf16-resumed");
    train(&stage(iters, Precision::Bf16), &dir_b, Some(30));
    let ckpt = candle_core::safetensors::load(checkpoint_path(&dir_b, 0), &Device::Cpu).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for (name, t) in &ckpt {
        if let Some((kind, _)) = name.split_once('.') {
            if kind != "meta" {
                assert_eq!(t.dtype(), DType::F32, "{name}");
                kinds.insert(kind.to_string());
            }
        }
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["adam_m", "adam_v", "ema", "weights"]
    );
    let (resumed, tail) = train(&stage(iters, Precision::Bf16), &dir_b, None);
    assert_eq!(tail[..], bf16[20..], "the resumed losses differ");
    assert_eq!(weights(&resumed), weights(&net), "resumed weights differ");
    for d in [dir, dir_b] {
        let _ = std::fs::remove_dir_all(d);
    }
}
