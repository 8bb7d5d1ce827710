//! Semantic tokens, classified lexically so highlighting holds while a line is half typed:
//! keywords where they start an item or statement (and `on`, `as`, `over`, `extends`), numbers,
//! strings, comments, built-ins and calls, parameters and settings, declared names.

use lsp_types::{SemanticToken, SemanticTokenType, SemanticTokens, SemanticTokensLegend};
use mio_grammar::cursor::{surroundings, words};

use crate::document::{Document, Encoding};

const TYPES: &[SemanticTokenType] = &[
    SemanticTokenType::KEYWORD,
    SemanticTokenType::NUMBER,
    SemanticTokenType::STRING,
    SemanticTokenType::COMMENT,
    SemanticTokenType::FUNCTION,
    SemanticTokenType::PARAMETER,
    SemanticTokenType::PROPERTY,
    SemanticTokenType::VARIABLE,
];
const KEYWORD: u32 = 0;
const NUMBER: u32 = 1;
const STRING: u32 = 2;
const COMMENT: u32 = 3;
const FUNCTION: u32 = 4;
const PARAMETER: u32 = 5;
const PROPERTY: u32 = 6;
const VARIABLE: u32 = 7;

pub fn legend() -> SemanticTokensLegend {
    SemanticTokensLegend {
        token_types: TYPES.to_vec(),
        token_modifiers: vec![],
    }
}

const LEADING: &[&str] = &[
    "use", "task", "let", "workflow", "matrix", "data", "model", "train", "eval", "sweep", "report",
];
const INNER: &[&str] = &["on", "as", "over", "extends", "true", "false"];

pub fn tokens(doc: &Document) -> SemanticTokens {
    let text = &doc.text;
    let mut found: Vec<(usize, usize, u32)> = vec![];
    // Comments and strings.
    let mut i = 0;
    let b = text.as_bytes();
    while i < b.len() {
        match b[i] {
            b'#' => {
                let end = text[i..].find('\n').map(|e| i + e).unwrap_or(b.len());
                found.push((i, end, COMMENT));
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' && b[j] != b'\n' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(b.len());
                found.push((i, end.min(text.len()), STRING));
                i = end;
            }
            _ => i += 1,
        }
    }
    for (off, w) in words(text) {
        let line_before = text[..off].rsplit('\n').next().unwrap_or("");
        let first_on_line = line_before.trim().is_empty();
        let after = text[off + w.len()..].trim_start_matches([' ', '\t']);
        let prev = line_before.split_whitespace().last().unwrap_or("");
        let kind = if w.as_bytes()[0].is_ascii_digit() {
            NUMBER
        } else if (first_on_line && LEADING.contains(&w) && !after.starts_with('='))
            || INNER.contains(&w)
        {
            KEYWORD
        } else if after.starts_with('(') {
            FUNCTION
        } else if after.starts_with('=') && !after.starts_with("==") {
            if matches!(prev, "data" | "model" | "task" | "let") {
                VARIABLE
            } else if surroundings(text, off)
                .open
                .last()
                .is_some_and(|o| o.bracket == b'(')
            {
                PARAMETER
            } else {
                PROPERTY
            }
        } else if crate::completion::builtin_named(w).is_some() {
            FUNCTION
        } else {
            VARIABLE
        };
        found.push((off, off + w.len(), kind));
    }
    found.sort();
    let mut data = vec![];
    let (mut line, mut col) = (0u32, 0u32);
    let units = |s: &str| match doc_encoding(doc) {
        Encoding::Utf8 => s.len() as u32,
        Encoding::Utf16 => s.encode_utf16().count() as u32,
    };
    for (start, end, kind) in found {
        let pos = doc.index.position(text, start);
        let len = units(&text[start..end]);
        if len == 0 {
            continue;
        }
        let delta_line = pos.line - line;
        let delta_start = if delta_line == 0 {
            pos.character - col
        } else {
            pos.character
        };
        data.push(SemanticToken {
            delta_line,
            delta_start,
            length: len,
            token_type: kind,
            token_modifiers_bitset: 0,
        });
        line = pos.line;
        col = pos.character;
    }
    SemanticTokens {
        result_id: None,
        data,
    }
}

fn doc_encoding(doc: &Document) -> Encoding {
    doc.index.encoding()
}
