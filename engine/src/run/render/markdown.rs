//! `report.md`: the tables, curves (as linked images), sweeps and image grids.

use std::fmt::Write as _;

use serde_json::json;

use super::doc::{self, Document, Table};
use crate::run::artifact::SweepResults;

pub fn table(t: &Table) -> String {
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
    for row in &t.rows {
        let _ = write!(s, "| {} |", row.label);
        for v in &row.values {
            let _ = write!(s, " {} |", doc::value(*v, &t.metric));
        }
        let _ = write!(s, " **{}** |", doc::value(row.avg(), &t.metric));
        if base.is_some() {
            let _ = write!(s, " {} |", doc::delta(t.delta(row), &t.metric));
        }
        s.push('\n');
    }
    s
}

/// A classifier's confusion matrix: true tasks down, guesses across.
fn confusion(p: &doc::PromptAnalysis, c: &doc::Confusion) -> String {
    let mut s = format!(
        "Task classifier of {} on {}: true task (rows) against its guess (columns).\n\n| true \\ guessed |",
        p.label, p.eval
    );
    for g in &c.guessed {
        let _ = write!(s, " {g} |");
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(c.guessed.len()));
    s.push('\n');
    for (t, row) in c.truth.iter().zip(&c.counts) {
        let _ = write!(s, "| {t} |");
        for n in row {
            let _ = write!(s, " {n} |");
        }
        s.push('\n');
    }
    s
}

pub fn render(d: &Document) -> String {
    let mut md = format!("# {}\n\n", d.title);
    if !d.warnings.is_empty() {
        md.push_str("**Warnings**\n\n");
        for w in &d.warnings {
            let _ = writeln!(md, "- {w}");
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "Mean over the test images of each task; `input (degraded)` is the degraded image itself \
         (doing nothing). Avg is the mean over the tasks.\n"
    );
    for t in &d.tables {
        let _ = writeln!(
            md,
            "## {} on {}\n\n{}",
            t.metric.to_uppercase(),
            t.caption,
            table(t)
        );
    }
    for a in &d.accuracy {
        let _ = writeln!(md, "{}\n", doc::accuracy_line(a));
    }
    if !d.prompts.is_empty() {
        let _ = writeln!(
            md,
            "## What the prompts learn\n\n{}\n\n| model | eval | images | tasks | CHI |\n|---|---|---:|---:|---:|",
            doc::PROMPTS_INTRO
        );
        for p in &d.prompts {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                p.label,
                p.eval,
                p.images,
                p.tasks,
                doc::chi(p.chi)
            );
        }
        md.push('\n');
        for p in &d.prompts {
            let _ = writeln!(
                md,
                "![prompts of {} on {}]({})\n",
                p.label, p.eval, p.figure.file
            );
            if let Some(c) = &p.confusion {
                let _ = writeln!(md, "{}", confusion(p, c));
            }
        }
    }
    if d.loss.is_some() {
        let _ = writeln!(md, "## Training loss\n\n![training loss](loss.png)\n");
    }
    for s in &d.stages {
        let _ = writeln!(
            md,
            "## PSNR after each stage: `{}`\n\nOn a 160x160 centre crop of the smallest test \
             image of each task (a task's column starts at the stage that adds it; earlier stages show how the model \
             handles it before training on it).\n\n![stages]({})\n",
            s.model, s.figure.file
        );
        let _ = write!(md, "| stage |");
        for t in &s.tasks {
            let _ = write!(md, " {t} |");
        }
        md.push_str("\n|---|");
        md.push_str(&"---:|".repeat(s.tasks.len()));
        md.push('\n');
        for (k, row) in s.rows.iter().enumerate() {
            let _ = write!(md, "| {} |", k + 1);
            for v in row {
                let _ = write!(md, " {} |", doc::value(*v, "psnr"));
            }
            md.push('\n');
        }
        md.push('\n');
    }
    for s in &d.sweeps {
        match &s.results {
            SweepResults::Param {
                sweep,
                model,
                task,
                param,
                images,
                points,
                ..
            } => {
                let file = s.figure.as_ref().map(|f| f.file.as_str()).unwrap_or("");
                let _ = writeln!(
                    md,
                    "## `{sweep}`: {task} at each {param}\n\nMean PSNR over {images} image(s).\n\n![{sweep}]({file})\n\n| {param} | input | {model} |\n|---:|---:|---:|",
                );
                for p in points {
                    let _ = writeln!(
                        md,
                        "| {} | {:.2} | {:.2} |",
                        json!(p.value),
                        p.input_psnr,
                        p.output_psnr
                    );
                }
                md.push('\n');
            }
            SweepResults::Prompts {
                sweep,
                from,
                to,
                images,
                ..
            } => {
                let _ = writeln!(
                    md,
                    "## Prompt interpolation `{sweep}`: {from} (left, a = 1) to {to} (right, a = 0)\n"
                );
                for (im, picture) in images.iter().zip(&s.strips) {
                    let _ = writeln!(
                        md,
                        "The input, then a = 1 ... 0:\n\n![{}]({})\n",
                        im.strip, picture.file
                    );
                    let _ = writeln!(
                        md,
                        "| a | mean intensity | PSNR vs clean |\n|---:|---:|---:|"
                    );
                    for st in &im.steps {
                        let _ = writeln!(
                            md,
                            "| {:.2} | {:.3} | {} |",
                            st.a,
                            st.mean_intensity,
                            st.psnr.map(|p| format!("{p:.2}")).unwrap_or("-".into())
                        );
                    }
                    md.push('\n');
                }
            }
        }
    }
    for g in &d.grids {
        if g.grids.is_empty() {
            continue;
        }
        let mut section = String::new();
        for grid in &g.grids {
            let _ = writeln!(
                section,
                "**{}** ({})\n\n![{}]({})\n",
                grid.task, grid.caption, grid.task, grid.picture.file
            );
        }
        let _ = writeln!(md, "## Images: {}\n\n{section}", g.tasks.join(", "));
    }
    md
}
