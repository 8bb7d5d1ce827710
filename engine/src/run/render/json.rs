//! `results.json`: the tables, the classifiers' accuracy, the sweeps, the stage curves and
//! what the prompts learned, as data.

use serde_json::{json, Value as Json};

use super::doc::Document;

pub fn render(d: &Document) -> Json {
    let tables: Vec<Json> = d
        .tables
        .iter()
        .map(|t| {
            json!({
                "caption": t.caption,
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
    let classifier: Vec<Json> = d
        .accuracy
        .iter()
        .map(|a| json!({"eval": a.eval, "accuracy": a.accuracy, "images": a.images}))
        .collect();
    let sweeps: Vec<Json> = d.sweeps.iter().map(|s| json!(s.results)).collect();
    let stages: Vec<Json> = d
        .stages
        .iter()
        .map(|s| json!({"model": s.model, "tasks": s.tasks, "psnr": s.rows}))
        .collect();
    // The index is a number, or `null` where undefined; an infinite one (each task always got
    // a prompt of its own) is the string "inf", JSON having no infinity.
    let prompts: Vec<Json> = d
        .prompts
        .iter()
        .map(|p| {
            let chi = match p.chi {
                Some(x) if x.is_infinite() => json!("inf"),
                other => json!(other),
            };
            json!({
                "eval": p.eval,
                "model": p.label,
                "images": p.images,
                "tasks": p.tasks,
                "chi": chi,
                "figure": p.figure.file,
                "confusion": p.confusion.as_ref().map(|c| json!({
                    "truth": c.truth,
                    "guessed": c.guessed,
                    "counts": c.counts,
                })),
            })
        })
        .collect();
    json!({"title": d.title, "tables": tables, "classifier": classifier, "sweeps": sweeps, "stages": stages, "prompts": prompts})
}
