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
    let mut weights = jf.base.join(&start.weights);
    if weights.is_dir() {
        // A training step's folder: its weights (the EMA's when it kept one).
        weights = super::common::model_weights(&weights);
    }
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

/// Starts `net` from a pretrained step's folder: its weights, and for explicit prompts each of
/// `net`'s tasks takes the folder's map of the same name (else of the same degradation); a
/// task the folder has no map for keeps its own, drawn from the seed.
pub(crate) fn start_from(
    net: &mut Network,
    tasks: &[mio_stdlib::data::TaskSpec],
    dir: &Path,
) -> Result<(), NodeError> {
    let path = dir.join("weights.safetensors");
    let mut tensors =
        checkpoint::read(&path, None, &net.device()).map_err(|e| NodeError::read(&path, e))?;
    let maps = tensors.remove("prompt_maps");
    net.set_weights(&tensors, &path.display().to_string())
        .map_err(|e| NodeError::read(&path, e))?;
    let (Some(maps), Some(own)) = (maps, net.maps().cloned()) else {
        return Ok(());
    };
    let info: NetworkInfo = crate::run::artifact::read(&dir.join("network.json"))
        .map_err(|e| NodeError::read(dir.join("network.json"), e))?;
    // By name first; then a task of another name takes the map of its degradation if no task
    // claimed that map by name (`my_noise` takes `noise`'s; a new `fog` beside `haze` does not).
    let mut at: Vec<Option<usize>> = tasks
        .iter()
        .map(|t| info.tasks.iter().position(|f| f.name == t.name))
        .collect();
    for (k, task) in tasks.iter().enumerate() {
        if at[k].is_some() {
            continue;
        }
        let free =
            info.tasks.iter().enumerate().position(|(i, f)| {
                f.degradation == task.degradation.key() && !at.contains(&Some(i))
            });
        at[k] = free;
    }
    if at.contains(&None) && maps.dims()[2..] != own.dims()[2..] {
        return Err(NodeError::experiment(format!(
            "the starting weights' task maps are {:?}, the maps this model draws for new tasks \
             {:?}: give its prompt the file's side, `explicit(map_size = {}px)`",
            &maps.dims()[2..],
            &own.dims()[2..],
            maps.dims()[2]
        )));
    }
    let mut rows = vec![];
    for (k, at) in at.iter().enumerate() {
        let row = match at {
            Some(i) => maps.narrow(0, *i, 1),
            None => own.narrow(0, k, 1),
        };
        rows.push(row.map_err(NodeError::compute)?);
    }
    let all = candle_core::Tensor::cat(&rows, 0).map_err(NodeError::compute)?;
    net.set_maps(&all, &path.display().to_string())
        .map_err(|e| NodeError::read(&path, e))
}
