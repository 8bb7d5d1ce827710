//! A plan's nodes run from their job files in processes of their own (`mio worker`, and
//! `mio run --isolate` which uses it) give the same bytes as `mio run` in one process; a
//! worker refuses a step whose inputs are not finished and a job file it cannot trust; `mio
//! run` waits for a node another process holds and keeps what that process finished.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::files;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data");

/// Two models (a sequential explicit-prompt one with its classifier), two tasks, two test
/// images, an evaluation each, a prompt sweep and a report: every kind of node.
fn tiny() -> String {
    format!(
        r#"use paper

workflow tiny {{
  seed = 5
  data train = images("{DATA}/train", patch = 24px, batch = 4)
  data test = images("{DATA}/test", limit = 2)

  model plain = srresnet(channels = 8, blocks = 1)
  model ep = srresnet(channels = 8, blocks = 1, prompt = explicit(dim = 8, map_size = 16))

  train plain on train {{ tasks = [noise, jpeg], iters = 8, ema = 0.5 }}
  train ep on train {{
    strategy = sequential(order = [noise, jpeg])
    iters = [4, 4]
    ema = 0
    classifier = classifier(iters = 4, batch = 4)
  }}
  eval plain on test as plain_in {{ tasks = [noise, jpeg] }}
  eval ep on test as ep_in {{ tasks = [noise, jpeg] }}
  sweep ep on "{DATA}/test/chelsea.png" as blend {{ from = noise, to = jpeg, steps = 3 }}
  report {{ baseline = plain }}
}}
"#
    )
}

fn workspace(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("mio-worker-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tiny.mio");
    std::fs::write(&file, tiny()).unwrap();
    (dir, file)
}

fn mio(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mio"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run mio")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn checked(file: &Path) -> (mio_engine::Checked, mio_engine::plan::Plan) {
    let c = mio_engine::check_file(file, &[]).unwrap();
    assert!(c.is_ok(), "{}", c.render(mio_engine::Style::Plain));
    let plan = mio_engine::plan(&c).unwrap();
    (c, plan)
}

/// Writes every node's job file under `dir/jobs/` in plan order.
fn write_jobs(dir: &Path, file: &Path) -> Vec<PathBuf> {
    let (c, plan) = checked(file);
    let jobs = mio_engine::run::job_files(&c.workflows, &plan, dir).unwrap();
    jobs.iter()
        .enumerate()
        .map(|(k, jf)| {
            let path = dir.join("jobs").join(format!("{k:02}.json"));
            mio_engine::run::worker::write_job(&path, jf).unwrap();
            path
        })
        .collect()
}

#[test]
fn node_by_node_in_worker_processes_gives_the_same_bytes_as_one_process() {
    // In this process.
    let (one, file) = workspace("one");
    let (c, plan) = checked(&file);
    let summary = mio_engine::run::run(&c.workflows, &plan, &one, Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.ran.len(), 11, "{:?}", summary.ran);
    let reference = files(&one.join("runs/nodes"));

    // Each node in a `mio worker` of its own, in plan order.
    let (each, file) = workspace("each");
    for job in write_jobs(&each, &file) {
        let out = mio(&["worker".as_ref(), job.as_os_str(), "-q".as_ref()]);
        assert!(
            out.status.success(),
            "{}: {}",
            job.display(),
            text(&out.stderr)
        );
        assert_eq!(
            text(&out.stdout).lines().count(),
            1,
            "{}",
            text(&out.stdout)
        );
    }
    let by_worker = files(&each.join("runs/nodes"));

    // `mio run --isolate`: the scheduler starts the workers.
    let (isolated, file) = workspace("isolated");
    let out = mio(&[
        "run".as_ref(),
        file.as_os_str(),
        "--isolate".as_ref(),
        "-q".as_ref(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let by_run = files(&isolated.join("runs/nodes"));
    // No job file is left behind after a step that succeeded.
    let left: Vec<_> = std::fs::read_dir(isolated.join("runs/jobs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    assert!(reference.len() > 30, "{} files", reference.len());
    for (what, got) in [("mio worker", &by_worker), ("mio run --isolate", &by_run)] {
        let names = |m: &BTreeMap<PathBuf, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(got), names(&reference), "{what}: other files");
        for (path, bytes) in &reference {
            assert!(got[path] == *bytes, "{what}: {} differs", path.display());
        }
    }
    // The report's tables are the same too (its folder beside the nodes).
    assert_eq!(
        std::fs::read(one.join("runs/tiny/results.json")).unwrap(),
        std::fs::read(isolated.join("runs/tiny/results.json")).unwrap()
    );
    for d in [one, each, isolated] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_worker_refuses_a_step_whose_inputs_are_not_finished_and_reruns_nothing() {
    let (dir, file) = workspace("order");
    let jobs = write_jobs(&dir, &file);
    // The last job is the report: nothing it reads exists yet.
    let report = jobs.last().unwrap();
    let out = mio(&["worker".as_ref(), report.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: tiny/report: its input "), "{err}");
    assert!(
        err.contains("is not finished; run that step first"),
        "{err}"
    );
    let result = mio_engine::run::worker::result_path(report);
    let outcome: mio_engine::run::worker::Outcome =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert!(
        matches!(
            outcome,
            mio_engine::run::worker::Outcome::Failed {
                error: mio_engine::run::NodeError::NotReady { .. }
            }
        ),
        "{outcome:?}"
    );
    // Nothing was made: no working folder, not even the store.
    assert!(!dir.join("runs/nodes").exists());

    // The first job (a test set) runs; a second worker of it finds it finished.
    let first = &jobs[0];
    let out = mio(&["worker".as_ref(), first.as_os_str(), "-q".as_ref()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = mio(&["worker".as_ref(), first.as_os_str()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "already finished\n");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_worker_refuses_a_job_file_it_cannot_trust() {
    let (dir, file) = workspace("trust");
    let jobs = write_jobs(&dir, &file);
    let good = std::fs::read_to_string(&jobs[0]).unwrap();

    let cut = dir.join("cut.json");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    let out = mio(&["worker".as_ref(), cut.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cut.json: not a job file (")
            || text(&out.stderr).contains("cut.json: a damaged job file ("),
        "{}",
        text(&out.stderr)
    );

    let other = dir.join("other.json");
    std::fs::write(
        &other,
        good.replacen(
            &format!("\"format\": {}", mio_engine::job::FORMAT),
            "\"format\": 99",
            1,
        ),
    )
    .unwrap();
    let out = mio(&["worker".as_ref(), other.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("(job layout 99); this is mio "),
        "{}",
        text(&out.stderr)
    );

    let missing = dir.join("no such job.json");
    let out = mio(&["worker".as_ref(), missing.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no such job.json: No such file"),
        "{}",
        text(&out.stderr)
    );
    // Nothing ran.
    assert!(!dir.join("runs/nodes").exists() || files(&dir.join("runs/nodes")).is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

/// The pid of a running `mio worker` whose job file lies under `dir`, from /proc.
fn worker_pid(dir: &Path) -> Option<u32> {
    let want = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (cmd.contains(" worker ") && cmd.contains(&want)).then_some(pid)
    })
}

#[test]
fn a_worker_killed_mid_step_is_reported_as_killed_and_its_checkpoint_kept() {
    let (dir, file) = workspace("killed");
    let source = std::fs::read_to_string(&file).unwrap();
    // Long enough to be caught in the act, with a checkpoint early on.
    std::fs::write(
        &file,
        source.replace(
            "iters = 8, ema = 0.5 }",
            "iters = 200000, ema = 0, checkpoint_every = 20 }",
        ),
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_mio"))
        .args([
            "run".as_ref(),
            file.as_os_str(),
            "--isolate".as_ref(),
            "-q".as_ref(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ckpt = || {
        std::fs::read_dir(dir.join("runs/nodes"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("stage1.safetensors").is_file())
    };
    let start = std::time::Instant::now();
    while !(ckpt() && worker_pid(&dir).is_some()) {
        assert!(
            start.elapsed().as_secs() < 120,
            "no worker with a checkpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = worker_pid(&dir).unwrap();
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = run.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: tiny/plain: its worker process was killed (signal 9"),
        "{err}"
    );
    assert!(ckpt(), "the checkpoint was not kept");
    let _ = std::fs::remove_dir_all(dir);
}

/// `mio run` in its own threads waits for a node another process holds (a cluster job, a
/// worker: the lock a worker takes) instead of working in the same folder, and does not run
/// again a node that process finished meanwhile.
#[test]
fn a_run_waits_for_a_node_another_process_holds_and_keeps_what_it_finished() {
    use std::io::BufRead as _;
    use std::os::fd::AsRawFd as _;
    let (dir, file) = workspace("held");
    let first = mio(&["run".as_ref(), file.as_os_str(), "-q".as_ref()]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let nodes = dir.join("runs/nodes");
    let train = std::fs::read_dir(&nodes)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("train-"))
        })
        .unwrap();
    let folder = train.file_name().unwrap().to_string_lossy().into_owned();
    let weights = std::fs::read(train.join("weights.safetensors")).unwrap();
    // Another process holds the node and has not finished it.
    let aside = dir.join("aside");
    std::fs::rename(&train, &aside).unwrap();
    std::fs::create_dir_all(dir.join("runs/locks")).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("runs/locks").join(format!("{folder}.lock")))
        .unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let mut run = Command::new(env!("CARGO_BIN_EXE_mio"))
        .args(["run".as_ref(), file.as_os_str()])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = run.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut said = vec![];
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no word of waiting: {said:?}"));
        let waiting = line.contains("is running in another process; waiting for it");
        said.push(line);
        if waiting {
            break;
        }
    }
    // While it waits, it has not started the node in its working folder.
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(run.try_wait().unwrap().is_none(), "{said:?}");
    assert!(!nodes.join(format!("{folder}.partial")).exists());
    // The other process finishes the node and lets go.
    std::fs::rename(&aside, &train).unwrap();
    drop(lock);
    let status = run.wait().unwrap();
    reader.join().unwrap();
    said.extend(rx.try_iter());
    assert!(status.success(), "{said:?}");
    assert!(
        said.iter()
            .any(|l| l.contains("finished by the other process; not run again")),
        "{said:?}"
    );
    assert_eq!(
        std::fs::read(train.join("weights.safetensors")).unwrap(),
        weights,
        "the node was trained again"
    );
    let _ = std::fs::remove_dir_all(dir);
}
