//! The commands of a cluster executor: `mio run` with `executor = slurm(...)` (submit, and
//! with `--wait` follow), `mio status`, `mio cancel`, `mio plan --executor slurm`.

use std::path::Path;

use mio_engine::job::{Executor, Slurm};
use mio_engine::run::slurm::{self, State};
use mio_engine::run::RunError;

use crate::{base_of, emit, on_signal, planned, Failure};

fn fail(e: RunError) -> Failure {
    match e {
        RunError::Interrupted { .. } => {
            eprintln!("mio: {e}");
            Failure::Interrupted
        }
        RunError::Io(..) => Failure::Internal(e.to_string()),
        _ => {
            eprintln!("error: {e}");
            Failure::User
        }
    }
}

/// Submits the steps not finished yet; with `wait`, follows them to the end.
pub fn run(
    wfs: &[mio_engine::ir::Workflow],
    plan: &mio_engine::plan::Plan,
    base: &Path,
    s: &Slurm,
    quiet: bool,
    wait: bool,
) -> Result<(), Failure> {
    let program = std::env::current_exe()
        .map_err(|e| Failure::Internal(format!("cannot find this program for the jobs: {e}")))?;
    let done = slurm::submit(wfs, plan, base, s, &program, |line| {
        if !quiet {
            eprintln!("{line}");
        }
    })
    .map_err(fail)?;
    let fresh = done.submitted.iter().filter(|j| j.fresh).count();
    let mut out = format!(
        "{fresh} job(s) submitted, {} already queued or running, {} step(s) cached\n",
        done.submitted.len() - fresh,
        done.cached.len()
    );
    if !wait {
        if !done.submitted.is_empty() {
            out.push_str("`mio status FILE` follows them; `mio run FILE --wait` waits for them\n");
        }
        return emit(&out);
    }
    eprint!("{out}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    on_signal(stop.clone());
    slurm::wait(wfs, plan, base, &stop, |line| {
        if !quiet {
            eprintln!("{line}");
        }
    })
    .map_err(|e| match e {
        RunError::Job(why) => {
            eprintln!("mio: {why}");
            Failure::Interrupted
        }
        other => fail(other),
    })?;
    let out = mio_engine::run::output_dir(base, wfs);
    let mut text = String::from("done: every step finished\n");
    for wf in wfs {
        let report = out
            .join(wf.matrix.as_deref().unwrap_or(&wf.name))
            .join("report.md");
        if report.is_file() && !text.contains(&report.display().to_string()) {
            text.push_str(&format!("report: {}\n", report.display()));
        }
    }
    emit(&text)
}

/// `mio status FILE`.
pub fn status(file: &Path, set: &[String]) -> Result<(), Failure> {
    let (checked, plan) = planned(file, set)?;
    let states = slurm::status(&checked.workflows, &plan, base_of(file)).map_err(fail)?;
    let width = states.iter().map(|s| s.0.len()).max().unwrap_or(0).min(48);
    let mut out = String::new();
    for (name, state) in &states {
        let what = match state {
            State::Cached => "cached".to_string(),
            State::Queued {
                job,
                state,
                progress,
            } => match progress {
                Some(p) => format!("{} (job {job}): {p}", state.to_lowercase()),
                None => format!("{} (job {job})", state.to_lowercase()),
            },
            State::Failed { job, why } => format!("failed (job {job}): {why}"),
            State::NotSubmitted => "not submitted".to_string(),
        };
        out.push_str(&format!("{name:<width$}  {what}\n"));
    }
    let n = |f: fn(&State) -> bool| states.iter().filter(|s| f(&s.1)).count();
    out.push_str(&format!(
        "{} cached, {} queued or running, {} failed, {} not submitted\n",
        n(|s| matches!(s, State::Cached)),
        n(|s| matches!(s, State::Queued { .. })),
        n(|s| matches!(s, State::Failed { .. })),
        n(|s| matches!(s, State::NotSubmitted)),
    ));
    emit(&out)
}

/// `mio cancel FILE`.
pub fn cancel(file: &Path, set: &[String]) -> Result<(), Failure> {
    let (checked, plan) = planned(file, set)?;
    let cancelled = slurm::cancel(&checked.workflows, &plan, base_of(file), |line| {
        eprintln!("{line}")
    })
    .map_err(fail)?;
    let mut out = String::new();
    for c in &cancelled {
        out.push_str(&format!("{}: job {} cancelled\n", c.node, c.job));
    }
    out.push_str(&format!(
        "{} job(s) cancelled; finished steps and checkpoints are kept\n",
        cancelled.len()
    ));
    let stopping: Vec<&str> = cancelled
        .iter()
        .filter(|c| !c.gone)
        .map(|c| c.job.as_str())
        .collect();
    if !stopping.is_empty() {
        out.push_str(&format!(
            "still stopping: job(s) {}; `mio run` waits for them before submitting their steps again\n",
            stopping.join(", ")
        ));
    }
    emit(&out)
}

/// `mio plan FILE --executor slurm`: every step's sbatch line.
pub fn plan(file: &Path, set: &[String]) -> Result<(), Failure> {
    let (checked, plan) = planned(file, set)?;
    match checked.workflows.first().map(mio_engine::lower::executor) {
        Some(Ok(Executor::Slurm(s))) => emit(&format!(
            "{}: {} step(s) as Slurm jobs ($N: step N's job id)\n\n{}",
            file.display(),
            plan.graph.node_count(),
            slurm::describe(&plan, &s)
        )),
        _ => emit(&mio_engine::plan::render_text(
            &plan,
            &file.display().to_string(),
        )),
    }
}
