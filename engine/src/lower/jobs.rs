//! The jobs of a plan's nodes, lowered from a checked workflow: test sets, training stages
//! (optimizer, schedule, loss, EMA, data), the classifier, evaluations, sweeps.

use mio_catalog::REFERENCE_TASK_INDEX;
use mio_stdlib::data::{Augment, TaskSpec};
use mio_stdlib::degrade::{Arg, Degradation, Sampled};
use mio_stdlib::kernels::precision::Precision;
use mio_stdlib::models::PromptMode;
use mio_stdlib::train::{AdamConfig, Loss, Schedule};
use mio_stdlib::trainer::StageConfig;

use super::network::network;
use super::values::{
    arg, boolean, bug, call, float, int, ints, setting, setting_f64, setting_int, string,
    LowerError, Result,
};
use crate::ir::{self, Value};
use crate::job;

/// The workflow's seed.
pub fn seed(wf: &ir::Workflow) -> Result<u64> {
    setting_int(&wf.settings, "seed", "workflow")
}

/// The device the workflow asks for, as written: `auto`, `cpu`, `cuda`, `cuda:N`.
pub fn device(wf: &ir::Workflow) -> Result<String> {
    match setting(&wf.settings, "device", "workflow")? {
        Value::Str(s) => Ok(s.clone()),
        Value::Word(w) => Ok(w.clone()),
        other => bug(format!("the device is `{other}`")),
    }
}

/// The stdlib degradation a checked task applies (a chain for a composite task).
pub fn degradation(task: &ir::Task) -> Result<Degradation> {
    let mut steps = task
        .steps()
        .map(|c| step(task, c))
        .collect::<Result<Vec<_>>>()?;
    Ok(if steps.len() == 1 {
        steps.remove(0)
    } else {
        Degradation::Chain(steps)
    })
}

/// One degradation call of a task.
fn step(task: &ir::Task, call: &ir::Call) -> Result<Degradation> {
    let args: Vec<(String, Arg)> = call
        .args
        .iter()
        .map(|(n, v)| {
            let arg = match v {
                Value::Range(lo, hi) => match (lo.as_f64(), hi.as_f64()) {
                    (Some(lo), Some(hi)) => Arg::Num(Sampled::Range(lo, hi)),
                    _ => return bug(format!("`{}`'s `{n}` is `{v}`", task.name)),
                },
                Value::Word(w) => Arg::Word(w.clone()),
                Value::Int(_) | Value::Float(_) => {
                    Arg::Num(Sampled::Fixed(v.as_f64().expect("a number")))
                }
                other => return bug(format!("`{}`'s `{n}` is `{other}`", task.name)),
            };
            Ok((n.clone(), arg))
        })
        .collect::<Result<_>>()?;
    Degradation::from_args(&call.name, &args).map_err(LowerError)
}

/// A task with the id a network gives it.
pub fn task(t: &ir::Task, id: usize) -> Result<TaskSpec> {
    Ok(TaskSpec {
        id,
        name: t.name.clone(),
        degradation: degradation(t)?,
        text: t.text(),
    })
}

/// The optimizer's learning rate and Adam's configuration.
pub fn optimizer(c: &ir::Call) -> Result<(f64, AdamConfig)> {
    let decoupled = match c.name.as_str() {
        "adam" => false,
        "adamw" => true,
        other => return bug(format!("no lowering for the optimizer `{other}`")),
    };
    let betas = match arg(c, "betas")? {
        Value::Tuple(v) => match (
            v.first().and_then(Value::as_f64),
            v.get(1).and_then(Value::as_f64),
            v.len(),
        ) {
            (Some(a), Some(b), 2) => (a, b),
            _ => return bug(format!("`{}`'s betas are not two numbers", c.name)),
        },
        other => return bug(format!("`{}`'s betas are `{other}`", c.name)),
    };
    Ok((
        float(c, "lr")?,
        AdamConfig {
            betas,
            eps: float(c, "eps")?,
            weight_decay: float(c, "weight_decay")?,
            decoupled,
        },
    ))
}

pub fn schedule(c: &ir::Call) -> Result<Schedule> {
    let steps = |name: &str| -> Result<Vec<u64>> {
        Ok(ints(c, name)?.into_iter().map(|m| m as u64).collect())
    };
    Ok(match c.name.as_str() {
        "constant" => Schedule::Constant,
        "cosine_restart" => Schedule::CosineRestart {
            min_lr: float(c, "min_lr")?,
            periods: steps("periods")?,
        },
        "step" => Schedule::Step {
            milestones: steps("milestones")?,
            gamma: float(c, "gamma")?,
        },
        other => return bug(format!("no lowering for the schedule `{other}`")),
    })
}

pub fn loss(c: &ir::Call) -> Result<Loss> {
    Ok(match c.name.as_str() {
        "l1" => Loss::L1,
        "l2" => Loss::L2,
        "charbonnier" => Loss::Charbonnier {
            eps: float(c, "eps")?,
        },
        other => return bug(format!("no lowering for the loss `{other}`")),
    })
}

pub fn metric(c: &ir::Call) -> Result<job::Metric> {
    let kind = match c.name.as_str() {
        "psnr" => job::MetricKind::Psnr,
        "ssim" => job::MetricKind::Ssim,
        other => return bug(format!("no lowering for the metric `{other}`")),
    };
    Ok(job::Metric {
        kind,
        crop: int(c, "crop")?,
        y: boolean(c, "y")?,
    })
}

/// The range the classifier's `scale` augmentation draws each region's zoom from.
pub const CLASSIFIER_ZOOM: (f64, f64) = (0.4, 1.0);
/// The range its `exposure` augmentation draws each region's tone curve exponent from.
pub const CLASSIFIER_EXPOSURE: (f64, f64) = (0.75, 1.35);

/// A data source.
pub fn source(d: &ir::Data) -> Result<job::Source> {
    let c = &d.source;
    Ok(match c.name.as_str() {
        "images" => {
            let augment = match arg(c, "augment")? {
                Value::List(l) => {
                    let mut a = Augment {
                        flip: false,
                        rot90: false,
                    };
                    for w in l {
                        match w.as_word() {
                            Some("flip") => a.flip = true,
                            Some("rot90") => a.rot90 = true,
                            _ => return bug(format!("no augmentation `{w}`")),
                        }
                    }
                    a
                }
                other => return bug(format!("`augment` is `{other}`")),
            };
            job::Source::Images(job::Images {
                name: d.name.clone(),
                path: string(c, "path")?,
                patch: int(c, "patch")?,
                batch: int(c, "batch")?,
                augment,
                limit: int(c, "limit")?,
            })
        }
        "pairs" => job::Source::Pairs {
            name: d.name.clone(),
            lq: string(c, "lq")?,
            gt: string(c, "gt")?,
        },
        other => return bug(format!("no lowering for the data source `{other}`")),
    })
}

/// A data source of clean images (training, test sets, sweeps over a folder).
pub fn images(wf: &ir::Workflow, name: &str) -> Result<job::Images> {
    let d = wf
        .data(name)
        .map_or_else(|| bug(format!("no data `{name}`")), Ok)?;
    match source(d)? {
        job::Source::Images(i) => Ok(i),
        job::Source::Pairs { .. } => bug(format!("`{name}` is ready-made pairs, not images")),
    }
}

/// The tasks a model is trained on, in id order (the last stage holds them all).
fn trained_tasks<'a>(wf: &'a ir::Workflow, model: &str) -> &'a [ir::Task] {
    wf.model_tasks(model)
}

/// The id a network gives a task: its own task of that name, else its task with the same
/// degradation (`noise_out` is told to the network as `noise`).
pub fn task_id(tasks: &[ir::Task], task: &ir::Task) -> Option<usize> {
    tasks
        .iter()
        .position(|t| t.name == task.name)
        .or_else(|| tasks.iter().position(|t| t.kind() == task.kind()))
}

/// A declared model with its network and tasks.
pub fn model(wf: &ir::Workflow, name: &str) -> Result<job::Model> {
    let m = wf
        .model(name)
        .map_or_else(|| bug(format!("no model `{name}`")), Ok)?;
    let trained = trained_tasks(wf, name);
    let tasks: Vec<TaskSpec> = trained
        .iter()
        .enumerate()
        .map(|(k, t)| task(t, k))
        .collect::<Result<_>>()?;
    let path = |arg: &str| match m.backbone.arg(arg) {
        Some(ir::Value::Str(s)) => Ok(Some(s.clone())),
        None => Ok(None),
        Some(v) => bug(format!("`{arg}` is not a string but `{v}`")),
    };
    let start = match path("weights")? {
        Some(weights) => Some(job::Start {
            weights,
            param_key: path("param_key")?,
            maps: path("maps")?,
            file_tasks: REFERENCE_TASK_INDEX.iter().map(|t| t.to_string()).collect(),
        }),
        None => None,
    };
    Ok(job::Model {
        workflow: wf.name.clone(),
        name: name.to_string(),
        backbone: m.backbone.to_string(),
        network: network(&m.backbone, tasks.iter().map(|t| t.name.clone()).collect())?,
        seed: seed(wf)?,
        tasks,
        start,
    })
}

fn probe(trained: &[ir::Task], t: &ir::Task) -> Result<job::Probe> {
    let id = task_id(trained, t);
    Ok(job::Probe {
        task: task(t, id.unwrap_or(0))?,
        id,
    })
}

/// Stage `stage` (0-based) of the training of `model`.
pub fn train(wf: &ir::Workflow, model: &str, stage: usize) -> Result<job::Train> {
    let t = wf
        .train_of(model)
        .map_or_else(|| bug(format!("`{model}` has no training")), Ok)?;
    let m = self::model(wf, model)?;
    let data = images(wf, &t.data)?;
    let trained = trained_tasks(wf, model);
    let s = t
        .stages
        .get(stage)
        .map_or_else(|| bug(format!("`{model}` has no stage {}", stage + 1)), Ok)?;
    let tasks = s
        .tasks
        .iter()
        .map(|x| task(x, task_id(trained, x).unwrap_or(0)))
        .collect::<Result<_>>()?;
    let (lr, adam) = optimizer(call(t.setting("optimizer"), "the optimizer")?)?;
    let config = StageConfig {
        seed: m.seed,
        stage,
        iters: s.iters,
        batch: data.batch.max(1),
        lr,
        adam,
        schedule: schedule(call(t.setting("schedule"), "the schedule")?)?,
        loss: loss(call(t.setting("loss"), "the loss")?)?,
        ema: setting_f64(&t.settings, "ema", "train")?,
        grad_clip: setting_f64(&t.settings, "grad_clip", "train")?,
        checkpoint_every: setting_int(&t.settings, "checkpoint_every", "train")?.max(1),
        precision: match setting(&t.settings, "precision", "train")?.as_word() {
            Some("auto") => None,
            Some(w) => match Precision::parse(w) {
                Some(p) => Some(p),
                None => return bug(format!("precision `{w}`")),
            },
            None => return bug("precision is not a word"),
        },
    };
    Ok(job::Train {
        model: m,
        data,
        tasks,
        stages: t.stages.len(),
        first_step: t.stages[..stage].iter().map(|s| s.iters).sum(),
        config,
    })
}

/// The task classifier of an explicit-prompt model: the file that came with its weights, else
/// trained by its train block's `classifier`.
pub fn classifier(wf: &ir::Workflow, model: &str) -> Result<job::Classifier> {
    let m = wf
        .model(model)
        .map_or_else(|| bug(format!("no model `{model}`")), Ok)?;
    if let Some(v) = m.backbone.arg("classifier") {
        let ir::Value::Str(file) = v else {
            return bug(format!("the classifier file is `{v}`, not a string"));
        };
        return Ok(job::Classifier {
            model: model.to_string(),
            seed: seed(wf)?,
            data: None,
            file: Some(file.clone()),
            tasks: self::model(wf, model)?.tasks,
            iters: 0,
            lr: 0.0,
            batch: 1,
            patch: 0,
            augment: Augment {
                flip: false,
                rot90: false,
            },
            regions: mio_stdlib::regions::RegionAugment {
                scale: (1.0, 1.0),
                colour: false,
                exposure: (1.0, 1.0),
            },
            checkpoint_every: 1,
        });
    }
    let t = wf
        .train_of(model)
        .map_or_else(|| bug(format!("`{model}` has no training")), Ok)?;
    let c = call(t.setting("classifier"), "the classifier")?;
    match c.name.as_str() {
        "classifier" => {}
        other => return bug(format!("no lowering for the classifier `{other}`")),
    }
    let augmentations: Vec<&str> = match arg(c, "augment")? {
        Value::List(l) => l
            .iter()
            .map(|w| {
                w.as_word()
                    .map_or_else(|| bug(format!("the augmentation `{w}`")), Ok)
            })
            .collect::<Result<_>>()?,
        other => return bug(format!("`augment` is `{other}`")),
    };
    Ok(job::Classifier {
        model: model.to_string(),
        seed: seed(wf)?,
        data: Some(images(wf, &t.data)?),
        file: None,
        tasks: self::model(wf, model)?.tasks,
        iters: int(c, "iters")? as u64,
        lr: float(c, "lr")?,
        batch: int(c, "batch")?.max(1),
        patch: int(c, "patch")?,
        augment: Augment {
            flip: augmentations.contains(&"flip"),
            rot90: augmentations.contains(&"rot90"),
        },
        regions: mio_stdlib::regions::RegionAugment {
            scale: if augmentations.contains(&"scale") {
                CLASSIFIER_ZOOM
            } else {
                (1.0, 1.0)
            },
            colour: augmentations.contains(&"colour"),
            exposure: if augmentations.contains(&"exposure") {
                CLASSIFIER_EXPOSURE
            } else {
                (1.0, 1.0)
            },
        },
        checkpoint_every: setting_int(&t.settings, "checkpoint_every", "train")?.max(1),
    })
}

pub fn eval(wf: &ir::Workflow, index: usize) -> Result<job::Eval> {
    let e = &wf.evals[index];
    let model = self::model(wf, &e.model)?;
    let trained = trained_tasks(wf, &e.model);
    let metrics = match setting(&e.settings, "metrics", "eval")? {
        Value::List(l) => l
            .iter()
            .map(|v| metric(call(Some(v), "a metric")?))
            .collect::<Result<_>>()?,
        other => return bug(format!("the metrics are `{other}`")),
    };
    let explicit = matches!(model.network.prompt, PromptMode::Explicit { .. });
    let labels = match setting(&e.settings, "labels", "eval")?.as_word() {
        Some("predicted") if explicit => job::Labels::Predicted,
        Some("predicted") | Some("known") => job::Labels::Known,
        other => return bug(format!("labels `{other:?}`")),
    };
    let save_images = match setting(&e.settings, "save_images", "eval")? {
        Value::Bool(b) => *b,
        other => return bug(format!("save_images is `{other}`")),
    };
    let data = wf
        .data(&e.data)
        .map_or_else(|| bug(format!("no data `{}`", e.data)), Ok)?;
    Ok(job::Eval {
        workflow: wf.name.clone(),
        name: e.name.clone(),
        data: source(data)?,
        tasks: e
            .tasks
            .iter()
            .map(|t| probe(trained, t))
            .collect::<Result<_>>()?,
        metrics,
        labels,
        images: setting_int(&e.settings, "images", "eval")? as usize,
        save_images,
        table: match e.setting("table") {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => None,
        },
        model,
    })
}

pub fn sweep(wf: &ir::Workflow, index: usize) -> Result<job::Sweep> {
    let s = &wf.sweeps[index];
    let model = self::model(wf, &s.model)?;
    let trained = trained_tasks(wf, &s.model);
    let target = match &s.target {
        ir::SweepTarget::File(f) => job::SweepTarget::File(f.clone()),
        ir::SweepTarget::Data(d) => job::SweepTarget::Data(images(wf, d)?),
    };
    let task_of = |key: &str| -> Result<Option<&ir::Task>> {
        match s.setting(key) {
            None => Ok(None),
            Some(Value::Task(t)) => Ok(Some(t)),
            Some(other) => bug(format!("the sweep's `{key}` is `{other}`")),
        }
    };
    let kind = match s.setting("param") {
        Some(Value::Str(param)) => {
            let Some(t) = task_of("degrade")? else {
                return bug("a parameter sweep without `degrade`");
            };
            let values: Vec<f64> = match s.setting("values") {
                Some(Value::List(l)) => l
                    .iter()
                    .map(|v| v.as_f64().map_or_else(|| bug(format!("value `{v}`")), Ok))
                    .collect::<Result<_>>()?,
                other => return bug(format!("the sweep's values are `{other:?}`")),
            };
            let mut points = vec![];
            for v in values {
                let mut at = t.clone();
                // A composite's first step that has the parameter.
                let slot = std::iter::once(&mut at.degradation)
                    .chain(at.then.iter_mut())
                    .find_map(|c| c.args.iter_mut().find(|(n, _)| n == param));
                match slot {
                    Some((_, slot)) => *slot = Value::Float(v),
                    None => return bug(format!("`{}` has no `{param}`", t.name)),
                }
                points.push((v, task(&at, 0)?));
            }
            job::SweepKind::Param {
                task: t.name.clone(),
                id: task_id(trained, t),
                param: param.clone(),
                points,
            }
        }
        Some(other) => return bug(format!("the sweep's `param` is `{other}`")),
        None => {
            let (Some(from), Some(to)) = (task_of("from")?, task_of("to")?) else {
                return bug("a prompt sweep without `from` and `to`");
            };
            job::SweepKind::Prompts {
                from: probe(trained, from)?,
                to: probe(trained, to)?,
                steps: setting_int(&s.settings, "steps", "sweep")?.max(2) as usize,
                degrade: task_of("degrade")?.map(|t| task(t, 0)).transpose()?,
            }
        }
    };
    Ok(job::Sweep {
        workflow: wf.name.clone(),
        name: s.name.clone(),
        model,
        target,
        kind,
    })
}

/// The stage curves of a sequentially trained model.
pub fn curves(wf: &ir::Workflow, model: &str, label: String) -> Result<job::Curves> {
    Ok(job::Curves {
        model: self::model(wf, model)?,
        label,
    })
}

/// Where the workflow's steps run.
pub fn executor(wf: &ir::Workflow) -> Result<job::Executor> {
    let c = call(
        setting(&wf.settings, "executor", "workflow").ok(),
        "the executor",
    )?;
    let text = |name: &str| -> Result<Option<String>> {
        match c.arg(name) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(other) => bug(format!(
                "`{}`'s `{name}` is `{other}`, not a string",
                c.name
            )),
        }
    };
    Ok(match c.name.as_str() {
        "local" => job::Executor::Local,
        "slurm" => job::Executor::Slurm(job::Slurm {
            partition: text("partition")?,
            gpus: int(c, "gpus")?,
            eval_gpus: int(c, "eval_gpus")?,
            cpus: int(c, "cpus")?,
            mem: text("mem")?,
            time: text("time")?,
            account: text("account")?,
            qos: text("qos")?,
            extra: match arg(c, "extra")? {
                Value::List(l) => l
                    .iter()
                    .map(|v| match v {
                        Value::Str(s) => Ok(s.clone()),
                        other => bug(format!("an sbatch option `{other}`")),
                    })
                    .collect::<Result<_>>()?,
                other => return bug(format!("`extra` is `{other}`")),
            },
            max_jobs: int(c, "max_jobs")?,
        }),
        other => return bug(format!("no lowering for the executor `{other}`")),
    })
}
