//! Against a real Slurm, not a mock: a one-node cluster from Debian's packages (slurmctld,
//! slurmd, slurm-client, munge), installed and started here when missing (as root,
//! `ProctrackType=proctrack/linuxproc`, `TaskPlugin=task/none`; it starts in seconds). A
//! workflow run through it gets the bytes of a local run; a second `mio run` submits nothing;
//! a training job stopped mid-stage (`scancel --signal=TERM`) keeps its checkpoint and the
//! resubmitted job ends at the weights of an uninterrupted run; `mio run --wait` rides out its
//! controller stopped and restarted under it. Where no cluster can be had
//! (not root, no apt, another cluster configured), each test says why and passes.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::mio_in as mio;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data");
const CONF: &str = "/etc/slurm/slurm.conf";
const CLUSTER: &str = "ClusterName=mio-test";

fn sh(cmd: &str) -> Result<String, String> {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn idle() -> bool {
    sh("sinfo -h -o %t 2>/dev/null").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("idle") || l.starts_with("mix"))
    })
}

/// Sets up (once) the one-node test cluster; why not, when it cannot.
fn cluster() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            if let Ok(conf) = std::fs::read_to_string(CONF) {
                if !conf.contains(CLUSTER) {
                    return Err(format!(
                        "{CONF} configures another cluster; not submitting test jobs to it"
                    ));
                }
                if idle() {
                    return Ok(());
                }
            }
            if sh("id -u")?.trim() != "0" {
                return Err("not root: cannot install and start a test cluster".into());
            }
            if sh("command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged").is_err() {
                sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null 2>&1 \
                    || (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null 2>&1)")
                    .map_err(|e| format!("cannot install Slurm from Debian's packages: {e}"))?;
            }
            let host = sh("hostname -s")?.trim().to_string();
            let conf = format!(
                "{CLUSTER}\nSlurmctldHost={host}\nAuthType=auth/munge\nProctrackType=proctrack/linuxproc\n\
                 TaskPlugin=task/none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
                 SlurmctldPidFile=/run/slurmctld.pid\nSlurmdPidFile=/run/slurmd.pid\n\
                 SlurmdSpoolDir=/var/spool/slurmd\nStateSaveLocation=/var/spool/slurmctld\nSlurmUser=root\n\
                 ReturnToService=2\nJobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\nMpiDefault=none\n\
                 SlurmctldLogFile=/var/log/slurm/slurmctld.log\nSlurmdLogFile=/var/log/slurm/slurmd.log\n\
                 SchedulerParameters=sched_interval=1\n\
                 NodeName={host} CPUs={cpus} State=UNKNOWN\n\
                 PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
                cpus = std::thread::available_parallelism().map_or(1, |n| n.get())
            );
            sh("mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge && chown munge:munge /run/munge")?;
            std::fs::write(CONF, conf).map_err(|e| format!("{CONF}: {e}"))?;
            let _ = sh("pkill -x slurmd; pkill -x slurmctld; sleep 1; rm -f /var/spool/slurmctld/clustername");
            if sh("pgrep -x munged").is_err() {
                sh("su -s /bin/sh munge -c /usr/sbin/munged")
                    .map_err(|e| format!("cannot start munge: {e}"))?;
            }
            sh("slurmctld && slurmd").map_err(|e| format!("cannot start Slurm: {e}"))?;
            let start = Instant::now();
            while !idle() {
                if start.elapsed() > Duration::from_secs(30) {
                    return Err("the test cluster did not come up in 30 s".into());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(())
        })
        .clone()
}

/// One test at a time on the one cluster (one of them stops its controller).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

macro_rules! need_cluster {
    () => {
        let _one = serial();
        if let Err(why) = cluster() {
            println!("skipped: {why}");
            return;
        }
    };
}

/// A run folder with a space, both quotes and a `#` in its path (each breaks an `#SBATCH` line
/// written naively).
fn workspace(name: &str, text: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "mio slurm test's \"run\" #{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tiny.mio");
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

fn tiny(plain: &str) -> String {
    format!(
        r#"use paper

workflow tiny {{
  seed = 7
  data train = images("{DATA}/train", patch = 24px, batch = 4)
  data test = images("{DATA}/test", limit = 1)

  model plain = srresnet(channels = 8, blocks = 1)
  model ep = srresnet(channels = 8, blocks = 1, prompt = explicit(dim = 8, map_size = 16))

  train plain on train {{ tasks = [noise, jpeg], {plain} }}
  train ep on train {{
    strategy = sequential(order = [noise, jpeg])
    iters = [4, 4]
    ema = 0
    classifier = classifier(iters = 4, batch = 4)
  }}
  eval plain on test as plain_in {{ tasks = [noise, jpeg] }}
  eval ep on test as ep_in {{ tasks = [noise, jpeg] }}
  report {{ baseline = plain }}
}}
"#
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file of the finished steps, by relative path.
fn nodes(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    common::files(&dir.join("runs/nodes"))
}

#[test]
fn a_workflow_run_through_slurm_matches_a_local_run_and_is_not_submitted_twice() {
    need_cluster!();
    let source = tiny("iters = 8, ema = 0");
    let (local, _) = workspace("local", &source);
    let out = mio(&local, &["run", "tiny.mio", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let (cluster, _) = workspace("cluster", &source);
    let out = mio(
        &cluster,
        &["run", "tiny.mio", "--executor", "slurm", "--wait", "-q"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("done: every step finished"),
        "{}",
        text(&out.stdout)
    );
    let (a, b) = (nodes(&local), nodes(&cluster));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, bytes) in &a {
        assert!(b[path] == *bytes, "{} differs", path.display());
    }
    assert_eq!(
        std::fs::read(local.join("runs/tiny/results.json")).unwrap(),
        std::fs::read(cluster.join("runs/tiny/results.json")).unwrap()
    );
    // Each step was a job with its script and log.
    let scripts = std::fs::read_dir(cluster.join("runs/slurm"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sh"))
        .count();
    assert_eq!(scripts, 10);

    // A second run submits nothing.
    let again = mio(&cluster, &["run", "tiny.mio", "--executor", "slurm"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stdout),
        "0 job(s) submitted, 0 already queued or running, 10 step(s) cached\n"
    );
    let status = mio(&cluster, &["status", "tiny.mio"]);
    assert!(text(&status.stdout)
        .ends_with("10 cached, 0 queued or running, 0 failed, 0 not submitted\n"));
    for d in [local, cluster] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_training_job_stopped_mid_stage_resumes_from_its_checkpoint_when_resubmitted() {
    need_cluster!();
    let source = tiny("iters = 1500, ema = 0, checkpoint_every = 25");
    let (dir, _) = workspace("resume", &source);
    let out = mio(&dir, &["run", "tiny.mio", "--executor", "slurm", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A second submission while the jobs are queued or running submits nothing new.
    let twice = mio(&dir, &["run", "tiny.mio", "--executor", "slurm", "-q"]);
    assert!(
        text(&twice.stdout).starts_with("0 job(s) submitted"),
        "{}",
        text(&twice.stdout)
    );

    // Wait for the plain model's stage to checkpoint, then stop its job as a time limit would.
    let partial = || {
        std::fs::read_dir(dir.join("runs/nodes"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("stage1.safetensors").is_file())
    };
    let start = Instant::now();
    let stage = loop {
        if let Some(p) = partial() {
            break p;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "no checkpoint");
        std::thread::sleep(Duration::from_millis(100));
    };
    let folder = stage.file_stem().unwrap().to_string_lossy().into_owned();
    // Status shows the running stage's progress.
    let s = text(&mio(&dir, &["status", "tiny.mio"]).stdout);
    let line = s
        .lines()
        .find(|l| l.starts_with("tiny/plain "))
        .unwrap_or_default();
    assert!(
        line.contains("running (job ") && line.contains("/1500, loss "),
        "{s}"
    );
    let job = std::fs::read_to_string(dir.join(format!("runs/slurm/{folder}.id"))).unwrap();
    sh(&format!("scancel --signal=TERM --batch {}", job.trim())).unwrap();
    // Its job ends, the checkpoint stays, and status says what happened.
    let start = Instant::now();
    loop {
        let s = text(&mio(&dir, &["status", "tiny.mio"]).stdout);
        if s.contains("tiny/plain")
            && s.lines()
                .any(|l| l.starts_with("tiny/plain ") && l.contains("failed"))
        {
            assert!(s.contains("its checkpoint is kept"), "{s}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{s}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(stage.join("stage1.safetensors").is_file());
    // `mio cancel` returns once the jobs it stopped have left the queue (a job still exiting
    // would otherwise count as running and not be submitted again).
    let cancel = mio(&dir, &["cancel", "tiny.mio"]);
    assert!(cancel.status.success(), "{}", text(&cancel.stderr));
    assert!(
        !text(&cancel.stdout).contains("still stopping"),
        "{}",
        text(&cancel.stdout)
    );
    let s = text(&mio(&dir, &["status", "tiny.mio"]).stdout);
    assert!(s.contains(" 0 queued or running, "), "{s}");

    // Submitted again, it continues and ends where an uninterrupted run ends.
    let out = mio(
        &dir,
        &["run", "tiny.mio", "--executor", "slurm", "--wait", "-q"],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    let (local, _) = workspace("resume-local", &source);
    let out = mio(&local, &["run", "tiny.mio", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let finished = dir.join("runs/nodes").join(&folder);
    let finished = PathBuf::from(finished.to_string_lossy().trim_end_matches(".partial"));
    let reference = local.join("runs/nodes").join(finished.file_name().unwrap());
    assert_eq!(
        std::fs::read(finished.join("weights.safetensors")).unwrap(),
        std::fs::read(reference.join("weights.safetensors")).unwrap(),
        "the resumed stage ended at other weights"
    );
    // Each step is logged once, in order.
    let log = std::fs::read_to_string(finished.join("losses.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1500);
    for d in [dir, local] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_controller_restart_while_waiting_is_ridden_out_and_never_read_as_a_failure() {
    need_cluster!();
    let source = tiny("iters = 3000, ema = 0, checkpoint_every = 100");
    let (dir, _) = workspace("outage", &source);
    let waiting = Command::new(env!("CARGO_BIN_EXE_mio"))
        .args(["run", "tiny.mio", "--executor", "slurm", "--wait"])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the plain model trains, the controller goes away for a few seconds.
    let start = Instant::now();
    loop {
        let s = text(&mio(&dir, &["status", "tiny.mio"]).stdout);
        if s.lines()
            .any(|l| l.starts_with("tiny/plain ") && l.contains("running"))
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    sh("pkill -x slurmctld; while pgrep -x slurmctld >/dev/null; do sleep 0.1; done").unwrap();
    // Meanwhile status says it cannot ask, not that a step failed.
    let status = mio(&dir, &["status", "tiny.mio"]);
    std::thread::sleep(Duration::from_secs(4));
    sh("slurmctld").unwrap();
    assert!(!status.status.success(), "{}", text(&status.stdout));
    assert!(
        text(&status.stderr).contains("cannot ask Slurm about job"),
        "{}",
        text(&status.stderr)
    );
    let out = waiting.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("still watching") && err.contains("Slurm answers again"),
        "{err}"
    );
    assert!(
        text(&out.stdout).contains("done: every step finished"),
        "{}",
        text(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(dir);
}
