//! Jobs: what each node of a plan does, as data. The checked program is lowered once into
//! these (`lower.rs`), built from stdlib's own types (the network's `Spec`, a stage's
//! `StageConfig`, each task's `TaskSpec`), and nothing after lowering looks at a built-in's
//! name again. A job is serialisable: `mio worker JOB_FILE` runs one node of a plan in a
//! process of its own from a [`JobFile`], with the same result as `mio run` in one process.
//!
//! Paths of data are as written in the `.mio` file, relative to its folder (the `base` the
//! node runs with).

use std::path::PathBuf;

use mio_stdlib::data::{Augment, TaskSpec};
use mio_stdlib::models::network::Spec;
use mio_stdlib::trainer::StageConfig;
use serde::{Deserialize, Serialize};

use crate::ir;

/// The layout of jobs and of the artifacts nodes write for each other (`pairs.json`,
/// `network.json`, `results.json`, `sweep.json`, `classifier.json`). A reader refuses a
/// different version rather than misreading it.
pub const FORMAT: u32 = 2;

/// The version of mio, part of every cache key and job file.
pub const MIO: &str = env!("CARGO_PKG_VERSION");

/// A folder of clean images and how training crops are cut from it (`images(...)`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Images {
    /// The data set's name in the workflow.
    pub name: String,
    pub path: String,
    pub patch: usize,
    pub batch: usize,
    pub augment: Augment,
    /// At most this many images (0: all).
    pub limit: usize,
}

/// Where an evaluation's images come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Source {
    /// Clean images, degraded by the test-set nodes the eval reads.
    Images(Images),
    /// Ready-made degraded images (`lq`) and their clean counterparts (`gt`), same file names.
    Pairs {
        name: String,
        lq: String,
        gt: String,
    },
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Source::Images(i) => &i.name,
            Source::Pairs { name, .. } => name,
        }
    }
}

/// A trained model as the nodes that build, train and load it see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The workflow (matrix row) it belongs to.
    pub workflow: String,
    pub name: String,
    /// The backbone's canonical text (`srresnet(channels = 32, ...)`), written beside the
    /// weights so `mio restore` can rebuild the network.
    pub backbone: String,
    pub network: Spec,
    /// Initialisation and explicit prompt maps derive from it.
    pub seed: u64,
    /// The tasks it is trained on, in id order (the last stage's; without training, those
    /// its starting weights know).
    pub tasks: Vec<TaskSpec>,
    /// The weights it starts from (`weights = ...` on its backbone), if any.
    pub start: Option<Start>,
}

/// Weights a model starts from: read by its `pretrained` node, which the first training
/// stage (or, untrained, its evaluations and sweeps) reads in turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Start {
    /// A `.pth` checkpoint or a safetensors file, relative to the .mio file.
    pub weights: String,
    /// The `.pth` key of the weights (`params` when `None`).
    pub param_key: Option<String>,
    /// Explicit prompts' task maps (a `.npy`, or a weights file with `prompt_maps`); `None`:
    /// those inside `weights`, if any.
    pub maps: Option<String>,
    /// The tasks the files' maps and classifier outputs are for, in their order: the
    /// reference's seven (blur, noise, jpeg, rain, haze, lowlight, sr).
    pub file_tasks: Vec<String>,
}

/// Degrade every image of a data set with one task (`TaskSpec::id` is 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestSet {
    pub seed: u64,
    pub data: Images,
    pub task: TaskSpec,
}

/// One stage of a model's training (the stage before it is its input).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Train {
    pub model: Model,
    pub data: Images,
    /// The stage's tasks (earlier ones replayed), with the model's ids.
    pub tasks: Vec<TaskSpec>,
    /// How many stages the training has.
    pub stages: usize,
    /// Iterations of the stages before this one: the step axis of the model's TensorBoard run
    /// continues over its stages.
    pub first_step: u64,
    /// Seed, stage index, iterations, batch, optimizer, schedule, loss, EMA, clipping,
    /// checkpoints.
    pub config: StageConfig,
}

/// The task classifier of an explicit-prompt model: trained on `data`, or read from `file`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classifier {
    pub model: String,
    pub seed: u64,
    /// The training images (`None` when the classifier comes from `file`).
    pub data: Option<Images>,
    /// A classifier that came with the model's weights (`classifier = ...` on its backbone),
    /// relative to the .mio file: read instead of trained.
    pub file: Option<String>,
    /// The model's tasks in id order: the classifier's labels.
    pub tasks: Vec<TaskSpec>,
    pub iters: u64,
    pub lr: f64,
    pub batch: usize,
    /// Side of the training crops.
    #[serde(default = "classifier_patch")]
    pub patch: usize,
    /// Flip and rotate the crops.
    #[serde(default = "no_augment")]
    pub augment: mio_stdlib::data::Augment,
    /// Rescale and recolour the regions before degrading them.
    #[serde(default = "no_regions")]
    pub regions: mio_stdlib::regions::RegionAugment,
    pub checkpoint_every: u64,
}

fn classifier_patch() -> usize {
    64
}
fn no_augment() -> mio_stdlib::data::Augment {
    mio_stdlib::data::Augment {
        flip: false,
        rot90: false,
    }
}
fn no_regions() -> mio_stdlib::regions::RegionAugment {
    mio_stdlib::regions::RegionAugment {
        scale: (1.0, 1.0),
        colour: false,
        exposure: (1.0, 1.0),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetricKind {
    Psnr,
    Ssim,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub kind: MetricKind,
    /// Pixels cropped from every border.
    pub crop: usize,
    /// On the Y channel instead of RGB.
    pub y: bool,
}

impl Metric {
    /// `psnr`, `ssim_y`: the column's name in results and reports.
    pub fn label(&self) -> String {
        let name = match self.kind {
            MetricKind::Psnr => "psnr",
            MetricKind::Ssim => "ssim",
        };
        if self.y {
            format!("{name}_y")
        } else {
            name.to_string()
        }
    }
}

/// How an explicit-prompt model learns the task of a test image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Labels {
    /// Told the true task (and every model without explicit prompts).
    Known,
    /// Its task classifier guesses.
    Predicted,
}

/// A task to evaluate or blend, with the id the model gives it: its own task of that name,
/// else its task with the same degradation (`noise_out` is told as `noise`); `None` when the
/// model was not trained on anything like it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub task: TaskSpec,
    pub id: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    pub workflow: String,
    pub name: String,
    pub model: Model,
    pub data: Source,
    pub tasks: Vec<Probe>,
    pub metrics: Vec<Metric>,
    pub labels: Labels,
    /// At most this many images per task (0: all).
    pub images: usize,
    pub save_images: bool,
    /// The report's table this evaluation goes into (by default the one of its task list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SweepTarget {
    /// One image file, relative to the `.mio` file's folder.
    File(String),
    Data(Images),
}

// Jobs are made once per node; their sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SweepKind {
    /// Blend the prompts of two tasks in `steps` weights from 1 to 0, on the images degraded
    /// by `degrade` first when given (a data set's through its test-set input).
    Prompts {
        from: Probe,
        to: Probe,
        steps: usize,
        degrade: Option<TaskSpec>,
    },
    /// Degrade with `task` at each value of one of its parameters: each point's degradation,
    /// all told to the model as `task` (its id).
    Param {
        task: String,
        id: Option<usize>,
        param: String,
        points: Vec<(f64, TaskSpec)>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub workflow: String,
    pub name: String,
    pub model: Model,
    pub target: SweepTarget,
    pub kind: SweepKind,
}

/// The PSNR of a sequentially trained model after each stage (its inputs: every stage, in
/// order, and a test set per task).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curves {
    pub model: Model,
    /// How the model is named in the report: `workflow: model` when the run has several.
    pub label: String,
}

/// The report of one workflow, or of every row of a matrix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The checked workflows it reports on (a matrix's rows).
    pub workflows: Vec<ir::Workflow>,
    pub matrix: Option<String>,
    /// The run covers several workflows: curves are labelled `workflow: model`.
    pub several: bool,
}

impl Report {
    /// The folder's name under the output folder: the matrix's or the workflow's.
    pub fn folder_name(&self) -> String {
        self.matrix
            .clone()
            .unwrap_or_else(|| self.workflows[0].name.clone())
    }
}

/// Where a run's steps run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Executor {
    /// On this machine, under `mio run`.
    Local,
    /// One `sbatch` job per step on a Slurm cluster.
    Slurm(Slurm),
}

/// The resources and options of the Slurm jobs (`slurm(...)`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Slurm {
    pub partition: Option<String>,
    /// For each training step (the stages and the classifier).
    pub gpus: usize,
    /// For each step that restores with a trained network (evaluations, sweeps, curves).
    pub eval_gpus: usize,
    pub cpus: usize,
    pub mem: Option<String>,
    pub time: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// More sbatch options, as written.
    pub extra: Vec<String>,
    /// At most this many jobs queued or running at once (0: no limit).
    pub max_jobs: usize,
}

/// What a node does.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Job {
    TestSet(TestSet),
    /// Reads a model's starting weights (and task maps) into mio's own layout.
    Pretrained(Model),
    Train(Train),
    Classifier(Classifier),
    Eval(Eval),
    Sweep(Sweep),
    Curves(Curves),
    Report(Report),
}

/// A node another node reads: what it was, and where its outputs are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub name: String,
    /// Its finished folder, under the store.
    pub folder: String,
    /// Read directly (an edge of the plan), or further up the chain (a report reads every
    /// stage of a sequential training, and the test sets behind its evaluations).
    pub direct: bool,
    /// The folders of the nodes it reads itself (a stage's previous stage).
    pub reads: Vec<String>,
    pub job: Job,
}

/// Everything needed to run one node of a plan, in this process or another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobFile {
    pub format: u32,
    /// The mio that wrote it; a worker of another version refuses it (cache keys differ).
    pub mio: String,
    /// Readable, unique within the plan: `quick/seq stage 2/7`.
    pub name: String,
    /// The node's finished folder under the store (`train-KEY`).
    pub folder: String,
    /// The cache key (recorded in `mio-node.json`).
    pub key: String,
    /// The folder of the `.mio` file: data paths are relative to it.
    pub base: PathBuf,
    /// `<output>/nodes`.
    pub store: PathBuf,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    pub job: Job,
    /// Every node upstream of it, in plan order.
    pub inputs: Vec<Input>,
}

impl JobFile {
    /// The inputs it reads itself.
    pub fn direct(&self) -> impl Iterator<Item = &Input> {
        self.inputs.iter().filter(|i| i.direct)
    }

    /// The input whose folder is `folder`.
    pub fn input(&self, folder: &str) -> Option<&Input> {
        self.inputs.iter().find(|i| i.folder == folder)
    }

    /// The finished folder of an input.
    pub fn dir_of(&self, input: &Input) -> PathBuf {
        self.store.join(&input.folder)
    }

    /// The node's own finished folder.
    pub fn dir(&self) -> PathBuf {
        self.store.join(&self.folder)
    }
}
