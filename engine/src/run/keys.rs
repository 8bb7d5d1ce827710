//! Cache keys and the explanation of what will run and why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use petgraph::graph::NodeIndex;

use super::hashes::FileHashes;
use crate::job::{self, Job};
use crate::plan::{fnv1a, Plan};

/// A node's key and what went into it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeKey {
    /// 16 hex digits.
    pub key: String,
    /// The node's own definition (upstream ids folded in by the planner).
    pub definition: String,
    /// A hash of the contents of the files the node reads itself ("" when none).
    pub inputs: String,
    /// The keys of the nodes it reads.
    pub upstream: Vec<String>,
}

/// The folders (data sets) and single files a node reads directly, not through other nodes.
/// `all`: every stage and evaluation that names a data set (for checking that its folders
/// exist); otherwise only those whose files are not already in an upstream key (a later stage
/// reads stage 1's images, an eval of synthesised pairs reads its test-set node).
fn reads(job: &Job, base: &Path, all: bool) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let folder = |p: &str| vec![base.join(p)];
    match job {
        Job::TestSet(t) => (folder(&t.data.path), vec![]),
        Job::Train(t) if all || t.config.stage == 0 => (folder(&t.data.path), vec![]),
        Job::Train(_) => (vec![], vec![]),
        Job::Pretrained(m) => match &m.start {
            Some(s) => (
                vec![],
                std::iter::once(crate::run::nodes::common::start_weights(base, s))
                    .chain(s.maps.iter().map(|m| base.join(m)))
                    .collect(),
            ),
            None => (vec![], vec![]),
        },
        Job::Classifier(c) => match (&c.file, &c.data) {
            // A classifier step's folder: its classifier file is what is read.
            (Some(f), _) if base.join(f).is_dir() => {
                (vec![], vec![base.join(f).join("classifier.safetensors")])
            }
            (Some(f), _) => (vec![], vec![base.join(f)]),
            (None, Some(d)) => (folder(&d.path), vec![]),
            (None, None) => (vec![], vec![]),
        },
        Job::Eval(e) => match &e.data {
            job::Source::Pairs { lq, gt, .. } => (vec![base.join(lq), base.join(gt)], vec![]),
            job::Source::Images(i) if all => (folder(&i.path), vec![]),
            job::Source::Images(_) => (vec![], vec![]),
        },
        Job::Sweep(s) => match &s.target {
            job::SweepTarget::File(f) => (vec![], vec![base.join(f)]),
            job::SweepTarget::Data(d) => (folder(&d.path), vec![]),
        },
        Job::Curves(_) | Job::Report(_) => (vec![], vec![]),
    }
}

/// An image and, when it has one, its depth map (`NAME.depth.png`, read by haze).
fn with_depth(image: PathBuf) -> Vec<PathBuf> {
    let depth = mio_stdlib::degrade::depth_path(&image);
    if depth.exists() {
        vec![image, depth]
    } else {
        vec![image]
    }
}

/// The files a node reads directly (not through other nodes): its images and their depth maps.
fn input_files(job: &Job, base: &Path) -> Vec<PathBuf> {
    let (folders, files) = reads(job, base, false);
    folders
        .iter()
        .flat_map(|dir| mio_stdlib::image::list_folder(dir).unwrap_or_default())
        .chain(files)
        .flat_map(with_depth)
        .collect()
}

/// The folders and files a node reads directly that do not exist (a data folder misspelt, a
/// sweep's image moved): checked before a run starts, so it fails before any work.
pub(crate) fn missing_inputs(job: &Job, base: &Path) -> Vec<PathBuf> {
    let (folders, files) = reads(job, base, true);
    folders
        .into_iter()
        .filter(|p| !p.is_dir())
        .chain(files.into_iter().filter(|f| !f.is_file()))
        .collect()
}

/// One key for a node's input files (their names and bytes); "" when it reads none.
fn hash_files(files: &[PathBuf], hashes: &mut FileHashes) -> String {
    let keys = hashes.keys(files);
    if keys.is_empty() {
        String::new()
    } else {
        let all: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        mio_stdlib::data::content_key(&all)
    }
}

/// Every node's key, in dependency order (a key folds in its upstream keys). The input files'
/// hashes are remembered in `<output>/file-hashes.json` (see [`FileHashes`]).
pub fn compute(
    plan: &Plan,
    base: &Path,
    output: &Path,
) -> Result<HashMap<NodeIndex, NodeKey>, (PathBuf, String)> {
    let mut keys: HashMap<NodeIndex, NodeKey> = HashMap::new();
    let mut cache = FileHashes::open(&output.join("file-hashes.json"));
    for i in plan.order() {
        let node = &plan.graph[i];
        let files = input_files(&node.job, base);
        let inputs = hash_files(&files, &mut cache);
        let upstream: Vec<String> = plan.deps(i).iter().map(|d| keys[d].key.clone()).collect();
        let text = format!(
            "mio {} jobs {} | {} | inputs {inputs} | upstream {}",
            job::MIO,
            job::FORMAT,
            node.definition,
            upstream.join(",")
        );
        keys.insert(
            i,
            NodeKey {
                key: format!("{:016x}", fnv1a(&text)),
                definition: node.definition.clone(),
                inputs,
                upstream,
            },
        );
    }
    cache.save();
    Ok(keys)
}

/// Whether a node will run, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    pub name: String,
    pub cached: bool,
    pub why: String,
}

/// What differs between two definitions, as the first differing `|`-separated parts.
fn definition_change(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.split(" | ").collect();
    let b: Vec<&str> = new.split(" | ").collect();
    for (x, y) in a.iter().zip(&b) {
        if x != y {
            return format!("changed: `{}` -> `{}`", x.trim(), y.trim());
        }
    }
    "its definition changed".into()
}

/// For each node in plan order: cached, or will run and why (compared with the manifest of the
/// previous run when there is one: `previous` maps node names to their recorded keys).
pub fn explain(
    plan: &Plan,
    keys: &HashMap<NodeIndex, NodeKey>,
    store: &Path,
    previous: &HashMap<String, NodeKey>,
) -> Vec<Explanation> {
    let mut out = vec![];
    let mut rerun: HashMap<NodeIndex, bool> = HashMap::new();
    for i in plan.order() {
        let node = &plan.graph[i];
        let k = &keys[&i];
        let check =
            crate::run::store::check(&crate::run::store::node_dir(store, node.kind, &k.key));
        let done = check == crate::run::store::Check::Finished;
        let partial = crate::run::store::node_dir(store, node.kind, &k.key)
            .with_extension("partial")
            .is_dir();
        let stale_up: Vec<String> = plan
            .deps(i)
            .iter()
            .filter(|d| rerun.get(d).copied().unwrap_or(false))
            .map(|d| plan.graph[*d].name.clone())
            .collect();
        rerun.insert(i, !done);
        let why = if done {
            "cached".to_string()
        } else if let crate::run::store::Check::Damaged(why) = &check {
            format!("its finished outputs are damaged ({why}): moved aside and run again")
        } else if partial {
            "interrupted earlier: continues from its saved progress".into()
        } else if let Some(old) = previous.get(&node.name) {
            if old.key == k.key {
                "its outputs are missing".into()
            } else if old.inputs != k.inputs {
                "an input file changed".into()
            } else if old.definition.split(" <- ").next() != k.definition.split(" <- ").next() {
                definition_change(&old.definition, &k.definition)
            } else if !stale_up.is_empty() {
                format!("upstream changed: {}", stale_up.join(", "))
            } else if old.upstream != k.upstream {
                "an upstream node changed".into()
            } else {
                "the engine version changed".into()
            }
        } else if !stale_up.is_empty() {
            format!("new; after {}", stale_up.join(", "))
        } else {
            "new".into()
        };
        out.push(Explanation {
            name: node.name.clone(),
            cached: done,
            why,
        });
    }
    out
}
