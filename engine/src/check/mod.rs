//! The semantic check: names, types, units, ranges and the rules of the method (a sequential
//! order is a permutation of the trained tasks, one iteration count per stage, patches that
//! fit the backbone's window, prompts that exist). It never stops at the first error: each
//! mistake becomes a diagnostic and checking goes on with what is known.

use std::collections::HashMap;

use mio_catalog::builtins;
use mio_catalog::{Bound, Builtin, Default, Kind, Param, Ty};
use mio_grammar::ast::{self, Binding, Expr, ExprKind, Ident, Stmt};
use mio_grammar::Span;

use crate::diagnostic::{closest, did_you_mean, Code, Diagnostic};
use crate::ir::{self, PromptKind, Value};
use crate::load::{ModId, Program};
use crate::merge;

mod program;
mod resolve;
mod types;
mod workflow;

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
