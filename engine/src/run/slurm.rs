//! The Slurm executor: every step of a plan that is not finished becomes one `sbatch` job
//! running `mio worker` on its job file, chained with `--dependency=afterok` as the DAG says.
//! The run folder (on a filesystem the cluster shares) is the only state: each submitted
//! step's job id is kept in `<output>/slurm/KIND-KEY.id`, so a second `mio run` recognises a
//! step already queued or running by its key and never submits it twice, and a step that
//! finished while nobody watched is simply cached. Job scripts and logs sit beside the ids
//! (`KIND-KEY.sh`, `KIND-KEY.out`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use petgraph::graph::NodeIndex;

use super::error::{NodeError, RunError};
use super::keys;
use super::layout::Layout;
use super::store::{self, output_dir};
use super::worker::{self, Outcome};
use crate::ir;
use crate::job::{Job, Slurm};
use crate::plan::Plan;

/// One step handed to Slurm.
#[derive(Clone, Debug, PartialEq)]
pub struct Submitted {
    pub node: String,
    pub job: String,
    /// Its dependencies' job ids.
    pub after: Vec<String>,
    /// Submitted now (false: already queued or running from an earlier `mio run`).
    pub fresh: bool,
}

/// What a submission did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Submission {
    pub cached: Vec<String>,
    pub submitted: Vec<Submitted>,
}

/// A step's state on the cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    Cached,
    /// Queued (PENDING and the like) or running, as squeue says, with the job id and, for a
    /// training step under way, its progress (`step 1200/3000, loss 0.0311`).
    Queued {
        job: String,
        state: String,
        progress: Option<String>,
    },
    /// Its job ended without finishing it: why, when the worker said.
    Failed {
        job: String,
        why: String,
    },
    /// Never submitted (or its record is gone).
    NotSubmitted,
}

fn slurm_dir(out: &Path) -> PathBuf {
    out.join("slurm")
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |e| RunError::Io(path.to_path_buf(), e.to_string())
}

/// Runs a Slurm command; its stdout, or why it failed.
fn slurm_cmd(program: &str, args: &[String]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        format!("cannot run `{program}` ({e}): is this a Slurm login node with the Slurm client installed?")
    })?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            shell_words(args),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The state squeue gives a job (`PENDING`, `RUNNING`, ...), `None` once it left the queue;
/// an error when Slurm could not be asked (its controller down or unreachable), which must
/// never read as "the job has ended".
fn queue_state(job: &str) -> Result<Option<String>, String> {
    let out = Command::new("squeue")
        .args(["-h", "-j", job, "-o", "%T"])
        .output()
        .map_err(|e| format!("cannot run `squeue` ({e})"))?;
    queue_answer(
        job,
        out.status.success(),
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
}

/// What an answer of `squeue -h -j JOB -o %T` says: the job's state, `None` for a job it no
/// longer knows (it exits 1 with `Invalid job id specified` once a finished job has aged out),
/// an error for anything else (`Unable to contact slurm controller`, a timeout).
fn queue_answer(job: &str, ok: bool, stdout: &str, stderr: &str) -> Result<Option<String>, String> {
    let state = stdout.lines().next().unwrap_or("").trim().to_string();
    if ok {
        return Ok((!state.is_empty()).then_some(state));
    }
    if stderr.contains("Invalid job id") {
        return Ok(None);
    }
    Err(format!(
        "cannot ask Slurm about job {job} (`squeue -j {job}`: {}); its state is unknown, not \
         ended: try again once the cluster answers",
        stderr.trim()
    ))
}

/// How long `wait` keeps following the jobs while Slurm does not answer (a controller
/// restarting or failing over) before it gives up watching; the jobs are not touched.
const OUTAGE_LIMIT: Duration = Duration::from_secs(600);

/// Whether a state squeue gives is a job on its way out: cancelled, timed out or preempted,
/// its processes still exiting (`COMPLETING` lasts until they have, up to Slurm's `KillWait`
/// and beyond). Such a job will not finish its step, so it must not count as "already running"
/// when the step is submitted again; it is waited out instead.
fn ending(state: &str) -> bool {
    matches!(
        state,
        "COMPLETING"
            | "SIGNALING"
            | "STAGE_OUT"
            | "COMPLETED"
            | "CANCELLED"
            | "FAILED"
            | "TIMEOUT"
            | "PREEMPTED"
            | "NODE_FAIL"
            | "OUT_OF_MEMORY"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "SPECIAL_EXIT"
            | "REVOKED"
    )
}

/// How long a job on its way out is waited for (Slurm's default `KillWait` is 30 s and its
/// `UnkillableStepTimeout` 60 s; a stopping worker writes its checkpoint in between).
const STOPPING_LIMIT: Duration = Duration::from_secs(180);

/// What a job on its way out became.
enum Settled {
    /// It left the queue.
    Gone,
    /// It is live again under the same id, in this state (a preempted job Slurm requeued).
    Live(String),
    /// Still in this ending state after the time allowed.
    Stuck(String),
}

/// Waits, up to `limit`, for a job on its way out to leave the queue or come back to life.
fn settle(job: &str, limit: Duration) -> Result<Settled, String> {
    let start = std::time::Instant::now();
    loop {
        match queue_state(job)? {
            None => return Ok(Settled::Gone),
            Some(state) if !ending(&state) => return Ok(Settled::Live(state)),
            Some(state) if start.elapsed() >= limit => return Ok(Settled::Stuck(state)),
            Some(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// The job id recorded for a step, if any.
fn recorded(out: &Path, folder: &str) -> Option<String> {
    std::fs::read_to_string(slurm_dir(out).join(format!("{folder}.id")))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The GPUs a step gets: training the `gpus`, restoring the `eval_gpus`, the rest none.
fn gpus(s: &Slurm, job: &Job) -> usize {
    match job {
        Job::Train(_) | Job::Classifier(_) => s.gpus,
        Job::Pretrained(_) | Job::Eval(_) | Job::Sweep(_) | Job::Curves(_) => s.eval_gpus,
        Job::TestSet(_) | Job::Report(_) => 0,
    }
}

/// The `#SBATCH` lines of a step.
pub fn sbatch_options(s: &Slurm, job: &Job) -> Vec<String> {
    let mut o = vec![format!("--cpus-per-task={}", s.cpus)];
    let n = gpus(s, job);
    if n > 0 {
        o.push(format!("--gres=gpu:{n}"));
    }
    for (flag, v) in [
        ("partition", &s.partition),
        ("mem", &s.mem),
        ("time", &s.time),
        ("account", &s.account),
        ("qos", &s.qos),
    ] {
        if let Some(v) = v {
            o.push(format!("--{flag}={v}"));
        }
    }
    // A time limit or a preemption first sends SIGTERM: the step saves its checkpoint.
    o.push("--signal=B:TERM@120".into());
    o.push("--requeue".into());
    o.extend(s.extra.iter().cloned());
    o
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Arguments as a shell would take them back: each quoted unless made only of letters, digits
/// and `_-+=:,./@%`.
fn shell_words(args: &[String]) -> String {
    let plain = |a: &str| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-+=:,./@%".contains(c))
    };
    args.iter()
        .map(|a| if plain(a) { a.clone() } else { quote(a) })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An sbatch option as an `#SBATCH` line's argument, or `None` when that line cannot carry it.
/// sbatch splits a directive at white space and stops at `#` unless they are quoted, and takes
/// either quote, but has no escape: an option with white space, `#` or a quote is wrapped in
/// the quote it does not contain (a run folder `/data/my runs/` or `Bob's`); one with both
/// quotes goes on sbatch's command line instead.
fn directive(option: &str) -> Option<String> {
    let plain = !option
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '#' | '"' | '\''));
    if plain {
        Some(option.to_string())
    } else if !option.contains('"') {
        Some(format!("\"{option}\""))
    } else if !option.contains('\'') {
        Some(format!("'{option}'"))
    } else {
        None
    }
}

/// Submits every step of `plan` that is not finished, not already queued or running.
pub fn submit(
    wfs: &[ir::Workflow],
    plan: &Plan,
    base: &Path,
    s: &Slurm,
    program: &Path,
    mut say: impl FnMut(&str),
) -> Result<Submission, RunError> {
    // Jobs start elsewhere: every path they are given is absolute.
    let base =
        &std::path::absolute(base).map_err(|e| RunError::Io(base.to_path_buf(), e.to_string()))?;
    let out = output_dir(base, wfs);
    // No Slurm here: say so before writing anything.
    slurm_cmd("sbatch", &["--version".into()])
        .map_err(|e| RunError::Job(format!("{e}; nothing was submitted")))?;
    // One submitter at a time; the workers need no run lock (each locks its own step).
    let _lock = store::lock(&out, None, |_| {}).map_err(RunError::Busy)?;
    let layout = Layout::new(wfs, plan, base)?;
    std::fs::create_dir_all(&layout.store).map_err(io(&layout.store))?;
    let dir = slurm_dir(&out);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut done = Submission::default();
    let mut ids: HashMap<NodeIndex, String> = HashMap::new();
    let order = plan.order();
    let mut to_run = vec![];
    for &i in &order {
        let node = &plan.graph[i];
        match store::check(&layout.dir(i)) {
            store::Check::Finished => {
                done.cached.push(node.name.clone());
                continue;
            }
            store::Check::Damaged(why) => {
                let aside = store::quarantine(&layout.dir(i))
                    .map_err(|e| RunError::Io(layout.dir(i), e))?;
                say(&format!(
                    "warning: {}: its finished outputs are damaged ({why}); moved to {} and submitted again",
                    node.name,
                    aside.display()
                ));
            }
            store::Check::Missing => {}
        }
        if let Some(p) = keys::missing_inputs(&node.job, base).first() {
            return Err(RunError::node(
                &node.name,
                NodeError::read(
                    p,
                    "no such file or folder; nothing was submitted (correct the path in the file)",
                ),
            ));
        }
        to_run.push(i);
    }
    for (k, &i) in to_run.iter().enumerate() {
        let node = &plan.graph[i];
        let folder = layout.folder(i);
        if let Some(job) = recorded(&out, &folder) {
            let mut state = queue_state(&job)
                .map_err(|e| RunError::node(&node.name, NodeError::experiment(e)))?;
            if let Some(ending_state) = state.as_deref().filter(|s| ending(s)) {
                // Cancelled or stopped, still exiting (its checkpoint may be being written):
                // wait it out, then submit the step again, unless Slurm requeues it.
                say(&format!(
                    "{}: job {job} is stopping ({}); waiting for it to leave the queue",
                    node.name,
                    ending_state.to_lowercase()
                ));
                state = match settle(&job, STOPPING_LIMIT)
                    .map_err(|e| RunError::node(&node.name, NodeError::experiment(e)))?
                {
                    Settled::Gone => None,
                    Settled::Live(state) => Some(state),
                    Settled::Stuck(still) => {
                        return Err(RunError::node(
                            &node.name,
                            NodeError::Experiment(format!(
                                "job {job} is still {} after {} s; run `mio run` again once `squeue -j {job}` no longer lists it",
                                still.to_lowercase(),
                                STOPPING_LIMIT.as_secs()
                            )),
                        ))
                    }
                };
            }
            if let Some(state) = state {
                say(&format!(
                    "{}: already {} as job {job}",
                    node.name,
                    state.to_lowercase()
                ));
                ids.insert(i, job.clone());
                done.submitted.push(Submitted {
                    node: node.name.clone(),
                    job,
                    after: vec![],
                    fresh: false,
                });
                continue;
            }
        }
        let jf = layout.job_file(i);
        let job_path = out.join("jobs").join(format!("{folder}.json"));
        worker::write_job(&job_path, &jf).map_err(|e| RunError::Io(job_path.clone(), e))?;
        let _ = std::fs::remove_file(worker::result_path(&job_path));
        let after: Vec<String> = plan
            .deps(i)
            .iter()
            .filter_map(|d| ids.get(d).cloned())
            .collect();
        let mut options = sbatch_options(s, &node.job);
        options.push(format!("--job-name=mio-{folder}"));
        options.push(format!(
            "--output={}",
            dir.join(format!("{folder}.out")).display()
        ));
        let mut deps = vec![];
        if !after.is_empty() {
            deps.push(format!("afterok:{}", after.join(":")));
        }
        // At most `max_jobs` at once: each job also waits for the one `max_jobs` before it.
        if s.max_jobs > 0 && k >= s.max_jobs {
            if let Some(earlier) = ids.get(&to_run[k - s.max_jobs]) {
                deps.push(format!("afterany:{earlier}"));
            }
        }
        if !deps.is_empty() {
            options.push(format!("--dependency={}", deps.join(",")));
            options.push("--kill-on-invalid-dep=yes".into());
        }
        // Each option as an #SBATCH line where one can carry it, else on the command line.
        let mut command_line = vec!["--parsable".to_string()];
        let lines: Vec<String> = options
            .iter()
            .map(|o| match directive(o) {
                Some(d) => format!("#SBATCH {d}"),
                None => {
                    command_line.push(o.clone());
                    format!("# given on sbatch's command line: {o}")
                }
            })
            .collect();
        let script = format!(
            "#!/bin/sh\n# {}: {}\n{}\nexec {} worker {} --quiet\n",
            node.name,
            node.detail,
            lines.join("\n"),
            quote(&program.display().to_string()),
            quote(&job_path.display().to_string())
        );
        let script_path = dir.join(format!("{folder}.sh"));
        mio_stdlib::fsio::write_atomic(&script_path, script.as_bytes())
            .map_err(io(&script_path))?;
        command_line.push(script_path.display().to_string());
        let job = slurm_cmd("sbatch", &command_line)
            .map_err(|e| RunError::node(&node.name, NodeError::experiment(e)))?;
        let job = job.trim().split(';').next().unwrap_or("").to_string();
        let id_path = dir.join(format!("{folder}.id"));
        mio_stdlib::fsio::write_atomic(&id_path, job.as_bytes()).map_err(io(&id_path))?;
        say(&format!(
            "{}: submitted as job {job}{}",
            node.name,
            if after.is_empty() {
                String::new()
            } else {
                format!(" (after {})", after.join(", "))
            }
        ));
        ids.insert(i, job.clone());
        done.submitted.push(Submitted {
            node: node.name.clone(),
            job,
            after,
            fresh: true,
        });
    }
    Ok(done)
}

/// Each step's state, in plan order.
pub fn status(
    wfs: &[ir::Workflow],
    plan: &Plan,
    base: &Path,
) -> Result<Vec<(String, State)>, RunError> {
    let out = output_dir(base, wfs);
    let layout = Layout::new(wfs, plan, base)?;
    plan.order()
        .into_iter()
        .map(|i| {
            let name = plan.graph[i].name.clone();
            let state = step_state(&out, &layout, i)
                .map_err(|e| RunError::node(&name, NodeError::experiment(e)))?;
            Ok((name, state))
        })
        .collect()
}

fn step_state(out: &Path, layout: &Layout, i: NodeIndex) -> Result<State, String> {
    if store::check(&layout.dir(i)) == store::Check::Finished {
        return Ok(State::Cached);
    }
    let folder = layout.folder(i);
    let Some(job) = recorded(out, &folder) else {
        return Ok(State::NotSubmitted);
    };
    if let Some(state) = queue_state(&job)? {
        return Ok(State::Queued {
            job,
            state,
            progress: progress(layout, i),
        });
    }
    // The job may have finished the step between the first look and `squeue`.
    if store::check(&layout.dir(i)) == store::Check::Finished {
        return Ok(State::Cached);
    }
    let job_path = out.join("jobs").join(format!("{folder}.json"));
    let outcome: Option<Outcome> = std::fs::read_to_string(worker::result_path(&job_path))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let log = slurm_dir(out).join(format!("{folder}.out"));
    let why = match outcome {
        Some(Outcome::Failed { error }) => error.to_string(),
        Some(Outcome::Interrupted) => {
            "stopped (a time limit or a preemption); its checkpoint is kept and `mio run` submits it again".into()
        }
        Some(Outcome::Done { .. }) | Some(Outcome::Cached) => {
            "its worker finished, but its folder does not check out".into()
        }
        None => {
            let tail: Vec<String> = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(5)
                .map(String::from)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if tail.is_empty() {
                "its job ended without running (a step it reads failed, or it was cancelled)".into()
            } else {
                format!("its job ended; the end of {}:\n{}", log.display(), tail.join("\n"))
            }
        }
    };
    Ok(State::Failed { job, why })
}

/// How far a training step has come: the last line of its loss log in its working folder.
fn progress(layout: &Layout, i: NodeIndex) -> Option<String> {
    let iters = match &layout.plan.graph[i].job {
        Job::Train(t) => t.config.iters,
        Job::Classifier(c) => c.iters,
        _ => return None,
    };
    let log = layout.dir(i).with_extension("partial").join("losses.jsonl");
    let text = std::fs::read_to_string(log).ok()?;
    let last: serde_json::Value = serde_json::from_str(text.lines().last()?).ok()?;
    Some(format!(
        "step {}/{iters}, loss {:.4}",
        last["step"].as_u64()? + 1,
        last["loss"].as_f64()?
    ))
}

fn stopped_watching() -> RunError {
    RunError::Job(
        "stopped watching; the jobs keep running (`mio status FILE` follows them, `mio cancel FILE` stops them)".into(),
    )
}

/// Follows submitted steps until every one has finished or one has failed; `stop` (Ctrl-C)
/// leaves the jobs running.
pub fn wait(
    wfs: &[ir::Workflow],
    plan: &Plan,
    base: &Path,
    stop: &AtomicBool,
    mut say: impl FnMut(&str),
) -> Result<(), RunError> {
    let out = output_dir(base, wfs);
    let layout = Layout::new(wfs, plan, base)?;
    let order = plan.order();
    let mut finished: Vec<bool> = vec![false; plan.graph.node_count()];
    // Since when Slurm has not answered, if it does not.
    let mut outage: Option<std::time::Instant> = None;
    'poll: loop {
        let mut pending = false;
        for &i in &order {
            if finished[i.index()] {
                continue;
            }
            let name = &plan.graph[i].name;
            let state = match step_state(&out, &layout, i) {
                Ok(state) => state,
                Err(e) => {
                    // The controller restarting or out of reach: keep watching for a while.
                    let since = *outage.get_or_insert_with(|| {
                        say(&format!("warning: {e}; still watching"));
                        std::time::Instant::now()
                    });
                    if since.elapsed() >= OUTAGE_LIMIT {
                        return Err(RunError::Job(format!(
                            "Slurm has not answered for {} minutes ({e}); stopped watching, the jobs are untouched (`mio status FILE` follows them)",
                            OUTAGE_LIMIT.as_secs() / 60
                        )));
                    }
                    if stop.load(Ordering::Relaxed) {
                        return Err(stopped_watching());
                    }
                    std::thread::sleep(Duration::from_secs(2));
                    continue 'poll;
                }
            };
            if outage.take().is_some() {
                say("Slurm answers again");
            }
            match state {
                State::Cached => {
                    finished[i.index()] = true;
                    say(&format!("{name}: done"));
                }
                State::Queued { .. } => pending = true,
                State::Failed { job, why } => {
                    // A step cancelled because what it reads failed: report that one instead.
                    let upstream_failed = plan.deps(i).iter().any(|d| !finished[d.index()]);
                    if !upstream_failed {
                        return Err(RunError::node(
                            name,
                            NodeError::Experiment(format!("(job {job}) {why}")),
                        ));
                    }
                }
                State::NotSubmitted => {
                    return Err(RunError::node(
                        name,
                        NodeError::Experiment("was never submitted; run `mio run` again".into()),
                    ))
                }
            }
        }
        if !pending {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            return Err(stopped_watching());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Every step finished: the reports go to the workflows' folders.
    for (i, folder) in super::folders::report_folders(plan, &out) {
        super::folders::publish(&layout.dir(i), &folder)
            .map_err(|e| RunError::Io(folder.clone(), e))?;
    }
    Ok(())
}

/// A job `cancel` stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct Cancelled {
    pub node: String,
    pub job: String,
    /// It left the queue (false: still exiting when `cancel` stopped waiting).
    pub gone: bool,
}

/// Cancels the run's queued and running jobs and waits until they have left the queue, so
/// that a `mio run` right after submits their steps again instead of counting them as running.
pub fn cancel(
    wfs: &[ir::Workflow],
    plan: &Plan,
    base: &Path,
    mut say: impl FnMut(&str),
) -> Result<Vec<Cancelled>, RunError> {
    let mut cancelled = vec![];
    for (name, state) in status(wfs, plan, base)? {
        if let State::Queued { job, .. } = state {
            slurm_cmd("scancel", std::slice::from_ref(&job))
                .map_err(|e| RunError::node(&name, NodeError::experiment(e)))?;
            cancelled.push(Cancelled {
                node: name,
                job,
                gone: false,
            });
        }
    }
    if !cancelled.is_empty() {
        say(&format!(
            "waiting for {} job(s) to leave the queue",
            cancelled.len()
        ));
    }
    let start = std::time::Instant::now();
    for c in &mut cancelled {
        let left = STOPPING_LIMIT.saturating_sub(start.elapsed());
        let settled =
            settle(&c.job, left).map_err(|e| RunError::node(&c.node, NodeError::experiment(e)))?;
        c.gone = matches!(settled, Settled::Gone);
    }
    Ok(cancelled)
}

/// The sbatch line of every step of a plan, as `mio run` would submit them all (`mio plan
/// --executor slurm`): `$N` stands for step N's job id.
pub fn describe(plan: &Plan, s: &Slurm) -> String {
    let order = plan.order();
    let number: HashMap<NodeIndex, usize> =
        order.iter().enumerate().map(|(k, &i)| (i, k + 1)).collect();
    let mut text = String::new();
    for (k, &i) in order.iter().enumerate() {
        let node = &plan.graph[i];
        let mut options = sbatch_options(s, &node.job);
        let mut deps = vec![];
        let after: Vec<String> = plan
            .deps(i)
            .iter()
            .map(|d| format!("${}", number[d]))
            .collect();
        if !after.is_empty() {
            deps.push(format!("afterok:{}", after.join(":")));
        }
        if s.max_jobs > 0 && k >= s.max_jobs {
            deps.push(format!("afterany:${}", k + 1 - s.max_jobs));
        }
        if !deps.is_empty() {
            options.push(format!("--dependency={}", deps.join(",")));
        }
        text.push_str(&format!(
            "{:>4}  {:<40} sbatch {} mio worker\n",
            k + 1,
            node.name,
            shell_words(&options)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{directive, ending, queue_answer, shell_words};

    #[test]
    fn squeue_failing_is_not_a_job_that_ended() {
        assert_eq!(
            queue_answer("7", true, "RUNNING\n", ""),
            Ok(Some("RUNNING".into()))
        );
        // A finished job Slurm no longer lists: empty, or (aged out) an invalid id.
        assert_eq!(queue_answer("7", true, "", ""), Ok(None));
        assert_eq!(
            queue_answer(
                "7",
                false,
                "",
                "slurm_load_jobs error: Invalid job id specified\n"
            ),
            Ok(None)
        );
        // The controller down: an error that says so, never "gone".
        let down = queue_answer(
            "7",
            false,
            "",
            "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n",
        )
        .unwrap_err();
        assert!(
            down.contains("Unable to contact slurm controller"),
            "{down}"
        );
        assert!(down.contains("job 7") && down.contains("unknown"), "{down}");
    }

    #[test]
    fn options_with_spaces_hashes_or_quotes_are_quoted_for_sbatch() {
        assert_eq!(directive("--gres=gpu:1").as_deref(), Some("--gres=gpu:1"));
        assert_eq!(
            directive("--output=/data/my runs/x.out").as_deref(),
            Some("\"--output=/data/my runs/x.out\"")
        );
        assert_eq!(
            directive("--output=/data/Bob's #1/x.out").as_deref(),
            Some("\"--output=/data/Bob's #1/x.out\"")
        );
        assert_eq!(
            directive("--comment=say \"hi\"").as_deref(),
            Some("'--comment=say \"hi\"'")
        );
        assert_eq!(directive("--comment=Bob's \"x\""), None);
        // As a shell takes them back, in messages and in `mio plan --executor`.
        assert_eq!(
            shell_words(&["--parsable".into(), "/data/Bob's runs/x.sh".into()]),
            "--parsable '/data/Bob'\\''s runs/x.sh'"
        );
        assert_eq!(
            shell_words(&["--constraint=a100&nvlink".into()]),
            "'--constraint=a100&nvlink'"
        );
    }

    #[test]
    fn a_job_on_its_way_out_is_not_a_running_one() {
        for s in [
            "COMPLETING",
            "CANCELLED",
            "TIMEOUT",
            "PREEMPTED",
            "NODE_FAIL",
        ] {
            assert!(ending(s), "{s}");
        }
        for s in ["PENDING", "RUNNING", "CONFIGURING", "SUSPENDED", "REQUEUED"] {
            assert!(!ending(s), "{s}");
        }
    }
}
