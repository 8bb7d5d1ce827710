//! Names: looking them up across imports (local first, then unqualified imports, `ns.name`),
//! expanding `let`s where they are used, and tasks.

use super::*;

impl<'p> Checker<'p> {
    pub(super) fn lookup_unrecorded(&mut self, m: ModId, path: &ast::Path) -> Option<Sym<'p>> {
        match path.segments.as_slice() {
            [one] => {
                if let Some(s) = self.local(m, &one.name) {
                    return Some(s);
                }
                let found: Vec<(String, Sym<'p>)> = self.prog.modules[m]
                    .imports
                    .iter()
                    .filter_map(|(ns, mid)| self.local(*mid, &one.name).map(|s| (ns.clone(), s)))
                    .collect();
                match found.len() {
                    1 => Some(found[0].1),
                    0 if self.is_broken_item(m, &one.name) => None,
                    0 => {
                        let names = self.visible_names(m);
                        let help = did_you_mean(&one.name, names.iter().map(String::as_str));
                        self.emit(
                            Diagnostic::new(
                                Code::UnknownName,
                                one.span,
                                format!("`{}` is not defined", one.name),
                                "not found",
                            )
                            .with_help(help.or_else(|| {
                                (self.prog.modules[m].imports.is_empty())
                                    .then(|| "the paper's tasks come with `use paper` at the top of the file".into())
                            })),
                        );
                        None
                    }
                    _ => {
                        let nss: Vec<String> = found
                            .iter()
                            .map(|(ns, _)| format!("`{ns}.{}`", one.name))
                            .collect();
                        self.emit(
                            Diagnostic::new(
                                Code::AmbiguousName,
                                one.span,
                                format!("`{}` is defined by several imports", one.name),
                                "ambiguous",
                            )
                            .help(format!("write one of {}", nss.join(", "))),
                        );
                        None
                    }
                }
            }
            [ns, name] => {
                let Some(mid) = self.prog.modules[m]
                    .imports
                    .iter()
                    .find(|(n, _)| *n == ns.name)
                    .map(|(_, mid)| *mid)
                else {
                    let nss: Vec<&str> = self.prog.modules[m]
                        .imports
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect();
                    let help = did_you_mean(&ns.name, nss.iter().copied()).unwrap_or_else(|| {
                        if ns.name == "paper" {
                            "add `use paper` at the top of the file".into()
                        } else {
                            "import it with `use`".into()
                        }
                    });
                    self.emit(
                        Diagnostic::new(
                            Code::UnknownName,
                            ns.span,
                            format!("no import is named `{}`", ns.name),
                            "unknown namespace",
                        )
                        .help(help),
                    );
                    return None;
                };
                match self.local(mid, &name.name) {
                    Some(s) => Some(s),
                    None => {
                        let names: Vec<String> = self
                            .items(mid)
                            .iter()
                            .filter_map(|i| match i {
                                ast::Item::Task(b) | ast::Item::Let(b) => Some(b.name.name.clone()),
                                _ => None,
                            })
                            .collect();
                        let help = did_you_mean(&name.name, names.iter().map(String::as_str));
                        self.emit(
                            Diagnostic::new(
                                Code::UnknownName,
                                name.span,
                                format!("`{}` defines no `{}`", ns.name, name.name),
                                "not found",
                            )
                            .with_help(help),
                        );
                        None
                    }
                }
            }
            _ => {
                self.emit(Diagnostic::new(
                    Code::UnknownName,
                    path.span,
                    format!("`{path}` is not defined"),
                    "names have at most one namespace: `paper.rain`",
                ));
                None
            }
        }
    }

    /// The degradation call that a task expression stands for: an inline call as it is, a task
    /// name as its definition (so `--set` can change its arguments). Reports unknown names.
    pub fn task_call_expr(&mut self, m: ModId, e: &Expr) -> Option<Expr> {
        match &e.kind {
            ExprKind::Call(_) | ExprKind::Then(_) => Some(e.clone()),
            ExprKind::Path(p) => match self.lookup(m, p)? {
                Sym::Task(_, b) => Some(b.value.clone()),
                Sym::Let(mid, b) => self.task_call_expr(mid, &b.value),
            },
            _ => {
                self.mismatch(e, &Ty::Task, None);
                None
            }
        }
    }

    /// Expands a `let` where a value of type `ty` is expected.
    pub(super) fn expand_let(
        &mut self,
        m: ModId,
        b: &'p Binding,
        ty: &Ty,
        param: Option<&Param>,
        at: Span,
    ) -> Option<Value> {
        let key = (m, b.name.name.clone());
        if self.enter(&key, at) {
            let v = self.value(m, &b.value, ty, param);
            self.expanding.pop();
            v
        } else {
            None
        }
    }

    /// Pushes `key` on the expansion stack, or reports the cycle it closes.
    pub(super) fn enter(&mut self, key: &(ModId, String), at: Span) -> bool {
        if let Some(i) = self.expanding.iter().position(|k| k == key) {
            let mut chain: Vec<String> = self.expanding[i..]
                .iter()
                .map(|(_, n)| format!("`{n}`"))
                .collect();
            chain.push(format!("`{}`", key.1));
            self.emit(
                Diagnostic::new(
                    Code::Cycle,
                    at,
                    format!(
                        "`{}` is defined in terms of itself: {}",
                        key.1,
                        chain.join(" -> ")
                    ),
                    "cycle closes here",
                )
                .help("a definition may use earlier ones, but not itself"),
            );
            return false;
        }
        self.expanding.push(key.clone());
        true
    }

    /// The task a `task` item defines (checked once, cached).
    pub(super) fn task(&mut self, m: ModId, b: &'p Binding, at: Span) -> Option<ir::Task> {
        let key = (m, b.name.name.clone());
        if let Some(t) = self.tasks.get(&key) {
            return t.clone();
        }
        if !self.enter(&key, at) {
            return None;
        }
        let steps = self.task_steps(m, &b.value);
        self.expanding.pop();
        let task = steps.map(|steps| ir::Task::of_steps(b.name.name.clone(), steps));
        self.tasks.insert(key, task.clone());
        task
    }

    // ----- values ------------------------------------------------------------------------

    pub(super) fn local_or_imported(&self, m: ModId, name: &str) -> Option<Sym<'p>> {
        self.local(m, name).or_else(|| {
            self.prog.modules[m]
                .imports
                .iter()
                .find_map(|(_, mid)| self.local(*mid, name))
        })
    }
}
