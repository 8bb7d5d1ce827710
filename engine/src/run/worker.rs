//! One node in a process of its own: `mio worker JOB_FILE` reads a [`JobFile`] (written by
//! `mio run --isolate`, or by a cluster executor), checks that the node's inputs are finished,
//! runs the node exactly as `mio run` would in its own process and publishes its folder. The
//! outcome goes to `RESULT` beside the job file (`NAME.result.json`), so whoever started the
//! worker knows what happened without parsing its messages.
//!
//! Two workers of the same node (a job submitted twice), or a worker and a `mio run` running
//! nodes in its own threads, do not share its working folder: each node is locked (`flock` on
//! `<output>/locks/KIND-KEY.lock`) while it runs, and the second waits for the first and then
//! finds the node finished.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{NodeError, RunError};
use super::nodes::{self, Ctx};
use super::progress::Progress;
use super::store;
use crate::job::{JobFile, FORMAT, MIO as VERSION};

/// What a worker did, as it writes it beside its job file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Ran and published in this many seconds.
    Done { seconds: f64 },
    /// Already finished: nothing to do.
    Cached,
    /// Stopped by a signal; its checkpoint is kept.
    Interrupted,
    /// Failed: why.
    Failed { error: NodeError },
}

/// Where the outcome of a job file goes.
pub fn result_path(job_file: &Path) -> PathBuf {
    let mut name = job_file.file_stem().unwrap_or_default().to_os_string();
    name.push(".result.json");
    job_file.with_file_name(name)
}

/// Writes a job file (atomically).
pub fn write_job(path: &Path, jf: &JobFile) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    nodes::write_json(path, jf).map_err(|e| e.to_string())
}

/// Reads a job file; one of another layout or another mio is refused with what to do.
pub fn read_job(path: &Path) -> Result<JobFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    #[derive(Deserialize)]
    struct Head {
        format: u32,
        mio: String,
    }
    let head: Head = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not a job file ({e}); job files are written by `mio run --isolate`",
            path.display()
        )
    })?;
    if head.format != FORMAT || head.mio != VERSION {
        return Err(format!(
            "{}: written by mio {} (job layout {}); this is mio {VERSION} (layout {FORMAT}): run \
             it with the mio that planned it, or plan again",
            path.display(),
            head.mio,
            head.format
        ));
    }
    serde_json::from_str(&text).map_err(|e| format!("{}: a damaged job file ({e})", path.display()))
}

/// Runs the node of a job file in this process. `stop` is set by a signal handler.
pub fn run_file(path: &Path, quiet: bool, stop: Arc<AtomicBool>) -> Result<Outcome, RunError> {
    let jf = read_job(path).map_err(RunError::Job)?;
    let outcome = run_job(&jf, quiet, stop);
    let record = match &outcome {
        Ok(o) => o.clone(),
        Err(RunError::Interrupted { .. }) => Outcome::Interrupted,
        Err(RunError::Node { error, .. }) => Outcome::Failed {
            error: error.clone(),
        },
        Err(e) => Outcome::Failed {
            error: NodeError::Experiment(e.to_string()),
        },
    };
    nodes::write_json(&result_path(path), &record)
        .map_err(|e| RunError::Io(result_path(path), e.to_string()))?;
    outcome
}

fn run_job(jf: &JobFile, quiet: bool, stop: Arc<AtomicBool>) -> Result<Outcome, RunError> {
    // Every input must be finished (and intact) before this node reads it.
    for input in &jf.inputs {
        let dir = jf.dir_of(input);
        if store::check(&dir) != store::Check::Finished {
            return Err(RunError::node(
                &jf.name,
                NodeError::NotReady {
                    input: input.name.clone(),
                    folder: dir,
                },
            ));
        }
    }
    std::fs::create_dir_all(&jf.store)
        .map_err(|e| RunError::Io(jf.store.clone(), e.to_string()))?;
    let Some(_lock) = claim(jf, &stop)? else {
        return Ok(Outcome::Cached);
    };
    let device = nodes::device_named(&jf.device)
        .map_err(|e| RunError::node("device", NodeError::experiment(e)))?;
    let ctx = Ctx::new(device, stop, Progress::new(quiet, 1));
    nodes::execute(&ctx, jf).map(|seconds| Outcome::Done { seconds })
}

/// Takes node `jf` to run it here: its lock (waiting for another process that holds it), or
/// `None` when the node is finished, perhaps by that process meanwhile. Finished outputs found
/// damaged are moved aside, so the node runs again. Every process that runs a node (`mio
/// worker`, a thread of `mio run`) claims it first.
pub(crate) fn claim(jf: &JobFile, stop: &AtomicBool) -> Result<Option<std::fs::File>, RunError> {
    let lock = lock_node(jf, stop)?;
    match store::check(&jf.dir()) {
        store::Check::Finished => return Ok(None),
        store::Check::Damaged(why) => {
            let aside = store::quarantine(&jf.dir()).map_err(|e| RunError::Io(jf.dir(), e))?;
            eprintln!(
                "      warning: {}: its finished outputs are damaged ({why}); moved to {} and run again",
                jf.name,
                aside.display()
            );
        }
        store::Check::Missing => {}
    }
    Ok(Some(lock))
}

/// Holds the node's lock; waits (while not stopped) for another process that holds it.
fn lock_node(jf: &JobFile, stop: &AtomicBool) -> Result<std::fs::File, RunError> {
    let locks = jf.store.parent().unwrap_or(Path::new(".")).join("locks");
    std::fs::create_dir_all(&locks).map_err(|e| RunError::Io(locks.clone(), e.to_string()))?;
    let path = locks.join(format!("{}.lock", jf.folder));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| RunError::Io(path.clone(), e.to_string()))?;
    let mut said = false;
    loop {
        // Held elsewhere: wait; a filesystem without flock: say so rather than wait forever.
        if store::try_lock(&file)
            .map_err(|e| RunError::Io(path.clone(), format!("cannot lock the step: {e}")))?
        {
            return Ok(file);
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(RunError::Interrupted {
                node: jf.name.clone(),
            });
        }
        if !said {
            eprintln!(
                "mio: {} is running in another process; waiting for it",
                jf.name
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs node `jf` in a `mio worker` process (`program`, this mio) and waits for it; a stop
/// asked of this process is passed on to it (SIGTERM: it saves its checkpoint).
pub(crate) fn spawn(program: &Path, jf: &JobFile, quiet: bool, ctx: &Ctx) -> Result<f64, RunError> {
    let jobs = jf.store.parent().unwrap_or(Path::new(".")).join("jobs");
    let path = jobs.join(format!("{}.json", jf.folder));
    write_job(&path, jf).map_err(|e| RunError::Io(path.clone(), e))?;
    let result = result_path(&path);
    let _ = std::fs::remove_file(&result);
    let mut cmd = std::process::Command::new(program);
    cmd.arg("worker").arg(&path);
    if quiet {
        cmd.arg("--quiet");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| RunError::Io(program.to_path_buf(), format!("cannot start a worker: {e}")))?;
    let mut signalled = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(RunError::Io(program.to_path_buf(), e.to_string())),
        }
        if ctx.stopped() && !signalled {
            // SAFETY: signalling a child this process started and has not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            signalled = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let outcome: Option<Outcome> = std::fs::read_to_string(&result)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    match outcome {
        Some(Outcome::Done { seconds }) => {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(&result);
            Ok(seconds)
        }
        Some(Outcome::Cached) => {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(&result);
            Ok(0.0)
        }
        Some(Outcome::Interrupted) => Err(RunError::Interrupted {
            node: jf.name.clone(),
        }),
        Some(Outcome::Failed { error }) => Err(RunError::node(&jf.name, error)),
        None => {
            use std::os::unix::process::ExitStatusExt as _;
            if let Some(signal) = status.signal() {
                return Err(RunError::node(&jf.name, NodeError::Killed { signal }));
            }
            Err(RunError::node(
                &jf.name,
                NodeError::Crashed(format!(
                    "its worker process ended ({status}) without saying how; the job file is {}",
                    path.display()
                )),
            ))
        }
    }
}
