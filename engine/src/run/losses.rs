//! A training step's loss log (`losses.jsonl`) read back: the curve, smoothed for charts, and
//! the warning when a loss ended far above where it started.

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// A stage's `losses.jsonl` as (step, loss) in step order; a step logged twice (a stage
/// resumed after an interruption) counts once, with its last value.
pub(crate) fn read_losses(path: &std::path::Path) -> Vec<(u64, f64)> {
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
pub(crate) fn smooth(v: &[(u64, f64)]) -> Vec<(f64, f64)> {
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

/// A warning when a training loss ended far above where it started (a learning rate too high,
/// say): the run goes on, but its numbers deserve a look.
pub(crate) fn suspicious(losses: &[(u64, f64)], lr: f64) -> Option<String> {
    if losses.len() < 4 {
        return None;
    }
    let n = losses.len();
    let head = (n / 20).clamp(1, 50);
    let tail = (n / 10).clamp(1, 100);
    let mean = |v: &[(u64, f64)]| v.iter().map(|p| p.1).sum::<f64>() / v.len() as f64;
    let (start, end) = (mean(&losses[..head]), mean(&losses[n - tail..]));
    if !(end.is_finite() && start.is_finite()) {
        return None;
    }
    // Images are in [0, 1]: a loss above 1 means the outputs left the image range.
    (end > 10.0 * start || end > 1.0).then(|| {
        format!(
            "the loss ended at {end:.3e}, far above where it started ({start:.3e}); the \
             learning rate ({lr:e}) may be too high"
        )
    })
}
