//! The training pieces together: an SRResNet overfits one batch of real denoising crops with
//! Adam, L1 and the cosine schedule (the loss falls towards zero).

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use mio_stdlib::data::{Augment, TaskSpec, TrainSet};
use mio_stdlib::degrade::{Degradation, Sampled};
use mio_stdlib::models::{init_weights, srresnet::SrResNet, PromptMode};
use mio_stdlib::train::{Adam, AdamConfig, Loss, Schedule};

/// The bundled training images, cut into `patch` crops (at most `limit` images, 0 for all).
fn train_images(patch: usize, augment: Augment, limit: usize) -> TrainSet {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/train");
    TrainSet::load(&root, patch, augment, limit).unwrap().0
}

/// Adam as the reference trains SRResNet: betas (0.9, 0.99), no weight decay.
fn adam() -> AdamConfig {
    AdamConfig {
        betas: (0.9, 0.99),
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    }
}

#[test]
fn srresnet_overfits_one_batch() {
    let dev = Device::Cpu;
    let set = train_images(
        16,
        Augment {
            flip: true,
            rot90: true,
        },
        0,
    );
    let noise = TaskSpec {
        id: 0,
        name: "noise".into(),
        degradation: Degradation::Noise {
            sigma: Sampled::Fixed(25.0),
        },
        text: "noise(sigma = 25)".into(),
    };
    let batch = set.batch(&[noise], 0, 0, 0, 2);
    let (lq, gt, _) = batch.to_tensors(&dev).unwrap();

    let vm = VarMap::new();
    let net = SrResNet::new(
        16,
        2,
        PromptMode::None,
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )
    .unwrap();
    init_weights(&vm, 0, 0.1).unwrap();
    let config = adam();
    let mut opt = Adam::new(vm.all_vars(), config).unwrap();
    let schedule = Schedule::CosineRestart {
        min_lr: 1e-5,
        periods: vec![],
    };
    let steps = 400;
    let mut losses = vec![];
    for t in 0..steps {
        let out = net.forward(&lq, None).unwrap();
        let loss = Loss::L1.compute(&out, &gt).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        let grads = loss.backward().unwrap();
        opt.step(&grads, schedule.lr(3e-3, t, steps)).unwrap();
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    // The input's own error is the first loss (the model starts near the identity).
    // Measured: 0.075 -> 0.0048, about 1/255 per value: the batch is memorised.
    assert!(last < first * 0.1 && last < 0.01, "loss {first} -> {last}");
    assert!(losses.iter().all(|l| l.is_finite()));
}

mod stages {
    use super::*;
    use candle_core::Tensor;
    use mio_stdlib::trainer::{checkpoint_path, run_stage, sorted_vars, StageConfig, StageError};

    fn tasks() -> Vec<TaskSpec> {
        vec![
            TaskSpec {
                id: 0,
                name: "noise".into(),
                degradation: Degradation::paper("noise").unwrap(),
                text: "noise()".into(),
            },
            TaskSpec {
                id: 1,
                name: "lowlight".into(),
                degradation: Degradation::paper("lowlight").unwrap(),
                text: "lowlight()".into(),
            },
        ]
    }

    fn config(iters: u64, lr: f64) -> StageConfig {
        StageConfig {
            seed: 7,
            stage: 1,
            iters,
            batch: 2,
            lr,
            adam: adam(),
            schedule: Schedule::CosineRestart {
                min_lr: 1e-7,
                periods: vec![],
            },
            loss: Loss::L1,
            ema: 0.999,
            grad_clip: 0.0,
            checkpoint_every: 3,
            precision: None,
        }
    }

    /// A small explicit-prompt SRResNet and its fixed task maps, built the same way each time.
    fn model(dev: &Device) -> (VarMap, SrResNet, Tensor) {
        let vm = VarMap::new();
        let net = SrResNet::new(
            8,
            1,
            PromptMode::Explicit { dim: 8 },
            VarBuilder::from_varmap(&vm, DType::F32, dev),
        )
        .unwrap();
        init_weights(&vm, 1, 0.1).unwrap();
        // The fixed task maps come from the seed, as a run draws them (candle's own random
        // tensors are not seeded).
        let mut rng = mio_stdlib::rng::Rng::derive(7, &["prompt maps"]);
        let v: Vec<f32> = (0..2 * 16 * 16).map(|_| rng.uniform() as f32).collect();
        let maps = Tensor::from_vec(v, (2, 1, 16, 16), dev).unwrap();
        (vm, net, maps)
    }

    fn weights(vm: &VarMap) -> Vec<Vec<f32>> {
        sorted_vars(vm)
            .iter()
            .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("mio-trainer-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn an_interrupted_stage_resumes_to_the_same_weights_bit_for_bit() {
        let dev = Device::Cpu;
        let set = train_images(
            16,
            Augment {
                flip: true,
                rot90: true,
            },
            0,
        );
        let tasks = tasks();
        let cfg = config(10, 1e-3);
        // Uninterrupted.
        let (vm_a, net_a, maps) = model(&dev);
        let fwd_a = |lq: &Tensor, ids: &Tensor| {
            let z = net_a.latent(&maps.index_select(ids, 0)?)?;
            net_a.forward(lq, z.as_ref())
        };
        let dir_a = temp("a");
        let a = run_stage(
            &vm_a,
            &fwd_a,
            &set,
            &tasks,
            &cfg,
            &dir_a,
            None,
            None,
            |_, _, _| {},
        )
        .unwrap();
        assert!(a.completed && a.losses.len() == 10);
        // Stopped after 5 steps (checkpoint at 3), then a fresh process resumes.
        let dir_b = temp("b");
        let (vm_b, net_b, maps_b) = model(&dev);
        let fwd_b = |lq: &Tensor, ids: &Tensor| {
            let z = net_b.latent(&maps_b.index_select(ids, 0)?)?;
            net_b.forward(lq, z.as_ref())
        };
        let first = run_stage(
            &vm_b,
            &fwd_b,
            &set,
            &tasks,
            &cfg,
            &dir_b,
            Some(5),
            None,
            |_, _, _| {},
        )
        .unwrap();
        assert!(!first.completed);
        assert_eq!(
            first.checkpoint.as_deref(),
            Some(checkpoint_path(&dir_b, 1).as_path())
        );
        drop((vm_b, net_b, maps_b));
        let (vm_c, net_c, maps_c) = model(&dev);
        let fwd_c = |lq: &Tensor, ids: &Tensor| {
            let z = net_c.latent(&maps_c.index_select(ids, 0)?)?;
            net_c.forward(lq, z.as_ref())
        };
        let resumed = run_stage(
            &vm_c,
            &fwd_c,
            &set,
            &tasks,
            &cfg,
            &dir_b,
            None,
            None,
            |_, _, _| {},
        )
        .unwrap();
        assert!(resumed.completed);
        assert_eq!(
            resumed.losses.first().unwrap().0,
            3,
            "resumed from the checkpoint at step 3"
        );
        let (wa, wc) = (weights(&vm_a), weights(&vm_c));
        let differing = wa.iter().zip(&wc).filter(|(x, y)| x != y).count();
        assert_eq!(
            differing,
            0,
            "{differing} of {} variables differ after resuming",
            wa.len()
        );
        // The step-3..9 losses agree too.
        assert_eq!(a.losses[3..], resumed.losses[..]);
        // A finished stage run again does nothing.
        let again = run_stage(
            &vm_c,
            &fwd_c,
            &set,
            &tasks,
            &cfg,
            &dir_b,
            None,
            None,
            |_, _, _| {},
        )
        .unwrap();
        assert!(again.completed && again.losses.is_empty());
        // Ctrl-C: the stop flag set after step 4 saves a checkpoint of 5 steps (not the
        // periodic one at 3), and the resumed run ends with the same weights.
        let dir_d = temp("d");
        let (vm_d, net_d, maps_d) = model(&dev);
        let fwd_d = |lq: &Tensor, ids: &Tensor| {
            let z = net_d.latent(&maps_d.index_select(ids, 0)?)?;
            net_d.forward(lq, z.as_ref())
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let stopped = run_stage(
            &vm_d,
            &fwd_d,
            &set,
            &tasks,
            &cfg,
            &dir_d,
            None,
            Some(&stop),
            |step, _, _| {
                if step == 4 {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed)
                }
            },
        )
        .unwrap();
        assert!(!stopped.completed && stopped.losses.len() == 5);
        let resumed = run_stage(
            &vm_d,
            &fwd_d,
            &set,
            &tasks,
            &cfg,
            &dir_d,
            None,
            None,
            |_, _, _| {},
        )
        .unwrap();
        assert_eq!(
            resumed.losses.first().unwrap().0,
            5,
            "resumed at the Ctrl-C step"
        );
        assert_eq!(weights(&vm_d), wa);
    }

    #[test]
    fn a_diverging_stage_stops_with_a_clear_error_and_keeps_the_last_checkpoint() {
        let dev = Device::Cpu;
        let set = train_images(
            16,
            Augment {
                flip: false,
                rot90: false,
            },
            2,
        );
        let (vm, net, maps) = model(&dev);
        let fwd = |lq: &Tensor, ids: &Tensor| {
            let z = net.latent(&maps.index_select(ids, 0)?)?;
            net.forward(lq, z.as_ref())
        };
        let mut cfg = config(40, 1e12);
        cfg.checkpoint_every = 1;
        cfg.schedule = Schedule::Constant;
        let dir = temp("nan");
        let err = run_stage(
            &vm,
            &fwd,
            &set,
            &tasks(),
            &cfg,
            &dir,
            None,
            None,
            |_, _, _| {},
        )
        .unwrap_err();
        let StageError::Diverged {
            step,
            last_checkpoint,
        } = &err
        else {
            panic!("{err}")
        };
        assert!(*step >= 1, "the first step's loss is finite");
        assert!(last_checkpoint.as_ref().unwrap().exists());
        assert!(err.to_string().contains("lower the learning rate"), "{err}");
    }
}

#[test]
fn the_task_classifier_learns_to_tell_degradations_apart() {
    use mio_stdlib::models::classifier::TaskClassifier;
    let dev = Device::Cpu;
    let set = train_images(
        27,
        Augment {
            flip: true,
            rot90: true,
        },
        0,
    );
    // Two tasks that look nothing alike: heavy noise and strong low light.
    let tasks = vec![
        TaskSpec {
            id: 0,
            name: "noise".into(),
            degradation: Degradation::Noise {
                sigma: Sampled::Fixed(40.0),
            },
            text: "noise(sigma = 40)".into(),
        },
        TaskSpec {
            id: 1,
            name: "lowlight".into(),
            degradation: Degradation::Lowlight {
                gamma: Sampled::Fixed(2.5),
            },
            text: "lowlight(gamma = 2.5)".into(),
        },
    ];
    let vm = VarMap::new();
    let clf = TaskClassifier::new(2, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    mio_stdlib::models::init_default(&vm, 5).unwrap();
    let config = AdamConfig {
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    };
    let mut opt = Adam::new(vm.all_vars(), config).unwrap();
    for step in 0..150 {
        let (lq, _, ids) = set.batch(&tasks, 3, 0, step, 8).to_tensors(&dev).unwrap();
        let loss = TaskClassifier::loss(&clf.forward(&lq).unwrap(), &ids).unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads, 1e-3).unwrap();
    }
    // Fresh crops it has not seen (another stage index).
    let (lq, _, ids) = set.batch(&tasks, 3, 1, 0, 32).to_tensors(&dev).unwrap();
    let predicted = clf.predict(&lq).unwrap();
    let truth: Vec<u32> = ids.to_vec1().unwrap();
    let right = predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
    assert!(right >= 28, "{right}/32 right");
}

#[test]
fn a_curriculum_carries_weights_and_restarts_the_optimizer_per_stage() {
    use candle_core::Tensor;
    use mio_stdlib::trainer::{checkpoint_path, run_stages, sorted_vars, StageConfig};
    use std::cell::RefCell;
    let dev = Device::Cpu;
    let set = train_images(
        16,
        Augment {
            flip: false,
            rot90: false,
        },
        0,
    );
    let noise = TaskSpec {
        id: 0,
        name: "noise".into(),
        degradation: Degradation::paper("noise").unwrap(),
        text: "noise()".into(),
    };
    let dark = TaskSpec {
        id: 1,
        name: "lowlight".into(),
        degradation: Degradation::paper("lowlight").unwrap(),
        text: "lowlight()".into(),
    };
    // Sequential learning over two tasks: stage 1 on noise, stage 2 on noise and low light.
    let stages = vec![(vec![noise.clone()], 4), (vec![noise, dark], 6)];
    let vm = VarMap::new();
    let net = SrResNet::new(
        8,
        1,
        PromptMode::None,
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )
    .unwrap();
    init_weights(&vm, 2, 0.1).unwrap();
    let seen: RefCell<Vec<Vec<u32>>> = RefCell::new(vec![]);
    let fwd = |lq: &Tensor, ids: &Tensor| {
        seen.borrow_mut().push(ids.to_vec1().unwrap());
        net.forward(lq, None)
    };
    let base = StageConfig {
        seed: 1,
        stage: 0,
        iters: 0,
        batch: 4,
        lr: 1e-3,
        adam: adam(),
        schedule: Schedule::CosineRestart {
            min_lr: 1e-7,
            periods: vec![],
        },
        loss: Loss::L1,
        ema: 0.0,
        grad_clip: 0.0,
        checkpoint_every: 100,
        precision: None,
    };
    let dir = std::env::temp_dir().join(format!("mio-curriculum-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut lrs: Vec<(usize, u64, f64)> = vec![];
    let out = run_stages(&vm, &fwd, &set, &stages, &base, &dir, |k, s, _, lr| {
        lrs.push((k, s, lr))
    })
    .unwrap();
    assert_eq!(
        out.iter().map(|o| o.losses.len()).collect::<Vec<_>>(),
        [4, 6]
    );
    // Stage 1 saw only noise; stage 2 both tasks (earlier ones replayed).
    let ids = seen.borrow();
    assert!(ids[..4].iter().flatten().all(|&i| i == 0));
    assert!(
        ids[4..].iter().flatten().any(|&i| i == 1) && ids[4..].iter().flatten().any(|&i| i == 0)
    );
    // The learning rate restarts at each stage's first step.
    assert_eq!(lrs[0], (0, 0, 1e-3));
    assert_eq!(lrs[4], (1, 0, 1e-3));
    assert!(lrs[3].2 < 1e-3 && lrs[9].2 < 1e-3);
    // A fresh optimizer per stage: stage 2's checkpoint counts 6 Adam steps, not 10.
    let meta: Vec<f64> = candle_core::safetensors::load(checkpoint_path(&dir, 1), &dev).unwrap()
        ["meta.steps_done"]
        .to_vec1()
        .unwrap();
    assert_eq!(meta, [6.0, 6.0]);
    let after: Vec<Vec<f32>> = sorted_vars(&vm)
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    // Running the finished curriculum again reruns nothing and changes nothing.
    drop(ids);
    let again = run_stages(&vm, &fwd, &set, &stages, &base, &dir, |_, _, _, _| {}).unwrap();
    assert!(again.iter().all(|o| o.completed && o.losses.is_empty()));
    let still: Vec<Vec<f32>> = sorted_vars(&vm)
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    assert!(
        after == still,
        "reloading finished stages keeps the final weights"
    );
}

/// Batches made ahead on the loader's thread are the ones made in line, step for step; a stage
/// that stops early (the loader dropped with its queue full) does not hang.
#[test]
fn the_loader_makes_the_same_batches_ahead_as_in_line() {
    use mio_stdlib::loader::{Draw, Loader};
    let set = train_images(
        24,
        Augment {
            flip: true,
            rot90: false,
        },
        3,
    );
    let tasks = [
        TaskSpec {
            id: 0,
            name: "noise".into(),
            degradation: Degradation::Noise {
                sigma: Sampled::Range(5.0, 50.0),
            },
            text: "noise(sigma = 5..50)".into(),
        },
        TaskSpec {
            id: 1,
            name: "jpeg".into(),
            degradation: Degradation::Jpeg {
                quality: Sampled::Range(30.0, 70.0),
            },
            text: "jpeg(quality = 30..70)".into(),
        },
    ];
    let draw = Draw {
        set: &set,
        tasks: &tasks,
        seed: 5,
        stage: 1,
        size: 3,
    };
    // Every value of the three tensors, in order.
    let values = |t: (
        candle_core::Tensor,
        candle_core::Tensor,
        candle_core::Tensor,
    )| {
        let f = |x: candle_core::Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (f(t.0), f(t.1), t.2.to_vec1::<u32>().unwrap())
    };
    let inline: Vec<_> = (10..16).map(|s| values(draw.tensors(s).unwrap())).collect();
    // The tensors are the batch's crops.
    let b = draw.batch(10);
    assert_eq!(inline[0].0.len(), 3 * 3 * 24 * 24);
    assert_eq!(inline[0].0[0], b.lq[0].data[0] as f32 / 255.0);
    assert_eq!(
        inline[0].2,
        b.task.iter().map(|&t| t as u32).collect::<Vec<_>>()
    );
    std::thread::scope(|scope| {
        let mut ahead = Loader::new(scope, draw, 10..16, 2);
        for (i, step) in (10..16).enumerate() {
            assert_eq!(values(ahead.next(step).unwrap()), inline[i], "step {step}");
        }
        // Out of order is an error, not a wrong batch.
        assert!(Loader::new(scope, draw, 10..16, 2).next(11).is_err());
    });
    // Steps 10..12 of 10..1000 asked for, the rest abandoned: the scope must end.
    std::thread::scope(|scope| {
        let mut early = Loader::new(scope, draw, 10..1000, 3);
        assert_eq!(values(early.next(10).unwrap()), inline[0]);
        assert_eq!(values(early.next(11).unwrap()), inline[1]);
    });
    // Different steps give different crops (the comparison above could not pass by accident).
    assert_ne!(inline[0], inline[1]);
}
