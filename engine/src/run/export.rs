//! `mio export`: a trained model in the reference's own layout, so its PyTorch code loads it:
//! `weights.safetensors` under the reference's parameter names (nothing of mio's besides),
//! the explicit prompts' task maps as `maps.npy` (float64 `[T, S, S]`, like the reference's
//! `type7.npy`, in its task order when the model's tasks are its seven), the task classifier
//! as `classifier.safetensors` (`CondNet`, `lastOut`, outputs in the maps' order) when one is
//! given, and `export.json` saying what each file holds. `tools/checkpoints.sh load DIR`
//! loads it into PyTorch.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mio_stdlib::models::network::Arch;
use mio_stdlib::models::PromptMode;
use serde::{Deserialize, Serialize};

use super::restore::{load_model, read_classifier, LoadOptions, REFERENCE_TASKS};

/// `export.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportInfo {
    /// The backbone as a .mio file writes it.
    pub backbone: String,
    pub arch: ExportArch,
    /// The tasks of the maps' rows and the classifier's outputs, in order.
    pub tasks: Vec<String>,
    pub weights: String,
    pub maps: Option<String>,
    pub classifier: Option<String>,
}

/// The architecture's arguments as the reference's constructors take them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportArch {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<usize>,
    /// none, explicit or adaptive.
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dim: Option<usize>,
}

fn save_tensors(path: &Path, t: &std::collections::HashMap<String, Tensor>) -> Result<(), String> {
    mio_stdlib::fsio::atomic(path, |tmp| candle_core::safetensors::save(t, tmp))
        .map_err(|e| format!("{}: cannot write it: {e}", path.display()))
}

/// Writes `model` (see [`load_model`]) to the folder `out`; returns the files written.
pub fn export(
    model: &Path,
    arch: Option<&str>,
    opts: &LoadOptions,
    classifier: Option<&Path>,
    out: &Path,
) -> Result<Vec<PathBuf>, String> {
    if out.is_file() {
        return Err(format!(
            "{}: a file; give a folder to write the export into",
            out.display()
        ));
    }
    if out.is_dir() && !out.join("export.json").exists() {
        let used = std::fs::read_dir(out)
            .map_err(|e| format!("{}: {e}", out.display()))?
            .next()
            .is_some();
        if used {
            return Err(format!(
                "{}: a folder with other files in it; give a new or empty folder (an earlier \
                 export is replaced)",
                out.display()
            ));
        }
    }
    let dev = Device::Cpu;
    let loaded = load_model(model, arch, opts, &dev)?;
    let net = &loaded.net;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    // The maps' (and classifier's) order: the reference's when these are its seven tasks.
    let key = |t: &(String, String)| {
        if REFERENCE_TASKS.contains(&t.0.as_str()) {
            t.0.clone()
        } else {
            t.1.clone()
        }
    };
    let keys: Vec<String> = loaded.tasks.iter().map(key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    let mut reference: Vec<String> = REFERENCE_TASKS.iter().map(|t| t.to_string()).collect();
    reference.sort();
    let order: Vec<usize> = if sorted == reference {
        REFERENCE_TASKS
            .iter()
            .map(|r| keys.iter().position(|k| k == r).expect("the same seven"))
            .collect()
    } else {
        (0..keys.len()).collect()
    };
    let tasks: Vec<String> = order.iter().map(|&i| loaded.tasks[i].0.clone()).collect();
    let mut written = vec![];

    let weights: std::collections::HashMap<String, Tensor> =
        mio_stdlib::trainer::sorted_vars(&net.varmap)
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
    let wpath = out.join("weights.safetensors");
    save_tensors(&wpath, &weights)?;
    written.push(wpath);

    let maps = match net.maps() {
        Some(m) => {
            let idx: Vec<u32> = order.iter().map(|&i| i as u32).collect();
            let m = m
                .index_select(
                    &Tensor::new(idx.as_slice(), &dev).map_err(|e| e.to_string())?,
                    0,
                )
                .and_then(|m| m.squeeze(1))
                .and_then(|m| m.to_dtype(DType::F64))
                .map_err(|e| e.to_string())?;
            let path = out.join("maps.npy");
            mio_stdlib::fsio::atomic(&path, |tmp| m.write_npy(tmp))
                .map_err(|e| format!("{}: cannot write it: {e}", path.display()))?;
            written.push(path);
            Some("maps.npy".to_string())
        }
        None => None,
    };

    let clf = match classifier {
        Some(c) => {
            let ordered: Vec<(String, String)> =
                order.iter().map(|&i| loaded.tasks[i].clone()).collect();
            // Read as `mio restore` reads it, outputs in the maps' order.
            let (vm, _) = read_classifier(c, &ordered, &dev)?;
            let path = out.join("classifier.safetensors");
            mio_stdlib::fsio::atomic(&path, |tmp| vm.save(tmp))
                .map_err(|e| format!("{}: cannot write it: {e}", path.display()))?;
            written.push(path);
            Some("classifier.safetensors".to_string())
        }
        None => None,
    };

    let (prompt, dim) = match net.spec.prompt {
        PromptMode::None => ("none", None),
        PromptMode::Explicit { dim } => ("explicit", Some(dim)),
        PromptMode::Adaptive { dim } => ("adaptive", Some(dim)),
    };
    let arch = match &net.spec.arch {
        Arch::SrResNet(c) => ExportArch {
            kind: "srresnet".into(),
            channels: Some(c.channels),
            blocks: Some(c.blocks),
            prompt: prompt.into(),
            dim,
        },
        Arch::SwinIr(c) => ExportArch {
            kind: "swinir".into(),
            channels: Some(c.embed),
            blocks: None,
            prompt: prompt.into(),
            dim,
        },
        Arch::Restormer(c) => ExportArch {
            kind: "restormer".into(),
            channels: Some(c.dim),
            blocks: None,
            prompt: prompt.into(),
            dim,
        },
        Arch::Uformer(c) => ExportArch {
            kind: "uformer".into(),
            channels: Some(c.embed),
            blocks: None,
            prompt: prompt.into(),
            dim,
        },
        Arch::PromptIr(c) => ExportArch {
            kind: "promptir".into(),
            channels: Some(c.body.dim),
            blocks: None,
            prompt: prompt.into(),
            dim,
        },
    };
    let info = ExportInfo {
        backbone: loaded.backbone.clone(),
        arch,
        tasks,
        weights: "weights.safetensors".into(),
        maps,
        classifier: clf,
    };
    let path = out.join("export.json");
    let text = serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?;
    mio_stdlib::data::write_atomic(&path, text.as_bytes())
        .map_err(|e| format!("{}: cannot write it: {e}", path.display()))?;
    written.push(path);
    Ok(written)
}
