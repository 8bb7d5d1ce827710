//! Editing a workflow's statements before it is checked: `extends` (a child's statements
//! replace its parent's by identity), and overrides at a dotted path, shared by `--set
//! path=value` and by the axes of a `matrix`. Overrides splice the value's own syntax tree in,
//! so a mistake in it is reported at its own span (on the command line or in the matrix).

use mio_grammar::ast::*;

/// The name an eval is known by: its `as` alias, else `MODEL_on_DATA`.
pub fn eval_name(e: &Eval) -> String {
    e.alias
        .as_ref()
        .map(|a| a.name.clone())
        .unwrap_or_else(|| format!("{}_on_{}", e.model.name, e.data.name))
}

/// The name a sweep is known by: its `as` alias, else `sweep_MODEL`.
pub fn sweep_name(s: &Sweep) -> String {
    s.alias
        .as_ref()
        .map(|a| a.name.clone())
        .unwrap_or_else(|| format!("sweep_{}", s.model.name))
}

/// What a statement defines: a child workflow's statement replaces its parent's with the same
/// key, and two statements with the same key in one workflow are a duplicate.
pub fn stmt_key(s: &Stmt) -> String {
    match s {
        Stmt::Setting(b) => format!("setting {}", b.name.name),
        Stmt::Data(b) => format!("data {}", b.name.name),
        Stmt::Model(b) => format!("model {}", b.name.name),
        Stmt::Train(t) => format!("train {}", t.model.name),
        Stmt::Eval(e) => format!("eval {}", eval_name(e)),
        Stmt::Sweep(s) => format!("sweep {}", sweep_name(s)),
        Stmt::Report(_) => "report".into(),
    }
}

/// `parent` with `child`'s statements laid over it: a setting, data or model replaces the
/// parent's; a train, eval, sweep or report block is merged setting by setting, so a child
/// writes only what it changes (`train net on train { strategy = sequential(...) }`).
pub fn overlay(parent: Vec<Stmt>, child: &[Stmt]) -> Vec<Stmt> {
    let mut out = parent;
    for s in child {
        let key = stmt_key(s);
        match out.iter().position(|p| stmt_key(p) == key) {
            Some(i) => {
                let mut merged = s.clone();
                if let (Some(base), Some(over)) = (block_of(&out[i]), block_of_mut(&mut merged)) {
                    let mut settings = base.settings.clone();
                    for b in &over.settings {
                        match settings.iter().position(|x| x.name.name == b.name.name) {
                            Some(j) => settings[j] = b.clone(),
                            None => settings.push(b.clone()),
                        }
                    }
                    over.settings = settings;
                }
                out[i] = merged;
            }
            None => out.push(s.clone()),
        }
    }
    out
}

fn block_of(s: &Stmt) -> Option<&Block> {
    match s {
        Stmt::Train(t) => Some(&t.block),
        Stmt::Eval(e) => Some(&e.block),
        Stmt::Sweep(s) => Some(&s.block),
        Stmt::Report(r) => Some(&r.block),
        _ => None,
    }
}

fn block_of_mut(s: &mut Stmt) -> Option<&mut Block> {
    match s {
        Stmt::Train(t) => Some(&mut t.block),
        Stmt::Eval(e) => Some(&mut e.block),
        Stmt::Sweep(s) => Some(&mut s.block),
        Stmt::Report(r) => Some(&mut r.block),
        _ => None,
    }
}

/// Sets the value at `path` in a workflow's statements. The error says why the path names
/// nothing (to be shown with E070 or E080).
pub fn apply(stmts: &mut Vec<Stmt>, path: &[Ident], value: &Expr) -> Result<(), String> {
    let Some(first) = path.first() else {
        return Err("the path is empty".into());
    };
    let rest = &path[1..];
    match first.name.as_str() {
        "data" | "model" => {
            let kind = first.name.as_str();
            let Some(name) = rest.first() else {
                return Err(format!("`{kind}` needs a name: `{kind}.NAME`"));
            };
            let found = stmts.iter_mut().find_map(|s| match s {
                Stmt::Data(b) if kind == "data" && b.name.name == name.name => Some(b),
                Stmt::Model(b) if kind == "model" && b.name.name == name.name => Some(b),
                _ => None,
            });
            match found {
                Some(b) => set_in_expr(&mut b.value, &rest[1..], value),
                None => Err(format!("the workflow has no {kind} `{}`", name.name)),
            }
        }
        "train" | "eval" | "sweep" => {
            let kind = first.name.as_str();
            let mut blocks: Vec<(String, &mut Block)> = stmts
                .iter_mut()
                .filter_map(|s| match s {
                    Stmt::Train(t) if kind == "train" => Some((t.model.name.clone(), &mut t.block)),
                    Stmt::Eval(e) if kind == "eval" => Some((eval_name(e), &mut e.block)),
                    Stmt::Sweep(s) if kind == "sweep" => Some((sweep_name(s), &mut s.block)),
                    _ => None,
                })
                .collect();
            let named = rest
                .first()
                .and_then(|n| blocks.iter().position(|(name, _)| *name == n.name));
            let (block, rest) = match named {
                Some(i) => (blocks.swap_remove(i).1, &rest[1..]),
                None if blocks.len() == 1 => (blocks.pop().unwrap().1, rest),
                None if blocks.is_empty() => {
                    return Err(format!("the workflow has no {kind} block"))
                }
                None => {
                    let names: Vec<String> = blocks.iter().map(|(n, _)| format!("`{n}`")).collect();
                    return Err(format!(
                        "the workflow has several {kind} blocks: name one ({})",
                        names.join(", ")
                    ));
                }
            };
            set_setting(kind, &mut block.settings, rest, value)
        }
        "report" => match stmts.iter_mut().find_map(|s| match s {
            Stmt::Report(r) => Some(&mut r.block),
            _ => None,
        }) {
            Some(b) => set_setting("report", &mut b.settings, rest, value),
            None => Err("the workflow has no report block".into()),
        },
        _ => {
            let found = stmts.iter_mut().find_map(|s| match s {
                Stmt::Setting(b) if b.name.name == first.name => Some(b),
                _ => None,
            });
            match found {
                Some(b) => set_in_expr(&mut b.value, rest, value),
                // A workflow setting left at its default is added (`--set executor=slurm`).
                None if rest.is_empty()
                    && mio_catalog::builtins::block("workflow")
                        .param(&first.name)
                        .is_some() =>
                {
                    stmts.push(Stmt::Setting(Binding {
                        name: first.clone(),
                        value: value.clone(),
                        span: value.span,
                    }));
                    Ok(())
                }
                None if rest.is_empty() => Err(format!(
                    "`{}` is not set in the workflow; paths start with a setting, `data`, `model`, \
                     `train`, `eval`, `sweep` or `report`",
                    first.name
                )),
                None => Err(format!("the workflow has no setting `{}`", first.name)),
            }
        }
    }
}

fn set_setting(
    block: &str,
    settings: &mut Vec<Binding>,
    path: &[Ident],
    value: &Expr,
) -> Result<(), String> {
    let Some(name) = path.first() else {
        return Err("the path must name a setting of the block".into());
    };
    if let Some(s) = settings.iter_mut().find(|s| s.name.name == name.name) {
        return set_in_expr(&mut s.value, &path[1..], value);
    }
    // Not written: start from the catalog's default (`train.optimizer.lr` with the default adam).
    let start = if path.len() == 1 {
        value.clone()
    } else {
        let spec = mio_catalog::builtins::block(block);
        match spec
            .param(&name.name)
            .and_then(|p| default_expr(p, value.span))
        {
            Some(e) => e,
            None => {
                return Err(format!(
                    "`{}` is not set in the `{block}` block and has no default to change",
                    name.name
                ))
            }
        }
    };
    settings.push(Binding {
        name: name.clone(),
        value: start,
        span: value.span,
    });
    let last = settings.last_mut().unwrap();
    set_in_expr(&mut last.value, &path[1..], value)
}

/// A parameter's default as an expression whose spans all point at `at`.
fn default_expr(p: &mio_catalog::Param, at: Span) -> Option<Expr> {
    let mio_catalog::Default::Value(text) = p.default else {
        return None;
    };
    let mut e = mio_grammar::parse_expr_at(text, 0).ok()?;
    respan(&mut e, at);
    Some(e)
}

fn respan(e: &mut Expr, at: Span) {
    e.span = at;
    match &mut e.kind {
        ExprKind::List(xs) | ExprKind::Tuple(xs) => xs.iter_mut().for_each(|x| respan(x, at)),
        ExprKind::Range(lo, hi) => {
            respan(lo, at);
            respan(hi, at);
        }
        ExprKind::Call(c) => {
            c.callee.span = at;
            c.callee.segments.iter_mut().for_each(|s| s.span = at);
            c.args_span = at;
            for a in &mut c.args {
                a.span = at;
                if let Some(n) = &mut a.name {
                    n.span = at;
                }
                respan(&mut a.value, at);
            }
        }
        ExprKind::Path(p) => {
            p.span = at;
            p.segments.iter_mut().for_each(|s| s.span = at);
        }
        _ => {}
    }
}

pub fn set_in_expr(expr: &mut Expr, path: &[Ident], value: &Expr) -> Result<(), String> {
    let Some(name) = path.first() else {
        *expr = value.clone();
        return Ok(());
    };
    // A bare built-in name (`loss = l1`) is the call with its defaults: give it an argument.
    if let ExprKind::Path(p) = &expr.kind {
        if p.segments.len() == 1 {
            expr.kind = ExprKind::Call(Call {
                callee: p.clone(),
                args: vec![],
                args_span: expr.span,
            });
        }
    }
    let ExprKind::Call(call) = &mut expr.kind else {
        return Err(format!(
            "`{}` is {}, which has no `{}` inside it",
            mio_grammar::format::flat(expr),
            expr.kind.describe(),
            name.name
        ));
    };
    if let Some(a) = call
        .args
        .iter_mut()
        .find(|a| a.name.as_ref().is_some_and(|n| n.name == name.name))
    {
        return set_in_expr(&mut a.value, &path[1..], value);
    }
    let start = if path.len() == 1 {
        value.clone()
    } else {
        // Not given: start from the built-in's default (`model.net.prompt.dim`).
        let callee = call.callee.to_string();
        let param = mio_catalog::builtins::all()
            .find(|b| b.name == callee)
            .and_then(|b| b.param(&name.name));
        match param.and_then(|p| default_expr(p, value.span)) {
            Some(e) => e,
            None => {
                return Err(format!(
                    "`{}` is not given to `{}` and has no default to change",
                    name.name, call.callee
                ))
            }
        }
    };
    call.args.push(Arg {
        name: Some(name.clone()),
        value: start,
        span: value.span,
    });
    let last = call.args.last_mut().unwrap();
    set_in_expr(&mut last.value, &path[1..], value)
}
