//! Trains the task classifier as a classifier step does (regions zoomed, recoloured and
//! re-exposed, crops flipped and rotated, Adam, a tenth of the rate for the last quarter) and
//! measures it on the test images degraded by the paper's seven in-distribution tasks, DRAWS
//! draws each; prints the confusion matrix and every image it gets wrong. The measurements of
//! docs/quickstart.md come from it:
//!
//! `cargo run --release -p mio-stdlib --example classifier_sweep -- data/train data/test`
//!
//! Settings from the environment (defaults: the quickstart's classifier): ITERS (6000), BATCH
//! (32), PATCH (48), LR (1e-3), SEED (0), DRAWS (3), ZOOM_LO..ZOOM_HI (0.4..1),
//! EXPO_LO..EXPO_HI (0.75..1.35; 1..1 for none). SAVE=FILE writes the trained weights,
//! LOAD=FILE reads them instead of training, VOTES=1 prints, for the first draw of each image,
//! how many of its 9x9 patches alone would name each task and the image's mean logits; TTA=1
//! classifies each image by the mean logits of its eight flips and quarter turns; POOLS=1 also
//! prints how many images five ways of pooling the patches' logits get right (their mean, as
//! the reference's `CondNet` pools, the mean of their probabilities, log-mean-exp, the logits
//! weighted by each patch's confidence, a vote of the patches).
use candle_core::{Device, Tensor, D};
use mio_stdlib::data::{Augment, TaskSpec, TrainSet};
use mio_stdlib::degrade::{rng_for, Degradation};
use mio_stdlib::models::classifier::{self, TaskClassifier};
use mio_stdlib::regions::{RegionAugment, RegionPool, ROUND_STEPS};
use std::path::Path;

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

const TASKS: [&str; 7] = ["sr", "blur", "noise", "jpeg", "rain", "haze", "lowlight"];

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dev = Device::Cpu;
    let iters: u64 = env("ITERS", 6000);
    let batch: usize = env("BATCH", 32);
    let patch: usize = env("PATCH", 48);
    let lr: f64 = env("LR", 1e-3);
    let seed: u64 = env("SEED", 0);
    let draws: u64 = env("DRAWS", 3);
    let tasks: Vec<TaskSpec> = TASKS
        .iter()
        .enumerate()
        .map(|(id, k)| TaskSpec {
            id,
            name: k.to_string(),
            degradation: Degradation::paper(k).unwrap(),
            text: k.to_string(),
        })
        .collect();
    let aug = Augment {
        flip: true,
        rot90: true,
    };
    let (set, _) = TrainSet::load(Path::new(&args[0]), patch, aug, 0).unwrap();
    let vm = candle_nn::VarMap::new();
    let net = TaskClassifier::new(
        7,
        candle_nn::VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev),
    )?;
    mio_stdlib::models::init_default(&vm, seed)?;
    let vars = mio_stdlib::trainer::sorted_vars(&vm);
    let mut opt = classifier::optimizer(vars.iter().map(|(_, v)| v.clone()).collect())?;
    let regions = RegionAugment {
        scale: (env("ZOOM_LO", 0.4), env("ZOOM_HI", 1.0)),
        colour: true,
        exposure: (env("EXPO_LO", 0.75), env("EXPO_HI", 1.35)),
    };
    let mut pool: Option<(u64, RegionPool)> = None;
    let t0 = std::time::Instant::now();
    let mut avg = 0.0;
    let load = std::env::var("LOAD").ok();
    let iters = if let Some(f) = &load {
        let mut vm = vm.clone();
        vm.load(f)?;
        0
    } else {
        iters
    };
    for step in 0..iters {
        let round = step / ROUND_STEPS;
        if pool.as_ref().is_none_or(|(r, _)| *r != round) {
            let p = RegionPool::for_crops(&set, &tasks, seed ^ 1000, round, patch, regions);
            pool = Some((round, p));
        }
        let b = pool
            .as_ref()
            .unwrap()
            .1
            .batch(seed ^ 1000, step, batch, patch, aug);
        let (lq, _, ids) = b.to_tensors(&dev)?;
        let rate = classifier::rate(lr, step, iters);
        let logits = net.forward(&lq)?;
        let loss = TaskClassifier::loss(&logits, &ids)?;
        avg = 0.99 * avg + 0.01 * loss.to_scalar::<f32>()? as f64;
        opt.step(&loss.backward()?, rate)?;
        if (step + 1) % 1000 == 0 {
            eprintln!(
                "step {} loss {avg:.3} {:.0}s",
                step + 1,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    if let Ok(f) = std::env::var("SAVE") {
        vm.save(f)?;
    }
    let tests = mio_stdlib::image::list_folder(Path::new(&args[1])).unwrap();
    {
        let label = "in";
        let mut confusion = [[0usize; 7]; 7];
        let mut pooled = [0usize; POOLS.len()];
        for path in &tests {
            let img = mio_stdlib::image::load(path).unwrap().image;
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            for (t, k) in TASKS.iter().enumerate() {
                let d = Degradation::paper(k).unwrap();
                for draw in 0..draws {
                    let mut rng = rng_for(seed * 100 + draw, &format!("{d:?}"), &name);
                    let (lq, _) = d.apply(&img, &mut rng, None);
                    let x = Tensor::from_vec(lq.to_f32(), (lq.height, lq.width, 3), &dev)?
                        .permute((2, 0, 1))?
                        .unsqueeze(0)?;
                    let p = if std::env::var("TTA").is_ok() {
                        // The eight flips and quarter turns, their logits averaged.
                        let mut sum = net.forward(&x)?;
                        for k in 1..8 {
                            let mut t = if k >= 4 {
                                x.contiguous()?.flip(&[3])?
                            } else {
                                x.clone()
                            };
                            for _ in 0..k % 4 {
                                t = t.transpose(2, 3)?.contiguous()?.flip(&[3])?;
                            }
                            sum = (sum + net.forward(&t)?)?;
                        }
                        sum
                    } else {
                        net.forward(&x)?
                    };
                    let p = p.argmax(D::Minus1)?.to_vec1::<u32>()?[0];
                    if std::env::var("VOTES").is_ok() && draw == 0 {
                        let pl = net.patch_logits(&x)?;
                        let votes: Vec<u32> = pl.argmax(D::Minus1)?.flatten_all()?.to_vec1()?;
                        let mut count = [0usize; 7];
                        for v in &votes {
                            count[*v as usize] += 1;
                        }
                        let mean: Vec<f32> = pl.mean(1)?.mean(1)?.squeeze(0)?.to_vec1()?;
                        let means: Vec<String> = mean.iter().map(|m| format!("{m:.2}")).collect();
                        eprintln!(
                            "votes {label} {name} {k}: {count:?} mean logits {}",
                            means.join(" ")
                        );
                    }
                    if std::env::var("POOLS").is_ok() {
                        let pl = net.patch_logits(&x)?.flatten(0, 2)?;
                        for (m, q) in pools(&pl)?.into_iter().enumerate() {
                            pooled[m] += usize::from(q == t);
                        }
                    }
                    confusion[t][p as usize] += 1;
                    if p as usize != t {
                        eprintln!("{label} {name} {k} draw {draw}: {}", TASKS[p as usize]);
                    }
                }
            }
        }
        let right: usize = (0..7).map(|i| confusion[i][i]).sum();
        let total: usize = confusion.iter().flatten().sum();
        println!(
            "{label}: {:.1}% of {total} (seed {seed}, iters {iters}, batch {batch}, patch {patch}, lr {lr})",
            100.0 * right as f64 / total as f64
        );
        for (t, row) in confusion.iter().enumerate() {
            println!("  {:>8} {row:?}", TASKS[t]);
        }
        if std::env::var("POOLS").is_ok() {
            for (name, n) in POOLS.iter().zip(pooled) {
                println!(
                    "  pooled by {name}: {:.1}%",
                    100.0 * n as f64 / total as f64
                );
            }
        }
    }
    Ok(())
}

const POOLS: [&str; 5] = [
    "mean logits",
    "mean probabilities",
    "log-mean-exp",
    "confidence-weighted logits",
    "patch votes",
];

/// The task each way of pooling the patches' logits `[patches, tasks]` picks.
fn pools(pl: &Tensor) -> candle_core::Result<Vec<usize>> {
    let rows: Vec<Vec<f32>> = pl.to_vec2()?;
    let n = rows[0].len();
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
            .0
    };
    let softmax = |r: &[f32]| {
        let m = r.iter().cloned().fold(f32::MIN, f32::max);
        let e: Vec<f32> = r.iter().map(|x| (x - m).exp()).collect();
        let s: f32 = e.iter().sum();
        e.into_iter().map(|x| x / s).collect::<Vec<f32>>()
    };
    let mut mean = vec![0f32; n];
    let mut prob = vec![0f32; n];
    let mut lse = vec![0f64; n];
    let mut conf = vec![0f32; n];
    let mut votes = vec![0f32; n];
    for r in &rows {
        let p = softmax(r);
        // 1 minus the normalised entropy: 1 for a patch sure of one task, 0 for a flat one.
        let h: f32 = p
            .iter()
            .map(|&q| if q > 0.0 { -q * q.ln() } else { 0.0 })
            .sum();
        let w = 1.0 - h / (n as f32).ln();
        for c in 0..n {
            mean[c] += r[c];
            prob[c] += p[c];
            lse[c] += (r[c] as f64).exp();
            conf[c] += w * r[c];
        }
        votes[argmax(r)] += 1.0;
    }
    let lse: Vec<f32> = lse.into_iter().map(|x| x.ln() as f32).collect();
    Ok([mean, prob, lse, conf, votes]
        .iter()
        .map(|v| argmax(v))
        .collect())
}
