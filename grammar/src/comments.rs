//! The comments of a source text (the grammar skips them), for the formatter and the LSP.

use crate::ast::Span;
use crate::chunk::Piece;

#[derive(Clone, Debug, PartialEq)]
pub struct Comment {
    /// From `#` to the end of the line (the newline excluded), in global offsets.
    pub span: Span,
    /// The text after `#`, with trailing whitespace removed.
    pub text: String,
}

/// Every `#` comment outside string literals, in order.
pub fn comments_at(src: &str, base: usize) -> Vec<Comment> {
    crate::chunk::pieces(src, 0)
        .filter_map(|(_, p)| match p {
            Piece::Comment(r) => Some(Comment {
                span: Span::new(base + r.start, base + r.end),
                text: src[r.start + 1..r.end].trim_end().to_string(),
            }),
            _ => None,
        })
        .collect()
}

pub fn comments(src: &str) -> Vec<Comment> {
    comments_at(src, 0)
}
