//! The checker's diagnostics as LSP diagnostics: every error of the document with its code,
//! help and related spans; errors inside an imported file are reported on the `use` that
//! brings it in.

use lsp_types::{
    Diagnostic, DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString, Range,
    Uri,
};
use mio_grammar::ast;

use crate::document::{path_to_uri, Document, LineIndex};

pub fn collect(doc: &Document, uri: &Uri) -> Vec<Diagnostic> {
    let mut out = vec![];
    let mut imported_errors = 0;
    let mut first_imported = None;
    for d in &doc.checked.diagnostics {
        if !doc.owns(d.primary.span) {
            imported_errors += 1;
            first_imported.get_or_insert(d);
            continue;
        }
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        let related: Vec<DiagnosticRelatedInformation> = std::iter::once(&d.primary)
            .chain(&d.related)
            .filter_map(|l| {
                Some(DiagnosticRelatedInformation {
                    location: location(doc, uri, l.span)?,
                    message: l.text.clone(),
                })
            })
            .collect();
        out.push(Diagnostic {
            range: doc.range(d.primary.span),
            severity: Some(DiagnosticSeverity::ERROR),
            code: Some(NumberOrString::String(d.code.to_string())),
            source: Some("mio".into()),
            message,
            related_information: (!related.is_empty()).then_some(related),
            ..Default::default()
        });
    }
    if let Some(first) = first_imported {
        let range = first_use(doc).unwrap_or_default();
        out.push(Diagnostic {
            range,
            severity: Some(DiagnosticSeverity::ERROR),
            code: Some(NumberOrString::String(first.code.to_string())),
            source: Some("mio".into()),
            message: format!(
                "{imported_errors} error(s) in an imported file; the first: {}",
                first.message
            ),
            related_information: location(doc, uri, first.primary.span).map(|l| {
                vec![DiagnosticRelatedInformation {
                    location: l,
                    message: first.primary.text.clone(),
                }]
            }),
            ..Default::default()
        });
    }
    out
}

/// Where a global span is: in this document, or in an imported file on disk.
pub fn location(doc: &Document, uri: &Uri, span: mio_grammar::Span) -> Option<Location> {
    if doc.owns(span) {
        return Some(Location::new(uri.clone(), doc.range(span)));
    }
    let sources = &doc.checked.program.sources;
    let file = sources.get(sources.file_of(span.start)?);
    let path = file.path.as_ref()?;
    let idx = LineIndex::new(&file.text, doc.index.encoding());
    let local = mio_grammar::Span::new(span.start - file.base, span.end - file.base);
    Some(Location::new(
        path_to_uri(path)?,
        idx.range(&file.text, local),
    ))
}

fn first_use(doc: &Document) -> Option<Range> {
    let root = &doc.checked.program.modules[mio_engine::load::Program::ROOT];
    root.ast.items.iter().find_map(|i| match i {
        ast::Item::Use(u) => Some(doc.range(u.span)),
        _ => None,
    })
}
