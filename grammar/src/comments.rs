//! The comments of a source text (the grammar skips them), for the formatter and the LSP.

use crate::ast::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Comment {
    /// From `#` to the end of the line (the newline excluded), in global offsets.
    pub span: Span,
    /// The text after `#`, with trailing whitespace removed.
    pub text: String,
}

/// Every `#` comment outside string literals, in order.
pub fn comments_at(src: &str, base: usize) -> Vec<Comment> {
    let b = src.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'#' => {
                let start = i;
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                out.push(Comment {
                    span: Span::new(base + start, base + i),
                    text: src[start + 1..i].trim_end().to_string(),
                });
            }
            _ => i += 1,
        }
    }
    out
}

pub fn comments(src: &str) -> Vec<Comment> {
    comments_at(src, 0)
}
