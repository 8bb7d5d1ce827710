//! Cutting source text into top-level items and workflow statements without parsing it, for
//! error recovery. Works on bracket depth (skipping strings and comments) plus one layout rule
//! that survives a missing `}`: a line that starts with an item keyword in column 0 always
//! begins a new item, a line that starts with a statement keyword begins a new statement, and
//! a `}` in column 0 closes the workflow.

use std::ops::Range;

use crate::keywords::{self, Place};

fn is_item_keyword(word: &str) -> bool {
    keywords::is(word, Place::Item)
}

fn is_stmt_keyword(word: &str) -> bool {
    keywords::is(word, Place::Statement)
}

/// The first identifier-like word of `text` after whitespace and comments.
pub fn first_word(text: &str) -> Option<&str> {
    let start = skip_trivia(text, 0);
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// The keyword and the name after it (`train net on d {` -> ("train", "net")), for telling the
/// checker what a piece that failed to parse was meant to define; a misspelt keyword
/// (`modle net = ...`) counts as the keyword it is closest to.
pub fn head(text: &str) -> Option<(String, String)> {
    let start = skip_trivia(text, 0);
    let mut words = text[start..]
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty());
    let keyword = words.next()?;
    let name = words.next()?;
    let keyword = near_keyword(keyword).unwrap_or(keyword);
    Some((keyword.to_string(), name.to_string()))
}

/// The item or statement keyword a word is a likely misspelling of (`modle`, `worklfow`,
/// `tran`): one edit or one swap of neighbours away, for words of three letters or more.
pub fn near_keyword(word: &str) -> Option<&'static str> {
    if word.len() < 3 || is_item_keyword(word) || is_stmt_keyword(word) {
        return None;
    }
    keywords::at(Place::Item)
        .chain(keywords::at(Place::Statement))
        .map(|k| k.word)
        .find(|k| edits(word, k) <= 1)
}

/// Levenshtein distance with adjacent swaps counted as one edit.
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// Brackets nested deeper than this are a syntax error: the parser, checker and formatter
/// recurse over nesting, and no real file comes near it.
pub const MAX_NESTING: i32 = 64;

/// The offset of the first bracket that opens nesting level `MAX_NESTING + 1`, if any.
pub fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, piece) in pieces(text, 0) {
        match piece {
            Piece::Open => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
            }
            Piece::Close(_) => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The outermost bracket of `text` left open at its end, if any (its offset and character);
/// `None` too when a closing bracket does not match its opener (then the missing one is
/// elsewhere).
pub fn unclosed(text: &str) -> Option<(usize, u8)> {
    let mut stack: Vec<(usize, u8)> = vec![];
    for (i, p) in pieces(text, 0) {
        match p {
            Piece::Open => stack.push((i, text.as_bytes()[i])),
            Piece::Close(c) => {
                let (_, open) = stack.pop()?;
                let pair = matches!((open, c), (b'(', b')') | (b'[', b']') | (b'{', b'}'));
                if !pair {
                    return None;
                }
            }
            _ => {}
        }
    }
    stack.first().copied()
}

/// Only whitespace and comments.
pub fn is_trivia(text: &str) -> bool {
    skip_trivia(text, 0) == text.len()
}

/// The offset of the first token at or after `from` (the text's length when only whitespace and
/// comments follow).
pub(crate) fn skip_trivia(text: &str, from: usize) -> usize {
    pieces(text, from)
        .find(|(_, p)| !matches!(p, Piece::Space | Piece::Newline | Piece::Comment(_)))
        .map_or(text.len(), |(i, _)| i)
}

/// What the scanners see of a text: brackets, line ends, comments and strings (whose brackets
/// do not count), and everything else.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Piece {
    Open,
    Close(u8),
    Newline,
    Space,
    /// `#` to the end of the line, the newline excluded.
    Comment(Range<usize>),
    /// A string literal; an unterminated one ends before the newline.
    Str,
    Other,
}

/// The pieces of `text` from `from` on, with their offsets.
pub(crate) fn pieces(text: &str, from: usize) -> impl Iterator<Item = (usize, Piece)> + '_ {
    let b = text.as_bytes();
    let mut i = from;
    std::iter::from_fn(move || {
        let start = i;
        let c = *b.get(i)?;
        i += 1;
        let piece = match c {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                Piece::Comment(start..i)
            }
            b'"' => {
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if i < b.len() && b[i] == b'"' {
                    i += 1;
                }
                i = i.min(b.len());
                Piece::Str
            }
            b'{' | b'(' | b'[' => Piece::Open,
            b'}' | b')' | b']' => Piece::Close(c),
            b'\n' => Piece::Newline,
            b' ' | b'\t' | b'\r' => Piece::Space,
            _ => Piece::Other,
        };
        Some((start, piece))
    })
}

/// A token that starts a line, found while scanning.
struct LineStart {
    offset: usize,
    column: usize,
    depth: i32,
}

/// Calls `visit` for the first token of every line from `from` on (and for the first token at
/// `from` itself), with the bracket depth before that token. `visit` returns `Some(depth)` to
/// reset the depth, or `Stop` to end the scan.
fn scan(text: &str, from: usize, mut visit: impl FnMut(&LineStart) -> Step) {
    let mut depth = 0i32;
    let mut at_line_start = true;
    let mut line_begin = from;
    for (i, piece) in pieces(text, from) {
        let blank = matches!(piece, Piece::Space | Piece::Newline | Piece::Comment(_));
        if at_line_start && !blank {
            at_line_start = false;
            match visit(&LineStart {
                offset: i,
                column: i - line_begin,
                depth,
            }) {
                Step::Go => {}
                Step::Reset => depth = 0,
                Step::Stop => return,
            }
        }
        match piece {
            Piece::Newline => {
                at_line_start = true;
                line_begin = i + 1;
            }
            Piece::Open => depth += 1,
            Piece::Close(_) => depth -= 1,
            _ => {}
        }
    }
}

enum Step {
    Go,
    Reset,
    Stop,
}

/// Byte ranges of the top-level items of `src` (together they cover the whole text).
pub fn items(src: &str) -> Vec<Range<usize>> {
    let mut starts = vec![0];
    scan(src, 0, |ls| {
        let word = first_word(&src[ls.offset..]).unwrap_or("");
        let keyword = is_item_keyword(word);
        if keyword && (ls.depth <= 0 || ls.column == 0) {
            if ls.offset != 0 {
                starts.push(ls.offset);
            }
            Step::Reset
        } else {
            Step::Go
        }
    });
    ranges(starts, src.len())
}

/// A workflow body cut into statements.
pub struct Body {
    pub stmts: Vec<Range<usize>>,
    /// Offset of the `}` that closes the body, when there is one.
    pub close: Option<usize>,
}

/// Cuts the body of a workflow item `text` whose `{` ends at `body_start`.
pub fn statements(text: &str, body_start: usize) -> Body {
    let mut starts = vec![];
    let mut close = None;
    scan(text, body_start, |ls| {
        let rest = &text[ls.offset..];
        // The workflow's own `}`: at depth 0, or in column 0 when earlier typos left brackets open.
        if (ls.depth == 0 || ls.column == 0) && rest.starts_with('}') {
            close = Some(ls.offset);
            return Step::Stop;
        }
        let word = first_word(rest).unwrap_or("");
        if ls.depth <= 0 || is_stmt_keyword(word) {
            starts.push(ls.offset);
            Step::Reset
        } else {
            Step::Go
        }
    });
    // A `}` closing the body on the same line as the last statement.
    let end = close.unwrap_or_else(|| last_close(text, body_start).unwrap_or(text.len()));
    if close.is_none() && end < text.len() {
        close = Some(end);
    }
    starts.retain(|&s| s < end);
    Body {
        stmts: ranges(starts, end),
        close,
    }
}

/// The offset of the `}` that brings the depth below zero, scanning from `from`.
fn last_close(text: &str, from: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, piece) in pieces(text, from) {
        match piece {
            Piece::Open => depth += 1,
            Piece::Close(c) => {
                depth -= 1;
                if depth < 0 && c == b'}' {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn ranges(starts: Vec<usize>, end: usize) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let e = starts.get(k + 1).copied().unwrap_or(end);
        if s < e {
            out.push(s..e);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_split_at_keywords_even_after_a_missing_brace() {
        let src = "use paper\nworkflow a {\n  data x = images(\"d\"\n}\ntask t = noise()\n";
        let parts: Vec<&str> = items(src).into_iter().map(|r| &src[r]).collect();
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert!(parts[1].starts_with("workflow a"));
        assert!(parts[2].starts_with("task t"));
    }

    #[test]
    fn statements_split_and_find_the_closing_brace() {
        let text = "workflow a {\n  seed = 0\n  train n on d {\n    iters = 1\n  }\n  eval n on d { }\n}\n";
        let body = statements(text, text.find('{').unwrap() + 1);
        let parts: Vec<&str> = body.stmts.iter().map(|r| text[r.clone()].trim()).collect();
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert!(parts[1].starts_with("train"));
        assert_eq!(&text[body.close.unwrap()..], "}\n");
    }

    #[test]
    fn strings_and_comments_do_not_count_brackets() {
        let src = "task a = noise() # {\nlet b = \"{\"\nlet c = 1\n";
        assert_eq!(items(src).len(), 3);
    }
}
