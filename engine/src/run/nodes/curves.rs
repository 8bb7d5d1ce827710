//! The PSNR of a sequentially trained model after each of its stages, on a 160-pixel centre
//! crop of the smallest image of each task's test set (so it costs seconds), written as
//! `curves.json` for the report: how each task fares before and after the stage that adds it.

use std::path::Path;

use mio_stdlib::image::Image;
use mio_stdlib::models::PromptMode;

use super::common::{compute, failed, model_weights, testsets, write_json, Ctx};
use crate::job::{Curves, Input, Job, JobFile};
use crate::run::artifact::StageCurves;
use crate::run::error::{NodeError, RunError};

pub(super) fn run(ctx: &Ctx, jf: &JobFile, j: &Curves, dir: &Path) -> Result<(), RunError> {
    let name = &jf.name;
    // Its stages, first to last.
    let mut stages: Vec<(&Input, usize, u64)> = jf
        .direct()
        .filter_map(|i| match &i.job {
            Job::Train(t) => Some((i, t.config.stage, t.first_step + t.config.iters)),
            _ => None,
        })
        .collect();
    stages.sort_by_key(|s| s.1);
    let mut board = crate::run::tensorboard::Board::open(jf, &j.model.workflow, &j.model.name);
    let trained = &j.model.tasks;
    // The smallest test image of each task, degraded and clean.
    let probes: Vec<Option<(Image, Image)>> = trained
        .iter()
        .map(|task| {
            testsets(jf)
                .filter(|(i, _)| i.direct)
                .map(|(i, s)| (jf.dir_of(i), s))
                .find(|(d, s)| s.task.text == task.text && d.is_dir())
                .and_then(|(d, _)| probe_images(&d))
        })
        .collect();
    let mut rows = vec![];
    for (stage, _, end) in &stages {
        let mut net =
            mio_stdlib::models::network::Network::new(j.model.network.clone(), 0, &ctx.device)
                .map_err(compute(name))?;
        let weights = model_weights(&jf.dir_of(stage));
        net.load(&weights)
            .map_err(|e| failed(name)(NodeError::read(&weights, e)))?;
        let net = net.frozen().map_err(compute(name))?;
        let explicit = matches!(net.spec.prompt, PromptMode::Explicit { .. });
        let row: Vec<Option<f64>> = probes
            .iter()
            .enumerate()
            .map(|(k, probe)| {
                let (lq, clean) = probe.as_ref()?;
                let z = if explicit {
                    Some(net.task_latent(k).ok()?)
                } else {
                    None
                };
                let out = crate::run::restore::restore(&net, lq, z.as_ref(), 0).ok()?;
                mio_stdlib::metrics::psnr(&out, clean, 4, false).ok()
            })
            .collect();
        for (task, v) in trained.iter().zip(&row) {
            if let Some(v) = v {
                board.scalar(&format!("stage_psnr/{}", task.name), *end as i64, *v);
            }
        }
        rows.push(row);
    }
    write_json(
        &dir.join("curves.json"),
        &StageCurves {
            format: crate::job::FORMAT,
            model: j.label.clone(),
            tasks: trained.iter().map(|t| t.name.clone()).collect(),
            psnr: rows,
        },
    )
    .map_err(failed(name))
}

/// A test set's smallest image, degraded and clean, as 160-pixel centre crops.
fn probe_images(dir: &Path) -> Option<(Image, Image)> {
    let pairs = super::testset::pairs_of(dir).ok()?;
    pairs
        .iter()
        .filter_map(|(clean, lq)| {
            let clean = mio_stdlib::image::load(clean).ok()?.image;
            let lq = mio_stdlib::image::load(lq).ok()?.image;
            Some((lq, clean))
        })
        .min_by_key(|(l, _)| l.width * l.height)
        // A centre crop: 49 restorations of whole images would cost a minute.
        .map(|(l, c)| (centre(&l, 160), centre(&c, 160)))
}

/// A square crop of side `s` from the centre.
fn centre(img: &Image, s: usize) -> Image {
    let (w, h) = (s.min(img.width), s.min(img.height));
    img.crop((img.width - w) / 2, (img.height - h) / 2, w, h)
}
