//! The report node: reads the artifacts of the evaluations, trainings, stage curves and sweeps
//! it depends on into a [`Document`] (the paper's tables with tasks as columns, the average,
//! the change against a baseline and the degraded input as the "do nothing" row; loss curves;
//! PSNR after each stage; sweeps; image grids), writes the charts and images beside it, and has
//! `run/render/` write it out as report.md, report.html, results.csv and results.json. It runs
//! no network: it only reads what other steps wrote.

use std::path::Path;

use mio_stdlib::image::Image;
use mio_stdlib::models::PromptMode;
use serde_json::Value as Json;

use super::common::{failed, hstack, write_atomic, write_json};
use crate::ir::Value;
use crate::job::{Input, Job, JobFile, Report};
use crate::run::artifact::{self, EvalResults, StageCurves, SweepResults};
use crate::run::error::{NodeError, RunError};
use crate::run::losses::{read_losses, smooth, suspicious};
use crate::run::render::doc::{
    Accuracy, Document, Figure, Grid, GridGroup, Picture, Row, StageCurve, Sweep, Table,
};
use crate::run::render::{csv, html, json, markdown};

pub(super) fn run(jf: &JobFile, report: &Report, dir: &Path) -> Result<(), RunError> {
    let f = failed(&jf.name);
    let doc = gather(jf, report, dir).map_err(&f)?;
    let wf = &report.workflows[0];
    let formats: Vec<String> = match wf.report.iter().find(|(n, _)| n == "formats") {
        Some((_, Value::List(v))) => v
            .iter()
            .filter_map(|x| x.as_word().map(String::from))
            .collect(),
        _ => vec!["md".into(), "html".into(), "csv".into(), "json".into()],
    };
    let want = |f: &str| formats.iter().any(|x| x == f);
    if want("md") {
        write_atomic(&dir.join("report.md"), markdown::render(&doc).as_bytes()).map_err(&f)?;
    }
    if want("html") {
        write_atomic(&dir.join("report.html"), html::render(&doc).as_bytes()).map_err(&f)?;
    }
    if want("csv") {
        write_atomic(&dir.join("results.csv"), csv::render(&doc).as_bytes()).map_err(&f)?;
    }
    if want("json") {
        write_json(&dir.join("results.json"), &json::render(&doc)).map_err(&f)?;
    }
    Ok(())
}

/// Writes an SVG chart into the report folder.
fn figure(dir: &Path, file: String, svg: String) -> Result<Figure, NodeError> {
    write_atomic(&dir.join(&file), svg.as_bytes())?;
    Ok(Figure { file, svg })
}

/// Reads the report's inputs into a document, writing its charts and images into `dir`.
fn gather(jf: &JobFile, report: &Report, dir: &Path) -> Result<Document, NodeError> {
    let matrix = report.matrix.clone();
    let wf = &report.workflows[0];
    let title = match wf.report.iter().find(|(n, _)| n == "title") {
        Some((_, Value::Str(s))) => s.clone(),
        _ => matrix.clone().unwrap_or_else(|| wf.name.clone()),
    };
    let baseline = match wf.report.iter().find(|(n, _)| n == "baseline") {
        Some((_, Value::Model(m))) => Some(m.clone()),
        _ => None,
    };
    let evals = eval_results(jf)?;
    let tables = build_tables(&evals, baseline.as_deref(), matrix.is_some());
    // The classifier's accuracy where explicit prompts were predicted.
    let mut accuracy = vec![];
    for EvalRow { results: j, .. } in &evals {
        if j.labels != "predicted" {
            continue;
        }
        let flags: Vec<bool> = j
            .tasks
            .iter()
            .flat_map(|t| &t.images)
            .filter_map(|im| im.correct)
            .collect();
        if !flags.is_empty() {
            accuracy.push(Accuracy {
                eval: j.eval.clone(),
                model: j.model.clone(),
                accuracy: flags.iter().filter(|&&b| b).count() as f64 / flags.len() as f64,
                images: flags.len(),
            });
        }
    }
    // Loss curves.
    let series = loss_series(jf, report);
    let loss = if series.is_empty() {
        None
    } else {
        let svg = crate::run::charts::line_chart_svg(
            "Training loss",
            ("iteration", "loss (log scale)"),
            &series,
            true,
        )
        .map_err(|e| NodeError::write(dir.join("loss.svg"), e))?;
        crate::run::charts::line_chart_png(
            &dir.join("loss.png"),
            "Training loss",
            ("iteration", "loss (log scale)"),
            &series,
            true,
        )
        .map_err(|e| NodeError::write(dir.join("loss.png"), e))?;
        Some(figure(dir, "loss.svg".into(), svg)?)
    };
    // PSNR after each stage of the sequential runs.
    let mut stages = vec![];
    let mut curves = vec![];
    for input in jf.direct() {
        if matches!(input.job, Job::Curves(_)) {
            let path = jf.dir_of(input).join("curves.json");
            let c: StageCurves = artifact::read(&path).map_err(|e| NodeError::read(&path, e))?;
            curves.push((c.model, c.tasks, c.psnr));
        }
    }
    for (model, tasks, rows) in curves {
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
        let svg = crate::run::charts::line_chart_svg(
            &format!("PSNR after each stage: {model}"),
            ("stage", "PSNR (dB)"),
            &series,
            false,
        )
        .map_err(|e| NodeError::write(dir.join("stages.svg"), e))?;
        let file = format!("stages_{}.svg", label_file(&model));
        stages.push(StageCurve {
            figure: figure(dir, file, svg)?,
            model,
            tasks,
            rows,
        });
    }
    // Sweeps.
    let mut sweeps = vec![];
    for input in jf.direct() {
        if !matches!(input.job, Job::Sweep(_)) {
            continue;
        }
        let sd = jf.dir_of(input);
        let path = sd.join("sweep.json");
        let results: SweepResults = artifact::read(&path).map_err(|e| NodeError::read(&path, e))?;
        let mut sweep = Sweep {
            results,
            figure: None,
            strips: vec![],
        };
        match &sweep.results {
            SweepResults::Param {
                sweep: name,
                model,
                task,
                param,
                points,
                ..
            } => {
                let series = |output: bool| -> Vec<(f64, f64)> {
                    points
                        .iter()
                        .map(|p| {
                            let y = if output { p.output_psnr } else { p.input_psnr };
                            (p.value, y)
                        })
                        .filter(|p| p.1.is_finite())
                        .collect()
                };
                let svg = crate::run::charts::line_chart_svg(
                    &format!("{task}: PSNR against {param}"),
                    (param, "PSNR (dB)"),
                    &[
                        ("input (degraded)".into(), series(false)),
                        (model.clone(), series(true)),
                    ],
                    false,
                )
                .map_err(|e| NodeError::write(dir.join("sweep.svg"), e))?;
                sweep.figure = Some(figure(dir, format!("sweep_{name}.svg"), svg)?);
            }
            SweepResults::Prompts {
                sweep: name,
                images,
                ..
            } => {
                for im in images {
                    let file = format!("sweep_{name}_{}", im.strip);
                    let from = sd.join(&im.strip);
                    let png = std::fs::read(&from).map_err(|e| NodeError::read(&from, e))?;
                    write_atomic(&dir.join(&file), &png)?;
                    sweep.strips.push(Picture { file, png });
                }
            }
        }
        sweeps.push(sweep);
    }
    // An input | outputs | ground truth grid per task (centre crops of the first image).
    let mut grids = vec![];
    let mut grid_files = std::collections::HashSet::new();
    let mut seen: Vec<Vec<String>> = vec![];
    for EvalRow { results: first, .. } in &evals {
        let tasks = task_names(first);
        if seen.contains(&tasks) {
            continue;
        }
        seen.push(tasks.clone());
        let members: Vec<&EvalRow> = evals
            .iter()
            .filter(|e| task_names(&e.results) == tasks)
            .collect();
        let mut group = GridGroup {
            tasks: tasks.clone(),
            grids: vec![],
        };
        let grid_files = &mut grid_files;
        for (ti, task) in tasks.iter().enumerate() {
            let Some(im) = first.tasks[ti].images.first() else {
                continue;
            };
            let (clean, lq) = (im.clean.clone(), jf.store.join(&im.degraded));
            let load = |p: &Path| {
                mio_stdlib::image::load(p)
                    .ok()
                    .map(|l| centre(&l.image, 160))
            };
            let mut row = vec![];
            // Each label only with its image, so a caption never names one that is missing.
            let mut labels = vec![];
            if let Some(x) = load(&lq) {
                row.push(x);
                labels.push("input".to_string());
            }
            for e in &members {
                let Some(rel) = e.results.tasks[ti]
                    .images
                    .first()
                    .and_then(|im| im.restored.as_ref())
                else {
                    continue;
                };
                if let Some(x) = load(&jf.dir_of(e.input).join(rel)) {
                    row.push(x);
                    labels.push(e.results.model.clone());
                }
            }
            if let Some(x) = load(&clean) {
                row.push(x);
                labels.push("ground truth".into());
            }
            if row.len() < 2 {
                continue;
            }
            // A task in two groups of evaluations gets a grid in each, under two names.
            let mut file = format!("grid_{task}.png");
            let mut n = 1;
            while !grid_files.insert(file.clone()) {
                n += 1;
                file = format!("grid_{task}_{n}.png");
            }
            let path = dir.join(&file);
            hstack(&row).save_png(&path)?;
            let png = std::fs::read(&path).map_err(|e| NodeError::read(&path, e))?;
            group.grids.push(Grid {
                task: task.clone(),
                caption: labels.join(" | "),
                picture: Picture { file, png },
            });
        }
        grids.push(group);
    }
    let mut prompts = vec![];
    for EvalRow {
        workflow,
        results,
        note,
        ..
    } in &evals
    {
        let label = if matrix.is_some() {
            format!("{workflow}: {}{note}", results.model)
        } else {
            format!("{}{note}", results.model)
        };
        let file = format!(
            "prompts_{}.svg",
            label_file(&format!("{workflow}_{}", results.eval))
        );
        prompts.extend(super::analysis::analyse(results, &label, file, dir)?);
    }
    Ok(Document {
        title,
        warnings: training_warnings(jf),
        tables,
        accuracy,
        loss,
        stages,
        sweeps,
        grids,
        prompts,
    })
}

/// A name made safe for a file name.
fn label_file(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = v.filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn task_means(result: &EvalResults, output: bool, metric: &str) -> Vec<Option<f64>> {
    result
        .tasks
        .iter()
        .map(|t| {
            mean(t.images.iter().filter_map(|i| {
                let side = if output { &i.output } else { &i.input };
                side.get(metric).copied()
            }))
        })
        .collect()
}

fn task_names(result: &EvalResults) -> Vec<String> {
    result.tasks.iter().map(|t| t.task.clone()).collect()
}

/// An evaluation behind the report: the workflow (matrix row) it belongs to, its node and
/// its results.
struct EvalRow<'a> {
    workflow: String,
    input: &'a Input,
    results: EvalResults,
    /// An explicit-prompt model given the true task, beside its classifier's guesses, needs
    /// telling apart in the tables.
    note: &'static str,
    /// The named table it goes into (`table = "..."`), else the one of its task list.
    table: Option<String>,
}

/// Every eval result the report reads, in plan order.
fn eval_results(jf: &JobFile) -> Result<Vec<EvalRow<'_>>, NodeError> {
    let mut out = vec![];
    for input in jf.direct() {
        if let Job::Eval(e) = &input.job {
            let path = jf.dir_of(input).join("results.json");
            let results: EvalResults =
                artifact::read(&path).map_err(|e| NodeError::read(&path, e))?;
            let explicit = matches!(e.model.network.prompt, PromptMode::Explicit { .. });
            let note = if explicit && results.labels == "known" {
                " (true task)"
            } else {
                ""
            };
            out.push(EvalRow {
                workflow: e.workflow.clone(),
                input,
                results,
                note,
                table: e.table.clone(),
            });
        }
    }
    Ok(out)
}

/// One table per task list, and one per `table` name (its evaluations' tasks side by side,
/// in first-seen order; a model evaluated on several of its columns is one row).
/// What puts evaluations in one table: a `table` name, or (`Err`) their list of tasks.
type TableKey = Result<String, Vec<String>>;

fn build_tables(evals: &[EvalRow], baseline: Option<&str>, matrix: bool) -> Vec<Table> {
    // Groups in first-seen order: a named table, or the evaluations of one task list.
    let mut groups: Vec<(TableKey, Vec<usize>)> = vec![];
    for (k, e) in evals.iter().enumerate() {
        let key = e.table.clone().ok_or_else(|| task_names(&e.results));
        match groups.iter_mut().find(|(g, _)| *g == key) {
            Some((_, v)) => v.push(k),
            None => groups.push((key, vec![k])),
        }
    }
    let mut tables = vec![];
    for (key, members) in groups {
        let mut tasks: Vec<String> = vec![];
        for &m in &members {
            for t in task_names(&evals[m].results) {
                if !tasks.contains(&t) {
                    tasks.push(t);
                }
            }
        }
        let mut metrics: Vec<String> = vec![];
        for &m in &members {
            for metric in &evals[m].results.metrics {
                if !metrics.contains(metric) {
                    metrics.push(metric.clone());
                }
            }
        }
        // Each column's values from an evaluation's means, by task name.
        let place = |values: &mut [Option<f64>], result: &EvalResults, means: Vec<Option<f64>>| {
            for (t, v) in task_names(result).iter().zip(means) {
                if let Some(i) = tasks.iter().position(|x| x == t) {
                    if values[i].is_none() {
                        values[i] = v;
                    }
                }
            }
        };
        for metric in metrics {
            let mut input = vec![None; tasks.len()];
            let mut rows: Vec<Row> = vec![];
            for &m in &members {
                let EvalRow {
                    workflow: wf,
                    results: j,
                    note,
                    ..
                } = &evals[m];
                place(&mut input, j, task_means(j, false, &metric));
                let model = j.model.clone();
                let label = if matrix {
                    format!("{wf}: {model}{note}")
                } else {
                    format!("{model}{note}")
                };
                // In a named table a model's evaluations fill one row; otherwise each
                // evaluation is a row of its own (the same model on two data sets).
                let same = rows.iter().position(|r| r.label == label);
                let at = match same.filter(|_| key.is_ok()) {
                    Some(at) => at,
                    None => {
                        rows.push(Row {
                            label,
                            model: Some(model),
                            values: vec![None; tasks.len()],
                        });
                        rows.len() - 1
                    }
                };
                place(&mut rows[at].values, j, task_means(j, true, &metric));
            }
            rows.insert(
                0,
                Row {
                    label: "input (degraded)".into(),
                    model: None,
                    values: input,
                },
            );
            let baseline =
                baseline.and_then(|b| rows.iter().position(|r| r.model.as_deref() == Some(b)));
            tables.push(Table {
                caption: match &key {
                    Ok(name) => name.clone(),
                    Err(_) => tasks.join(", "),
                },
                metric,
                tasks: tasks.clone(),
                rows,
                baseline,
            });
        }
    }
    tables
}

/// The training stages that end at `last`, from the first.
fn stage_chain<'a>(jf: &'a JobFile, last: &'a Input) -> Vec<&'a Input> {
    let mut chain = vec![last];
    while let Some(p) = chain
        .last()
        .expect("not empty")
        .reads
        .iter()
        .filter_map(|f| jf.input(f))
        .find(|p| matches!(p.job, Job::Train(_)))
    {
        chain.push(p);
    }
    chain.reverse();
    chain
}

/// The last training stage of each model behind the report.
fn trainings(jf: &JobFile) -> impl Iterator<Item = (&Input, &crate::job::Train)> {
    jf.direct().filter_map(|i| match &i.job {
        Job::Train(t) => Some((i, t)),
        _ => None,
    })
}

/// Warnings about the training behind a report: each stage whose loss ended far above where
/// it started (see `nodes::suspicious`).
fn training_warnings(jf: &JobFile) -> Vec<String> {
    let mut out = vec![];
    for (last, _) in trainings(jf) {
        for s in stage_chain(jf, last) {
            let log = jf.dir_of(s).join("losses.jsonl");
            let lr = std::fs::read_to_string(&log)
                .ok()
                .and_then(|t| {
                    let first = t.lines().next()?.to_string();
                    serde_json::from_str::<Json>(&first).ok()?["lr"].as_f64()
                })
                .unwrap_or(f64::NAN);
            if let Some(w) = suspicious(&read_losses(&log), lr) {
                out.push(format!("{}: {w}", s.name));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A model's label in curves: `workflow: model` when the run covers several workflows.
fn model_label(report: &Report, t: &crate::job::Train) -> String {
    if report.several {
        format!("{}: {}", t.model.workflow, t.model.name)
    } else {
        t.model.name.clone()
    }
}

/// The losses of every training stage behind the report, one series per model (stages
/// concatenated, steps counted across them).
fn loss_series(jf: &JobFile, report: &Report) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out = vec![];
    for (last, t) in trainings(jf) {
        let mut points: Vec<(u64, f64)> = vec![];
        let mut offset = 0;
        for s in stage_chain(jf, last) {
            let stage = read_losses(&jf.dir_of(s).join("losses.jsonl"));
            let end = stage.last().map(|p| p.0 + 1).unwrap_or(0);
            points.extend(stage.into_iter().map(|(step, v)| (offset + step, v)));
            offset += end;
        }
        out.push((model_label(report, t), smooth(&points)));
    }
    out
}

/// A square crop of side `s` from the centre.
fn centre(img: &Image, s: usize) -> Image {
    let (w, h) = (s.min(img.width), s.min(img.height));
    img.crop((img.width - w) / 2, (img.height - h) / 2, w, h)
}
