//! `mio bench`: how fast mio trains and restores on this machine. Kernels (the CPU's GEMM peak,
//! a dense 3x3 convolution and a depthwise one, forward and backward, mio's kernels against
//! candle's) and whole networks (a training step: forward, L1 loss, backward, Adam; and the
//! restoration of one 512x512 image). Times are medians over rounds after a warm-up; on a GPU
//! each round waits for the device. Beside each network, the data loader: how long the CPU's
//! threads take to synthesise one of its training batches (crops degraded by the paper's seven
//! tasks), which a GPU's step must not wait on. tools/bench_train.sh runs the same cases in
//! PyTorch on the same machine and prints the ratios.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use mio_stdlib::kernels::conv::{conv2d_op, set_fast};
use mio_stdlib::kernels::depthwise::depthwise_op;
use mio_stdlib::kernels::precision;
use mio_stdlib::kernels::tokens::depthwise_tokens;
use mio_stdlib::models::network::{Arch, Network, Spec, SrResNetConfig};
use mio_stdlib::models::promptir::PromptIrConfig;
use mio_stdlib::models::restormer::RestormerConfig;
use mio_stdlib::models::swinir::SwinConfig;
use mio_stdlib::models::uformer::UformerConfig;
use mio_stdlib::models::PromptMode;
use mio_stdlib::train::{Adam, AdamConfig, Loss};

/// One network case: the architecture, and the batch and patch of its training step.
pub struct NetCase {
    pub name: String,
    pub arch: Arch,
    pub prompt: PromptMode,
    pub batch: usize,
    pub patch: usize,
}

fn case(name: &str, arch: Arch, prompt: PromptMode, batch: usize, patch: usize) -> NetCase {
    NetCase {
        name: name.into(),
        arch,
        prompt,
        batch,
        patch,
    }
}

const EP: PromptMode = PromptMode::Explicit { dim: 64 };

/// The small Restormer the CPU suite trains (the reference one takes seconds a step there).
fn restormer_small() -> RestormerConfig {
    RestormerConfig {
        dim: 16,
        blocks: [2, 2, 2, 2],
        refinement: 2,
        heads: [1, 2, 4, 8],
        ffn_expansion: 2.66,
        bias: false,
    }
}

/// The small Uformer the CPU suite trains: embed 16, window 4 (patches of 64).
fn uformer_small() -> UformerConfig {
    UformerConfig {
        embed: 16,
        depths: [1, 2, 2, 2, 2, 2, 2, 2, 1],
        window: 4,
        ..UformerConfig::reference()
    }
}

/// The small PromptIR the CPU suite trains: the small Restormer's body, the reference's prompts.
fn promptir_small() -> PromptIrConfig {
    PromptIrConfig {
        body: restormer_small(),
        ..PromptIrConfig::reference()
    }
}

/// The standard networks for a device: on the CPU, the quickstart's SRResNet, the reference
/// SRResNet with explicit prompts and a small Restormer, SwinIR and PromptIR at batch 8, patch
/// 48, and a small Uformer at batch 8, patch 64 (16 of its windows); on a
/// GPU, the reference configurations at the paper's batch and patch (128).
pub fn standard_cases(gpu: bool) -> Vec<NetCase> {
    let srresnet = |channels, blocks| {
        Arch::SrResNet(SrResNetConfig {
            channels,
            blocks,
            ..SrResNetConfig::reference()
        })
    };
    if gpu {
        vec![
            case("srresnet32x4", srresnet(32, 4), PromptMode::None, 16, 128),
            case("srresnet64x16ep", srresnet(64, 16), EP, 16, 128),
            case(
                "restormer_ep",
                Arch::Restormer(RestormerConfig::reference()),
                EP,
                8,
                128,
            ),
            case(
                "swinir_small",
                Arch::SwinIr(SwinConfig {
                    embed: 60,
                    depths: vec![6, 6, 6, 6],
                    heads: 6,
                    window: 8,
                    mlp_ratio: 2.0,
                }),
                PromptMode::None,
                8,
                128,
            ),
        ]
    } else {
        let swin = SwinConfig {
            embed: 60,
            depths: vec![2, 2, 2, 2],
            heads: 6,
            window: 8,
            mlp_ratio: 2.0,
        };
        vec![
            case("srresnet32x4", srresnet(32, 4), PromptMode::None, 8, 48),
            case("srresnet64x16ep", srresnet(64, 16), EP, 8, 48),
            case(
                "restormer16",
                Arch::Restormer(restormer_small()),
                PromptMode::None,
                8,
                48,
            ),
            case("swinir60", Arch::SwinIr(swin), PromptMode::None, 8, 48),
            case(
                "uformer16",
                Arch::Uformer(uformer_small()),
                PromptMode::None,
                8,
                64,
            ),
            case(
                "promptir16",
                Arch::PromptIr(promptir_small()),
                PromptMode::None,
                8,
                48,
            ),
        ]
    }
}

/// Median milliseconds of `f` over `rounds` after one warm-up call, stopping early once
/// `budget_s` seconds have gone (at least one timed round).
pub fn time(rounds: usize, budget_s: f64, dev: &Device, mut f: impl FnMut()) -> f64 {
    let sync = || dev.synchronize().expect("the device synchronises");
    f();
    sync();
    let start = Instant::now();
    let mut times = vec![];
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        f();
        sync();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if start.elapsed().as_secs_f64() > budget_s {
            break;
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

fn network(c: &NetCase, dev: &Device) -> candle_core::Result<Network> {
    let spec = Spec {
        arch: c.arch.clone(),
        prompt: c.prompt,
        map_size: 128,
        tasks: mio_stdlib::PAPER_TASKS
            .iter()
            .map(|t| t.to_string())
            .collect(),
    };
    Network::new(spec, 0, dev)
}

/// Milliseconds of one training step of `c` (forward, L1, backward, Adam), in the dtype of the
/// precision set (bf16 mixed precision: the forward and backward in bf16, Adam on the fp32
/// variables).
pub fn train_step_ms(
    c: &NetCase,
    dev: &Device,
    rounds: usize,
    budget_s: f64,
) -> candle_core::Result<f64> {
    let net = network(c, dev)?;
    let shape = (c.batch, 3, c.patch, c.patch);
    let lq = Tensor::rand(0f32, 1f32, shape, dev)?;
    let gt = Tensor::rand(0f32, 1f32, shape, dev)?;
    let ids: Vec<u32> = (0..c.batch as u32).map(|i| i % 7).collect();
    let ids = Tensor::new(ids.as_slice(), dev)?;
    let cfg = AdamConfig {
        betas: (0.9, 0.99),
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    };
    let mut opt = Adam::new(net.varmap.all_vars(), cfg)?;
    let mut failure = None;
    let ms = time(rounds, budget_s, dev, || {
        let mut step = || -> candle_core::Result<()> {
            let out = net.forward_in(precision::get().dtype(), &lq, &ids)?;
            let g = Loss::L1.compute(&out, &gt)?.backward()?;
            opt.step(&g, 1e-4)
        };
        if let Err(e) = step() {
            failure.get_or_insert(e);
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(ms),
    }
}

/// Milliseconds to restore one 512x512 image with `c`'s network.
pub fn infer_ms(
    c: &NetCase,
    dev: &Device,
    rounds: usize,
    budget_s: f64,
) -> candle_core::Result<f64> {
    let net = network(c, dev)?.frozen()?;
    let x = Tensor::rand(0f32, 1f32, (1, 3, 512, 512), dev)?;
    let ids = Tensor::new(&[0u32], dev)?;
    let mut failure = None;
    let ms = time(rounds, budget_s, dev, || {
        if let Err(e) = net.forward(&x, &ids) {
            failure.get_or_insert(e);
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(ms),
    }
}

/// Milliseconds for the CPU's threads to synthesise one training batch of `batch` crops of side
/// `patch`, each degraded by one of the paper's seven tasks, from four generated 512x512
/// images (textured, so that JPEG and the others do real work), and convert it to tensors: what
/// the loader's thread does ahead of a GPU's steps.
pub fn loader_ms(batch: usize, patch: usize, rounds: usize, budget_s: f64) -> f64 {
    use mio_stdlib::data::{Augment, TaskSpec, TrainSet};
    use mio_stdlib::degrade::Degradation;
    use mio_stdlib::image::Image;
    use mio_stdlib::loader::Draw;
    let side = 512.max(patch + 32);
    let images = (0..4u32)
        .map(|k| {
            let mut data = Vec::with_capacity(side * side * 3);
            for y in 0..side as u32 {
                for x in 0..side as u32 {
                    let h = (x ^ (y << 1)).wrapping_mul(2_654_435_761).wrapping_add(k) >> 24;
                    for c in 0..3u32 {
                        let smooth = (x * (c + 1) + y * (k + 2)) % 256;
                        data.push(((smooth * 3 + h) / 4) as u8);
                    }
                }
            }
            let img = Image {
                width: side,
                height: side,
                data,
            };
            (format!("generated{k}"), img, None)
        })
        .collect();
    let set = TrainSet {
        images,
        patch,
        augment: Augment {
            flip: true,
            rot90: true,
        },
    };
    let tasks: Vec<TaskSpec> = mio_stdlib::PAPER_TASKS
        .iter()
        .enumerate()
        .map(|(id, key)| TaskSpec {
            id,
            name: key.to_string(),
            degradation: Degradation::paper(key).expect("a paper task"),
            text: key.to_string(),
        })
        .collect();
    let draw = Draw {
        set: &set,
        tasks: &tasks,
        seed: 0,
        stage: 0,
        size: batch,
    };
    let mut step = 0;
    time(rounds, budget_s, &Device::Cpu, || {
        std::hint::black_box(draw.tensors(step).expect("a batch's tensors"));
        step += 1;
    })
}

/// GFLOP/s of a 1024^3 single-precision matrix product through candle's matmul (the `gemm`
/// crate on the CPU, cuBLAS on a GPU): the ceiling the convolution kernels work against.
pub fn gemm_gflops(dev: &Device, rounds: usize) -> candle_core::Result<f64> {
    let n = 1024;
    let a = Tensor::rand(0f32, 1f32, (n, n), dev)?;
    let b = Tensor::rand(0f32, 1f32, (n, n), dev)?;
    let ms = time(rounds, 10.0, dev, || {
        a.matmul(&b).expect("a square matmul");
    });
    Ok(2.0 * (n as f64).powi(3) / (ms * 1e-3) / 1e9)
}

/// The kernel cases on the CPU: `(name, milliseconds)` for mio's kernels and for candle's.
pub fn kernel_cases(rounds: usize) -> candle_core::Result<Vec<(String, f64)>> {
    let dev = Device::Cpu;
    let var = |dims: (usize, usize, usize, usize)| -> candle_core::Result<Var> {
        Var::from_tensor(&Tensor::rand(-1f32, 1f32, dims, &dev)?)
    };
    // A dense 64 -> 64 3x3 convolution on 8 images of 64x64 (an SRResNet layer at patch 64).
    let (x, w) = (var((8, 64, 64, 64))?, var((64, 64, 3, 3))?);
    // A depthwise 3x3 over 144 channels of 8 images of 64x64 (Restormer's level-1 qkv_dwconv).
    let (dx, dw) = (var((8, 144, 64, 64))?, var((144, 1, 3, 3))?);
    // The same on 8 grids of 64x64 tokens of 128 channels, channels last, with a bias
    // (Uformer-B's level-1 LeFF).
    let (tx, tw) = (var((8, 64, 64, 128))?, var((128, 1, 3, 3))?);
    let tb = Var::from_tensor(&Tensor::rand(-1f32, 1f32, 128, &dev)?)?;
    let mut out = vec![];
    for (label, fast) in [("mio", true), ("candle", false)] {
        set_fast(fast);
        let conv = time(rounds, 20.0, &dev, || {
            let y = conv2d_op(&x, &w, 1, 1).expect("conv");
            y.sum_all().expect("sum").backward().expect("backward");
        });
        out.push((format!("{label}.conv3x3_fwd_bwd"), conv));
        let depthwise = time(rounds, 20.0, &dev, || {
            let y = depthwise_op(&dx, &dw, 1, 1).expect("depthwise");
            y.sum_all().expect("sum").backward().expect("backward");
        });
        out.push((format!("{label}.dwconv3x3_fwd_bwd"), depthwise));
        let tokens = time(rounds, 20.0, &dev, || {
            let y = depthwise_tokens(&tx, &tw, &tb).expect("token depthwise");
            y.sum_all().expect("sum").backward().expect("backward");
        });
        out.push((format!("{label}.dwtokens3x3_fwd_bwd"), tokens));
    }
    set_fast(true);
    // The token grid through mio's channels-first kernel, transposed there and back: what
    // the channels-last kernel saves.
    let transposed = time(rounds, 20.0, &dev, || {
        let first = tx
            .permute((0, 3, 1, 2))
            .and_then(|t| t.contiguous())
            .expect("permute");
        let y = depthwise_op(&first, &tw, 1, 1)
            .and_then(|y| y.broadcast_add(&tb.reshape((1, 128, 1, 1))?))
            .and_then(|y| y.permute((0, 2, 3, 1))?.contiguous())
            .expect("depthwise");
        y.sum_all().expect("sum").backward().expect("backward");
    });
    out.push(("mio.dwtokens3x3_transposed_fwd_bwd".into(), transposed));
    Ok(out)
}
