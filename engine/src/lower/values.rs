//! Reading a checked call's arguments and a block's settings as the types lowering needs;
//! an argument missing or of another type than the checker promised is a [`LowerError`].

// The checker alone (without `run`) lowers networks only.
#![cfg_attr(not(feature = "run"), allow(dead_code))]

use crate::diagnostic::{Code, Diagnostic};
use crate::ir::{self, Value};

/// Why a checked value could not be lowered: always a bug in mio (the checker lets through
/// something lowering does not know).
#[derive(Clone, Debug, PartialEq)]
pub struct LowerError(pub String);

impl std::fmt::Display for LowerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type Result<T> = std::result::Result<T, LowerError>;

pub(crate) fn bug<T>(what: impl Into<String>) -> Result<T> {
    Err(LowerError(what.into()))
}

impl LowerError {
    /// As a diagnostic at `span` (the declaration that could not be lowered).
    pub fn at(self, span: mio_grammar::Span) -> Diagnostic {
        Diagnostic::new(
            Code::Lowering,
            span,
            format!("mio cannot run this: {}", self.0),
            "checked, but not understood by the runner",
        )
        .help("this is a bug in mio: please report it with the file")
    }
}

pub(crate) fn arg<'a>(c: &'a ir::Call, name: &str) -> Result<&'a Value> {
    c.arg(name).map_or_else(
        || bug(format!("`{}` reached the runner without `{name}`", c.name)),
        Ok,
    )
}

pub(crate) fn int(c: &ir::Call, name: &str) -> Result<usize> {
    match arg(c, name)? {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        other => bug(format!("`{}`'s `{name}` is `{other}`, not a count", c.name)),
    }
}

pub(crate) fn float(c: &ir::Call, name: &str) -> Result<f64> {
    arg(c, name)?.as_f64().map_or_else(
        || bug(format!("`{}`'s `{name}` is not a number", c.name)),
        Ok,
    )
}

pub(crate) fn boolean(c: &ir::Call, name: &str) -> Result<bool> {
    match arg(c, name)? {
        Value::Bool(b) => Ok(*b),
        other => bug(format!("`{}`'s `{name}` is `{other}`, not a bool", c.name)),
    }
}

pub(crate) fn string(c: &ir::Call, name: &str) -> Result<String> {
    match arg(c, name)? {
        Value::Str(s) => Ok(s.clone()),
        other => bug(format!(
            "`{}`'s `{name}` is `{other}`, not a string",
            c.name
        )),
    }
}

pub(crate) fn ints(c: &ir::Call, name: &str) -> Result<Vec<usize>> {
    match arg(c, name)? {
        Value::List(l) => l
            .iter()
            .map(|v| match v {
                Value::Int(i) if *i >= 0 => Ok(*i as usize),
                other => bug(format!("`{}`'s `{name}` holds `{other}`", c.name)),
            })
            .collect(),
        other => bug(format!("`{}`'s `{name}` is `{other}`, not a list", c.name)),
    }
}

pub(crate) fn call<'a>(v: Option<&'a Value>, what: &str) -> Result<&'a ir::Call> {
    match v {
        Some(Value::Call(c)) => Ok(c),
        Some(other) => bug(format!("{what} is `{other}`, not a built-in")),
        None => bug(format!("{what} is missing")),
    }
}

pub(crate) fn setting<'a>(
    settings: &'a [(String, Value)],
    name: &str,
    block: &str,
) -> Result<&'a Value> {
    settings
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .map_or_else(
            || {
                bug(format!(
                    "the {block} block reached the runner without `{name}`"
                ))
            },
            Ok,
        )
}

pub(crate) fn setting_int(settings: &[(String, Value)], name: &str, block: &str) -> Result<u64> {
    match setting(settings, name, block)? {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        other => bug(format!("{block}'s `{name}` is `{other}`, not a count")),
    }
}

pub(crate) fn setting_f64(settings: &[(String, Value)], name: &str, block: &str) -> Result<f64> {
    setting(settings, name, block)?
        .as_f64()
        .map_or_else(|| bug(format!("{block}'s `{name}` is not a number")), Ok)
}
