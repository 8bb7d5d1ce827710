//! What a prompted model's prompts learn, for the report (the paper's Figure 4): the latent
//! prompt each test image got, how well those separate by task (the Calinski-Harabasz index
//! over the true tasks), a 2-D projection coloured by task, and for explicit prompts chosen
//! by the task classifier its confusion matrix.

use std::path::Path;

use mio_stdlib::analysis::{calinski_harabasz, project_2d};

use crate::run::artifact::EvalResults;
use crate::run::error::NodeError;
use crate::run::render::doc::{Confusion, Figure, PromptAnalysis};

/// The analysis of one evaluation, `None` when its model has no prompts (no image carries
/// one). `file` names the projection's SVG in the report folder; `label` is the row's name
/// in the report's tables.
pub(super) fn analyse(
    results: &EvalResults,
    label: &str,
    file: String,
    dir: &Path,
) -> Result<Option<PromptAnalysis>, NodeError> {
    let mut points: Vec<Vec<f64>> = vec![];
    let mut labels: Vec<usize> = vec![];
    for (k, t) in results.tasks.iter().enumerate() {
        for im in &t.images {
            if let Some(z) = &im.prompt {
                points.push(z.iter().map(|&v| v as f64).collect());
                labels.push(k);
            }
        }
    }
    if points.is_empty() || points.iter().any(|p| p.len() != points[0].len()) {
        return Ok(None);
    }
    let chi = calinski_harabasz(&points, &labels);
    let xy = project_2d(&points);
    let groups: Vec<(String, Vec<(f64, f64)>)> = results
        .tasks
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let pts = xy
                .iter()
                .zip(&labels)
                .filter(|(_, l)| **l == k)
                .map(|(p, _)| *p)
                .collect();
            (t.task.clone(), pts)
        })
        .filter(|(_, p): &(String, Vec<(f64, f64)>)| !p.is_empty())
        .collect();
    let svg = crate::run::charts::scatter_svg(
        &format!("Prompts of {label} on {}", results.eval),
        ("first principal component", "second principal component"),
        &groups,
    )
    .map_err(|e| NodeError::write(dir.join(&file), e))?;
    let path = dir.join(&file);
    super::common::write_atomic(&path, svg.as_bytes())?;
    Ok(Some(PromptAnalysis {
        eval: results.eval.clone(),
        label: label.to_string(),
        images: points.len(),
        tasks: groups.len(),
        chi,
        figure: Figure { file, svg },
        confusion: confusion(results),
    }))
}

/// Rows the true tasks, columns the tasks the classifier guessed (the true tasks it ever
/// guessed first, in their order, then any other), when it guessed at all.
fn confusion(results: &EvalResults) -> Option<Confusion> {
    let truth: Vec<String> = results.tasks.iter().map(|t| t.task.clone()).collect();
    let guesses: Vec<(usize, String)> = results
        .tasks
        .iter()
        .enumerate()
        .flat_map(|(k, t)| {
            t.images.iter().filter_map(move |im| {
                let g = im.predicted.as_ref()?;
                Some((k, g.clone().unwrap_or_else(|| "?".into())))
            })
        })
        .collect();
    if guesses.is_empty() {
        return None;
    }
    let mut guessed: Vec<String> = truth
        .iter()
        .filter(|t| guesses.iter().any(|(_, g)| g == *t))
        .cloned()
        .collect();
    for (_, g) in &guesses {
        if !guessed.contains(g) {
            guessed.push(g.clone());
        }
    }
    let mut counts = vec![vec![0usize; guessed.len()]; truth.len()];
    for (k, g) in &guesses {
        if let Some(c) = guessed.iter().position(|x| x == g) {
            counts[*k][c] += 1;
        }
    }
    Some(Confusion {
        truth,
        guessed,
        counts,
    })
}
