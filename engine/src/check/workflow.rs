//! One workflow: its statements, the references between them (data, models, training) and
//! the method's rules (a sequential order is a permutation, one iteration count per stage,
//! explicit prompts exist, backbone settings fit together, patches fit the window).

use super::*;

impl<'p> Checker<'p> {
    /// Checks one workflow's statements (after extends, matrix and overrides).
    pub fn workflow(
        &mut self,
        m: ModId,
        name: &str,
        matrix: Option<&str>,
        stmts: &[Stmt],
        span: Span,
    ) -> Option<ir::Workflow> {
        let errors_before = self.diags.len();
        // Duplicates, by what each statement defines.
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut unique: Vec<&Stmt> = vec![];
        for s in stmts {
            let key = merge::stmt_key(s);
            let at = stmt_name_span(s);
            if let Some(first) = seen.get(&key) {
                let first = *first;
                let d = match s {
                    Stmt::Setting(b) => Diagnostic::new(
                        Code::DuplicateSetting,
                        at,
                        format!("`{}` is set twice", b.name.name),
                        "set again here",
                    )
                    .help("keep one of them"),
                    Stmt::Train(t) => Diagnostic::new(
                        Code::TrainedTwice,
                        at,
                        format!("`{}` is trained twice", t.model.name),
                        "second train block",
                    )
                    .help("declare a second model to train it another way: `model other = ...`"),
                    Stmt::Eval(e) if e.alias.is_none() => Diagnostic::new(
                        Code::Duplicate,
                        at,
                        format!(
                            "two evals of `{}` on `{}` share the name `{}`",
                            e.model.name,
                            e.data.name,
                            merge::eval_name(e)
                        ),
                        "same name",
                    )
                    .help("name each with `as`: `eval net on test as out_dis { ... }`"),
                    Stmt::Sweep(sw) if sw.alias.is_none() => Diagnostic::new(
                        Code::Duplicate,
                        at,
                        format!("two sweeps share the name `{}`", merge::sweep_name(sw)),
                        "same name",
                    )
                    .help("name each with `as`: `sweep net on test as mix2 { ... }`"),
                    _ => Diagnostic::new(
                        Code::Duplicate,
                        at,
                        format!("{} is defined twice", key.replacen(' ', " `", 1) + "`"),
                        "defined again here",
                    )
                    .help("rename one of them"),
                };
                self.emit(d.related(first, "first defined here"));
                continue;
            }
            seen.insert(key, at);
            unique.push(s);
        }

        let settings: Vec<&Binding> = unique
            .iter()
            .filter_map(|s| match s {
                Stmt::Setting(b) => Some(b),
                _ => None,
            })
            .collect();
        let settings = self.settings(m, "workflow", &settings, span);

        let mut data = vec![];
        let mut models = vec![];
        for s in &unique {
            match s {
                Stmt::Data(b) => {
                    if let Some(c) = self.call(m, &b.value, Kind::Dataset) {
                        data.push(ir::Data {
                            name: b.name.name.clone(),
                            source: c,
                            span: b.span,
                        });
                    }
                }
                Stmt::Model(b) => {
                    if let Some(c) = self.call(m, &b.value, Kind::Backbone) {
                        self.backbone_shape(&c, &b.value);
                        let prompt = match c
                            .arg("prompt")
                            .and_then(Value::as_call)
                            .map(|p| p.name.as_str())
                        {
                            Some("explicit") => PromptKind::Explicit,
                            Some("adaptive") => PromptKind::Adaptive,
                            _ => PromptKind::None,
                        };
                        let known_tasks = self.starting_weights(m, &c, prompt, b.value.span);
                        models.push(ir::Model {
                            name: b.name.name.clone(),
                            backbone: c,
                            prompt,
                            known_tasks,
                            span: b.span,
                        });
                    }
                }
                _ => {}
            }
        }
        let data_names: Vec<String> = unique
            .iter()
            .filter_map(|s| match s {
                Stmt::Data(b) => Some(b.name.name.clone()),
                _ => None,
            })
            .collect();
        let model_names: Vec<String> = unique
            .iter()
            .filter_map(|s| match s {
                Stmt::Model(b) => Some(b.name.name.clone()),
                _ => None,
            })
            .collect();
        self.models = model_names.clone();
        let data_stmt = |n: &str| {
            unique.iter().find_map(|s| match s {
                Stmt::Data(b) if b.name.name == n => Some(b),
                _ => None,
            })
        };

        let mut wf = ir::Workflow {
            name: name.to_string(),
            matrix: matrix.map(str::to_string),
            settings,
            data,
            models,
            trains: vec![],
            evals: vec![],
            sweeps: vec![],
            report: vec![],
            span,
        };

        let train_blocks: Vec<String> = unique
            .iter()
            .filter_map(|s| match s {
                Stmt::Train(t) => Some(t.model.name.clone()),
                _ => None,
            })
            .collect();
        // Models that can be evaluated: those trained, and those started from weights.
        let trained: Vec<String> = train_blocks
            .iter()
            .cloned()
            .chain(
                wf.models
                    .iter()
                    .filter(|m| m.backbone.arg("weights").is_some())
                    .map(|m| m.name.clone()),
            )
            .collect();

        for s in &unique {
            match s {
                Stmt::Train(t) => {
                    let model_ok = self.ref_model(&t.model, &model_names);
                    let data_ok = self.ref_data(&t.data, &data_names);
                    let given: Vec<&Binding> = t.block.settings.iter().collect();
                    let settings =
                        self.settings(m, "train", &given, head_span(t.span, t.block.span));
                    if data_ok {
                        if let Some(d) = wf.data(&t.data.name) {
                            if d.source.name == "pairs" {
                                self.emit(
                                    Diagnostic::new(
                                        Code::NotTrainingData,
                                        t.data.span,
                                        format!("`{}` holds ready-made pairs; training degrades clean images itself", t.data.name),
                                        "not clean images",
                                    )
                                    .related(d.span, "declared with `pairs` here")
                                    .help("train on `images(\"folder of clean images\")`; use pairs for evaluation"),
                                );
                            }
                        }
                    }
                    if let Some(train) = self.train(t, settings, &wf) {
                        if model_ok && data_ok {
                            self.patch_fits(&wf, &train, t, data_stmt(&t.data.name));
                        }
                        wf.trains.push(train);
                    }
                }
                Stmt::Eval(e) => {
                    let model_ok = self.ref_model(&e.model, &model_names)
                        && self.ref_trained(&e.model, &trained);
                    self.ref_data(&e.data, &data_names);
                    let given: Vec<&Binding> = e.block.settings.iter().collect();
                    let settings =
                        self.settings(m, "eval", &given, head_span(e.span, e.block.span));
                    let tasks: Vec<ir::Task> = get(&settings, "tasks")
                        .and_then(Value::as_list)
                        .map(|l| l.iter().filter_map(|v| v.as_task().cloned()).collect())
                        .unwrap_or_default();
                    let true_labels =
                        get(&settings, "labels").and_then(Value::as_word) == Some("known");
                    let untrained_explicit = wf.model(&e.model.name).filter(|x| {
                        x.prompt == PromptKind::Explicit
                            && x.backbone.arg("classifier").is_none()
                            && !train_blocks.contains(&x.name)
                    });
                    if let (true, false, Some(x)) = (model_ok, true_labels, untrained_explicit) {
                        self.emit(
                            Diagnostic::new(
                                Code::Weights,
                                e.model.span,
                                format!(
                                    "`{}` is never trained, so it has no task classifier to \
                                     predict the tasks of this evaluation",
                                    x.name
                                ),
                                "explicit prompts, started from weights",
                            )
                            .help(
                                "give the model the classifier that came with its weights \
                                 (`classifier = \"Classifier.pth\"`), or tell the evaluation \
                                 the true tasks (`labels = known`)",
                            ),
                        );
                    }
                    if model_ok && true_labels {
                        if let Some(at) = e.block.get("tasks").map(|b| b.value.span) {
                            for t in &tasks {
                                self.prompt_exists(&wf, &e.model.name, t, at, "this eval");
                            }
                        }
                    }
                    wf.evals.push(ir::Eval {
                        name: merge::eval_name(e),
                        model: e.model.name.clone(),
                        data: e.data.name.clone(),
                        tasks,
                        settings,
                        span: e.span,
                    });
                }
                Stmt::Sweep(sw) => {
                    let model_ok = self.ref_model(&sw.model, &model_names)
                        && self.ref_trained(&sw.model, &trained);
                    let target = match &sw.target {
                        ast::SweepTarget::Data(d) => {
                            if self.ref_data(d, &data_names) {
                                if let Some(decl) =
                                    wf.data(&d.name).filter(|x| x.source.name == "pairs")
                                {
                                    self.emit(
                                        Diagnostic::new(
                                            Code::NotTrainingData,
                                            d.span,
                                            format!("`{}` holds ready-made pairs; a sweep degrades clean images itself", d.name),
                                            "not clean images",
                                        )
                                        .related(decl.span, "declared with `pairs` here")
                                        .help("sweep over `images(\"folder of clean images\")` or one image file"),
                                    );
                                }
                            }
                            ir::SweepTarget::Data(d.name.clone())
                        }
                        ast::SweepTarget::File { path, .. } => ir::SweepTarget::File(path.clone()),
                    };
                    let given: Vec<&Binding> = sw.block.settings.iter().collect();
                    let settings =
                        self.settings(m, "sweep", &given, head_span(sw.span, sw.block.span));
                    let over_param = get(&settings, "param").is_some();
                    let head = head_span(sw.span, sw.block.span);
                    let needs: &[&str] = if over_param {
                        &["degrade", "values"]
                    } else {
                        &["from", "to"]
                    };
                    for key in needs {
                        // Written but wrong (`to = rainn`) is reported at the value, not here.
                        if get(&settings, key).is_none() && sw.block.get(key).is_none() {
                            let what = if over_param {
                                "a sweep over a degradation parameter"
                            } else {
                                "a prompt interpolation"
                            };
                            self.emit(
                                Diagnostic::new(
                                    Code::MissingSetting,
                                    head,
                                    format!("{what} needs `{key}`"),
                                    format!("missing `{key}`"),
                                )
                                .help(if over_param {
                                    "for example: degrade = paper.noise, param = \"sigma\", values = [10, 30, 50]"
                                } else {
                                    "for example: from = lowlight, to = rain"
                                }),
                            );
                        }
                    }
                    if let (Some(Value::Str(name)), Some(Value::Task(t)), Some(b)) = (
                        get(&settings, "param"),
                        get(&settings, "degrade"),
                        sw.block.get("param"),
                    ) {
                        // A composite's parameters are its steps' (the sweep changes the first
                        // step that has it).
                        let mut params: Vec<&str> = vec![];
                        for c in t.steps() {
                            let more = mio_catalog::builtins::lookup(Kind::Degradation, &c.name)
                                .map(|d| d.params.iter().map(|p| p.name).collect::<Vec<_>>())
                                .unwrap_or_default();
                            for p in more {
                                if !params.contains(&p) {
                                    params.push(p);
                                }
                            }
                        }
                        if !params.contains(&name.as_str()) {
                            let help =
                                crate::diagnostic::did_you_mean(name, params.iter().copied())
                                    .unwrap_or_else(|| {
                                        format!("`{}` takes: {}", t.kind(), params.join(", "))
                                    });
                            self.emit(
                                Diagnostic::new(
                                    Code::UnknownArgument,
                                    b.value.span,
                                    format!("`{}` has no parameter `{name}`", t.kind()),
                                    "not a parameter of the degradation",
                                )
                                .help(help),
                            );
                        }
                    }
                    if model_ok && !over_param {
                        let model = wf.model(&sw.model.name);
                        let prompt = model.map(|x| x.prompt);
                        if prompt == Some(PromptKind::None) {
                            // PromptIR's prompt blocks are part of it: no prompt to set.
                            let help = if model.is_some_and(|m| m.backbone.name == "promptir") {
                                "PromptIR's prompts are its own and cannot be set; sweep a \
                                 `restormer(prompt = explicit)` or `restormer(prompt = adaptive)` \
                                 (the reference's PromptIR-EP/AP rows)"
                            } else {
                                "give the backbone `prompt = explicit` or `prompt = adaptive`"
                            };
                            self.emit(
                                Diagnostic::new(
                                    Code::NoPrompt,
                                    sw.model.span,
                                    format!("`{}` has no prompt to interpolate", sw.model.name),
                                    "model without prompt",
                                )
                                .help(help),
                            );
                        } else if prompt == Some(PromptKind::Explicit) {
                            for key in ["from", "to"] {
                                if let (Some(Value::Task(t)), Some(b)) =
                                    (get(&settings, key), sw.block.get(key))
                                {
                                    let t = t.clone();
                                    self.prompt_exists(
                                        &wf,
                                        &sw.model.name,
                                        &t,
                                        b.value.span,
                                        "this sweep",
                                    );
                                }
                            }
                        }
                    }
                    wf.sweeps.push(ir::Sweep {
                        name: merge::sweep_name(sw),
                        model: sw.model.name.clone(),
                        target,
                        settings,
                        span: sw.span,
                    });
                }
                Stmt::Report(r) => {
                    let given: Vec<&Binding> = r.block.settings.iter().collect();
                    wf.report = self.settings(m, "report", &given, head_span(r.span, r.block.span));
                }
                _ => {}
            }
        }
        if wf.report.is_empty() {
            wf.report = self.settings(m, "report", &[], span);
        }
        (self.diags.len() == errors_before).then_some(wf)
    }

    pub(super) fn ref_model(&mut self, id: &Ident, models: &[String]) -> bool {
        if models.contains(&id.name) {
            self.resolved(id.span, Resolved::Model(id.name.clone()));
            return true;
        }
        if self.is_broken("model", &id.name) {
            return false;
        }
        let help = did_you_mean(&id.name, models.iter().map(String::as_str))
            .unwrap_or_else(|| format!("declare it: `model {} = srresnet()`", id.name));
        self.emit(
            Diagnostic::new(
                Code::UndefinedModel,
                id.span,
                format!("the workflow has no model `{}`", id.name),
                "not a model",
            )
            .help(help),
        );
        false
    }

    pub(super) fn ref_data(&mut self, id: &Ident, data: &[String]) -> bool {
        if data.contains(&id.name) {
            self.resolved(id.span, Resolved::Data(id.name.clone()));
            return true;
        }
        if self.is_broken("data", &id.name) {
            return false;
        }
        let help = did_you_mean(&id.name, data.iter().map(String::as_str))
            .unwrap_or_else(|| format!("declare it: `data {} = images(\"folder\")`", id.name));
        self.emit(
            Diagnostic::new(
                Code::UndefinedData,
                id.span,
                format!("the workflow has no data `{}`", id.name),
                "not declared",
            )
            .help(help),
        );
        false
    }

    pub(super) fn ref_trained(&mut self, id: &Ident, trained: &[String]) -> bool {
        if trained.contains(&id.name) {
            self.resolved(id.span, Resolved::Model(id.name.clone()));
            return true;
        }
        if self.is_broken("train", &id.name) {
            return false;
        }
        self.emit(
            Diagnostic::new(
                Code::NeverTrained,
                id.span,
                format!("`{}` is never trained", id.name),
                "untrained model",
            )
            .help(format!(
                "add `train {} on DATA {{ ... }}` to the workflow",
                id.name
            )),
        );
        false
    }

    /// For an explicit-prompt model: is there a trained task with `task`'s degradation?
    pub(super) fn prompt_exists(
        &mut self,
        wf: &ir::Workflow,
        model: &str,
        task: &ir::Task,
        at: Span,
        user: &str,
    ) {
        let Some(mdl) = wf.model(model) else { return };
        if mdl.prompt != PromptKind::Explicit {
            return;
        }
        let known = wf.model_tasks(model);
        if known.is_empty() {
            return;
        }
        let kinds: Vec<String> = known.iter().map(ir::Task::kind).collect();
        if !kinds.contains(&task.kind()) {
            self.emit(
                Diagnostic::new(
                    Code::NoPromptForTask,
                    at,
                    format!(
                        "`{model}` has no prompt for `{}`: it was trained on {}",
                        task.name,
                        kinds.join(", ")
                    ),
                    format!("{user} needs a `{}` prompt", task.kind()),
                )
                .help("explicit prompts exist only for the degradations a model was trained on"),
            );
        }
    }

    /// A backbone's starting weights: `param_key`, `maps` and `classifier` need `weights`,
    /// `maps` explicit prompts (E057). Returns the tasks the weights know (the reference's
    /// seven in its order) when there are weights.
    pub(super) fn starting_weights(
        &mut self,
        m: ModId,
        c: &ir::Call,
        prompt: PromptKind,
        at: Span,
    ) -> Vec<ir::Task> {
        let has = |n: &str| c.arg(n).is_some();
        for arg in ["param_key", "maps", "classifier"] {
            if has(arg) && !has("weights") {
                self.emit(
                    Diagnostic::new(
                        Code::Weights,
                        at,
                        format!("`{arg}` goes with starting weights, and there are none"),
                        "no `weights` here",
                    )
                    .help(format!(
                        "give the weights it goes with: `weights = \"MODEL.pth\", {arg} = ...`"
                    )),
                );
            }
        }
        for arg in ["maps", "classifier"] {
            if has(arg) && prompt != PromptKind::Explicit {
                self.emit(
                    Diagnostic::new(
                        Code::Weights,
                        at,
                        format!("`{arg}` is for explicit prompts, and this model has none"),
                        "not an explicit-prompt model",
                    )
                    .help("give the backbone `prompt = explicit`, or leave the setting out"),
                );
            }
        }
        if !has("weights") {
            return vec![];
        }
        mio_catalog::REFERENCE_TASK_INDEX
            .iter()
            .filter_map(|name| {
                let e = mio_grammar::parse_expr_at(name, 0).ok()?;
                self.quiet += 1;
                let degradation = self.call(m, &e, mio_catalog::Kind::Degradation);
                self.quiet -= 1;
                Some(ir::Task::new(name.to_string(), degradation?))
            })
            .collect()
    }

    /// Stages from the strategy, tasks and iterations of a train block.
    pub(super) fn train(
        &mut self,
        t: &ast::Train,
        settings: Vec<(String, Value)>,
        _wf: &ir::Workflow,
    ) -> Option<ir::Train> {
        let strategy = get(&settings, "strategy")
            .and_then(Value::as_call)
            .cloned()?;
        let tasks: Option<Vec<ir::Task>> = get(&settings, "tasks")
            .and_then(Value::as_list)
            .map(|l| l.iter().filter_map(|v| v.as_task().cloned()).collect());
        let strategy_expr = t.block.get("strategy").map(|b| &b.value);
        let strategy_span = strategy_expr.map(|e| e.span).unwrap_or(t.block.span);
        let stage_tasks: Vec<Vec<ir::Task>> = if strategy.name == "sequential" {
            let order: Vec<ir::Task> = strategy
                .arg("order")
                .and_then(Value::as_list)
                .map(|l| l.iter().filter_map(|v| v.as_task().cloned()).collect())
                .unwrap_or_default();
            let order_span = strategy_expr
                .and_then(|e| match &e.kind {
                    ExprKind::Call(c) => c
                        .args
                        .iter()
                        .find(|a| a.name.as_ref().is_none_or(|n| n.name == "order")),
                    _ => None,
                })
                .map(|a| a.value.span)
                .unwrap_or(strategy_span);
            self.permutation(
                &order,
                tasks.as_deref(),
                order_span,
                t.block.get("tasks").map(|b| b.value.span),
            );
            (1..=order.len()).map(|k| order[..k].to_vec()).collect()
        } else {
            match tasks {
                Some(ts) if !ts.is_empty() => vec![ts],
                Some(_) => {
                    let at = t
                        .block
                        .get("tasks")
                        .map(|b| b.value.span)
                        .unwrap_or(t.block.span);
                    self.emit(
                        Diagnostic::new(
                            Code::MixedNeedsTasks,
                            at,
                            "mixed training of no task",
                            "empty list",
                        )
                        .help("list the tasks to train, e.g. `tasks = paper.tasks`"),
                    );
                    return None;
                }
                // Tasks written but wrong are reported where they are wrong.
                None if t.block.get("tasks").is_some() => return None,
                // A misspelt `strategy` (reported as an unknown setting) is not mixed training.
                None if t.block.settings.iter().any(|b| {
                    b.name.name != "strategy" && closest(&b.name.name, ["strategy"]).is_some()
                }) =>
                {
                    return None;
                }
                None => {
                    self.emit(
                        Diagnostic::new(
                            Code::MixedNeedsTasks,
                            head_span(t.span, t.block.span),
                            "mixed training needs the list of tasks to train",
                            "no `tasks`",
                        )
                        .help("add `tasks = paper.tasks` (or your own list) to the train block"),
                    );
                    return None;
                }
            }
        };
        let iters = get(&settings, "iters")?;
        let per_stage: Vec<u64> = match iters {
            Value::Int(n) => vec![*n as u64; stage_tasks.len()],
            // Mixed learning gets the same total as the sequential run the list describes.
            Value::List(l) if strategy.name == "mixed" => {
                vec![l.iter().filter_map(Value::as_int).map(|n| n as u64).sum()]
            }
            Value::List(l) => {
                let v: Vec<u64> = l
                    .iter()
                    .filter_map(Value::as_int)
                    .map(|n| n as u64)
                    .collect();
                if v.len() != stage_tasks.len() {
                    let at = t
                        .block
                        .get("iters")
                        .map(|b| b.value.span)
                        .unwrap_or(t.block.span);
                    let n = stage_tasks.len();
                    let help = format!("a sequential run over {n} tasks has {n} stages; give {n} numbers or one for all");
                    self.emit(
                        Diagnostic::new(
                            Code::StageCount,
                            at,
                            format!("{} iteration count(s) for {n} stage(s)", v.len()),
                            format!("{} entries", v.len()),
                        )
                        .related(strategy_span, format!("{n} stage(s) from this strategy"))
                        .help(help),
                    );
                    return None;
                }
                v
            }
            _ => return None,
        };
        Some(ir::Train {
            model: t.model.name.clone(),
            data: t.data.name.clone(),
            strategy,
            stages: stage_tasks
                .into_iter()
                .zip(per_stage)
                .map(|(tasks, iters)| ir::Stage { tasks, iters })
                .collect(),
            settings,
            span: t.span,
        })
    }

    pub(super) fn permutation(
        &mut self,
        order: &[ir::Task],
        tasks: Option<&[ir::Task]>,
        at: Span,
        tasks_at: Option<Span>,
    ) {
        let names: Vec<&str> = order.iter().map(|t| t.name.as_str()).collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                self.emit(
                    Diagnostic::new(
                        Code::OrderNotPermutation,
                        at,
                        format!("the sequential order lists `{n}` twice"),
                        format!("`{n}` repeated"),
                    )
                    .help("each task joins once; later stages replay it automatically"),
                );
                return;
            }
        }
        let Some(tasks) = tasks else { return };
        let trained: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        let missing: Vec<&str> = trained
            .iter()
            .filter(|t| !names.contains(t))
            .copied()
            .collect();
        let extra: Vec<&str> = names
            .iter()
            .filter(|t| !trained.contains(t))
            .copied()
            .collect();
        if missing.is_empty() && extra.is_empty() {
            return;
        }
        let mut parts = vec![];
        if !missing.is_empty() {
            parts.push(format!("it leaves out {}", quoted(&missing)));
        }
        if !extra.is_empty() {
            parts.push(format!("it adds {}", quoted(&extra)));
        }
        let mut d = Diagnostic::new(
            Code::OrderNotPermutation,
            at,
            format!("the sequential order is not a permutation of the trained tasks: {}", parts.join(" and ")),
            "not a permutation of `tasks`",
        )
        .help("list every trained task exactly once, or drop `tasks` to train exactly the order's tasks");
        if let Some(ts) = tasks_at {
            d = d.related(ts, "the trained tasks");
        }
        self.emit(d);
    }

    /// A backbone's settings that are each valid but do not fit together: list lengths, and
    /// attention heads that must divide the channels they split.
    pub(crate) fn backbone_shape(&mut self, c: &ir::Call, e: &Expr) {
        let arg_span = |name: &str| match &e.kind {
            ExprKind::Call(call) => call
                .args
                .iter()
                .find(|a| a.name.as_ref().is_some_and(|n| n.name == name))
                .map(|a| a.span)
                .unwrap_or(e.span),
            _ => e.span,
        };
        // The rest is the configuration's own rule (`mio_catalog::config`), on a copy that it
        // can hold: a negative count read as 0 (which every rule refuses), and a list without
        // one entry per level (reported here) as one level each.
        let mut counts = c.clone();
        let mut reshaped = false;
        for &(backbone, name, n, what, example) in LEVEL_LISTS {
            if c.name != backbone {
                continue;
            }
            let got = c.arg(name).and_then(Value::as_list).map_or(0, |l| l.len());
            if got == n {
                continue;
            }
            if let Some((_, v)) = counts.args.iter_mut().find(|(k, _)| k == name) {
                *v = Value::List(vec![Value::Int(1); n]);
            }
            reshaped = true;
            self.emit(
                Diagnostic::new(
                    Code::BackboneShape,
                    arg_span(name),
                    format!(
                        "{} has {what} but `{name}` lists {got}",
                        display_name(backbone)
                    ),
                    format!("needs {} entries", number_word(n)),
                )
                .help(format!("one entry per level, e.g. `{name} = {example}`")),
            );
        }
        for (_, v) in &mut counts.args {
            if let Value::List(l) = v {
                for x in l.iter_mut() {
                    if matches!(x, Value::Int(i) if *i < 0) {
                        *x = Value::Int(0);
                    }
                }
            }
        }
        let Ok(spec) = crate::lower::network(&counts, vec![]) else {
            return;
        };
        // A list read as one per level says nothing about the rules between the settings
        // (PromptIR's prompt blocks' channels): they are checked once the list is whole.
        if reshaped && c.name == "promptir" {
            return;
        }
        for p in spec.arch.problems() {
            self.emit(
                Diagnostic::new(Code::BackboneShape, arg_span(p.param), p.message, p.label)
                    .help(p.help),
            );
        }
    }

    pub(super) fn patch_fits(
        &mut self,
        wf: &ir::Workflow,
        train: &ir::Train,
        t: &ast::Train,
        data: Option<&Binding>,
    ) {
        let (Some(model), Some(d)) = (wf.model(&train.model), wf.data(&train.data)) else {
            return;
        };
        let Some(rule) = crate::lower::network(&model.backbone, vec![])
            .ok()
            .and_then(|spec| spec.arch.side_rule())
        else {
            return;
        };
        let multiple = rule.multiple as i64;
        let Some(patch) = d.source.arg("patch").and_then(Value::as_int) else {
            return;
        };
        if multiple > 1 && patch % multiple != 0 {
            let at = data
                .and_then(|b| match &b.value.kind {
                    ExprKind::Call(c) => c
                        .args
                        .iter()
                        .find(|a| a.name.as_ref().is_some_and(|n| n.name == "patch")),
                    _ => None,
                })
                .map(|a| a.span)
                .unwrap_or(t.data.span);
            let lower = patch / multiple * multiple;
            let why = rule.because;
            self.emit(
                Diagnostic::new(
                    Code::PatchMultiple,
                    at,
                    format!(
                        "patch {patch} is not a multiple of {multiple}, which `{}` needs",
                        model.backbone.name
                    ),
                    format!("not a multiple of {multiple}"),
                )
                .related(
                    model.span,
                    format!(
                        "`{}` is a {} ({why} is {multiple})",
                        model.name, model.backbone.name
                    ),
                )
                .help(format!(
                    "use patch = {}",
                    if lower == 0 {
                        multiple.to_string()
                    } else {
                        format!("{lower} or {}", lower + multiple)
                    }
                )),
            );
        }
    }
}

/// The list settings that need one entry per level: backbone, setting, entries, what the
/// levels are, an example.
const LEVEL_LISTS: &[(&str, &str, usize, &str, &str)] = &[
    ("restormer", "blocks", 4, "four levels", "[4, 6, 6, 8]"),
    ("restormer", "heads", 4, "four levels", "[1, 2, 4, 8]"),
    ("promptir", "blocks", 4, "four levels", "[4, 6, 6, 8]"),
    ("promptir", "heads", 4, "four levels", "[1, 2, 4, 8]"),
    (
        "promptir",
        "prompt_dims",
        3,
        "three prompt blocks",
        "[64, 128, 320]",
    ),
    (
        "promptir",
        "prompt_sizes",
        3,
        "three prompt blocks",
        "[64, 32, 16]",
    ),
    (
        "uformer",
        "depths",
        9,
        "nine places (four encoder levels, the bottleneck, four decoder levels)",
        "[1, 2, 8, 8, 2, 8, 8, 2, 1]",
    ),
    (
        "uformer",
        "heads",
        9,
        "nine places (four encoder levels, the bottleneck, four decoder levels)",
        "[1, 2, 4, 8, 16, 16, 8, 4, 2]",
    ),
];

/// A backbone's name as its paper writes it.
fn display_name(backbone: &str) -> &str {
    match backbone {
        "restormer" => "Restormer",
        "promptir" => "PromptIR",
        "uformer" => "Uformer",
        "swinir" => "SwinIR",
        "srresnet" => "SRResNet",
        other => other,
    }
}

/// A small count in words, for labels.
fn number_word(n: usize) -> String {
    match n {
        3 => "three".into(),
        4 => "four".into(),
        9 => "nine".into(),
        n => n.to_string(),
    }
}
