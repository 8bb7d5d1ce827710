//! `mio fmt`: prints a syntax tree back as canonical text, keeping every comment.
//!
//! Layout rules: two-space indent; one statement or setting per line inside workflows and
//! multi-line blocks; a block written on one line stays on one line while it fits in
//! [`WIDTH`] columns; a list, tuple or call that does not fit is broken one element per line;
//! at most one blank line is kept where the source had any, and workflows and matrices are
//! always set apart by one. Comments stay where they were relative to items, statements and
//! settings; a comment inside an expression moves to the line after that statement.
//! The output depends only on the tree and the comments, so formatting is idempotent.

use crate::ast::*;
use crate::comments::{comments_at, Comment};
use crate::error::ParseError;
use crate::parse_at;

/// The line width the formatter keeps to.
pub const WIDTH: usize = 100;

/// Formats `src`; refuses a file with syntax errors (they are returned).
pub fn format(src: &str) -> Result<String, Vec<ParseError>> {
    // A file's byte-order mark and CRLF line ends are kept: the layout is computed on the text
    // with LF ends and put back.
    let bom = src.starts_with('\u{feff}');
    let crlf = src.contains("\r\n");
    let body = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lf;
    let body = if crlf {
        lf = body.replace("\r\n", "\n");
        lf.as_str()
    } else {
        body
    };
    let out = format_lf(body)?;
    // Every token and comment kept, in order (commas aside, which the layout decides).
    if let Some(at) = first_difference(body, &out) {
        return Err(vec![ParseError {
            span: Span::new(at, at + 1),
            message: "mio fmt cannot keep this in its place, so it leaves the file as it is".into(),
            label: "here".into(),
            help: Some("put a comment on a line of its own, before the setting it is about".into()),
        }]);
    }
    let out = if crlf { out.replace('\n', "\r\n") } else { out };
    Ok(if bom { format!("\u{feff}{out}") } else { out })
}

/// Where the tokens of `before` and `after` first differ (an offset into `before`).
fn first_difference(before: &str, after: &str) -> Option<usize> {
    let a = crate::lex::tokens(before);
    let b = crate::lex::significant(after);
    let a_sig: Vec<(crate::lex::Token, (crate::lex::TokenKind, &str))> = a
        .iter()
        .map(|t| (*t, (t.kind, before[t.span.start..t.span.end].trim_end())))
        .filter(|(_, (k, s))| !(*k == crate::lex::TokenKind::Punct && *s == ","))
        .collect();
    for (k, (tok, text)) in a_sig.iter().enumerate() {
        if b.get(k) != Some(text) {
            return Some(tok.span.start);
        }
    }
    (a_sig.len() != b.len()).then_some(before.len().saturating_sub(1))
}

fn format_lf(src: &str) -> Result<String, Vec<ParseError>> {
    let parsed = parse_at(src, 0);
    if !parsed.errors.is_empty() {
        return Err(parsed.errors);
    }
    let mut p = Printer {
        src,
        comments: comments_at(src, 0),
        next: 0,
        out: String::with_capacity(src.len() + 64),
        last_end: 0,
        fresh: true,
    };
    p.file(&parsed.file);
    Ok(p.out)
}

struct Printer<'a> {
    src: &'a str,
    comments: Vec<Comment>,
    /// Index of the first comment not printed yet.
    next: usize,
    out: String,
    /// Source offset where the last printed node or comment ended.
    last_end: usize,
    /// Nothing printed yet at this nesting level (no blank line may be added).
    fresh: bool,
}

impl Printer<'_> {
    fn indent(&mut self, level: usize) {
        for _ in 0..level {
            self.out.push_str("  ");
        }
    }

    fn blank_between(&self, from: usize, to: usize) -> bool {
        if from >= to || to > self.src.len() {
            return false;
        }
        // Lines strictly between the end of one thing and the start of the next.
        let lines: Vec<&str> = self.src[from..to].split('\n').collect();
        lines.len() >= 3
            && lines[1..lines.len() - 1]
                .iter()
                .any(|l| l.trim().is_empty())
    }

    /// Blank line before something starting at `start`, when the source had one there.
    fn maybe_blank(&mut self, start: usize, force: bool) {
        let already = self.out.ends_with("\n\n");
        if !self.fresh && !already && (force || self.blank_between(self.last_end, start)) {
            self.out.push('\n');
        }
    }

    /// Prints the comments that start before `before`, each on its own line.
    fn leading(&mut self, before: usize, level: usize) {
        while self.next < self.comments.len() && self.comments[self.next].span.start < before {
            let c = self.comments[self.next].clone();
            self.maybe_blank(c.span.start, false);
            self.indent(level);
            self.out.push('#');
            self.out.push_str(&c.text);
            self.out.push('\n');
            self.last_end = c.span.end;
            self.fresh = false;
            self.next += 1;
        }
    }

    /// Appends a comment that follows `end` on the same source line.
    fn trailing(&mut self, end: usize) {
        if let Some(c) = self.comments.get(self.next) {
            // Only blanks and a comma between: a comment after a closing bracket belongs to
            // whatever that bracket closes.
            let between = &self.src[end.min(c.span.start)..c.span.start];
            if c.span.start >= end
                && between
                    .chars()
                    .all(|ch| matches!(ch, ' ' | '\t' | ',' | '\r'))
            {
                self.out.push_str(" #");
                self.out.push_str(&c.text);
                self.last_end = c.span.end;
                self.next += 1;
            }
        }
    }

    fn has_comment_within(&self, span: Span) -> bool {
        self.comments[self.next..]
            .iter()
            .any(|c| c.span.start >= span.start && c.span.start < span.end)
    }

    /// Starts a node at `span`: blank line, leading comments, indentation.
    fn open_node(&mut self, span: Span, level: usize, force_blank: bool) {
        let first = self
            .comments
            .get(self.next)
            .map(|c| c.span.start)
            .filter(|&s| s < span.start)
            .unwrap_or(span.start);
        self.maybe_blank(first, force_blank);
        self.leading(span.start, level);
        // A blank line kept between the last leading comment and the node.
        if first != span.start {
            self.maybe_blank(span.start, false);
        }
        self.indent(level);
        self.fresh = false;
    }

    /// Ends a node at `span`: trailing comment, newline.
    fn close_node(&mut self, span: Span) {
        self.last_end = span.end;
        self.trailing(span.end);
        self.out.push('\n');
    }

    fn file(&mut self, file: &File) {
        let mut prev_big = false;
        for item in &file.items {
            let big = matches!(item, Item::Workflow(_) | Item::Matrix(_));
            self.open_node(item.span(), 0, big || prev_big);
            self.item(item);
            self.close_node(item.span());
            prev_big = big;
        }
        self.leading(usize::MAX, 0);
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Use(u) => {
                self.out.push_str("use ");
                match &u.target {
                    UseTarget::Prelude(i) => self.out.push_str(&i.name),
                    UseTarget::File { path, .. } => self.out.push_str(&quote(path)),
                }
                if let Some(a) = &u.alias {
                    self.out.push_str(" as ");
                    self.out.push_str(&a.name);
                }
            }
            Item::Task(b) => self.binding("task ", b, 0),
            Item::Let(b) => self.binding("let ", b, 0),
            Item::Workflow(w) => {
                self.out.push_str("workflow ");
                self.out.push_str(&w.name.name);
                if let Some(e) = &w.extends {
                    self.out.push_str(" extends ");
                    self.out.push_str(&e.name);
                }
                self.out.push_str(" {");
                let stmts: Vec<(Span, &Stmt)> = w.stmts.iter().map(|s| (s.span(), s)).collect();
                self.body(&stmts, w.close, 1, |p, s| p.stmt(s, 1));
            }
            Item::Matrix(m) => {
                self.out.push_str("matrix ");
                self.out.push_str(&m.name.name);
                self.out.push_str(" over ");
                let bases: Vec<&str> = m.bases.iter().map(|b| b.name.as_str()).collect();
                self.out.push_str(&bases.join(", "));
                self.out.push_str(" {");
                let axes: Vec<(Span, &Axis)> = m.axes.iter().map(|a| (a.span, a)).collect();
                self.body(&axes, m.close, 1, |p, a| {
                    let head = format!("{} = ", a.path);
                    p.out.push_str(&head);
                    p.expr(&a.value, 1, 2 + head.len());
                });
            }
        }
    }

    /// The inside of a `{ ... }` printed one entry per line, then the closing brace.
    fn body<T>(
        &mut self,
        entries: &[(Span, T)],
        close: usize,
        level: usize,
        mut each: impl FnMut(&mut Self, &T),
    ) {
        if entries.is_empty()
            && !self.comments[self.next..]
                .iter()
                .any(|c| c.span.start < close)
        {
            self.out.push('}');
            return;
        }
        self.out.push('\n');
        self.fresh = true;
        for (span, e) in entries {
            self.open_node(*span, level, false);
            each(self, e);
            self.close_node(*span);
        }
        self.leading(close, level);
        self.indent(level - 1);
        self.out.push('}');
        self.fresh = false;
    }

    fn binding(&mut self, keyword: &str, b: &Binding, level: usize) {
        let head = format!("{keyword}{} = ", b.name.name);
        self.out.push_str(&head);
        self.expr(&b.value, level, level * 2 + head.len());
    }

    fn stmt(&mut self, s: &Stmt, level: usize) {
        match s {
            Stmt::Setting(b) => self.binding("", b, level),
            Stmt::Data(b) => self.binding("data ", b, level),
            Stmt::Model(b) => self.binding("model ", b, level),
            Stmt::Train(t) => {
                let head = format!("train {} on {} ", t.model.name, t.data.name);
                self.out.push_str(&head);
                self.block(&t.block, level, level * 2 + head.len());
            }
            Stmt::Eval(e) => {
                let mut head = format!("eval {} on {} ", e.model.name, e.data.name);
                if let Some(a) = &e.alias {
                    head.push_str(&format!("as {} ", a.name));
                }
                self.out.push_str(&head);
                self.block(&e.block, level, level * 2 + head.len());
            }
            Stmt::Sweep(sw) => {
                let target = match &sw.target {
                    SweepTarget::Data(d) => d.name.clone(),
                    SweepTarget::File { path, .. } => quote(path),
                };
                let mut head = format!("sweep {} on {} ", sw.model.name, target);
                if let Some(a) = &sw.alias {
                    head.push_str(&format!("as {} ", a.name));
                }
                self.out.push_str(&head);
                self.block(&sw.block, level, level * 2 + head.len());
            }
            Stmt::Report(r) => {
                self.out.push_str("report ");
                self.block(&r.block, level, level * 2 + 7);
            }
        }
    }

    fn block(&mut self, b: &Block, level: usize, col: usize) {
        let close = b.span.end - 1;
        if !b.multiline && !self.has_comment_within(b.span) {
            let flat = if b.settings.is_empty() {
                "{}".to_string()
            } else {
                let inner: Vec<String> = b
                    .settings
                    .iter()
                    .map(|s| format!("{} = {}", s.name.name, flat(&s.value)))
                    .collect();
                format!("{{ {} }}", inner.join(", "))
            };
            if col + flat.len() <= WIDTH {
                self.out.push_str(&flat);
                return;
            }
        }
        self.out.push('{');
        let entries: Vec<(Span, &Binding)> = b.settings.iter().map(|s| (s.span, s)).collect();
        self.body(&entries, close, level + 1, |p, s| {
            p.binding("", s, level + 1)
        });
    }

    /// Writes `e` starting at column `col`, breaking it over lines if it does not fit or holds
    /// comments (each then stays beside the argument or element it was written at).
    fn expr(&mut self, e: &Expr, level: usize, col: usize) {
        let one_line = flat(e);
        let commented = self.has_comment_within(e.span);
        if !commented && col + one_line.len() <= WIDTH {
            self.out.push_str(&one_line);
            return;
        }
        let (open, close, items): (String, &str, Vec<(Option<&Ident>, &Expr)>) = match &e.kind {
            ExprKind::List(xs) => ("[".into(), "]", xs.iter().map(|x| (None, x)).collect()),
            ExprKind::Tuple(xs) => ("(".into(), ")", xs.iter().map(|x| (None, x)).collect()),
            ExprKind::Call(c) => (
                format!("{}(", c.callee),
                ")",
                c.args.iter().map(|a| (a.name.as_ref(), &a.value)).collect(),
            ),
            _ => {
                self.out.push_str(&one_line);
                return;
            }
        };
        if items.is_empty() {
            self.out.push_str(&one_line);
            return;
        }
        self.out.push_str(&open);
        self.trailing(e.span.start + open.len().min(e.span.end - e.span.start));
        self.out.push('\n');
        let fresh = std::mem::replace(&mut self.fresh, true);
        for (name, x) in items {
            let start = name.map_or(x.span.start, |n| n.span.start);
            self.leading(start, level + 1);
            self.indent(level + 1);
            self.fresh = false;
            let mut c = (level + 1) * 2;
            if let Some(n) = name {
                self.out.push_str(&n.name);
                self.out.push_str(" =");
                let mut first = true;
                // Comments between the name and its value: the value goes on the next line.
                while let Some(cm) = self
                    .comments
                    .get(self.next)
                    .filter(|cm| cm.span.start < x.span.start)
                    .cloned()
                {
                    if first {
                        self.out.push(' ');
                    } else {
                        self.indent(level + 2);
                    }
                    self.out.push('#');
                    self.out.push_str(&cm.text);
                    self.out.push('\n');
                    self.next += 1;
                    first = false;
                }
                if first {
                    self.out.push(' ');
                    c += n.name.len() + 3;
                } else {
                    self.indent(level + 2);
                    c = (level + 2) * 2;
                }
            }
            self.expr(x, level + 1, c);
            self.out.push(',');
            self.last_end = x.span.end;
            self.trailing(x.span.end);
            self.out.push('\n');
        }
        self.leading(e.span.end.saturating_sub(1), level + 1);
        self.fresh = fresh;
        self.indent(level);
        self.out.push_str(close);
    }
}

/// An expression on one line.
pub fn flat(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Number(n) => n.raw.clone(),
        ExprKind::Str(s) => quote(s),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Path(p) => p.to_string(),
        ExprKind::List(xs) => {
            let v: Vec<String> = xs.iter().map(flat).collect();
            format!("[{}]", v.join(", "))
        }
        ExprKind::Tuple(xs) => {
            let v: Vec<String> = xs.iter().map(flat).collect();
            if v.len() == 1 {
                format!("({},)", v[0])
            } else {
                format!("({})", v.join(", "))
            }
        }
        ExprKind::Range(lo, hi) => format!("{}..{}", flat(lo), flat(hi)),
        ExprKind::Then(steps) => {
            let v: Vec<String> = steps.iter().map(flat).collect();
            v.join(" then ")
        }
        ExprKind::Call(c) => {
            let v: Vec<String> = c
                .args
                .iter()
                .map(|a| match &a.name {
                    Some(n) => format!("{} = {}", n.name, flat(&a.value)),
                    None => flat(&a.value),
                })
                .collect();
            format!("{}({})", c.callee, v.join(", "))
        }
    }
}

/// A string literal with the escapes the grammar reads back.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
