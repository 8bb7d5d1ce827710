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

mod keys;
pub mod memory;
mod nodes;
mod png;
pub mod progress;
mod report;
pub mod store;
mod svg;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use petgraph::graph::NodeIndex;

use crate::ir;
use crate::plan::{NodeKind, Plan, Work};
pub use keys::{explain, Explanation, NodeKey};
pub use nodes::{device_named, spec_from_call};
use progress::Progress;

/// The engine's version, part of every cache key.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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
}

/// Why a run stopped.
#[derive(Debug)]
pub enum RunError {
    /// A node failed: its name and why.
    Node {
        node: String,
        message: String,
    },
    /// Stopped by the user; what was finished is kept.
    Interrupted {
        node: String,
    },
    /// Another process is running in the same output folder: who.
    Busy(String),
    Io(PathBuf, String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Node { node, message } => write!(f, "{node}: {message}"),
            RunError::Interrupted { node } => write!(
                f,
                "interrupted during {node}; its progress is saved and `mio run` continues from there"
            ),
            RunError::Busy(why) => write!(f, "{why}"),
            RunError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
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

pub(crate) fn nodes_write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    nodes::write_atomic(path, bytes)
}

/// The folder of a node's finished outputs.
pub fn node_dir(store: &Path, kind: NodeKind, key: &str) -> PathBuf {
    store.join(format!("{}-{key}", kind.as_str()))
}

/// Where a checked program's runs go: `<dir of the file>/<output setting>`.
pub fn output_dir(base: &Path, workflows: &[ir::Workflow]) -> PathBuf {
    let out = workflows
        .first()
        .and_then(|w| w.setting("output"))
        .and_then(|v| match v {
            ir::Value::Str(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "runs".into());
    base.join(out)
}

/// The state a run shares between nodes.
pub(crate) struct Runner<'a> {
    pub wfs: &'a [ir::Workflow],
    pub plan: &'a Plan,
    /// The folder of the .mio file: data paths are relative to it.
    pub base: PathBuf,
    pub store: PathBuf,
    pub keys: HashMap<NodeIndex, NodeKey>,
    pub device: candle_core::Device,
    pub options: Options,
    pub progress: std::sync::Mutex<Progress>,
    /// Training images loaded once per (folder, patch, augment, limit).
    pub train_sets: std::sync::Mutex<HashMap<String, Arc<mio_stdlib::data::TrainSet>>>,
}

impl Runner<'_> {
    pub fn dir(&self, i: NodeIndex) -> PathBuf {
        node_dir(&self.store, self.plan.graph[i].kind, &self.keys[&i].key)
    }

    pub fn stopped(&self) -> bool {
        self.options.stop.load(Ordering::Relaxed)
    }

    pub fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs one node in its partial folder and publishes the folder when it succeeds. A
    /// panic inside the node fails the node like any error (the run then ends), never hangs it.
    fn execute(&self, i: NodeIndex) -> Result<f64, RunError> {
        let t = Instant::now();
        let dir = self.dir(i);
        let partial = dir.with_extension("partial");
        std::fs::create_dir_all(&partial)
            .map_err(|e| RunError::Io(partial.clone(), e.to_string()))?;
        // Temporary files of an interrupted earlier attempt.
        store::remove_temporaries(&partial);
        let name = &self.plan.graph[i].name;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if std::env::var("MIO_PANIC_IN").is_ok_and(|n| !n.is_empty() && name.contains(&n)) {
                panic!("MIO_PANIC_IN asked for a panic in {name}");
            }
            nodes::run_node(self, i, &partial)
        }))
        .unwrap_or_else(|payload| {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(nodes::fail(
                name,
                format!(
                    "mio crashed in this step ({what}); this is a bug in mio, please report it \
                     with the file; finished steps are kept"
                ),
            ))
        });
        if let Err(e) = result {
            // Nothing worth resuming in it (only a checkpoint is): no empty leftovers.
            if !matches!(e, RunError::Interrupted { .. }) && !store::has_progress(&partial) {
                let _ = std::fs::remove_dir_all(&partial);
            }
            return Err(e);
        }
        store::publish(&partial, &dir, name, &self.keys[&i].key)
            .map_err(|e| RunError::Io(dir.clone(), e))?;
        Ok(t.elapsed().as_secs_f64())
    }
}

/// Each report node of the plan and its workflow's (or matrix's) folder under `out`.
fn report_folders(wfs: &[ir::Workflow], plan: &Plan, out: &Path) -> Vec<(NodeIndex, PathBuf)> {
    plan.graph
        .node_indices()
        .filter_map(|i| match &plan.graph[i].work {
            Work::Report { workflows, matrix } => {
                let name = matrix
                    .clone()
                    .unwrap_or_else(|| wfs[workflows[0]].name.clone());
                Some((i, out.join(name)))
            }
            _ => None,
        })
        .collect()
}

/// The reports in the workflows' folders are older than the file after a run that did not
/// finish: each says so at its top.
fn mark_reports_outdated(wfs: &[ir::Workflow], plan: &Plan, out: &Path, e: &RunError) {
    for (_, folder) in report_folders(wfs, plan, out) {
        report::mark_outdated(&folder, &e.to_string());
    }
}

/// For each node in plan order: cached, or will run and why (`mio run --explain`).
pub fn status(
    wfs: &[ir::Workflow],
    plan: &Plan,
    base: &Path,
) -> Result<Vec<Explanation>, RunError> {
    let out = output_dir(base, wfs);
    let keys = keys::compute(wfs, plan, base)
        .map_err(|(p, e)| RunError::Io(p, format!("cannot read an input: {e}")))?;
    let mut previous = HashMap::new();
    for (_, folder) in report_folders(wfs, plan, &out) {
        previous.extend(crate::manifest::previous(&folder));
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
        if let Some(p) = keys::missing_inputs(wfs, &plan.graph[i].work, base).first() {
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
    let keys = keys::compute(wfs, plan, base)
        .map_err(|(p, e)| RunError::Io(p, format!("cannot read an input: {e}")))?;
    let device = nodes::device(wfs)?;
    let order = plan.order();
    let runner = Runner {
        wfs,
        plan,
        base: base.to_path_buf(),
        store,
        keys,
        device,
        progress: std::sync::Mutex::new(Progress::new(options.quiet, order.len())),
        options,
        train_sets: std::sync::Mutex::new(HashMap::new()),
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
            runner.progress().note(&format!(
                "warning: {}: its finished outputs are damaged ({why}); moved to {} and run again",
                plan.graph[i].name,
                aside.display()
            ));
        }
        if check == store::Check::Finished {
            runner.progress().cached(position[&i], &plan.graph[i].name);
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
            if let Some(p) = keys::missing_inputs(wfs, &plan.graph[i].work, base).first() {
                let e = nodes::fail(
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
                mark_reports_outdated(wfs, plan, &out, &e);
                return Err(e);
            }
        }
    }
    let jobs = runner.options.jobs.max(1);
    let is_training =
        |i: NodeIndex| matches!(plan.graph[i].kind, NodeKind::Train | NodeKind::Classifier);
    let mut failure: Option<RunError> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(NodeIndex, Result<f64, RunError>)>();
        let mut running: Vec<NodeIndex> = vec![];
        loop {
            // Start ready nodes, earliest in plan order first, within the budget.
            while failure.is_none() && !runner.stopped() && running.len() < jobs {
                let training_busy = running.iter().any(|&r| is_training(r));
                let next = order
                    .iter()
                    .copied()
                    .find(|i| waiting.get(i) == Some(&0) && !(training_busy && is_training(*i)));
                let Some(i) = next else { break };
                waiting.remove(&i);
                let node = &plan.graph[i];
                runner
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
                    runner.progress().done(position[&i], &name, secs);
                    summary.ran.push(name);
                    timings.insert(i, (false, secs));
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
                        runner.progress().failed(&name);
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
        mark_reports_outdated(wfs, plan, &out, &e);
        return Err(e);
    }
    for (i, folder) in report_folders(wfs, plan, &out) {
        report::publish(&runner.dir(i), &folder).map_err(|e| RunError::Io(folder.clone(), e))?;
        crate::manifest::write(&runner, i, &folder, &timings)
            .map_err(|e| RunError::Io(folder.clone(), e))?;
        summary.reports.push(folder);
    }
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}
