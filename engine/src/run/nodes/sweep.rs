//! Sweeps: a prompt sweep blends two tasks' prompts in steps on each image and writes the
//! strips; a parameter sweep restores images degraded at each value of one parameter and
//! gives the input's and the output's mean PSNR at each, as a curve. Both write `sweep.json`.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use mio_stdlib::data::TaskSpec;
use mio_stdlib::image::Image;
use mio_stdlib::models::PromptMode;

use super::common::{
    clean_images, compute, failed, hstack, load_model, load_named, write_json, Ctx, Named,
};
use super::testset::pairs_of;
use crate::job::{JobFile, Probe, Sweep, SweepKind, SweepTarget};
use crate::run::artifact::{BlendImage, BlendStep, ParamPoint, SweepResults};
use crate::run::error::{NodeError, RunError};
use crate::run::restore::{restore, to_tensor};

pub(super) fn run(ctx: &Ctx, jf: &JobFile, s: &Sweep, dir: &Path) -> Result<(), RunError> {
    match &s.kind {
        SweepKind::Param {
            task,
            id,
            param,
            points,
        } => param_sweep(ctx, jf, s, (task, *id, param, points), dir),
        SweepKind::Prompts {
            from,
            to,
            steps,
            degrade,
        } => prompt_sweep(ctx, jf, s, (from, to, *steps, degrade.as_ref()), dir),
    }
}

/// The sweep's images: the file, or the data set's clean images.
fn target_files(jf: &JobFile, s: &Sweep) -> Result<Vec<PathBuf>, NodeError> {
    match &s.target {
        SweepTarget::File(file) => Ok(vec![jf.base.join(file)]),
        SweepTarget::Data(d) => clean_images(&jf.base, d),
    }
}

fn param_sweep(
    ctx: &Ctx,
    jf: &JobFile,
    s: &Sweep,
    (task, id, param, points): (&String, Option<usize>, &String, &Vec<(f64, TaskSpec)>),
    dir: &Path,
) -> Result<(), RunError> {
    let name = &jf.name;
    let f = failed(name);
    let net = load_model(ctx, jf, &s.model).map_err(&f)?;
    let z = match net.spec.prompt {
        PromptMode::Explicit { .. } => {
            let id = id.ok_or_else(|| {
                f(NodeError::experiment(format!(
                    "`{}` was not trained on `{task}`",
                    s.model.name
                )))
            })?;
            Some(net.task_latent(id).map_err(compute(name))?)
        }
        _ => None,
    };
    let images: Vec<Named> = target_files(jf, s)
        .map_err(&f)?
        .iter()
        .map(|p| load_named(p))
        .collect::<Result<_, NodeError>>()
        .map_err(&f)?;
    let mut rows = vec![];
    for (v, at) in points {
        let (mut input, mut output) = (vec![], vec![]);
        for Named {
            stem,
            image: clean,
            depth,
        } in &images
        {
            if ctx.stopped() {
                return Err(RunError::Interrupted { node: name.clone() });
            }
            let mut rng = mio_stdlib::degrade::rng_for(s.model.seed, &at.text, stem);
            let (lq, _) = at.degradation.apply(clean, &mut rng, depth.as_deref());
            let out = restore(&net, &lq, z.as_ref(), 0).map_err(compute(name))?;
            input.push(mio_stdlib::metrics::psnr(&lq, clean, 4, false).map_err(compute(name))?);
            output.push(mio_stdlib::metrics::psnr(&out, clean, 4, false).map_err(compute(name))?);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        rows.push(ParamPoint {
            value: *v,
            input_psnr: mean(&input),
            output_psnr: mean(&output),
        });
    }
    write_json(
        &dir.join("sweep.json"),
        &SweepResults::Param {
            format: crate::job::FORMAT,
            sweep: s.name.clone(),
            model: s.model.name.clone(),
            task: task.clone(),
            param: param.clone(),
            images: images.len(),
            points: rows,
        },
    )
    .map_err(f)
}

fn prompt_sweep(
    ctx: &Ctx,
    jf: &JobFile,
    s: &Sweep,
    (from, to, steps, degrade): (&Probe, &Probe, usize, Option<&TaskSpec>),
    dir: &Path,
) -> Result<(), RunError> {
    let name = &jf.name;
    let f = failed(name);
    let net = load_model(ctx, jf, &s.model).map_err(&f)?;
    let adaptive = matches!(net.spec.prompt, PromptMode::Adaptive { .. });
    // Explicit prompts: the two tasks' fixed prompts. Adaptive ones: the prompts the network
    // reads from the image degraded by each task, computed per image below.
    let fixed = if adaptive {
        None
    } else {
        let id = |p: &Probe| {
            p.id.ok_or_else(|| {
                f(NodeError::experiment(format!(
                    "`{}` was not trained on `{}`",
                    s.model.name, p.task.name
                )))
            })
        };
        let zf = net.task_latent(id(from)?).map_err(compute(name))?;
        let zt = net.task_latent(id(to)?).map_err(compute(name))?;
        Some((zf, zt))
    };
    let read_prompt = |t: &TaskSpec,
                       base: &Image,
                       depth: Option<&[f32]>,
                       stem: &str|
     -> Result<Tensor, NodeError> {
        let mut rng = mio_stdlib::degrade::rng_for(s.model.seed, &t.text, stem);
        let x = to_tensor(&t.degradation.apply(base, &mut rng, depth).0, &ctx.device)
            .and_then(|x| crate::run::restore::at_least_min_side(&x))
            .map_err(NodeError::compute)?;
        net.adaptive_latent(&x)
            .map_err(NodeError::compute)?
            .ok_or_else(|| NodeError::compute("no adaptive prompt"))
    };
    // Each input (its name and depth map those of the clean image) and the clean reference if
    // there is one: a test set's pairs when the data set is degraded first, else the images
    // as given (a single file degraded here when asked).
    let mut inputs: Vec<(Named, Option<Image>)> = vec![];
    let testset = super::common::testsets(jf).find(|(i, _)| i.direct);
    match (&s.target, testset) {
        (SweepTarget::Data(_), Some((input, _))) => {
            for (c, l) in pairs_of(&jf.dir_of(input)).map_err(&f)? {
                let clean = load_named(&c).map_err(&f)?;
                let lq = load_named(&l).map_err(&f)?;
                let input = Named {
                    image: lq.image,
                    ..clean
                };
                inputs.push((input, Some(clean.image)));
            }
        }
        _ => {
            for c in target_files(jf, s).map_err(&f)? {
                let clean = load_named(&c).map_err(&f)?;
                match degrade {
                    Some(t) => {
                        let mut rng =
                            mio_stdlib::degrade::rng_for(s.model.seed, &t.text, &clean.stem);
                        let (lq, _) =
                            t.degradation
                                .apply(&clean.image, &mut rng, clean.depth.as_deref());
                        let reference = clean.image.clone();
                        inputs.push((Named { image: lq, ..clean }, Some(reference)));
                    }
                    None => inputs.push((clean, None)),
                }
            }
        }
    }
    // The strips' names, unique even where two images share a stem.
    let labels = {
        let as_paths: Vec<PathBuf> = inputs.iter().map(|x| PathBuf::from(&x.0.stem)).collect();
        mio_stdlib::image::unique_stems(&as_paths)
    };
    let mut rows = vec![];
    for ((input, clean), label) in inputs.iter().zip(labels) {
        let (img, depth, stem) = (&input.image, &input.depth, &input.stem);
        let (zf, zt) = match &fixed {
            Some((a, b)) => (a.clone(), b.clone()),
            None => {
                let base = clean.as_ref().unwrap_or(img);
                (
                    read_prompt(&from.task, base, depth.as_deref(), stem).map_err(&f)?,
                    read_prompt(&to.task, base, depth.as_deref(), stem).map_err(&f)?,
                )
            }
        };
        let mut strip = vec![img.clone()];
        let mut per_step = vec![];
        for k in 0..steps {
            let a = 1.0 - k as f64 / (steps - 1) as f64;
            let z = ((&zf * a).and_then(|x| x + (&zt * (1.0 - a))?)).map_err(compute(name))?;
            let out = restore(&net, img, Some(&z), 0).map_err(compute(name))?;
            let mean =
                out.data.iter().map(|&v| v as f64).sum::<f64>() / out.data.len() as f64 / 255.0;
            let psnr = clean
                .as_ref()
                .map(|c| mio_stdlib::metrics::psnr(&out, c, 4, false))
                .transpose()
                .map_err(compute(name))?;
            per_step.push(BlendStep {
                a,
                mean_intensity: mean,
                psnr,
            });
            strip.push(out);
        }
        let file = format!("strip_{label}.png");
        hstack(&strip)
            .save_png(&dir.join(&file))
            .map_err(|e| f(e.into()))?;
        rows.push(BlendImage {
            image: label,
            strip: file,
            steps: per_step,
        });
    }
    write_json(
        &dir.join("sweep.json"),
        &SweepResults::Prompts {
            format: crate::job::FORMAT,
            sweep: s.name.clone(),
            model: s.model.name.clone(),
            from: from.task.name.clone(),
            to: to.task.name.clone(),
            images: rows,
        },
    )
    .map_err(f)
}
