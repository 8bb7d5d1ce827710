//! Building the AST straight from pest's pairs, and recovering from syntax errors.
//!
//! Parsing never fails: [`parse_at`] returns whatever items it could read plus every syntax
//! error. When the whole file does not parse, it is cut into top-level items (and a broken
//! workflow into statements) by [`crate::chunk`], and each piece is parsed on its own, so one
//! typo does not hide the errors after it and the language server always has a tree.

use pest::iterators::Pair;
use pest::Parser as _;

use crate::ast::*;
use crate::chunk;
use crate::error::{from_pest, ParseError};

#[derive(pest_derive::Parser)]
#[grammar = "mio.pest"]
struct MioParser;

pub(crate) use self::Rule as R;

/// The result of parsing: the items that were read, and the syntax errors (empty when clean).
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    pub file: File,
    pub errors: Vec<ParseError>,
}

/// Parses `src` whose first byte sits at global offset `base` (every span is shifted by it).
pub fn parse_at(src: &str, base: usize) -> Parsed {
    if chunk::too_deep(src).is_some() {
        return recover(src, base);
    }
    if src.len() >= PARALLEL_FROM {
        if let Some(parsed) = parse_chunked_at(src, base) {
            return parsed;
        }
    }
    parse_whole(src, base)
}

/// From this size on, a file's items (and a large workflow's statements) are parsed in
/// parallel; below it the threads cost more than they save.
const PARALLEL_FROM: usize = 24 * 1024;

fn parse_whole(src: &str, base: usize) -> Parsed {
    match MioParser::parse(R::file, src) {
        Ok(pairs) => {
            let b = Builder { base };
            let items = top_children(pairs).map(|p| b.item(p)).collect();
            Parsed {
                file: File {
                    items,
                    broken: vec![],
                },
                errors: vec![],
            }
        }
        Err(_) => recover(src, base),
    }
}

fn too_deep_error(at: usize) -> ParseError {
    ParseError {
        span: Span::new(at, at + 1),
        message: format!("brackets nested more than {} deep", chunk::MAX_NESTING),
        label: "too deep".into(),
        help: Some("flatten the value: no setting needs this much nesting".into()),
    }
}

/// Parses a clean file piece by piece in parallel: its items, and the statements of a large
/// workflow. Returns `None` as soon as a piece does not parse (the caller then parses the whole
/// text, which also recovers from errors), so on success the tree is the one [`parse_whole`]
/// builds, spans included (a property test holds them equal).
fn parse_chunked_at(src: &str, base: usize) -> Option<Parsed> {
    let run = (src.len() / (2 * rayon::current_num_threads().max(1))).max(2048);
    chunked(src, base, PARALLEL_FROM / 2, run)
}

/// [`parse_chunked_at`] splitting every workflow into statements, for the tests that hold the
/// chunked parse equal to the whole one.
#[doc(hidden)]
pub fn parse_chunked_everywhere(src: &str) -> Option<Parsed> {
    // Every piece a run of its own, every workflow split into statements.
    chunked(src, 0, 0, 0)
}

fn chunked(src: &str, base: usize, split_workflows_from: usize, run: usize) -> Option<Parsed> {
    use rayon::prelude::*;
    // Runs of consecutive items, a few per thread: one pest call per run, since a call has a
    // fixed cost that thousands of tiny pieces would pay over and over.
    let pieces = chunk::items(src);
    let run_size = run;
    let runs = batches(&pieces, run);
    let items: Option<Vec<Vec<Item>>> = runs
        .par_iter()
        .map(|run| {
            let run_len = run_size;
            let text = &src[run.clone()];
            if text.len() >= split_workflows_from
                && chunk::first_word(text) == Some("workflow")
                && chunk::items(text).len() == 1
            {
                return workflow_in_parallel(src, run.clone(), base, run_len).map(|w| vec![w]);
            }
            let pairs = MioParser::parse(R::file, text).ok()?;
            let b = Builder { base }.shifted(run.start);
            Some(top_children(pairs).map(|p| b.item(p)).collect())
        })
        .collect();
    Some(Parsed {
        file: File {
            items: items?.into_iter().flatten().collect(),
            broken: vec![],
        },
        errors: vec![],
    })
}

/// Groups consecutive pieces into runs of about `target` bytes (0: each piece alone); a large
/// piece stays a run of its own, so a workflow's statements can be split in turn.
fn batches(pieces: &[std::ops::Range<usize>], target: usize) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = vec![];
    let mut current: Option<std::ops::Range<usize>> = None;
    for p in pieces {
        let big = p.len() >= target;
        match current.take() {
            Some(c) if !big && c.len() < target => current = Some(c.start..p.end),
            Some(c) => {
                out.push(c);
                current = Some(p.clone());
            }
            None => current = Some(p.clone()),
        }
        if big {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

/// A workflow whose statements are parsed in parallel (in runs); `None` unless every one parses
/// and only trivia follows the closing brace.
fn workflow_in_parallel(
    src: &str,
    piece: std::ops::Range<usize>,
    base: usize,
    run: usize,
) -> Option<Item> {
    use rayon::prelude::*;
    let text = &src[piece.clone()];
    let b = Builder { base }.shifted(piece.start);
    let (name, extends, body_start) = workflow_head(text, b)?;
    let body = chunk::statements(text, body_start);
    let close = body.close?;
    if !chunk::is_trivia(&text[close + 1..]) {
        return None;
    }
    let runs = batches(&body.stmts, run);
    let stmts: Option<Vec<Vec<Stmt>>> = runs
        .par_iter()
        .map(|r| {
            let pairs = MioParser::parse(R::stmts_only, &text[r.clone()]).ok()?;
            let sb = b.shifted(r.start);
            Some(top_children(pairs).map(|p| sb.stmt(p)).collect())
        })
        .collect();
    Some(Item::Workflow(Workflow {
        name,
        extends,
        stmts: stmts?.into_iter().flatten().collect(),
        span: Span::new(base + piece.start, base + piece.start + close + 1),
        close: base + piece.start + close,
        broken: vec![],
    }))
}

/// Parses one expression (the value of `--set path=value`).
pub fn parse_expr_at(src: &str, base: usize) -> Result<Expr, ParseError> {
    if let Some(at) = chunk::too_deep(src) {
        return Err(too_deep_error(base + at));
    }
    let mut pairs = MioParser::parse(R::expr_only, src)
        .map_err(|e| from_pest(&e, src, 0, base, src, "the end of the value"))?;
    let b = Builder { base };
    Ok(b.expr(first_inner(pairs.next().unwrap())))
}

/// Parses a dotted path (the left side of `--set path=value`).
pub fn parse_path_at(src: &str, base: usize) -> Result<Path, ParseError> {
    let mut pairs = MioParser::parse(R::path_only, src)
        .map_err(|e| from_pest(&e, src, 0, base, src, "the end of the path"))?;
    let b = Builder { base };
    Ok(b.path(first_inner(pairs.next().unwrap())))
}

/// The children of a successful parse's top pair, without the end of input.
fn top_children<'a>(
    mut pairs: pest::iterators::Pairs<'a, Rule>,
) -> impl Iterator<Item = Pair<'a, Rule>> {
    pairs
        .next()
        .expect("a parse yields its rule's pair")
        .into_inner()
        .filter(|p| p.as_rule() != R::EOI)
}

fn first_inner(p: Pair<'_, Rule>) -> Pair<'_, Rule> {
    p.into_inner().next().expect("non-empty rule")
}

fn recover(src: &str, base: usize) -> Parsed {
    let b = Builder { base };
    let mut out = Parsed::default();
    for piece in chunk::items(src) {
        let text = &src[piece.clone()];
        if chunk::is_trivia(text) {
            continue;
        }
        if let Some(at) = chunk::too_deep(text) {
            let at = base + piece.start + at;
            out.file.broken.extend(chunk::head(text));
            out.errors.push(too_deep_error(at));
            continue;
        }
        match MioParser::parse(R::item_only, text) {
            Ok(mut pairs) => {
                let item = first_inner(pairs.next().unwrap());
                out.file.items.push(b.shifted(piece.start).item(item));
            }
            Err(e) => {
                let is_workflow = chunk::first_word(text) == Some("workflow");
                let recovered = if is_workflow {
                    recover_workflow(src, piece.clone(), base, &mut out.errors)
                } else {
                    None
                };
                // A complete item followed by text that belongs to nothing (`use paper` then a
                // stray `}`): the item is kept, the rest is the error.
                let prefix = if recovered.is_none() && !is_workflow {
                    complete_prefix(text).map(|(pair, end)| {
                        let item = b.shifted(piece.start).item(pair);
                        (item, end)
                    })
                } else {
                    None
                };
                if let Some((item, end)) = prefix {
                    let from = chunk::skip_trivia(text, end);
                    let first_line = text[from..].lines().next().unwrap_or("").trim_end();
                    let shown: String = first_line.chars().take(40).collect();
                    let item_end = text[..end].trim_end().len();
                    let line = src[..piece.start + item_end].matches('\n').count() + 1;
                    out.errors.push(ParseError {
                        span: Span::new(
                            base + piece.start + from,
                            base + piece.start + from + first_line.len().max(1),
                        ),
                        message: format!(
                            "`{shown}` comes after the end of the item on line {line} and belongs to no item"
                        ),
                        label: "outside any item".into(),
                        help: Some(
                            "delete it, or start an item here (`workflow`, `task`, `let`, `use` or `matrix`)"
                                .into(),
                        ),
                    });
                    out.file.items.push(item);
                    continue;
                }
                match recovered {
                    Some(w) => out.file.items.push(Item::Workflow(w)),
                    None => {
                        out.file.broken.extend(chunk::head(text));
                        let mut err =
                            from_pest(&e, text, piece.start, base, src, "the end of the item");
                        misspelt_keyword(&mut err, text, base + piece.start);
                        out.errors.push(err);
                    }
                }
            }
        }
    }
    out
}

/// Reads a workflow whose body has errors statement by statement. Returns `None` when even its
/// head (`workflow name {`) does not parse; then the item's own error is reported.
fn recover_workflow(
    src: &str,
    piece: std::ops::Range<usize>,
    base: usize,
    errors: &mut Vec<ParseError>,
) -> Option<Workflow> {
    let text = &src[piece.clone()];
    let b = Builder { base }.shifted(piece.start);
    let (name, extends, body_start) = workflow_head(text, b)?;
    let body = chunk::statements(text, body_start);
    let mut stmts = vec![];
    let mut broken = vec![];
    for s in &body.stmts {
        let stext = &text[s.clone()];
        match MioParser::parse(R::stmt_only, stext) {
            Ok(mut pairs) => {
                let stmt = first_inner(pairs.next().unwrap());
                stmts.push(b.shifted(s.start).stmt(stmt));
            }
            Err(e) => {
                broken.extend(chunk::head(stext));
                let mut err = from_pest(
                    &e,
                    stext,
                    piece.start + s.start,
                    base,
                    src,
                    "the end of the statement",
                );
                misspelt_keyword(&mut err, stext, base + piece.start + s.start);
                unclosed_block(&mut err, src, stext, base, piece.start + s.start);
                errors.push(err);
            }
        }
    }
    let close = match body.close {
        Some(c) => {
            trailing_text(src, piece.start, text, c, &name.name, base, errors);
            c
        }
        None => {
            let at = piece.start + body_start - 1;
            errors.push(ParseError {
                span: Span::new(base + at, base + at + 1),
                message: format!("this `{{` of workflow `{}` is never closed", name.name),
                label: "unclosed `{`".into(),
                help: Some("add the `}` that ends the workflow".into()),
            });
            text.len()
        }
    };
    Some(Workflow {
        name,
        extends,
        stmts,
        span: Span::new(
            base + piece.start,
            base + piece.start + (close + 1).min(text.len()),
        ),
        close: base + piece.start + close,
        broken,
    })
}

/// A statement whose block is never closed (the next statement starts before its `}`): the
/// error names the block and points at its `{`.
fn unclosed_block(err: &mut ParseError, src: &str, text: &str, base: usize, start: usize) {
    let Some((open, b'{')) = chunk::unclosed(text) else {
        return;
    };
    let what = chunk::head(text)
        .map(|(k, n)| format!("`{k} {n}`"))
        .unwrap_or_else(|| "this statement".into());
    let line = src[..start + open].matches('\n').count() + 1;
    let last = text.trim_end();
    let last_line = src[..start + last.len()].matches('\n').count() + 1;
    *err = ParseError {
        span: Span::new(base + start + open, base + start + open + 1),
        message: format!("the `{{` of {what} on line {line} is never closed"),
        label: "unclosed `{`".into(),
        help: Some(format!(
            "add the `}}` that ends it after its last setting (line {last_line})"
        )),
    };
}

/// The item at the start of `text` when `text` is that item and more, and where it ends.
fn complete_prefix(text: &str) -> Option<(Pair<'_, Rule>, usize)> {
    let start = chunk::skip_trivia(text, 0);
    let mut pairs = MioParser::parse(R::item, &text[start..]).ok()?;
    let pair = pairs.next()?;
    let end = start + pair.as_span().end();
    // Re-parse from the text's own start so the pair's offsets are the piece's.
    let mut again = MioParser::parse(R::item, text).ok()?;
    let pair = again.next()?;
    let rest = chunk::skip_trivia(text, end);
    // Text that could continue the item (`noise(sigma = )`: a call whose arguments are wrong)
    // is the item's own error, reported by the parser as it is.
    let continues = text[rest..].starts_with(['(', '[', '.', ',', '=']);
    (rest < text.len() && !continues).then_some((pair, end))
}

/// A piece that failed to parse and starts with a misspelt keyword (`modle net = ...`): the
/// error says so at that word, with the keyword meant, instead of pest's `expected =`.
fn misspelt_keyword(err: &mut ParseError, text: &str, at: usize) {
    let start = chunk::skip_trivia(text, 0);
    let Some(word) = chunk::first_word(&text[start..]) else {
        return;
    };
    let Some(meant) = chunk::near_keyword(word) else {
        return;
    };
    // Only where the word stands as a keyword would: a name follows it.
    let rest = text[start + word.len()..].trim_start();
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return;
    }
    *err = ParseError {
        span: Span::new(at + start, at + start + word.len()),
        message: format!("`{word}` is not a keyword"),
        label: format!("did you mean `{meant}`?"),
        help: Some(format!("write `{meant}`")),
    };
}

/// Text after the `}` that closes a workflow, up to the next item, belongs to nothing: it is an
/// error at its place, never dropped in silence (a stray `}` would otherwise cut the workflow
/// short and lose the lines after it).
fn trailing_text(
    src: &str,
    piece_start: usize,
    text: &str,
    close: usize,
    workflow: &str,
    base: usize,
    errors: &mut Vec<ParseError>,
) {
    let from = chunk::skip_trivia(text, close + 1);
    if from >= text.len() {
        return;
    }
    let rest = &text[from..];
    let first_line = rest.lines().next().unwrap_or(rest).trim_end();
    let line_of = |at: usize| src[..at].matches('\n').count() + 1;
    let close_line = line_of(piece_start + close);
    let lines = rest.trim_end().lines().count();
    let shown: String = first_line.chars().take(40).collect();
    errors.push(ParseError {
        span: Span::new(
            base + piece_start + from,
            base + piece_start + from + first_line.len().max(1),
        ),
        message: format!(
            "`{shown}` comes after the end of workflow `{workflow}` (its `}}` on line {close_line}) and belongs to no item"
        ),
        label: if lines > 1 {
            format!("this and the {} line(s) after it are outside any item", lines - 1)
        } else {
            "outside any item".into()
        },
        help: Some(format!(
            "if it belongs to `{workflow}`, remove the `}}` on line {close_line} that ends the workflow early; \
             otherwise start an item here (`workflow`, `task`, `let`, `use` or `matrix`) or delete it"
        )),
    });
}

/// `workflow NAME [extends BASE] {` at the start of `text`: the name, the base, and where the
/// body starts.
fn workflow_head(text: &str, b: Builder) -> Option<(Ident, Option<Ident>, usize)> {
    let mut pairs = MioParser::parse(R::workflow_head, text).ok()?;
    let mut inner = pairs.next().unwrap().into_inner();
    inner.next(); // kw_workflow
    let name = b.ident(inner.next().unwrap());
    let mut extends = None;
    let mut body_start = 0;
    for p in inner {
        match p.as_rule() {
            R::ident => extends = Some(b.ident(p)),
            R::lbrace => body_start = p.as_span().end(),
            _ => {}
        }
    }
    Some((name, extends, body_start))
}

/// Converts pairs to AST nodes, adding `base` to every pest offset.
#[derive(Clone, Copy)]
struct Builder {
    base: usize,
}

impl Builder {
    fn shifted(self, by: usize) -> Builder {
        Builder {
            base: self.base + by,
        }
    }

    /// The pair's span without the whitespace and comments pest skips before a failed optional
    /// part (`a ~ b?` keeps what it skipped looking for `b`).
    fn span(&self, p: &Pair<'_, Rule>) -> Span {
        Span::new(self.base + p.as_span().start(), self.base + token_end(p))
    }

    fn ident(&self, p: Pair<'_, Rule>) -> Ident {
        debug_assert_eq!(p.as_rule(), R::ident);
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn path(&self, p: Pair<'_, Rule>) -> Path {
        let span = self.span(&p);
        Path {
            segments: p.into_inner().map(|i| self.ident(i)).collect(),
            span,
        }
    }

    /// Children without punctuation and keywords.
    fn meaningful<'a>(p: Pair<'a, Rule>) -> impl Iterator<Item = Pair<'a, Rule>> {
        p.into_inner().filter(|c| {
            !matches!(
                c.as_rule(),
                R::eq
                    | R::comma
                    | R::dotdot
                    | R::lbrace
                    | R::rbrace
                    | R::lparen
                    | R::rparen
                    | R::lbracket
                    | R::rbracket
                    | R::kw_use
                    | R::kw_as
                    | R::kw_task
                    | R::kw_let
                    | R::kw_workflow
                    | R::kw_extends
                    | R::kw_matrix
                    | R::kw_over
                    | R::kw_data
                    | R::kw_model
                    | R::kw_train
                    | R::kw_eval
                    | R::kw_sweep
                    | R::kw_report
                    | R::kw_on
                    | R::kw_then
            )
        })
    }

    fn item(&self, p: Pair<'_, Rule>) -> Item {
        let span = self.span(&p);
        match p.as_rule() {
            R::use_item => {
                let mut it = Self::meaningful(p);
                let t = it.next().unwrap();
                let target = match t.as_rule() {
                    R::string => UseTarget::File {
                        span: self.span(&t),
                        path: unescape(t.into_inner().next().unwrap().as_str()),
                    },
                    _ => UseTarget::Prelude(self.ident(t)),
                };
                let alias = it.next().map(|a| self.ident(a));
                Item::Use(Use {
                    target,
                    alias,
                    span,
                })
            }
            R::task_item => Item::Task(self.binding(p)),
            R::let_item => Item::Let(self.binding(p)),
            R::workflow_item => {
                let mut name = None;
                let mut extends = None;
                let mut stmts = vec![];
                let mut close = span.end.saturating_sub(1);
                for c in p.into_inner() {
                    match c.as_rule() {
                        R::ident if name.is_none() => name = Some(self.ident(c)),
                        R::ident => extends = Some(self.ident(c)),
                        R::rbrace => close = self.span(&c).start,
                        r if is_stmt(r) => stmts.push(self.stmt(c)),
                        _ => {}
                    }
                }
                Item::Workflow(Workflow {
                    name: name.unwrap(),
                    extends,
                    stmts,
                    span,
                    close,
                    broken: vec![],
                })
            }
            R::matrix_item => {
                let mut idents = vec![];
                let mut axes = vec![];
                let mut close = span.end.saturating_sub(1);
                for c in p.into_inner() {
                    match c.as_rule() {
                        R::ident => idents.push(self.ident(c)),
                        R::axis => {
                            let aspan = self.span(&c);
                            let mut it = Self::meaningful(c);
                            let path = self.path(it.next().unwrap());
                            let value = self.expr(it.next().unwrap());
                            axes.push(Axis {
                                path,
                                value,
                                span: aspan,
                            });
                        }
                        R::rbrace => close = self.span(&c).start,
                        _ => {}
                    }
                }
                let mut idents = idents.into_iter();
                Item::Matrix(Matrix {
                    name: idents.next().unwrap(),
                    bases: idents.collect(),
                    axes,
                    span,
                    close,
                })
            }
            r => unreachable!("not an item: {r:?}"),
        }
    }

    fn binding(&self, p: Pair<'_, Rule>) -> Binding {
        let span = self.span(&p);
        let mut it = Self::meaningful(p);
        let name = self.ident(it.next().unwrap());
        let value = self.expr(it.next().unwrap());
        Binding { name, value, span }
    }

    fn stmt(&self, p: Pair<'_, Rule>) -> Stmt {
        let span = self.span(&p);
        match p.as_rule() {
            R::setting => Stmt::Setting(self.binding(p)),
            R::data_stmt => Stmt::Data(self.binding(p)),
            R::model_stmt => Stmt::Model(self.binding(p)),
            R::train_stmt => {
                let mut it = Self::meaningful(p);
                let model = self.ident(it.next().unwrap());
                let data = self.ident(it.next().unwrap());
                let block = self.block(it.next().unwrap());
                Stmt::Train(Train {
                    model,
                    data,
                    block,
                    span,
                })
            }
            R::eval_stmt => {
                let mut it = Self::meaningful(p);
                let model = self.ident(it.next().unwrap());
                let data = self.ident(it.next().unwrap());
                let (alias, block) = self.alias_block(it);
                Stmt::Eval(Eval {
                    model,
                    data,
                    alias,
                    block,
                    span,
                })
            }
            R::sweep_stmt => {
                let mut it = Self::meaningful(p);
                let model = self.ident(it.next().unwrap());
                let t = it.next().unwrap();
                let target = match t.as_rule() {
                    R::string => SweepTarget::File {
                        span: self.span(&t),
                        path: unescape(t.into_inner().next().unwrap().as_str()),
                    },
                    _ => SweepTarget::Data(self.ident(t)),
                };
                let (alias, block) = self.alias_block(it);
                Stmt::Sweep(Sweep {
                    model,
                    target,
                    alias,
                    block,
                    span,
                })
            }
            R::report_stmt => {
                let block = self.block(Self::meaningful(p).next().unwrap());
                Stmt::Report(Report { block, span })
            }
            r => unreachable!("not a statement: {r:?}"),
        }
    }

    fn alias_block<'a>(
        &self,
        mut it: impl Iterator<Item = Pair<'a, Rule>>,
    ) -> (Option<Ident>, Block) {
        let mut next = it.next().unwrap();
        let mut alias = None;
        if next.as_rule() == R::alias {
            alias = Some(self.ident(Self::meaningful(next).next().unwrap()));
            next = it.next().unwrap();
        }
        (alias, self.block(next))
    }

    fn block(&self, p: Pair<'_, Rule>) -> Block {
        let span = self.span(&p);
        let multiline = p.as_str().contains('\n');
        let settings = Self::meaningful(p).map(|s| self.binding(s)).collect();
        Block {
            settings,
            span,
            multiline,
        }
    }

    fn expr(&self, p: Pair<'_, Rule>) -> Expr {
        let span = self.span(&p);
        match p.as_rule() {
            R::expr => {
                let chained = p.clone().into_inner().any(|c| c.as_rule() == R::kw_then);
                let mut it = Self::meaningful(p);
                let lo = self.expr(it.next().unwrap());
                if chained {
                    let mut steps = vec![lo];
                    steps.extend(it.map(|e| self.expr(e)));
                    return Expr {
                        kind: ExprKind::Then(steps),
                        span,
                    };
                }
                match it.next() {
                    Some(hi) => Expr {
                        kind: ExprKind::Range(Box::new(lo), Box::new(self.expr(hi))),
                        span,
                    },
                    None => lo,
                }
            }
            R::number => Expr {
                kind: ExprKind::Number(number(p)),
                span,
            },
            R::string => Expr {
                kind: ExprKind::Str(unescape(p.into_inner().next().unwrap().as_str())),
                span,
            },
            R::boolean => Expr {
                kind: ExprKind::Bool(p.as_str() == "true"),
                span,
            },
            R::path => Expr {
                kind: ExprKind::Path(self.path(p)),
                span,
            },
            R::list => Expr {
                kind: ExprKind::List(Self::meaningful(p).map(|e| self.expr(e)).collect()),
                span,
            },
            R::tuple => Expr {
                kind: ExprKind::Tuple(Self::meaningful(p).map(|e| self.expr(e)).collect()),
                span,
            },
            R::call => {
                let mut callee = None;
                let mut args = vec![];
                let mut open = span.start;
                for c in p.into_inner() {
                    match c.as_rule() {
                        R::path => callee = Some(self.path(c)),
                        R::lparen => open = self.span(&c).start,
                        R::arg => {
                            let aspan = self.span(&c);
                            let mut it = Self::meaningful(c);
                            let first = it.next().unwrap();
                            let (name, value) = match it.next() {
                                Some(v) => (Some(self.ident(first)), self.expr(v)),
                                None => (None, self.expr(first)),
                            };
                            args.push(Arg {
                                name,
                                value,
                                span: aspan,
                            });
                        }
                        _ => {}
                    }
                }
                Expr {
                    kind: ExprKind::Call(Call {
                        callee: callee.unwrap(),
                        args,
                        args_span: Span::new(open, span.end),
                    }),
                    span,
                }
            }
            r => unreachable!("not an expression: {r:?}"),
        }
    }
}

/// Where the last real token of `p` ends.
fn token_end(p: &Pair<'_, Rule>) -> usize {
    let atomic = matches!(
        p.as_rule(),
        R::string | R::number | R::path | R::ident | R::int_part | R::str_inner
    );
    // Fast path: pest only keeps trivia at the end when a trailing optional part failed after
    // skipping it; that trivia ends in whitespace (or in a comment on the last line).
    let text = p.as_str();
    let trivia_possible = text.ends_with(char::is_whitespace)
        || text.rsplit('\n').next().is_some_and(|l| l.contains('#'));
    if atomic || !trivia_possible {
        return p.as_span().end();
    }
    match p.clone().into_inner().last() {
        Some(last) => token_end(&last),
        None => p.as_span().end(),
    }
}

fn is_stmt(r: Rule) -> bool {
    matches!(
        r,
        R::setting
            | R::data_stmt
            | R::model_stmt
            | R::train_stmt
            | R::eval_stmt
            | R::sweep_stmt
            | R::report_stmt
    )
}

fn number(p: Pair<'_, Rule>) -> Number {
    let raw = p.as_str().to_string();
    let mut text = String::new();
    let mut is_int = true;
    let mut mult = 1.0;
    let mut unit = None;
    for c in p.into_inner() {
        match c.as_rule() {
            R::neg => text.push('-'),
            R::int_part => text.extend(c.as_str().chars().filter(|&ch| ch != '_')),
            R::frac | R::exponent => {
                is_int = false;
                text.push_str(c.as_str());
            }
            R::multiplier => mult = if c.as_str() == "k" { 1e3 } else { 1e6 },
            R::unit => {
                unit = Some(match c.as_str() {
                    "px" => Unit::Px,
                    "deg" => Unit::Deg,
                    _ => Unit::Db,
                })
            }
            _ => {}
        }
    }
    let value = text.parse::<f64>().unwrap_or(f64::NAN) * mult;
    // `1.5k` is the integer 1500; `2.5` and `1e-3` are not integers.
    let is_int = (is_int || mult > 1.0) && value.fract() == 0.0 && value.is_finite();
    Number {
        value,
        is_int,
        unit,
        raw,
    }
}

/// Resolves the escapes the grammar allows: `\"`, `\\`, `\n`, `\t`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}
