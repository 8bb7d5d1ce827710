//! What surrounds a cursor, read lexically so it works on half-typed text that does not parse:
//! the brackets open at the cursor (innermost last), whether it sits in a comment or a string,
//! and the identifier-like word it touches. The language server builds completion and hover
//! on this.

use crate::chunk::{pieces, Piece};

/// An open bracket: `(`, `[` or `{`, and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Open {
    pub bracket: u8,
    pub offset: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Surroundings {
    /// Brackets open at the cursor, outermost first.
    pub open: Vec<Open>,
    /// The cursor is inside a comment or a string literal.
    pub in_comment_or_string: bool,
}

/// Scans `text` up to `offset`.
pub fn surroundings(text: &str, offset: usize) -> Surroundings {
    let offset = offset.min(text.len());
    let mut s = Surroundings::default();
    for (i, piece) in pieces(text, 0) {
        if i >= offset {
            break;
        }
        match piece {
            Piece::Open => s.open.push(Open {
                bracket: text.as_bytes()[i],
                offset: i,
            }),
            Piece::Close(_) => {
                s.open.pop();
            }
            Piece::Comment(r) if r.end >= offset => s.in_comment_or_string = true,
            Piece::Str => {
                // A string piece runs from `i`; the cursor is inside it when it does not end
                // before the cursor.
                let rest = &text[i + 1..];
                let end = rest
                    .find(['"', '\n'])
                    .map(|e| i + 1 + e)
                    .unwrap_or(text.len());
                if end >= offset {
                    s.in_comment_or_string = true;
                }
            }
            _ => {}
        }
    }
    s
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.'
}

/// The word (letters, digits, `_` and `.`) around `offset`, and where it starts.
pub fn word_at(text: &str, offset: usize) -> (usize, &str) {
    let b = text.as_bytes();
    let offset = offset.min(b.len());
    let mut start = offset;
    while start > 0 && is_word(b[start - 1]) {
        start -= 1;
    }
    let mut end = offset;
    while end < b.len() && is_word(b[end]) {
        end += 1;
    }
    (start, &text[start..end])
}

/// The word that ends right before `offset` (skipping spaces), e.g. the callee before `(`.
pub fn word_before(text: &str, offset: usize) -> &str {
    let t = text[..offset.min(text.len())].trim_end();
    let (start, _) = word_at(t, t.len());
    &t[start..]
}

/// From the innermost open bracket (or the line start at the top level) to the cursor, the
/// last `name =` that is still open: the cursor is then writing `name`'s value.
pub fn key_before(text: &str, offset: usize, from: usize) -> Option<&str> {
    let seg = &text[from.min(offset)..offset.min(text.len())];
    // The current entry starts after the last separator at this depth.
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in seg.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' | '\n' if depth == 0 => start = i + 1,
            _ => {}
        }
    }
    let entry = &seg[start..];
    let eq = entry.find('=')?;
    let key = entry[..eq].trim();
    let key = key
        .rsplit(|c: char| c.is_whitespace())
        .next()
        .unwrap_or(key);
    (!key.is_empty() && key.bytes().all(is_word)).then_some(key)
}

/// Every word (letters, digits, `_`, `.`) outside comments and strings, with its offset.
pub fn words(text: &str) -> Vec<(usize, &str)> {
    let mut out = vec![];
    let mut start: Option<usize> = None;
    for (i, piece) in pieces(text, 0) {
        let word_byte = matches!(piece, Piece::Other) && is_word(text.as_bytes()[i]);
        match (word_byte, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_brackets_keys_and_words() {
        let text = "model m = srresnet(channels = 32, prompt = exp";
        let s = surroundings(text, text.len());
        assert_eq!(s.open.len(), 1);
        assert_eq!(word_before(text, s.open[0].offset), "srresnet");
        assert_eq!(
            key_before(text, text.len(), s.open[0].offset + 1),
            Some("prompt")
        );
        assert_eq!(word_at(text, text.len()), (text.len() - 3, "exp"));
        let text = "  train n on d {\n    loss = l1\n    opt";
        let s = surroundings(text, text.len());
        assert_eq!(s.open[0].bracket, b'{');
        assert_eq!(key_before(text, text.len(), s.open[0].offset + 1), None);
        let text = "data d = images(\"x, y # z";
        assert!(surroundings(text, text.len()).in_comment_or_string);
        let text = "let a = 1 # a note";
        assert!(surroundings(text, text.len()).in_comment_or_string);
        assert!(!surroundings(text, 5).in_comment_or_string);
        let ws: Vec<&str> = words("task a = noise(sigma = 1) # noise\nlet b = \"noise\"")
            .into_iter()
            .map(|(_, w)| w)
            .collect();
        assert_eq!(ws, ["task", "a", "noise", "sigma", "1", "let", "b"]);
    }
}
