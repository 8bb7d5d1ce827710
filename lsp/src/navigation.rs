//! Go to definition, find references and the outline. Names resolve as the checker resolves
//! them: models and data within their workflow; tasks and lets in this file first, then in the
//! imports (unqualified, or `ns.name`); workflows by name for `extends` and `matrix ... over`.

use lsp_types::{DocumentSymbol, Location, Position, SymbolKind, Uri};
use mio_grammar::ast::{self, Item, Stmt};
use mio_grammar::cursor::{surroundings, word_at, words};
use mio_grammar::Span;

use crate::diagnostics::location;
use crate::document::Document;

/// What a name at the cursor refers to.
#[derive(Clone, Debug, PartialEq)]
enum Target {
    /// A model or data of a workflow: its name span, and the workflow's span.
    Local {
        def: Span,
        scope: Span,
        name: String,
    },
    /// A task or let in module `module`, known there as `name`, reachable as `ns.name`.
    Global {
        def: Span,
        module: usize,
        name: String,
        ns: Option<String>,
    },
    Workflow {
        def: Span,
        name: String,
    },
}

fn root(doc: &Document) -> &[Item] {
    &doc.checked.program.modules[mio_engine::load::Program::ROOT]
        .ast
        .items
}

fn target_at(doc: &Document, pos: Position) -> Option<Target> {
    let off = doc.offset(pos);
    if surroundings(&doc.text, off).in_comment_or_string {
        return None;
    }
    let (start, word) = word_at(&doc.text, off);
    if word.is_empty() {
        return None;
    }
    resolve(doc, word, doc.base() + start)
}

fn resolve(doc: &Document, word: &str, global: usize) -> Option<Target> {
    for item in root(doc) {
        if let Item::Workflow(w) = item {
            if w.span.contains(global) {
                for s in &w.stmts {
                    if let Stmt::Model(b) | Stmt::Data(b) = s {
                        if b.name.name == word {
                            return Some(Target::Local {
                                def: b.name.span,
                                scope: w.span,
                                name: word.into(),
                            });
                        }
                    }
                }
            }
        }
    }
    let prog = &doc.checked.program;
    let (ns, name) = match word.rsplit_once('.') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, word),
    };
    let mut modules: Vec<(Option<String>, usize)> = vec![];
    if ns.is_none() {
        modules.push((None, mio_engine::load::Program::ROOT));
    }
    for (n, m) in &prog.modules[mio_engine::load::Program::ROOT].imports {
        if ns.is_none() || ns == Some(n.as_str()) {
            modules.push((Some(n.clone()), *m));
        }
    }
    for (mns, mid) in modules {
        for item in &prog.modules[mid].ast.items {
            if let Item::Task(b) | Item::Let(b) = item {
                if b.name.name == name {
                    return Some(Target::Global {
                        def: b.name.span,
                        module: mid,
                        name: name.into(),
                        ns: mns,
                    });
                }
            }
        }
    }
    for item in root(doc) {
        if let Item::Workflow(w) = item {
            if w.name.name == word {
                return Some(Target::Workflow {
                    def: w.name.span,
                    name: word.into(),
                });
            }
        }
    }
    None
}

pub fn definition(doc: &Document, uri: &Uri, pos: Position) -> Option<Location> {
    let def = match target_at(doc, pos)? {
        Target::Local { def, .. } | Target::Global { def, .. } | Target::Workflow { def, .. } => {
            def
        }
    };
    location(doc, uri, def)
}

pub fn references(
    doc: &Document,
    uri: &Uri,
    pos: Position,
    include_declaration: bool,
) -> Vec<Location> {
    let Some(target) = target_at(doc, pos) else {
        return vec![];
    };
    let base = doc.base();
    let mut out = vec![];
    for (off, w) in words(&doc.text) {
        let global = base + off;
        let candidate = match &target {
            Target::Local { name, scope, .. } => w == name && scope.contains(global),
            Target::Global { name, ns, .. } => {
                w == name || ns.as_ref().is_some_and(|ns| w == format!("{ns}.{name}"))
            }
            Target::Workflow { name, .. } => w == name,
        };
        // Same spelling is not enough: it must resolve to the same definition here.
        if candidate && resolve(doc, w, global).as_ref() == Some(&target) {
            let span = Span::new(global, global + w.len());
            let is_def = matches!(&target, Target::Local { def, .. } | Target::Global { def, .. } | Target::Workflow { def, .. } if *def == span);
            if include_declaration || !is_def {
                out.push(location(doc, uri, span));
            }
        }
    }
    // A definition in an imported file is not among this document's words.
    if include_declaration {
        if let Target::Global { def, .. } = &target {
            if !doc.owns(*def) {
                out.push(location(doc, uri, *def));
            }
        }
    }
    out.into_iter().flatten().collect()
}

#[allow(deprecated)] // `DocumentSymbol::deprecated` must still be given
fn symbol(
    doc: &Document,
    name: &str,
    detail: Option<String>,
    kind: SymbolKind,
    span: Span,
    sel: Span,
    children: Vec<DocumentSymbol>,
) -> DocumentSymbol {
    DocumentSymbol {
        name: if name.is_empty() {
            "?".into()
        } else {
            name.into()
        },
        detail,
        kind,
        tags: None,
        deprecated: None,
        range: doc.range(span),
        selection_range: doc.range(sel),
        children: (!children.is_empty()).then_some(children),
    }
}

pub fn symbols(doc: &Document) -> Vec<DocumentSymbol> {
    let flat = |e: &ast::Expr| Some(mio_grammar::format::flat(e));
    root(doc)
        .iter()
        .map(|item| match item {
            Item::Use(u) => {
                let name = match &u.target {
                    ast::UseTarget::Prelude(i) => i.name.clone(),
                    ast::UseTarget::File { path, .. } => path.clone(),
                };
                symbol(doc, &name, None, SymbolKind::MODULE, u.span, u.span, vec![])
            }
            Item::Task(b) => symbol(
                doc,
                &b.name.name,
                flat(&b.value),
                SymbolKind::CONSTANT,
                b.span,
                b.name.span,
                vec![],
            ),
            Item::Let(b) => symbol(
                doc,
                &b.name.name,
                flat(&b.value),
                SymbolKind::VARIABLE,
                b.span,
                b.name.span,
                vec![],
            ),
            Item::Workflow(w) => {
                let children = w.stmts.iter().map(|s| stmt_symbol(doc, s)).collect();
                let detail = w.extends.as_ref().map(|e| format!("extends {}", e.name));
                symbol(
                    doc,
                    &w.name.name,
                    detail,
                    SymbolKind::NAMESPACE,
                    w.span,
                    w.name.span,
                    children,
                )
            }
            Item::Matrix(m) => {
                let children = m
                    .axes
                    .iter()
                    .map(|a| {
                        symbol(
                            doc,
                            &a.path.to_string(),
                            flat(&a.value),
                            SymbolKind::ARRAY,
                            a.span,
                            a.path.span,
                            vec![],
                        )
                    })
                    .collect();
                let bases: Vec<&str> = m.bases.iter().map(|b| b.name.as_str()).collect();
                symbol(
                    doc,
                    &m.name.name,
                    Some(format!("over {}", bases.join(", "))),
                    SymbolKind::NAMESPACE,
                    m.span,
                    m.name.span,
                    children,
                )
            }
        })
        .collect()
}

fn stmt_symbol(doc: &Document, s: &Stmt) -> DocumentSymbol {
    let flat = |e: &ast::Expr| Some(mio_grammar::format::flat(e));
    match s {
        Stmt::Setting(b) => symbol(
            doc,
            &b.name.name,
            flat(&b.value),
            SymbolKind::PROPERTY,
            b.span,
            b.name.span,
            vec![],
        ),
        Stmt::Data(b) => symbol(
            doc,
            &b.name.name,
            flat(&b.value),
            SymbolKind::FIELD,
            b.span,
            b.name.span,
            vec![],
        ),
        Stmt::Model(b) => symbol(
            doc,
            &b.name.name,
            flat(&b.value),
            SymbolKind::CLASS,
            b.span,
            b.name.span,
            vec![],
        ),
        Stmt::Train(t) => symbol(
            doc,
            &format!("train {}", t.model.name),
            Some(format!("on {}", t.data.name)),
            SymbolKind::EVENT,
            t.span,
            t.model.span,
            vec![],
        ),
        Stmt::Eval(e) => symbol(
            doc,
            &mio_engine::merge::eval_name(e),
            Some(format!("{} on {}", e.model.name, e.data.name)),
            SymbolKind::FUNCTION,
            e.span,
            e.model.span,
            vec![],
        ),
        Stmt::Sweep(sw) => symbol(
            doc,
            &mio_engine::merge::sweep_name(sw),
            None,
            SymbolKind::FUNCTION,
            sw.span,
            sw.model.span,
            vec![],
        ),
        Stmt::Report(r) => symbol(
            doc,
            "report",
            None,
            SymbolKind::OBJECT,
            r.span,
            r.block.span,
            vec![],
        ),
    }
}
