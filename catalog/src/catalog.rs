//! The types of the catalog: what a built-in is, what its parameters take.

/// What a built-in is for; a parameter of type [`Ty::Builtin`] takes a call of that kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Backbone,
    Prompt,
    Degradation,
    Metric,
    Loss,
    Optimizer,
    Schedule,
    Strategy,
    Dataset,
    Classifier,
    /// Where a run's steps run: this machine or a Slurm cluster.
    Executor,
    /// The settings of a block: `workflow`, `train`, `eval`, `sweep`, `report`.
    Block,
}

impl Kind {
    /// "a backbone", "an optimizer": for messages.
    pub fn article(self) -> &'static str {
        match self {
            Kind::Backbone => "a backbone",
            Kind::Prompt => "a prompt strategy",
            Kind::Degradation => "a degradation",
            Kind::Metric => "a metric",
            Kind::Loss => "a loss",
            Kind::Optimizer => "an optimizer",
            Kind::Schedule => "a learning-rate schedule",
            Kind::Strategy => "a training strategy",
            Kind::Dataset => "a data source",
            Kind::Classifier => "a task classifier",
            Kind::Executor => "an executor",
            Kind::Block => "a block",
        }
    }
}

/// The type of a parameter's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ty {
    Int,
    Float,
    Bool,
    Str,
    /// A file or folder, as a string relative to the `.mio` file.
    FilePath,
    /// One of the listed bare words (`auto`, `flip`, `md`, ...).
    Word(&'static [&'static str]),
    /// `auto`, `cpu`, `cuda` or `"cuda:N"`.
    Device,
    /// A call of a built-in of this kind; a bare name is the call with its defaults.
    Builtin(Kind),
    /// A task: one declared with `task`, e.g. those of `use paper`.
    Task,
    /// A model declared in the workflow.
    Model,
    List(&'static Ty),
    Tuple(&'static [Ty]),
    /// A fixed value, or a range `lo..hi` drawn uniformly per image.
    Sampled(&'static Ty),
    /// One value for every stage, or a list with one value per stage.
    PerStage(&'static Ty),
}

impl Ty {
    /// How the type reads in docs and messages.
    pub fn describe(&self) -> String {
        match self {
            Ty::Int => "an integer".into(),
            Ty::Float => "a number".into(),
            Ty::Bool => "`true` or `false`".into(),
            Ty::Str => "a string".into(),
            Ty::FilePath => "a path (string)".into(),
            Ty::Word(ws) => one_of(ws),
            Ty::Device => "a device (`auto`, `cpu`, `cuda` or \"cuda:N\")".into(),
            Ty::Builtin(k) => k.article().into(),
            Ty::Task => "a task".into(),
            Ty::Model => "a model name".into(),
            Ty::List(t) => format!("a list of {}", plural(t)),
            Ty::Tuple(ts) => format!(
                "a tuple ({})",
                ts.iter()
                    .map(|t| t.describe())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Ty::Sampled(t) => format!("{} or a range `lo..hi` of them", t.describe()),
            Ty::PerStage(t) => format!("{} or a list with one per stage", t.describe()),
        }
    }

    /// A short name for signatures: `int`, `list[task]`, `float | range`.
    pub fn short(&self) -> String {
        match self {
            Ty::Int => "int".into(),
            Ty::Float => "float".into(),
            Ty::Bool => "bool".into(),
            Ty::Str => "string".into(),
            Ty::FilePath => "path".into(),
            Ty::Word(ws) => ws.join(" | "),
            Ty::Device => "device".into(),
            Ty::Builtin(k) => format!("{k:?}").to_lowercase(),
            Ty::Task => "task".into(),
            Ty::Model => "model".into(),
            Ty::List(t) => format!("list[{}]", t.short()),
            Ty::Tuple(ts) => format!(
                "({})",
                ts.iter().map(|t| t.short()).collect::<Vec<_>>().join(", ")
            ),
            Ty::Sampled(t) => format!("{0} | {0}..{0}", t.short()),
            Ty::PerStage(t) => format!("{0} | list[{0}]", t.short()),
        }
    }
}

fn plural(t: &Ty) -> String {
    match t {
        Ty::Int => "integers".into(),
        Ty::Float => "numbers".into(),
        Ty::Task => "tasks".into(),
        Ty::Builtin(Kind::Metric) => "metrics".into(),
        Ty::Word(ws) => format!("words ({})", ws.join(", ")),
        other => format!("values of type {}", other.short()),
    }
}

fn one_of(ws: &[&str]) -> String {
    let quoted: Vec<String> = ws.iter().map(|w| format!("`{w}`")).collect();
    match quoted.len() {
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// A bound on a numeric value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// The value may equal it.
    Incl(f64),
    /// The value must not equal it.
    Excl(f64),
}

/// What happens when a parameter is left out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Default {
    /// It must be given.
    Required,
    /// This `.mio` expression is used.
    Value(&'static str),
    /// It is simply absent (the docs say what that means).
    Absent,
}

#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    pub default: Default,
    /// The unit a literal may carry: `px`, `deg` or `dB`.
    pub unit: Option<&'static str>,
    pub min: Option<Bound>,
    pub max: Option<Bound>,
    pub doc: &'static str,
}

impl Param {
    /// `name: type = default`.
    pub fn signature(&self) -> String {
        let unit = self.unit.map(|u| format!(" [{u}]")).unwrap_or_default();
        match self.default {
            Default::Required => format!("{}: {}{unit}", self.name, self.ty.short()),
            Default::Value(v) => format!("{}: {}{unit} = {v}", self.name, self.ty.short()),
            Default::Absent => format!("{}?: {}{unit}", self.name, self.ty.short()),
        }
    }

    /// The allowed interval in words, e.g. "> 0", "between 1 and 100".
    pub fn bounds_text(&self) -> Option<String> {
        let lo = self.min.map(|b| match b {
            Bound::Incl(v) => (">=", v),
            Bound::Excl(v) => (">", v),
        });
        let hi = self.max.map(|b| match b {
            Bound::Incl(v) => ("<=", v),
            Bound::Excl(v) => ("<", v),
        });
        match (lo, hi) {
            (Some((a, x)), Some((b, y))) => Some(format!("{a} {x} and {b} {y}")),
            (Some((a, x)), None) => Some(format!("{a} {x}")),
            (None, Some((b, y))) => Some(format!("{b} {y}")),
            (None, None) => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Builtin {
    pub name: &'static str,
    pub kind: Kind,
    pub params: &'static [Param],
    pub doc: &'static str,
}

impl Builtin {
    pub fn param(&self, name: &str) -> Option<&'static Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// `srresnet(channels: int = 64, ...)`.
    pub fn signature(&self) -> String {
        let ps: Vec<String> = self.params.iter().map(|p| p.signature()).collect();
        format!("{}({})", self.name, ps.join(", "))
    }
}

/// Shorthand constructors for the tables in `builtins.rs`.
pub(crate) const fn p(
    name: &'static str,
    ty: Ty,
    default: &'static str,
    doc: &'static str,
) -> Param {
    Param {
        name,
        ty,
        default: Default::Value(default),
        unit: None,
        min: None,
        max: None,
        doc,
    }
}

pub(crate) const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Param {
    Param {
        name,
        ty,
        default: Default::Required,
        unit: None,
        min: None,
        max: None,
        doc,
    }
}

pub(crate) const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> Param {
    Param {
        name,
        ty,
        default: Default::Absent,
        unit: None,
        min: None,
        max: None,
        doc,
    }
}

impl Param {
    pub(crate) const fn min(mut self, b: Bound) -> Self {
        self.min = Some(b);
        self
    }
    pub(crate) const fn max(mut self, b: Bound) -> Self {
        self.max = Some(b);
        self
    }
    pub(crate) const fn unit(mut self, u: &'static str) -> Self {
        self.unit = Some(u);
        self
    }
}
