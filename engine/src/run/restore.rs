//! Restoring images with a trained network: whole or in overlapping tiles (for images larger
//! than memory allows), with the task's prompt, a blend of prompts, or the classifier's guess;
//! and loading a network from a run (a training node's folder) or from a bare safetensors file
//! of reference weights with an architecture expression. `mio restore`, evals and sweeps all
//! restore through here.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mio_stdlib::image::Image;
use mio_stdlib::models::network::Network;

use crate::run::artifact::NetworkInfo;

/// The reference implementation's task order, used for bare weight files (`prompt_maps` rows).
pub const REFERENCE_TASKS: [&str; 7] = mio_catalog::REFERENCE_TASK_INDEX;

/// `[1, 3, H, W]` in [0, 1].
pub fn to_tensor(img: &Image, dev: &Device) -> candle_core::Result<Tensor> {
    Tensor::from_vec(img.to_f32(), (img.height, img.width, 3), dev)?
        .permute((2, 0, 1))?
        .unsqueeze(0)
}

pub fn to_image(t: &Tensor) -> candle_core::Result<Image> {
    let t = t.squeeze(0)?.permute((1, 2, 0))?.contiguous()?;
    let (h, w, _) = t.dims3()?;
    let v: Vec<f32> = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    Ok(Image::from_f32(w, h, &v))
}

/// The network's output for `x` `[1, 3, H, W]`, padded at the bottom and right to its side
/// multiple, and for a backbone the reference tests on squares (Uformer) then reflected on
/// both sides of the short side to a square. `z`: the latent prompt (required for explicit
/// prompts; adaptive networks compute theirs from the input when it is `None`).
fn forward(net: &Network, x: &Tensor, z: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let m = net.side_multiple();
    let (ph, pw) = ((m - h % m) % m, (m - w % m) % m);
    let xp = if ph + pw > 0 {
        x.pad_with_same(2, 0, ph)?.pad_with_same(3, 0, pw)?
    } else {
        x.clone()
    };
    if net.spec.arch.pads_to_square() && h + ph != w + pw {
        let (hp, wp) = (h + ph, w + pw);
        let side = hp.max(wp);
        // Both sides are multiples of `m`, so the difference splits evenly when `m` is even.
        let (top, left) = ((side - hp) / 2, (side - wp) / 2);
        let square = reflect_pad(&xp, 2, top, side - hp - top)?;
        let square = reflect_pad(&square, 3, left, side - wp - left)?;
        let out = net.forward_latent(&square, z)?;
        return out.narrow(2, top, h)?.narrow(3, left, w);
    }
    net.forward_latent(&xp, z)?.narrow(2, 0, h)?.narrow(3, 0, w)
}

/// `x` extended by `before` and `after` samples along `dim`, reflected about the edge samples
/// (PyTorch's `reflect`), repeatedly where the padding is longer than the axis.
pub fn reflect_pad(
    x: &Tensor,
    dim: usize,
    before: usize,
    after: usize,
) -> candle_core::Result<Tensor> {
    let n = x.dim(dim)?;
    if before + after == 0 {
        return Ok(x.clone());
    }
    let period = 2 * (n.max(2) - 1) as i64;
    let idx: Vec<u32> = (-(before as i64)..(n + after) as i64)
        .map(|i| {
            if n == 1 {
                return 0;
            }
            let r = i.rem_euclid(period);
            (if r < n as i64 { r } else { period - r }) as u32
        })
        .collect();
    x.contiguous()?
        .index_select(&Tensor::new(idx.as_slice(), x.device())?, dim)
}

/// Images with a side under this are extended (edge pixels repeated) to it before they go
/// through a network, and the result cut back: the prompt extractor's and the classifier's
/// strided convolutions need a few pixels, and a 2x2 image is still an image.
pub const MIN_SIDE: usize = 32;

/// `x` `[B, 3, H, W]` extended at the bottom and right to at least [`MIN_SIDE`] a side.
pub fn at_least_min_side(x: &Tensor) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h >= MIN_SIDE && w >= MIN_SIDE {
        return Ok(x.clone());
    }
    x.pad_with_same(2, 0, MIN_SIDE.saturating_sub(h))?
        .pad_with_same(3, 0, MIN_SIDE.saturating_sub(w))
}

/// Restores `x` `[1, 3, H, W]` in tiles of `tile` pixels, each computed with `overlap` pixels
/// of context on every side and only its centre kept, so that with an overlap at least the
/// network's receptive radius the result equals the whole image's. `tile = 0`: whole.
pub fn restore_tensor(
    net: &Network,
    x: &Tensor,
    z: Option<&Tensor>,
    tile: usize,
    overlap: usize,
) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h < MIN_SIDE || w < MIN_SIDE {
        let big = restore_tensor(net, &at_least_min_side(x)?, z, tile, overlap)?;
        return big.narrow(2, 0, h)?.narrow(3, 0, w);
    }
    // An adaptive prompt is read from the whole image, not from each tile.
    let whole_z;
    let z = match (z, net.adaptive_latent(x)?) {
        (Some(z), _) => Some(z),
        (None, Some(a)) => {
            whole_z = a;
            Some(&whole_z)
        }
        (None, None) => None,
    };
    if tile == 0 || (h <= tile && w <= tile) {
        return forward(net, x, z);
    }
    let mut rows = vec![];
    for y0 in (0..h).step_by(tile) {
        let th = tile.min(h - y0);
        let mut cols = vec![];
        for x0 in (0..w).step_by(tile) {
            let tw = tile.min(w - x0);
            let (ya, xa) = (y0.saturating_sub(overlap), x0.saturating_sub(overlap));
            let (yb, xb) = ((y0 + th + overlap).min(h), (x0 + tw + overlap).min(w));
            let part = x.narrow(2, ya, yb - ya)?.narrow(3, xa, xb - xa)?;
            let out = forward(net, &part, z)?;
            cols.push(out.narrow(2, y0 - ya, th)?.narrow(3, x0 - xa, tw)?);
        }
        rows.push(Tensor::cat(&cols, 3)?);
    }
    Tensor::cat(&rows, 2)
}

/// Tiles of at most this many pixels a side above [`AUTO_TILE_PIXELS`] pixels.
pub const AUTO_TILE: usize = 512;
pub const AUTO_TILE_PIXELS: usize = 1024 * 1024;
/// Context around each tile: more than the receptive radius of the bundled backbones' presets.
pub const OVERLAP: usize = 48;

/// Restores an image: whole when it is small, in tiles when it is large (or `tile` > 0).
pub fn restore(
    net: &Network,
    img: &Image,
    z: Option<&Tensor>,
    tile: usize,
) -> candle_core::Result<Image> {
    let x = to_tensor(img, &net.device())?;
    let tile = if tile == 0 && img.width * img.height > AUTO_TILE_PIXELS {
        AUTO_TILE
    } else {
        tile
    };
    to_image(&restore_tensor(net, &x, z, tile, OVERLAP)?)
}

/// A task classifier for `tasks` (name, degradation) in id order: a classifier step's folder,
/// its `classifier.safetensors` (with `classifier.json` beside it), or the reference's
/// `Classifier.pth` (outputs in the reference's task order). Each task takes the file's
/// output of the same name (or degradation).
pub fn load_classifier(
    path: &Path,
    tasks: &[(String, String)],
    dev: &Device,
) -> Result<mio_stdlib::models::classifier::TaskClassifier, String> {
    Ok(read_classifier(path, tasks, dev)?.1)
}

/// [`load_classifier`], with the variables (to save them again: the classifier step that reads a
/// model's classifier file, `mio export`).
pub fn read_classifier(
    path: &Path,
    tasks: &[(String, String)],
    dev: &Device,
) -> Result<
    (
        candle_nn::VarMap,
        mio_stdlib::models::classifier::TaskClassifier,
    ),
    String,
> {
    let file = if path.is_dir() {
        path.join("classifier.safetensors")
    } else {
        path.to_path_buf()
    };
    let info = file.with_file_name("classifier.json");
    let tensors =
        mio_stdlib::models::checkpoint::read(&file, None, dev).map_err(|e| e.to_string())?;
    let outputs = tensors
        .get("lastOut.bias")
        .and_then(|t| t.dims().first().copied());
    let file_tasks: Vec<String> = if info.exists() {
        crate::run::artifact::read::<crate::run::artifact::ClassifierInfo>(&info)?.tasks
    } else if outputs == Some(REFERENCE_TASKS.len()) {
        REFERENCE_TASKS.iter().map(|t| t.to_string()).collect()
    } else if outputs == Some(tasks.len()) {
        tasks.iter().map(|t| t.0.clone()).collect()
    } else {
        return Err(format!(
            "{}: a classifier of {outputs:?} outputs without a classifier.json naming them; the \
             model has {} tasks",
            file.display(),
            tasks.len()
        ));
    };
    let from = file.display().to_string();
    let tensors = mio_stdlib::models::classifier::reorder(tensors, &file_tasks, tasks, &from)
        .map_err(|e| e.to_string())?;
    mio_stdlib::models::classifier::from_tensors(tasks.len(), &tensors, &from, dev)
        .map_err(|e| e.to_string())
}

/// Parses `noise:0.3,rain:0.7` into (task, weight) pairs.
pub fn parse_mix(text: &str) -> Result<Vec<(String, f64)>, String> {
    text.split(',')
        .map(|part| {
            let (t, w) = part
                .split_once(':')
                .ok_or_else(|| format!("`{part}`: write TASK:WEIGHT, e.g. noise:0.3,rain:0.7"))?;
            let w: f64 = w
                .trim()
                .parse()
                .map_err(|_| format!("`{w}` is not a number (in `{part}`)"))?;
            Ok((t.trim().to_string(), w))
        })
        .collect()
}

/// A model given to `mio restore`: a training node's folder (with `network.json`), a run
/// folder's weights file, or a bare safetensors file (then `arch` is required).
pub fn model_files(path: &Path) -> (PathBuf, Option<PathBuf>) {
    if path.is_dir() {
        (
            crate::run::nodes::common::model_weights(path),
            Some(path.join("network.json")),
        )
    } else {
        let meta = path.with_file_name("network.json");
        (path.to_path_buf(), meta.exists().then_some(meta))
    }
}

/// A network ready to restore with, and its tasks (name, degradation) in id order.
pub struct Loaded {
    pub net: Network,
    /// The backbone as a .mio file writes it.
    pub backbone: String,
    pub tasks: Vec<(String, String)>,
}

/// How a weights file is read besides its architecture.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The key of a PyTorch checkpoint's weights (`params` when `None`; `params_ema`).
    pub param_key: Option<String>,
    /// Task maps (explicit prompts): the reference's `.npy`, or a mio weights file.
    pub maps: Option<PathBuf>,
}

/// Loads `mio restore`'s `--model` (see [`model_files`]); `arch` overrides or supplies the
/// architecture (a backbone expression as in a .mio file).
pub fn load_model(
    path: &Path,
    arch: Option<&str>,
    opts: &LoadOptions,
    dev: &Device,
) -> Result<Loaded, String> {
    let (weights, meta) = model_files(path);
    if !weights.exists() {
        return Err(format!(
            "{}: no weights here (give a training step's folder under runs/nodes, a .safetensors \
             file or a PyTorch .pth checkpoint)",
            weights.display()
        ));
    }
    let meta: Option<NetworkInfo> = match meta {
        Some(m) if m.exists() => Some(crate::run::artifact::read(&m).map_err(|e| {
            format!(
                "{e}; it describes the network beside it: restore it from the run (delete the \
                 node's folder and `mio run` again), or give --arch"
            )
        })?),
        _ => None,
    };
    let backbone = match (arch, &meta) {
        (Some(a), _) => a.to_string(),
        (None, Some(m)) => m.backbone.clone(),
        (None, None) => {
            return Err(format!(
                "{} has no network.json beside it: say what it is with --arch 'srresnet(channels = 64, blocks = 16, prompt = explicit)'",
                weights.display()
            ))
        }
    };
    let call = crate::resolve_backbone(&backbone, "--arch")?;
    let tasks: Vec<(String, String)> = match meta {
        Some(m) => m
            .tasks
            .into_iter()
            .map(|t| (t.name, t.degradation))
            .collect(),
        None => REFERENCE_TASKS
            .iter()
            .map(|t| (t.to_string(), t.to_string()))
            .collect(),
    };
    let spec = crate::lower::network(&call, tasks.iter().map(|t| t.0.clone()).collect())
        .map_err(|e| e.to_string())?;
    let mut net = Network::new(spec, 0, dev).map_err(|e| e.to_string())?;
    let tensors = mio_stdlib::models::checkpoint::read(&weights, opts.param_key.as_deref(), dev)
        .map_err(|e| e.to_string())?;
    net.set_weights(&tensors, &weights.display().to_string())
        .map_err(|e| e.to_string())?;
    if net.maps().is_some() {
        match &opts.maps {
            Some(m) => {
                let maps =
                    mio_stdlib::models::checkpoint::read_maps(m, dev).map_err(|e| e.to_string())?;
                net.set_maps(&maps, &m.display().to_string())
                    .map_err(|e| e.to_string())?;
            }
            None if !tensors.contains_key("prompt_maps") => {
                return Err(format!(
                    "{}: explicit prompts need their task maps, which this file does not hold: \
                     give --maps (the reference's type7.npy)",
                    weights.display()
                ))
            }
            None => {}
        }
    } else if let Some(m) = &opts.maps {
        return Err(format!(
            "{}: task maps are for explicit prompts; this network has none",
            m.display()
        ));
    }
    let net = net.frozen().map_err(|e| e.to_string())?;
    Ok(Loaded {
        net,
        backbone,
        tasks,
    })
}

impl Loaded {
    /// The id of a task given by name (or by its degradation's name).
    pub fn task(&self, name: &str) -> Result<usize, String> {
        self.tasks
            .iter()
            .position(|t| t.0 == name)
            .or_else(|| self.tasks.iter().position(|t| t.1 == name))
            .ok_or_else(|| {
                let names: Vec<&str> = self.tasks.iter().map(|t| t.0.as_str()).collect();
                format!(
                    "the model knows no task `{name}`; its tasks: {}",
                    names.join(", ")
                )
            })
    }

    /// The latent prompt of a blend of tasks' prompts (explicit prompts only).
    pub fn mix(&self, mix: &[(String, f64)]) -> Result<Tensor, String> {
        let mut z: Option<Tensor> = None;
        for (t, w) in mix {
            let zt = self
                .net
                .task_latent(self.task(t)?)
                .map_err(|e| e.to_string())?;
            let part = (zt * *w).map_err(|e| e.to_string())?;
            z = Some(match z {
                Some(acc) => (acc + part).map_err(|e| e.to_string())?,
                None => part,
            });
        }
        z.ok_or_else(|| "an empty prompt mix".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio_catalog::config::{Arch, PromptMode, Spec, UformerConfig};

    #[test]
    fn reflect_pad_is_pytorchs_reflect() {
        let x = Tensor::arange(0f32, 4.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 4))
            .unwrap();
        let p: Vec<f32> = reflect_pad(&x, 1, 2, 3)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        // torch.nn.functional.pad(torch.arange(4.)[None], (2, 3), mode="reflect")
        assert_eq!(p, [2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 1.0, 0.0]);
        // Longer than the axis: reflected again.
        let p: Vec<f32> = reflect_pad(&x, 1, 0, 7)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(p, [0.0, 1.0, 2.0, 3.0, 2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0]);
    }

    #[test]
    fn uformer_restores_a_wide_image_through_a_reflected_square() {
        let cfg = UformerConfig {
            embed: 4,
            depths: [1; 9],
            heads: [1; 9],
            window: 2,
            mlp_ratio: 2.0,
            modulator: true,
        };
        let spec = Spec {
            arch: Arch::Uformer(cfg),
            prompt: PromptMode::None,
            map_size: 0,
            tasks: vec![],
        };
        let dev = Device::Cpu;
        let net = Network::new(spec, 3, &dev).unwrap();
        // 40 x 70: padded to 64 x 96, then 16 reflected rows above and below to 96 x 96.
        let x = Tensor::rand(0f32, 1.0, (1, 3, 40, 70), &dev).unwrap();
        let out = forward(&net, &x, None).unwrap();
        assert_eq!(out.dims(), &[1, 3, 40, 70]);
        let padded = x
            .pad_with_same(2, 0, 24)
            .unwrap()
            .pad_with_same(3, 0, 26)
            .unwrap();
        let square = reflect_pad(&padded, 2, 16, 16).unwrap();
        let want = net
            .forward_latent(&square, None)
            .unwrap()
            .narrow(2, 16, 40)
            .unwrap()
            .narrow(3, 0, 70)
            .unwrap();
        let diff: f32 = (out - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-6, "{diff}");
    }
}
