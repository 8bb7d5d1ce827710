//! Go to definition, find references and the outline. Names resolve as the checker resolves
//! them: models and data within their workflow; tasks and lets in this file first, then in the
//! imports (unqualified, or `ns.name`); workflows by name for `extends` and `matrix ... over`.

use lsp_types::{DocumentSymbol, Location, Position, SymbolKind, Uri};
use mio_engine::check::Resolved;
use mio_grammar::ast::{self, Item, Stmt};
use mio_grammar::cursor::{surroundings, word_at};
use mio_grammar::Span;

use crate::diagnostics::location;
use crate::document::Document;

/// What a name at the cursor refers to.
#[derive(Clone, Debug, PartialEq)]
enum Target {
    /// A model (`model`) or data set of a workflow: its name span, and the workflow's span.
    Local {
        def: Span,
        scope: Span,
        name: String,
        model: bool,
    },
    /// A task or let, by the span of its name where it is defined (here or in an import).
    Global {
        def: Span,
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

/// What the checker resolved the name covering global offset `global` to (the innermost).
pub(crate) fn resolution_at(doc: &Document, global: usize) -> Option<&Resolved> {
    doc.checked
        .resolutions
        .iter()
        .filter(|r| r.span.start <= global && global < r.span.end.max(r.span.start + 1))
        .min_by_key(|r| r.span.end - r.span.start)
        .map(|r| &r.to)
}

/// The model or data set `name` of the workflow around `global`.
fn local(doc: &Document, name: &str, global: usize, model: bool) -> Option<Target> {
    root(doc).iter().find_map(|item| match item {
        Item::Workflow(w) if w.span.contains(global) => w.stmts.iter().find_map(|s| match s {
            Stmt::Model(b) if model && b.name.name == name => Some(Target::Local {
                def: b.name.span,
                scope: w.span,
                name: name.into(),
                model,
            }),
            Stmt::Data(b) if !model && b.name.name == name => Some(Target::Local {
                def: b.name.span,
                scope: w.span,
                name: name.into(),
                model,
            }),
            _ => None,
        }),
        _ => None,
    })
}

fn from_resolution(doc: &Document, r: &Resolved, global: usize) -> Option<Target> {
    match r {
        Resolved::Builtin => None,
        Resolved::Global(def) => Some(Target::Global { def: *def }),
        Resolved::Model(n) => local(doc, n, global, true),
        Resolved::Data(n) => local(doc, n, global, false),
    }
}

/// A name where it is declared, or a workflow named after `extends` or `over`.
fn declared_at(doc: &Document, global: usize) -> Option<Target> {
    let workflow = |name: &str| {
        root(doc).iter().find_map(|i| match i {
            Item::Workflow(w) if w.name.name == name => Some(Target::Workflow {
                def: w.name.span,
                name: name.into(),
            }),
            _ => None,
        })
    };
    for item in root(doc) {
        match item {
            Item::Task(b) | Item::Let(b) if b.name.span.contains(global) => {
                return Some(Target::Global { def: b.name.span })
            }
            Item::Workflow(w) => {
                if w.name.span.contains(global) {
                    return workflow(&w.name.name);
                }
                if let Some(e) = w.extends.as_ref().filter(|e| e.span.contains(global)) {
                    return workflow(&e.name);
                }
                for s in &w.stmts {
                    match s {
                        Stmt::Model(b) if b.name.span.contains(global) => {
                            return local(doc, &b.name.name, global, true)
                        }
                        Stmt::Data(b) if b.name.span.contains(global) => {
                            return local(doc, &b.name.name, global, false)
                        }
                        _ => {}
                    }
                }
            }
            Item::Matrix(m) => {
                if let Some(b) = m.bases.iter().find(|b| b.span.contains(global)) {
                    return workflow(&b.name);
                }
            }
            _ => {}
        }
    }
    None
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
    let global = doc.base() + off.max(start).min(start + word.len().saturating_sub(1));
    match resolution_at(doc, global) {
        Some(r) => from_resolution(doc, r, global),
        None => declared_at(doc, global).or_else(|| unchecked_global(doc, word, global)),
    }
}

/// A task or let name in a value the checker did not reach (the body of a `let` nothing
/// uses, text after an error): resolved as the checker would, here first, then the imports.
fn unchecked_global(doc: &Document, word: &str, global: usize) -> Option<Target> {
    // Only in value position: after `=` or inside brackets, never a keyword or a declaration.
    let local = global - doc.base();
    let before = doc.text[..local].trim_end_matches([' ', '\t']);
    let open = !surroundings(&doc.text, local).open.is_empty();
    if !(before.ends_with('=')
        || before.ends_with(',')
        || before.ends_with('[')
        || before.ends_with('(')
        || open)
    {
        return None;
    }
    let prog = &doc.checked.program;
    let (ns, name) = match word.rsplit_once('.') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, word),
    };
    let root_id = mio_engine::load::Program::ROOT;
    let mut modules: Vec<usize> = vec![];
    if ns.is_none() {
        modules.push(root_id);
    }
    for (n, m) in &prog.modules[root_id].imports {
        if ns.is_none() || ns == Some(n.as_str()) {
            modules.push(*m);
        }
    }
    modules.into_iter().find_map(|mid| {
        prog.modules[mid]
            .ast
            .items
            .iter()
            .find_map(|item| match item {
                Item::Task(b) | Item::Let(b) if b.name.name == name => {
                    Some(Target::Global { def: b.name.span })
                }
                _ => None,
            })
    })
}

/// Where an embedded prelude (`use paper`) can be shown: its text written once, read-only,
/// to a cache folder, so an editor opens it like any file.
fn prelude_location(doc: &Document, span: Span) -> Option<Location> {
    let sources = &doc.checked.program.sources;
    let file = sources.get(sources.file_of(span.start)?);
    if file.path.is_some() {
        return None;
    }
    // `<paper prelude>` is shown as `paper.mio`.
    let safe = file
        .name
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .find(|s| !s.is_empty())
        .unwrap_or("prelude");
    let dir = std::env::temp_dir().join(format!("mio-{}-prelude", env!("CARGO_PKG_VERSION")));
    let path = dir.join(format!("{safe}.mio"));
    if std::fs::read_to_string(&path).ok().as_deref() != Some(file.text.as_str()) {
        std::fs::create_dir_all(&dir).ok()?;
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, &file.text).ok()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444));
        }
    }
    let idx = crate::document::LineIndex::new(&file.text, doc.index.encoding());
    let local = Span::new(span.start - file.base, span.end - file.base);
    let uri: Uri = format!("file://{}", path.display()).parse().ok()?;
    Some(Location::new(uri, idx.range(&file.text, local)))
}

fn location_of(doc: &Document, uri: &Uri, span: Span) -> Option<Location> {
    location(doc, uri, span).or_else(|| prelude_location(doc, span))
}

pub fn definition(doc: &Document, uri: &Uri, pos: Position) -> Option<Location> {
    let def = match target_at(doc, pos)? {
        Target::Local { def, .. } | Target::Global { def } | Target::Workflow { def, .. } => def,
    };
    location_of(doc, uri, def)
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
    let mut spans: Vec<Span> = vec![];
    match &target {
        Target::Workflow { name, .. } => {
            for item in root(doc) {
                match item {
                    Item::Workflow(w) => spans.extend(
                        w.extends
                            .as_ref()
                            .filter(|e| &e.name == name)
                            .map(|e| e.span),
                    ),
                    Item::Matrix(m) => {
                        spans.extend(m.bases.iter().filter(|b| &b.name == name).map(|b| b.span))
                    }
                    _ => {}
                }
            }
        }
        _ => {
            // Every name the checker resolved to the same thing, and nothing else.
            for r in &doc.checked.resolutions {
                if doc.owns(r.span)
                    && from_resolution(doc, &r.to, r.span.start).as_ref() == Some(&target)
                {
                    spans.push(r.span);
                }
            }
        }
    }
    let def = match &target {
        Target::Local { def, .. } | Target::Global { def } | Target::Workflow { def, .. } => *def,
    };
    spans.retain(|s| *s != def);
    spans.sort_by_key(|s| s.start);
    spans.dedup();
    if include_declaration {
        spans.insert(0, def);
    }
    spans
        .into_iter()
        .filter_map(|s| location_of(doc, uri, s))
        .collect()
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
