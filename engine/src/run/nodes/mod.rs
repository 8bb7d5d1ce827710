//! The work of each kind of node, one file each: synthesise a test set (`testset.rs`), train a
//! stage (`train.rs`), train the task classifier (`classifier.rs`), evaluate (`eval.rs`),
//! sweep (`sweep.rs`), the PSNR after each stage (`curves.rs`), gather the report (`report.rs`, with what the prompts learn in `analysis.rs`; `run/render/` writes it out). A node
//! runs from its [`JobFile`] alone (its lowered job, the folders of its inputs) and writes
//! into the folder it is given (its partial folder, published by [`execute`] when it returns),
//! so it runs the same in the scheduler's thread and in a `mio worker` process of its own.
//! What they share is in `common.rs`.

mod analysis;
mod classifier;
pub(crate) mod common;
mod curves;
mod eval;
mod pretrained;
mod report;
mod sweep;
mod testset;
mod train;

use std::path::Path;
use std::time::Instant;

pub use common::{device_named, Ctx};
pub(crate) use common::{write_atomic, write_json};

use crate::job::{Job, JobFile};
use crate::run::error::{NodeError, RunError};
use crate::run::store;

/// Runs one node in its partial folder and publishes the folder when it succeeds. A panic
/// inside the node fails the node like any error (the run then ends), never hangs it.
pub fn execute(ctx: &Ctx, jf: &JobFile) -> Result<f64, RunError> {
    let t = Instant::now();
    let dir = jf.dir();
    let partial = dir.with_extension("partial");
    std::fs::create_dir_all(&partial).map_err(|e| RunError::Io(partial.clone(), e.to_string()))?;
    // Temporary files of an interrupted earlier attempt.
    store::remove_temporaries(&partial);
    let name = &jf.name;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if std::env::var("MIO_PANIC_IN").is_ok_and(|n| !n.is_empty() && name.contains(&n)) {
            panic!("MIO_PANIC_IN asked for a panic in {name}");
        }
        run_job(ctx, jf, &partial)
    }))
    .unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(RunError::node(name, NodeError::Crashed(what)))
    });
    if let Err(e) = result {
        // Nothing worth resuming in it (only a checkpoint is): no empty leftovers.
        if !matches!(e, RunError::Interrupted { .. }) && !store::has_progress(&partial) {
            let _ = std::fs::remove_dir_all(&partial);
        }
        return Err(e);
    }
    store::publish(&partial, &dir, name, &jf.key).map_err(|e| RunError::Io(dir.clone(), e))?;
    Ok(t.elapsed().as_secs_f64())
}

fn run_job(ctx: &Ctx, jf: &JobFile, dir: &Path) -> Result<(), RunError> {
    match &jf.job {
        Job::TestSet(j) => testset::run(jf, j, dir),
        Job::Pretrained(m) => pretrained::run(ctx, jf, m, dir),
        Job::Train(j) => train::run(ctx, jf, j, dir),
        Job::Classifier(j) => classifier::run(ctx, jf, j, dir),
        Job::Eval(j) => eval::run(ctx, jf, j, dir),
        Job::Sweep(j) => sweep::run(ctx, jf, j, dir),
        Job::Curves(j) => curves::run(ctx, jf, j, dir),
        Job::Report(j) => report::run(jf, j, dir),
    }
}
