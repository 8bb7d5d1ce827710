//! Diagnostics: one error kind per code, each with a primary labelled span, optional related
//! spans and a help line. Rendering (miette) is separate from the data, so the CLI, the tests
//! and the language server present the same diagnostics their own way.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use mio_grammar::Span;

use crate::source::SourceMap;

macro_rules! codes {
    ($($variant:ident = $num:literal : $summary:literal,)*) => {
        /// Every error code, `mio::E0xx`. The summary is the one-line meaning shown in docs.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($variant,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];
            pub fn number(self) -> u16 { match self { $(Code::$variant => $num,)* } }
            pub fn summary(self) -> &'static str { match self { $(Code::$variant => $summary,)* } }
        }
    };
}

codes! {
    Syntax = 1: "syntax error",
    UnknownPrelude = 2: "`use` names no built-in prelude",
    ImportNotFound = 3: "an imported file cannot be read",
    ImportCycle = 4: "files import each other in a cycle",
    NoWorkflow = 5: "the file defines no workflow to plan",
    Duplicate = 10: "a name is defined twice",
    UnknownName = 11: "a name is not defined",
    UnknownBuiltin = 12: "no built-in has this name",
    WrongKind = 13: "a built-in of another kind than the place takes",
    UnknownArgument = 14: "a call has an argument its built-in does not take",
    DuplicateArgument = 15: "an argument is given twice",
    MissingArgument = 16: "a required argument is missing",
    PositionalArgument = 17: "a positional argument after named ones, or too many",
    AmbiguousName = 18: "two imports define the same name",
    TypeMismatch = 20: "a value of the wrong type",
    WrongUnit = 21: "a number with a unit its parameter does not take",
    OutOfRange = 22: "a value outside the allowed range",
    EmptyRange = 23: "a range whose low end is above its high end",
    NotInteger = 24: "a fraction where an integer is needed",
    UnknownChoice = 25: "a word that is not one of the choices",
    UnknownSetting = 30: "a block has a setting it does not take",
    MissingSetting = 31: "a required setting is missing",
    DuplicateSetting = 32: "a setting is given twice",
    UndefinedData = 40: "no data with this name in the workflow",
    UndefinedModel = 41: "no model with this name in the workflow",
    TrainedTwice = 42: "a model is trained by two train blocks",
    NeverTrained = 43: "a model is evaluated or swept but never trained",
    NotTrainingData = 44: "training or a sweep needs clean images, not ready-made pairs",
    OrderNotPermutation = 50: "a sequential order is not a permutation of the trained tasks",
    StageCount = 51: "the iteration list does not have one entry per stage",
    PatchMultiple = 52: "the training patch is not a multiple of the backbone's window",
    NoPromptForTask = 53: "an explicit-prompt model has no prompt for this task",
    NoPrompt = 54: "prompt interpolation on a model without prompts",
    MixedNeedsTasks = 55: "mixed training without a task list",
    BackboneShape = 56: "a backbone's settings do not fit together",
    Weights = 57: "a model's starting weights are incomplete or do not fit its prompt",
    Cycle = 60: "definitions refer to each other in a cycle",
    UnknownWorkflow = 61: "no workflow with this name",
    BadAxis = 70: "a matrix axis names no setting of its workflow",
    BadAxisValues = 71: "a matrix axis is not a non-empty list",
    BadOverride = 80: "a `--set` override cannot be applied",
    Lowering = 90: "a checked value the runner cannot turn into work (a bug in mio)",
}

impl Code {
    /// Codes no `.mio` file should produce: a bug in mio, not a mistake in the file.
    pub fn is_internal(self) -> bool {
        matches!(self, Code::Lowering)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mio::E{:03}", self.number())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub primary: Label,
    pub related: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(
        code: Code,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            primary: Label {
                span,
                text: label.into(),
            },
            related: vec![],
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    pub fn related(mut self, span: Span, text: impl Into<String>) -> Self {
        self.related.push(Label {
            span,
            text: text.into(),
        });
        self
    }
}

/// A diagnostic bound to the text of its file, in the shape miette renders.
#[derive(Debug)]
struct Bound<'a> {
    d: &'a Diagnostic,
    source: NamedSource<String>,
    labels: Vec<LabeledSpan>,
}

impl fmt::Display for Bound<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.d.message)
    }
}

impl std::error::Error for Bound<'_> {}

impl miette::Diagnostic for Bound<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.d.code))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.d
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
}

/// How diagnostics are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Unicode boxes and colour, for a terminal.
    Color,
    /// Unicode boxes, no colour: pipes, files, snapshots.
    Plain,
}

/// Renders diagnostics as text, each against its own file. Related spans in another file than
/// the primary one are listed as notes under it.
pub fn render(diags: &[Diagnostic], sources: &SourceMap, style: Style) -> String {
    let theme = match style {
        Style::Color => GraphicalTheme::unicode(),
        Style::Plain => GraphicalTheme::unicode_nocolor(),
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    for d in diags {
        let Some(fid) = sources.file_of(d.primary.span.start) else {
            out.push_str(&format!("error[{}]: {}\n", d.code, d.message));
            continue;
        };
        let file = sources.get(fid);
        let local = |s: Span| {
            let start = s.start - file.base;
            (start, s.len().min(file.text.len().saturating_sub(start)))
        };
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            Some(d.primary.text.clone()),
            local(d.primary.span),
        )];
        let mut elsewhere = vec![];
        for r in &d.related {
            if sources.file_of(r.span.start) == Some(fid) {
                labels.push(LabeledSpan::new_with_span(
                    Some(r.text.clone()),
                    local(r.span),
                ));
            } else if let Some(other) = sources.file_of(r.span.start) {
                let f = sources.get(other);
                let (line, col) = f.line_col(r.span.start);
                elsewhere.push(format!("  note: {} ({}:{line}:{col})\n", r.text, f.name));
            }
        }
        let bound = Bound {
            d,
            source: NamedSource::new(&file.name, file.text.clone()).with_language("mio"),
            labels,
        };
        if handler.render_report(&mut out, &bound).is_err() {
            out.push_str(&format!("error[{}]: {}\n", d.code, d.message));
        }
        for e in elsewhere {
            out.push_str(&e);
        }
    }
    out
}

/// "did you mean `x`?" for the closest candidate, if any is close enough.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        let score = strsim::jaro_winkler(name, c);
        let dist = strsim::damerau_levenshtein(name, c);
        // `iterations` for `iters`: a long shared start counts as close too.
        let prefix = name
            .chars()
            .zip(c.chars())
            .take_while(|(a, b)| a == b)
            .count();
        let close = dist <= (name.len().max(2) / 3).max(1) || score >= 0.88 || prefix >= 4;
        if close && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}
