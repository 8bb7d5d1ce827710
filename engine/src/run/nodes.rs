//! The work of each kind of node: synthesise a test set, train a stage, train the task
//! classifier, evaluate, sweep, report. Each writes into the folder it is given (the node's
//! partial folder, renamed by the runner when the node returns).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use mio_stdlib::data::{Augment, TaskSpec, TrainSet};
use mio_stdlib::image::Image;
use mio_stdlib::models::classifier::TaskClassifier;
use mio_stdlib::models::network::{Arch, Network, Spec};
use mio_stdlib::models::restormer::RestormerConfig;
use mio_stdlib::models::swinir::SwinConfig;
use mio_stdlib::models::PromptMode;
use mio_stdlib::train::{Adam, AdamConfig, Loss, Schedule};
use mio_stdlib::trainer::{run_stage, StageConfig, StageError};
use petgraph::graph::NodeIndex;
use serde_json::json;

use super::{RunError, Runner};
use crate::ir::{self, Value};
use crate::plan::Work;
use crate::restore::{restore, task_id, to_tensor};

pub(crate) fn fail(node: &str, message: impl std::fmt::Display) -> RunError {
    RunError::Node {
        node: node.to_string(),
        message: message.to_string(),
    }
}

/// The device every workflow asks for (`auto`: CUDA when built with it and present).
pub(crate) fn device(wfs: &[ir::Workflow]) -> Result<Device, RunError> {
    let want = wfs
        .first()
        .and_then(|w| w.setting("device"))
        .map(|v| match v {
            Value::Str(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| "auto".into());
    device_named(&want).map_err(|e| fail("device", e))
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

fn int(c: &ir::Call, name: &str) -> usize {
    c.arg(name).and_then(Value::as_int).unwrap_or(0).max(0) as usize
}

fn float(c: &ir::Call, name: &str) -> f64 {
    c.arg(name).and_then(Value::as_f64).unwrap_or(0.0)
}

fn ints(v: Option<&Value>) -> Vec<usize> {
    v.and_then(Value::as_list)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_int)
                .map(|i| i as usize)
                .collect()
        })
        .unwrap_or_default()
}

fn setting_f64(settings: &[(String, Value)], name: &str) -> f64 {
    settings
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_f64())
        .unwrap_or(0.0)
}

fn seed(wf: &ir::Workflow) -> u64 {
    wf.setting("seed").and_then(Value::as_int).unwrap_or(0) as u64
}

/// The tasks a model is trained on, in id order (the last stage holds them all).
fn trained_tasks<'a>(wf: &'a ir::Workflow, model: &str) -> &'a [ir::Task] {
    wf.train_of(model)
        .and_then(|t| t.stages.last())
        .map(|s| s.tasks.as_slice())
        .unwrap_or(&[])
}

fn task_spec(task: &ir::Task, id: usize) -> Result<TaskSpec, String> {
    Ok(TaskSpec {
        id,
        name: task.name.clone(),
        degradation: crate::degradation(task)?,
        text: task.degradation.to_string(),
    })
}

/// The network a model declaration describes.
pub(crate) fn network_spec(wf: &ir::Workflow, model: &str) -> Result<Spec, String> {
    let m = wf
        .model(model)
        .ok_or_else(|| format!("no model `{model}`"))?;
    let tasks = trained_tasks(wf, model)
        .iter()
        .map(|t| t.name.clone())
        .collect();
    spec_from_call(&m.backbone, tasks)
}

/// The network a checked backbone call describes, for tasks named in id order.
pub fn spec_from_call(b: &ir::Call, tasks: Vec<String>) -> Result<Spec, String> {
    let arch = match b.name.as_str() {
        "srresnet" => Arch::SrResNet {
            channels: int(b, "channels"),
            blocks: int(b, "blocks"),
        },
        "swinir" => Arch::SwinIr(SwinConfig {
            embed: int(b, "embed"),
            depths: ints(b.arg("depths")),
            heads: int(b, "heads"),
            window: int(b, "window"),
            mlp_ratio: float(b, "mlp_ratio"),
        }),
        "restormer" => {
            let four = |name: &str| -> Result<[usize; 4], String> {
                ints(b.arg(name))
                    .try_into()
                    .map_err(|_| format!("restormer's `{name}` needs four entries"))
            };
            Arch::Restormer(RestormerConfig {
                dim: int(b, "dim"),
                blocks: four("blocks")?,
                refinement: int(b, "refinement"),
                heads: four("heads")?,
                ffn_expansion: float(b, "ffn_expansion"),
                bias: matches!(b.arg("bias"), Some(Value::Bool(true))),
            })
        }
        other => return Err(format!("no backbone called `{other}`")),
    };
    let prompt_call = b.arg("prompt").and_then(Value::as_call);
    let (prompt, map_size) = match prompt_call {
        Some(c) if c.name == "explicit" => (
            PromptMode::Explicit { dim: int(c, "dim") },
            int(c, "map_size"),
        ),
        Some(c) if c.name == "adaptive" => (PromptMode::Adaptive { dim: int(c, "dim") }, 0),
        _ => (PromptMode::None, 0),
    };
    Ok(Spec {
        arch,
        prompt,
        map_size,
        tasks,
    })
}

impl Runner<'_> {
    fn name(&self, i: NodeIndex) -> String {
        self.plan.graph[i].name.clone()
    }

    /// The finished folder of the dependency of `i` that satisfies `pick`.
    fn dep_dir(&self, i: NodeIndex, pick: impl Fn(&Work) -> bool) -> Option<PathBuf> {
        self.plan
            .deps(i)
            .into_iter()
            .find(|d| pick(&self.plan.graph[*d].work))
            .map(|d| self.dir(d))
    }

    fn train_set(&self, wf: &ir::Workflow, data: &str) -> Result<Arc<TrainSet>, String> {
        let d = wf.data(data).ok_or_else(|| format!("no data `{data}`"))?;
        if d.source.name != "images" {
            return Err(format!(
                "`{data}` is `{}`: training needs `images(...)`",
                d.source.name
            ));
        }
        let key = d.source.to_string();
        if let Some(s) = self.train_sets.lock().expect("not poisoned").get(&key) {
            return Ok(s.clone());
        }
        let path = match d.source.arg("path") {
            Some(Value::Str(p)) => self.base.join(p),
            _ => return Err("`images` needs a path".into()),
        };
        let augment = d
            .source
            .arg("augment")
            .and_then(Value::as_list)
            .unwrap_or(&[]);
        let has = |w: &str| augment.iter().any(|v| v.as_word() == Some(w));
        let (set, notes) = TrainSet::load(
            &path,
            int(&d.source, "patch"),
            Augment {
                flip: has("flip"),
                rot90: has("rot90"),
            },
            int(&d.source, "limit"),
        )
        .map_err(|e| e.to_string())?;
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

pub(crate) fn run_node(r: &Runner, i: NodeIndex, dir: &Path) -> Result<(), RunError> {
    let work = r.plan.graph[i].work.clone();
    let name = r.name(i);
    match work {
        Work::TestSet {
            workflow,
            data,
            task,
        } => test_set(r, workflow, &data, &task, dir).map_err(|e| fail(&name, e)),
        Work::Train {
            workflow,
            model,
            stage,
        } => train(r, i, workflow, &model, stage, dir),
        Work::Classifier { workflow, model } => classifier(r, i, workflow, &model, dir),
        Work::Eval { workflow, index } => eval(r, i, workflow, index, dir),
        Work::Sweep { workflow, index } => sweep(r, i, workflow, index, dir),
        Work::Report { .. } => super::report::write(r, i, dir).map_err(|e| fail(&name, e)),
    }
}

/// The clean images of an `images(...)` source, at most `limit` (0: all).
fn clean_images(r: &Runner, wf: &ir::Workflow, data: &str) -> Result<Vec<PathBuf>, String> {
    let d = wf.data(data).ok_or_else(|| format!("no data `{data}`"))?;
    let path = match d.source.arg("path") {
        Some(Value::Str(p)) => r.base.join(p),
        _ => return Err(format!("`{data}` has no image folder")),
    };
    let mut files = mio_stdlib::image::list_folder(&path).map_err(|e| e.to_string())?;
    let limit = int(&d.source, "limit");
    if limit > 0 {
        files.truncate(limit);
    }
    if files.is_empty() {
        return Err(format!("{}: no PNG or JPEG images", path.display()));
    }
    Ok(files)
}

fn test_set(r: &Runner, w: usize, data: &str, task: &ir::Task, dir: &Path) -> Result<(), String> {
    let wf = &r.wfs[w];
    let clean = clean_images(r, wf, data)?;
    let spec = task_spec(task, 0)?;
    let pairs = mio_stdlib::data::build_test_set(&clean, &spec, seed(wf), dir)
        .map_err(|e| e.to_string())?;
    let list: Vec<serde_json::Value> = pairs
        .iter()
        .map(|p| {
            json!({
                "clean": super::store::path_to_json(&p.clean),
                "degraded": p.degraded.file_name().map(|n| super::store::path_to_json(Path::new(n))),
                "params": p.params.iter().map(|(n, v)| (n.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    write_json(&dir.join("pairs.json"), &json!(list))
}

pub(crate) fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    write_atomic(path, text.as_bytes())
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    mio_stdlib::data::write_atomic(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn optimizer(t: &ir::Train) -> (f64, AdamConfig) {
    let c = t.setting("optimizer").and_then(Value::as_call);
    let get = |n: &str| c.and_then(|c| c.arg(n)).and_then(Value::as_f64);
    let betas = match c.and_then(|c| c.arg("betas")) {
        Some(Value::Tuple(v)) if v.len() == 2 => {
            (v[0].as_f64().unwrap_or(0.9), v[1].as_f64().unwrap_or(0.999))
        }
        _ => (0.9, 0.99),
    };
    (
        get("lr").unwrap_or(2e-4),
        AdamConfig {
            betas,
            eps: get("eps").unwrap_or(1e-8),
            weight_decay: get("weight_decay").unwrap_or(0.0),
            decoupled: c.map(|c| c.name == "adamw").unwrap_or(false),
        },
    )
}

fn schedule(t: &ir::Train) -> Schedule {
    match t.setting("schedule").and_then(Value::as_call) {
        Some(c) if c.name == "constant" => Schedule::Constant,
        Some(c) if c.name == "step" => Schedule::Step {
            milestones: ints(c.arg("milestones"))
                .into_iter()
                .map(|m| m as u64)
                .collect(),
            gamma: float(c, "gamma"),
        },
        Some(c) => Schedule::CosineRestart {
            min_lr: float(c, "min_lr"),
            periods: ints(c.arg("periods"))
                .into_iter()
                .map(|m| m as u64)
                .collect(),
        },
        None => Schedule::CosineRestart {
            min_lr: 1e-7,
            periods: vec![],
        },
    }
}

fn loss(t: &ir::Train) -> Loss {
    match t.setting("loss").and_then(Value::as_call) {
        Some(c) if c.name == "l2" => Loss::L2,
        Some(c) if c.name == "charbonnier" => Loss::Charbonnier {
            eps: float(c, "eps"),
        },
        _ => Loss::L1,
    }
}

fn train(
    r: &Runner,
    i: NodeIndex,
    w: usize,
    model: &str,
    stage: usize,
    dir: &Path,
) -> Result<(), RunError> {
    let name = r.name(i);
    let wf = &r.wfs[w];
    let t = wf
        .train_of(model)
        .ok_or_else(|| fail(&name, "no training"))?;
    let spec = network_spec(wf, model).map_err(|e| fail(&name, e))?;
    let mut net = Network::new(spec, seed(wf), &r.device).map_err(|e| fail(&name, e))?;
    if stage > 0 {
        let prev = r
            .dep_dir(i, |w| matches!(w, Work::Train { .. }))
            .ok_or_else(|| fail(&name, "the previous stage is missing"))?;
        net.load(&prev.join("weights.safetensors"))
            .map_err(|e| fail(&name, e))?;
    }
    let set = r.train_set(wf, &t.data).map_err(|e| fail(&name, e))?;
    let trained = trained_tasks(wf, model);
    let tasks: Vec<TaskSpec> = t.stages[stage]
        .tasks
        .iter()
        .map(|x| task_spec(x, task_id(trained, x).unwrap_or(0)))
        .collect::<Result<_, _>>()
        .map_err(|e| fail(&name, e))?;
    let data = wf.data(&t.data).expect("checked");
    let (lr, adam) = optimizer(t);
    let cfg = StageConfig {
        seed: seed(wf),
        stage,
        iters: t.stages[stage].iters,
        batch: int(&data.source, "batch").max(1),
        lr,
        adam,
        schedule: schedule(t),
        loss: loss(t),
        ema: setting_f64(&t.settings, "ema"),
        grad_clip: setting_f64(&t.settings, "grad_clip"),
        checkpoint_every: setting_f64(&t.settings, "checkpoint_every").max(1.0) as u64,
    };
    // Refuse a batch whose step would not fit before it is killed mid-step.
    super::memory::check(&net, cfg.batch, int(&data.source, "patch").max(1))
        .map_err(|e| fail(&name, e))?;
    let ckpt = mio_stdlib::trainer::checkpoint_path(dir, stage);
    let done = resumable_steps(r, &name, &ckpt);
    let log_path = dir.join("losses.jsonl");
    let mut log = open_log(&log_path, done).map_err(|e| RunError::Io(log_path.clone(), e))?;
    let started = Instant::now();
    let mut first: Option<u64> = None;
    let stop = r.options.stop.clone();
    let forward = |lq: &Tensor, ids: &Tensor| net.forward(lq, ids);
    let outcome = run_stage(
        &net.varmap,
        &forward,
        &set,
        &tasks,
        &cfg,
        dir,
        None,
        Some(&stop),
        |step, value, lr| {
            let f = *first.get_or_insert(step);
            let rate = (step + 1 - f) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            r.progress().step(step, cfg.iters, value, lr, rate);
            let _ = writeln!(log, "{{\"step\": {step}, \"loss\": {value}, \"lr\": {lr}}}");
        },
    );
    let outcome = match outcome {
        Ok(o) => o,
        Err(e @ StageError::Diverged { .. }) => return Err(fail(&name, e)),
        Err(e) => return Err(fail(&name, e)),
    };
    if !outcome.completed {
        return Err(RunError::Interrupted { node: name });
    }
    // The stage's loss curve beside its log, for a look without the report.
    let losses = super::report::read_losses(&log_path);
    if let Some(w) = suspicious(&losses, lr) {
        r.progress().note(&format!("warning: {name}: {w}"));
    }
    super::png::line_chart_png(
        &dir.join("loss.png"),
        &format!("{name}: training loss"),
        ("iteration", "loss (log scale)"),
        &[(model.to_string(), super::report::smooth(&losses))],
        true,
    )
    .map_err(|e| RunError::Io(dir.join("loss.png"), e))?;
    net.save(&dir.join("weights.safetensors"))
        .map_err(|e| fail(&name, e))?;
    let meta = json!({
        "backbone": wf.model(model).map(|m| m.backbone.to_string()),
        "tasks": trained.iter().map(|t| json!({"name": t.name, "degradation": t.degradation.name})).collect::<Vec<_>>(),
    });
    write_json(&dir.join("network.json"), &meta).map_err(|e| fail(&name, e))?;
    if cfg.ema > 0.0 {
        // The model evaluated is the EMA of the weights, as the reference evaluates.
        let t = candle_core::safetensors::load(&ckpt, &Device::Cpu).map_err(|e| fail(&name, e))?;
        let ema: std::collections::HashMap<String, Tensor> = t
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("ema.").map(|n| (n.to_string(), v.clone())))
            .collect();
        let mut m =
            Network::new(net.spec.clone(), seed(wf), &r.device).map_err(|e| fail(&name, e))?;
        m.set_weights(&ema, "the EMA weights")
            .map_err(|e| fail(&name, e))?;
        m.save(&dir.join("model.safetensors"))
            .map_err(|e| fail(&name, e))?;
    }
    let _ = std::fs::remove_file(&ckpt);
    Ok(())
}

/// The steps a node's checkpoint in its working folder has done (0 without one). A checkpoint
/// that cannot be read (damaged by a full disk, say) is moved out of the folder, beside it,
/// with a warning, and the work starts over rather than failing on every rerun.
fn resumable_steps(r: &Runner, node: &str, ckpt: &Path) -> u64 {
    if !ckpt.exists() {
        return 0;
    }
    match mio_stdlib::trainer::checkpoint_steps(ckpt) {
        Ok(n) => n,
        Err(e) => {
            let folder = ckpt.parent().unwrap_or(Path::new("."));
            let mut aside = folder.as_os_str().to_os_string();
            aside.push(format!(
                ".{}.damaged",
                ckpt.file_name().unwrap_or_default().to_string_lossy()
            ));
            let aside = PathBuf::from(aside);
            let moved = std::fs::rename(ckpt, &aside).is_ok();
            r.progress().note(&format!(
                "warning: {node}: the checkpoint {} cannot be read ({e}); {}starting this step over",
                ckpt.display(),
                if moved {
                    format!("moved to {}; ", aside.display())
                } else {
                    String::new()
                }
            ));
            if !moved {
                let _ = std::fs::remove_file(ckpt);
            }
            0
        }
    }
}

/// Opens a node's loss log for appending, first cut to the steps its checkpoint has done, so a
/// resumed node logs each step once (a kill loses the steps after the checkpoint, which run
/// again) and a line torn by a full disk is dropped.
fn open_log(path: &Path, done: u64) -> Result<std::fs::File, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut kept = String::new();
    let mut next = 0u64;
    for line in text.lines() {
        let step = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|j| j["step"].as_u64());
        if let Some(s) = step {
            if s == next && s < done {
                kept.push_str(line);
                kept.push('\n');
                next += 1;
            }
        }
    }
    if kept != text {
        write_atomic(path, kept.as_bytes())?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| e.to_string())
}

/// A warning when a training loss ended far above where it started (a learning rate too high,
/// say): the run goes on, but its numbers deserve a look.
pub(crate) fn suspicious(losses: &[(u64, f64)], lr: f64) -> Option<String> {
    if losses.len() < 4 {
        return None;
    }
    let n = losses.len();
    let head = (n / 20).clamp(1, 50);
    let tail = (n / 10).clamp(1, 100);
    let mean = |v: &[(u64, f64)]| v.iter().map(|p| p.1).sum::<f64>() / v.len() as f64;
    let (start, end) = (mean(&losses[..head]), mean(&losses[n - tail..]));
    if !(end.is_finite() && start.is_finite()) {
        return None;
    }
    // Images are in [0, 1]: a loss above 1 means the outputs left the image range.
    (end > 10.0 * start || end > 1.0).then(|| {
        format!(
            "the loss ended at {end:.3e}, far above where it started ({start:.3e}); the \
             learning rate ({lr:e}) may be too high"
        )
    })
}

/// The weights an eval or sweep uses: the EMA when the stage kept one.
fn load_model(r: &Runner, i: NodeIndex, wf: &ir::Workflow, model: &str) -> Result<Network, String> {
    let dir = r
        .dep_dir(i, |w| matches!(w, Work::Train { .. }))
        .ok_or("the trained model is missing")?;
    let spec = network_spec(wf, model)?;
    let mut net = Network::new(spec, seed(wf), &r.device).map_err(|e| e.to_string())?;
    let ema = dir.join("model.safetensors");
    let path = if ema.exists() {
        ema
    } else {
        dir.join("weights.safetensors")
    };
    net.load(&path).map_err(|e| e.to_string())?;
    net.frozen().map_err(|e| e.to_string())
}

fn classifier_net(tasks: usize, dev: &Device) -> Result<(VarMap, TaskClassifier), String> {
    let vm = VarMap::new();
    let c = TaskClassifier::new(tasks, VarBuilder::from_varmap(&vm, DType::F32, dev))
        .map_err(|e| e.to_string())?;
    Ok((vm, c))
}

/// Trains the task classifier of an explicit-prompt model. It checkpoints like a training
/// stage (weights, Adam's moments, the step) every `checkpoint_every` steps and on Ctrl-C, and
/// resumes from its checkpoint to the same weights.
fn classifier(r: &Runner, i: NodeIndex, w: usize, model: &str, dir: &Path) -> Result<(), RunError> {
    let name = r.name(i);
    let f = |m: String| fail(&name, m);
    let wf = &r.wfs[w];
    let t = wf.train_of(model).ok_or_else(|| f("no training".into()))?;
    let spec = t
        .setting("classifier")
        .and_then(Value::as_call)
        .cloned()
        .ok_or_else(|| f("no classifier settings".into()))?;
    let trained = trained_tasks(wf, model);
    let tasks: Vec<TaskSpec> = trained
        .iter()
        .enumerate()
        .map(|(k, x)| task_spec(x, k))
        .collect::<Result<_, _>>()
        .map_err(f)?;
    let set = r.train_set(wf, &t.data).map_err(f)?;
    let (vm, net) = classifier_net(tasks.len(), &r.device).map_err(f)?;
    mio_stdlib::models::init_default(&vm, seed(wf)).map_err(|e| fail(&name, e))?;
    let vars = mio_stdlib::trainer::sorted_vars(&vm);
    let mut opt = Adam::new(
        vars.iter().map(|(_, v)| v.clone()).collect(),
        AdamConfig {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        },
    )
    .map_err(|e| fail(&name, e))?;
    let (iters, lr, batch) = (
        int(&spec, "iters") as u64,
        float(&spec, "lr"),
        int(&spec, "batch"),
    );
    let every = setting_f64(&t.settings, "checkpoint_every").max(1.0) as u64;
    let ckpt = dir.join("classifier.ckpt.safetensors");
    let mut start = resumable_steps(r, &name, &ckpt);
    if start > 0 {
        start = mio_stdlib::trainer::load_checkpoint(&ckpt, &vars, &mut opt, None)
            .map_err(|e| fail(&name, e))?;
    }
    let log_path = dir.join("losses.jsonl");
    let mut log = open_log(&log_path, start).map_err(|e| RunError::Io(log_path.clone(), e))?;
    let save = |opt: &Adam, done: u64| {
        mio_stdlib::trainer::save_checkpoint(&ckpt, &vars, opt, None, done)
            .map_err(|e| fail(&name, e))
    };
    // The classifier's draws get a stage index of their own, apart from the training stages.
    const STAGE: usize = 1000;
    let started = Instant::now();
    for step in start..iters {
        if r.stopped() {
            if step > start {
                save(&opt, step)?;
            }
            return Err(RunError::Interrupted { node: name });
        }
        let b = set.batch(&tasks, seed(wf), STAGE, step, batch.max(1));
        let (lq, _, ids) = b.to_tensors(&r.device).map_err(|e| fail(&name, e))?;
        let logits = net.forward(&lq).map_err(|e| fail(&name, e))?;
        let loss = TaskClassifier::loss(&logits, &ids).map_err(|e| fail(&name, e))?;
        let value = loss.to_scalar::<f32>().map_err(|e| fail(&name, e))?;
        let grads = loss.backward().map_err(|e| fail(&name, e))?;
        opt.step(&grads, lr).map_err(|e| fail(&name, e))?;
        let rate = (step + 1 - start) as f64 / started.elapsed().as_secs_f64().max(1e-9);
        r.progress().step(step, iters, value, lr, rate);
        let _ = writeln!(log, "{{\"step\": {step}, \"loss\": {value}, \"lr\": {lr}}}");
        let done = step + 1;
        if done % every == 0 && done < iters {
            save(&opt, done)?;
        }
    }
    // Accuracy on fresh crops, for the report.
    let mut right = 0;
    let mut total = 0;
    for step in 0..8u64 {
        let b = set.batch(&tasks, seed(wf), STAGE + 1, step, 16);
        let (lq, _, _) = b.to_tensors(&r.device).map_err(|e| fail(&name, e))?;
        let pred = net.predict(&lq).map_err(|e| fail(&name, e))?;
        right += pred
            .iter()
            .zip(&b.task)
            .filter(|(p, t)| **p as usize == **t)
            .count();
        total += pred.len();
    }
    drop(log);
    write_json(
        &dir.join("classifier.json"),
        &json!({"tasks": trained.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
                "crop_accuracy": right as f64 / total.max(1) as f64}),
    )
    .map_err(f)?;
    r.progress().note(&format!(
        "task classifier: {:.1}% of {total} held-out crops right",
        100.0 * right as f64 / total.max(1) as f64
    ));
    let out = dir.join("classifier.safetensors");
    mio_stdlib::fsio::atomic(&out, |tmp| vm.save(tmp))
        .map_err(|e| fail(&name, format!("{}: {e}", out.display())))?;
    let _ = std::fs::remove_file(&ckpt);
    Ok(())
}

/// A metric's label and its value for one pair.
fn measure(m: &ir::Call, a: &Image, b: &Image) -> Result<f64, String> {
    let crop = int(m, "crop");
    let y = matches!(m.arg("y"), Some(Value::Bool(true)));
    match m.name.as_str() {
        "psnr" => mio_stdlib::metrics::psnr(a, b, crop, y),
        "ssim" => mio_stdlib::metrics::ssim(a, b, crop, y),
        other => Err(format!("unknown metric `{other}`")),
    }
}

pub(crate) fn metric_label(m: &ir::Call) -> String {
    let y = matches!(m.arg("y"), Some(Value::Bool(true)));
    if y {
        format!("{}_y", m.name)
    } else {
        m.name.clone()
    }
}

/// The (clean, degraded) files of one test set.
fn pairs_of(dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    let text = std::fs::read_to_string(dir.join("pairs.json")).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some((
                        super::store::path_from_json(&p["clean"])?,
                        dir.join(super::store::path_from_json(&p["degraded"])?),
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

fn eval(r: &Runner, i: NodeIndex, w: usize, index: usize, dir: &Path) -> Result<(), RunError> {
    let name = r.name(i);
    let wf = &r.wfs[w];
    let e = &wf.evals[index];
    let f = |m: String| fail(&name, m);
    let net = load_model(r, i, wf, &e.model).map_err(f)?;
    let trained = trained_tasks(wf, &e.model);
    let metrics: Vec<ir::Call> = e
        .setting("metrics")
        .and_then(Value::as_list)
        .map(|l| l.iter().filter_map(Value::as_call).cloned().collect())
        .unwrap_or_default();
    let explicit = matches!(net.spec.prompt, PromptMode::Explicit { .. });
    let predicted = explicit && e.setting("labels").and_then(Value::as_word) != Some("known");
    let classifier = if predicted {
        let cdir = r
            .dep_dir(i, |w| matches!(w, Work::Classifier { .. }))
            .ok_or_else(|| fail(&name, "the task classifier is missing"))?;
        let (vm, c) = classifier_net(trained.len(), &r.device).map_err(f)?;
        mio_stdlib::models::load_varmap(&vm, &cdir.join("classifier.safetensors"))
            .map_err(|e| fail(&name, e))?;
        Some(c)
    } else {
        None
    };
    let limit = setting_f64(&e.settings, "images") as usize;
    let save = !matches!(e.setting("save_images"), Some(Value::Bool(false)));
    let data = wf.data(&e.data).expect("checked");
    let mut tasks_out = vec![];
    let total_tasks = e.tasks.len();
    for (k, task) in e.tasks.iter().enumerate() {
        let mut pairs = if data.source.name == "pairs" {
            let get = |n: &str| match data.source.arg(n) {
                Some(Value::Str(s)) => r.base.join(s),
                _ => PathBuf::new(),
            };
            let lq = mio_stdlib::image::list_folder(&get("lq")).map_err(|e| fail(&name, e))?;
            lq.into_iter()
                .map(|p| (get("gt").join(p.file_name().unwrap_or_default()), p))
                .collect()
        } else {
            let tdir = r
                // Test sets are shared by degradation: `sr_out` reads `sr`'s set.
                .dep_dir(
                    i,
                    |w| matches!(w, Work::TestSet { task: t, .. } if t.degradation == task.degradation),
                )
                .ok_or_else(|| fail(&name, format!("the `{}` test set is missing", task.name)))?;
            pairs_of(&tdir).map_err(f)?
        };
        if limit > 0 {
            pairs.truncate(limit);
        }
        let truth = task_id(trained, task);
        let known_z = match (explicit, truth) {
            (true, Some(id)) if !predicted => {
                Some(net.task_latent(id).map_err(|e| fail(&name, e))?)
            }
            _ => None,
        };
        let mut images = vec![];
        // Output names unique within the task (`a.png` and `a.jpg` are both in a folder).
        let stems = mio_stdlib::image::unique_stems(
            &pairs.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        );
        for ((clean_path, lq_path), stem) in pairs.iter().zip(stems) {
            if r.stopped() {
                return Err(RunError::Interrupted { node: name });
            }
            let clean = mio_stdlib::image::load(clean_path)
                .map_err(|e| fail(&name, e))?
                .image;
            let lq = mio_stdlib::image::load(lq_path)
                .map_err(|e| fail(&name, e))?
                .image;
            let (z, guess) = match &classifier {
                Some(c) => {
                    let x = to_tensor(&lq, &r.device)
                        .and_then(|x| crate::restore::at_least_min_side(&x))
                        .map_err(|e| fail(&name, e))?;
                    let p = c.predict(&x).map_err(|e| fail(&name, e))?[0] as usize;
                    (
                        Some(net.task_latent(p).map_err(|e| fail(&name, e))?),
                        Some(p),
                    )
                }
                None => (known_z.clone(), None),
            };
            if explicit && z.is_none() {
                return Err(fail(
                    &name,
                    format!("`{}` has no prompt for `{}`", e.model, task.name),
                ));
            }
            let out = restore(&net, &lq, z.as_ref(), 0)
                .map_err(|e| fail(&name, format!("{}: {e}", lq_path.display())))?;
            let mut input = serde_json::Map::new();
            let mut output = serde_json::Map::new();
            let about = |e: String| {
                fail(
                    &name,
                    format!(
                        "{} ({}x{}): {e}; remove the image from the folder, or lower the metric's `crop`",
                        clean_path.display(),
                        clean.width,
                        clean.height
                    ),
                )
            };
            for m in &metrics {
                input.insert(
                    metric_label(m),
                    json!(measure(m, &lq, &clean).map_err(about)?),
                );
                output.insert(
                    metric_label(m),
                    json!(measure(m, &out, &clean).map_err(about)?),
                );
            }
            let file = if save {
                let d = dir.join("images").join(&task.name);
                std::fs::create_dir_all(&d).map_err(|e| RunError::Io(d.clone(), e.to_string()))?;
                let p = d.join(format!("{stem}.png"));
                out.save_png(&p).map_err(|e| fail(&name, e))?;
                Some(format!("images/{}/{stem}.png", task.name))
            } else {
                None
            };
            images.push(json!({
                "name": stem,
                "clean": super::store::path_to_json(clean_path),
                "degraded": super::store::path_to_json(lq_path),
                "restored": file,
                "input": input,
                "output": output,
                "predicted": guess.map(|g| trained.get(g).map(|t| t.name.clone())),
                "correct": guess.map(|g| Some(g) == truth),
            }));
        }
        r.progress().note(&format!(
            "{}/{}: {} ({} images)",
            k + 1,
            total_tasks,
            task.name,
            pairs.len()
        ));
        tasks_out.push(json!({"task": task.name, "images": images}));
    }
    write_json(
        &dir.join("results.json"),
        &json!({
            "eval": e.name,
            "model": e.model,
            "data": e.data,
            "labels": if predicted { "predicted" } else { "known" },
            "metrics": metrics.iter().map(metric_label).collect::<Vec<_>>(),
            "tasks": tasks_out,
        }),
    )
    .map_err(f)
}

/// An image, its name without the extension (what draws are seeded by) and its depth map if
/// it has one (haze reads it).
struct Named {
    stem: String,
    image: Image,
    depth: Option<Vec<f32>>,
}

fn load_named(path: &Path) -> Result<Named, String> {
    let image = mio_stdlib::image::load(path)
        .map_err(|e| e.to_string())?
        .image;
    let stem = path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let depth = mio_stdlib::degrade::depth_file(path, image.width, image.height)
        .map_err(|e| e.to_string())?;
    Ok(Named { stem, image, depth })
}

/// A degradation sweep: the images degraded with `degrade`'s `param` at each of `values`, the
/// input's and the output's mean PSNR at each, as a curve.
fn param_sweep(
    r: &Runner,
    i: NodeIndex,
    w: usize,
    index: usize,
    dir: &Path,
) -> Result<(), RunError> {
    let name = r.name(i);
    let wf = &r.wfs[w];
    let s = &wf.sweeps[index];
    let f = |m: String| fail(&name, m);
    let net = load_model(r, i, wf, &s.model).map_err(f)?;
    let trained = trained_tasks(wf, &s.model);
    let (Some(Value::Str(param)), Some(task)) = (
        s.setting("param"),
        s.setting("degrade").and_then(Value::as_task),
    ) else {
        return Err(fail(&name, "a parameter sweep needs `degrade` and `param`"));
    };
    let values: Vec<f64> = s
        .setting("values")
        .and_then(Value::as_list)
        .map(|l| l.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let z = match net.spec.prompt {
        PromptMode::Explicit { .. } => {
            let id = task_id(trained, task).ok_or_else(|| {
                fail(
                    &name,
                    format!("`{}` was not trained on `{}`", s.model, task.name),
                )
            })?;
            Some(net.task_latent(id).map_err(|e| fail(&name, e))?)
        }
        _ => None,
    };
    let files = match &s.target {
        ir::SweepTarget::File(file) => vec![r.base.join(file)],
        ir::SweepTarget::Data(d) => clean_images(r, wf, d).map_err(f)?,
    };
    let images: Vec<Named> = files
        .iter()
        .map(|p| load_named(p))
        .collect::<Result<_, String>>()
        .map_err(f)?;
    let mut rows = vec![];
    for &v in &values {
        let mut at = task.clone();
        match at.degradation.args.iter_mut().find(|(n, _)| n == param) {
            Some((_, slot)) => *slot = Value::Float(v),
            None => return Err(fail(&name, format!("`{}` has no `{param}`", task.name))),
        }
        let deg = crate::degradation(&at).map_err(f)?;
        let text = at.degradation.to_string();
        let (mut input, mut output) = (vec![], vec![]);
        for Named {
            stem,
            image: clean,
            depth,
        } in &images
        {
            if r.stopped() {
                return Err(RunError::Interrupted { node: name });
            }
            let mut rng = mio_stdlib::degrade::rng_for(seed(wf), &text, stem);
            let (lq, _) = deg.apply(clean, &mut rng, depth.as_deref());
            let out = restore(&net, &lq, z.as_ref(), 0).map_err(|e| fail(&name, e))?;
            input.push(mio_stdlib::metrics::psnr(&lq, clean, 4, false).map_err(f)?);
            output.push(mio_stdlib::metrics::psnr(&out, clean, 4, false).map_err(f)?);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        rows.push(json!({"value": v, "input_psnr": mean(&input), "output_psnr": mean(&output)}));
    }
    write_json(
        &dir.join("sweep.json"),
        &json!({
            "sweep": s.name,
            "model": s.model,
            "kind": "param",
            "task": task.name,
            "param": param,
            "images": images.len(),
            "points": rows,
        }),
    )
    .map_err(f)
}

fn sweep(r: &Runner, i: NodeIndex, w: usize, index: usize, dir: &Path) -> Result<(), RunError> {
    let name = r.name(i);
    let wf = &r.wfs[w];
    let s = &wf.sweeps[index];
    if s.setting("param").is_some() {
        return param_sweep(r, i, w, index, dir);
    }
    let f = |m: String| fail(&name, m);
    let net = load_model(r, i, wf, &s.model).map_err(f)?;
    let trained = trained_tasks(wf, &s.model);
    let task = |key: &str| -> Result<&ir::Task, RunError> {
        s.setting(key)
            .and_then(Value::as_task)
            .ok_or_else(|| fail(&name, format!("no `{key}` task")))
    };
    let (from_task, to_task) = (task("from")?, task("to")?);
    let adaptive = matches!(net.spec.prompt, PromptMode::Adaptive { .. });
    // Explicit prompts: the two tasks' fixed prompts. Adaptive ones: the prompts the network
    // reads from the image degraded by each task, computed per image below.
    let fixed = if adaptive {
        None
    } else {
        let id = |t: &ir::Task| {
            task_id(trained, t).ok_or_else(|| {
                fail(
                    &name,
                    format!("`{}` was not trained on `{}`", s.model, t.name),
                )
            })
        };
        let zf = net
            .task_latent(id(from_task)?)
            .map_err(|e| fail(&name, e))?;
        let zt = net.task_latent(id(to_task)?).map_err(|e| fail(&name, e))?;
        Some((zf, zt))
    };
    let read_prompt =
        |t: &ir::Task, base: &Image, depth: Option<&[f32]>, stem: &str| -> Result<Tensor, String> {
            let deg = crate::degradation(t)?;
            let mut rng = mio_stdlib::degrade::rng_for(seed(wf), &t.degradation.to_string(), stem);
            let x = to_tensor(&deg.apply(base, &mut rng, depth).0, &r.device)
                .and_then(|x| crate::restore::at_least_min_side(&x))
                .map_err(|e| e.to_string())?;
            net.adaptive_latent(&x)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "no adaptive prompt".to_string())
        };
    let steps = setting_f64(&s.settings, "steps").max(2.0) as usize;
    // Each input (its name and depth map those of the clean image) and the clean reference if
    // there is one.
    let mut inputs: Vec<(Named, Option<Image>)> = vec![];
    match &s.target {
        ir::SweepTarget::File(file) => {
            inputs.push((load_named(&r.base.join(file)).map_err(f)?, None));
        }
        ir::SweepTarget::Data(d) => {
            if let Some(tdir) = r.dep_dir(i, |w| matches!(w, Work::TestSet { .. })) {
                for (c, l) in pairs_of(&tdir).map_err(f)? {
                    let clean = load_named(&c).map_err(f)?;
                    let lq = load_named(&l).map_err(f)?;
                    let input = Named {
                        image: lq.image,
                        ..clean
                    };
                    inputs.push((input, Some(clean.image)));
                }
            } else {
                for c in clean_images(r, wf, d).map_err(f)? {
                    inputs.push((load_named(&c).map_err(f)?, None));
                }
            }
        }
    }
    // The strips' names, unique even where two images share a stem.
    let labels = {
        let as_paths: Vec<PathBuf> = inputs.iter().map(|x| PathBuf::from(&x.0.stem)).collect();
        mio_stdlib::image::unique_stems(&as_paths)
    };
    let mut rows = vec![];
    for ((input, clean), label) in inputs.iter().zip(labels) {
        let (img, depth, stem) = (&input.image, &input.depth, &input.stem);
        let (zf, zt) = match &fixed {
            Some((a, b)) => (a.clone(), b.clone()),
            None => {
                let base = clean.as_ref().unwrap_or(img);
                (
                    read_prompt(from_task, base, depth.as_deref(), stem).map_err(f)?,
                    read_prompt(to_task, base, depth.as_deref(), stem).map_err(f)?,
                )
            }
        };
        let mut strip = vec![img.clone()];
        let mut per_step = vec![];
        for k in 0..steps {
            let a = 1.0 - k as f64 / (steps - 1) as f64;
            let z = ((&zf * a).and_then(|x| x + (&zt * (1.0 - a))?)).map_err(|e| fail(&name, e))?;
            let out = restore(&net, img, Some(&z), 0).map_err(|e| fail(&name, e))?;
            let mean =
                out.data.iter().map(|&v| v as f64).sum::<f64>() / out.data.len() as f64 / 255.0;
            let psnr = clean
                .as_ref()
                .map(|c| mio_stdlib::metrics::psnr(&out, c, 4, false))
                .transpose()
                .map_err(f)?;
            per_step.push(json!({"a": a, "mean_intensity": mean, "psnr": psnr}));
            strip.push(out);
        }
        let file = format!("strip_{label}.png");
        hstack(&strip)
            .save_png(&dir.join(&file))
            .map_err(|e| fail(&name, e))?;
        rows.push(json!({"image": label, "strip": file, "steps": per_step}));
    }
    write_json(
        &dir.join("sweep.json"),
        &json!({
            "sweep": s.name,
            "model": s.model,
            "from": from_task.name,
            "to": to_task.name,
            "images": rows,
        }),
    )
    .map_err(f)
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
