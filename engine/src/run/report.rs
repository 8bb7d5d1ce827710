//! The report of a workflow (or a matrix): the paper's tables (tasks as columns, the average,
//! the change against a baseline row, the degraded input as the "do nothing" row) for every
//! metric and test set, loss curves, sweep strips and an input | outputs | ground truth grid
//! per task. Written as report.md, results.csv, results.json and a self-contained report.html.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use mio_stdlib::image::Image;
use petgraph::graph::NodeIndex;
use serde_json::{json, Value as Json};

use super::nodes::{hstack, write_atomic, write_json};
use super::store::path_from_json;
use super::svg::line_chart;
use super::Runner;
use crate::ir::Value;
use crate::plan::{NodeKind, Work};

/// One row of a table: a label and a value per task.
#[derive(Clone, Debug)]
struct Row {
    label: String,
    model: Option<String>,
    values: Vec<Option<f64>>,
}

impl Row {
    fn avg(&self) -> Option<f64> {
        let v: Vec<f64> = self.values.iter().flatten().copied().collect();
        (v.len() == self.values.len() && !v.is_empty())
            .then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}

#[derive(Clone, Debug)]
struct Table {
    /// "in distribution: sr, blur, ..." style caption.
    caption: String,
    metric: String,
    tasks: Vec<String>,
    rows: Vec<Row>,
    baseline: Option<usize>,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = v.filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn task_means(result: &Json, side: &str, metric: &str) -> Vec<Option<f64>> {
    result["tasks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    mean(
                        t["images"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|i| i[side][metric].as_f64()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn task_names(result: &Json) -> Vec<String> {
    result["tasks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["task"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn read_json(p: &Path) -> Option<Json> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

fn fmt(v: Option<f64>, metric: &str) -> String {
    match v {
        Some(x) if metric.starts_with("ssim") => format!("{x:.4}"),
        Some(x) => format!("{x:.2}"),
        None => "-".into(),
    }
}

fn fmt_delta(v: Option<f64>, metric: &str) -> String {
    match v {
        Some(x) if metric.starts_with("ssim") => format!("{x:+.4}"),
        Some(x) => format!("{x:+.2}"),
        None => "".into(),
    }
}

/// Every eval result the report reads, in plan order, with the workflow (matrix row) it
/// belongs to.
fn eval_results(r: &Runner, i: NodeIndex) -> Vec<(String, NodeIndex, Json)> {
    let mut out = vec![];
    for d in r.plan.deps(i) {
        if let Work::Eval { workflow, .. } = &r.plan.graph[d].work {
            if let Some(mut j) = read_json(&r.dir(d).join("results.json")) {
                let wf = &r.wfs[*workflow];
                // An explicit-prompt model given the true task, beside its classifier's
                // guesses, needs telling apart in the tables.
                let explicit = j["model"]
                    .as_str()
                    .and_then(|m| wf.model(m))
                    .is_some_and(|m| m.prompt == crate::ir::PromptKind::Explicit);
                if explicit && j["labels"] == "known" {
                    j["row_note"] = json!(" (true task)");
                }
                out.push((wf.name.clone(), d, j));
            }
        }
    }
    out
}

fn build_tables(
    evals: &[(String, NodeIndex, Json)],
    baseline: Option<&str>,
    matrix: bool,
) -> Vec<Table> {
    // Group by the list of tasks, keeping first-seen order.
    let mut groups: Vec<(Vec<String>, Vec<usize>)> = vec![];
    for (k, (_, _, j)) in evals.iter().enumerate() {
        let tasks = task_names(j);
        match groups.iter_mut().find(|(t, _)| *t == tasks) {
            Some((_, v)) => v.push(k),
            None => groups.push((tasks, vec![k])),
        }
    }
    let mut tables = vec![];
    for (tasks, members) in groups {
        let metrics: Vec<String> = evals[members[0]].2["metrics"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        for metric in metrics {
            let first = &evals[members[0]].2;
            let mut rows = vec![Row {
                label: "input (degraded)".into(),
                model: None,
                values: task_means(first, "input", &metric),
            }];
            for &m in &members {
                let (wf, _, j) = &evals[m];
                let model = j["model"].as_str().unwrap_or("?").to_string();
                let note = j["row_note"].as_str().unwrap_or("");
                let label = if matrix {
                    format!("{wf}: {model}{note}")
                } else {
                    format!("{model}{note}")
                };
                rows.push(Row {
                    label,
                    model: Some(model),
                    values: task_means(j, "output", &metric),
                });
            }
            let baseline =
                baseline.and_then(|b| rows.iter().position(|r| r.model.as_deref() == Some(b)));
            tables.push(Table {
                caption: tasks.join(", "),
                metric,
                tasks: tasks.clone(),
                rows,
                baseline,
            });
        }
    }
    tables
}

fn markdown_table(t: &Table) -> String {
    let mut s = String::new();
    let base = t.baseline.map(|b| t.rows[b].label.clone());
    let _ = write!(s, "| {} |", t.metric.to_uppercase());
    for task in &t.tasks {
        let _ = write!(s, " {task} |");
    }
    s.push_str(" Avg |");
    if let Some(b) = &base {
        let _ = write!(s, " vs {b} |");
    }
    s.push('\n');
    s.push_str("|---|");
    for _ in 0..t.tasks.len() + 1 + base.is_some() as usize {
        s.push_str("---:|");
    }
    s.push('\n');
    let base_avg = t.baseline.and_then(|b| t.rows[b].avg());
    for row in &t.rows {
        let _ = write!(s, "| {} |", row.label);
        for v in &row.values {
            let _ = write!(s, " {} |", fmt(*v, &t.metric));
        }
        let _ = write!(s, " **{}** |", fmt(row.avg(), &t.metric));
        if base.is_some() {
            let d = match (row.avg(), base_avg) {
                (Some(a), Some(b)) if row.model.is_some() => Some(a - b),
                _ => None,
            };
            let _ = write!(s, " {} |", fmt_delta(d, &t.metric));
        }
        s.push('\n');
    }
    s
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_table(t: &Table) -> String {
    let mut s = String::from("<table><tr>");
    let _ = write!(s, "<th>{}</th>", html_escape(&t.metric.to_uppercase()));
    for task in &t.tasks {
        let _ = write!(s, "<th>{}</th>", html_escape(task));
    }
    s.push_str("<th>Avg</th>");
    let base_avg = t.baseline.and_then(|b| t.rows[b].avg());
    if let Some(b) = t.baseline {
        let _ = write!(s, "<th>vs {}</th>", html_escape(&t.rows[b].label));
    }
    s.push_str("</tr>");
    for row in &t.rows {
        let _ = write!(s, "<tr><td>{}</td>", html_escape(&row.label));
        for v in &row.values {
            let _ = write!(s, "<td>{}</td>", fmt(*v, &t.metric));
        }
        let _ = write!(s, "<td><b>{}</b></td>", fmt(row.avg(), &t.metric));
        if t.baseline.is_some() {
            let d = match (row.avg(), base_avg) {
                (Some(a), Some(b)) if row.model.is_some() => Some(a - b),
                _ => None,
            };
            let _ = write!(s, "<td>{}</td>", fmt_delta(d, &t.metric));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>\n");
    s
}

/// Standard base64 (for images embedded in the HTML).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// The training stages that end at `last`, from the first.
fn stage_chain(r: &Runner, last: NodeIndex) -> Vec<NodeIndex> {
    let mut chain = vec![last];
    while let Some(p) = r
        .plan
        .deps(*chain.last().expect("not empty"))
        .into_iter()
        .find(|p| r.plan.graph[*p].kind == NodeKind::Train)
    {
        chain.push(p);
    }
    chain.reverse();
    chain
}

/// Warnings about the training behind a report: each stage whose loss ended far above where
/// it started (see `nodes::suspicious`).
fn training_warnings(r: &Runner, i: NodeIndex) -> Vec<String> {
    let mut out = vec![];
    for d in r.plan.deps(i) {
        if r.plan.graph[d].kind != NodeKind::Train {
            continue;
        }
        for s in stage_chain(r, d) {
            let log = r.dir(s).join("losses.jsonl");
            let lr = std::fs::read_to_string(&log)
                .ok()
                .and_then(|t| {
                    let first = t.lines().next()?.to_string();
                    serde_json::from_str::<Json>(&first).ok()?["lr"].as_f64()
                })
                .unwrap_or(f64::NAN);
            if let Some(w) = super::nodes::suspicious(&read_losses(&log), lr) {
                out.push(format!("{}: {w}", r.plan.graph[s].name));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A stage's `losses.jsonl` as (step, loss) in step order; a step logged twice (a stage
/// resumed after an interruption) counts once, with its last value.
pub(super) fn read_losses(path: &std::path::Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut points: BTreeMap<u64, f64> = BTreeMap::new();
    for line in text.lines() {
        if let Ok(j) = serde_json::from_str::<Json>(line) {
            let step = j["step"].as_u64().unwrap_or(0);
            points.insert(step, j["loss"].as_f64().unwrap_or(f64::NAN));
        }
    }
    points.into_iter().collect()
}

/// Means over windows, so curves of hundreds of noisy steps stay readable (about 60 points).
pub(super) fn smooth(v: &[(u64, f64)]) -> Vec<(f64, f64)> {
    let win = (v.len() / 60).max(1);
    v.chunks(win)
        .map(|c| {
            (
                c[c.len() / 2].0 as f64,
                c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64,
            )
        })
        .collect()
}

/// The losses of every training stage behind the report, one series per model (stages
/// concatenated, steps counted across them).
fn loss_series(r: &Runner, i: NodeIndex) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out = vec![];
    for d in r.plan.deps(i) {
        if r.plan.graph[d].kind != NodeKind::Train {
            continue;
        }
        let Work::Train {
            model, workflow, ..
        } = &r.plan.graph[d].work
        else {
            continue;
        };
        let chain = stage_chain(r, d);
        let mut points: Vec<(u64, f64)> = vec![];
        let mut offset = 0;
        for s in chain {
            let stage = read_losses(&r.dir(s).join("losses.jsonl"));
            let last = stage.last().map(|p| p.0 + 1).unwrap_or(0);
            points.extend(stage.into_iter().map(|(step, v)| (offset + step, v)));
            offset += last;
        }
        let smooth = smooth(&points);
        let label = if r.wfs.len() > 1 {
            format!("{}: {model}", r.wfs[*workflow].name)
        } else {
            model.clone()
        };
        out.push((label, smooth));
    }
    out
}

/// For each sequentially trained model behind the report: the PSNR of the model after each
/// stage on every one of its tasks (a 160-pixel centre crop of the smallest image of the
/// task's test set, so the curves cost seconds), as (model, tasks, rows of one value per task for each stage).
#[allow(clippy::type_complexity)]
fn stage_curves(r: &Runner, i: NodeIndex) -> Vec<(String, Vec<String>, Vec<Vec<Option<f64>>>)> {
    let mut out = vec![];
    for d in r.plan.deps(i) {
        let Work::Train {
            workflow, model, ..
        } = &r.plan.graph[d].work
        else {
            continue;
        };
        let chain = stage_chain(r, d);
        if chain.len() < 2 {
            continue;
        }
        let wf = &r.wfs[*workflow];
        let Ok(spec) = super::nodes::network_spec(wf, model) else {
            continue;
        };
        let trained: Vec<crate::ir::Task> = wf
            .train_of(model)
            .and_then(|t| t.stages.last())
            .map(|s| s.tasks.clone())
            .unwrap_or_default();
        // The smallest test image of each task, degraded and clean.
        let mut probes: Vec<Option<(Image, Image)>> = vec![];
        for task in &trained {
            let set = r.plan.graph.node_indices().find(|&n| {
                matches!(&r.plan.graph[n].work, Work::TestSet { task: t, .. } if t.degradation == task.degradation)
                    && r.dir(n).is_dir()
            });
            let probe = set.and_then(|n| {
                let pairs = read_json(&r.dir(n).join("pairs.json"))?;
                pairs
                    .as_array()?
                    .iter()
                    .filter_map(|p| {
                        let clean = mio_stdlib::image::load(&path_from_json(&p["clean"])?)
                            .ok()?
                            .image;
                        let lq = mio_stdlib::image::load(
                            &r.dir(n).join(path_from_json(&p["degraded"])?),
                        )
                        .ok()?
                        .image;
                        Some((lq, clean))
                    })
                    .min_by_key(|(l, _)| l.width * l.height)
                    // A centre crop: 49 restorations of whole images would cost a minute.
                    .map(|(l, c)| (centre(&l, 160), centre(&c, 160)))
            });
            probes.push(probe);
        }
        let mut rows = vec![];
        for &stage in &chain {
            let mut net =
                match mio_stdlib::models::network::Network::new(spec.clone(), 0, &r.device) {
                    Ok(n) => n,
                    Err(_) => break,
                };
            let dir = r.dir(stage);
            let ema = dir.join("model.safetensors");
            let w = if ema.exists() {
                ema
            } else {
                dir.join("weights.safetensors")
            };
            if net.load(&w).is_err() {
                break;
            }
            let Ok(net) = net.frozen() else { break };
            let explicit = matches!(
                net.spec.prompt,
                mio_stdlib::models::PromptMode::Explicit { .. }
            );
            let row: Vec<Option<f64>> = probes
                .iter()
                .enumerate()
                .map(|(k, probe)| {
                    let (lq, clean) = probe.as_ref()?;
                    let z = if explicit {
                        Some(net.task_latent(k).ok()?)
                    } else {
                        None
                    };
                    let out = crate::restore::restore(&net, lq, z.as_ref(), 0).ok()?;
                    mio_stdlib::metrics::psnr(&out, clean, 4, false).ok()
                })
                .collect();
            rows.push(row);
        }
        let label = if r.wfs.len() > 1 {
            format!("{}: {model}", wf.name)
        } else {
            model.clone()
        };
        out.push((
            label,
            trained.iter().map(|t| t.name.clone()).collect(),
            rows,
        ));
    }
    out
}

/// A square crop of side `s` from the centre.
fn centre(img: &Image, s: usize) -> Image {
    let (w, h) = (s.min(img.width), s.min(img.height));
    img.crop((img.width - w) / 2, (img.height - h) / 2, w, h)
}

pub(crate) fn write(r: &Runner, i: NodeIndex, dir: &Path) -> Result<(), String> {
    let Work::Report { workflows, matrix } = r.plan.graph[i].work.clone() else {
        return Err("not a report".into());
    };
    let wf = &r.wfs[workflows[0]];
    let title = match wf.report.iter().find(|(n, _)| n == "title") {
        Some((_, Value::Str(s))) => s.clone(),
        _ => matrix.clone().unwrap_or_else(|| wf.name.clone()),
    };
    let baseline = match wf.report.iter().find(|(n, _)| n == "baseline") {
        Some((_, Value::Model(m))) => Some(m.clone()),
        _ => None,
    };
    let evals = eval_results(r, i);
    let tables = build_tables(&evals, baseline.as_deref(), matrix.is_some());
    let mut md = format!("# {title}\n\n");
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}</style></head><body><h1>{}</h1>\n",
        html_escape(&title),
        html_escape(&title)
    );
    let mut csv = String::from("table,row,model,task,metric,value\n");
    let warnings = training_warnings(r, i);
    if !warnings.is_empty() {
        md.push_str("**Warnings**\n\n");
        html.push_str("<p><b>Warnings</b></p><ul>");
        for w in &warnings {
            let _ = writeln!(md, "- {w}");
            let _ = write!(html, "<li>{}</li>", html_escape(w));
        }
        md.push('\n');
        html.push_str("</ul>\n");
    }
    let _ = writeln!(
        md,
        "Mean over the test images of each task; `input (degraded)` is the degraded image itself \
         (doing nothing). Avg is the mean over the tasks.\n"
    );
    for (k, t) in tables.iter().enumerate() {
        let _ = writeln!(
            md,
            "## {} on {}\n\n{}",
            t.metric.to_uppercase(),
            t.caption,
            markdown_table(t)
        );
        let _ = write!(
            html,
            "<h2>{} on {}</h2>{}",
            html_escape(&t.metric.to_uppercase()),
            html_escape(&t.caption),
            html_table(t)
        );
        for row in &t.rows {
            for (task, v) in t.tasks.iter().zip(&row.values) {
                if let Some(v) = v {
                    let _ = writeln!(
                        csv,
                        "{k},\"{}\",{},{task},{},{v}",
                        row.label,
                        row.model.as_deref().unwrap_or(""),
                        t.metric
                    );
                }
            }
            if let Some(a) = row.avg() {
                let _ = writeln!(
                    csv,
                    "{k},\"{}\",{},Avg,{},{a}",
                    row.label,
                    row.model.as_deref().unwrap_or(""),
                    t.metric
                );
            }
        }
    }
    // The classifier's accuracy where explicit prompts were predicted.
    let mut accuracy = vec![];
    for (_, _, j) in &evals {
        if j["labels"] != "predicted" {
            continue;
        }
        let flags: Vec<bool> = j["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["images"].as_array().into_iter().flatten())
            .filter_map(|im| im["correct"].as_bool())
            .collect();
        if !flags.is_empty() {
            let acc = flags.iter().filter(|&&b| b).count() as f64 / flags.len() as f64;
            accuracy.push(json!({"eval": j["eval"], "accuracy": acc, "images": flags.len()}));
            let line = format!(
                "Task classifier for `{}` on `{}`: {:.0}% of {} test images given the right prompt.",
                j["model"].as_str().unwrap_or(""),
                j["eval"].as_str().unwrap_or(""),
                acc * 100.0,
                flags.len()
            );
            let _ = writeln!(md, "{line}\n");
            let _ = write!(html, "<p>{}</p>", html_escape(&line));
        }
    }
    // Loss curves.
    let series = loss_series(r, i);
    if !series.is_empty() {
        let svg = line_chart(
            "Training loss",
            "iteration",
            "loss (log scale)",
            &series,
            true,
        );
        write_atomic(&dir.join("loss.svg"), svg.as_bytes())?;
        super::png::line_chart_png(
            &dir.join("loss.png"),
            "Training loss",
            ("iteration", "loss (log scale)"),
            &series,
            true,
        )
        .map_err(|e| format!("{}: {e}", dir.join("loss.png").display()))?;
        let _ = writeln!(md, "## Training loss\n\n![training loss](loss.png)\n");
        let _ = write!(html, "<h2>Training loss</h2>{svg}");
    }
    // PSNR after each stage of the sequential runs.
    let mut stages_json = vec![];
    for (model, tasks, rows) in stage_curves(r, i) {
        let series: Vec<(String, Vec<(f64, f64)>)> = tasks
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let pts = rows
                    .iter()
                    .enumerate()
                    .filter_map(|(s, row)| row[k].map(|v| ((s + 1) as f64, v)))
                    .collect();
                (t.clone(), pts)
            })
            .collect();
        let svg = line_chart(
            &format!("PSNR after each stage: {model}"),
            "stage",
            "PSNR (dB)",
            &series,
            false,
        );
        let file = format!("stages_{}.svg", model.replace([':', ' ', '/'], "_"));
        write_atomic(&dir.join(&file), svg.as_bytes())?;
        let _ = writeln!(
            md,
            "## PSNR after each stage: `{model}`\n\nOn a 160x160 centre crop of the smallest test \
             image of each task (a task's column starts at the stage that adds it; earlier stages show how the model \
             handles it before training on it).\n\n![stages]({file})\n"
        );
        let _ = write!(md, "| stage |");
        for t in &tasks {
            let _ = write!(md, " {t} |");
        }
        md.push_str("\n|---|");
        md.push_str(&"---:|".repeat(tasks.len()));
        md.push('\n');
        for (s, row) in rows.iter().enumerate() {
            let _ = write!(md, "| {} |", s + 1);
            for v in row {
                let _ = write!(md, " {} |", fmt(*v, "psnr"));
            }
            md.push('\n');
        }
        md.push('\n');
        let _ = write!(
            html,
            "<h2>PSNR after each stage: {}</h2>{svg}",
            html_escape(&model)
        );
        stages_json.push(json!({"model": model, "tasks": tasks, "psnr": rows}));
    }
    // Sweeps.
    let mut sweeps = vec![];
    for d in r.plan.deps(i) {
        if r.plan.graph[d].kind != NodeKind::Sweep {
            continue;
        }
        let sd = r.dir(d);
        let Some(j) = read_json(&sd.join("sweep.json")) else {
            continue;
        };
        if j["kind"] == "param" {
            let pts: Vec<&Json> = j["points"].as_array().into_iter().flatten().collect();
            let series = |key: &str| -> Vec<(f64, f64)> {
                pts.iter()
                    .filter_map(|p| Some((p["value"].as_f64()?, p[key].as_f64()?)))
                    .collect()
            };
            let (sweep, task, param) = (
                j["sweep"].as_str().unwrap_or(""),
                j["task"].as_str().unwrap_or(""),
                j["param"].as_str().unwrap_or(""),
            );
            let svg = line_chart(
                &format!("{task}: PSNR against {param}"),
                param,
                "PSNR (dB)",
                &[
                    ("input (degraded)".into(), series("input_psnr")),
                    (
                        j["model"].as_str().unwrap_or("model").into(),
                        series("output_psnr"),
                    ),
                ],
                false,
            );
            let file = format!("sweep_{sweep}.svg");
            write_atomic(&dir.join(&file), svg.as_bytes())?;
            let _ = writeln!(
                md,
                "## `{sweep}`: {task} at each {param}\n\nMean PSNR over {} image(s).\n\n![{sweep}]({file})\n\n| {param} | input | {} |\n|---:|---:|---:|",
                j["images"],
                j["model"].as_str().unwrap_or("model")
            );
            for p in &pts {
                let _ = writeln!(
                    md,
                    "| {} | {:.2} | {:.2} |",
                    p["value"],
                    p["input_psnr"].as_f64().unwrap_or(f64::NAN),
                    p["output_psnr"].as_f64().unwrap_or(f64::NAN)
                );
            }
            md.push('\n');
            let _ = write!(
                html,
                "<h2>{}: {} at each {}</h2>{svg}",
                html_escape(sweep),
                html_escape(task),
                html_escape(param)
            );
            sweeps.push(j);
            continue;
        }
        let _ = writeln!(
            md,
            "## Prompt interpolation `{}`: {} (left, a = 1) to {} (right, a = 0)\n",
            j["sweep"].as_str().unwrap_or(""),
            j["from"].as_str().unwrap_or(""),
            j["to"].as_str().unwrap_or("")
        );
        let _ = write!(
            html,
            "<h2>Prompt interpolation {}: {} to {}</h2>",
            html_escape(j["sweep"].as_str().unwrap_or("")),
            html_escape(j["from"].as_str().unwrap_or("")),
            html_escape(j["to"].as_str().unwrap_or(""))
        );
        for im in j["images"].as_array().into_iter().flatten() {
            let strip = im["strip"].as_str().unwrap_or("");
            let name = format!("sweep_{}_{strip}", j["sweep"].as_str().unwrap_or(""));
            std::fs::copy(sd.join(strip), dir.join(&name)).map_err(|e| e.to_string())?;
            let _ = writeln!(md, "The input, then a = 1 ... 0:\n\n![{strip}]({name})\n");
            let _ = writeln!(
                md,
                "| a | mean intensity | PSNR vs clean |\n|---:|---:|---:|"
            );
            for s in im["steps"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    md,
                    "| {:.2} | {:.3} | {} |",
                    s["a"].as_f64().unwrap_or(0.0),
                    s["mean_intensity"].as_f64().unwrap_or(0.0),
                    s["psnr"]
                        .as_f64()
                        .map(|p| format!("{p:.2}"))
                        .unwrap_or("-".into())
                );
            }
            md.push('\n');
            let bytes = std::fs::read(sd.join(strip)).map_err(|e| e.to_string())?;
            let _ = write!(
                html,
                "<p><img src=\"data:image/png;base64,{}\"></p>",
                base64(&bytes)
            );
        }
        sweeps.push(j);
    }
    // An input | outputs | ground truth grid per task (centre crops of the first image).
    let mut grids = vec![];
    let mut seen: Vec<Vec<String>> = vec![];
    for (_, _, first) in &evals {
        let tasks = task_names(first);
        if seen.contains(&tasks) {
            continue;
        }
        seen.push(tasks.clone());
        let members: Vec<(NodeIndex, &Json)> = evals
            .iter()
            .filter(|(_, _, j)| task_names(j) == tasks)
            .map(|(_, n, j)| (*n, j))
            .collect();
        let mut section = String::new();
        for (ti, task) in tasks.iter().enumerate() {
            let im = &first["tasks"][ti]["images"][0];
            let (Some(clean), Some(lq)) = (
                path_from_json(&im["clean"]),
                path_from_json(&im["degraded"]),
            ) else {
                continue;
            };
            let load = |p: &Path| {
                mio_stdlib::image::load(p)
                    .ok()
                    .map(|l| centre(&l.image, 160))
            };
            let mut row = vec![];
            let mut labels = vec!["input".to_string()];
            if let Some(x) = load(&lq) {
                row.push(x);
            }
            for (node, j) in &members {
                let Some(rel) = j["tasks"][ti]["images"][0]["restored"].as_str() else {
                    continue;
                };
                if let Some(x) = load(&r.dir(*node).join(rel)) {
                    row.push(x);
                    labels.push(j["model"].as_str().unwrap_or("?").to_string());
                }
            }
            if let Some(x) = load(&clean) {
                row.push(x);
                labels.push("ground truth".into());
            }
            if row.len() < 2 {
                continue;
            }
            let name = format!("grid_{}.png", task);
            let grid = hstack(&row);
            grid.save_png(&dir.join(&name)).map_err(|e| e.to_string())?;
            let caption = labels.join(" | ");
            let _ = writeln!(section, "**{task}** ({caption})\n\n![{task}]({name})\n");
            let bytes = std::fs::read(dir.join(&name)).map_err(|e| e.to_string())?;
            let _ = write!(
                html,
                "<p><b>{}</b> ({})<br><img src=\"data:image/png;base64,{}\"></p>",
                html_escape(task),
                html_escape(&caption),
                base64(&bytes)
            );
            grids.push(name);
        }
        if !section.is_empty() {
            let _ = writeln!(md, "## Images: {}\n\n{section}", tasks.join(", "));
        }
    }
    html.push_str("</body></html>\n");
    let formats: Vec<String> = match wf.report.iter().find(|(n, _)| n == "formats") {
        Some((_, Value::List(v))) => v
            .iter()
            .filter_map(|x| x.as_word().map(String::from))
            .collect(),
        _ => vec!["md".into(), "html".into(), "csv".into(), "json".into()],
    };
    let want = |f: &str| formats.iter().any(|x| x == f);
    if want("md") {
        write_atomic(&dir.join("report.md"), md.as_bytes())?;
    }
    if want("html") {
        write_atomic(&dir.join("report.html"), html.as_bytes())?;
    }
    if want("csv") {
        write_atomic(&dir.join("results.csv"), csv.as_bytes())?;
    }
    if want("json") {
        let tables_json: Vec<Json> = tables
            .iter()
            .map(|t| {
                json!({
                    "tasks": t.tasks,
                    "metric": t.metric,
                    "baseline": t.baseline.map(|b| t.rows[b].label.clone()),
                    "rows": t.rows.iter().map(|r| json!({
                        "label": r.label,
                        "model": r.model,
                        "values": t.tasks.iter().zip(&r.values).map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                        "avg": r.avg(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        write_json(
            &dir.join("results.json"),
            &json!({"title": title, "tables": tables_json, "classifier": accuracy, "sweeps": sweeps, "stages": stages_json}),
        )?;
    }
    Ok(())
}

/// Copies a finished report node's files into the workflow's folder (each file atomically).
pub(crate) fn publish(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for e in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        if e.file_name() == super::store::DONE_FILE {
            continue;
        }
        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            let bytes = std::fs::read(e.path()).map_err(|e| e.to_string())?;
            write_atomic(&to.join(e.file_name()), &bytes)?;
        }
    }
    Ok(())
}

const OUTDATED_START: &str = "<!-- mio: outdated -->";
const OUTDATED_END: &str = "<!-- /mio: outdated -->";

/// After a run that failed or was stopped, says at the top of the workflow's `report.md` and
/// `report.html` (when an earlier run wrote them) that they do not show the file as it is now,
/// and why. The earlier numbers stay; the next successful run replaces both files.
pub(crate) fn mark_outdated(folder: &Path, why: &str) {
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let strip = |text: &str| -> String {
        match (text.find(OUTDATED_START), text.find(OUTDATED_END)) {
            (Some(a), Some(b)) if b > a => {
                let rest = &text[b + OUTDATED_END.len()..];
                format!("{}{}", &text[..a], rest.strip_prefix('\n').unwrap_or(rest))
            }
            _ => text.to_string(),
        }
    };
    let md_path = folder.join("report.md");
    if let Ok(md) = std::fs::read_to_string(&md_path) {
        let banner = format!(
            "{OUTDATED_START}\n> **Outdated.** The latest `mio run` (unix time {when}) did not \
             finish: {}. This report is from an earlier run and may not match the file as it \
             is now; run again to update it.\n{OUTDATED_END}\n",
            why.replace('\n', " ")
        );
        let _ = write_atomic(&md_path, format!("{banner}{}", strip(&md)).as_bytes());
    }
    let html_path = folder.join("report.html");
    if let Ok(html) = std::fs::read_to_string(&html_path) {
        let html = strip(&html);
        let banner = format!(
            "{OUTDATED_START}<p style=\"background:#fff3cd;padding:8px\"><b>Outdated.</b> The \
             latest <code>mio run</code> did not finish: {}. This report is from an earlier run \
             and may not match the file as it is now.</p>{OUTDATED_END}\n",
            html_escape(why)
        );
        let at = html.find("<body>").map(|i| i + "<body>".len()).unwrap_or(0);
        let _ = write_atomic(
            &html_path,
            format!("{}{banner}{}", &html[..at], &html[at..]).as_bytes(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outdated_report_says_so_once_and_keeps_its_numbers() {
        let dir = std::env::temp_dir().join(format!("mio-outdated-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("report.md"), "# tiny\n| a | 21.5 |\n").unwrap();
        std::fs::write(
            dir.join("report.html"),
            "<html><body><h1>tiny</h1></body></html>",
        )
        .unwrap();
        mark_outdated(&dir, "tiny/plain: the loss became NaN");
        mark_outdated(&dir, "tiny/ep: <stopped>");
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert_eq!(md.matches("**Outdated.**").count(), 1, "{md}");
        assert!(
            md.contains("tiny/ep: <stopped>") && !md.contains("NaN"),
            "{md}"
        );
        assert!(md.ends_with("# tiny\n| a | 21.5 |\n"), "{md}");
        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        assert_eq!(html.matches("Outdated.").count(), 1, "{html}");
        assert!(html.contains("tiny/ep: &lt;stopped&gt;") && html.contains("<h1>tiny</h1>"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }
}
