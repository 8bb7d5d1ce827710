//! Checked workflows: every name resolved, every default filled in, every value typed. This is
//! what lowering (`lower.rs`) and the planner read; its `Display` forms are canonical, so they
//! double as the normalised definitions that cache keys hash. Serialisable (without spans) so
//! a report's job can carry the workflows it reports on.

use std::fmt;

use mio_grammar::Span;
use serde::{Deserialize, Serialize};

/// A resolved value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// A bare word from a fixed set (`auto`, `flip`, `predicted`).
    Word(String),
    Range(Box<Value>, Box<Value>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// A built-in with every parameter, defaults filled in, in catalog order.
    Call(Call),
    Task(Task),
    Model(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub name: String,
    pub args: Vec<(String, Value)>,
}

impl Call {
    pub fn arg(&self, name: &str) -> Option<&Value> {
        self.args.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// A task: a name and the degradation (a call of a degradation built-in) it applies; a
/// composite task (`blur(...) then sr(...) then noise(...)`) applies more, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub name: String,
    /// The first (for most tasks the only) degradation.
    pub degradation: Call,
    /// A composite's further steps, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<Call>,
}

impl Task {
    pub fn new(name: impl Into<String>, degradation: Call) -> Task {
        Task {
            name: name.into(),
            degradation,
            then: vec![],
        }
    }
    /// A task of the given steps (at least one).
    pub fn of_steps(name: impl Into<String>, mut steps: Vec<Call>) -> Task {
        let first = steps.remove(0);
        Task {
            name: name.into(),
            degradation: first,
            then: steps,
        }
    }
    /// Every degradation it applies, in order.
    pub fn steps(&self) -> impl Iterator<Item = &Call> {
        std::iter::once(&self.degradation).chain(&self.then)
    }
    pub fn is_composite(&self) -> bool {
        !self.then.is_empty()
    }
    /// The canonical text of what it applies (`noise(sigma = 15..50)`, or the steps joined by
    /// `then`): it seeds the task's draws and keys its cached test sets.
    pub fn text(&self) -> String {
        self.steps()
            .map(Call::to_string)
            .collect::<Vec<_>>()
            .join(" then ")
    }
    /// Its kind: the degradation's name, or a composite's names joined by `then`.
    pub fn kind(&self) -> String {
        self.steps()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(" then ")
    }
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
    pub fn as_call(&self) -> Option<&Call> {
        match self {
            Value::Call(c) => Some(c),
            _ => None,
        }
    }
    pub fn as_word(&self) -> Option<&str> {
        match self {
            Value::Word(w) => Some(w),
            _ => None,
        }
    }
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_task(&self) -> Option<&Task> {
        match self {
            Value::Task(t) => Some(t),
            _ => None,
        }
    }
}

fn float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => f.write_str(&float(*x)),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) => f.write_str(&mio_grammar::format::quote(s)),
            Value::Word(w) | Value::Model(w) => f.write_str(w),
            Value::Range(lo, hi) => write!(f, "{lo}..{hi}"),
            Value::List(xs) => {
                f.write_str("[")?;
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
            Value::Tuple(xs) => {
                f.write_str("(")?;
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str(")")
            }
            Value::Call(c) => write!(f, "{c}"),
            Value::Task(t) => f.write_str(&t.name),
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        for (i, (n, v)) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n} = {v}")?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for Task {
    /// The full definition: `noise = noise(sigma = 15..50)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.name, self.text())
    }
}

/// The prompt strategy of a model, from its backbone's `prompt` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PromptKind {
    None,
    Explicit,
    Adaptive,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub name: String,
    pub backbone: Call,
    pub prompt: PromptKind,
    /// The tasks a model started from `weights` knows before any training: the reference's
    /// seven, in its task order (blur, noise, jpeg, rain, haze, lowlight, sr), as the
    /// degradations' defaults (the paper's ranges). Empty without `weights`.
    #[serde(default)]
    pub known_tasks: Vec<Task>,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Data {
    pub name: String,
    pub source: Call,
    #[serde(skip)]
    pub span: Span,
}

/// One stage of training: the tasks it trains on (earlier ones replayed) and its iterations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub tasks: Vec<Task>,
    pub iters: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Train {
    pub model: String,
    pub data: String,
    /// `mixed` or `sequential(order = ...)`.
    pub strategy: Call,
    pub stages: Vec<Stage>,
    /// Every setting of the block, defaults filled in.
    pub settings: Vec<(String, Value)>,
    #[serde(skip)]
    pub span: Span,
}

impl Train {
    pub fn setting(&self, name: &str) -> Option<&Value> {
        self.settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
    pub fn is_sequential(&self) -> bool {
        self.strategy.name == "sequential"
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    pub name: String,
    pub model: String,
    pub data: String,
    pub tasks: Vec<Task>,
    pub settings: Vec<(String, Value)>,
    #[serde(skip)]
    pub span: Span,
}

impl Eval {
    pub fn setting(&self, name: &str) -> Option<&Value> {
        self.settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SweepTarget {
    Data(String),
    File(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub name: String,
    pub model: String,
    pub target: SweepTarget,
    pub settings: Vec<(String, Value)>,
    #[serde(skip)]
    pub span: Span,
}

impl Sweep {
    pub fn setting(&self, name: &str) -> Option<&Value> {
        self.settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

/// A checked workflow, ready to plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    /// The workflow's name; for a matrix row `table[prompt=explicit, strategy=sequential]`.
    pub name: String,
    /// The matrix this row belongs to.
    pub matrix: Option<String>,
    pub settings: Vec<(String, Value)>,
    pub data: Vec<Data>,
    pub models: Vec<Model>,
    pub trains: Vec<Train>,
    pub evals: Vec<Eval>,
    pub sweeps: Vec<Sweep>,
    pub report: Vec<(String, Value)>,
    #[serde(skip)]
    pub span: Span,
}

impl Workflow {
    pub fn setting(&self, name: &str) -> Option<&Value> {
        self.settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
    pub fn data(&self, name: &str) -> Option<&Data> {
        self.data.iter().find(|d| d.name == name)
    }
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }
    pub fn train_of(&self, model: &str) -> Option<&Train> {
        self.trains.iter().find(|t| t.model == model)
    }
    /// The tasks a model knows, in id order: those of its training's last stage, else those
    /// its starting weights know (empty for an untrained model without weights).
    pub fn model_tasks(&self, model: &str) -> &[Task] {
        match self.train_of(model).and_then(|t| t.stages.last()) {
            Some(s) => &s.tasks,
            None => self
                .model(model)
                .map(|m| m.known_tasks.as_slice())
                .unwrap_or(&[]),
        }
    }
}
