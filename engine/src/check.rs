//! The semantic check: names, types, units, ranges and the rules of the method (a sequential
//! order is a permutation of the trained tasks, one iteration count per stage, patches that
//! fit the backbone's window, prompts that exist). It never stops at the first error: each
//! mistake becomes a diagnostic and checking goes on with what is known.

use std::collections::HashMap;

use mio_grammar::ast::{self, Binding, Expr, ExprKind, Ident, Stmt};
use mio_grammar::Span;
use mio_stdlib::builtins;
use mio_stdlib::{Bound, Builtin, Default, Kind, Param, PatchMultiple, Ty};

use crate::diagnostic::{closest, did_you_mean, Code, Diagnostic};
use crate::ir::{self, PromptKind, Value};
use crate::load::{ModId, Program};
use crate::merge;

/// A `--set path=value` after parsing.
#[derive(Clone, Debug)]
pub struct Override {
    pub path: ast::Path,
    pub value: Expr,
    pub span: Span,
}

/// What a name written in the file was resolved to by the checker (the language server's
/// definition, references, hover and highlighting follow it, so a name is what the checker
/// took it for: `strategy = mixed` is the built-in strategy even beside a model `mixed`).
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    /// A task or let, by the span of its name where it is defined.
    Global(Span),
    /// A model of the workflow around the name.
    Model(String),
    /// A data set of the workflow around the name.
    Data(String),
    /// A built-in (a backbone, a strategy, a metric, a choice word): no user symbol.
    Builtin,
}

/// A name's span and what it resolved to.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    pub span: Span,
    pub to: Resolved,
}

/// What a name in value position refers to.
#[derive(Clone, Copy)]
enum Sym<'p> {
    Task(ModId, &'p Binding),
    Let(ModId, &'p Binding),
}

pub struct Checker<'p> {
    prog: &'p Program,
    pub diags: Vec<Diagnostic>,
    /// While > 0, diagnostics are dropped (evaluating the catalog's defaults).
    quiet: usize,
    /// Lets and tasks being expanded, innermost last: a repeat is a cycle.
    expanding: Vec<(ModId, String)>,
    tasks: HashMap<(ModId, String), Option<ir::Task>>,
    defaults: HashMap<&'static str, Expr>,
    /// Checked defaults by parameter (its address: catalog entries are statics).
    default_values: HashMap<usize, Option<Value>>,
    /// The models of the workflow being checked (for `Ty::Model`).
    models: Vec<String>,
    /// Statements of the workflow being checked that did not parse, as (keyword, name): their
    /// absence is not reported again.
    broken: Vec<(String, String)>,
    /// Every name resolved, in the order met (duplicates where a statement is checked again).
    pub resolutions: Vec<Resolution>,
}

impl<'p> Checker<'p> {
    fn resolved(&mut self, span: Span, to: Resolved) {
        if self.quiet == 0 {
            self.resolutions.push(Resolution { span, to });
        }
    }

    pub fn new(prog: &'p Program) -> Self {
        Checker {
            prog,
            diags: vec![],
            quiet: 0,
            expanding: vec![],
            tasks: HashMap::new(),
            defaults: HashMap::new(),
            default_values: HashMap::new(),
            models: vec![],
            broken: vec![],
            resolutions: vec![],
        }
    }

    /// Whether `keyword name` failed to parse in the workflow being checked.
    fn is_broken(&self, keyword: &str, name: &str) -> bool {
        self.broken.iter().any(|(k, n)| k == keyword && n == name)
    }

    /// Whether an item named `name` of module `m` (or of its imports) failed to parse.
    fn is_broken_item(&self, m: ModId, name: &str) -> bool {
        let mods = std::iter::once(m).chain(self.prog.modules[m].imports.iter().map(|(_, id)| *id));
        mods.into_iter().any(|id| {
            self.prog.modules[id]
                .ast
                .broken
                .iter()
                .any(|(_, n)| n == name)
        })
    }

    fn emit(&mut self, d: Diagnostic) {
        if self.quiet == 0 {
            self.diags.push(d);
        }
    }

    // ----- names -------------------------------------------------------------------------

    fn items(&self, m: ModId) -> &'p [ast::Item] {
        &self.prog.modules[m].ast.items
    }

    fn local(&self, m: ModId, name: &str) -> Option<Sym<'p>> {
        self.items(m).iter().find_map(|i| match i {
            ast::Item::Task(b) if b.name.name == name => Some(Sym::Task(m, b)),
            ast::Item::Let(b) if b.name.name == name => Some(Sym::Let(m, b)),
            _ => None,
        })
    }

    /// Every task and let name visible unqualified in `m`.
    fn visible_names(&self, m: ModId) -> Vec<String> {
        let mut names = vec![];
        let mut add = |mid: ModId| {
            for i in self.items(mid) {
                if let ast::Item::Task(b) | ast::Item::Let(b) = i {
                    names.push(b.name.name.clone());
                }
            }
        };
        add(m);
        for (_, mid) in &self.prog.modules[m].imports {
            add(*mid);
        }
        names
    }

    fn lookup(&mut self, m: ModId, path: &ast::Path) -> Option<Sym<'p>> {
        let found = self.lookup_unrecorded(m, path);
        if let Some(Sym::Task(_, b) | Sym::Let(_, b)) = found {
            self.resolved(path.span, Resolved::Global(b.name.span));
        }
        found
    }

    fn lookup_unrecorded(&mut self, m: ModId, path: &ast::Path) -> Option<Sym<'p>> {
        match path.segments.as_slice() {
            [one] => {
                if let Some(s) = self.local(m, &one.name) {
                    return Some(s);
                }
                let found: Vec<(String, Sym<'p>)> = self.prog.modules[m]
                    .imports
                    .iter()
                    .filter_map(|(ns, mid)| self.local(*mid, &one.name).map(|s| (ns.clone(), s)))
                    .collect();
                match found.len() {
                    1 => Some(found[0].1),
                    0 if self.is_broken_item(m, &one.name) => None,
                    0 => {
                        let names = self.visible_names(m);
                        let help = did_you_mean(&one.name, names.iter().map(String::as_str));
                        self.emit(
                            Diagnostic::new(
                                Code::UnknownName,
                                one.span,
                                format!("`{}` is not defined", one.name),
                                "not found",
                            )
                            .with_help(help.or_else(|| {
                                (self.prog.modules[m].imports.is_empty())
                                    .then(|| "the paper's tasks come with `use paper` at the top of the file".into())
                            })),
                        );
                        None
                    }
                    _ => {
                        let nss: Vec<String> = found
                            .iter()
                            .map(|(ns, _)| format!("`{ns}.{}`", one.name))
                            .collect();
                        self.emit(
                            Diagnostic::new(
                                Code::AmbiguousName,
                                one.span,
                                format!("`{}` is defined by several imports", one.name),
                                "ambiguous",
                            )
                            .help(format!("write one of {}", nss.join(", "))),
                        );
                        None
                    }
                }
            }
            [ns, name] => {
                let Some(mid) = self.prog.modules[m]
                    .imports
                    .iter()
                    .find(|(n, _)| *n == ns.name)
                    .map(|(_, mid)| *mid)
                else {
                    let nss: Vec<&str> = self.prog.modules[m]
                        .imports
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect();
                    let help = did_you_mean(&ns.name, nss.iter().copied()).unwrap_or_else(|| {
                        if ns.name == "paper" {
                            "add `use paper` at the top of the file".into()
                        } else {
                            "import it with `use`".into()
                        }
                    });
                    self.emit(
                        Diagnostic::new(
                            Code::UnknownName,
                            ns.span,
                            format!("no import is named `{}`", ns.name),
                            "unknown namespace",
                        )
                        .help(help),
                    );
                    return None;
                };
                match self.local(mid, &name.name) {
                    Some(s) => Some(s),
                    None => {
                        let names: Vec<String> = self
                            .items(mid)
                            .iter()
                            .filter_map(|i| match i {
                                ast::Item::Task(b) | ast::Item::Let(b) => Some(b.name.name.clone()),
                                _ => None,
                            })
                            .collect();
                        let help = did_you_mean(&name.name, names.iter().map(String::as_str));
                        self.emit(
                            Diagnostic::new(
                                Code::UnknownName,
                                name.span,
                                format!("`{}` defines no `{}`", ns.name, name.name),
                                "not found",
                            )
                            .with_help(help),
                        );
                        None
                    }
                }
            }
            _ => {
                self.emit(Diagnostic::new(
                    Code::UnknownName,
                    path.span,
                    format!("`{path}` is not defined"),
                    "names have at most one namespace: `paper.rain`",
                ));
                None
            }
        }
    }

    /// The degradation call that a task expression stands for: an inline call as it is, a task
    /// name as its definition (so `--set` can change its arguments). Reports unknown names.
    pub fn task_call_expr(&mut self, m: ModId, e: &Expr) -> Option<Expr> {
        match &e.kind {
            ExprKind::Call(_) => Some(e.clone()),
            ExprKind::Path(p) => match self.lookup(m, p)? {
                Sym::Task(_, b) => Some(b.value.clone()),
                Sym::Let(mid, b) => self.task_call_expr(mid, &b.value),
            },
            _ => {
                self.mismatch(e, &Ty::Task, None);
                None
            }
        }
    }

    /// Expands a `let` where a value of type `ty` is expected.
    fn expand_let(
        &mut self,
        m: ModId,
        b: &'p Binding,
        ty: &Ty,
        param: Option<&Param>,
        at: Span,
    ) -> Option<Value> {
        let key = (m, b.name.name.clone());
        if self.enter(&key, at) {
            let v = self.value(m, &b.value, ty, param);
            self.expanding.pop();
            v
        } else {
            None
        }
    }

    /// Pushes `key` on the expansion stack, or reports the cycle it closes.
    fn enter(&mut self, key: &(ModId, String), at: Span) -> bool {
        if let Some(i) = self.expanding.iter().position(|k| k == key) {
            let mut chain: Vec<String> = self.expanding[i..]
                .iter()
                .map(|(_, n)| format!("`{n}`"))
                .collect();
            chain.push(format!("`{}`", key.1));
            self.emit(
                Diagnostic::new(
                    Code::Cycle,
                    at,
                    format!(
                        "`{}` is defined in terms of itself: {}",
                        key.1,
                        chain.join(" -> ")
                    ),
                    "cycle closes here",
                )
                .help("a definition may use earlier ones, but not itself"),
            );
            return false;
        }
        self.expanding.push(key.clone());
        true
    }

    /// The task a `task` item defines (checked once, cached).
    fn task(&mut self, m: ModId, b: &'p Binding, at: Span) -> Option<ir::Task> {
        let key = (m, b.name.name.clone());
        if let Some(t) = self.tasks.get(&key) {
            return t.clone();
        }
        if !self.enter(&key, at) {
            return None;
        }
        let call = self.call(m, &b.value, Kind::Degradation);
        self.expanding.pop();
        let task = call.map(|degradation| ir::Task {
            name: b.name.name.clone(),
            degradation,
        });
        self.tasks.insert(key, task.clone());
        task
    }

    // ----- values ------------------------------------------------------------------------

    fn mismatch(&mut self, e: &Expr, ty: &Ty, param: Option<&Param>) {
        let what = param
            .map(|p| format!("`{}` takes", p.name))
            .unwrap_or_else(|| "expected".into());
        let help = match (&e.kind, ty) {
            (ExprKind::Str(s), Ty::Word(_) | Ty::Builtin(_) | Ty::Task) => {
                Some(format!("write it without quotes: {s}"))
            }
            (ExprKind::Path(p), Ty::Str | Ty::FilePath) => {
                Some(format!("strings are quoted: \"{p}\""))
            }
            (ExprKind::Number(_), Ty::List(_)) => {
                Some("a list is written in brackets: [1, 2]".into())
            }
            (ExprKind::List(_), Ty::Tuple(_)) => {
                Some("a tuple is written in parentheses: (0.9, 0.99)".into())
            }
            _ => None,
        };
        self.emit(
            Diagnostic::new(
                Code::TypeMismatch,
                e.span,
                format!("{what} {}, found {}", ty.describe(), e.kind.describe()),
                format!("expected {}", ty.describe()),
            )
            .with_help(help),
        );
    }

    /// Checks `e` against `ty` and resolves it.
    pub fn value(&mut self, m: ModId, e: &Expr, ty: &Ty, param: Option<&Param>) -> Option<Value> {
        // One built-in where a list of them goes is a list of one: `metrics = psnr`.
        if let (Ty::List(inner), ExprKind::Path(p)) = (ty, &e.kind) {
            if let (Ty::Builtin(k), Some(i)) = (*inner, p.as_ident()) {
                if builtins::lookup(*k, &i.name).is_some()
                    && self.local_or_imported(m, &i.name).is_none()
                {
                    return self.value(m, e, inner, param).map(|v| Value::List(vec![v]));
                }
            }
        }
        if let (Ty::List(inner), ExprKind::Call(c)) = (ty, &e.kind) {
            if let Ty::Builtin(k) = *inner {
                if builtins::lookup(*k, &c.callee.to_string()).is_some() {
                    return self.value(m, e, inner, param).map(|v| Value::List(vec![v]));
                }
            }
        }
        // A name may stand for a `let` wherever a value goes, except where it names a word,
        // a built-in, a model or a task directly.
        if let ExprKind::Path(p) = &e.kind {
            let direct = match ty {
                Ty::Word(ws) => p.as_ident().is_some_and(|i| ws.contains(&i.name.as_str())),
                Ty::Device => p
                    .as_ident()
                    .is_some_and(|i| ["auto", "cpu", "cuda"].contains(&i.name.as_str())),
                Ty::Builtin(k) => p
                    .as_ident()
                    .is_some_and(|i| builtins::lookup(*k, &i.name).is_some()),
                Ty::Model | Ty::Task => true,
                _ => false,
            };
            if !direct {
                let single_unknown_word = matches!(ty, Ty::Word(_) | Ty::Device | Ty::Builtin(_))
                    && p.as_ident()
                        .is_some_and(|i| self.local_or_imported(m, &i.name).is_none());
                if single_unknown_word {
                    return self.word_or_builtin(m, e, ty, p);
                }
                return match self.lookup(m, p)? {
                    Sym::Let(mid, b) => self.expand_let(mid, b, ty, param, e.span),
                    Sym::Task(..) => {
                        if matches!(ty, Ty::List(Ty::Task)) {
                            self.emit(
                                Diagnostic::new(
                                    Code::TypeMismatch,
                                    e.span,
                                    format!("expected a list of tasks, found the task `{p}`"),
                                    "a single task",
                                )
                                .help(format!("write a list: [{p}]")),
                            );
                            return None;
                        }
                        self.mismatch(e, ty, param);
                        None
                    }
                };
            }
        }
        match ty {
            Ty::Int | Ty::Float => self.number(e, ty, param),
            Ty::Bool => match e.kind {
                ExprKind::Bool(b) => Some(Value::Bool(b)),
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Str | Ty::FilePath => match &e.kind {
                ExprKind::Str(s) => Some(Value::Str(s.clone())),
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Word(_) => match &e.kind {
                ExprKind::Path(p) => self.word_or_builtin(m, e, ty, p),
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Device => match &e.kind {
                ExprKind::Path(p) => self.word_or_builtin(m, e, ty, p),
                ExprKind::Str(s) => {
                    let ok = s == "cpu"
                        || s == "auto"
                        || s == "cuda"
                        || s.strip_prefix("cuda:")
                            .is_some_and(|n| n.parse::<u32>().is_ok());
                    if ok {
                        Some(Value::Word(s.clone()))
                    } else {
                        self.emit(
                            Diagnostic::new(
                                Code::UnknownChoice,
                                e.span,
                                format!("`{s}` is not a device"),
                                "unknown device",
                            )
                            .help("devices: auto, cpu, cuda, or \"cuda:N\" for the N-th GPU"),
                        );
                        None
                    }
                }
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Builtin(k) => self.call(m, e, *k).map(Value::Call),
            Ty::Task => match &e.kind {
                ExprKind::Path(p) => match self.lookup(m, p)? {
                    Sym::Task(mid, b) => self.task(mid, b, e.span).map(Value::Task),
                    Sym::Let(mid, b) => self.expand_let(mid, b, ty, param, e.span),
                },
                ExprKind::Call(_) => {
                    // An inline task: `noise(sigma = 60)`.
                    let call = self.call(m, e, Kind::Degradation)?;
                    Some(Value::Task(ir::Task {
                        name: mio_grammar::format::flat(e),
                        degradation: call,
                    }))
                }
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Model => match &e.kind {
                ExprKind::Path(p)
                    if p.as_ident().is_some_and(|i| self.models.contains(&i.name)) =>
                {
                    self.resolved(p.span, Resolved::Model(p.to_string()));
                    Some(Value::Model(p.to_string()))
                }
                ExprKind::Path(p) if self.is_broken("model", &p.to_string()) => None,
                ExprKind::Path(p) => {
                    let help = did_you_mean(&p.to_string(), self.models.iter().map(String::as_str));
                    self.emit(
                        Diagnostic::new(
                            Code::UndefinedModel,
                            e.span,
                            format!("the workflow has no model `{p}`"),
                            "not a model",
                        )
                        .with_help(help),
                    );
                    None
                }
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::List(inner) => match &e.kind {
                ExprKind::List(xs) => {
                    let vals: Vec<Option<Value>> =
                        xs.iter().map(|x| self.value(m, x, inner, param)).collect();
                    vals.into_iter()
                        .collect::<Option<Vec<_>>>()
                        .map(Value::List)
                }
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Tuple(tys) => match &e.kind {
                ExprKind::Tuple(xs) if xs.len() == tys.len() => {
                    let vals: Vec<Option<Value>> = xs
                        .iter()
                        .zip(tys.iter())
                        .map(|(x, t)| self.value(m, x, t, param))
                        .collect();
                    vals.into_iter()
                        .collect::<Option<Vec<_>>>()
                        .map(Value::Tuple)
                }
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Sampled(inner) => match &e.kind {
                ExprKind::Range(lo, hi) => {
                    let l = self.value(m, lo, inner, param);
                    let h = self.value(m, hi, inner, param);
                    let (l, h) = (l?, h?);
                    if l.as_f64() > h.as_f64() {
                        self.emit(
                            Diagnostic::new(
                                Code::EmptyRange,
                                e.span,
                                format!("the range {l}..{h} is empty: its low end is above its high end"),
                                "low end above high end",
                            )
                            .help(format!("write it low to high: {h}..{l}")),
                        );
                        return None;
                    }
                    Some(Value::Range(Box::new(l), Box::new(h)))
                }
                _ => self.value(m, e, inner, param),
            },
            Ty::PerStage(inner) => match &e.kind {
                ExprKind::List(xs) => {
                    let vals: Vec<Option<Value>> =
                        xs.iter().map(|x| self.value(m, x, inner, param)).collect();
                    vals.into_iter()
                        .collect::<Option<Vec<_>>>()
                        .map(Value::List)
                }
                _ => self.value(m, e, inner, param),
            },
        }
    }

    fn local_or_imported(&self, m: ModId, name: &str) -> Option<Sym<'p>> {
        self.local(m, name).or_else(|| {
            self.prog.modules[m]
                .imports
                .iter()
                .find_map(|(_, mid)| self.local(*mid, name))
        })
    }

    /// A bare word where a word, a device or a built-in is expected.
    fn word_or_builtin(&mut self, m: ModId, e: &Expr, ty: &Ty, p: &ast::Path) -> Option<Value> {
        let name = p.to_string();
        match ty {
            Ty::Word(ws) => {
                if ws.contains(&name.as_str()) {
                    self.resolved(e.span, Resolved::Builtin);
                    return Some(Value::Word(name));
                }
                let help = did_you_mean(&name, ws.iter().copied())
                    .unwrap_or_else(|| format!("the choices are {}", ty.describe()));
                self.emit(
                    Diagnostic::new(
                        Code::UnknownChoice,
                        e.span,
                        format!("`{name}` is not one of the choices"),
                        format!("expected {}", ty.describe()),
                    )
                    .help(help),
                );
                None
            }
            Ty::Device => {
                if ["auto", "cpu", "cuda"].contains(&name.as_str()) {
                    self.resolved(e.span, Resolved::Builtin);
                    return Some(Value::Word(name));
                }
                let help = did_you_mean(&name, ["auto", "cpu", "cuda"]).unwrap_or_else(|| {
                    "devices: auto, cpu, cuda, or \"cuda:N\" for the N-th GPU".into()
                });
                self.emit(
                    Diagnostic::new(
                        Code::UnknownChoice,
                        e.span,
                        format!("`{name}` is not a device"),
                        "unknown device",
                    )
                    .help(help),
                );
                None
            }
            Ty::Builtin(k) => self.call(m, e, *k).map(Value::Call),
            _ => unreachable!(),
        }
    }

    fn number(&mut self, e: &Expr, ty: &Ty, param: Option<&Param>) -> Option<Value> {
        let ExprKind::Number(n) = &e.kind else {
            self.mismatch(e, ty, param);
            return None;
        };
        if let Some(u) = n.unit {
            let want = param.and_then(|p| p.unit);
            if want != Some(u.as_str()) {
                let pname = param.map(|p| p.name).unwrap_or("this value");
                let help = match want {
                    Some(w) => format!("`{pname}` is measured in {w}"),
                    None => format!("`{pname}` is a plain number: drop the `{}`", u.as_str()),
                };
                self.emit(
                    Diagnostic::new(
                        Code::WrongUnit,
                        e.span,
                        format!("`{pname}` does not take a value in {}", u.as_str()),
                        "wrong unit",
                    )
                    .help(help),
                );
                return None;
            }
        }
        let v = n.value;
        if *ty == Ty::Int && !n.is_int {
            let pname = param
                .map(|p| format!("`{}`", p.name))
                .unwrap_or_else(|| "this".into());
            self.emit(
                Diagnostic::new(
                    Code::NotInteger,
                    e.span,
                    format!("{pname} must be an integer, found {}", n.raw),
                    "not an integer",
                )
                .help(format!("use a whole number such as {}", v.round())),
            );
            return None;
        }
        if let Some(p) = param {
            let below = match p.min {
                Some(Bound::Incl(b)) => v < b,
                Some(Bound::Excl(b)) => v <= b,
                None => false,
            };
            let above = match p.max {
                Some(Bound::Incl(b)) => v > b,
                Some(Bound::Excl(b)) => v >= b,
                None => false,
            };
            if below || above {
                let bounds = p.bounds_text().unwrap_or_default();
                self.emit(
                    Diagnostic::new(
                        Code::OutOfRange,
                        e.span,
                        format!("`{}` must be {bounds}, found {}", p.name, n.raw),
                        format!("must be {bounds}"),
                    )
                    .help(p.doc.to_string()),
                );
                return None;
            }
        }
        Some(if *ty == Ty::Int {
            Value::Int(v as i64)
        } else {
            Value::Float(v)
        })
    }

    /// A parameter's default, evaluated once per check (defaults name no user definitions).
    fn default_value(&mut self, m: ModId, p: &'static Param, text: &'static str) -> Option<Value> {
        let key = p as *const Param as usize;
        if let Some(v) = self.default_values.get(&key) {
            return v.clone();
        }
        let e = self
            .defaults
            .entry(text)
            .or_insert_with(|| mio_grammar::parse_expr_at(text, 0).expect("catalog defaults parse"))
            .clone();
        self.quiet += 1;
        let v = self.value(m, &e, &p.ty, Some(p));
        self.quiet -= 1;
        self.default_values.insert(key, v.clone());
        v
    }

    /// Checks a call (or a bare name, the call with its defaults) of a built-in of `kind`.
    pub fn call(&mut self, m: ModId, e: &Expr, kind: Kind) -> Option<ir::Call> {
        let (callee, args, args_span) = match &e.kind {
            ExprKind::Call(c) => (&c.callee, c.args.as_slice(), c.args_span),
            ExprKind::Path(p) => (p, &[][..], e.span),
            _ => {
                self.mismatch(e, &Ty::Builtin(kind), None);
                return None;
            }
        };
        let b = self.builtin(callee, kind)?;
        let mut filled: Vec<Option<(Span, Option<Value>)>> = vec![None; b.params.len()];
        let mut seen_named = false;
        // Parameters the user probably meant by a misplaced or misspelt argument: not reported
        // as missing too.
        let mut meant: Vec<&str> = vec![];
        let mut positional_error = false;
        let mut positional = 0;
        for a in args {
            let idx = match &a.name {
                None => {
                    if seen_named {
                        positional_error = true;
                        self.emit(
                            Diagnostic::new(
                                Code::PositionalArgument,
                                a.span,
                                "a positional argument after named ones",
                                "name this argument",
                            )
                            .help(format!(
                                "write `name = value`; `{}` takes {}",
                                b.name,
                                names_of(b)
                            )),
                        );
                        continue;
                    }
                    positional += 1;
                    if positional > b.params.len() {
                        positional_error = true;
                        self.emit(
                            Diagnostic::new(
                                Code::PositionalArgument,
                                a.span,
                                format!(
                                    "`{}` takes {} argument(s), this is number {positional}",
                                    b.name,
                                    b.params.len()
                                ),
                                "one too many",
                            )
                            .help(format!("signature: {}", b.signature())),
                        );
                        continue;
                    }
                    positional - 1
                }
                Some(n) => {
                    seen_named = true;
                    match b.params.iter().position(|p| p.name == n.name) {
                        Some(i) => i,
                        None => {
                            meant.extend(closest(&n.name, b.params.iter().map(|p| p.name)));
                            let help = did_you_mean(&n.name, b.params.iter().map(|p| p.name))
                                .unwrap_or_else(|| format!("`{}` takes {}", b.name, names_of(b)));
                            self.emit(
                                Diagnostic::new(
                                    Code::UnknownArgument,
                                    n.span,
                                    format!("`{}` has no parameter `{}`", b.name, n.name),
                                    "unknown parameter",
                                )
                                .help(help),
                            );
                            continue;
                        }
                    }
                }
            };
            let p = &b.params[idx];
            if let Some((first, _)) = &filled[idx] {
                let first = *first;
                self.emit(
                    Diagnostic::new(
                        Code::DuplicateArgument,
                        a.span,
                        format!("`{}` is given twice", p.name),
                        "given again here",
                    )
                    .related(first, "first given here")
                    .help("keep one of them"),
                );
                continue;
            }
            let v = self.value(m, &a.value, &p.ty, Some(p));
            filled[idx] = Some((a.span, v));
        }
        let mut out = vec![];
        for (p, f) in b.params.iter().zip(filled) {
            match (f, p.default) {
                (Some((_, Some(v))), _) => out.push((p.name.to_string(), v)),
                (Some((_, None)), _) => {}
                (None, Default::Value(text)) => {
                    if let Some(v) = self.default_value(m, p, text) {
                        out.push((p.name.to_string(), v));
                    }
                }
                (None, Default::Absent) => {}
                (None, Default::Required) if positional_error || meant.contains(&p.name) => {}
                (None, Default::Required) => self.emit(
                    Diagnostic::new(
                        Code::MissingArgument,
                        if args.is_empty() { e.span } else { args_span },
                        format!("`{}` needs `{}`", b.name, p.name),
                        format!("missing `{}`", p.name),
                    )
                    .help(format!("{}: {}", p.signature(), p.doc)),
                ),
            }
        }
        Some(ir::Call {
            name: b.name.to_string(),
            args: out,
        })
    }

    fn builtin(&mut self, callee: &ast::Path, kind: Kind) -> Option<&'static Builtin> {
        let name = callee.to_string();
        if let Some(b) = builtins::lookup(kind, &name) {
            self.resolved(callee.span, Resolved::Builtin);
            return Some(b);
        }
        if let Some(other) = builtins::all().find(|b| b.name == name) {
            let help = format!(
                "{} here: {}",
                kind.article(),
                builtins::of_kind(kind)
                    .map(|b| b.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.emit(
                Diagnostic::new(
                    Code::WrongKind,
                    callee.span,
                    format!(
                        "`{name}` is {}, but {} is expected here",
                        other.kind.article(),
                        kind.article()
                    ),
                    format!("not {}", kind.article()),
                )
                .help(help),
            );
            return None;
        }
        if let Some(task) = callee.segments.last().filter(|_| callee.segments.len() > 1) {
            if builtins::lookup(kind, &task.name).is_some() {
                self.emit(
                    Diagnostic::new(
                        Code::UnknownBuiltin,
                        callee.span,
                        format!("`{name}` is a task, not a built-in: it cannot be called"),
                        "a task",
                    )
                    .help(format!(
                        "to change its parameters, call the degradation itself: `{}(...)`",
                        task.name
                    )),
                );
                return None;
            }
        }
        let help =
            did_you_mean(&name, builtins::of_kind(kind).map(|b| b.name)).unwrap_or_else(|| {
                format!(
                    "{} here: {}",
                    kind.article(),
                    builtins::of_kind(kind)
                        .map(|b| b.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        self.emit(
            Diagnostic::new(
                Code::UnknownBuiltin,
                callee.span,
                format!(
                    "there is no {} named `{name}`",
                    kind.article()
                        .trim_start_matches("a ")
                        .trim_start_matches("an ")
                ),
                "unknown",
            )
            .help(help),
        );
        None
    }

    /// Checks a block's settings against the catalog entry `block`; fills in defaults.
    fn settings(
        &mut self,
        m: ModId,
        block: &str,
        given: &[&Binding],
        head: Span,
    ) -> Vec<(String, Value)> {
        let spec = builtins::block(block);
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut out: Vec<(String, Value)> = vec![];
        let mut meant: Vec<&str> = vec![];
        for b in given {
            let Some(p) = spec.param(&b.name.name) else {
                meant.extend(closest(&b.name.name, spec.params.iter().map(|p| p.name)));
                let help = did_you_mean(&b.name.name, spec.params.iter().map(|p| p.name))
                    .unwrap_or_else(|| format!("`{block}` takes {}", names_of(spec)));
                self.emit(
                    Diagnostic::new(
                        Code::UnknownSetting,
                        b.name.span,
                        format!("`{block}` has no setting `{}`", b.name.name),
                        "unknown setting",
                    )
                    .help(help),
                );
                continue;
            };
            if let Some(first) = seen.get(p.name) {
                let first = *first;
                self.emit(
                    Diagnostic::new(
                        Code::DuplicateSetting,
                        b.name.span,
                        format!("`{}` is set twice", p.name),
                        "set again here",
                    )
                    .related(first, "first set here")
                    .help("keep one of them"),
                );
                continue;
            }
            seen.insert(p.name, b.name.span);
            if let Some(v) = self.value(m, &b.value, &p.ty, Some(p)) {
                out.push((p.name.to_string(), v));
            }
        }
        for p in spec.params {
            if seen.contains_key(p.name) {
                continue;
            }
            match p.default {
                Default::Value(text) => {
                    if let Some(v) = self.default_value(m, p, text) {
                        out.push((p.name.to_string(), v));
                    }
                }
                Default::Required if meant.contains(&p.name) => {}
                Default::Required => self.emit(
                    Diagnostic::new(
                        Code::MissingSetting,
                        head,
                        format!("`{block}` needs `{}`", p.name),
                        format!("missing `{}`", p.name),
                    )
                    .help(format!("add `{} = ...`: {}", p.name, p.doc)),
                ),
                Default::Absent => {}
            }
        }
        // Catalog order, so the canonical form does not depend on the order written.
        out.sort_by_key(|(n, _)| spec.params.iter().position(|p| p.name == n));
        out
    }

    // ----- items and workflows -------------------------------------------------------------

    /// Checks every module's items for duplicates and every root task, then each workflow and
    /// matrix row of the root file. Returns the checked workflows that are to be planned.
    pub fn program(&mut self, overrides: &[Override]) -> Vec<ir::Workflow> {
        for m in 0..self.prog.modules.len() {
            self.duplicate_items(m);
        }
        let root = Program::ROOT;
        for item in self.items(root) {
            if let ast::Item::Task(b) = item {
                self.task(root, b, b.name.span);
            }
        }
        let mut applied = vec![false; overrides.len()];
        let mut out = vec![];
        let bases: Vec<String> = self
            .items(root)
            .iter()
            .filter_map(|i| match i {
                ast::Item::Matrix(mx) => Some(mx.bases.iter().map(|b| b.name.clone())),
                _ => None,
            })
            .flatten()
            .collect();
        for item in self.items(root) {
            match item {
                ast::Item::Workflow(w) => {
                    let Some(mut stmts) = self.merged(root, w, &mut vec![]) else {
                        continue;
                    };
                    self.apply_overrides(&w.name.name, &mut stmts, overrides, &mut applied);
                    self.broken = self.broken_in_chain(root, w);
                    if let Some(wf) = self.workflow(root, &w.name.name, None, &stmts, w.span) {
                        // A matrix's base is planned through its rows only.
                        if !bases.contains(&w.name.name) {
                            out.push(wf);
                        }
                    }
                }
                ast::Item::Matrix(mx) => out.extend(self.matrix(root, mx, overrides, &mut applied)),
                _ => {}
            }
        }
        for (o, ok) in overrides.iter().zip(applied) {
            if !ok {
                let why = self.first_workflow_stmts(root).map_or_else(
                    || "the file has no workflow".to_string(),
                    |mut s| {
                        merge::apply(&mut s, strip_workflow(self.prog, &o.path), &o.value)
                            .err()
                            .unwrap_or_default()
                    },
                );
                self.emit(
                    Diagnostic::new(
                        Code::BadOverride,
                        o.path.span,
                        format!("`{}` names nothing that can be set", o.path),
                        "no such setting",
                    )
                    .help(if why.is_empty() {
                        "paths look like `train.iters`, `model.net.channels` or `seed`".into()
                    } else {
                        why
                    }),
                );
            }
        }
        out
    }

    fn first_workflow_stmts(&mut self, m: ModId) -> Option<Vec<Stmt>> {
        let w = self.items(m).iter().find_map(|i| match i {
            ast::Item::Workflow(w) => Some(w),
            _ => None,
        })?;
        self.quiet += 1;
        let s = self.merged(m, w, &mut vec![]);
        self.quiet -= 1;
        s
    }

    fn apply_overrides(
        &mut self,
        wf: &str,
        stmts: &mut [Stmt],
        overrides: &[Override],
        applied: &mut [bool],
    ) {
        for (i, o) in overrides.iter().enumerate() {
            let segs = &o.path.segments;
            let path = if segs.len() > 1 && segs[0].name == wf {
                &segs[1..]
            } else if segs.len() > 1 && self.is_workflow_name(&segs[0].name) {
                continue; // aimed at another workflow
            } else {
                &segs[..]
            };
            if merge::apply(stmts, path, &o.value).is_ok() {
                applied[i] = true;
            }
        }
    }

    fn is_workflow_name(&self, name: &str) -> bool {
        self.items(Program::ROOT).iter().any(|i| match i {
            ast::Item::Workflow(w) => w.name.name == name,
            ast::Item::Matrix(m) => m.name.name == name,
            _ => false,
        })
    }

    fn duplicate_items(&mut self, m: ModId) {
        let mut seen: HashMap<String, Span> = HashMap::new();
        for item in self.items(m) {
            let Some(name) = item.name() else { continue };
            if let ast::Item::Use(_) = item {
                continue;
            }
            if let Some(first) = seen.get(&name.name) {
                let first = *first;
                self.emit(
                    Diagnostic::new(
                        Code::Duplicate,
                        name.span,
                        format!("`{}` is defined twice", name.name),
                        "defined again here",
                    )
                    .related(first, "first defined here")
                    .help("rename one of them"),
                );
            } else {
                seen.insert(name.name.clone(), name.span);
            }
        }
    }

    /// A workflow's statements with its `extends` chain laid under them.
    fn merged(
        &mut self,
        m: ModId,
        w: &'p ast::Workflow,
        chain: &mut Vec<String>,
    ) -> Option<Vec<Stmt>> {
        if chain.contains(&w.name.name) {
            let mut names: Vec<String> = chain.iter().map(|n| format!("`{n}`")).collect();
            names.push(format!("`{}`", w.name.name));
            let at = w.extends.as_ref().map(|e| e.span).unwrap_or(w.name.span);
            self.emit(
                Diagnostic::new(
                    Code::Cycle,
                    at,
                    format!(
                        "workflows extend each other in a cycle: {}",
                        names.join(" -> ")
                    ),
                    "cycle closes here",
                )
                .help("a workflow cannot extend itself, directly or through others"),
            );
            return None;
        }
        let Some(parent_name) = &w.extends else {
            return Some(w.stmts.clone());
        };
        let Some(parent) = self.workflow_item(m, &parent_name.name) else {
            self.unknown_workflow(m, parent_name);
            return None;
        };
        chain.push(w.name.name.clone());
        let base = self.merged(m, parent, chain);
        chain.pop();
        Some(merge::overlay(base?, &w.stmts))
    }

    /// The broken statements of a workflow and of every workflow it extends.
    fn broken_in_chain(&self, m: ModId, w: &'p ast::Workflow) -> Vec<(String, String)> {
        let mut out = w.broken.clone();
        let mut seen = vec![w.name.name.clone()];
        let mut next = w.extends.as_ref();
        while let Some(parent) = next.and_then(|p| self.workflow_item(m, &p.name)) {
            if seen.contains(&parent.name.name) {
                break;
            }
            seen.push(parent.name.name.clone());
            out.extend(parent.broken.iter().cloned());
            next = parent.extends.as_ref();
        }
        out
    }

    fn workflow_item(&self, m: ModId, name: &str) -> Option<&'p ast::Workflow> {
        self.items(m).iter().find_map(|i| match i {
            ast::Item::Workflow(w) if w.name.name == name => Some(w),
            _ => None,
        })
    }

    fn unknown_workflow(&mut self, m: ModId, name: &Ident) {
        if self.is_broken_item(m, &name.name) {
            return;
        }
        let names: Vec<String> = self
            .items(m)
            .iter()
            .filter_map(|i| match i {
                ast::Item::Workflow(w) => Some(w.name.name.clone()),
                _ => None,
            })
            .collect();
        let help = did_you_mean(&name.name, names.iter().map(String::as_str));
        self.emit(
            Diagnostic::new(
                Code::UnknownWorkflow,
                name.span,
                format!("there is no workflow `{}` in this file", name.name),
                "unknown workflow",
            )
            .with_help(help),
        );
    }

    fn matrix(
        &mut self,
        m: ModId,
        mx: &'p ast::Matrix,
        overrides: &[Override],
        applied: &mut [bool],
    ) -> Vec<ir::Workflow> {
        let mut bases: Vec<(&Ident, Vec<Stmt>)> = vec![];
        self.broken.clear();
        for b in &mx.bases {
            match self.workflow_item(m, &b.name) {
                Some(w) => {
                    let broken = self.broken_in_chain(m, w);
                    self.broken.extend(broken);
                    if let Some(stmts) = self.merged(m, w, &mut vec![]) {
                        bases.push((b, stmts));
                    }
                }
                None => self.unknown_workflow(m, b),
            }
        }
        if bases.len() != mx.bases.len() {
            return vec![];
        }
        // Each axis must list values, and its path must name something in every base.
        let mut axes: Vec<(&ast::Axis, &[Expr])> = vec![];
        for a in &mx.axes {
            match &a.value.kind {
                ExprKind::List(xs) if !xs.is_empty() => {
                    let mut ok = true;
                    for (b, stmts) in &bases {
                        let mut probe = stmts.clone();
                        if let Err(why) = merge::apply(&mut probe, &a.path.segments, &xs[0]) {
                            self.emit(
                                Diagnostic::new(
                                    Code::BadAxis,
                                    a.path.span,
                                    format!("`{}` names nothing in workflow `{}`", a.path, b.name),
                                    "no such setting",
                                )
                                .help(why),
                            );
                            ok = false;
                            break;
                        }
                    }
                    if ok {
                        axes.push((a, xs));
                    }
                }
                _ => self.emit(
                    Diagnostic::new(
                        Code::BadAxisValues,
                        a.value.span,
                        format!("the axis `{}` must list its values", a.path),
                        "expected a non-empty list",
                    )
                    .help(format!("write `{} = [a, b, ...]`", a.path)),
                ),
            }
        }
        if axes.len() != mx.axes.len() {
            return vec![];
        }
        let mut rows = vec![];
        let per_base: usize = axes.iter().map(|(_, xs)| xs.len()).product();
        for (b, stmts) in &bases {
            for k in 0..per_base {
                let mut row = stmts.clone();
                let mut label = vec![];
                if bases.len() > 1 {
                    label.push(b.name.clone());
                }
                // The last axis varies fastest, like nested loops written in order.
                let mut picks = vec![0; axes.len()];
                let mut rem = k;
                for (i, (_, xs)) in axes.iter().enumerate().rev() {
                    picks[i] = rem % xs.len();
                    rem /= xs.len();
                }
                for (i, (a, xs)) in axes.iter().enumerate() {
                    let v = &xs[picks[i]];
                    let _ = merge::apply(&mut row, &a.path.segments, v);
                    label.push(format!(
                        "{}={}",
                        a.path.segments.last().unwrap().name,
                        short_value(v)
                    ));
                }
                self.apply_overrides(&mx.name.name, &mut row, overrides, applied);
                let name = format!("{}[{}]", mx.name.name, label.join(","));
                if let Some(wf) = self.workflow(m, &name, Some(&mx.name.name), &row, mx.span) {
                    rows.push(wf);
                }
            }
        }
        rows
    }

    /// Checks one workflow's statements (after extends, matrix and overrides).
    pub fn workflow(
        &mut self,
        m: ModId,
        name: &str,
        matrix: Option<&str>,
        stmts: &[Stmt],
        span: Span,
    ) -> Option<ir::Workflow> {
        let errors_before = self.diags.len();
        // Duplicates, by what each statement defines.
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut unique: Vec<&Stmt> = vec![];
        for s in stmts {
            let key = merge::stmt_key(s);
            let at = stmt_name_span(s);
            if let Some(first) = seen.get(&key) {
                let first = *first;
                let d = match s {
                    Stmt::Setting(b) => Diagnostic::new(
                        Code::DuplicateSetting,
                        at,
                        format!("`{}` is set twice", b.name.name),
                        "set again here",
                    )
                    .help("keep one of them"),
                    Stmt::Train(t) => Diagnostic::new(
                        Code::TrainedTwice,
                        at,
                        format!("`{}` is trained twice", t.model.name),
                        "second train block",
                    )
                    .help("declare a second model to train it another way: `model other = ...`"),
                    Stmt::Eval(e) if e.alias.is_none() => Diagnostic::new(
                        Code::Duplicate,
                        at,
                        format!(
                            "two evals of `{}` on `{}` share the name `{}`",
                            e.model.name,
                            e.data.name,
                            merge::eval_name(e)
                        ),
                        "same name",
                    )
                    .help("name each with `as`: `eval net on test as out_dis { ... }`"),
                    Stmt::Sweep(sw) if sw.alias.is_none() => Diagnostic::new(
                        Code::Duplicate,
                        at,
                        format!("two sweeps share the name `{}`", merge::sweep_name(sw)),
                        "same name",
                    )
                    .help("name each with `as`: `sweep net on test as mix2 { ... }`"),
                    _ => Diagnostic::new(
                        Code::Duplicate,
                        at,
                        format!("{} is defined twice", key.replacen(' ', " `", 1) + "`"),
                        "defined again here",
                    )
                    .help("rename one of them"),
                };
                self.emit(d.related(first, "first defined here"));
                continue;
            }
            seen.insert(key, at);
            unique.push(s);
        }

        let settings: Vec<&Binding> = unique
            .iter()
            .filter_map(|s| match s {
                Stmt::Setting(b) => Some(b),
                _ => None,
            })
            .collect();
        let settings = self.settings(m, "workflow", &settings, span);

        let mut data = vec![];
        let mut models = vec![];
        for s in &unique {
            match s {
                Stmt::Data(b) => {
                    if let Some(c) = self.call(m, &b.value, Kind::Dataset) {
                        data.push(ir::Data {
                            name: b.name.name.clone(),
                            source: c,
                            span: b.span,
                        });
                    }
                }
                Stmt::Model(b) => {
                    if let Some(c) = self.call(m, &b.value, Kind::Backbone) {
                        self.backbone_shape(&c, &b.value);
                        let prompt = match c
                            .arg("prompt")
                            .and_then(Value::as_call)
                            .map(|p| p.name.as_str())
                        {
                            Some("explicit") => PromptKind::Explicit,
                            Some("adaptive") => PromptKind::Adaptive,
                            _ => PromptKind::None,
                        };
                        models.push(ir::Model {
                            name: b.name.name.clone(),
                            backbone: c,
                            prompt,
                            span: b.span,
                        });
                    }
                }
                _ => {}
            }
        }
        let data_names: Vec<String> = unique
            .iter()
            .filter_map(|s| match s {
                Stmt::Data(b) => Some(b.name.name.clone()),
                _ => None,
            })
            .collect();
        let model_names: Vec<String> = unique
            .iter()
            .filter_map(|s| match s {
                Stmt::Model(b) => Some(b.name.name.clone()),
                _ => None,
            })
            .collect();
        self.models = model_names.clone();
        let data_stmt = |n: &str| {
            unique.iter().find_map(|s| match s {
                Stmt::Data(b) if b.name.name == n => Some(b),
                _ => None,
            })
        };

        let mut wf = ir::Workflow {
            name: name.to_string(),
            matrix: matrix.map(str::to_string),
            settings,
            data,
            models,
            trains: vec![],
            evals: vec![],
            sweeps: vec![],
            report: vec![],
            span,
        };

        let trained: Vec<String> = unique
            .iter()
            .filter_map(|s| match s {
                Stmt::Train(t) => Some(t.model.name.clone()),
                _ => None,
            })
            .collect();

        for s in &unique {
            match s {
                Stmt::Train(t) => {
                    let model_ok = self.ref_model(&t.model, &model_names);
                    let data_ok = self.ref_data(&t.data, &data_names);
                    let given: Vec<&Binding> = t.block.settings.iter().collect();
                    let settings =
                        self.settings(m, "train", &given, head_span(t.span, t.block.span));
                    if data_ok {
                        if let Some(d) = wf.data(&t.data.name) {
                            if d.source.name == "pairs" {
                                self.emit(
                                    Diagnostic::new(
                                        Code::NotTrainingData,
                                        t.data.span,
                                        format!("`{}` holds ready-made pairs; training degrades clean images itself", t.data.name),
                                        "not clean images",
                                    )
                                    .related(d.span, "declared with `pairs` here")
                                    .help("train on `images(\"folder of clean images\")`; use pairs for evaluation"),
                                );
                            }
                        }
                    }
                    if let Some(train) = self.train(t, settings, &wf) {
                        if model_ok && data_ok {
                            self.patch_fits(&wf, &train, t, data_stmt(&t.data.name));
                        }
                        wf.trains.push(train);
                    }
                }
                Stmt::Eval(e) => {
                    let model_ok = self.ref_model(&e.model, &model_names)
                        && self.ref_trained(&e.model, &trained);
                    self.ref_data(&e.data, &data_names);
                    let given: Vec<&Binding> = e.block.settings.iter().collect();
                    let settings =
                        self.settings(m, "eval", &given, head_span(e.span, e.block.span));
                    let tasks: Vec<ir::Task> = get(&settings, "tasks")
                        .and_then(Value::as_list)
                        .map(|l| l.iter().filter_map(|v| v.as_task().cloned()).collect())
                        .unwrap_or_default();
                    let true_labels =
                        get(&settings, "labels").and_then(Value::as_word) == Some("known");
                    if model_ok && true_labels {
                        if let Some(at) = e.block.get("tasks").map(|b| b.value.span) {
                            for t in &tasks {
                                self.prompt_exists(&wf, &e.model.name, t, at, "this eval");
                            }
                        }
                    }
                    wf.evals.push(ir::Eval {
                        name: merge::eval_name(e),
                        model: e.model.name.clone(),
                        data: e.data.name.clone(),
                        tasks,
                        settings,
                        span: e.span,
                    });
                }
                Stmt::Sweep(sw) => {
                    let model_ok = self.ref_model(&sw.model, &model_names)
                        && self.ref_trained(&sw.model, &trained);
                    let target = match &sw.target {
                        ast::SweepTarget::Data(d) => {
                            self.ref_data(d, &data_names);
                            ir::SweepTarget::Data(d.name.clone())
                        }
                        ast::SweepTarget::File { path, .. } => ir::SweepTarget::File(path.clone()),
                    };
                    let given: Vec<&Binding> = sw.block.settings.iter().collect();
                    let settings =
                        self.settings(m, "sweep", &given, head_span(sw.span, sw.block.span));
                    let over_param = get(&settings, "param").is_some();
                    let head = head_span(sw.span, sw.block.span);
                    let needs: &[&str] = if over_param {
                        &["degrade", "values"]
                    } else {
                        &["from", "to"]
                    };
                    for key in needs {
                        // Written but wrong (`to = rainn`) is reported at the value, not here.
                        if get(&settings, key).is_none() && sw.block.get(key).is_none() {
                            let what = if over_param {
                                "a sweep over a degradation parameter"
                            } else {
                                "a prompt interpolation"
                            };
                            self.emit(
                                Diagnostic::new(
                                    Code::MissingSetting,
                                    head,
                                    format!("{what} needs `{key}`"),
                                    format!("missing `{key}`"),
                                )
                                .help(if over_param {
                                    "for example: degrade = paper.noise, param = \"sigma\", values = [10, 30, 50]"
                                } else {
                                    "for example: from = lowlight, to = rain"
                                }),
                            );
                        }
                    }
                    if let (Some(Value::Str(name)), Some(Value::Task(t)), Some(b)) = (
                        get(&settings, "param"),
                        get(&settings, "degrade"),
                        sw.block.get("param"),
                    ) {
                        let params: Vec<&str> =
                            mio_stdlib::builtins::lookup(Kind::Degradation, &t.degradation.name)
                                .map(|d| d.params.iter().map(|p| p.name).collect())
                                .unwrap_or_default();
                        if !params.contains(&name.as_str()) {
                            let help =
                                crate::diagnostic::did_you_mean(name, params.iter().copied())
                                    .unwrap_or_else(|| {
                                        format!(
                                            "`{}` takes: {}",
                                            t.degradation.name,
                                            params.join(", ")
                                        )
                                    });
                            self.emit(
                                Diagnostic::new(
                                    Code::UnknownArgument,
                                    b.value.span,
                                    format!("`{}` has no parameter `{name}`", t.degradation.name),
                                    "not a parameter of the degradation",
                                )
                                .help(help),
                            );
                        }
                    }
                    if model_ok && !over_param {
                        let prompt = wf.model(&sw.model.name).map(|x| x.prompt);
                        if prompt == Some(PromptKind::None) {
                            self.emit(
                                Diagnostic::new(
                                    Code::NoPrompt,
                                    sw.model.span,
                                    format!("`{}` has no prompt to interpolate", sw.model.name),
                                    "model without prompt",
                                )
                                .help(
                                    "give the backbone `prompt = explicit` or `prompt = adaptive`",
                                ),
                            );
                        } else if prompt == Some(PromptKind::Explicit) {
                            for key in ["from", "to"] {
                                if let (Some(Value::Task(t)), Some(b)) =
                                    (get(&settings, key), sw.block.get(key))
                                {
                                    let t = t.clone();
                                    self.prompt_exists(
                                        &wf,
                                        &sw.model.name,
                                        &t,
                                        b.value.span,
                                        "this sweep",
                                    );
                                }
                            }
                        }
                    }
                    wf.sweeps.push(ir::Sweep {
                        name: merge::sweep_name(sw),
                        model: sw.model.name.clone(),
                        target,
                        settings,
                        span: sw.span,
                    });
                }
                Stmt::Report(r) => {
                    let given: Vec<&Binding> = r.block.settings.iter().collect();
                    wf.report = self.settings(m, "report", &given, head_span(r.span, r.block.span));
                }
                _ => {}
            }
        }
        if wf.report.is_empty() {
            wf.report = self.settings(m, "report", &[], span);
        }
        (self.diags.len() == errors_before).then_some(wf)
    }

    fn ref_model(&mut self, id: &Ident, models: &[String]) -> bool {
        if models.contains(&id.name) {
            self.resolved(id.span, Resolved::Model(id.name.clone()));
            return true;
        }
        if self.is_broken("model", &id.name) {
            return false;
        }
        let help = did_you_mean(&id.name, models.iter().map(String::as_str))
            .unwrap_or_else(|| format!("declare it: `model {} = srresnet()`", id.name));
        self.emit(
            Diagnostic::new(
                Code::UndefinedModel,
                id.span,
                format!("the workflow has no model `{}`", id.name),
                "not a model",
            )
            .help(help),
        );
        false
    }

    fn ref_data(&mut self, id: &Ident, data: &[String]) -> bool {
        if data.contains(&id.name) {
            self.resolved(id.span, Resolved::Data(id.name.clone()));
            return true;
        }
        if self.is_broken("data", &id.name) {
            return false;
        }
        let help = did_you_mean(&id.name, data.iter().map(String::as_str))
            .unwrap_or_else(|| format!("declare it: `data {} = images(\"folder\")`", id.name));
        self.emit(
            Diagnostic::new(
                Code::UndefinedData,
                id.span,
                format!("the workflow has no data `{}`", id.name),
                "not declared",
            )
            .help(help),
        );
        false
    }

    fn ref_trained(&mut self, id: &Ident, trained: &[String]) -> bool {
        if trained.contains(&id.name) {
            self.resolved(id.span, Resolved::Model(id.name.clone()));
            return true;
        }
        if self.is_broken("train", &id.name) {
            return false;
        }
        self.emit(
            Diagnostic::new(
                Code::NeverTrained,
                id.span,
                format!("`{}` is never trained", id.name),
                "untrained model",
            )
            .help(format!(
                "add `train {} on DATA {{ ... }}` to the workflow",
                id.name
            )),
        );
        false
    }

    /// For an explicit-prompt model: is there a trained task with `task`'s degradation?
    fn prompt_exists(
        &mut self,
        wf: &ir::Workflow,
        model: &str,
        task: &ir::Task,
        at: Span,
        user: &str,
    ) {
        let Some(mdl) = wf.model(model) else { return };
        if mdl.prompt != PromptKind::Explicit {
            return;
        }
        let Some(train) = wf.trains.iter().find(|t| t.model == model) else {
            return;
        };
        let kinds: Vec<&str> = train
            .stages
            .last()
            .map(|s| {
                s.tasks
                    .iter()
                    .map(|t| t.degradation.name.as_str())
                    .collect()
            })
            .unwrap_or_default();
        if !kinds.contains(&task.degradation.name.as_str()) {
            self.emit(
                Diagnostic::new(
                    Code::NoPromptForTask,
                    at,
                    format!(
                        "`{model}` has no prompt for `{}`: it was trained on {}",
                        task.name,
                        kinds.join(", ")
                    ),
                    format!("{user} needs a `{}` prompt", task.degradation.name),
                )
                .help("explicit prompts exist only for the degradations a model was trained on"),
            );
        }
    }

    /// Stages from the strategy, tasks and iterations of a train block.
    fn train(
        &mut self,
        t: &ast::Train,
        settings: Vec<(String, Value)>,
        _wf: &ir::Workflow,
    ) -> Option<ir::Train> {
        let strategy = get(&settings, "strategy")
            .and_then(Value::as_call)
            .cloned()?;
        let tasks: Option<Vec<ir::Task>> = get(&settings, "tasks")
            .and_then(Value::as_list)
            .map(|l| l.iter().filter_map(|v| v.as_task().cloned()).collect());
        let strategy_expr = t.block.get("strategy").map(|b| &b.value);
        let strategy_span = strategy_expr.map(|e| e.span).unwrap_or(t.block.span);
        let stage_tasks: Vec<Vec<ir::Task>> = if strategy.name == "sequential" {
            let order: Vec<ir::Task> = strategy
                .arg("order")
                .and_then(Value::as_list)
                .map(|l| l.iter().filter_map(|v| v.as_task().cloned()).collect())
                .unwrap_or_default();
            let order_span = strategy_expr
                .and_then(|e| match &e.kind {
                    ExprKind::Call(c) => c
                        .args
                        .iter()
                        .find(|a| a.name.as_ref().is_none_or(|n| n.name == "order")),
                    _ => None,
                })
                .map(|a| a.value.span)
                .unwrap_or(strategy_span);
            self.permutation(
                &order,
                tasks.as_deref(),
                order_span,
                t.block.get("tasks").map(|b| b.value.span),
            );
            (1..=order.len()).map(|k| order[..k].to_vec()).collect()
        } else {
            match tasks {
                Some(ts) if !ts.is_empty() => vec![ts],
                Some(_) => {
                    let at = t
                        .block
                        .get("tasks")
                        .map(|b| b.value.span)
                        .unwrap_or(t.block.span);
                    self.emit(
                        Diagnostic::new(
                            Code::MixedNeedsTasks,
                            at,
                            "mixed training of no task",
                            "empty list",
                        )
                        .help("list the tasks to train, e.g. `tasks = paper.tasks`"),
                    );
                    return None;
                }
                // A misspelt `strategy` (reported as an unknown setting) is not mixed training.
                None if t.block.settings.iter().any(|b| {
                    b.name.name != "strategy" && closest(&b.name.name, ["strategy"]).is_some()
                }) =>
                {
                    return None;
                }
                None => {
                    self.emit(
                        Diagnostic::new(
                            Code::MixedNeedsTasks,
                            head_span(t.span, t.block.span),
                            "mixed training needs the list of tasks to train",
                            "no `tasks`",
                        )
                        .help("add `tasks = paper.tasks` (or your own list) to the train block"),
                    );
                    return None;
                }
            }
        };
        let iters = get(&settings, "iters")?;
        let per_stage: Vec<u64> = match iters {
            Value::Int(n) => vec![*n as u64; stage_tasks.len()],
            // Mixed learning gets the same total as the sequential run the list describes.
            Value::List(l) if strategy.name == "mixed" => {
                vec![l.iter().filter_map(Value::as_int).map(|n| n as u64).sum()]
            }
            Value::List(l) => {
                let v: Vec<u64> = l
                    .iter()
                    .filter_map(Value::as_int)
                    .map(|n| n as u64)
                    .collect();
                if v.len() != stage_tasks.len() {
                    let at = t
                        .block
                        .get("iters")
                        .map(|b| b.value.span)
                        .unwrap_or(t.block.span);
                    let n = stage_tasks.len();
                    let help = format!("a sequential run over {n} tasks has {n} stages; give {n} numbers or one for all");
                    self.emit(
                        Diagnostic::new(
                            Code::StageCount,
                            at,
                            format!("{} iteration count(s) for {n} stage(s)", v.len()),
                            format!("{} entries", v.len()),
                        )
                        .related(strategy_span, format!("{n} stage(s) from this strategy"))
                        .help(help),
                    );
                    return None;
                }
                v
            }
            _ => return None,
        };
        Some(ir::Train {
            model: t.model.name.clone(),
            data: t.data.name.clone(),
            strategy,
            stages: stage_tasks
                .into_iter()
                .zip(per_stage)
                .map(|(tasks, iters)| ir::Stage { tasks, iters })
                .collect(),
            settings,
            span: t.span,
        })
    }

    fn permutation(
        &mut self,
        order: &[ir::Task],
        tasks: Option<&[ir::Task]>,
        at: Span,
        tasks_at: Option<Span>,
    ) {
        let names: Vec<&str> = order.iter().map(|t| t.name.as_str()).collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                self.emit(
                    Diagnostic::new(
                        Code::OrderNotPermutation,
                        at,
                        format!("the sequential order lists `{n}` twice"),
                        format!("`{n}` repeated"),
                    )
                    .help("each task joins once; later stages replay it automatically"),
                );
                return;
            }
        }
        let Some(tasks) = tasks else { return };
        let trained: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        let missing: Vec<&str> = trained
            .iter()
            .filter(|t| !names.contains(t))
            .copied()
            .collect();
        let extra: Vec<&str> = names
            .iter()
            .filter(|t| !trained.contains(t))
            .copied()
            .collect();
        if missing.is_empty() && extra.is_empty() {
            return;
        }
        let mut parts = vec![];
        if !missing.is_empty() {
            parts.push(format!("it leaves out {}", quoted(&missing)));
        }
        if !extra.is_empty() {
            parts.push(format!("it adds {}", quoted(&extra)));
        }
        let mut d = Diagnostic::new(
            Code::OrderNotPermutation,
            at,
            format!("the sequential order is not a permutation of the trained tasks: {}", parts.join(" and ")),
            "not a permutation of `tasks`",
        )
        .help("list every trained task exactly once, or drop `tasks` to train exactly the order's tasks");
        if let Some(ts) = tasks_at {
            d = d.related(ts, "the trained tasks");
        }
        self.emit(d);
    }

    /// A backbone's settings that are each valid but do not fit together: list lengths, and
    /// attention heads that must divide the channels they split.
    pub(crate) fn backbone_shape(&mut self, c: &ir::Call, e: &Expr) {
        let arg_span = |name: &str| match &e.kind {
            ExprKind::Call(call) => call
                .args
                .iter()
                .find(|a| a.name.as_ref().is_some_and(|n| n.name == name))
                .map(|a| a.span)
                .unwrap_or(e.span),
            _ => e.span,
        };
        let int = |name: &str| c.arg(name).and_then(Value::as_int).unwrap_or(1);
        let ints = |name: &str| -> Vec<i64> {
            c.arg(name)
                .and_then(Value::as_list)
                .map(|l| l.iter().filter_map(Value::as_int).collect())
                .unwrap_or_default()
        };
        let mut problems: Vec<(&str, String, String, String)> = vec![];
        match c.name.as_str() {
            "swinir" => {
                let (embed, heads) = (int("embed"), int("heads"));
                if heads > 0 && embed % heads != 0 {
                    problems.push((
                        "heads",
                        format!("{heads} heads do not divide the embedding of {embed} channels"),
                        "does not divide `embed`".into(),
                        format!("use heads that divide {embed}, or an `embed` that is a multiple of {heads}"),
                    ));
                }
                if ints("depths").iter().any(|&d| d < 1) || ints("depths").is_empty() {
                    problems.push((
                        "depths",
                        "every residual group needs at least one Swin block".into(),
                        "an empty group".into(),
                        "give each group a depth of 1 or more, e.g. [6, 6, 6, 6]".into(),
                    ));
                }
            }
            "restormer" => {
                for name in ["blocks", "heads"] {
                    let n = ints(name).len();
                    if n != 4 {
                        problems.push((
                            name,
                            format!("Restormer has four levels but `{name}` lists {n}"),
                            "needs four entries".into(),
                            format!(
                                "one entry per level, e.g. `{name} = {}`",
                                if name == "blocks" {
                                    "[4, 6, 6, 8]"
                                } else {
                                    "[1, 2, 4, 8]"
                                }
                            ),
                        ));
                    }
                }
                let (dim, heads) = (int("dim"), ints("heads"));
                if heads.len() == 4 {
                    // Level i works on dim * 2^i channels (level 1's decoder on twice that).
                    let bad: Vec<String> = heads
                        .iter()
                        .enumerate()
                        .filter(|&(i, &h)| h < 1 || (dim << i) % h != 0)
                        .map(|(i, &h)| {
                            format!("{h} heads at level {} ({} channels)", i + 1, dim << i)
                        })
                        .collect();
                    if !bad.is_empty() {
                        problems.push((
                            "heads",
                            format!("attention heads must divide their level's channels: {}", bad.join(", ")),
                            "does not divide the channels".into(),
                            format!("level i has dim x 2^(i-1) channels ({}, {}, {}, {}); pick heads that divide them", dim, 2 * dim, 4 * dim, 8 * dim),
                        ));
                    }
                }
            }
            _ => {}
        }
        for (arg, message, label, help) in problems {
            self.emit(
                Diagnostic::new(Code::BackboneShape, arg_span(arg), message, label).help(help),
            );
        }
    }

    fn patch_fits(
        &mut self,
        wf: &ir::Workflow,
        train: &ir::Train,
        t: &ast::Train,
        data: Option<&Binding>,
    ) {
        let (Some(model), Some(d)) = (wf.model(&train.model), wf.data(&train.data)) else {
            return;
        };
        let Some(b) = builtins::lookup(Kind::Backbone, &model.backbone.name) else {
            return;
        };
        let multiple = match b.patch_multiple {
            PatchMultiple::Fixed(n) => n as i64,
            PatchMultiple::Param(p) => model.backbone.arg(p).and_then(Value::as_int).unwrap_or(1),
        };
        let Some(patch) = d.source.arg("patch").and_then(Value::as_int) else {
            return;
        };
        if multiple > 1 && patch % multiple != 0 {
            let at = data
                .and_then(|b| match &b.value.kind {
                    ExprKind::Call(c) => c
                        .args
                        .iter()
                        .find(|a| a.name.as_ref().is_some_and(|n| n.name == "patch")),
                    _ => None,
                })
                .map(|a| a.span)
                .unwrap_or(t.data.span);
            let lower = patch / multiple * multiple;
            let why = match b.patch_multiple {
                PatchMultiple::Param(p) => format!("its `{p}`"),
                PatchMultiple::Fixed(_) => "its downsampling".into(),
            };
            self.emit(
                Diagnostic::new(
                    Code::PatchMultiple,
                    at,
                    format!(
                        "patch {patch} is not a multiple of {multiple}, which `{}` needs",
                        model.backbone.name
                    ),
                    format!("not a multiple of {multiple}"),
                )
                .related(
                    model.span,
                    format!(
                        "`{}` is a {} ({why} is {multiple})",
                        model.name, model.backbone.name
                    ),
                )
                .help(format!(
                    "use patch = {} or {}",
                    lower.max(multiple),
                    lower + multiple
                )),
            );
        }
    }
}

fn get<'a>(settings: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    settings.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn names_of(b: &Builtin) -> String {
    if b.params.is_empty() {
        return "no arguments".into();
    }
    b.params
        .iter()
        .map(|p| format!("`{}`", p.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The part of a statement before its block (`train net on data`).
fn head_span(stmt: Span, block: Span) -> Span {
    Span::new(stmt.start, block.start.max(stmt.start + 1))
}

fn stmt_name_span(s: &Stmt) -> Span {
    match s {
        Stmt::Setting(b) | Stmt::Data(b) | Stmt::Model(b) => b.name.span,
        Stmt::Train(t) => t.model.span,
        Stmt::Eval(e) => e.alias.as_ref().map(|a| a.span).unwrap_or(e.model.span),
        Stmt::Sweep(sw) => sw.alias.as_ref().map(|a| a.span).unwrap_or(sw.model.span),
        Stmt::Report(r) => Span::new(r.span.start, r.span.start + 6),
    }
}

/// A matrix value as it appears in a row's name: a call by its callee, else as written.
fn short_value(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Call(c) => c.callee.to_string(),
        _ => mio_grammar::format::flat(e),
    }
}

/// An override path without its leading workflow name.
fn strip_workflow<'a>(prog: &Program, path: &'a ast::Path) -> &'a [Ident] {
    let segs = &path.segments;
    let is_wf = prog.modules[Program::ROOT]
        .ast
        .items
        .iter()
        .any(|i| match i {
            ast::Item::Workflow(w) => segs.len() > 1 && w.name.name == segs[0].name,
            _ => false,
        });
    if is_wf {
        &segs[1..]
    } else {
        segs
    }
}

/// Suggests a close name for error messages elsewhere in the engine.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    closest(name, candidates)
}
