//! Every text a check reads (the file, its imports, the embedded preludes, each `--set` value)
//! gets its own range of one global offset space, as in rustc's source map. AST spans are
//! global offsets, so a diagnostic can point into any of them without carrying a file id.

use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct SourceFile {
    /// What diagnostics call it: the path as given, `<paper prelude>`, `--set train.iters=1k`.
    pub name: String,
    /// The file on disk, when there is one.
    pub path: Option<PathBuf>,
    pub text: String,
    /// Global offset of the first byte.
    pub base: usize,
}

impl SourceFile {
    /// `(line, column)`, both 1-based, of a global offset inside this file.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let local = offset.saturating_sub(self.base).min(self.text.len());
        let before = &self.text[..local];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        (line, col)
    }
}

#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
    next_base: usize,
}

/// Index of a file in its [`SourceMap`].
pub type FileId = usize;

impl SourceMap {
    /// Adds a text; returns its id. Its offsets start after every earlier file's (plus one, so
    /// an end-of-file span never touches the next file).
    pub fn add(&mut self, name: impl Into<String>, path: Option<PathBuf>, text: String) -> FileId {
        let base = self.next_base;
        self.next_base = base + text.len() + 1;
        self.files.push(SourceFile {
            name: name.into(),
            path,
            text,
            base,
        });
        self.files.len() - 1
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id]
    }

    /// The file a global offset falls in.
    pub fn file_of(&self, offset: usize) -> Option<FileId> {
        let i = self.files.partition_point(|f| f.base <= offset);
        i.checked_sub(1)
            .filter(|&i| offset <= self.files[i].base + self.files[i].text.len())
    }

    /// The source text of a global span, when it lies inside one file.
    pub fn text(&self, span: mio_grammar::Span) -> Option<&str> {
        let f = self.get(self.file_of(span.start)?);
        f.text
            .get(span.start - f.base..span.end.checked_sub(f.base)?)
    }

    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }
}
