//! A restoration network as the engine trains and runs it: a backbone, its prompt strategy and,
//! for explicit prompts, the fixed random task maps. Saved as one safetensors file holding the
//! weights under the reference's names, the task maps as `prompt_maps` `[T, 1, S, S]`, and the
//! task names in id order in the file's metadata-free tensor `task_names` (bytes).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::promptir::PromptIr;
use super::restormer::Restormer;
use super::srresnet::SrResNet;
use super::swinir::SwinIr;
use super::uformer::Uformer;
use super::{init_by, init_weights, PromptMode};
use crate::rng::Rng;

pub use mio_catalog::config::{Arch, Spec, SrResNetConfig};

enum Body {
    SrResNet(SrResNet),
    SwinIr(SwinIr),
    Restormer(Restormer),
    Uformer(Uformer),
    // Boxed: PromptIR's fixed arrays of layers make it several times the others' size.
    PromptIr(Box<PromptIr>),
}

impl Body {
    /// The latent prompt from what the extractors read (`None` for a plain backbone).
    fn latent(&self, source: &Tensor) -> Result<Option<Tensor>> {
        match self {
            Body::SrResNet(n) => n.latent(source),
            Body::SwinIr(n) => n.latent(source),
            Body::Restormer(n) => n.latent(source),
            Body::Uformer(n) => n.latent(source),
            Body::PromptIr(_) => Ok(None),
        }
    }

    fn forward(&self, x: &Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        match self {
            Body::SrResNet(n) => n.forward(x, z),
            Body::SwinIr(n) => n.forward(x, z),
            Body::Restormer(n) => n.forward(x, z),
            Body::Uformer(n) => n.forward(x, z),
            Body::PromptIr(n) => n.forward(x),
        }
    }
}

pub struct Network {
    pub spec: Spec,
    pub varmap: VarMap,
    body: Body,
    /// Explicit prompts: one fixed map per task, `[T, 1, S, S]`, never trained.
    maps: Option<Tensor>,
}

/// The fixed random map of every task: U[0, 1) values drawn from the seed and the task's name,
/// so a task keeps its map whatever the other tasks are.
pub fn prompt_maps(seed: u64, tasks: &[String], size: usize, dev: &Device) -> Result<Tensor> {
    let mut v = Vec::with_capacity(tasks.len() * size * size);
    for t in tasks {
        let mut rng = Rng::derive(seed, &["prompt map", t]);
        v.extend((0..size * size).map(|_| rng.uniform() as f32));
    }
    Tensor::from_vec(v, (tasks.len(), 1, size, size), dev)
}

fn build_body(spec: &Spec, vb: VarBuilder) -> Result<Body> {
    Ok(match &spec.arch {
        Arch::SrResNet(cfg) => {
            Body::SrResNet(SrResNet::new(cfg.channels, cfg.blocks, spec.prompt, vb)?)
        }
        Arch::SwinIr(cfg) => Body::SwinIr(SwinIr::new(cfg, spec.prompt, vb)?),
        Arch::Restormer(cfg) => Body::Restormer(Restormer::new(cfg, spec.prompt, vb)?),
        Arch::Uformer(cfg) => Body::Uformer(Uformer::new(cfg, spec.prompt, vb)?),
        Arch::PromptIr(cfg) => {
            if spec.prompt != PromptMode::None {
                candle_core::bail!(
                    "PromptIR has prompt blocks of its own and no explicit or adaptive branch"
                );
            }
            Body::PromptIr(Box::new(PromptIr::new(cfg, vb)?))
        }
    })
}

impl Network {
    /// A network initialised from `seed` as the reference initialises it.
    pub fn new(spec: Spec, seed: u64, dev: &Device) -> Result<Network> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
        let body = build_body(&spec, vb)?;
        match &spec.arch {
            Arch::SrResNet(cfg) => init_weights(&varmap, seed, cfg.init_scale)?,
            Arch::SwinIr(_) => init_by(&varmap, seed, super::swinir::init_rule)?,
            Arch::Restormer(_) => init_by(&varmap, seed, super::restormer::init_rule)?,
            Arch::Uformer(_) => init_by(&varmap, seed, super::uformer::init_rule)?,
            Arch::PromptIr(_) => init_by(&varmap, seed, super::promptir::init_rule)?,
        }
        let maps = matches!(spec.prompt, PromptMode::Explicit { .. })
            .then(|| prompt_maps(seed, &spec.tasks, spec.map_size, dev))
            .transpose()?;
        Ok(Network {
            spec,
            varmap,
            body,
            maps,
        })
    }

    /// The same network for restoring images: its layers read the weights (shared, not
    /// copied) as plain tensors, so no operation records the graph a backward pass would need.
    /// Through the trainable variables every intermediate of a forward pass stays alive until
    /// its output is dropped, which for a transformer on a large image is many gigabytes.
    pub fn frozen(&self) -> Result<Network> {
        let dev = self.device();
        let tensors: HashMap<String, Tensor> = crate::trainer::sorted_vars(&self.varmap)
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().detach()))
            .collect();
        let body = build_body(
            &self.spec,
            VarBuilder::from_tensors(tensors, DType::F32, &dev),
        )?;
        Ok(Network {
            spec: self.spec.clone(),
            varmap: self.varmap.clone(),
            body,
            maps: self.maps.clone(),
        })
    }

    /// The same network computing in `dtype` (bf16 for mixed-precision training): its layers
    /// read each weight cast from the trained fp32 variable inside the graph, so a backward
    /// pass through it gives the fp32 variables' gradients (the master weights stay fp32, as
    /// do the optimizer's moments). The casts are taken when this is called: build it again
    /// after the variables change (once per training step; the casts are a few megabytes).
    pub fn cast(&self, dtype: DType) -> Result<Network> {
        let dev = self.device();
        let tensors: HashMap<String, Tensor> = crate::trainer::sorted_vars(&self.varmap)
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        let body = build_body(&self.spec, VarBuilder::from_tensors(tensors, dtype, &dev))?;
        Ok(Network {
            spec: self.spec.clone(),
            varmap: self.varmap.clone(),
            body,
            maps: self.maps.as_ref().map(|m| m.to_dtype(dtype)).transpose()?,
        })
    }

    pub fn device(&self) -> Device {
        self.varmap
            .all_vars()
            .first()
            .map(|v| v.device().clone())
            .unwrap_or(Device::Cpu)
    }

    /// The id of a task name.
    pub fn task_id(&self, name: &str) -> Option<usize> {
        self.spec.tasks.iter().position(|t| t == name)
    }

    /// The latent prompt of a batch: from each crop's task map (explicit), from the degraded
    /// batch itself (adaptive), none for a plain network.
    pub fn latent(&self, lq: &Tensor, ids: &Tensor) -> Result<Option<Tensor>> {
        match (self.spec.prompt, &self.maps) {
            (PromptMode::None, _) => Ok(None),
            (PromptMode::Explicit { .. }, Some(maps)) => {
                // The extractor reads each distinct task's map once (a batch repeats tasks,
                // and in early stages holds one or two), then each crop takes its task's row:
                // the same values and gradients as running it per crop, at a fraction of the cost.
                let want: Vec<u32> = ids.to_vec1()?;
                let mut unique = want.clone();
                unique.sort_unstable();
                unique.dedup();
                let pos: Vec<u32> = want
                    .iter()
                    .map(|t| unique.binary_search(t).unwrap_or(0) as u32)
                    .collect();
                let dev = maps.device();
                let picked = maps.index_select(&Tensor::new(unique.as_slice(), dev)?, 0)?;
                let z = self.body.latent(&picked)?;
                z.map(|z| z.index_select(&Tensor::new(pos.as_slice(), dev)?, 0))
                    .transpose()
            }
            (PromptMode::Adaptive { .. }, _) => self.body.latent(lq),
            (PromptMode::Explicit { .. }, None) => {
                candle_core::bail!("an explicit-prompt network without task maps")
            }
        }
    }

    /// An adaptive network's latent prompt for `x` (None for the other kinds).
    pub fn adaptive_latent(&self, x: &Tensor) -> Result<Option<Tensor>> {
        match self.spec.prompt {
            PromptMode::Adaptive { .. } => self.body.latent(x),
            _ => Ok(None),
        }
    }

    /// The latent prompt of one task's map, `[1, dim]` (`[1, k * dim]` for the k extractors of
    /// Restormer and Uformer; explicit prompts only).
    pub fn task_latent(&self, id: usize) -> Result<Tensor> {
        match &self.maps {
            Some(maps) => self
                .body
                .latent(&maps.narrow(0, id, 1)?)?
                .ok_or_else(|| candle_core::Error::Msg("no prompt branch".into())),
            None => candle_core::bail!("only explicit-prompt networks have task prompts"),
        }
    }

    /// Restores with a given latent prompt (`None` for plain and adaptive networks, whose
    /// prompt comes from the input).
    pub fn forward_latent(&self, lq: &Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        match (self.spec.prompt, z) {
            (PromptMode::Adaptive { .. }, None) => {
                let z = self.body.latent(lq)?;
                self.body.forward(lq, z.as_ref())
            }
            _ => self.body.forward(lq, z),
        }
    }

    /// Restores a batch whose crops have the task ids `ids` (u32 `[B]`).
    pub fn forward(&self, lq: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let z = self.latent(lq, ids)?;
        self.body.forward(lq, z.as_ref())
    }

    /// [`Network::forward`] computing in `dtype` (a training step under `precision = bf16`):
    /// the f32 batch is cast, the network runs through [`Network::cast`], and the output comes
    /// back as f32 for the loss; the gradients reach the f32 variables. f32 is `forward`.
    pub fn forward_in(&self, dtype: DType, lq: &Tensor, ids: &Tensor) -> Result<Tensor> {
        if dtype == DType::F32 {
            return self.forward(lq, ids);
        }
        self.cast(dtype)?
            .forward(&lq.to_dtype(dtype)?, ids)?
            .to_dtype(DType::F32)
    }

    /// Multiple the input's sides must have at test time (the caller pads).
    pub fn side_multiple(&self) -> usize {
        self.spec.arch.side_multiple()
    }

    /// Writes the weights (and task maps) atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut t: HashMap<String, Tensor> = crate::trainer::sorted_vars(&self.varmap)
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        if let Some(m) = &self.maps {
            t.insert("prompt_maps".into(), m.clone());
        }
        crate::fsio::atomic(path, |tmp| candle_core::safetensors::save(&t, tmp))
            .map_err(|e| candle_core::Error::Msg(format!("cannot write {}: {e}", path.display())))
    }

    /// What the network is, for messages: `srresnet(channels = 32, blocks = 4, prompt =
    /// explicit(dim = 64))`.
    pub fn describe(&self) -> String {
        let prompt = match self.spec.prompt {
            PromptMode::None => String::new(),
            PromptMode::Explicit { dim } => format!(", prompt = explicit(dim = {dim})"),
            PromptMode::Adaptive { dim } => format!(", prompt = adaptive(dim = {dim})"),
        };
        match &self.spec.arch {
            Arch::SrResNet(c) => format!(
                "srresnet(channels = {}, blocks = {}{prompt})",
                c.channels, c.blocks
            ),
            Arch::SwinIr(c) => format!("swinir(embed = {}{prompt}, ...)", c.embed),
            Arch::Restormer(c) => format!("restormer(dim = {}{prompt}, ...)", c.dim),
            Arch::Uformer(c) => format!("uformer(embed = {}{prompt}, ...)", c.embed),
            Arch::PromptIr(c) => format!("promptir(dim = {}, ...)", c.body.dim),
        }
    }

    /// Sets the weights from named tensors (a saved network, a checkpoint's weights or a
    /// reference checkpoint); every variable must be present with its shape, and nothing else
    /// may be there: a mismatch lists every difference. A `prompt_maps` tensor replaces the
    /// drawn task maps (as many as the network has tasks).
    pub fn set_weights(&mut self, tensors: &HashMap<String, Tensor>, from: &str) -> Result<()> {
        let vars = crate::trainer::sorted_vars(&self.varmap);
        let wanted: std::collections::BTreeMap<String, Vec<usize>> = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.dims().to_vec()))
            .collect();
        if let Some(m) = super::checkpoint::mismatch(from, &wanted, tensors, &self.describe()) {
            super::fail!("{m}");
        }
        for (name, var) in vars {
            var.set(
                &tensors[&name]
                    .to_device(var.device())?
                    .to_dtype(var.dtype())?,
            )?;
        }
        if let Some(m) = tensors.get("prompt_maps") {
            if self.maps.is_some() {
                self.set_maps(m, from)?;
            }
        }
        Ok(())
    }

    /// Replaces the task maps (explicit prompts): `[T, 1, S, S]`, one per task in id order.
    pub fn set_maps(&mut self, maps: &Tensor, from: &str) -> Result<()> {
        if self.maps.is_none() {
            super::fail!("{from}: task maps are for explicit prompts; this network has none");
        }
        if maps.dims().first() != Some(&self.spec.tasks.len()) || maps.rank() != 4 {
            super::fail!(
                "{from}: holds {:?} task maps of shape {:?}, the network has {} tasks ({})",
                maps.dims().first(),
                maps.dims(),
                self.spec.tasks.len(),
                self.spec.tasks.join(", ")
            );
        }
        self.maps = Some(maps.to_device(&self.device())?.to_dtype(DType::F32)?);
        Ok(())
    }

    /// The task maps (explicit prompts), `[T, 1, S, S]` in id order.
    pub fn maps(&self) -> Option<&Tensor> {
        self.maps.as_ref()
    }

    /// Loads weights saved by [`Network::save`] (or any safetensors file with the names).
    pub fn load(&mut self, path: &Path) -> Result<()> {
        self.load_key(path, None)
    }

    /// Loads a weights file: safetensors, or a PyTorch checkpoint's `key` (`params` when
    /// `None`; BasicSR's EMA weights are `params_ema`).
    pub fn load_key(&mut self, path: &Path, key: Option<&str>) -> Result<()> {
        let t = super::checkpoint::read(path, key, &self.device())?;
        let from = match key {
            Some(k) if path.extension().is_some_and(|e| e != "safetensors") => {
                format!("{} (`{k}`)", path.display())
            }
            _ => path.display().to_string(),
        };
        self.set_weights(&t, &from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(prompt: PromptMode) -> Spec {
        Spec {
            arch: Arch::SrResNet(SrResNetConfig {
                channels: 8,
                blocks: 2,
                init_scale: 0.1,
            }),
            prompt,
            map_size: 16,
            tasks: vec!["noise".into(), "rain".into(), "sr".into()],
        }
    }

    #[test]
    fn save_and_load_round_trip_with_task_maps() {
        let dev = Device::Cpu;
        let a = Network::new(spec(PromptMode::Explicit { dim: 8 }), 1, &dev).unwrap();
        let mut b = Network::new(spec(PromptMode::Explicit { dim: 8 }), 2, &dev).unwrap();
        let x = Tensor::rand(0f32, 1f32, (2, 3, 12, 12), &dev).unwrap();
        let ids = Tensor::new(&[0u32, 2], &dev).unwrap();
        let ya = a.forward(&x, &ids).unwrap();
        let yb = b.forward(&x, &ids).unwrap();
        assert!(
            ya.sub(&yb)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 1e-4
        );
        let dir = std::env::temp_dir().join(format!("mio-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("net.safetensors");
        a.save(&p).unwrap();
        b.load(&p).unwrap();
        let yb = b.forward(&x, &ids).unwrap();
        let d = ya.sub(&yb).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn task_maps_depend_on_the_seed_and_the_task_name_only() {
        let dev = Device::Cpu;
        let m1 = prompt_maps(3, &["noise".into(), "rain".into()], 8, &dev).unwrap();
        let m2 = prompt_maps(3, &["rain".into()], 8, &dev).unwrap();
        let m3 = prompt_maps(4, &["rain".into()], 8, &dev).unwrap();
        let rain: Vec<f32> = m1.get(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let again: Vec<f32> = m2.get(0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let other: Vec<f32> = m3.get(0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(rain, again);
        assert_ne!(rain, other);
        assert!(rain.iter().all(|v| (0.0..1.0).contains(v)));
    }

    #[test]
    fn explicit_latents_of_distinct_tasks_equal_the_per_crop_computation() {
        let dev = Device::Cpu;
        let net = Network::new(spec(PromptMode::Explicit { dim: 8 }), 5, &dev).unwrap();
        let ids = Tensor::new(&[2u32, 0, 2, 1, 0], &dev).unwrap();
        let x = Tensor::zeros((5, 3, 8, 8), DType::F32, &dev).unwrap();
        let fast = net.latent(&x, &ids).unwrap().unwrap();
        let maps = net.maps.as_ref().unwrap().index_select(&ids, 0).unwrap();
        let slow = net.body.latent(&maps).unwrap().unwrap();
        let d = (fast - slow).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
    }

    #[test]
    fn a_missing_weight_is_named() {
        let dev = Device::Cpu;
        let mut a = Network::new(spec(PromptMode::None), 1, &dev).unwrap();
        let err = a.set_weights(&HashMap::new(), "x.safetensors").unwrap_err();
        assert!(err.to_string().contains("body.0.conv1.bias"), "{err}");
        assert!(
            err.to_string()
                .contains("14 tensor(s) the network has are not in the file"),
            "{err}"
        );
    }
}
