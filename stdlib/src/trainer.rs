//! One training stage with resumable checkpoints. Everything random in a step derives from
//! (seed, stage, step) (the batch, each crop's task and degradation), so a checkpoint needs no
//! generator state: weights, their EMA, Adam's moments and the step counters are enough to
//! continue as if never interrupted. Checkpoints are single safetensors files written through
//! a temporary file and a rename, so a kill at any moment leaves the previous one intact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::VarMap;

use crate::data::{TaskSpec, TrainSet};
use crate::kernels::precision::{self, Precision};
use crate::loader::{ahead_for, Draw, Loader};
use crate::train::{clip_grad_norm, Adam, AdamConfig, Ema, Loss, Schedule};

/// How a stage trains.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageConfig {
    pub seed: u64,
    /// Index of the stage (0-based): part of every draw, and of the checkpoint's name.
    pub stage: usize,
    pub iters: u64,
    pub batch: usize,
    pub lr: f64,
    pub adam: AdamConfig,
    pub schedule: Schedule,
    pub loss: Loss,
    /// 0 turns the EMA off.
    pub ema: f64,
    /// 0 turns clipping off.
    pub grad_clip: f64,
    pub checkpoint_every: u64,
    /// The GPU's arithmetic (`None`: tf32 on a GPU, fp32 on the CPU). Left out of the job file
    /// when automatic, so the runs written before it existed keep their keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
}

/// What the network is asked at each step: the restored batch for the degraded batch and the
/// crops' task ids (a closure, so any backbone and prompt strategy can be trained).
pub type Forward<'a> = dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a;

/// Why a stage stopped early.
#[derive(Debug)]
pub enum StageError {
    /// The loss became NaN or infinite at `step`; the last good checkpoint is kept.
    Diverged {
        step: u64,
        last_checkpoint: Option<PathBuf>,
    },
    Candle(candle_core::Error),
    Io(PathBuf, std::io::Error),
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageError::Diverged {
                step,
                last_checkpoint,
            } => {
                write!(f, "the loss became NaN or infinite at step {step}")?;
                match last_checkpoint {
                    Some(p) => write!(f, "; the last good checkpoint is {}", p.display()),
                    None => write!(f, "; no checkpoint was written yet"),
                }?;
                write!(f, " (lower the learning rate or set `grad_clip`)")
            }
            StageError::Candle(e) => write!(f, "{e}"),
            StageError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl From<candle_core::Error> for StageError {
    fn from(e: candle_core::Error) -> Self {
        StageError::Candle(e)
    }
}

/// The losses of the steps run, and where the last checkpoint is.
#[derive(Debug)]
pub struct StageOutcome {
    pub losses: Vec<(u64, f32)>,
    pub checkpoint: Option<PathBuf>,
    pub completed: bool,
}

/// A stage's checkpoint file in `dir`.
pub fn checkpoint_path(dir: &Path, stage: usize) -> PathBuf {
    dir.join(format!("stage{}.safetensors", stage + 1))
}

/// Runs (or resumes) a stage: from its checkpoint in `dir` if one exists, until `iters`; or
/// until `stop_after` steps were run in this call (to simulate a kill in tests: nothing is
/// saved); or until `stop` is set (Ctrl-C: a checkpoint of the steps done is saved first).
#[allow(clippy::too_many_arguments)]
pub fn run_stage(
    varmap: &VarMap,
    forward: &Forward,
    set: &TrainSet,
    tasks: &[TaskSpec],
    cfg: &StageConfig,
    dir: &Path,
    stop_after: Option<u64>,
    stop: Option<&AtomicBool>,
    mut progress: impl FnMut(u64, f32, f64),
) -> std::result::Result<StageOutcome, StageError> {
    let vars = sorted_vars(varmap);
    let mut adam = Adam::new(vars.iter().map(|(_, v)| v.clone()).collect(), cfg.adam)?;
    let mut ema = (cfg.ema > 0.0)
        .then(|| Ema::new(&adam.vars, cfg.ema))
        .transpose()?;
    let path = checkpoint_path(dir, cfg.stage);
    let mut start = 0;
    if path.exists() {
        start = load_checkpoint(&path, &vars, &mut adam, ema.as_mut())?;
    }
    let dev = vars
        .first()
        .map(|(_, v)| v.device().clone())
        .unwrap_or(Device::Cpu);
    let _precision = precision::Scoped::new(precision::resolve(cfg.precision, &dev));
    let mut outcome = StageOutcome {
        losses: vec![],
        checkpoint: path.exists().then(|| path.clone()),
        completed: false,
    };
    let draw = Draw {
        set,
        tasks,
        seed: cfg.seed,
        stage: cfg.stage,
        size: cfg.batch,
    };
    std::thread::scope(|scope| {
        let mut loader = Loader::new(scope, draw, start..cfg.iters, ahead_for(&dev));
        for step in start..cfg.iters {
            if stop_after.is_some_and(|n| step - start >= n) {
                return Ok(outcome);
            }
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                if step > start {
                    save_checkpoint(&path, &vars, &adam, ema.as_ref(), step)?;
                    outcome.checkpoint = Some(path.clone());
                }
                return Ok(outcome);
            }
            let (lq, gt, ids) = loader.next(step)?;
            let (lq, gt, ids) = (
                lq.to_device(&dev)?,
                gt.to_device(&dev)?,
                ids.to_device(&dev)?,
            );
            let out = forward(&lq, &ids)?;
            let loss = cfg.loss.compute(&out, &gt)?;
            let value = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            if !value.is_finite() {
                return Err(StageError::Diverged {
                    step,
                    last_checkpoint: outcome.checkpoint.clone(),
                });
            }
            let mut grads = loss.backward()?;
            if cfg.grad_clip > 0.0 {
                clip_grad_norm(&mut grads, &adam.vars, cfg.grad_clip)?;
            }
            let lr = cfg.schedule.lr(cfg.lr, step, cfg.iters);
            adam.step(&grads, lr)?;
            drop(grads);
            if let Some(e) = ema.as_mut() {
                e.update(&adam.vars)?;
            }
            outcome.losses.push((step, value));
            progress(step, value, lr);
            let done = step + 1;
            if done % cfg.checkpoint_every.max(1) == 0 || done == cfg.iters {
                save_checkpoint(&path, &vars, &adam, ema.as_ref(), done)?;
                outcome.checkpoint = Some(path.clone());
            }
        }
        outcome.completed = true;
        Ok(outcome)
    })
}

/// The variables by name, in name order (the checkpoint's and the optimizer's order).
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("the var map is not poisoned");
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Writes a checkpoint (weights, Adam's moments, the EMA, the steps done) atomically.
pub fn save_checkpoint(
    path: &Path,
    vars: &[(String, Var)],
    adam: &Adam,
    ema: Option<&Ema>,
    done: u64,
) -> std::result::Result<(), StageError> {
    let mut t: HashMap<String, Tensor> = HashMap::new();
    for (i, (name, var)) in vars.iter().enumerate() {
        t.insert(format!("weights.{name}"), var.as_tensor().clone());
        t.insert(format!("adam_m.{name}"), adam.m[i].clone());
        t.insert(format!("adam_v.{name}"), adam.v[i].clone());
        if let Some(e) = ema {
            t.insert(format!("ema.{name}"), e.shadow[i].clone());
        }
    }
    t.insert(
        "meta.steps_done".into(),
        Tensor::new(&[done as f64, adam.step as f64], &Device::Cpu)?,
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| StageError::Io(dir.to_path_buf(), e))?;
    }
    crate::fsio::atomic(path, |tmp| candle_core::safetensors::save(&t, tmp))
        .map_err(|e| StageError::Io(path.to_path_buf(), e))
}

/// How many steps a checkpoint file records. The file is mapped and its header checked
/// against its length (as the load that follows would), without copying the tensors, so a
/// truncated or foreign file is an error here, before training relies on it.
pub fn checkpoint_steps(path: &Path) -> std::result::Result<u64, String> {
    // SAFETY: the file is only read, and no other process writes a node's working folder
    // while this one holds the run folder's lock.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }
        .map_err(|e| e.to_string())?;
    let meta = st
        .load("meta.steps_done", &Device::Cpu)
        .map_err(|_| "no `meta.steps_done`: not a mio checkpoint".to_string())?;
    let v: Vec<f64> = meta.to_vec1().map_err(|e| e.to_string())?;
    v.first()
        .map(|&s| s as u64)
        .ok_or_else(|| "an empty `meta.steps_done`".to_string())
}

/// Restores a checkpoint; returns the number of steps it had done.
pub fn load_checkpoint(
    path: &Path,
    vars: &[(String, Var)],
    adam: &mut Adam,
    ema: Option<&mut Ema>,
) -> std::result::Result<u64, StageError> {
    let dev = vars
        .first()
        .map(|(_, v)| v.device().clone())
        .unwrap_or(Device::Cpu);
    let t = candle_core::safetensors::load(path, &dev)?;
    let get = |k: &str| -> Result<&Tensor> {
        t.get(k).ok_or_else(|| {
            candle_core::Error::Msg(format!("{}: no `{k}` in the checkpoint", path.display()))
        })
    };
    for (i, (name, var)) in vars.iter().enumerate() {
        var.set(get(&format!("weights.{name}"))?)?;
        adam.m[i] = get(&format!("adam_m.{name}"))?.clone();
        adam.v[i] = get(&format!("adam_v.{name}"))?.clone();
    }
    if let Some(e) = ema {
        for (i, (name, _)) in vars.iter().enumerate() {
            e.shadow[i] = get(&format!("ema.{name}"))?.clone();
        }
    }
    let meta: Vec<f64> = get("meta.steps_done")?.to_vec1()?;
    adam.step = meta[1] as u64;
    Ok(meta[0] as u64)
}

/// Runs stages in order, each on its own tasks and iterations (sequential learning: stage k
/// trains on the first k tasks; mixed learning is one stage). Weights carry over from stage to
/// stage; each stage starts a fresh optimizer and restarts its learning-rate schedule; a stage
/// already finished (its checkpoint says so) is reloaded, not rerun.
#[allow(clippy::too_many_arguments)]
pub fn run_stages(
    varmap: &VarMap,
    forward: &Forward,
    set: &TrainSet,
    stages: &[(Vec<TaskSpec>, u64)],
    base: &StageConfig,
    dir: &Path,
    mut progress: impl FnMut(usize, u64, f32, f64),
) -> std::result::Result<Vec<StageOutcome>, StageError> {
    let mut out = vec![];
    for (k, (tasks, iters)) in stages.iter().enumerate() {
        let cfg = StageConfig {
            stage: k,
            iters: *iters,
            ..base.clone()
        };
        out.push(run_stage(
            varmap,
            forward,
            set,
            tasks,
            &cfg,
            dir,
            None,
            None,
            |s, l, lr| progress(k, s, l, lr),
        )?);
    }
    Ok(out)
}
