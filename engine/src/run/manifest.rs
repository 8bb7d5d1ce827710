//! Run manifests (`manifest.yaml` in each workflow's run folder): what was run, with which
//! settings, seeds, inputs, versions and device, each node's key and time. The only module that
//! writes YAML, through `crate::yaml` (the one module that knows serde_yaml).

use std::collections::HashMap;
use std::path::Path;

use petgraph::graph::NodeIndex;
use serde::{Deserialize, Serialize};

use crate::job::Job;
use crate::run::keys::NodeKey;
use crate::run::layout::Layout;
use crate::run::nodes::write_atomic;

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Manifest {
    pub mio: String,
    pub candle: String,
    pub device: String,
    pub workflows: Vec<WorkflowEntry>,
    pub nodes: Vec<NodeEntry>,
}

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct WorkflowEntry {
    pub name: String,
    pub seed: i64,
    /// Every setting of the workflow, canonical text.
    pub settings: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct NodeEntry {
    pub name: String,
    pub kind: String,
    pub key: String,
    pub definition: String,
    /// Hash of the files the node reads itself.
    pub inputs: String,
    pub upstream: Vec<String>,
    pub cached: bool,
    pub seconds: f64,
}

/// Writes the manifest of a report's workflows: every node the report depends on.
pub(crate) fn write(
    layout: &Layout,
    device: &candle_core::Device,
    report: NodeIndex,
    folder: &Path,
    timings: &HashMap<NodeIndex, (bool, f64)>,
) -> Result<(), String> {
    let Job::Report(job) = &layout.plan.graph[report].job else {
        return Err("not a report".into());
    };
    // Every ancestor of the report, and the report.
    let mut seen: std::collections::BTreeSet<NodeIndex> =
        layout.plan.ancestors(report).into_iter().collect();
    seen.insert(report);
    let order = layout.plan.order();
    let nodes = order
        .into_iter()
        .filter(|n| seen.contains(n))
        .map(|n| {
            let node = &layout.plan.graph[n];
            let k = &layout.keys[&n];
            let (cached, seconds) = timings.get(&n).copied().unwrap_or((true, 0.0));
            NodeEntry {
                name: node.name.clone(),
                kind: node.kind.as_str().into(),
                key: k.key.clone(),
                definition: k.definition.clone(),
                inputs: k.inputs.clone(),
                upstream: k.upstream.clone(),
                cached,
                seconds: (seconds * 100.0).round() / 100.0,
            }
        })
        .collect();
    let m = Manifest {
        mio: crate::job::MIO.into(),
        candle: "candle-core 0.11".into(),
        device: format!("{device:?}"),
        workflows: job
            .workflows
            .iter()
            .map(|wf| WorkflowEntry {
                name: wf.name.clone(),
                seed: wf.setting("seed").and_then(|v| v.as_int()).unwrap_or(0),
                settings: wf
                    .settings
                    .iter()
                    .map(|(n, v)| format!("{n} = {v}"))
                    .collect(),
            })
            .collect(),
        nodes,
    };
    let text = crate::yaml::to_string(&m)?;
    // Every run's manifest is kept under history/ (named by its end time); manifest.yaml is
    // the latest.
    let history = folder.join("history");
    std::fs::create_dir_all(&history).map_err(|e| e.to_string())?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let write = |path: &Path| write_atomic(path, text.as_bytes()).map_err(|e| e.to_string());
    write(&history.join(format!("{secs}.yaml")))?;
    write(&folder.join("manifest.yaml"))
}

/// The node keys recorded by the last run in `folder` (empty when there is none).
pub fn previous(folder: &Path) -> HashMap<String, NodeKey> {
    let Ok(text) = std::fs::read_to_string(folder.join("manifest.yaml")) else {
        return HashMap::new();
    };
    let Ok(m) = crate::yaml::from_str::<Manifest>(&text) else {
        return HashMap::new();
    };
    m.nodes
        .into_iter()
        .map(|n| {
            (
                n.name,
                NodeKey {
                    key: n.key,
                    definition: n.definition,
                    inputs: n.inputs,
                    upstream: n.upstream,
                },
            )
        })
        .collect()
}
