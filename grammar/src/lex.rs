//! The tokens of a `.mio` text in one linear pass, as the grammar reads them: comments,
//! strings, numbers (`2e-4`, `250k`, `128px`, `1_000`), words (identifiers, keywords), `..` and
//! single punctuation. It never fails: any other character is a token of its own. The
//! formatter checks with it that it kept every token and comment in order; the language
//! server's semantic tokens are built on it.

use crate::ast::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// `#` to the end of the line (a `\r` before the newline excluded).
    Comment,
    /// A string literal with its quotes (an unterminated one ends at the line's end).
    Str,
    Number,
    /// An identifier or keyword (`paper`, `train`, `true`).
    Word,
    /// `..`
    DotDot,
    /// One character of punctuation (or anything else).
    Punct,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

fn word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The tokens of `src`, in order; whitespace (including a byte-order mark) is skipped.
pub fn tokens(src: &str) -> Vec<Token> {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(src.len() / 4);
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        let kind = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            0xEF if src[i..].starts_with('\u{feff}') => {
                i += 3;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                let mut end = i;
                if end > start && b[end - 1] == b'\r' {
                    end -= 1;
                }
                out.push(Token {
                    kind: TokenKind::Comment,
                    span: Span::new(start, end),
                });
                continue;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' && i + 1 < b.len() && b[i + 1] != b'\n' {
                        2
                    } else {
                        1
                    };
                }
                if i < b.len() && b[i] == b'"' {
                    i += 1;
                }
                TokenKind::Str
            }
            b'0'..=b'9' => {
                i = number_end(b, i);
                TokenKind::Number
            }
            b'.' if b.get(i + 1) == Some(&b'.') => {
                i += 2;
                TokenKind::DotDot
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && word_char(b[i]) {
                    i += 1;
                }
                TokenKind::Word
            }
            _ => {
                // One character (whole, for non-ASCII text).
                i += src[i..].chars().next().map_or(1, char::len_utf8);
                TokenKind::Punct
            }
        };
        out.push(Token {
            kind,
            span: Span::new(start, i),
        });
    }
    out
}

/// The end of a number starting at `i` (a digit): digits and `_`, a fraction, an exponent,
/// a multiplier and a unit, as the grammar's `number` rule; letters glued after it stay part of
/// it (the parser reports them).
fn number_end(b: &[u8], mut i: usize) -> usize {
    let digits = |mut i: usize| {
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
        i
    };
    i = digits(i);
    // A fraction, but not a range's `..`.
    if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i = digits(i + 1);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            i = digits(j);
        }
    }
    while i < b.len() && word_char(b[i]) {
        i += 1;
    }
    i
}

/// The tokens a formatter must keep, as text: every token but the separating commas (which
/// the formatter adds or drops as the layout needs) with `\r` left out of comments.
pub fn significant(src: &str) -> Vec<(TokenKind, &str)> {
    tokens(src)
        .into_iter()
        .map(|t| (t.kind, &src[t.span.start..t.span.end]))
        .filter(|(k, t)| !(*k == TokenKind::Punct && *t == ","))
        .map(|(k, t)| {
            if k == TokenKind::Comment {
                (k, t.trim_end())
            } else {
                (k, t)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<(TokenKind, &str)> {
        tokens(src)
            .into_iter()
            .map(|t| (t.kind, &src[t.span.start..t.span.end]))
            .collect()
    }

    #[test]
    fn numbers_are_read_whole_as_the_grammar_reads_them() {
        use TokenKind::*;
        assert_eq!(
            texts("lr = 2e-4, iters = 250k, p = 128px, x = 1.5..3.0 # c\r\n"),
            vec![
                (Word, "lr"),
                (Punct, "="),
                (Number, "2e-4"),
                (Punct, ","),
                (Word, "iters"),
                (Punct, "="),
                (Number, "250k"),
                (Punct, ","),
                (Word, "p"),
                (Punct, "="),
                (Number, "128px"),
                (Punct, ","),
                (Word, "x"),
                (Punct, "="),
                (Number, "1.5"),
                (DotDot, ".."),
                (Number, "3.0"),
                (Comment, "# c"),
            ]
        );
        assert_eq!(texts("1..2")[1], (DotDot, ".."));
        assert_eq!(texts("-45deg")[1], (Number, "45deg"));
        assert_eq!(texts("\u{feff}use \"a\\\"b\"").len(), 2);
        assert_eq!(texts("\"open\nx")[1], (Word, "x"));
    }
}
