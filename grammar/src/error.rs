//! Syntax errors in words a user reads: "expected `=`, found `:`", never `EOI` or `expr`.

use pest::error::{ErrorVariant, InputLocation};

use crate::ast::Span;
use crate::parser::Rule;

/// A syntax error. Spans are global offsets, like the AST's.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    pub span: Span,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

/// Converts a pest error from parsing `text` (which sits at `local_base` inside `full`, a
/// source starting at global offset `base`).
pub(crate) fn from_pest(
    e: &pest::error::Error<Rule>,
    text: &str,
    local_base: usize,
    base: usize,
    full: &str,
    eoi: &'static str,
) -> ParseError {
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    }
    .min(text.len());
    let abs = local_base + pos;
    let positives: Vec<Rule> = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => positives.clone(),
        ErrorVariant::CustomError { .. } => vec![],
    };
    let expected = describe_expected(&positives).replace(EOI_WORDS, eoi);
    let (found, found_span) = found_token(full, abs);

    // When the next token sits on a later line, the mistake is at the end of the previous one
    // (a missing value, a missing `}`): point there rather than at unrelated text below.
    let before = full[..abs].trim_end();
    let span = if full[before.len()..abs].contains('\n') || found_span.0 >= full.len() {
        let end = before.len();
        let start = full[..end]
            .char_indices()
            .next_back()
            .map(|(i, _)| i)
            .unwrap_or(0);
        Span::new(base + start, base + end.max(start))
    } else {
        Span::new(base + found_span.0, base + found_span.1)
    };
    let (message, label) = if expected.is_empty() {
        (
            format!("unexpected {found}"),
            "not expected here".to_string(),
        )
    } else if span.start < base + found_span.0 {
        (
            format!("expected {expected}, found {found}"),
            format!("expected {expected} after this"),
        )
    } else {
        (
            format!("expected {expected}, found {found}"),
            format!("expected {expected}"),
        )
    };
    ParseError {
        span,
        message,
        label,
        help: help_for(&found, &positives, &full[..abs]),
    }
}

fn help_for(found: &str, positives: &[Rule], before: &str) -> Option<String> {
    let before = before.trim_end();
    let wants_eq = positives.contains(&Rule::eq);
    if wants_eq && (found == "`:`" || found == "`==`") {
        return Some("settings and arguments are written `name = value`".into());
    }
    if found == "`:`" && before.ends_with("cuda") {
        return Some("a GPU with its index is a string: device = \"cuda:0\"".into());
    }
    if found == "`'`" {
        return Some("strings use double quotes: \"data/train\"".into());
    }
    if found == "`;`" {
        return Some(
            "no semicolons: put each setting on its own line or separate them with `,`".into(),
        );
    }
    if positives.contains(&Rule::rbrace)
        && positives.contains(&Rule::ident)
        && found == "end of file"
    {
        return Some("a `{` is missing its `}`".into());
    }
    None
}

/// The token at `at` as the user sees it, and its byte range.
fn found_token(full: &str, at: usize) -> (String, (usize, usize)) {
    let mut i = at;
    let b = full.as_bytes();
    // skip whitespace and comments
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            _ => break,
        }
    }
    if i >= b.len() {
        return ("end of file".into(), (full.len(), full.len()));
    }
    let rest = &full[i..];
    let c = rest.chars().next().unwrap();
    let len = if c.is_ascii_alphanumeric() || c == '_' {
        rest.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '.'))
            .unwrap_or(rest.len())
    } else if rest.starts_with("==") || rest.starts_with("..") {
        2
    } else {
        c.len_utf8()
    };
    let text = &rest[..len];
    let shown = if c == '"' {
        "a string".to_string()
    } else if c.is_ascii_digit() {
        format!("the number `{text}`")
    } else if c.is_alphabetic() || c == '_' {
        format!("`{text}`")
    } else {
        // Escape only what would not print (a tab, a control character).
        let shown: String = text
            .chars()
            .flat_map(|ch| {
                if ch.is_control() {
                    ch.escape_debug().collect::<Vec<_>>()
                } else {
                    vec![ch]
                }
            })
            .collect();
        format!("`{shown}`")
    };
    (shown, (i, i + len))
}

/// Placeholder for "end of input", replaced by what the input was (an item, a statement, ...).
const EOI_WORDS: &str = "\u{0}end";

const EXPR_RULES: &[Rule] = &[
    Rule::expr,
    Rule::number,
    Rule::string,
    Rule::boolean,
    Rule::list,
    Rule::tuple,
    Rule::call,
    Rule::path,
    Rule::kw_true,
    Rule::kw_false,
    Rule::lbracket,
    Rule::neg,
    Rule::int_part,
];
const STMT_RULES: &[Rule] = &[
    Rule::kw_data,
    Rule::kw_model,
    Rule::kw_train,
    Rule::kw_eval,
    Rule::kw_sweep,
    Rule::kw_report,
    Rule::setting,
    Rule::data_stmt,
    Rule::model_stmt,
    Rule::train_stmt,
    Rule::eval_stmt,
    Rule::sweep_stmt,
    Rule::report_stmt,
];
const ITEM_RULES: &[Rule] = &[
    Rule::kw_use,
    Rule::kw_task,
    Rule::kw_let,
    Rule::kw_workflow,
    Rule::kw_matrix,
    Rule::use_item,
    Rule::task_item,
    Rule::let_item,
    Rule::workflow_item,
    Rule::matrix_item,
];

fn describe_expected(positives: &[Rule]) -> String {
    let mut words: Vec<String> = vec![];
    let mut push = |w: &str| {
        if !words.iter().any(|x| x == w) {
            words.push(w.to_string());
        }
    };
    let has = |set: &[Rule]| positives.iter().any(|r| set.contains(r));
    if has(ITEM_RULES) {
        push("an item (`use`, `task`, `let`, `workflow` or `matrix`)");
    }
    if has(STMT_RULES) {
        push("a statement (`data`, `model`, `train`, `eval`, `sweep`, `report` or `name = value`)");
    }
    if has(EXPR_RULES) {
        push("a value");
    }
    for r in positives {
        if EXPR_RULES.contains(r) || STMT_RULES.contains(r) || ITEM_RULES.contains(r) {
            continue;
        }
        // An identifier where a statement could start is already covered by "a statement".
        if *r == Rule::ident && (has(STMT_RULES) || has(EXPR_RULES)) {
            continue;
        }
        if *r == Rule::lparen && has(EXPR_RULES) {
            continue;
        }
        // `then` may follow any value; naming it beside other choices only distracts.
        if *r == Rule::kw_then && positives.len() > 1 {
            continue;
        }
        if let Some(w) = rule_words(*r) {
            push(w);
        }
    }
    match words.len() {
        0 => String::new(),
        1 => words.remove(0),
        n => format!("{} or {}", words[..n - 1].join(", "), words[n - 1]),
    }
}

fn rule_words(r: Rule) -> Option<&'static str> {
    Some(match r {
        Rule::ident => "a name",
        Rule::eq => "`=`",
        Rule::comma => "`,`",
        Rule::dotdot => "`..`",
        Rule::lbrace => "`{`",
        Rule::rbrace => "`}`",
        Rule::lparen => "`(`",
        Rule::rparen => "`)`",
        Rule::lbracket => "`[`",
        Rule::rbracket => "`]`",
        Rule::kw_as => "`as`",
        Rule::kw_on => "`on`",
        Rule::kw_over => "`over`",
        Rule::kw_then => "`then`",
        Rule::kw_extends => "`extends`",
        Rule::alias => "`as`",
        Rule::block => "`{`",
        Rule::arg => "an argument",
        Rule::axis => "an axis (`path = [values]`)",
        Rule::multiplier => "`k` or `M`",
        Rule::unit => "a unit (`px`, `deg`, `dB`)",
        Rule::frac => "a fraction",
        Rule::exponent => "an exponent",
        Rule::str_inner | Rule::escape => "the rest of the string",
        Rule::EOI => EOI_WORDS,
        _ => return None,
    })
}
