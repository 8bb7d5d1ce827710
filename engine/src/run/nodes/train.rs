//! One training stage: build the network (from the previous stage's weights after the first),
//! refuse a batch that would not fit in memory, train from the stage's checkpoint if there is
//! one, and write the weights, the EMA's, `network.json`, `losses.jsonl` and `loss.png`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use mio_stdlib::kernels::precision;
use mio_stdlib::models::network::Network;
use mio_stdlib::trainer::{run_stage, StageError};

use super::common::{compute, fail, failed, input_dir, write_atomic, write_json, Ctx};
use crate::job::{Job, JobFile, Train};
use crate::run::artifact::{NetworkInfo, NetworkTask};
use crate::run::error::{NodeError, RunError};
use crate::run::losses::{read_losses, smooth, suspicious};

pub(super) fn run(ctx: &Ctx, jf: &JobFile, j: &Train, dir: &Path) -> Result<(), RunError> {
    let name = &jf.name;
    let cfg = &j.config;
    let mut net =
        Network::new(j.model.network.clone(), j.model.seed, &ctx.device).map_err(compute(name))?;
    if let Some(start) = input_dir(jf, |w| matches!(w, Job::Pretrained(_))) {
        super::common::start_from(&mut net, &j.model.tasks, &start).map_err(|e| fail(name, e))?;
    }
    if cfg.stage > 0 {
        let prev = input_dir(jf, |w| matches!(w, Job::Train(_)))
            .ok_or_else(|| fail(name, NodeError::Missing("the previous stage".into())))?;
        let weights = prev.join("weights.safetensors");
        net.load(&weights)
            .map_err(|e| fail(name, NodeError::read(&weights, e)))?;
    }
    let set = ctx.train_set(&jf.base, &j.data).map_err(failed(name))?;
    // Refuse a batch whose step would not fit before it is killed mid-step.
    let dtype = precision::resolve(cfg.precision, &ctx.device).dtype();
    crate::run::memory::check(&net, cfg.batch, j.data.patch.max(1), dtype)
        .map_err(|e| fail(name, NodeError::experiment(e)))?;
    if dtype == DType::BF16 && ctx.device.is_cpu() {
        ctx.progress().note(&format!(
            "note: {name}: precision = bf16 on the CPU rounds as a GPU would but computes in \
             fp32 between the roundings, 1.5-2.5x slower than fp32; it is for trying a \
             configuration before a GPU run"
        ));
    }
    let ckpt = mio_stdlib::trainer::checkpoint_path(dir, cfg.stage);
    let done = resumable_steps(ctx, name, &ckpt);
    let log_path = dir.join("losses.jsonl");
    let mut log = open_log(&log_path, done).map_err(failed(name))?;
    let started = Instant::now();
    let mut first: Option<u64> = None;
    let mut board = crate::run::tensorboard::Board::open(jf, &j.model.workflow, &j.model.name);
    let offset = j.first_step as i64;
    // In the dtype of the stage's precision (bf16: mixed precision, the variables and Adam's
    // moments stay f32).
    let forward = |lq: &Tensor, ids: &Tensor| net.forward_in(dtype, lq, ids);
    let outcome = run_stage(
        &net.varmap,
        &forward,
        &set,
        &j.tasks,
        cfg,
        dir,
        None,
        Some(&ctx.stop),
        |step, value, lr| {
            let f = *first.get_or_insert(step);
            let rate = (step + 1 - f) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            ctx.progress().step(step, cfg.iters, value, lr, rate);
            let _ = writeln!(log, "{{\"step\": {step}, \"loss\": {value}, \"lr\": {lr}}}");
            board.scalar("train/loss", offset + step as i64 + 1, value as f64);
            board.scalar("train/lr", offset + step as i64 + 1, lr);
        },
    );
    let outcome = match outcome {
        Ok(o) => o,
        Err(e @ StageError::Diverged { .. }) => {
            return Err(fail(name, NodeError::Training(e.to_string())))
        }
        Err(e) => return Err(fail(name, NodeError::compute(e))),
    };
    if !outcome.completed {
        return Err(RunError::Interrupted { node: name.clone() });
    }
    // The stage's loss curve beside its log, for a look without the report.
    let losses = read_losses(&log_path);
    if let Some(w) = suspicious(&losses, cfg.lr) {
        ctx.progress().note(&format!("warning: {name}: {w}"));
    }
    crate::run::charts::line_chart_png(
        &dir.join("loss.png"),
        &format!("{name}: training loss"),
        ("iteration", "loss (log scale)"),
        &[(j.model.name.clone(), smooth(&losses))],
        true,
    )
    .map_err(|e| fail(name, NodeError::write(dir.join("loss.png"), e)))?;
    let weights = dir.join("weights.safetensors");
    net.save(&weights)
        .map_err(|e| fail(name, NodeError::write(&weights, e)))?;
    let info = NetworkInfo {
        format: crate::job::FORMAT,
        backbone: j.model.backbone.clone(),
        tasks: j
            .model
            .tasks
            .iter()
            .map(|t| NetworkTask {
                name: t.name.clone(),
                degradation: t.degradation.key(),
            })
            .collect(),
    };
    write_json(&dir.join("network.json"), &info).map_err(failed(name))?;
    if cfg.ema > 0.0 {
        // The model evaluated is the EMA of the weights, as the reference evaluates.
        let t = candle_core::safetensors::load(&ckpt, &Device::Cpu)
            .map_err(|e| fail(name, NodeError::read(&ckpt, e)))?;
        let ema: std::collections::HashMap<String, Tensor> = t
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("ema.").map(|n| (n.to_string(), v.clone())))
            .collect();
        let mut m =
            Network::new(net.spec.clone(), j.model.seed, &ctx.device).map_err(compute(name))?;
        m.set_weights(&ema, "the EMA weights")
            .map_err(compute(name))?;
        let out = dir.join("model.safetensors");
        m.save(&out)
            .map_err(|e| fail(name, NodeError::write(&out, e)))?;
    }
    let _ = std::fs::remove_file(&ckpt);
    Ok(())
}

/// The steps a node's checkpoint in its working folder has done (0 without one). A checkpoint
/// that cannot be read (damaged by a full disk, say) is moved out of the folder, beside it,
/// with a warning, and the work starts over rather than failing on every rerun.
pub(super) fn resumable_steps(ctx: &Ctx, node: &str, ckpt: &Path) -> u64 {
    if !ckpt.exists() {
        return 0;
    }
    match mio_stdlib::trainer::checkpoint_steps(ckpt) {
        Ok(n) => n,
        Err(e) => {
            let folder = ckpt.parent().unwrap_or(Path::new("."));
            let mut aside = folder.as_os_str().to_os_string();
            aside.push(format!(
                ".{}.damaged",
                ckpt.file_name().unwrap_or_default().to_string_lossy()
            ));
            let aside = PathBuf::from(aside);
            let moved = std::fs::rename(ckpt, &aside).is_ok();
            ctx.progress().note(&format!(
                "warning: {node}: the checkpoint {} cannot be read ({e}); {}starting this step over",
                ckpt.display(),
                if moved {
                    format!("moved to {}; ", aside.display())
                } else {
                    String::new()
                }
            ));
            if !moved {
                let _ = std::fs::remove_file(ckpt);
            }
            0
        }
    }
}

/// Opens a node's loss log for appending, first cut to the steps its checkpoint has done, so a
/// resumed node logs each step once (a kill loses the steps after the checkpoint, which run
/// again) and a line torn by a full disk is dropped.
pub(super) fn open_log(path: &Path, done: u64) -> Result<std::fs::File, NodeError> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut kept = String::new();
    let mut next = 0u64;
    for line in text.lines() {
        let step = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|j| j["step"].as_u64());
        if let Some(s) = step {
            if s == next && s < done {
                kept.push_str(line);
                kept.push('\n');
                next += 1;
            }
        }
    }
    if kept != text {
        write_atomic(path, kept.as_bytes())?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| NodeError::write(path, e))
}
