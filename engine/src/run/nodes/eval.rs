//! An evaluation: every test image of every task restored (told its task, or with the task
//! the classifier guesses), each metric of the input and the output, the restored PNGs and
//! `results.json`.

use std::path::{Path, PathBuf};

use mio_stdlib::models::PromptMode;

use super::common::{compute, failed, input_dir, load_model, testset_dir, write_json, Ctx};
use super::testset::pairs_of;
use crate::job::{self, Eval, Job, JobFile, Labels};
use crate::run::artifact::{EvalImage, EvalResults, EvalTask};
use crate::run::error::{NodeError, RunError};
use crate::run::restore::{restore, to_tensor};

/// A metric of one pair.
fn measure(
    m: &job::Metric,
    a: &mio_stdlib::image::Image,
    b: &mio_stdlib::image::Image,
) -> Result<f64, String> {
    match m.kind {
        job::MetricKind::Psnr => mio_stdlib::metrics::psnr(a, b, m.crop, m.y),
        job::MetricKind::Ssim => mio_stdlib::metrics::ssim(a, b, m.crop, m.y),
    }
}

pub(super) fn run(ctx: &Ctx, jf: &JobFile, e: &Eval, dir: &Path) -> Result<(), RunError> {
    let name = &jf.name;
    let f = failed(name);
    let net = load_model(ctx, jf, &e.model).map_err(&f)?;
    let trained = &e.model.tasks;
    let explicit = matches!(net.spec.prompt, PromptMode::Explicit { .. });
    let predicted = e.labels == Labels::Predicted;
    let classifier = if predicted {
        let cdir = input_dir(jf, |w| matches!(w, Job::Classifier(_)))
            .ok_or_else(|| f(NodeError::Missing("the task classifier".into())))?;
        let names: Vec<(String, String)> = trained
            .iter()
            .map(|t| (t.name.clone(), t.degradation.key()))
            .collect();
        let c = crate::run::restore::load_classifier(&cdir, &names, &ctx.device)
            .map_err(|e| f(NodeError::read(&cdir, e)))?;
        Some(c)
    } else {
        None
    };
    let mut tasks_out = vec![];
    let total_tasks = e.tasks.len();
    let mut board = crate::run::tensorboard::Board::open(jf, &e.model.workflow, &e.model.name);
    for (k, probe) in e.tasks.iter().enumerate() {
        let task = &probe.task;
        let mut pairs: Vec<(PathBuf, PathBuf)> = match &e.data {
            job::Source::Pairs { lq, gt, .. } => {
                let (lq, gt) = (jf.base.join(lq), jf.base.join(gt));
                mio_stdlib::image::list_folder(&lq)
                    .map_err(|e| f(e.into()))?
                    .into_iter()
                    .map(|p| (gt.join(p.file_name().unwrap_or_default()), p))
                    .collect()
            }
            job::Source::Images(_) => {
                let tdir = testset_dir(jf, task).ok_or_else(|| {
                    f(NodeError::Missing(format!("the `{}` test set", task.name)))
                })?;
                pairs_of(&tdir).map_err(&f)?
            }
        };
        if e.images > 0 {
            pairs.truncate(e.images);
        }
        let truth = probe.id;
        let known_z = match (explicit, truth) {
            (true, Some(id)) if !predicted => Some(net.task_latent(id).map_err(compute(name))?),
            _ => None,
        };
        let mut images = vec![];
        // Output names unique within the task (`a.png` and `a.jpg` are both in a folder).
        let stems = mio_stdlib::image::unique_stems(
            &pairs.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        );
        for ((clean_path, lq_path), stem) in pairs.iter().zip(stems) {
            if ctx.stopped() {
                return Err(RunError::Interrupted { node: name.clone() });
            }
            let clean = mio_stdlib::image::load(clean_path)
                .map_err(|e| f(e.into()))?
                .image;
            let lq = mio_stdlib::image::load(lq_path)
                .map_err(|e| f(e.into()))?
                .image;
            let (z, guess) = match &classifier {
                Some(c) => {
                    let x = to_tensor(&lq, &ctx.device)
                        .and_then(|x| crate::run::restore::at_least_min_side(&x))
                        .map_err(compute(name))?;
                    let p = c.predict(&x).map_err(compute(name))?[0] as usize;
                    (Some(net.task_latent(p).map_err(compute(name))?), Some(p))
                }
                None => (known_z.clone(), None),
            };
            if explicit && z.is_none() {
                return Err(f(NodeError::experiment(format!(
                    "`{}` has no prompt for `{}`",
                    e.model.name, task.name
                ))));
            }
            // An adaptive prompt is read from the whole image, as restoring reads it; kept
            // (with an explicit one) for the report's analysis of what the prompts learn.
            let adaptive = matches!(net.spec.prompt, PromptMode::Adaptive { .. });
            let z = match z {
                None if adaptive => to_tensor(&lq, &ctx.device)
                    .and_then(|x| crate::run::restore::at_least_min_side(&x))
                    .and_then(|x| net.adaptive_latent(&x))
                    .map_err(compute(name))?,
                z => z,
            };
            let prompt = match &z {
                Some(z) => Some(
                    z.flatten_all()
                        .and_then(|v| v.to_vec1::<f32>())
                        .map_err(compute(name))?,
                ),
                None => None,
            };
            let out = restore(&net, &lq, z.as_ref(), 0)
                .map_err(|e| f(NodeError::compute(format!("{}: {e}", lq_path.display()))))?;
            let about = |e: String| {
                f(NodeError::read(
                    clean_path,
                    format!(
                        "{} ({}x{}): {e}; remove the image from the folder, or lower the metric's `crop`",
                        clean_path.display(),
                        clean.width,
                        clean.height
                    ),
                ))
            };
            let mut input = std::collections::BTreeMap::new();
            let mut output = std::collections::BTreeMap::new();
            for m in &e.metrics {
                input.insert(m.label(), measure(m, &lq, &clean).map_err(about)?);
                output.insert(m.label(), measure(m, &out, &clean).map_err(about)?);
            }
            if images.is_empty() {
                // The first image of each task, as TensorBoard shows it: input | output | truth,
                // a centre crop of at most 256 pixels (a whole photo is megabytes per event).
                let centre = |img: &mio_stdlib::image::Image| {
                    let (w, h) = (img.width.min(256), img.height.min(256));
                    img.crop((img.width - w) / 2, (img.height - h) / 2, w, h)
                };
                board.image(
                    &format!("eval/{}/{}", e.name, task.name),
                    0,
                    &super::common::hstack(&[centre(&lq), centre(&out), centre(&clean)]),
                );
            }
            let restored = if e.save_images {
                let d = dir.join("images").join(&task.name);
                std::fs::create_dir_all(&d).map_err(|e| f(NodeError::write(&d, e)))?;
                let p = d.join(format!("{stem}.png"));
                out.save_png(&p).map_err(|e| f(e.into()))?;
                Some(format!("images/{}/{stem}.png", task.name))
            } else {
                None
            };
            images.push(EvalImage {
                name: stem,
                clean: clean_path.clone(),
                // Inside the run folder: relative to its node store, so the folder can move.
                degraded: lq_path
                    .strip_prefix(&jf.store)
                    .unwrap_or(lq_path)
                    .to_path_buf(),
                restored,
                input,
                output,
                predicted: guess.map(|g| trained.get(g).map(|t| t.name.clone())),
                // A task the model has no prompt of its own for (a composite it never
                // trained on) has no right guess.
                correct: guess.filter(|_| truth.is_some()).map(|g| Some(g) == truth),
                prompt,
            });
        }
        ctx.progress().note(&format!(
            "{}/{}: {} ({} images)",
            k + 1,
            total_tasks,
            task.name,
            pairs.len()
        ));
        for m in &e.metrics {
            let label = m.label();
            let values: Vec<f64> = images
                .iter()
                .filter_map(|i| i.output.get(&label).copied())
                .collect();
            if !values.is_empty() {
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                board.scalar(&format!("eval/{}/{}/{label}", e.name, task.name), 0, mean);
            }
        }
        tasks_out.push(EvalTask {
            task: task.name.clone(),
            images,
        });
    }
    write_json(
        &dir.join("results.json"),
        &EvalResults {
            format: crate::job::FORMAT,
            eval: e.name.clone(),
            model: e.model.name.clone(),
            data: e.data.name().to_string(),
            labels: if predicted { "predicted" } else { "known" }.into(),
            metrics: e.metrics.iter().map(|m| m.label()).collect(),
            tasks: tasks_out,
        },
    )
    .map_err(f)
}
