//! Running a plan: each node's cache key, the run folders, and the nodes in dependency order.
//!
//! Every node has a key: a hash of its canonical definition, the keys of the nodes it reads,
//! the contents of the files it reads and the engine's version. Its finished outputs live in
//! `<output>/nodes/<kind>-<key>/`; a node whose folder exists and checks out against its record
//! (`store.rs`) is done and is skipped. Work in progress goes to `<kind>-<key>.partial/` and is
//! renamed when complete, so an interrupted node is never mistaken for a finished one (a
//! training stage or the classifier resumes from the checkpoint in its partial folder). One
//! process at a time works in an output folder (`store::lock`). Each workflow (or matrix) gets
//! `<output>/<name>/` with the report and `manifest.yaml`.

pub mod artifact;
mod charts;
pub mod error;
pub mod export;
mod folders;
pub mod hashes;
mod keys;
mod layout;
mod losses;
pub mod manifest;
pub mod memory;
pub mod nodes;
pub mod progress;
mod render;
pub mod restore;
pub mod slurm;
pub mod store;
pub mod tensorboard;
pub mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use petgraph::graph::NodeIndex;

pub use error::{NodeError, RunError};
pub use keys::{explain, Explanation, NodeKey};
use layout::Layout;
pub use nodes::device_named;
use nodes::Ctx;
use progress::Progress;
pub use store::{node_dir, output_dir};

use crate::ir;
use crate::job::JobFile;
use crate::plan::{NodeKind, Plan};

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Set (by a Ctrl-C handler) to stop: a training stage saves a checkpoint and the run ends.
    pub stop: Arc<AtomicBool>,
    /// No progress bars, only one line per node.
    pub quiet: bool,
    /// Nodes run at once (0 or 1: one at a time). Whatever the number, one training node (a
    /// stage or a classifier) runs at a time: on the CPU they would share the same cores, on
    /// a GPU its memory; test sets, evals and sweeps run beside it.
    pub jobs: usize,
    /// When another process is running in the same output folder: wait for it (`mio watch`)
    /// instead of refusing (`mio run`).
    pub wait_for_lock: bool,
    /// Run each node in a `mio worker` process of its own (this program, given the node's
    /// job file) instead of a thread of this one: what a cluster executor does, here on one
    /// machine.
    pub isolate: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub ran: Vec<String>,
    pub cached: Vec<String>,
    /// The report folders written.
    pub reports: Vec<PathBuf>,
    pub seconds: f64,
}

fn fail(node: &str, why: impl std::fmt::Display) -> RunError {
    RunError::node(node, NodeError::experiment(why))
}

/// The state a run shares between nodes.
pub(crate) struct Runner<'a> {
    pub layout: Layout<'a>,
    pub options: Options,
    pub ctx: Ctx,
}

impl Runner<'_> {
    fn dir(&self, i: NodeIndex) -> PathBuf {
        self.layout.dir(i)
    }

    /// Runs node `i`: in this thread, or in a `mio worker` process when asked (which locks
    /// the node itself). In this thread the node is locked as a worker locks it, so a cluster
    /// job or a worker running the same node elsewhere is waited for, never joined in its
    /// working folder; a node it finished meanwhile is not run again (`None`).
    fn execute(&self, i: NodeIndex) -> Result<Option<f64>, RunError> {
        let jf = self.layout.job_file(i);
        match &self.options.isolate {
            None => match worker::claim(&jf, &self.ctx.stop)? {
                Some(_lock) => nodes::execute(&self.ctx, &jf).map(Some),
                None => Ok(None),
            },
            Some(program) => worker::spawn(program, &jf, self.options.quiet, &self.ctx).map(Some),
        }
    }
}

/// The reports in the workflows' folders are older than the file after a run that did not
/// finish: each says so at its top.
fn mark_reports_outdated(plan: &Plan, out: &Path, e: &RunError) {
    for (_, folder) in folders::report_folders(plan, out) {
        folders::mark_outdated(&folder, &e.to_string());
    }
}

/// The job file of every node of the plan, in plan order: what `mio worker` runs, one node
/// at a time, each after the nodes it reads.
pub fn job_files(wfs: &[ir::Workflow], plan: &Plan, base: &Path) -> Result<Vec<JobFile>, RunError> {
    let layout = Layout::new(wfs, plan, base)?;
    Ok(plan
        .order()
        .into_iter()
        .map(|i| layout.job_file(i))
        .collect())
}

/// For each node in plan order: cached, or will run and why (`mio run --explain`).
pub fn status(
    wfs: &[ir::Workflow],
    plan: &Plan,
    base: &Path,
) -> Result<Vec<Explanation>, RunError> {
    let out = output_dir(base, wfs);
    let keys = keys::compute(plan, base, &out)
        .map_err(|(p, e)| RunError::Io(p, format!("cannot read an input: {e}")))?;
    let mut previous = HashMap::new();
    for (_, folder) in folders::report_folders(plan, &out) {
        previous.extend(manifest::previous(&folder));
    }
    let mut explained = explain(plan, &keys, &out.join("nodes"), &previous);
    let running = store::running_in(&out);
    for (e, i) in explained.iter_mut().zip(plan.order()) {
        if e.cached {
            continue;
        }
        if let Some(who) = &running {
            if e.why.starts_with("interrupted earlier") {
                e.why = format!("in progress now, in {who}");
            }
        }
        if let Some(p) = keys::missing_inputs(&plan.graph[i].job, base).first() {
            e.why = format!(
                "{}; but {} does not exist, so it would fail",
                e.why,
                p.display()
            );
        }
    }
    Ok(explained)
}

/// Runs every node of `plan` that is not finished yet; `base` is the folder of the .mio file.
pub fn run(
    wfs: &[ir::Workflow],
    plan: &Plan,
    base: &Path,
    options: Options,
) -> Result<Summary, RunError> {
    let start = Instant::now();
    let out = output_dir(base, wfs);
    let store = out.join("nodes");
    let stop = options.stop.clone();
    // Said even in quiet mode: a wait with no word looks like a hang.
    let _lock = store::lock(&out, options.wait_for_lock.then_some(&*stop), |holder| {
        eprintln!("mio: waiting for {holder} to finish in {}", out.display())
    })
    .map_err(RunError::Busy)?;
    std::fs::create_dir_all(&store).map_err(|e| RunError::Io(store.clone(), e.to_string()))?;
    let layout = Layout::new(wfs, plan, base)?;
    let device = device_named(&layout.device_name).map_err(|e| fail("device", e))?;
    let order = plan.order();
    let runner = Runner {
        layout,
        ctx: Ctx::new(
            device,
            options.stop.clone(),
            Progress::new(options.quiet, order.len()),
        ),
        options,
    };
    let position: HashMap<NodeIndex, usize> =
        order.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let mut summary = Summary::default();
    let mut timings: HashMap<NodeIndex, (bool, f64)> = HashMap::new();
    // Finished nodes first; then the rest as their inputs become ready.
    let mut waiting: HashMap<NodeIndex, usize> = HashMap::new();
    let checks: Vec<store::Check> = {
        use rayon::prelude::*;
        order
            .par_iter()
            .map(|&i| store::check(&runner.dir(i)))
            .collect()
    };
    for (&i, check) in order.iter().zip(checks) {
        if let store::Check::Damaged(why) = &check {
            let dir = runner.dir(i);
            let aside = store::quarantine(&dir).map_err(|e| RunError::Io(dir.clone(), e))?;
            runner.ctx.progress().note(&format!(
                "warning: {}: its finished outputs are damaged ({why}); moved to {} and run again",
                plan.graph[i].name,
                aside.display()
            ));
        }
        if check == store::Check::Finished {
            runner
                .ctx
                .progress()
                .cached(position[&i], &plan.graph[i].name);
            summary.cached.push(plan.graph[i].name.clone());
            timings.insert(i, (true, 0.0));
        } else {
            let deps = plan
                .deps(i)
                .iter()
                .filter(|d| !timings.contains_key(d))
                .count();
            waiting.insert(i, deps);
        }
    }
    // An input folder or file that does not exist fails the run before any work starts.
    for &i in &order {
        if waiting.contains_key(&i) {
            if let Some(p) = keys::missing_inputs(&plan.graph[i].job, base).first() {
                let e = fail(
                    &plan.graph[i].name,
                    format!(
                        "{}: no such {}; nothing was run (correct the path in the file)",
                        p.display(),
                        if p.extension().is_some() {
                            "file"
                        } else {
                            "folder"
                        }
                    ),
                );
                mark_reports_outdated(plan, &out, &e);
                return Err(e);
            }
        }
    }
    let jobs = runner.options.jobs.max(1);
    let is_training =
        |i: NodeIndex| matches!(plan.graph[i].kind, NodeKind::Train | NodeKind::Classifier);
    let mut failure: Option<RunError> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(NodeIndex, Result<Option<f64>, RunError>)>();
        let mut running: Vec<NodeIndex> = vec![];
        loop {
            // Start ready nodes, earliest in plan order first, within the budget.
            while failure.is_none() && !runner.ctx.stopped() && running.len() < jobs {
                let training_busy = running.iter().any(|&r| is_training(r));
                let next = order
                    .iter()
                    .copied()
                    .find(|i| waiting.get(i) == Some(&0) && !(training_busy && is_training(*i)));
                let Some(i) = next else { break };
                waiting.remove(&i);
                let node = &plan.graph[i];
                runner
                    .ctx
                    .progress()
                    .start(position[&i], &node.name, &node.detail);
                running.push(i);
                let tx = tx.clone();
                let r = &runner;
                scope.spawn(move || {
                    // execute catches panics, so every node sends its result.
                    let _ = tx.send((i, r.execute(i)));
                });
            }
            if running.is_empty() {
                break;
            }
            let Ok((i, result)) = rx.recv() else { break };
            running.retain(|&r| r != i);
            let name = plan.graph[i].name.clone();
            match result {
                Ok(secs) => {
                    if let Some(secs) = secs {
                        runner.ctx.progress().done(position[&i], &name, secs);
                        summary.ran.push(name);
                        timings.insert(i, (false, secs));
                    } else {
                        runner.ctx.progress().finished_elsewhere(&name);
                        summary.cached.push(name);
                        timings.insert(i, (true, 0.0));
                    }
                    for j in plan
                        .graph
                        .neighbors_directed(i, petgraph::Direction::Outgoing)
                    {
                        if let Some(w) = waiting.get_mut(&j) {
                            *w = w.saturating_sub(1);
                        }
                    }
                }
                Err(e) => {
                    if !matches!(e, RunError::Interrupted { .. }) {
                        runner.ctx.progress().failed(&name);
                    }
                    // The first failure is the one reported; the others in flight finish.
                    if failure.is_none() {
                        failure = Some(e);
                    }
                }
            }
        }
    });
    let failure = failure.or_else(|| {
        waiting
            .iter()
            .min_by_key(|(i, _)| position[i])
            .map(|(&i, _)| RunError::Interrupted {
                node: plan.graph[i].name.clone(),
            })
    });
    if let Some(e) = failure {
        mark_reports_outdated(plan, &out, &e);
        return Err(e);
    }
    for (i, folder) in folders::report_folders(plan, &out) {
        folders::publish(&runner.dir(i), &folder).map_err(|e| RunError::Io(folder.clone(), e))?;
        manifest::write(&runner.layout, &runner.ctx.device, i, &folder, &timings)
            .map_err(|e| RunError::Io(folder.clone(), e))?;
        summary.reports.push(folder);
    }
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}
