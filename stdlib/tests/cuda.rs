//! The CUDA path against the CPU: every backbone with every prompt strategy gives the same
//! output and the same gradients on the GPU as on the CPU (where mio's own kernels run), a
//! training step moves the weights the same way, the convolutions on cuDNN (and candle's own)
//! agree with mio's CPU kernels in fp32 and tf32 (and within bf16's rounding in bf16), every
//! backbone's bf16 mixed-precision step agrees with the CPU's bf16 one, and the precision
//! setting reaches the GPU's products.
//!
//! Built only with `--features cuda` and run on a machine with an NVIDIA GPU (docs/cuda.md
//! says how to build here and run there); the default build and CI have neither.
#![cfg(feature = "cuda")]

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use mio_stdlib::kernels::conv::{conv2d_bias_act_op, conv2d_op, set_fast, Activation};
use mio_stdlib::kernels::cudnn;
use mio_stdlib::kernels::depthwise::depthwise_op;
use mio_stdlib::kernels::precision::{Precision, Scoped};
use mio_stdlib::models::network::{Arch, Network, SrResNetConfig};
use mio_stdlib::models::PromptMode;
use mio_stdlib::train::{Adam, AdamConfig, Loss};

mod common;
use common::{archs, network, promptir, random, MODES};

fn gpu() -> Device {
    Device::new_cuda(0).expect("a CUDA device (these tests need a GPU)")
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

/// bf16 mixed precision on the GPU (cuDNN's bf16 convolutions, cuBLAS's bf16 products, the
/// fused ops in f32 on bf16 storage) against the CPU's bf16 path (the same roundings, computed
/// in f32): the outputs within bf16's rounding, the fp32 variables' gradients pointing the
/// same way.
#[test]
fn every_backbone_in_bf16_agrees_with_the_cpus_bf16() {
    let gpu = gpu();
    for (name, arch, side) in archs() {
        for mode in MODES {
            let what = format!("{name} {mode:?} bf16");
            let run = |dev: &Device| {
                let net = network(&arch, mode, dev);
                let x = random("x", &[2, 3, side, side]).to_device(dev).unwrap();
                let t = random("t", &[2, 3, side, side]).to_device(dev).unwrap();
                let ids = Tensor::new(&[0u32, 2], dev).unwrap();
                let y = net.forward_in(DType::BF16, &x, &ids).unwrap();
                let g = Loss::L1.compute(&y, &t).unwrap().backward().unwrap();
                let grads: Vec<Vec<f32>> = mio_stdlib::trainer::sorted_vars(&net.varmap)
                    .iter()
                    .map(|(n, v)| {
                        let g = g
                            .get(v)
                            .unwrap_or_else(|| panic!("{what}: no gradient of {n}"));
                        assert_eq!(g.dtype(), DType::F32, "{what}: {n}");
                        g.to_device(&Device::Cpu)
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .to_vec1()
                            .unwrap()
                    })
                    .collect();
                (y, grads)
            };
            let (y_cpu, g_cpu) = run(&Device::Cpu);
            let (y_gpu, g_gpu) = run(&gpu);
            let e = rel(&y_gpu, &y_cpu);
            assert!(e < 3e-2, "{what}: output differs by {e}");
            let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
            for (a, b) in g_gpu.iter().flatten().zip(g_cpu.iter().flatten()) {
                dot += (*a as f64) * (*b as f64);
                na += (*a as f64).powi(2);
                nb += (*b as f64).powi(2);
            }
            let cosine = dot / (na.sqrt() * nb.sqrt());
            assert!(cosine > 0.99, "{what}: gradient cosine {cosine}");
        }
    }
}

/// PromptIR (its own prompts only) on the GPU: the CPU's output and gradients.
#[test]
fn promptir_gives_the_cpus_output_and_gradients_on_the_gpu() {
    let gpu = gpu();
    let arch = promptir();
    let (y_cpu, g_cpu) = output_and_gradients(
        &network(&arch, PromptMode::None, &Device::Cpu),
        32,
        &Device::Cpu,
    );
    let (y_gpu, g_gpu) = output_and_gradients(&network(&arch, PromptMode::None, &gpu), 32, &gpu);
    let e = rel(&y_gpu, &y_cpu);
    assert!(e < 1e-4, "promptir: output differs by {e}");
    for (n, g) in &g_cpu {
        let e = rel(&g_gpu[n], g);
        assert!(e < 2e-3, "promptir: gradient of {n} differs by {e}");
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

/// One convolution case: input, weight, optional bias and activation, padding, stride, groups.
struct ConvCase {
    what: &'static str,
    x: Tensor,
    w: Tensor,
    bias: Option<(Tensor, Activation)>,
    pad: usize,
    stride: usize,
}

fn conv_cases() -> Vec<ConvCase> {
    let case = |what, x, w, bias, pad, stride| ConvCase {
        what,
        x,
        w,
        bias,
        pad,
        stride,
    };
    vec![
        case(
            "dense 3x3",
            random("a", &[2, 5, 13, 17]),
            random("b", &[4, 5, 3, 3]),
            None,
            1,
            1,
        ),
        case(
            "dense 7x7 stride 2",
            random("c", &[2, 3, 20, 20]),
            random("d", &[6, 3, 7, 7]),
            None,
            1,
            2,
        ),
        case(
            "pointwise",
            random("g", &[3, 8, 9, 10]),
            random("h", &[5, 8, 1, 1]),
            None,
            0,
            1,
        ),
        case(
            "3x3 + bias",
            random("i", &[2, 4, 12, 12]),
            random("j", &[6, 4, 3, 3]),
            Some((random("k", &[6]), Activation::None)),
            1,
            1,
        ),
        case(
            "3x3 + bias + ReLU",
            random("l", &[2, 4, 12, 12]),
            random("m", &[6, 4, 3, 3]).affine(1.0, -0.5).unwrap(),
            Some((random("n", &[6]), Activation::Relu)),
            1,
            1,
        ),
        case(
            "4x4 stride 2 + bias + LeakyReLU",
            random("o", &[2, 4, 16, 16]),
            random("p", &[8, 4, 4, 4]).affine(1.0, -0.5).unwrap(),
            Some((random("q", &[8]), Activation::LeakyRelu(0.2))),
            1,
            2,
        ),
        case(
            "depthwise 3x3",
            random("e", &[2, 6, 11, 9]),
            random("f", &[6, 1, 3, 3]),
            None,
            1,
            1,
        ),
        case(
            "depthwise 3x3 stride 2",
            random("r", &[2, 6, 12, 12]),
            random("s", &[6, 1, 3, 3]),
            None,
            1,
            2,
        ),
    ]
}

/// The output and the gradients (input, weight, bias) of `sum(y^2)` for a case on `dev`.
fn conv_run(c: &ConvCase, dev: &Device) -> Vec<(&'static str, Tensor)> {
    let xv = Var::from_tensor(&c.x.to_device(dev).unwrap()).unwrap();
    let wv = Var::from_tensor(&c.w.to_device(dev).unwrap()).unwrap();
    let bv = c
        .bias
        .as_ref()
        .map(|(b, _)| Var::from_tensor(&b.to_device(dev).unwrap()).unwrap());
    let (x, w) = (xv.as_tensor(), wv.as_tensor());
    let y = if c.what.starts_with("depthwise") {
        depthwise_op(x, w, c.pad, c.stride).unwrap()
    } else {
        match (&c.bias, &bv) {
            (Some((_, act)), Some(b)) => {
                conv2d_bias_act_op(x, w, b.as_tensor(), c.pad, c.stride, *act).unwrap()
            }
            _ => conv2d_op(x, w, c.pad, c.stride).unwrap(),
        }
    };
    let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![
        ("output", y.clone()),
        ("input gradient", g.get(x).unwrap().clone()),
        ("weight gradient", g.get(w).unwrap().clone()),
    ];
    if let Some(b) = &bv {
        out.push(("bias gradient", g.get(b.as_tensor()).unwrap().clone()));
    }
    out
}

/// cuDNN's convolutions (forward, both gradients, the bias gradient, grouped ones, the bias and
/// activation pass) give mio's CPU kernels' values in fp32, and within TF32's rounding in tf32;
/// each shape is planned once and then reused.
#[test]
fn cudnn_convolutions_agree_with_mios_cpu_kernels() {
    let gpu = gpu();
    for c in conv_cases() {
        let cpu = conv_run(&c, &Device::Cpu);
        for (p, tolerance) in [(Precision::Fp32, 1e-4), (Precision::Tf32, 1e-2)] {
            let _p = Scoped::new(p);
            let before = cudnn::planned_shapes();
            let on_gpu = conv_run(&c, &gpu);
            let planned = cudnn::planned_shapes();
            assert!(planned > before, "{}: no cuDNN plan was made", c.what);
            conv_run(&c, &gpu);
            assert_eq!(
                cudnn::planned_shapes(),
                planned,
                "{}: planned again",
                c.what
            );
            for ((part, a), (_, b)) in on_gpu.iter().zip(&cpu) {
                let e = rel(a, b);
                assert!(e < tolerance, "{} ({p:?}): {part} differs by {e}", c.what);
            }
        }
        // bf16 tensors on cuDNN's bf16 path: within bf16's rounding of the f32 values.
        {
            let _p = Scoped::new(Precision::Bf16);
            let bf16 = ConvCase {
                what: c.what,
                x: c.x.to_dtype(DType::BF16).unwrap(),
                w: c.w.to_dtype(DType::BF16).unwrap(),
                bias: c
                    .bias
                    .as_ref()
                    .map(|(b, a)| (b.to_dtype(DType::BF16).unwrap(), *a)),
                pad: c.pad,
                stride: c.stride,
            };
            for ((part, a), (_, b)) in conv_run(&bf16, &gpu).iter().zip(&cpu) {
                assert_eq!(a.dtype(), DType::BF16, "{} (bf16): {part}", c.what);
                let e = rel(&a.to_dtype(DType::F32).unwrap(), b);
                assert!(e < 3e-2, "{} (bf16): {part} differs by {e}", c.what);
            }
        }
        // Candle's own CUDA convolution (the switch off) agrees too.
        set_fast(false);
        let theirs = conv_run(&c, &gpu);
        set_fast(true);
        for ((part, a), (_, b)) in theirs.iter().zip(&cpu) {
            let e = rel(a, b);
            assert!(e < 1e-4, "{} (candle): {part} differs by {e}", c.what);
        }
    }
}

/// A stage's precision setting reaches cuBLAS's and cuDNN's products, and is undone after.
#[test]
fn tf32_changes_the_products_and_fp32_restores_them() {
    let gpu = gpu();
    let a = random("ga", &[256, 512]).to_device(&gpu).unwrap();
    let b = random("gb", &[512, 256]).to_device(&gpu).unwrap();
    let exact = a
        .to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .matmul(
            &b.to_device(&Device::Cpu)
                .unwrap()
                .to_dtype(candle_core::DType::F64)
                .unwrap(),
        )
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap();
    let fp32 = rel(&a.matmul(&b).unwrap(), &exact);
    let tf32 = {
        let _p = Scoped::new(Precision::Tf32);
        rel(&a.matmul(&b).unwrap(), &exact)
    };
    let again = rel(&a.matmul(&b).unwrap(), &exact);
    assert!(fp32 < 1e-5, "fp32 product off by {fp32}");
    assert!(
        tf32 > fp32,
        "tf32 ({tf32}) is no rougher than fp32 ({fp32})"
    );
    assert!(tf32 < 1e-2, "tf32 product off by {tf32}");
    assert!(again < 1e-5, "fp32 after tf32 off by {again}");
}
