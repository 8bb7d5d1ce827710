//! Where a plan's nodes live (`<output>/nodes/KIND-KEY/`) and each node's job file: its
//! lowered job and every node upstream of it with its folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use petgraph::graph::NodeIndex;

use super::error::{NodeError, RunError};
use super::keys::{self, NodeKey};
use super::store::{node_dir, output_dir};
use crate::ir;
use crate::job::{self, JobFile};
use crate::plan::Plan;

/// Where a plan's nodes live and what each needs to run: its job file.
pub(crate) struct Layout<'a> {
    pub plan: &'a Plan,
    /// The folder of the .mio file: data paths are relative to it.
    pub base: PathBuf,
    pub store: PathBuf,
    pub keys: HashMap<NodeIndex, NodeKey>,
    /// The device as the workflow names it (`auto`, `cpu`, `cuda:N`).
    pub device_name: String,
}

impl Layout<'_> {
    pub fn new<'a>(
        wfs: &[ir::Workflow],
        plan: &'a Plan,
        base: &Path,
    ) -> Result<Layout<'a>, RunError> {
        // Job files are read in other processes, maybe in other folders: absolute paths only.
        let base = &std::path::absolute(base)
            .map_err(|e| RunError::Io(base.to_path_buf(), e.to_string()))?;
        let out = output_dir(base, wfs);
        let store = out.join("nodes");
        let keys = keys::compute(plan, base, &out)
            .map_err(|(p, e)| RunError::Io(p, format!("cannot read an input: {e}")))?;
        let device_name = match wfs.first().map(crate::lower::device) {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(RunError::node("device", NodeError::experiment(e))),
            None => "auto".into(),
        };
        Ok(Layout {
            plan,
            base: base.to_path_buf(),
            store,
            keys,
            device_name,
        })
    }

    pub fn dir(&self, i: NodeIndex) -> PathBuf {
        node_dir(&self.store, self.plan.graph[i].kind, &self.keys[&i].key)
    }

    pub fn folder(&self, i: NodeIndex) -> String {
        format!("{}-{}", self.plan.graph[i].kind.as_str(), self.keys[&i].key)
    }

    /// Everything node `i` needs to run, in this process or another.
    pub fn job_file(&self, i: NodeIndex) -> JobFile {
        let node = &self.plan.graph[i];
        let direct = self.plan.deps(i);
        JobFile {
            format: job::FORMAT,
            mio: job::MIO.into(),
            name: node.name.clone(),
            folder: self.folder(i),
            key: self.keys[&i].key.clone(),
            base: self.base.clone(),
            store: self.store.clone(),
            device: self.device_name.clone(),
            job: node.job.clone(),
            inputs: self
                .plan
                .ancestors(i)
                .into_iter()
                .map(|d| job::Input {
                    name: self.plan.graph[d].name.clone(),
                    folder: self.folder(d),
                    direct: direct.contains(&d),
                    reads: self
                        .plan
                        .deps(d)
                        .into_iter()
                        .map(|u| self.folder(u))
                        .collect(),
                    job: self.plan.graph[d].job.clone(),
                })
                .collect(),
        }
    }
}
