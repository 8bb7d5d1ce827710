//! mio's engine: loading a `.mio` file with its imports, checking it (every error, with codes,
//! spans and help), lowering the checked workflows into typed jobs, planning them as a
//! petgraph DAG and running it.
//!
//! The flow: [`load::load`] (parse, imports) -> [`check::Checker`] (names, types, units,
//! ranges, the method's rules; `extends`, `matrix` and `--set` applied) -> [`ir::Workflow`]s
//! -> [`plan::plan`] (the DAG, each node's job lowered by `lower`) -> [`run::run`].
//!
//! Without the `run` feature the crate is the checker alone (no candle), which is what the
//! language server builds on.

pub mod check;
pub mod diagnostic;
#[cfg(feature = "run")]
pub mod import;
pub mod ir;
#[cfg(feature = "run")]
pub mod job;
pub mod load;
pub mod lower;
pub mod merge;
#[cfg(feature = "run")]
pub mod plan;
#[cfg(feature = "run")]
pub mod run;
pub mod source;
#[cfg(feature = "run")]
pub mod yaml;

use std::path::Path;

use diagnostic::{Code, Diagnostic};
use load::Program;

pub use diagnostic::{render, Style};

/// Everything one check produced.
#[derive(Debug)]
pub struct Checked {
    pub program: Program,
    /// Checked workflows to plan (matrix rows expanded; a matrix's base only through its rows).
    pub workflows: Vec<ir::Workflow>,
    /// Every error found, in source order.
    pub diagnostics: Vec<Diagnostic>,
    /// What each name the checker resolved stands for, by span (sorted, no repeats).
    pub resolutions: Vec<check::Resolution>,
}

impl Checked {
    pub fn is_ok(&self) -> bool {
        self.diagnostics.is_empty()
    }

    pub fn render(&self, style: Style) -> String {
        render(&self.diagnostics, &self.program.sources, style)
    }
}

/// Checks source text. `path` (when the text came from a file) anchors relative imports;
/// `overrides` are `path=value` strings as given to `--set`.
pub fn check_source(
    name: &str,
    path: Option<&Path>,
    text: String,
    overrides: &[String],
) -> Checked {
    let mut diags = vec![];
    let mut program = load::load(name, path, text, &mut diags);
    let parsed = parse_overrides(&mut program, overrides, &mut diags);
    let mut checker = check::Checker::new(&program);
    let workflows = checker.program(&parsed);
    diags.extend(checker.diags);
    let mut resolutions = checker.resolutions;
    resolutions.sort_by_key(|r| (r.span.start, r.span.end));
    resolutions.dedup();
    diags.sort_by_key(|d| d.primary.span.start);
    diags.dedup_by(|a, b| {
        a.code == b.code && a.primary.span == b.primary.span && a.message == b.message
    });
    Checked {
        program,
        workflows,
        diagnostics: diags,
        resolutions,
    }
}

/// Reads and checks a file.
pub fn check_file(path: &Path, overrides: &[String]) -> std::io::Result<Checked> {
    let text = std::fs::read_to_string(path)?;
    Ok(check_source(
        &path.display().to_string(),
        Some(path),
        text,
        overrides,
    ))
}

/// Each `--set` becomes a source of its own, so its mistakes are shown in it.
fn parse_overrides(
    program: &mut Program,
    overrides: &[String],
    diags: &mut Vec<Diagnostic>,
) -> Vec<check::Override> {
    let mut out = vec![];
    for o in overrides {
        let id = program.sources.add(format!("--set {o}"), None, o.clone());
        let base = program.sources.get(id).base;
        let Some(eq) = o.find('=') else {
            diags.push(
                Diagnostic::new(
                    Code::BadOverride,
                    mio_grammar::Span::new(base, base + o.len()),
                    format!("`--set {o}` has no `=`"),
                    "expected `path=value`",
                )
                .help("for example: --set train.iters=1k"),
            );
            continue;
        };
        let path = mio_grammar::parse_path_at(o[..eq].trim_end(), base);
        let lead = o[eq + 1..].len() - o[eq + 1..].trim_start().len();
        let value = mio_grammar::parse_expr_at(o[eq + 1..].trim(), base + eq + 1 + lead);
        match (path, value) {
            (Ok(path), Ok(value)) => out.push(check::Override {
                span: mio_grammar::Span::new(base, base + o.len()),
                path,
                value,
            }),
            (Err(e), _) | (_, Err(e)) => diags.push(
                Diagnostic::new(Code::BadOverride, e.span, format!("in `--set`: {}", e.message), e.label)
                    .help("overrides are `path=value`, the value written as in a .mio file: --set model.net.prompt=explicit"),
            ),
        }
    }
    out
}

/// The plan of a checked file, or the reason there is none.
#[cfg(feature = "run")]
pub fn plan(checked: &Checked) -> Result<plan::Plan, Diagnostic> {
    if checked.workflows.is_empty() {
        let root = checked
            .program
            .sources
            .get(checked.program.modules[Program::ROOT].file);
        return Err(Diagnostic::new(
            Code::NoWorkflow,
            mio_grammar::Span::new(root.base, root.base),
            "nothing to plan: the file defines no workflow",
            "no `workflow` here",
        )
        .help("add `workflow NAME { ... }`, or plan the file that imports this one"));
    }
    plan::plan(&checked.workflows)
}

/// A task named on the command line (`mio degrade --task noise_out --set sigma=60`): any task
/// expression in the scope of `use paper`, with `--set name=value` changing its degradation's
/// arguments. The error is the rendered diagnostics.
pub fn resolve_task(task: &str, sets: &[String], style: Style) -> Result<ir::Task, String> {
    let mut diags = vec![];
    let mut program = load::load("<command line>", None, "use paper\n".into(), &mut diags);
    let id = program
        .sources
        .add(format!("--task {task}"), None, task.to_string());
    let base = program.sources.get(id).base;
    let expr = match mio_grammar::parse_expr_at(task, base) {
        Ok(e) => Some(e),
        Err(e) => {
            diags.push(Diagnostic::new(Code::Syntax, e.span, e.message, e.label).with_help(e.help));
            None
        }
    };
    let overrides = parse_overrides(&mut program, sets, &mut diags);
    let mut checker = check::Checker::new(&program);
    let mut result = None;
    if let Some(expr) = expr {
        // The task's name: the last segment of a name, else the expression as written.
        let name = match &expr.kind {
            mio_grammar::ExprKind::Path(p) => p
                .segments
                .last()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            _ => mio_grammar::format::flat(&expr),
        };
        let call = checker.task_call_expr(Program::ROOT, &expr);
        if call
            .as_ref()
            .is_some_and(|c| matches!(c.kind, mio_grammar::ExprKind::Then(_)))
        {
            // A composite: `--set` would not know which step's argument it means.
            if let Some(o) = overrides.first() {
                checker.diags.push(
                    Diagnostic::new(
                        Code::BadOverride,
                        o.path.span,
                        format!("`{task}` is a composite task: `--set` cannot tell which step `{}` is for", o.path),
                        "here",
                    )
                    .help("write the steps with the values you want: --task \"blur(sigma = 2.0) then noise(sigma = 30)\""),
                );
            } else {
                result = match checker.value(Program::ROOT, &expr, &mio_catalog::Ty::Task, None) {
                    Some(ir::Value::Task(t)) => Some(ir::Task { name, ..t }),
                    _ => None,
                };
            }
        } else if let Some(mut call) = call {
            for o in &overrides {
                if let Err(why) = merge::set_in_expr(&mut call, &o.path.segments, &o.value) {
                    checker.diags.push(
                        Diagnostic::new(
                            Code::BadOverride,
                            o.path.span,
                            format!("cannot set `{}`", o.path),
                            "here",
                        )
                        .help(why),
                    );
                }
            }
            result = checker
                .call(Program::ROOT, &call, mio_catalog::Kind::Degradation)
                .map(|degradation| ir::Task::new(name, degradation));
        }
    }
    diags.extend(checker.diags);
    match result {
        Some(t) if diags.is_empty() => Ok(t),
        _ => Err(render(&diags, &program.sources, style)),
    }
}

/// Checks a backbone expression given on the command line after `flag` (`mio restore --arch
/// ...`, `mio bench --model ...`), as it would be checked in a file; errors come back rendered.
pub fn resolve_backbone(text: &str, flag: &str) -> Result<ir::Call, String> {
    let mut diags = vec![];
    let mut program = load::load("<command line>", None, "use paper\n".into(), &mut diags);
    let id = program
        .sources
        .add(format!("{flag} {text}"), None, text.to_string());
    let base = program.sources.get(id).base;
    let mut checker = check::Checker::new(&program);
    let mut result = None;
    match mio_grammar::parse_expr_at(text, base) {
        Ok(e) => {
            result = checker.call(Program::ROOT, &e, mio_catalog::Kind::Backbone);
            if let Some(c) = &result {
                checker.backbone_shape(c, &e);
            }
        }
        Err(e) => {
            diags.push(Diagnostic::new(Code::Syntax, e.span, e.message, e.label).with_help(e.help))
        }
    }
    diags.extend(checker.diags);
    match result {
        Some(c) if diags.is_empty() => Ok(c),
        _ => Err(render(&diags, &program.sources, Style::Plain)),
    }
}
