//! Values against types: every expression typed against the catalog (`Ty`) with units,
//! integer-ness and bounds; calls of built-ins with defaults filled in; block settings.

use super::*;

impl<'p> Checker<'p> {
    pub(super) fn mismatch(&mut self, e: &Expr, ty: &Ty, param: Option<&Param>) {
        let what = param
            .map(|p| format!("`{}` takes", p.name))
            .unwrap_or_else(|| "expected".into());
        let help = match (&e.kind, ty) {
            (ExprKind::Str(s), Ty::Word(_) | Ty::Builtin(_) | Ty::Task) => {
                Some(format!("write it without quotes: {s}"))
            }
            (ExprKind::Path(p), Ty::Str | Ty::FilePath) => {
                Some(format!("strings are quoted: \"{p}\""))
            }
            (ExprKind::Number(_), Ty::List(_)) => {
                Some("a list is written in brackets: [1, 2]".into())
            }
            (ExprKind::List(_), Ty::Tuple(_)) => {
                Some("a tuple is written in parentheses: (0.9, 0.99)".into())
            }
            _ => None,
        };
        self.emit(
            Diagnostic::new(
                Code::TypeMismatch,
                e.span,
                format!("{what} {}, found {}", ty.describe(), e.kind.describe()),
                format!("expected {}", ty.describe()),
            )
            .with_help(help),
        );
    }

    /// Checks `e` against `ty` and resolves it.
    pub fn value(&mut self, m: ModId, e: &Expr, ty: &Ty, param: Option<&Param>) -> Option<Value> {
        // One built-in where a list of them goes is a list of one: `metrics = psnr`.
        if let (Ty::List(inner), ExprKind::Path(p)) = (ty, &e.kind) {
            if let (Ty::Builtin(k), Some(i)) = (*inner, p.as_ident()) {
                if builtins::lookup(*k, &i.name).is_some()
                    && self.local_or_imported(m, &i.name).is_none()
                {
                    return self.value(m, e, inner, param).map(|v| Value::List(vec![v]));
                }
            }
        }
        if let (Ty::List(inner), ExprKind::Call(c)) = (ty, &e.kind) {
            if let Ty::Builtin(k) = *inner {
                if builtins::lookup(*k, &c.callee.to_string()).is_some() {
                    return self.value(m, e, inner, param).map(|v| Value::List(vec![v]));
                }
            }
        }
        // A name may stand for a `let` wherever a value goes, except where it names a word,
        // a built-in, a model or a task directly.
        if let ExprKind::Path(p) = &e.kind {
            let direct = match ty {
                Ty::Word(ws) => p.as_ident().is_some_and(|i| ws.contains(&i.name.as_str())),
                Ty::Device => p
                    .as_ident()
                    .is_some_and(|i| ["auto", "cpu", "cuda"].contains(&i.name.as_str())),
                Ty::Builtin(k) => p
                    .as_ident()
                    .is_some_and(|i| builtins::lookup(*k, &i.name).is_some()),
                Ty::Model | Ty::Task => true,
                _ => false,
            };
            if !direct {
                let single_unknown_word = matches!(ty, Ty::Word(_) | Ty::Device | Ty::Builtin(_))
                    && p.as_ident()
                        .is_some_and(|i| self.local_or_imported(m, &i.name).is_none());
                if single_unknown_word {
                    return self.word_or_builtin(m, e, ty, p);
                }
                return match self.lookup(m, p)? {
                    Sym::Let(mid, b) => self.expand_let(mid, b, ty, param, e.span),
                    Sym::Task(..) => {
                        if matches!(ty, Ty::List(Ty::Task)) {
                            self.emit(
                                Diagnostic::new(
                                    Code::TypeMismatch,
                                    e.span,
                                    format!("expected a list of tasks, found the task `{p}`"),
                                    "a single task",
                                )
                                .help(format!("write a list: [{p}]")),
                            );
                            return None;
                        }
                        self.mismatch(e, ty, param);
                        None
                    }
                };
            }
        }
        match ty {
            Ty::Int | Ty::Float => self.number(e, ty, param),
            Ty::Bool => match e.kind {
                ExprKind::Bool(b) => Some(Value::Bool(b)),
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Str | Ty::FilePath => match &e.kind {
                ExprKind::Str(s) => Some(Value::Str(s.clone())),
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Word(_) => match &e.kind {
                ExprKind::Path(p) => self.word_or_builtin(m, e, ty, p),
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Device => match &e.kind {
                ExprKind::Path(p) => self.word_or_builtin(m, e, ty, p),
                ExprKind::Str(s) => {
                    let ok = s == "cpu"
                        || s == "auto"
                        || s == "cuda"
                        || s.strip_prefix("cuda:")
                            .is_some_and(|n| n.parse::<u32>().is_ok());
                    if ok {
                        Some(Value::Word(s.clone()))
                    } else {
                        self.emit(
                            Diagnostic::new(
                                Code::UnknownChoice,
                                e.span,
                                format!("`{s}` is not a device"),
                                "unknown device",
                            )
                            .help("devices: auto, cpu, cuda, or \"cuda:N\" for the N-th GPU"),
                        );
                        None
                    }
                }
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Builtin(k) => self.call(m, e, *k).map(Value::Call),
            Ty::Task => match &e.kind {
                ExprKind::Path(p) => match self.lookup(m, p)? {
                    Sym::Task(mid, b) => self.task(mid, b, e.span).map(Value::Task),
                    Sym::Let(mid, b) => self.expand_let(mid, b, ty, param, e.span),
                },
                ExprKind::Call(_) | ExprKind::Then(_) => {
                    // An inline task: `noise(sigma = 60)`, `blur(sigma = 2) then noise(sigma = 10)`.
                    let steps = self.task_steps(m, e)?;
                    Some(Value::Task(ir::Task::of_steps(
                        mio_grammar::format::flat(e),
                        steps,
                    )))
                }
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Model => match &e.kind {
                ExprKind::Path(p)
                    if p.as_ident().is_some_and(|i| self.models.contains(&i.name)) =>
                {
                    self.resolved(p.span, Resolved::Model(p.to_string()));
                    Some(Value::Model(p.to_string()))
                }
                ExprKind::Path(p) if self.is_broken("model", &p.to_string()) => None,
                ExprKind::Path(p) => {
                    let help = did_you_mean(&p.to_string(), self.models.iter().map(String::as_str));
                    self.emit(
                        Diagnostic::new(
                            Code::UndefinedModel,
                            e.span,
                            format!("the workflow has no model `{p}`"),
                            "not a model",
                        )
                        .with_help(help),
                    );
                    None
                }
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::List(inner) => match &e.kind {
                ExprKind::List(xs) => {
                    let vals: Vec<Option<Value>> =
                        xs.iter().map(|x| self.value(m, x, inner, param)).collect();
                    vals.into_iter()
                        .collect::<Option<Vec<_>>>()
                        .map(Value::List)
                }
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Tuple(tys) => match &e.kind {
                ExprKind::Tuple(xs) if xs.len() == tys.len() => {
                    let vals: Vec<Option<Value>> = xs
                        .iter()
                        .zip(tys.iter())
                        .map(|(x, t)| self.value(m, x, t, param))
                        .collect();
                    vals.into_iter()
                        .collect::<Option<Vec<_>>>()
                        .map(Value::Tuple)
                }
                _ => {
                    self.mismatch(e, ty, param);
                    None
                }
            },
            Ty::Sampled(inner) => match &e.kind {
                ExprKind::Range(lo, hi) => {
                    let l = self.value(m, lo, inner, param);
                    let h = self.value(m, hi, inner, param);
                    let (l, h) = (l?, h?);
                    if l.as_f64() > h.as_f64() {
                        self.emit(
                            Diagnostic::new(
                                Code::EmptyRange,
                                e.span,
                                format!("the range {l}..{h} is empty: its low end is above its high end"),
                                "low end above high end",
                            )
                            .help(format!("write it low to high: {h}..{l}")),
                        );
                        return None;
                    }
                    Some(Value::Range(Box::new(l), Box::new(h)))
                }
                _ => self.value(m, e, inner, param),
            },
            Ty::PerStage(inner) => match &e.kind {
                ExprKind::List(xs) => {
                    let vals: Vec<Option<Value>> =
                        xs.iter().map(|x| self.value(m, x, inner, param)).collect();
                    vals.into_iter()
                        .collect::<Option<Vec<_>>>()
                        .map(Value::List)
                }
                _ => self.value(m, e, inner, param),
            },
        }
    }

    /// A bare word where a word, a device or a built-in is expected.
    pub(super) fn word_or_builtin(
        &mut self,
        m: ModId,
        e: &Expr,
        ty: &Ty,
        p: &ast::Path,
    ) -> Option<Value> {
        let name = p.to_string();
        match ty {
            Ty::Word(ws) => {
                if ws.contains(&name.as_str()) {
                    self.resolved(e.span, Resolved::Builtin);
                    return Some(Value::Word(name));
                }
                let help = did_you_mean(&name, ws.iter().copied())
                    .unwrap_or_else(|| format!("the choices are {}", ty.describe()));
                self.emit(
                    Diagnostic::new(
                        Code::UnknownChoice,
                        e.span,
                        format!("`{name}` is not one of the choices"),
                        format!("expected {}", ty.describe()),
                    )
                    .help(help),
                );
                None
            }
            Ty::Device => {
                if ["auto", "cpu", "cuda"].contains(&name.as_str()) {
                    self.resolved(e.span, Resolved::Builtin);
                    return Some(Value::Word(name));
                }
                let help = did_you_mean(&name, ["auto", "cpu", "cuda"]).unwrap_or_else(|| {
                    "devices: auto, cpu, cuda, or \"cuda:N\" for the N-th GPU".into()
                });
                self.emit(
                    Diagnostic::new(
                        Code::UnknownChoice,
                        e.span,
                        format!("`{name}` is not a device"),
                        "unknown device",
                    )
                    .help(help),
                );
                None
            }
            Ty::Builtin(k) => self.call(m, e, *k).map(Value::Call),
            _ => unreachable!(),
        }
    }

    pub(super) fn number(&mut self, e: &Expr, ty: &Ty, param: Option<&Param>) -> Option<Value> {
        let ExprKind::Number(n) = &e.kind else {
            self.mismatch(e, ty, param);
            return None;
        };
        if let Some(u) = n.unit {
            let want = param.and_then(|p| p.unit);
            if want != Some(u.as_str()) {
                let pname = param.map(|p| p.name).unwrap_or("this value");
                let help = match want {
                    Some(w) => format!("`{pname}` is measured in {w}"),
                    None => format!("`{pname}` is a plain number: drop the `{}`", u.as_str()),
                };
                self.emit(
                    Diagnostic::new(
                        Code::WrongUnit,
                        e.span,
                        format!("`{pname}` does not take a value in {}", u.as_str()),
                        "wrong unit",
                    )
                    .help(help),
                );
                return None;
            }
        }
        let v = n.value;
        if *ty == Ty::Int && !n.is_int {
            let pname = param
                .map(|p| format!("`{}`", p.name))
                .unwrap_or_else(|| "this".into());
            self.emit(
                Diagnostic::new(
                    Code::NotInteger,
                    e.span,
                    format!("{pname} must be an integer, found {}", n.raw),
                    "not an integer",
                )
                .help(format!("use a whole number such as {}", v.round())),
            );
            return None;
        }
        if let Some(p) = param {
            let below = match p.min {
                Some(Bound::Incl(b)) => v < b,
                Some(Bound::Excl(b)) => v <= b,
                None => false,
            };
            let above = match p.max {
                Some(Bound::Incl(b)) => v > b,
                Some(Bound::Excl(b)) => v >= b,
                None => false,
            };
            if below || above {
                let bounds = p.bounds_text().unwrap_or_default();
                self.emit(
                    Diagnostic::new(
                        Code::OutOfRange,
                        e.span,
                        format!("`{}` must be {bounds}, found {}", p.name, n.raw),
                        format!("must be {bounds}"),
                    )
                    .help(p.doc.to_string()),
                );
                return None;
            }
        }
        Some(if *ty == Ty::Int {
            Value::Int(v as i64)
        } else {
            Value::Float(v)
        })
    }

    /// A parameter's default, evaluated once per check (defaults name no user definitions).
    pub(super) fn default_value(
        &mut self,
        m: ModId,
        p: &'static Param,
        text: &'static str,
    ) -> Option<Value> {
        let key = p as *const Param as usize;
        if let Some(v) = self.default_values.get(&key) {
            return v.clone();
        }
        let e = self
            .defaults
            .entry(text)
            .or_insert_with(|| mio_grammar::parse_expr_at(text, 0).expect("catalog defaults parse"))
            .clone();
        self.quiet += 1;
        let v = self.value(m, &e, &p.ty, Some(p));
        self.quiet -= 1;
        self.default_values.insert(key, v.clone());
        v
    }

    /// Checks a call (or a bare name, the call with its defaults) of a built-in of `kind`.
    /// The degradations a task expression applies, in order: one call, or steps joined by
    /// `then`, each a call or the name of a task (a composite's steps spliced in). Every step
    /// is checked; `None` if any is wrong.
    pub fn task_steps(&mut self, m: ModId, e: &Expr) -> Option<Vec<ir::Call>> {
        match &e.kind {
            ExprKind::Then(parts) => {
                let mut steps = Some(vec![]);
                for part in parts {
                    let got = match &part.kind {
                        ExprKind::Call(_) => self.call(m, part, Kind::Degradation).map(|c| vec![c]),
                        ExprKind::Path(_) => match self.value(m, part, &Ty::Task, None) {
                            Some(Value::Task(t)) => Some(t.steps().cloned().collect()),
                            _ => None,
                        },
                        _ => {
                            self.emit(
                                Diagnostic::new(
                                    Code::TypeMismatch,
                                    part.span,
                                    format!(
                                        "a step of a composite task is a degradation or a task, found {}",
                                        part.kind.describe()
                                    ),
                                    "not a degradation",
                                )
                                .help("for example: blur(sigma = 2.0) then sr(scale = 4) then paper.noise"),
                            );
                            None
                        }
                    };
                    steps = match (steps, got) {
                        (Some(mut all), Some(more)) => {
                            all.extend(more);
                            Some(all)
                        }
                        _ => None,
                    };
                }
                steps
            }
            // Another task's name: its steps (`task wet = paper.rain`).
            ExprKind::Path(_) => match self.value(m, e, &Ty::Task, None) {
                Some(Value::Task(t)) => Some(t.steps().cloned().collect()),
                _ => None,
            },
            _ => self.call(m, e, Kind::Degradation).map(|c| vec![c]),
        }
    }

    pub fn call(&mut self, m: ModId, e: &Expr, kind: Kind) -> Option<ir::Call> {
        let (callee, args, args_span) = match &e.kind {
            ExprKind::Call(c) => (&c.callee, c.args.as_slice(), c.args_span),
            ExprKind::Path(p) => (p, &[][..], e.span),
            _ => {
                self.mismatch(e, &Ty::Builtin(kind), None);
                return None;
            }
        };
        let b = self.builtin(callee, kind)?;
        let mut filled: Vec<Option<(Span, Option<Value>)>> = vec![None; b.params.len()];
        let mut seen_named = false;
        // Parameters the user probably meant by a misplaced or misspelt argument: not reported
        // as missing too.
        let mut meant: Vec<&str> = vec![];
        let mut positional_error = false;
        let mut positional = 0;
        for a in args {
            let idx = match &a.name {
                None => {
                    if seen_named {
                        positional_error = true;
                        self.emit(
                            Diagnostic::new(
                                Code::PositionalArgument,
                                a.span,
                                "a positional argument after named ones",
                                "name this argument",
                            )
                            .help(format!(
                                "write `name = value`; `{}` takes {}",
                                b.name,
                                names_of(b)
                            )),
                        );
                        continue;
                    }
                    positional += 1;
                    if positional > b.params.len() {
                        positional_error = true;
                        self.emit(
                            Diagnostic::new(
                                Code::PositionalArgument,
                                a.span,
                                format!(
                                    "`{}` takes {} argument(s), this is number {positional}",
                                    b.name,
                                    b.params.len()
                                ),
                                "one too many",
                            )
                            .help(format!("signature: {}", b.signature())),
                        );
                        continue;
                    }
                    positional - 1
                }
                Some(n) => {
                    seen_named = true;
                    match b.params.iter().position(|p| p.name == n.name) {
                        Some(i) => i,
                        None if b.name == "promptir" && n.name == "prompt" => {
                            self.emit(
                                Diagnostic::new(
                                    Code::UnknownArgument,
                                    n.span,
                                    "`promptir` has no parameter `prompt`: its prompt blocks are \
                                     its own",
                                    "unknown parameter",
                                )
                                .help(
                                    "the reference trains PromptIR as M and S only; its \
                                     PromptIR-EP/AP rows are Restormer's: \
                                     `restormer(prompt = explicit)` or `restormer(prompt = adaptive)`",
                                ),
                            );
                            continue;
                        }
                        None => {
                            meant.extend(closest(&n.name, b.params.iter().map(|p| p.name)));
                            let help = did_you_mean(&n.name, b.params.iter().map(|p| p.name))
                                .unwrap_or_else(|| format!("`{}` takes {}", b.name, names_of(b)));
                            self.emit(
                                Diagnostic::new(
                                    Code::UnknownArgument,
                                    n.span,
                                    format!("`{}` has no parameter `{}`", b.name, n.name),
                                    "unknown parameter",
                                )
                                .help(help),
                            );
                            continue;
                        }
                    }
                }
            };
            let p = &b.params[idx];
            if let Some((first, _)) = &filled[idx] {
                let first = *first;
                self.emit(
                    Diagnostic::new(
                        Code::DuplicateArgument,
                        a.span,
                        format!("`{}` is given twice", p.name),
                        "given again here",
                    )
                    .related(first, "first given here")
                    .help("keep one of them"),
                );
                continue;
            }
            let v = self.value(m, &a.value, &p.ty, Some(p));
            filled[idx] = Some((a.span, v));
        }
        let mut out = vec![];
        for (p, f) in b.params.iter().zip(filled) {
            match (f, p.default) {
                (Some((_, Some(v))), _) => out.push((p.name.to_string(), v)),
                (Some((_, None)), _) => {}
                (None, Default::Value(text)) => {
                    if let Some(v) = self.default_value(m, p, text) {
                        out.push((p.name.to_string(), v));
                    }
                }
                (None, Default::Absent) => {}
                (None, Default::Required) if positional_error || meant.contains(&p.name) => {}
                (None, Default::Required) => self.emit(
                    Diagnostic::new(
                        Code::MissingArgument,
                        if args.is_empty() { e.span } else { args_span },
                        format!("`{}` needs `{}`", b.name, p.name),
                        format!("missing `{}`", p.name),
                    )
                    .help(format!("{}: {}", p.signature(), p.doc)),
                ),
            }
        }
        Some(ir::Call {
            name: b.name.to_string(),
            args: out,
        })
    }

    pub(super) fn builtin(&mut self, callee: &ast::Path, kind: Kind) -> Option<&'static Builtin> {
        let name = callee.to_string();
        if let Some(b) = builtins::lookup(kind, &name) {
            self.resolved(callee.span, Resolved::Builtin);
            return Some(b);
        }
        if let Some(other) = builtins::all().find(|b| b.name == name) {
            let help = format!(
                "{} here: {}",
                kind.article(),
                builtins::of_kind(kind)
                    .map(|b| b.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.emit(
                Diagnostic::new(
                    Code::WrongKind,
                    callee.span,
                    format!(
                        "`{name}` is {}, but {} is expected here",
                        other.kind.article(),
                        kind.article()
                    ),
                    format!("not {}", kind.article()),
                )
                .help(help),
            );
            return None;
        }
        if let Some(task) = callee.segments.last().filter(|_| callee.segments.len() > 1) {
            if builtins::lookup(kind, &task.name).is_some() {
                self.emit(
                    Diagnostic::new(
                        Code::UnknownBuiltin,
                        callee.span,
                        format!("`{name}` is a task, not a built-in: it cannot be called"),
                        "a task",
                    )
                    .help(format!(
                        "to change its parameters, call the degradation itself: `{}(...)`",
                        task.name
                    )),
                );
                return None;
            }
        }
        let help =
            did_you_mean(&name, builtins::of_kind(kind).map(|b| b.name)).unwrap_or_else(|| {
                format!(
                    "{} here: {}",
                    kind.article(),
                    builtins::of_kind(kind)
                        .map(|b| b.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        self.emit(
            Diagnostic::new(
                Code::UnknownBuiltin,
                callee.span,
                format!(
                    "there is no {} named `{name}`",
                    kind.article()
                        .trim_start_matches("a ")
                        .trim_start_matches("an ")
                ),
                "unknown",
            )
            .help(help),
        );
        None
    }

    /// Checks a block's settings against the catalog entry `block`; fills in defaults.
    pub(super) fn settings(
        &mut self,
        m: ModId,
        block: &str,
        given: &[&Binding],
        head: Span,
    ) -> Vec<(String, Value)> {
        let spec = builtins::block(block);
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut out: Vec<(String, Value)> = vec![];
        let mut meant: Vec<&str> = vec![];
        for b in given {
            let Some(p) = spec.param(&b.name.name) else {
                meant.extend(closest(&b.name.name, spec.params.iter().map(|p| p.name)));
                let help = did_you_mean(&b.name.name, spec.params.iter().map(|p| p.name))
                    .unwrap_or_else(|| format!("`{block}` takes {}", names_of(spec)));
                self.emit(
                    Diagnostic::new(
                        Code::UnknownSetting,
                        b.name.span,
                        format!("`{block}` has no setting `{}`", b.name.name),
                        "unknown setting",
                    )
                    .help(help),
                );
                continue;
            };
            if let Some(first) = seen.get(p.name) {
                let first = *first;
                self.emit(
                    Diagnostic::new(
                        Code::DuplicateSetting,
                        b.name.span,
                        format!("`{}` is set twice", p.name),
                        "set again here",
                    )
                    .related(first, "first set here")
                    .help("keep one of them"),
                );
                continue;
            }
            seen.insert(p.name, b.name.span);
            if let Some(v) = self.value(m, &b.value, &p.ty, Some(p)) {
                out.push((p.name.to_string(), v));
            }
        }
        for p in spec.params {
            if seen.contains_key(p.name) {
                continue;
            }
            match p.default {
                Default::Value(text) => {
                    if let Some(v) = self.default_value(m, p, text) {
                        out.push((p.name.to_string(), v));
                    }
                }
                Default::Required if meant.contains(&p.name) => {}
                Default::Required => self.emit(
                    Diagnostic::new(
                        Code::MissingSetting,
                        head,
                        format!("`{block}` needs `{}`", p.name),
                        format!("missing `{}`", p.name),
                    )
                    .help(format!("add `{} = ...`: {}", p.name, p.doc)),
                ),
                Default::Absent => {}
            }
        }
        // Catalog order, so the canonical form does not depend on the order written.
        out.sort_by_key(|(n, _)| spec.params.iter().position(|p| p.name == n));
        out
    }

    // ----- items and workflows -------------------------------------------------------------
}
