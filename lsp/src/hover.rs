//! Hover: the catalog's signature and docs for built-ins, their parameters and block settings;
//! for tasks, models and data, the definition and the effective value (every default filled in
//! by the checker, overrides and imports applied).

use lsp_types::{Hover, HoverContents, MarkupContent, MarkupKind, Position};
use mio_catalog::{builtins, Ty};
use mio_grammar::ast;
use mio_grammar::cursor::{surroundings, word_at, word_before};

use crate::completion::builtin_named;
use crate::document::Document;
use mio_engine::check::Resolved;

fn md(value: String) -> Hover {
    Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value,
        }),
        range: None,
    }
}

fn code(text: &str) -> String {
    format!("```mio\n{text}\n```")
}

pub fn hover(doc: &Document, pos: Position) -> Option<Hover> {
    let text = &doc.text;
    let off = doc.offset(pos);
    let s = surroundings(text, off);
    if s.in_comment_or_string {
        return None;
    }
    let (start, word) = word_at(text, off);
    if word.is_empty() {
        return None;
    }
    let after = text[start + word.len()..].trim_start();
    let is_call = after.starts_with('(');
    let is_key = after.starts_with('=') && !after.starts_with("==");
    if is_call {
        let b = builtin_named(word)?;
        return Some(md(format!("{}\n\n{}", code(&b.signature()), b.doc)));
    }
    if is_key {
        let param = match s.open.last() {
            Some(o) if o.bracket == b'(' => {
                builtin_named(word_before(text, o.offset)).and_then(|b| b.param(word))
            }
            Some(o) if o.bracket == b'{' => {
                let head = text[..o.offset]
                    .rsplit('\n')
                    .next()
                    .unwrap_or("")
                    .trim_start();
                let kw = head
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .next()
                    .unwrap_or("");
                builtins::BLOCKS
                    .iter()
                    .find(|b| b.name == kw)
                    .and_then(|b| b.param(word))
            }
            _ => None,
        };
        if let Some(p) = param {
            let bounds = p
                .bounds_text()
                .map(|b| format!("\n\nAllowed: {b}."))
                .unwrap_or_default();
            return Some(md(format!("{}\n\n{}{bounds}", code(&p.signature()), p.doc)));
        }
    }
    if let Some(d) = mio_grammar::keywords::lookup(word)
        .filter(|k| k.place != mio_grammar::keywords::Place::Literal)
        .map(|k| k.meaning)
    {
        // Only where it is a keyword: at the start of an item or statement.
        let line = text[..start].rsplit('\n').next().unwrap_or("");
        if line.trim().is_empty() || matches!(word, "extends" | "over" | "then") {
            return Some(md(format!("**{word}**: {d}")));
        }
    }
    let global = doc.base() + start;
    let builtin =
        || builtin_named(word).map(|b| md(format!("{}\n\n{}", code(&b.signature()), b.doc)));
    // What the checker took the name for decides: `strategy = mixed` is the built-in strategy
    // even where a model is called `mixed`.
    match crate::navigation::resolution_at(doc, global) {
        Some(Resolved::Builtin) => builtin(),
        Some(r) => named(doc, word, global, Some(r)),
        None => named(doc, word, global, None).or_else(builtin),
    }
}

/// A task, let, model or data name (`role`: what the checker resolved it to, when it did).
fn named(doc: &Document, word: &str, global: usize, role: Option<&Resolved>) -> Option<Hover> {
    let locals = !matches!(role, Some(Resolved::Global(_)));
    let prog = &doc.checked.program;
    // Models and data of the workflow around the cursor, with their checked values.
    for item in &prog.modules[mio_engine::load::Program::ROOT].ast.items {
        let ast::Item::Workflow(w) = item else {
            continue;
        };
        if !w.span.contains(global) || !locals {
            continue;
        }
        let checked = doc.checked.workflows.iter().find(|c| c.name == w.name.name);
        for s in &w.stmts {
            match s {
                ast::Stmt::Model(b)
                    if b.name.name == word && !matches!(role, Some(Resolved::Data(_))) =>
                {
                    let effective = checked
                        .and_then(|c| c.model(word))
                        .map(|m| m.backbone.to_string());
                    return Some(md(describe("model", b, effective)));
                }
                ast::Stmt::Data(b)
                    if b.name.name == word && !matches!(role, Some(Resolved::Model(_))) =>
                {
                    let effective = checked
                        .and_then(|c| c.data(word))
                        .map(|d| d.source.to_string());
                    return Some(md(describe("data", b, effective)));
                }
                _ => {}
            }
        }
    }
    // Tasks and lets, here or in an import (`paper.noise` or `noise`).
    let (ns, name) = match word.rsplit_once('.') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, word),
    };
    let root = &prog.modules[mio_engine::load::Program::ROOT];
    let mut modules: Vec<(Option<&str>, usize)> = vec![(None, mio_engine::load::Program::ROOT)];
    modules.extend(root.imports.iter().map(|(n, m)| (Some(n.as_str()), *m)));
    for (mns, mid) in modules {
        if ns.is_some() && ns != mns {
            continue;
        }
        for item in &prog.modules[mid].ast.items {
            let (kw, b) = match item {
                ast::Item::Task(b) => ("task", b),
                ast::Item::Let(b) => ("let", b),
                _ => continue,
            };
            if b.name.name != name {
                continue;
            }
            let mut checker = mio_engine::check::Checker::new(prog);
            let effective = if kw == "task" {
                checker
                    .value(mid, &b.value, &Ty::Task, None)
                    .map(|v| match v {
                        mio_engine::ir::Value::Task(t) => t.text(),
                        other => other.to_string(),
                    })
            } else {
                None
            };
            let mut text = describe(kw, b, effective);
            if let (Some(deg), true) = (task_degradation(b), kw == "task") {
                text.push_str("\n\n");
                text.push_str(deg.doc);
            }
            if let Some(ns) = mns {
                text.push_str(&format!("\n\nFrom `{ns}`."));
            }
            return Some(md(text));
        }
    }
    None
}

fn task_degradation(b: &ast::Binding) -> Option<&'static mio_catalog::Builtin> {
    match &b.value.kind {
        ast::ExprKind::Call(c) => {
            builtins::lookup(mio_catalog::Kind::Degradation, &c.callee.to_string())
        }
        _ => None,
    }
}

fn describe(kw: &str, b: &ast::Binding, effective: Option<String>) -> String {
    let written = format!(
        "{kw} {} = {}",
        b.name.name,
        mio_grammar::format::flat(&b.value)
    );
    match effective {
        Some(e) if e != mio_grammar::format::flat(&b.value) => {
            format!(
                "{}\n\nEffective value, defaults filled in:\n{}",
                code(&written),
                code(&e)
            )
        }
        _ => code(&written),
    }
}
