//! The syntax tree of a `.mio` file. Every node keeps its byte span (global offsets: see
//! [`crate::parse_at`]), so diagnostics, hover and go-to-definition can point at source text.

use std::fmt;

/// A half-open byte range `start..end` in the global offset space of a [`crate::SourceMap`]-like
/// owner (for a single file parsed at base 0 these are plain byte offsets into it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub const fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
    pub fn contains(&self, offset: usize) -> bool {
        self.start <= offset && offset <= self.end
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// `a`, `paper.in_dis`, `train.net.iters`.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    pub segments: Vec<Ident>,
    pub span: Span,
}

impl Path {
    /// The single identifier of a one-segment path.
    pub fn as_ident(&self) -> Option<&Ident> {
        match self.segments.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&s.name)?;
        }
        Ok(())
    }
}

/// Physical units a number literal may carry; the catalog says which unit a parameter takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    Px,
    Deg,
    Db,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Px => "px",
            Unit::Deg => "deg",
            Unit::Db => "dB",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Number {
    /// The value after the k/M multiplier.
    pub value: f64,
    /// Written without a fraction or exponent (after the multiplier: `1.5k` is integral too).
    pub is_int: bool,
    pub unit: Option<Unit>,
    /// The text as written, kept so the formatter prints `250k` back as `250k`.
    pub raw: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Number(Number),
    Str(String),
    Bool(bool),
    Path(Path),
    List(Vec<Expr>),
    Tuple(Vec<Expr>),
    Range(Box<Expr>, Box<Expr>),
    Call(Call),
    /// A composite task, its steps in the order they apply: `blur(...) then sr(...)`.
    Then(Vec<Expr>),
}

impl ExprKind {
    /// What the user would call this kind of value, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            ExprKind::Number(n) if n.is_int => "an integer",
            ExprKind::Number(_) => "a number",
            ExprKind::Str(_) => "a string",
            ExprKind::Bool(_) => "a boolean",
            ExprKind::Path(_) => "a name",
            ExprKind::List(_) => "a list",
            ExprKind::Tuple(_) => "a tuple",
            ExprKind::Range(..) => "a range",
            ExprKind::Call(_) => "a call",
            ExprKind::Then(_) => "a composite task",
        }
    }
}

/// `srresnet(channels = 64, blocks = 16)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub callee: Path,
    pub args: Vec<Arg>,
    /// The span of the parenthesised argument list, `(` to `)`.
    pub args_span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
    /// Items that did not parse, as (keyword, name) when those could be read: the checker
    /// does not report them as missing, since their syntax error says it already.
    pub broken: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Use(Use),
    Task(Binding),
    Let(Binding),
    Workflow(Workflow),
    Matrix(Matrix),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Use(u) => u.span,
            Item::Task(b) | Item::Let(b) => b.span,
            Item::Workflow(w) => w.span,
            Item::Matrix(m) => m.span,
        }
    }
    /// The name an item defines (imports define their namespace).
    pub fn name(&self) -> Option<&Ident> {
        match self {
            Item::Use(u) => u.alias.as_ref(),
            Item::Task(b) | Item::Let(b) => Some(&b.name),
            Item::Workflow(w) => Some(&w.name),
            Item::Matrix(m) => Some(&m.name),
        }
    }
}

/// `use paper`, `use "common.mio" as common`.
#[derive(Clone, Debug, PartialEq)]
pub struct Use {
    pub target: UseTarget,
    pub alias: Option<Ident>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum UseTarget {
    /// A built-in prelude such as `paper`.
    Prelude(Ident),
    /// A file path relative to the importing file.
    File { path: String, span: Span },
}

/// `name = value`: task and let items, data and model statements, settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Workflow {
    pub name: Ident,
    pub extends: Option<Ident>,
    pub stmts: Vec<Stmt>,
    pub span: Span,
    /// Offset of the closing `}` (comments before it belong inside the body).
    pub close: usize,
    /// Statements that did not parse, as (keyword, name), e.g. ("train", "net").
    pub broken: Vec<(String, String)>,
}

/// `matrix table over srresnet_row, swinir_row { model.net.prompt = [none, explicit, adaptive] }`:
/// every combination of a base workflow and one value per axis is a row.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub name: Ident,
    pub bases: Vec<Ident>,
    pub axes: Vec<Axis>,
    pub span: Span,
    pub close: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub path: Path,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Setting(Binding),
    Data(Binding),
    Model(Binding),
    Train(Train),
    Eval(Eval),
    Sweep(Sweep),
    Report(Report),
}

impl Stmt {
    pub fn span(&self) -> Span {
        match self {
            Stmt::Setting(b) | Stmt::Data(b) | Stmt::Model(b) => b.span,
            Stmt::Train(t) => t.span,
            Stmt::Eval(e) => e.span,
            Stmt::Sweep(s) => s.span,
            Stmt::Report(r) => r.span,
        }
    }
    pub fn keyword(&self) -> &'static str {
        match self {
            Stmt::Setting(_) => "setting",
            Stmt::Data(_) => "data",
            Stmt::Model(_) => "model",
            Stmt::Train(_) => "train",
            Stmt::Eval(_) => "eval",
            Stmt::Sweep(_) => "sweep",
            Stmt::Report(_) => "report",
        }
    }
}

/// `{ key = value, ... }` after train, eval, sweep and report.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub settings: Vec<Binding>,
    pub span: Span,
    /// Written over several lines in the source (a layout hint for the formatter).
    pub multiline: bool,
}

impl Block {
    pub fn get(&self, name: &str) -> Option<&Binding> {
        self.settings.iter().find(|s| s.name.name == name)
    }
}

/// `train net on train_images { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Train {
    pub model: Ident,
    pub data: Ident,
    pub block: Block,
    pub span: Span,
}

/// `eval net on test as in_dis { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Eval {
    pub model: Ident,
    pub data: Ident,
    pub alias: Option<Ident>,
    pub block: Block,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SweepTarget {
    Data(Ident),
    File { path: String, span: Span },
}

/// `sweep net on "data/test/chelsea.png" { from = lowlight, to = rain, steps = 7 }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    pub model: Ident,
    pub target: SweepTarget,
    pub alias: Option<Ident>,
    pub block: Block,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub block: Block,
    pub span: Span,
}

/// Equality "up to spans": [`File::erase_spans`] zeroes every span and layout hint, so two
/// trees that differ only in where things were written compare equal.
impl File {
    pub fn erase_spans(&mut self) {
        for item in &mut self.items {
            match item {
                Item::Use(u) => {
                    u.span = Span::default();
                    match &mut u.target {
                        UseTarget::Prelude(i) => i.erase(),
                        UseTarget::File { span, .. } => *span = Span::default(),
                    }
                    if let Some(a) = &mut u.alias {
                        a.erase();
                    }
                }
                Item::Task(b) | Item::Let(b) => b.erase(),
                Item::Workflow(w) => {
                    w.span = Span::default();
                    w.close = 0;
                    w.name.erase();
                    if let Some(e) = &mut w.extends {
                        e.erase();
                    }
                    for s in &mut w.stmts {
                        s.erase();
                    }
                }
                Item::Matrix(m) => {
                    m.span = Span::default();
                    m.close = 0;
                    m.name.erase();
                    m.bases.iter_mut().for_each(Ident::erase);
                    for a in &mut m.axes {
                        a.span = Span::default();
                        a.path.erase();
                        a.value.erase();
                    }
                }
            }
        }
    }
}

impl Ident {
    fn erase(&mut self) {
        self.span = Span::default();
    }
}

impl Path {
    fn erase(&mut self) {
        self.span = Span::default();
        self.segments.iter_mut().for_each(Ident::erase);
    }
}

impl Binding {
    fn erase(&mut self) {
        self.span = Span::default();
        self.name.erase();
        self.value.erase();
    }
}

impl Block {
    fn erase(&mut self) {
        self.span = Span::default();
        self.multiline = false;
        self.settings.iter_mut().for_each(Binding::erase);
    }
}

impl Stmt {
    fn erase(&mut self) {
        match self {
            Stmt::Setting(b) | Stmt::Data(b) | Stmt::Model(b) => b.erase(),
            Stmt::Train(t) => {
                t.span = Span::default();
                t.model.erase();
                t.data.erase();
                t.block.erase();
            }
            Stmt::Eval(e) => {
                e.span = Span::default();
                e.model.erase();
                e.data.erase();
                if let Some(a) = &mut e.alias {
                    a.erase();
                }
                e.block.erase();
            }
            Stmt::Sweep(s) => {
                s.span = Span::default();
                s.model.erase();
                match &mut s.target {
                    SweepTarget::Data(d) => d.erase(),
                    SweepTarget::File { span, .. } => *span = Span::default(),
                }
                if let Some(a) = &mut s.alias {
                    a.erase();
                }
                s.block.erase();
            }
            Stmt::Report(r) => {
                r.span = Span::default();
                r.block.erase();
            }
        }
    }
}

impl Expr {
    fn erase(&mut self) {
        self.span = Span::default();
        match &mut self.kind {
            ExprKind::Path(p) => p.erase(),
            ExprKind::List(xs) | ExprKind::Tuple(xs) | ExprKind::Then(xs) => {
                xs.iter_mut().for_each(Expr::erase)
            }
            ExprKind::Range(lo, hi) => {
                lo.erase();
                hi.erase();
            }
            ExprKind::Call(c) => {
                c.callee.erase();
                c.args_span = Span::default();
                for a in &mut c.args {
                    a.span = Span::default();
                    if let Some(n) = &mut a.name {
                        n.erase();
                    }
                    a.value.erase();
                }
            }
            ExprKind::Number(_) | ExprKind::Str(_) | ExprKind::Bool(_) => {}
        }
    }
}
