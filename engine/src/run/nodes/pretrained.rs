//! A model's starting weights (`weights = ...` on its backbone), read once into mio's own
//! layout: `weights.safetensors` (the weights and, for explicit prompts, the task maps in the
//! file's task order) and `network.json` naming those tasks. The first training stage starts
//! from it; an untrained model is evaluated and swept from it directly.

use std::path::Path;

use mio_stdlib::models::checkpoint;
use mio_stdlib::models::network::Network;
use mio_stdlib::models::PromptMode;

use super::common::{compute, fail, failed, write_json, Ctx};
use crate::job::{JobFile, Model};
use crate::run::artifact::{NetworkInfo, NetworkTask};
use crate::run::error::{NodeError, RunError};

pub(super) fn run(ctx: &Ctx, jf: &JobFile, m: &Model, dir: &Path) -> Result<(), RunError> {
    let name = &jf.name;
    let Some(start) = &m.start else {
        return Err(fail(
            name,
            NodeError::Crashed("a pretrained step without weights".into()),
        ));
    };
    let weights = super::common::start_weights(&jf.base, start);
    // A mio run's weights name their tasks in the network.json beside them.
    let beside = weights.with_file_name("network.json");
    let file_tasks: Vec<NetworkTask> = match crate::run::artifact::read::<NetworkInfo>(&beside) {
        Ok(info) if weights.extension().is_some_and(|e| e == "safetensors") => info.tasks,
        _ => start
            .file_tasks
            .iter()
            .map(|t| NetworkTask {
                name: t.clone(),
                degradation: t.clone(),
            })
            .collect(),
    };
    let mut spec = m.network.clone();
    spec.tasks = file_tasks.iter().map(|t| t.name.clone()).collect();
    let mut net = Network::new(spec, m.seed, &ctx.device).map_err(compute(name))?;
    let tensors = checkpoint::read(&weights, start.param_key.as_deref(), &ctx.device)
        .map_err(|e| fail(name, NodeError::read(&weights, e)))?;
    let from = match &start.param_key {
        Some(k) => format!("{} (`{k}`)", weights.display()),
        None => weights.display().to_string(),
    };
    net.set_weights(&tensors, &from)
        .map_err(|e| fail(name, NodeError::read(&weights, e)))?;
    if matches!(m.network.prompt, PromptMode::Explicit { .. }) {
        match &start.maps {
            Some(maps) => {
                let path = jf.base.join(maps);
                let t = checkpoint::read_maps(&path, &ctx.device)
                    .map_err(|e| fail(name, NodeError::read(&path, e)))?;
                net.set_maps(&t, &path.display().to_string())
                    .map_err(|e| fail(name, NodeError::read(&path, e)))?;
            }
            None if tensors.contains_key("prompt_maps") => {}
            None => {
                return Err(fail(
                    name,
                    NodeError::read(
                        &weights,
                        "explicit prompts need their task maps, which this file does not hold: \
                         give the model `maps = \"type7.npy\"` (the reference ships them apart)",
                    ),
                ))
            }
        }
    }
    let out = dir.join("weights.safetensors");
    net.save(&out)
        .map_err(|e| fail(name, NodeError::write(&out, e)))?;
    let info = NetworkInfo {
        format: crate::job::FORMAT,
        backbone: m.backbone.clone(),
        tasks: file_tasks,
    };
    write_json(&dir.join("network.json"), &info).map_err(failed(name))?;
    ctx.progress().note(&format!(
        "{name}: read {} tensors from {}",
        tensors.len(),
        weights.display()
    ));
    Ok(())
}
