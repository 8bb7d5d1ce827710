//! Running a plan: each node's cache key, the run folders, and the nodes in dependency order.
//!
//! Every node has a key: a hash of its canonical definition, the keys of the nodes it reads,
//! the contents of the files it reads and the engine's version. Its finished outputs live in
//! `<output>/nodes/<kind>-<key>/`; a node whose folder exists is done and is skipped. Work in
//! progress goes to `<kind>-<key>.partial/` and is renamed when complete, so an interrupted
//! node is never mistaken for a finished one (a training stage resumes from the checkpoint in
//! its partial folder). Each workflow (or matrix) gets `<output>/<name>/` with the report and
//! `manifest.yaml`.

mod keys;
mod nodes;
pub mod progress;
mod report;
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
pub use nodes::spec_from_call;
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
    pub progress: Progress,
    /// Training images loaded once per (folder, patch, augment, limit).
    pub train_sets: HashMap<String, Arc<mio_stdlib::data::TrainSet>>,
}

impl Runner<'_> {
    pub fn dir(&self, i: NodeIndex) -> PathBuf {
        node_dir(&self.store, self.plan.graph[i].kind, &self.keys[&i].key)
    }

    pub fn stopped(&self) -> bool {
        self.options.stop.load(Ordering::Relaxed)
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
    for i in plan.graph.node_indices() {
        if let Work::Report { workflows, matrix } = &plan.graph[i].work {
            let name = matrix
                .clone()
                .unwrap_or_else(|| wfs[workflows[0]].name.clone());
            previous.extend(crate::manifest::previous(&out.join(name)));
        }
    }
    Ok(explain(plan, &keys, &out.join("nodes"), &previous))
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
    std::fs::create_dir_all(&store).map_err(|e| RunError::Io(store.clone(), e.to_string()))?;
    let keys = keys::compute(wfs, plan, base)
        .map_err(|(p, e)| RunError::Io(p, format!("cannot read an input: {e}")))?;
    let device = nodes::device(wfs)?;
    let order = plan.order();
    let mut runner = Runner {
        wfs,
        plan,
        base: base.to_path_buf(),
        store,
        keys,
        device,
        progress: Progress::new(options.quiet, order.len()),
        options,
        train_sets: HashMap::new(),
    };
    let mut summary = Summary::default();
    let mut timings: HashMap<NodeIndex, (bool, f64)> = HashMap::new();
    for (k, &i) in order.iter().enumerate() {
        let node = &plan.graph[i];
        let dir = runner.dir(i);
        if dir.is_dir() {
            runner.progress.cached(k, &node.name);
            summary.cached.push(node.name.clone());
            timings.insert(i, (true, 0.0));
            continue;
        }
        if runner.stopped() {
            return Err(RunError::Interrupted {
                node: node.name.clone(),
            });
        }
        let t = Instant::now();
        runner.progress.start(k, &node.name, &node.detail);
        let partial = dir.with_extension("partial");
        std::fs::create_dir_all(&partial)
            .map_err(|e| RunError::Io(partial.clone(), e.to_string()))?;
        let result = nodes::run_node(&mut runner, i, &partial);
        match result {
            Ok(()) => {
                std::fs::rename(&partial, &dir)
                    .map_err(|e| RunError::Io(dir.clone(), e.to_string()))?;
            }
            Err(e) => {
                runner.progress.failed(&node.name);
                return Err(e);
            }
        }
        let secs = t.elapsed().as_secs_f64();
        runner.progress.done(k, &node.name, secs);
        summary.ran.push(node.name.clone());
        timings.insert(i, (false, secs));
    }
    for i in plan.graph.node_indices() {
        if let Work::Report { workflows, matrix } = &plan.graph[i].work {
            let name = match matrix {
                Some(m) => m.clone(),
                None => wfs[workflows[0]].name.clone(),
            };
            let folder = out.join(&name);
            report::publish(&runner.dir(i), &folder)
                .map_err(|e| RunError::Io(folder.clone(), e))?;
            crate::manifest::write(&runner, i, &folder, &timings)
                .map_err(|e| RunError::Io(folder.clone(), e))?;
            summary.reports.push(folder);
        }
    }
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}
