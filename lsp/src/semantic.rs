//! Semantic tokens in one linear pass over the lexer's tokens, so highlighting holds while a
//! line is half typed and stays fast on large files: keywords where they start an item or
//! statement (and `on`, `as`, `over`, `extends`), numbers (`2e-4` whole), strings, comments;
//! names by the role the checker resolved them to (built-ins, models, data, tasks), else by
//! their place (calls, parameters, settings, declared names).

use lsp_types::{SemanticToken, SemanticTokenType, SemanticTokens, SemanticTokensLegend};
use mio_engine::check::Resolved;
use mio_grammar::keywords::{self, Place};

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

/// A keyword that starts an item or a statement.
fn leading(w: &str) -> bool {
    keywords::is(w, Place::Item) || keywords::is(w, Place::Statement)
}

/// A keyword inside an item or statement, or a boolean.
fn inner(w: &str) -> bool {
    keywords::is(w, Place::Inner) || keywords::is(w, Place::Literal)
}

/// The resolution the checker recorded for a name overlapping global `[start, end)`.
fn role(doc: &Document, start: usize, end: usize) -> Option<&Resolved> {
    let rs = &doc.checked.resolutions;
    let k = rs.partition_point(|r| r.span.start < end);
    rs[..k]
        .iter()
        .rev()
        .take(16)
        .find(|r| r.span.start <= start && end <= r.span.end)
        .map(|r| &r.to)
}

/// One linear pass over the tokens ([`mio_grammar::lex`]), with a stack of open brackets;
/// names take the role the checker gave them (a model named like a built-in is a variable
/// where it names the model, `strategy = mixed` a built-in).
pub fn tokens(doc: &Document) -> SemanticTokens {
    use mio_grammar::lex::TokenKind as T;
    let text = &doc.text;
    let base = doc.base();
    let toks = mio_grammar::lex::tokens(text);
    let mut found: Vec<(usize, usize, u32)> = Vec::with_capacity(toks.len());
    let mut brackets: Vec<u8> = vec![];
    let mut line_start_tok = true;
    let mut last_line_end = 0usize;
    for (k, t) in toks.iter().enumerate() {
        let (a, b) = (t.span.start, t.span.end);
        let w = &text[a..b];
        // The first token of a line (comments aside).
        if text[last_line_end..a].contains('\n') || k == 0 {
            line_start_tok = true;
        }
        last_line_end = b;
        let next = toks.get(k + 1).map(|n| &text[n.span.start..n.span.end]);
        let prev = k
            .checked_sub(1)
            .and_then(|p| toks.get(p))
            .map(|p| &text[p.span.start..p.span.end]);
        let first = std::mem::replace(&mut line_start_tok, false) && t.kind != T::Comment;
        let kind = match t.kind {
            T::Comment => {
                line_start_tok = first;
                Some(COMMENT)
            }
            T::Str => Some(STRING),
            T::Number => Some(NUMBER),
            T::DotDot => None,
            T::Punct => {
                match w.as_bytes()[0] {
                    c @ (b'(' | b'[' | b'{') => brackets.push(c),
                    b')' | b']' | b'}' => {
                        brackets.pop();
                    }
                    _ => {}
                }
                None
            }
            T::Word => {
                let is_key = next == Some("=");
                let resolved = role(doc, base + a, base + b);
                Some(
                    if (first && leading(w) && !is_key) || (inner(w) && !is_key) {
                        KEYWORD
                    } else if let Some(r) = resolved {
                        match r {
                            Resolved::Builtin => FUNCTION,
                            _ => VARIABLE,
                        }
                    } else if next == Some("(") {
                        FUNCTION
                    } else if is_key {
                        if matches!(prev, Some("data" | "model" | "task" | "let")) {
                            VARIABLE
                        } else if brackets.last() == Some(&b'(') {
                            PARAMETER
                        } else {
                            PROPERTY
                        }
                    } else if matches!(
                        prev,
                        Some(
                            "train"
                                | "eval"
                                | "sweep"
                                | "on"
                                | "as"
                                | "over"
                                | "extends"
                                | "workflow"
                                | "matrix"
                                | "."
                        )
                    ) || next == Some(".")
                    {
                        VARIABLE
                    } else if crate::completion::builtin_named(w).is_some() {
                        FUNCTION
                    } else {
                        VARIABLE
                    },
                )
            }
        };
        if let Some(kind) = kind {
            found.push((a, b, kind));
        }
    }
    let mut data = Vec::with_capacity(found.len());
    let (mut line, mut col) = (0u32, 0u32);
    let utf16 = doc_encoding(doc) == Encoding::Utf16;
    for (start, end, kind) in found {
        let pos = doc.index.position(text, start);
        let piece = &text[start..end];
        let len = if utf16 {
            piece.encode_utf16().count() as u32
        } else {
            piece.len() as u32
        };
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
