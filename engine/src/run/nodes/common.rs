//! What the nodes share: the per-process context (device, progress, stop flag, training
//! images loaded once), the folders of a job's inputs, reading images and writing outputs, and
//! the typed errors each failure becomes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use mio_stdlib::data::{TaskSpec, TrainSet};
use mio_stdlib::image::{Image, ImageError};
use mio_stdlib::models::classifier::TaskClassifier;
use mio_stdlib::models::network::Network;

use crate::job::{self, Input, Job, JobFile};
use crate::run::error::{NodeError, RunError};
use crate::run::progress::Progress;

/// A step's failure.
pub(crate) fn fail(node: &str, error: NodeError) -> RunError {
    RunError::node(node, error)
}

/// A failed computation of step `node` (a tensor operation, a network that cannot be built).
pub(crate) fn compute<E: std::fmt::Display>(node: &str) -> impl Fn(E) -> RunError + '_ {
    move |e| fail(node, NodeError::compute(e))
}

/// A failure of step `node` that is already a [`NodeError`].
pub(crate) fn failed(node: &str) -> impl Fn(NodeError) -> RunError + '_ {
    move |e| fail(node, e)
}

impl From<ImageError> for NodeError {
    fn from(e: ImageError) -> NodeError {
        match &e.kind {
            mio_stdlib::image::ErrorKind::Write(why) => NodeError::write(&e.path, why),
            _ => NodeError::read(&e.path, e.to_string()),
        }
    }
}

/// What nodes share in one process: the device, the progress display, the stop flag and the
/// training images loaded once.
pub struct Ctx {
    pub device: Device,
    pub stop: Arc<AtomicBool>,
    progress: Mutex<Progress>,
    /// Training images loaded once per (folder, patch, augment, limit).
    train_sets: Mutex<HashMap<String, Arc<TrainSet>>>,
}

impl Ctx {
    pub fn new(device: Device, stop: Arc<AtomicBool>, progress: Progress) -> Ctx {
        Ctx {
            device,
            stop,
            progress: Mutex::new(progress),
            train_sets: Mutex::new(HashMap::new()),
        }
    }

    pub fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The training crops' source, loaded once per process.
    pub(crate) fn train_set(
        &self,
        base: &Path,
        data: &job::Images,
    ) -> Result<Arc<TrainSet>, NodeError> {
        let key = format!("{data:?}");
        if let Some(s) = self.train_sets.lock().expect("not poisoned").get(&key) {
            return Ok(s.clone());
        }
        let (set, notes) =
            TrainSet::load(&base.join(&data.path), data.patch, data.augment, data.limit)?;
        for n in notes {
            self.progress().note(&n);
        }
        let set = Arc::new(set);
        self.train_sets
            .lock()
            .expect("not poisoned")
            .insert(key, set.clone());
        Ok(set)
    }
}

/// `auto` (CUDA when mio is built with it and a GPU is present, else the CPU), `cpu`, `cuda`
/// or `cuda:N`.
pub fn device_named(name: &str) -> Result<Device, String> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available(0).unwrap_or(Device::Cpu)),
        other => {
            let n = other
                .strip_prefix("cuda")
                .map(|r| r.trim_start_matches(':'))
                .map(|r| {
                    if r.is_empty() {
                        Ok(0)
                    } else {
                        r.parse::<usize>()
                    }
                });
            match n {
                Some(Ok(n)) => Device::new_cuda(n).map_err(|e| {
                    if cfg!(feature = "cuda") {
                        format!("cannot use `{other}`: {e}")
                    } else {
                        format!(
                            "cannot use `{other}`: this mio is built without CUDA (build it with `cargo build --release --features cuda`)"
                        )
                    }
                }),
                _ => Err(format!(
                    "unknown device `{other}` (devices: auto, cpu, cuda, cuda:N)"
                )),
            }
        }
    }
}

/// The finished folder of the direct input that satisfies `pick`.
pub(crate) fn input_dir(jf: &JobFile, pick: impl Fn(&Job) -> bool) -> Option<PathBuf> {
    jf.direct().find(|i| pick(&i.job)).map(|i| jf.dir_of(i))
}

/// The direct input that holds a model's weights: the stage it was last trained in, or, for
/// a model never trained, its starting weights.
pub(crate) fn trained_dir(jf: &JobFile) -> Result<PathBuf, NodeError> {
    input_dir(jf, |j| matches!(j, Job::Train(_)))
        .or_else(|| input_dir(jf, |j| matches!(j, Job::Pretrained(_))))
        .ok_or_else(|| NodeError::Missing("the trained model".into()))
}

/// The direct test-set input of a degradation (`sr_out` reads `sr`'s set: sets are shared by
/// degradation).
pub(crate) fn testset_dir(jf: &JobFile, task: &TaskSpec) -> Option<PathBuf> {
    input_dir(
        jf,
        |j| matches!(j, Job::TestSet(t) if t.task.text == task.text),
    )
}

pub(crate) fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<(), NodeError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| NodeError::write(path, e))?;
    write_atomic(path, text.as_bytes())
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    mio_stdlib::data::write_atomic(path, bytes).map_err(|e| NodeError::write(path, e))
}

/// The clean images of an `images(...)` source, at most `limit` (0: all).
pub(crate) fn clean_images(base: &Path, data: &job::Images) -> Result<Vec<PathBuf>, NodeError> {
    let path = base.join(&data.path);
    let mut files = mio_stdlib::image::list_folder(&path)?;
    if data.limit > 0 {
        files.truncate(data.limit);
    }
    if files.is_empty() {
        return Err(NodeError::read(&path, "no PNG or JPEG images"));
    }
    Ok(files)
}

/// The weights a trained stage's folder holds for evaluation: the EMA when it kept one.
pub(crate) fn model_weights(dir: &Path) -> PathBuf {
    let ema = dir.join("model.safetensors");
    if ema.exists() {
        ema
    } else {
        dir.join("weights.safetensors")
    }
}

/// The file a model's `weights` names: the file itself, or in a training step's folder its
/// weights (the EMA's when it kept one).
pub(crate) fn start_weights(base: &Path, start: &job::Start) -> PathBuf {
    let path = base.join(&start.weights);
    if path.is_dir() {
        model_weights(&path)
    } else {
        path
    }
}

/// The network an eval or sweep restores with, from its trained stage.
pub(crate) fn load_model(
    ctx: &Ctx,
    jf: &JobFile,
    model: &job::Model,
) -> Result<Network, NodeError> {
    let dir = trained_dir(jf)?;
    let mut net =
        Network::new(model.network.clone(), model.seed, &ctx.device).map_err(NodeError::compute)?;
    if input_dir(jf, |j| matches!(j, Job::Train(_))).is_none() {
        // Never trained: the starting weights, each task's map taken by its name (a mio run's
        // weights may hold maps for more tasks than the reference's seven it is told about).
        start_from(&mut net, &model.tasks, &dir)?;
    } else {
        let weights = model_weights(&dir);
        net.load(&weights)
            .map_err(|e| NodeError::read(&weights, e))?;
    }
    net.frozen().map_err(NodeError::compute)
}

pub(crate) fn classifier_net(
    tasks: usize,
    dev: &Device,
) -> Result<(VarMap, TaskClassifier), NodeError> {
    let vm = VarMap::new();
    let c = TaskClassifier::new(tasks, VarBuilder::from_varmap(&vm, DType::F32, dev))
        .map_err(NodeError::compute)?;
    Ok((vm, c))
}

/// An image, its name without the extension (what draws are seeded by) and its depth map if
/// it has one (haze reads it).
pub(crate) struct Named {
    pub stem: String,
    pub image: Image,
    pub depth: Option<Vec<f32>>,
}

pub(crate) fn load_named(path: &Path) -> Result<Named, NodeError> {
    let image = mio_stdlib::image::load(path)?.image;
    let stem = path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let depth = mio_stdlib::degrade::depth_file(path, image.width, image.height)?;
    Ok(Named { stem, image, depth })
}

/// The inputs of a job that are test sets, with their folders (any depth).
pub(crate) fn testsets(jf: &JobFile) -> impl Iterator<Item = (&Input, &job::TestSet)> {
    jf.inputs.iter().filter_map(|i| match &i.job {
        Job::TestSet(t) => Some((i, t)),
        _ => None,
    })
}

/// Images side by side (heights may differ; the strip is as tall as the tallest).
pub(crate) fn hstack(imgs: &[Image]) -> Image {
    let gap = 4;
    let h = imgs.iter().map(|i| i.height).max().unwrap_or(0);
    let w = imgs.iter().map(|i| i.width).sum::<usize>() + gap * imgs.len().saturating_sub(1);
    let mut out = Image::new(w, h);
    out.data.fill(255);
    let mut x0 = 0;
    for img in imgs {
        for y in 0..img.height {
            let src = &img.data[y * img.width * 3..(y + 1) * img.width * 3];
            let d = (y * w + x0) * 3;
            out.data[d..d + img.width * 3].copy_from_slice(src);
        }
        x0 += img.width + gap;
    }
    out
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
    let mut tensors = mio_stdlib::models::checkpoint::read(&path, None, &net.device())
        .map_err(|e| NodeError::read(&path, e))?;
    let maps = tensors.remove("prompt_maps");
    net.set_weights(&tensors, &path.display().to_string())
        .map_err(|e| NodeError::read(&path, e))?;
    let (Some(maps), Some(own)) = (maps, net.maps().cloned()) else {
        return Ok(());
    };
    let info: crate::run::artifact::NetworkInfo =
        crate::run::artifact::read(&dir.join("network.json"))
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
