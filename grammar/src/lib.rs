//! The `.mio` language front end: a pest grammar (`mio.pest`), an AST that keeps byte spans,
//! a parser that never gives up (it returns a tree and every syntax error), and the formatter
//! behind `mio fmt`. It knows nothing of tasks, models or tensors: meaning lives in mio-engine.

pub mod ast;
mod chunk;
pub mod comments;
pub mod cursor;
mod error;
pub mod format;
pub mod keywords;
pub mod lex;
mod parser;

pub use ast::*;
pub use error::ParseError;
pub use parser::{parse_at, parse_chunked_everywhere, parse_expr_at, parse_path_at, Parsed};

/// Parses a whole file at offset 0.
pub fn parse(src: &str) -> Parsed {
    parse_at(src, 0)
}
