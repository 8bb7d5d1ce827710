//! Completion from the cursor's lexical surroundings (so it works while the line does not
//! parse yet): inside a call, its parameters or a value of the parameter's type; inside a
//! block, its settings or their values; in a workflow, statements; at the top, items; after
//! `namespace.`, that import's tasks and lets.

use lsp_types::{
    CompletionItem, CompletionItemKind, Documentation, MarkupContent, MarkupKind, Position,
};
use mio_catalog::builtins;
use mio_catalog::{Builtin, Kind, Param, Ty};
use mio_grammar::ast;
use mio_grammar::cursor::{key_before, surroundings, word_at, word_before};
use mio_grammar::keywords::{self, Place};

use crate::document::Document;

fn markdown(text: String) -> Option<Documentation> {
    Some(Documentation::MarkupContent(MarkupContent {
        kind: MarkupKind::Markdown,
        value: text,
    }))
}

fn keyword(label: &str, doc: &str) -> CompletionItem {
    CompletionItem {
        label: label.into(),
        kind: Some(CompletionItemKind::KEYWORD),
        documentation: markdown(doc.into()),
        ..Default::default()
    }
}

fn builtin_item(b: &Builtin) -> CompletionItem {
    CompletionItem {
        label: b.name.into(),
        kind: Some(CompletionItemKind::FUNCTION),
        detail: Some(b.signature()),
        documentation: markdown(b.doc.into()),
        ..Default::default()
    }
}

fn param_item(p: &Param) -> CompletionItem {
    CompletionItem {
        label: p.name.into(),
        kind: Some(CompletionItemKind::FIELD),
        detail: Some(p.signature()),
        documentation: markdown(p.doc.into()),
        insert_text: Some(format!("{} = ", p.name)),
        ..Default::default()
    }
}

fn simple(label: &str, kind: CompletionItemKind, detail: &str) -> CompletionItem {
    CompletionItem {
        label: label.into(),
        kind: Some(kind),
        detail: Some(detail.into()),
        ..Default::default()
    }
}

/// A built-in by name, whatever its kind.
pub fn builtin_named(name: &str) -> Option<&'static Builtin> {
    builtins::all().find(|b| b.name == name)
}

pub fn complete(doc: &Document, pos: Position) -> Vec<CompletionItem> {
    let text = &doc.text;
    let off = doc.offset(pos);
    let s = surroundings(text, off);
    if s.in_comment_or_string {
        return vec![];
    }
    let (word_start, _) = word_at(text, off);
    let typed = &text[word_start..off];
    if let Some((ns, _)) = typed.rsplit_once('.') {
        let members = namespace_members(doc, ns);
        // Where the place takes values of one kind, only the members that fit it (what would
        // be offered here as `ns.name` before typing).
        let here = complete(doc, doc.index.position(text, word_start));
        let prefix = format!("{ns}.");
        let fitting: Vec<&str> = here
            .iter()
            .filter_map(|i| i.label.strip_prefix(&prefix))
            .collect();
        if fitting.is_empty() {
            return members;
        }
        return members
            .into_iter()
            .filter(|m| fitting.contains(&m.label.as_str()))
            .collect();
    }
    match s.open.last() {
        None => top_level(doc, text, off),
        Some(open) if open.bracket == b'(' => {
            let callee = word_before(text, open.offset);
            let Some(b) = builtin_named(callee) else {
                return vec![];
            };
            match key_before(text, off, open.offset + 1) {
                Some(key) => b
                    .param(key)
                    .map(|p| values(doc, &p.ty, off))
                    .unwrap_or_default(),
                None => {
                    let given = &text[open.offset + 1..closing(text, open.offset)];
                    b.params
                        .iter()
                        .filter(|p| {
                            !given.contains(&format!("{} =", p.name))
                                && !given.contains(&format!("{}=", p.name))
                        })
                        .map(param_item)
                        .collect()
                }
            }
        }
        Some(open) if open.bracket == b'[' => {
            // A list element: the type comes from the key the list is the value of.
            let outer = s.open.iter().rev().nth(1);
            let from = outer
                .map(|o| o.offset + 1)
                .unwrap_or_else(|| line_start(text, open.offset));
            let Some(key) = key_before(text, open.offset, from) else {
                return vec![];
            };
            let ty = match outer {
                Some(o) if o.bracket == b'(' => builtin_named(word_before(text, o.offset))
                    .and_then(|b| b.param(key))
                    .map(|p| p.ty),
                Some(o) if o.bracket == b'{' => block_of(text, o.offset)
                    .and_then(|b| b.param(key))
                    .map(|p| p.ty),
                _ => None,
            };
            match ty {
                Some(Ty::List(inner)) | Some(Ty::PerStage(inner)) => values(doc, inner, off),
                Some(other) => values(doc, &other, off),
                None => vec![],
            }
        }
        Some(open) => {
            let head_kw = head_keyword(text, open.offset);
            if head_kw == "workflow" {
                return in_workflow(doc, text, off, open.offset);
            }
            let Some(block) = block_of(text, open.offset) else {
                return vec![];
            };
            match key_before(text, off, open.offset + 1) {
                Some(key) => block
                    .param(key)
                    .map(|p| values(doc, &p.ty, off))
                    .unwrap_or_default(),
                None => {
                    let given = &text[open.offset + 1..closing(text, open.offset)];
                    block
                        .params
                        .iter()
                        .filter(|p| !given.contains(&format!("{} =", p.name)))
                        .map(param_item)
                        .collect()
                }
            }
        }
    }
}

/// Where the bracket opened at `open` closes (or the end of the text): what is written after
/// the cursor counts as given too.
fn closing(text: &str, open: usize) -> usize {
    let mut depth = 0i32;
    for (i, c) in text[open..].char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    text.len()
}

fn line_start(text: &str, off: usize) -> usize {
    text[..off].rfind('\n').map(|i| i + 1).unwrap_or(0)
}

/// The first word of the statement that a `{` at `brace` opens.
fn head_keyword(text: &str, brace: usize) -> &str {
    let head = text[line_start(text, brace)..brace].trim_start();
    head.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("")
}

/// The catalog entry of the block a `{` opens (`train`, `eval`, `sweep`, `report`).
fn block_of(text: &str, brace: usize) -> Option<&'static Builtin> {
    let kw = head_keyword(text, brace);
    builtins::BLOCKS
        .iter()
        .find(|b| b.name == kw && kw != "workflow")
}

fn top_level(doc: &Document, text: &str, off: usize) -> Vec<CompletionItem> {
    let line = &text[line_start(text, off)..off];
    let words: Vec<&str> = line.split_whitespace().collect();
    if line.contains('=') {
        let kw = words.first().copied().unwrap_or("");
        return match kw {
            // After a whole step, `then` chains another (a composite task); else a
            // degradation or a task to start one.
            "task" if line.trim_end().ends_with(')') && line.ends_with(char::is_whitespace) => {
                vec![keyword("then", "apply another degradation after this one")]
            }
            "task" => values(doc, &Ty::Task, off),
            "let" => values(doc, &Ty::Task, off),
            _ => vec![],
        };
    }
    if words.len() <= 1 {
        return keywords::at(Place::Item)
            .map(|k| keyword(k.word, k.usage))
            .collect();
    }
    if words[0] == "use" && words.len() <= 2 {
        return mio_catalog::PRELUDES
            .iter()
            .map(|p| simple(p.name, CompletionItemKind::MODULE, "built-in prelude"))
            .collect();
    }
    if words[0] == "matrix" && words.len() >= 3 {
        return workflow_names(doc);
    }
    if words[0] == "workflow" && words.len() >= 3 {
        let mut v = vec![keyword(
            "extends",
            "start from another workflow's statements",
        )];
        if words.len() >= 4 {
            v = workflow_names(doc);
        }
        return v;
    }
    vec![]
}

fn workflow_names(doc: &Document) -> Vec<CompletionItem> {
    root_items(doc)
        .iter()
        .filter_map(|i| match i {
            ast::Item::Workflow(w) => {
                Some(simple(&w.name.name, CompletionItemKind::MODULE, "workflow"))
            }
            _ => None,
        })
        .collect()
}

fn in_workflow(doc: &Document, text: &str, off: usize, brace: usize) -> Vec<CompletionItem> {
    let line = &text[line_start(text, off).max(brace + 1)..off];
    let words: Vec<&str> = line.split_whitespace().collect();
    let first = words.first().copied().unwrap_or("");
    if line.contains('=') {
        return match first {
            "data" => builtins::of_kind(Kind::Dataset).map(builtin_item).collect(),
            "model" => builtins::of_kind(Kind::Backbone)
                .map(builtin_item)
                .collect(),
            key => builtins::block("workflow")
                .param(key)
                .map(|p| values(doc, &p.ty, off))
                .unwrap_or_default(),
        };
    }
    let typing_new_word = !line.ends_with(char::is_whitespace);
    let n = words.len() - usize::from(typing_new_word && !words.is_empty());
    match (first, n) {
        ("train" | "eval" | "sweep", 1) => names_in_workflow(doc, off, "model"),
        ("train" | "eval" | "sweep", 2) => vec![keyword("on", "the data it uses")],
        ("train" | "eval" | "sweep", 3) => names_in_workflow(doc, off, "data"),
        ("eval" | "sweep", 4) => vec![keyword("as", "a name for it: `as in_dis`")],
        (_, 0) => {
            let mut v: Vec<CompletionItem> = keywords::at(Place::Statement)
                .map(|k| keyword(k.word, k.usage))
                .collect();
            v.extend(builtins::block("workflow").params.iter().map(param_item));
            v
        }
        _ => vec![],
    }
}

fn root_items(doc: &Document) -> &[ast::Item] {
    &doc.checked.program.modules[mio_engine::load::Program::ROOT]
        .ast
        .items
}

/// Data or model names declared in the workflow around `off` (all workflows when the cursor's
/// workflow did not parse far enough).
fn names_in_workflow(doc: &Document, off: usize, kind: &str) -> Vec<CompletionItem> {
    let global = doc.base() + off;
    let mut out = vec![];
    let workflows: Vec<&ast::Workflow> = root_items(doc)
        .iter()
        .filter_map(|i| match i {
            ast::Item::Workflow(w) => Some(w),
            _ => None,
        })
        .collect();
    let around: Vec<&&ast::Workflow> = workflows
        .iter()
        .filter(|w| w.span.contains(global))
        .collect();
    let chosen: Vec<&ast::Workflow> = if around.is_empty() {
        workflows.clone()
    } else {
        around.into_iter().copied().collect()
    };
    for w in chosen {
        for s in &w.stmts {
            match (s, kind) {
                (ast::Stmt::Data(b), "data") => out.push(simple(
                    &b.name.name,
                    CompletionItemKind::VARIABLE,
                    &mio_grammar::format::flat(&b.value),
                )),
                (ast::Stmt::Model(b), "model") => out.push(simple(
                    &b.name.name,
                    CompletionItemKind::CLASS,
                    &mio_grammar::format::flat(&b.value),
                )),
                _ => {}
            }
        }
    }
    out.dedup_by(|a, b| a.label == b.label);
    out
}

/// Completions for a value of type `ty`.
fn values(doc: &Document, ty: &Ty, off: usize) -> Vec<CompletionItem> {
    match ty {
        Ty::Builtin(kind) => builtins::of_kind(*kind).map(builtin_item).collect(),
        Ty::Word(ws) => ws
            .iter()
            .map(|w| simple(w, CompletionItemKind::ENUM_MEMBER, ""))
            .collect(),
        Ty::Device => ["auto", "cpu", "cuda"]
            .iter()
            .map(|w| simple(w, CompletionItemKind::ENUM_MEMBER, "device"))
            .collect(),
        Ty::Bool => ["true", "false"]
            .iter()
            .map(|w| simple(w, CompletionItemKind::KEYWORD, ""))
            .collect(),
        Ty::Model => names_in_workflow(doc, off, "model"),
        Ty::Task => {
            // Lets that hold numbers, strings or ranges (or lists of them) are no tasks.
            fn could_be_tasks(e: &ast::Expr) -> bool {
                match &e.kind {
                    ast::ExprKind::Number(_)
                    | ast::ExprKind::Str(_)
                    | ast::ExprKind::Bool(_)
                    | ast::ExprKind::Range(..) => false,
                    ast::ExprKind::List(xs) => xs.iter().all(could_be_tasks),
                    _ => true,
                }
            }
            let mut v = visible_names(doc, could_be_tasks);
            v.extend(builtins::of_kind(Kind::Degradation).map(builtin_item));
            v
        }
        Ty::List(inner) | Ty::Sampled(inner) | Ty::PerStage(inner) => values(doc, inner, off),
        _ => vec![],
    }
}

/// Tasks and lets in scope: this file's, then each import's unqualified and as `ns.name`;
/// only the lets whose value passes `fits`.
fn visible_names(doc: &Document, fits: impl Fn(&ast::Expr) -> bool) -> Vec<CompletionItem> {
    let prog = &doc.checked.program;
    let mut out = vec![];
    let mut add = |mid: usize, prefix: &str| {
        for i in &prog.modules[mid].ast.items {
            let (b, kind) = match i {
                ast::Item::Task(b) => (b, CompletionItemKind::CONSTANT),
                ast::Item::Let(b) if fits(&b.value) => (b, CompletionItemKind::VARIABLE),
                _ => continue,
            };
            out.push(CompletionItem {
                label: format!("{prefix}{}", b.name.name),
                kind: Some(kind),
                detail: Some(mio_grammar::format::flat(&b.value)),
                ..Default::default()
            });
        }
    };
    add(mio_engine::load::Program::ROOT, "");
    for (ns, mid) in &prog.modules[mio_engine::load::Program::ROOT].imports {
        add(*mid, "");
        add(*mid, &format!("{ns}."));
    }
    out
}

fn namespace_members(doc: &Document, ns: &str) -> Vec<CompletionItem> {
    let prog = &doc.checked.program;
    let Some((_, mid)) = prog.modules[mio_engine::load::Program::ROOT]
        .imports
        .iter()
        .find(|(n, _)| n == ns)
    else {
        return vec![];
    };
    prog.modules[*mid]
        .ast
        .items
        .iter()
        .filter_map(|i| match i {
            ast::Item::Task(b) | ast::Item::Let(b) => Some(CompletionItem {
                label: b.name.name.clone(),
                kind: Some(if matches!(i, ast::Item::Task(_)) {
                    CompletionItemKind::CONSTANT
                } else {
                    CompletionItemKind::VARIABLE
                }),
                detail: Some(mio_grammar::format::flat(&b.value)),
                ..Default::default()
            }),
            _ => None,
        })
        .collect()
}
