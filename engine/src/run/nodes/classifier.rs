//! The task classifier of an explicit-prompt model. It checkpoints like a training stage
//! (weights, Adam's moments, the step) every `checkpoint_every` steps and on Ctrl-C, and
//! resumes from its checkpoint to the same weights.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use mio_stdlib::models::classifier::{self, TaskClassifier};
use mio_stdlib::train::Adam;

use super::common::{classifier_net, compute, fail, failed, write_json, Ctx};
use super::train::{open_log, resumable_steps};
use crate::job::{Classifier, JobFile};
use crate::run::artifact::ClassifierInfo;
use crate::run::error::{NodeError, RunError};

/// The classifier's draws get a seed of their own, apart from the training stages'.
const SALT: u64 = 1000;

/// The regions of a round (a fresh set every `ROUND_STEPS` steps).
fn regions(
    set: &mio_stdlib::data::TrainSet,
    j: &Classifier,
    round: u64,
) -> mio_stdlib::regions::RegionPool {
    mio_stdlib::regions::RegionPool::for_crops(
        set,
        &j.tasks,
        j.seed ^ SALT,
        round,
        j.patch,
        j.regions,
    )
}

pub(super) fn run(ctx: &Ctx, jf: &JobFile, j: &Classifier, dir: &Path) -> Result<(), RunError> {
    let name = &jf.name;
    let f = failed(name);
    if let Some(file) = &j.file {
        return from_file(ctx, jf, j, &jf.base.join(file), dir);
    }
    let Some(data) = &j.data else {
        return Err(fail(
            name,
            NodeError::Crashed("a classifier without data or a file".into()),
        ));
    };
    let set = ctx.train_set(&jf.base, data).map_err(&f)?;
    let (vm, net) = classifier_net(j.tasks.len(), &ctx.device).map_err(&f)?;
    mio_stdlib::models::init_default(&vm, j.seed).map_err(compute(name))?;
    let vars = mio_stdlib::trainer::sorted_vars(&vm);
    let mut opt = classifier::optimizer(vars.iter().map(|(_, v)| v.clone()).collect())
        .map_err(compute(name))?;
    let (iters, batch) = (j.iters, j.batch);
    let ckpt = dir.join("classifier.ckpt.safetensors");
    let mut start = resumable_steps(ctx, name, &ckpt);
    if start > 0 {
        start = mio_stdlib::trainer::load_checkpoint(&ckpt, &vars, &mut opt, None)
            .map_err(compute(name))?;
    }
    let log_path = dir.join("losses.jsonl");
    let mut log = open_log(&log_path, start).map_err(&f)?;
    let save = |opt: &Adam, done: u64| {
        mio_stdlib::trainer::save_checkpoint(&ckpt, &vars, opt, None, done).map_err(compute(name))
    };
    let started = Instant::now();
    let mut pool: Option<(u64, mio_stdlib::regions::RegionPool)> = None;
    let mut board =
        crate::run::tensorboard::Board::open(jf, jf.name.split('/').next().unwrap_or(""), &j.model);
    for step in start..iters {
        if ctx.stopped() {
            if step > start {
                save(&opt, step)?;
            }
            return Err(RunError::Interrupted { node: name.clone() });
        }
        let round = step / mio_stdlib::regions::ROUND_STEPS;
        if pool.as_ref().is_none_or(|(r, _)| *r != round) {
            pool = Some((round, regions(&set, j, round)));
        }
        let b = pool.as_ref().expect("built above").1.batch(
            j.seed ^ SALT,
            step,
            batch,
            j.patch,
            j.augment,
        );
        let (lq, _, ids) = b.to_tensors(&ctx.device).map_err(compute(name))?;
        let lr = classifier::rate(j.lr, step, iters);
        let logits = net.forward(&lq).map_err(compute(name))?;
        let loss = TaskClassifier::loss(&logits, &ids).map_err(compute(name))?;
        let value = loss.to_scalar::<f32>().map_err(compute(name))?;
        let grads = loss.backward().map_err(compute(name))?;
        opt.step(&grads, lr).map_err(compute(name))?;
        let rate = (step + 1 - start) as f64 / started.elapsed().as_secs_f64().max(1e-9);
        ctx.progress().step(step, iters, value, lr, rate);
        let _ = writeln!(log, "{{\"step\": {step}, \"loss\": {value}, \"lr\": {lr}}}");
        board.scalar("classifier/loss", step as i64 + 1, value as f64);
        let done = step + 1;
        if done % j.checkpoint_every == 0 && done < iters {
            save(&opt, done)?;
        }
    }
    // Accuracy on crops of regions it never saw, for the report.
    let mut right = 0;
    let mut total = 0;
    let held_out = regions(&set, j, u64::MAX);
    for step in 0..8u64 {
        let b = held_out.batch(j.seed ^ SALT, step, 16, j.patch, j.augment);
        let (lq, _, _) = b.to_tensors(&ctx.device).map_err(compute(name))?;
        let pred = net.predict(&lq).map_err(compute(name))?;
        right += pred
            .iter()
            .zip(&b.task)
            .filter(|(p, t)| **p as usize == **t)
            .count();
        total += pred.len();
    }
    drop(log);
    let accuracy = right as f64 / total.max(1) as f64;
    write_json(
        &dir.join("classifier.json"),
        &ClassifierInfo {
            format: crate::job::FORMAT,
            tasks: j.tasks.iter().map(|t| t.name.clone()).collect(),
            crop_accuracy: accuracy,
        },
    )
    .map_err(f)?;
    ctx.progress().note(&format!(
        "task classifier: {:.1}% of {total} held-out crops right",
        100.0 * accuracy
    ));
    let out = dir.join("classifier.safetensors");
    mio_stdlib::fsio::atomic(&out, |tmp| vm.save(tmp))
        .map_err(|e| fail(name, NodeError::write(&out, e)))?;
    let _ = std::fs::remove_file(&ckpt);
    Ok(())
}

/// The classifier that came with a model's weights, read as `mio restore --classifier` reads it
/// (outputs in the model's task order), written as a trained one.
fn from_file(
    ctx: &Ctx,
    jf: &JobFile,
    j: &Classifier,
    file: &Path,
    dir: &Path,
) -> Result<(), RunError> {
    let name = &jf.name;
    let tasks: Vec<(String, String)> = j
        .tasks
        .iter()
        .map(|t| (t.name.clone(), t.degradation.key()))
        .collect();
    let (vm, _) = crate::run::restore::read_classifier(file, &tasks, &ctx.device)
        .map_err(|e| fail(name, NodeError::read(file, e)))?;
    write_json(
        &dir.join("classifier.json"),
        &ClassifierInfo {
            format: crate::job::FORMAT,
            tasks: j.tasks.iter().map(|t| t.name.clone()).collect(),
            crop_accuracy: f64::NAN,
        },
    )
    .map_err(failed(name))?;
    let out = dir.join("classifier.safetensors");
    mio_stdlib::fsio::atomic(&out, |tmp| vm.save(tmp))
        .map_err(|e| fail(name, NodeError::write(&out, e)))?;
    Ok(())
}
