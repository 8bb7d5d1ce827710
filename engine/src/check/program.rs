//! The program: the workflows to check (matrix rows expanded, `extends` merged, `--set`
//! overrides spliced in), duplicate items, matrices.

use super::*;

impl<'p> Checker<'p> {
    /// Checks every module's items for duplicates and every root task, then each workflow and
    /// matrix row of the root file. Returns the checked workflows that are to be planned.
    pub fn program(&mut self, overrides: &[Override]) -> Vec<ir::Workflow> {
        for m in 0..self.prog.modules.len() {
            self.duplicate_items(m);
        }
        let root = Program::ROOT;
        for item in self.items(root) {
            if let ast::Item::Task(b) = item {
                self.task(root, b, b.name.span);
            }
        }
        let mut applied = vec![false; overrides.len()];
        let mut out = vec![];
        let bases: Vec<String> = self
            .items(root)
            .iter()
            .filter_map(|i| match i {
                ast::Item::Matrix(mx) => Some(mx.bases.iter().map(|b| b.name.clone())),
                _ => None,
            })
            .flatten()
            .collect();
        for item in self.items(root) {
            match item {
                ast::Item::Workflow(w) => {
                    let Some(mut stmts) = self.merged(root, w, &mut vec![]) else {
                        continue;
                    };
                    self.apply_overrides(&w.name.name, &mut stmts, overrides, &mut applied);
                    self.broken = self.broken_in_chain(root, w);
                    if let Some(wf) = self.workflow(root, &w.name.name, None, &stmts, w.span) {
                        // A matrix's base is planned through its rows only.
                        if !bases.contains(&w.name.name) {
                            out.push(wf);
                        }
                    }
                }
                ast::Item::Matrix(mx) => out.extend(self.matrix(root, mx, overrides, &mut applied)),
                _ => {}
            }
        }
        for (o, ok) in overrides.iter().zip(applied) {
            if !ok {
                let why = self.first_workflow_stmts(root).map_or_else(
                    || "the file has no workflow".to_string(),
                    |mut s| {
                        merge::apply(&mut s, strip_workflow(self.prog, &o.path), &o.value)
                            .err()
                            .unwrap_or_default()
                    },
                );
                self.emit(
                    Diagnostic::new(
                        Code::BadOverride,
                        o.path.span,
                        format!("`{}` names nothing that can be set", o.path),
                        "no such setting",
                    )
                    .help(if why.is_empty() {
                        "paths look like `train.iters`, `model.net.channels` or `seed`".into()
                    } else {
                        why
                    }),
                );
            }
        }
        out
    }

    pub(super) fn first_workflow_stmts(&mut self, m: ModId) -> Option<Vec<Stmt>> {
        let w = self.items(m).iter().find_map(|i| match i {
            ast::Item::Workflow(w) => Some(w),
            _ => None,
        })?;
        self.quiet += 1;
        let s = self.merged(m, w, &mut vec![]);
        self.quiet -= 1;
        s
    }

    pub(super) fn apply_overrides(
        &mut self,
        wf: &str,
        stmts: &mut Vec<Stmt>,
        overrides: &[Override],
        applied: &mut [bool],
    ) {
        for (i, o) in overrides.iter().enumerate() {
            let segs = &o.path.segments;
            let path = if segs.len() > 1 && segs[0].name == wf {
                &segs[1..]
            } else if segs.len() > 1 && self.is_workflow_name(&segs[0].name) {
                continue; // aimed at another workflow
            } else {
                &segs[..]
            };
            if merge::apply(stmts, path, &o.value).is_ok() {
                applied[i] = true;
            }
        }
    }

    pub(super) fn is_workflow_name(&self, name: &str) -> bool {
        self.items(Program::ROOT).iter().any(|i| match i {
            ast::Item::Workflow(w) => w.name.name == name,
            ast::Item::Matrix(m) => m.name.name == name,
            _ => false,
        })
    }

    pub(super) fn duplicate_items(&mut self, m: ModId) {
        let mut seen: HashMap<String, Span> = HashMap::new();
        for item in self.items(m) {
            let Some(name) = item.name() else { continue };
            if let ast::Item::Use(_) = item {
                continue;
            }
            if let Some(first) = seen.get(&name.name) {
                let first = *first;
                self.emit(
                    Diagnostic::new(
                        Code::Duplicate,
                        name.span,
                        format!("`{}` is defined twice", name.name),
                        "defined again here",
                    )
                    .related(first, "first defined here")
                    .help("rename one of them"),
                );
            } else {
                seen.insert(name.name.clone(), name.span);
            }
        }
    }

    /// A workflow's statements with its `extends` chain laid under them.
    pub(super) fn merged(
        &mut self,
        m: ModId,
        w: &'p ast::Workflow,
        chain: &mut Vec<String>,
    ) -> Option<Vec<Stmt>> {
        if chain.contains(&w.name.name) {
            let mut names: Vec<String> = chain.iter().map(|n| format!("`{n}`")).collect();
            names.push(format!("`{}`", w.name.name));
            let at = w.extends.as_ref().map(|e| e.span).unwrap_or(w.name.span);
            self.emit(
                Diagnostic::new(
                    Code::Cycle,
                    at,
                    format!(
                        "workflows extend each other in a cycle: {}",
                        names.join(" -> ")
                    ),
                    "cycle closes here",
                )
                .help("a workflow cannot extend itself, directly or through others"),
            );
            return None;
        }
        let Some(parent_name) = &w.extends else {
            return Some(w.stmts.clone());
        };
        let Some(parent) = self.workflow_item(m, &parent_name.name) else {
            self.unknown_workflow(m, parent_name);
            return None;
        };
        chain.push(w.name.name.clone());
        let base = self.merged(m, parent, chain);
        chain.pop();
        Some(merge::overlay(base?, &w.stmts))
    }

    /// The broken statements of a workflow and of every workflow it extends.
    pub(super) fn broken_in_chain(&self, m: ModId, w: &'p ast::Workflow) -> Vec<(String, String)> {
        let mut out = w.broken.clone();
        let mut seen = vec![w.name.name.clone()];
        let mut next = w.extends.as_ref();
        while let Some(parent) = next.and_then(|p| self.workflow_item(m, &p.name)) {
            if seen.contains(&parent.name.name) {
                break;
            }
            seen.push(parent.name.name.clone());
            out.extend(parent.broken.iter().cloned());
            next = parent.extends.as_ref();
        }
        out
    }

    pub(super) fn workflow_item(&self, m: ModId, name: &str) -> Option<&'p ast::Workflow> {
        self.items(m).iter().find_map(|i| match i {
            ast::Item::Workflow(w) if w.name.name == name => Some(w),
            _ => None,
        })
    }

    pub(super) fn unknown_workflow(&mut self, m: ModId, name: &Ident) {
        if self.is_broken_item(m, &name.name) {
            return;
        }
        let names: Vec<String> = self
            .items(m)
            .iter()
            .filter_map(|i| match i {
                ast::Item::Workflow(w) => Some(w.name.name.clone()),
                _ => None,
            })
            .collect();
        let help = did_you_mean(&name.name, names.iter().map(String::as_str));
        self.emit(
            Diagnostic::new(
                Code::UnknownWorkflow,
                name.span,
                format!("there is no workflow `{}` in this file", name.name),
                "unknown workflow",
            )
            .with_help(help),
        );
    }

    pub(super) fn matrix(
        &mut self,
        m: ModId,
        mx: &'p ast::Matrix,
        overrides: &[Override],
        applied: &mut [bool],
    ) -> Vec<ir::Workflow> {
        let mut bases: Vec<(&Ident, Vec<Stmt>)> = vec![];
        self.broken.clear();
        for b in &mx.bases {
            match self.workflow_item(m, &b.name) {
                Some(w) => {
                    let broken = self.broken_in_chain(m, w);
                    self.broken.extend(broken);
                    if let Some(stmts) = self.merged(m, w, &mut vec![]) {
                        bases.push((b, stmts));
                    }
                }
                None => self.unknown_workflow(m, b),
            }
        }
        if bases.len() != mx.bases.len() {
            return vec![];
        }
        // Each axis must list values, and its path must name something in every base.
        let mut axes: Vec<(&ast::Axis, &[Expr])> = vec![];
        for a in &mx.axes {
            match &a.value.kind {
                ExprKind::List(xs) if !xs.is_empty() => {
                    let mut ok = true;
                    for (b, stmts) in &bases {
                        let mut probe = stmts.clone();
                        if let Err(why) = merge::apply(&mut probe, &a.path.segments, &xs[0]) {
                            self.emit(
                                Diagnostic::new(
                                    Code::BadAxis,
                                    a.path.span,
                                    format!("`{}` names nothing in workflow `{}`", a.path, b.name),
                                    "no such setting",
                                )
                                .help(why),
                            );
                            ok = false;
                            break;
                        }
                    }
                    if ok {
                        axes.push((a, xs));
                    }
                }
                _ => self.emit(
                    Diagnostic::new(
                        Code::BadAxisValues,
                        a.value.span,
                        format!("the axis `{}` must list its values", a.path),
                        "expected a non-empty list",
                    )
                    .help(format!("write `{} = [a, b, ...]`", a.path)),
                ),
            }
        }
        if axes.len() != mx.axes.len() {
            return vec![];
        }
        let mut rows = vec![];
        let per_base: usize = axes.iter().map(|(_, xs)| xs.len()).product();
        for (b, stmts) in &bases {
            for k in 0..per_base {
                let mut row = stmts.clone();
                let mut label = vec![];
                if bases.len() > 1 {
                    label.push(b.name.clone());
                }
                // The last axis varies fastest, like nested loops written in order.
                let mut picks = vec![0; axes.len()];
                let mut rem = k;
                for (i, (_, xs)) in axes.iter().enumerate().rev() {
                    picks[i] = rem % xs.len();
                    rem /= xs.len();
                }
                for (i, (a, xs)) in axes.iter().enumerate() {
                    let v = &xs[picks[i]];
                    let _ = merge::apply(&mut row, &a.path.segments, v);
                    label.push(format!(
                        "{}={}",
                        a.path.segments.last().unwrap().name,
                        short_value(v)
                    ));
                }
                self.apply_overrides(&mx.name.name, &mut row, overrides, applied);
                let name = format!("{}[{}]", mx.name.name, label.join(","));
                if let Some(wf) = self.workflow(m, &name, Some(&mx.name.name), &row, mx.span) {
                    rows.push(wf);
                }
            }
        }
        rows
    }
}
