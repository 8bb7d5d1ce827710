//! What a report says, before it is written in any format.

use crate::run::artifact::SweepResults;

/// One row of a table: a label and a value per task.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub label: String,
    /// The model behind the row (`None` for the degraded input).
    pub model: Option<String>,
    pub values: Vec<Option<f64>>,
}

impl Row {
    /// The mean over the tasks, when every task has a value.
    pub fn avg(&self) -> Option<f64> {
        let v: Vec<f64> = self.values.iter().flatten().copied().collect();
        (v.len() == self.values.len() && !v.is_empty())
            .then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}

/// The paper's table for one metric and one list of tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// "sr, blur, ..." style caption.
    pub caption: String,
    pub metric: String,
    pub tasks: Vec<String>,
    pub rows: Vec<Row>,
    /// The row the others are compared with.
    pub baseline: Option<usize>,
}

impl Table {
    /// Each row's average minus the baseline's (models only).
    pub fn delta(&self, row: &Row) -> Option<f64> {
        let base = self.baseline.and_then(|b| self.rows[b].avg())?;
        match (row.avg(), &row.model) {
            (Some(a), Some(_)) => Some(a - base),
            _ => None,
        }
    }
}

/// How often a task classifier gave the right prompt on an evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Accuracy {
    pub eval: String,
    pub model: String,
    pub accuracy: f64,
    pub images: usize,
}

/// What a prompted model's prompts learned on one evaluation (the paper's Figure 4).
#[derive(Clone, Debug, PartialEq)]
pub struct PromptAnalysis {
    pub eval: String,
    /// The model as the tables name its row.
    pub label: String,
    pub images: usize,
    pub tasks: usize,
    /// The Calinski-Harabasz index of the prompts over the true tasks (infinite: each task
    /// always got one prompt of its own; `None`: fewer than two tasks).
    pub chi: Option<f64>,
    /// The prompts projected on their first two principal components, coloured by task.
    pub figure: Figure,
    /// Explicit prompts chosen by the task classifier: what it guessed for each task.
    pub confusion: Option<Confusion>,
}

/// Counts of true task (rows) against guessed task (columns).
#[derive(Clone, Debug, PartialEq)]
pub struct Confusion {
    pub truth: Vec<String>,
    pub guessed: Vec<String>,
    pub counts: Vec<Vec<usize>>,
}

/// The index as the report prints it.
pub fn chi(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_infinite() => "∞ (one prompt per task)".into(),
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    }
}

/// A chart: the file the Markdown links to and the SVG the HTML inlines.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub file: String,
    pub svg: String,
}

/// A sequentially trained model's PSNR after each stage on each of its tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct StageCurve {
    pub model: String,
    pub tasks: Vec<String>,
    /// One row per stage, one value per task.
    pub rows: Vec<Vec<Option<f64>>>,
    pub figure: Figure,
}

/// An image copied into the report folder, with its bytes for the HTML.
#[derive(Clone, Debug, PartialEq)]
pub struct Picture {
    pub file: String,
    pub png: Vec<u8>,
}

/// A sweep: its results, its chart (a parameter sweep) or its strips (a prompt sweep, in the
/// order of its images).
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    pub results: SweepResults,
    pub figure: Option<Figure>,
    pub strips: Vec<Picture>,
}

/// An input | outputs | ground truth grid of one task.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub task: String,
    /// `input | plain | ep | ground truth`.
    pub caption: String,
    pub picture: Picture,
}

/// The grids of the evaluations that share a task list.
#[derive(Clone, Debug, PartialEq)]
pub struct GridGroup {
    pub tasks: Vec<String>,
    pub grids: Vec<Grid>,
}

/// Everything a report says.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub title: String,
    pub warnings: Vec<String>,
    pub tables: Vec<Table>,
    pub accuracy: Vec<Accuracy>,
    /// The training losses of every model.
    pub loss: Option<Figure>,
    pub stages: Vec<StageCurve>,
    pub sweeps: Vec<Sweep>,
    pub grids: Vec<GridGroup>,
    /// What the prompts learned, one per evaluation of a prompted model.
    pub prompts: Vec<PromptAnalysis>,
}

/// A value as the tables show it: SSIM with four decimals, the rest with two.
pub fn value(v: Option<f64>, metric: &str) -> String {
    match v {
        Some(x) if metric.starts_with("ssim") => format!("{x:.4}"),
        Some(x) => format!("{x:.2}"),
        None => "-".into(),
    }
}

/// A change against the baseline, signed.
pub fn delta(v: Option<f64>, metric: &str) -> String {
    match v {
        Some(x) if metric.starts_with("ssim") => format!("{x:+.4}"),
        Some(x) => format!("{x:+.2}"),
        None => "".into(),
    }
}

/// What the prompts section says before its table.
pub const PROMPTS_INTRO: &str =
    "Each test image's latent prompt (the extractors' output: read from \
the image for adaptive prompts, the chosen task's for explicit ones). CHI is the Calinski-Harabasz \
index over the true tasks: higher means the tasks' prompts lie apart and each task's together; \
the plots project the prompts on their first two principal components.";

/// The line a classifier's accuracy gets.
pub fn accuracy_line(a: &Accuracy) -> String {
    format!(
        "Task classifier for `{}` on `{}`: {:.0}% of {} test images given the right prompt.",
        a.model,
        a.eval,
        a.accuracy * 100.0,
        a.images
    )
}
