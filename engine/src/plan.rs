//! Compiling checked workflows into a DAG of work units (petgraph): synthesise a test set,
//! train one stage, train the task classifier, evaluate, sweep, report. Each node is
//! identified by its canonical definition (upstream definitions included), so identical work
//! in several workflows or matrix rows, such as a shared test set, is one node.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::diagnostic::Diagnostic;
use crate::ir::{self, PromptKind, Value};
use crate::job::{self, Job};
use crate::lower;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeKind {
    TestSet,
    Pretrained,
    Train,
    Classifier,
    Eval,
    Sweep,
    Curves,
    Report,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::TestSet => "testset",
            NodeKind::Pretrained => "pretrained",
            NodeKind::Train => "train",
            NodeKind::Classifier => "classifier",
            NodeKind::Eval => "eval",
            NodeKind::Sweep => "sweep",
            NodeKind::Curves => "curves",
            NodeKind::Report => "report",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: NodeKind,
    /// Readable and unique within the plan: `quick/net_s stage 2/7`.
    pub name: String,
    /// One line on what it does.
    pub detail: String,
    /// The canonical definition, upstream definitions folded in.
    pub definition: String,
    /// A short stable id derived from the definition (FNV-1a, 64 bits).
    pub id: u64,
    /// The workflows that need it.
    pub workflows: Vec<String>,
    /// What it does, lowered from the checked workflow that first needed it.
    pub job: Job,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub graph: DiGraph<Node, ()>,
    /// How many checked workflows (matrix rows counted one by one) the plan covers.
    pub workflows: usize,
    by_definition: HashMap<String, NodeIndex>,
}

/// FNV-1a: tiny, stable across platforms and releases (unlike `DefaultHasher`).
pub fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Which evaluations go into named report tables: part of the report's definition (the
/// evaluations' own keys leave it out).
fn tables_text(wf: &ir::Workflow) -> String {
    wf.evals
        .iter()
        .filter_map(|e| Some(format!("{} in {}", e.name, e.setting("table")?)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn settings_text(s: &[(String, Value)]) -> String {
    s.iter()
        .map(|(n, v)| format!("{n} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        kind: NodeKind,
        name: String,
        detail: String,
        definition: String,
        wf: &str,
        deps: &[NodeIndex],
        job: impl FnOnce() -> Result<Job, Diagnostic>,
    ) -> Result<NodeIndex, Diagnostic> {
        let mut full = definition;
        for d in deps {
            let _ = write!(full, " <- {:016x}", self.graph[*d].id);
        }
        if let Some(&i) = self.by_definition.get(&full) {
            if !self.graph[i].workflows.iter().any(|w| w == wf) {
                self.graph[i].workflows.push(wf.to_string());
            }
            return Ok(i);
        }
        let job = job()?;
        let id = fnv1a(&full);
        let i = self.graph.add_node(Node {
            kind,
            name,
            detail,
            definition: full.clone(),
            id,
            workflows: vec![wf.to_string()],
            job,
        });
        for &d in deps {
            self.graph.add_edge(d, i, ());
        }
        self.by_definition.insert(full, i);
        Ok(i)
    }

    /// Every node upstream of `i` (its inputs, theirs, ...), in index order.
    pub fn ancestors(&self, i: NodeIndex) -> Vec<NodeIndex> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![i];
        while let Some(n) = todo.pop() {
            for d in self.graph.neighbors_directed(n, Direction::Incoming) {
                if seen.insert(d) {
                    todo.push(d);
                }
            }
        }
        seen.into_iter().collect()
    }

    /// Nodes in dependency order; among ready nodes, the one created first goes first.
    pub fn order(&self) -> Vec<NodeIndex> {
        let mut indegree: Vec<usize> = self
            .graph
            .node_indices()
            .map(|i| {
                self.graph
                    .neighbors_directed(i, Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: BTreeSet<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|i| indegree[i.index()] == 0)
            .collect();
        let mut out = Vec::with_capacity(indegree.len());
        while let Some(i) = ready.pop_first() {
            out.push(i);
            for j in self.graph.neighbors_directed(i, Direction::Outgoing) {
                indegree[j.index()] -= 1;
                if indegree[j.index()] == 0 {
                    ready.insert(j);
                }
            }
        }
        assert_eq!(
            out.len(),
            self.graph.node_count(),
            "the plan has a cycle: a bug in the planner"
        );
        out
    }

    pub fn deps(&self, i: NodeIndex) -> Vec<NodeIndex> {
        let mut d: Vec<NodeIndex> = self
            .graph
            .neighbors_directed(i, Direction::Incoming)
            .collect();
        d.sort();
        d
    }

    /// Counts per kind, in kind order.
    pub fn counts(&self) -> Vec<(NodeKind, usize)> {
        let mut c: HashMap<NodeKind, usize> = HashMap::new();
        for n in self.graph.node_weights() {
            *c.entry(n.kind).or_default() += 1;
        }
        let mut v: Vec<_> = c.into_iter().collect();
        v.sort();
        v
    }
}

/// Builds the plan of every workflow (matrix rows share one report per matrix), each node with
/// its lowered job. A job that cannot be lowered (a bug: the checker let through something
/// the runner does not know) is the error.
pub fn plan(workflows: &[ir::Workflow]) -> Result<Plan, Diagnostic> {
    let mut p = Plan {
        workflows: workflows.len(),
        ..Plan::default()
    };
    let mut matrix_inputs: Vec<(String, Vec<NodeIndex>, Vec<usize>)> = vec![];
    for (wi, wf) in workflows.iter().enumerate() {
        let inputs = plan_workflow(&mut p, wf, workflows.len() > 1)?;
        match &wf.matrix {
            Some(mx) => match matrix_inputs.iter_mut().find(|(n, ..)| n == mx) {
                Some((_, v, rows)) => {
                    v.extend(inputs);
                    rows.push(wi);
                }
                None => matrix_inputs.push((mx.clone(), inputs, vec![wi])),
            },
            None => {
                let def = format!(
                    "report {} | {} | tables [{}]",
                    wf.name,
                    settings_text(&wf.report),
                    tables_text(wf)
                );
                p.add(
                    NodeKind::Report,
                    format!("{}/report", wf.name),
                    "tables, curves and image grids".into(),
                    def,
                    &wf.name,
                    &inputs,
                    || {
                        Ok(Job::Report(job::Report {
                            workflows: vec![wf.clone()],
                            matrix: None,
                            several: workflows.len() > 1,
                        }))
                    },
                )?;
            }
        }
    }
    for (mx, inputs, members) in matrix_inputs {
        let rows = members.len();
        let tables: Vec<String> = members
            .iter()
            .map(|&w| tables_text(&workflows[w]))
            .collect();
        let def = format!("report matrix {mx} | tables [{}]", tables.join("; "));
        p.add(
            NodeKind::Report,
            format!("{mx}/report"),
            format!("one table over the matrix's {rows} rows"),
            def,
            &mx,
            &inputs,
            || {
                Ok(Job::Report(job::Report {
                    workflows: members.iter().map(|&w| workflows[w].clone()).collect(),
                    matrix: Some(mx.clone()),
                    several: workflows.len() > 1,
                }))
            },
        )?;
    }
    Ok(p)
}

/// Adds a workflow's nodes; returns the nodes its report reads.
fn plan_workflow(
    p: &mut Plan,
    wf: &ir::Workflow,
    several: bool,
) -> Result<Vec<NodeIndex>, Diagnostic> {
    let seed = wf
        .setting("seed")
        .map(|v| v.to_string())
        .unwrap_or_default();
    let w = wf.name.as_str();
    let mut report_inputs = vec![];
    let testset = |p: &mut Plan, data: &ir::Data, task: &ir::Task| {
        let def = format!("testset seed={seed} | {} | {}", data.source, task.text());
        p.add(
            NodeKind::TestSet,
            format!("{}/{}", data.name, task.name),
            format!(
                "degrade every image of `{}` with {}",
                data.name,
                task.text()
            ),
            def,
            w,
            &[],
            || {
                let lowered = || -> Result<Job, lower::LowerError> {
                    Ok(Job::TestSet(job::TestSet {
                        seed: lower::seed(wf)?,
                        data: lower::images(wf, &data.name)?,
                        task: lower::task(task, 0)?,
                    }))
                };
                lowered().map_err(|e| e.at(data.span))
            },
        )
    };

    let mut last_stage: HashMap<&str, NodeIndex> = HashMap::new();
    // Models started from weights: one step reads them (the first training stage, or the
    // evaluations of a model never trained, read it in turn).
    let mut starts: HashMap<&str, NodeIndex> = HashMap::new();
    for m in wf
        .models
        .iter()
        .filter(|m| m.backbone.arg("weights").is_some())
    {
        let tasks: Vec<String> = m.known_tasks.iter().map(|t| t.name.clone()).collect();
        let def = format!(
            "pretrained seed={seed} | {} | tasks [{}]",
            m.backbone,
            tasks.join(", ")
        );
        let weights = m
            .backbone
            .arg("weights")
            .map(|v| v.to_string())
            .unwrap_or_default();
        let i = p.add(
            NodeKind::Pretrained,
            format!("{w}/{} weights", m.name),
            format!("`{}` starts from {weights}", m.name),
            def,
            w,
            &[],
            || {
                lower::model(wf, &m.name)
                    .map(Job::Pretrained)
                    .map_err(|e| e.at(m.span))
            },
        )?;
        starts.insert(m.name.as_str(), i);
        last_stage.insert(m.name.as_str(), i);
    }
    let mut stages_of: Vec<(&ir::Train, Vec<NodeIndex>)> = vec![];
    for t in &wf.trains {
        let (Some(model), Some(data)) = (wf.model(&t.model), wf.data(&t.data)) else {
            continue;
        };
        let n = t.stages.len();
        let mut prev: Option<NodeIndex> = starts.get(t.model.as_str()).copied();
        for (k, stage) in t.stages.iter().enumerate() {
            let names: Vec<&str> = stage.tasks.iter().map(|x| x.name.as_str()).collect();
            let detail = if t.is_sequential() {
                let new = names.last().copied().unwrap_or("");
                let replay = &names[..names.len().saturating_sub(1)];
                if replay.is_empty() {
                    format!("{} iterations on {new}", stage.iters)
                } else {
                    format!(
                        "{} iterations: +{new}, replaying {}",
                        stage.iters,
                        replay.join(", ")
                    )
                }
            } else {
                format!(
                    "{} iterations, mixed over {}",
                    stage.iters,
                    names.join(", ")
                )
            };
            let tasks: Vec<String> = stage.tasks.iter().map(|x| x.to_string()).collect();
            let settings: Vec<(String, Value)> = t
                .settings
                .iter()
                .filter(|(n, _)| n != "iters" && n != "tasks" && n != "classifier")
                .cloned()
                .collect();
            let def = format!(
                "train seed={seed} | {} | data {} | {} stage {}/{n} | tasks [{}] | iters {} | {}",
                model.backbone,
                data.source,
                t.strategy.name,
                k + 1,
                tasks.join("; "),
                stage.iters,
                settings_text(&settings)
            );
            let name = if n == 1 {
                format!("{w}/{}", t.model)
            } else {
                format!("{w}/{} stage {}/{n}", t.model, k + 1)
            };
            let deps: Vec<NodeIndex> = prev.into_iter().collect();
            let job = || {
                lower::train(wf, &t.model, k)
                    .map(Job::Train)
                    .map_err(|e| e.at(t.span))
            };
            let i = p.add(NodeKind::Train, name, detail, def, w, &deps, job)?;
            prev = Some(i);
            match stages_of.last_mut() {
                Some((x, v)) if std::ptr::eq(*x, t) => v.push(i),
                _ => stages_of.push((t, vec![i])),
            }
        }
        if let Some(last) = prev {
            last_stage.insert(t.model.as_str(), last);
            report_inputs.push(last);
        }
    }

    let mut classifiers: HashMap<&str, NodeIndex> = HashMap::new();
    for (ei, e) in wf.evals.iter().enumerate() {
        let (Some(&trained), Some(model), Some(data)) = (
            last_stage.get(e.model.as_str()),
            wf.model(&e.model),
            wf.data(&e.data),
        ) else {
            continue;
        };
        let mut deps = vec![trained];
        for task in &e.tasks {
            if data.source.name == "pairs" {
                break; // ready-made pairs are used as they are
            }
            deps.push(testset(p, data, task)?);
        }
        let predicted = e.setting("labels").and_then(Value::as_word) == Some("predicted");
        if model.prompt == PromptKind::Explicit && predicted {
            let c = match classifiers.get(e.model.as_str()) {
                Some(&c) => c,
                None => {
                    let file = model.backbone.arg("classifier").map(|v| v.to_string());
                    let kinds: Vec<String> = wf
                        .model_tasks(&e.model)
                        .iter()
                        .map(|x| x.to_string())
                        .collect();
                    let (spec, tdata, span) = match (&file, wf.train_of(&e.model)) {
                        (Some(f), _) => (format!("file {f}"), String::new(), model.span),
                        (None, Some(t)) => (
                            t.setting("classifier")
                                .map(|v| v.to_string())
                                .unwrap_or_default(),
                            wf.data(&t.data)
                                .map(|d| d.source.to_string())
                                .unwrap_or_default(),
                            t.span,
                        ),
                        // The checker requires a classifier file or known labels (E057).
                        (None, None) => continue,
                    };
                    let def = format!(
                        "classifier seed={seed} | {spec} | data {tdata} | tasks [{}]",
                        kinds.join("; ")
                    );
                    let c = p.add(
                        NodeKind::Classifier,
                        format!("{w}/{} classifier", e.model),
                        format!("task classifier for `{}`: {spec}", e.model),
                        def,
                        w,
                        &[],
                        || {
                            lower::classifier(wf, &e.model)
                                .map(Job::Classifier)
                                .map_err(|d| d.at(span))
                        },
                    )?;
                    classifiers.insert(e.model.as_str(), c);
                    c
                }
            };
            deps.push(c);
        }
        let tasks: Vec<&str> = e.tasks.iter().map(|t| t.name.as_str()).collect();
        let metrics = e
            .setting("metrics")
            .map(|v| v.to_string())
            .unwrap_or_default();
        // The report's table is presentation: not part of what the evaluation computes.
        let computed: Vec<(String, Value)> = e
            .settings
            .iter()
            .filter(|(n, _)| n != "table")
            .cloned()
            .collect();
        let def = format!(
            "eval {} | data {} | tasks [{}] | {}",
            e.name,
            data.source,
            tasks.join(", "),
            settings_text(&computed)
        );
        let i = p.add(
            NodeKind::Eval,
            format!("{w}/{}", e.name),
            format!(
                "`{}` on `{}`: {} task(s), {metrics}",
                e.model,
                e.data,
                tasks.len()
            ),
            def,
            w,
            &deps,
            || lower::eval(wf, ei).map(Job::Eval).map_err(|d| d.at(e.span)),
        )?;
        report_inputs.push(i);
    }

    for (si, s) in wf.sweeps.iter().enumerate() {
        let Some(&trained) = last_stage.get(s.model.as_str()) else {
            continue;
        };
        let mut deps = vec![trained];
        let degrade = s.setting("degrade").and_then(Value::as_task);
        let param = match s.setting("param") {
            Some(Value::Str(p)) => Some(p.clone()),
            _ => None,
        };
        let target = match &s.target {
            ir::SweepTarget::Data(d) => {
                // A parameter sweep degrades the clean images itself, once per value.
                if let (Some(data), Some(task), None) = (wf.data(d), degrade, &param) {
                    deps.push(testset(p, data, task)?);
                }
                format!("`{d}`")
            }
            ir::SweepTarget::File(f) => format!("\"{f}\""),
        };
        let from = s.setting("from").map(|v| v.to_string()).unwrap_or_default();
        let to = s.setting("to").map(|v| v.to_string()).unwrap_or_default();
        let steps = s
            .setting("steps")
            .map(|v| v.to_string())
            .unwrap_or_default();
        let def = format!(
            "sweep {} | {target} | {}",
            s.name,
            settings_text(&s.settings)
        );
        let detail = match (&param, degrade) {
            (Some(param), Some(task)) => format!(
                "restore {target} degraded by `{}` at each {param} in {}",
                task.name,
                s.setting("values")
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            ),
            _ => format!(
                "blend the {from} and {to} prompts of `{}` in {steps} steps on {target}",
                s.model
            ),
        };
        let i = p.add(
            NodeKind::Sweep,
            format!("{w}/{}", s.name),
            detail,
            def,
            w,
            &deps,
            || {
                lower::sweep(wf, si)
                    .map(Job::Sweep)
                    .map_err(|d| d.at(s.span))
            },
        )?;
        report_inputs.push(i);
    }

    // The PSNR after each stage of a sequential training, on a crop of the smallest image of
    // each task's test set (the first planned for its degradation).
    for (t, stages) in &stages_of {
        if stages.len() < 2 {
            continue;
        }
        let Some(last) = t.stages.last() else {
            continue;
        };
        let mut deps = stages.clone();
        for task in &last.tasks {
            let text = task.text();
            let set = p
                .graph
                .node_indices()
                .find(|&n| matches!(&p.graph[n].job, Job::TestSet(x) if x.task.text == text));
            deps.extend(set);
        }
        deps.dedup();
        // Named by the workflow that planned the training (matrix rows share it).
        let owner = match &p.graph[*stages.last().expect("two stages or more")].job {
            Job::Train(j) => j.model.workflow.clone(),
            _ => w.to_string(),
        };
        let label = if several {
            format!("{owner}: {}", t.model)
        } else {
            t.model.clone()
        };
        let i = p.add(
            NodeKind::Curves,
            format!("{w}/{} stage curves", t.model),
            format!(
                "the PSNR of `{}` after each of its {} stages, a crop per task",
                t.model,
                stages.len()
            ),
            format!("curves {label}"),
            w,
            &deps,
            || {
                lower::curves(wf, &t.model, label.clone())
                    .map(Job::Curves)
                    .map_err(|e| e.at(t.span))
            },
        )?;
        report_inputs.push(i);
    }
    Ok(report_inputs)
}

/// `mio plan`'s listing.
pub fn render_text(p: &Plan, title: &str) -> String {
    let order = p.order();
    let pos: HashMap<NodeIndex, usize> =
        order.iter().enumerate().map(|(k, &i)| (i, k + 1)).collect();
    let counts: Vec<String> = p
        .counts()
        .iter()
        .map(|(k, n)| format!("{n} {}", k.as_str()))
        .collect();
    let mut out = format!(
        "{title}: {} node(s) in {} workflow(s) ({})\n\n",
        p.graph.node_count(),
        p.workflows,
        counts.join(", ")
    );
    let width = order
        .iter()
        .map(|&i| p.graph[i].name.len())
        .max()
        .unwrap_or(0)
        .min(48);
    for (k, &i) in order.iter().enumerate() {
        let n = &p.graph[i];
        let deps: Vec<String> = p.deps(i).iter().map(|d| pos[d].to_string()).collect();
        let after = if deps.is_empty() {
            String::new()
        } else {
            format!("  (after {})", deps.join(", "))
        };
        let _ = writeln!(
            out,
            "{:>4}  {:<10} {:<width$}  {}{after}",
            k + 1,
            n.kind.as_str(),
            n.name,
            n.detail
        );
    }
    out
}

fn escape(s: &str, quote: char) -> String {
    s.replace('\\', "\\\\")
        .replace(quote, if quote == '"' { "\\\"" } else { "#quot;" })
}

/// Graphviz.
pub fn render_dot(p: &Plan) -> String {
    let mut out =
        String::from("digraph mio {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n");
    for i in p.order() {
        let n = &p.graph[i];
        let _ = writeln!(
            out,
            "  n{} [label=\"{}\\n{}\"];",
            i.index(),
            n.kind.as_str(),
            escape(&n.name, '"')
        );
    }
    for e in p.graph.edge_indices() {
        let (a, b) = p.graph.edge_endpoints(e).unwrap();
        let _ = writeln!(out, "  n{} -> n{};", a.index(), b.index());
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart.
pub fn render_mermaid(p: &Plan) -> String {
    let mut out = String::from("flowchart LR\n");
    for i in p.order() {
        let n = &p.graph[i];
        let _ = writeln!(
            out,
            "  n{}[\"{}: {}\"]",
            i.index(),
            n.kind.as_str(),
            escape(&n.name, '"')
        );
    }
    for e in p.graph.edge_indices() {
        let (a, b) = p.graph.edge_endpoints(e).unwrap();
        let _ = writeln!(out, "  n{} --> n{}", a.index(), b.index());
    }
    out
}
