//! An open document: its text, a line index for position conversion, and the analysis the
//! CLI would make of it (the same parser, checker and catalog).

use std::path::PathBuf;

use lsp_types::{Position, Range, Uri};
use mio_grammar::Span;

/// How positions count characters on a line, as negotiated at initialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16,
}

/// Byte offsets of line starts, for converting between offsets and LSP positions.
pub struct LineIndex {
    starts: Vec<usize>,
    encoding: Encoding,
}

impl LineIndex {
    pub fn new(text: &str, encoding: Encoding) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts, encoding }
    }

    pub fn position(&self, text: &str, offset: usize) -> Position {
        let offset = offset.min(text.len());
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        // Offsets inside a character (never produced by the parser) round down.
        let mut end = offset;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let col = match self.encoding {
            Encoding::Utf8 => end - start,
            Encoding::Utf16 => text[start..end].encode_utf16().count(),
        };
        Position::new(line as u32, col as u32)
    }

    pub fn offset(&self, text: &str, pos: Position) -> usize {
        let Some(&start) = self.starts.get(pos.line as usize) else {
            return text.len();
        };
        let end = self
            .starts
            .get(pos.line as usize + 1)
            .copied()
            .unwrap_or(text.len());
        let line = &text[start..end];
        let want = pos.character as usize;
        let mut units = 0;
        for (i, c) in line.char_indices() {
            if units >= want {
                return start + i;
            }
            units += match self.encoding {
                Encoding::Utf8 => c.len_utf8(),
                Encoding::Utf16 => c.len_utf16(),
            };
        }
        // Past the end of the line: its end (before the newline).
        start + line.trim_end_matches(['\n', '\r']).len()
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    pub fn range(&self, text: &str, span: Span) -> Range {
        Range::new(
            self.position(text, span.start),
            self.position(text, span.end),
        )
    }
}

/// The file a `file://` URI names, if it is one (percent-decoded; invalid UTF-8 is replaced).
pub fn uri_to_path(uri: &Uri) -> Option<PathBuf> {
    let s = uri.as_str();
    let rest = s.strip_prefix("file://")?;
    let mut bytes = Vec::with_capacity(rest.len());
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                bytes.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        bytes.push(b[i]);
        i += 1;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The `file://` URI of a path.
pub fn path_to_uri(path: &std::path::Path) -> Option<Uri> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    // `a/b/../c` as the editor knows it: `a/c`.
    let abs = abs.canonicalize().unwrap_or(abs);
    let mut s = String::from("file://");
    for b in abs.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s.parse().ok()
}

pub struct Document {
    pub text: String,
    pub version: i32,
    pub index: LineIndex,
    pub checked: mio_engine::Checked,
}

impl Document {
    pub fn new(uri: &Uri, text: String, version: i32, encoding: Encoding) -> Self {
        let path = uri_to_path(uri);
        let name = path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| uri.as_str().to_string());
        let checked = mio_engine::check_source(&name, path.as_deref(), text.clone(), &[]);
        Document {
            index: LineIndex::new(&text, encoding),
            text,
            version,
            checked,
        }
    }

    /// The root file's base offset in the analysis (AST spans are global offsets).
    pub fn base(&self) -> usize {
        let prog = &self.checked.program;
        prog.sources
            .get(prog.modules[mio_engine::load::Program::ROOT].file)
            .base
    }

    /// A global span of the root file as an LSP range.
    pub fn range(&self, span: Span) -> Range {
        let b = self.base();
        self.index
            .range(&self.text, Span::new(span.start - b, span.end - b))
    }

    /// Whether a global span lies in this document (not in an import).
    pub fn owns(&self, span: Span) -> bool {
        let prog = &self.checked.program;
        prog.sources.file_of(span.start) == Some(prog.modules[mio_engine::load::Program::ROOT].file)
    }

    pub fn offset(&self, pos: Position) -> usize {
        self.index.offset(&self.text, pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_in_both_encodings() {
        let text = "let a = \"é😀\" # x\nlet b = 2\n";
        for enc in [Encoding::Utf8, Encoding::Utf16] {
            let idx = LineIndex::new(text, enc);
            for (off, _) in text.char_indices() {
                assert_eq!(
                    idx.offset(text, idx.position(text, off)),
                    off,
                    "{enc:?} {off}"
                );
            }
        }
        let idx = LineIndex::new(text, Encoding::Utf16);
        // After "é😀": é is 1 unit, 😀 two.
        let off = text.find('"').unwrap() + 1 + 'é'.len_utf8() + '😀'.len_utf8();
        assert_eq!(idx.position(text, off), Position::new(0, 12));
        let idx8 = LineIndex::new(text, Encoding::Utf8);
        assert_eq!(idx8.position(text, off), Position::new(0, 15));
        assert_eq!(idx.position(text, text.len()), Position::new(2, 0));
        // A position past a line's end clamps to it.
        assert_eq!(idx.offset(text, Position::new(1, 99)), text.len() - 1);
        assert_eq!(idx.offset(text, Position::new(9, 0)), text.len());
    }

    #[test]
    fn file_uris_convert_both_ways() {
        let uri: Uri = "file:///tmp/my%20dir/a.mio".parse().unwrap();
        assert_eq!(
            uri_to_path(&uri).unwrap(),
            PathBuf::from("/tmp/my dir/a.mio")
        );
        let back = path_to_uri(&PathBuf::from("/tmp/my dir/a.mio")).unwrap();
        assert_eq!(back.as_str(), "file:///tmp/my%20dir/a.mio");
        // Invalid UTF-8 in a path does not fail.
        let bad: Uri = "file:///tmp/%FF%FE.mio".parse().unwrap();
        assert!(uri_to_path(&bad).is_some());
        let other: Uri = "untitled:Untitled-1".parse().unwrap();
        assert!(uri_to_path(&other).is_none());
    }
}
