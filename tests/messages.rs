//! What a user sees when something is wrong, word for word: the whole of stderr and stdout and
//! the exit code of the main failure cases, against snapshot files (`tests/snapshots/`). A
//! change of wording shows up in review as a change of these files. The temporary folder each
//! case runs in is written `[DIR]`.

use std::path::{Path, PathBuf};
use std::process::Command;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data");

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mio-messages-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs mio in `cwd` and gives its exit code, stderr and stdout as one text.
fn mio(cwd: &Path, args: &[&str]) -> String {
    mio_with(cwd, args, &[])
}

fn mio_with(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mio"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("RUST_BACKTRACE")
        .envs(env.iter().copied())
        .output()
        .expect("run mio");
    let shown = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace(&cwd.display().to_string(), "[DIR]")
            .replace(DATA, "[DATA]")
    };
    format!(
        "exit: {}\n--- stderr\n{}--- stdout\n{}",
        out.status.code().map_or("signal".into(), |c| c.to_string()),
        shown(&out.stderr),
        shown(&out.stdout)
    )
}

const TINY: &str = r#"use paper

workflow tiny {
  data train = images("[TRAIN]", patch = 24px, batch = 2)
  data test = images("[DATA]/test", limit = 1)
  model net = srresnet(channels = 8, blocks = 1)
  train net on train { tasks = [noise], iters = 2, ema = 0 }
  eval net on test { tasks = [noise] }
}
"#;

fn tiny(d: &Path, train: &str) -> PathBuf {
    let f = d.join("tiny.mio");
    std::fs::write(&f, TINY.replace("[TRAIN]", train).replace("[DATA]", DATA)).unwrap();
    f
}

#[test]
fn a_file_with_mistakes() {
    let d = dir("mistakes");
    std::fs::write(
        d.join("bad.mio"),
        "use paper\n\nworkflow w {\n  model net = srresnet(chanels = 8)\n  train net on nowhere { iters = 10 }\n}\n",
    )
    .unwrap();
    insta::assert_snapshot!(mio(&d, &["check", "bad.mio"]));
}

#[test]
fn a_file_that_is_not_there() {
    let d = dir("missing");
    insta::assert_snapshot!(mio(&d, &["run", "no/such.mio"]));
}

#[test]
fn a_run_whose_training_folder_is_misspelt() {
    let d = dir("folder");
    tiny(&d, "no/such/folder");
    insta::assert_snapshot!(mio(&d, &["run", "tiny.mio", "-q"]));
}

#[test]
fn a_file_that_is_not_formatted() {
    let d = dir("fmt");
    std::fs::write(d.join("f.mio"), "workflow w {\nseed=0\n}\n").unwrap();
    insta::assert_snapshot!(mio(&d, &["fmt", "--check", "f.mio"]));
}

#[test]
fn a_misspelt_task_on_the_command_line() {
    let d = dir("degrade");
    insta::assert_snapshot!(mio(
        &d,
        &[
            "degrade",
            &format!("{DATA}/test/chelsea.png"),
            "--task",
            "nosie",
            "-o",
            "out.png"
        ]
    ));
}

#[test]
fn a_library_file_has_nothing_to_plan() {
    let d = dir("library");
    std::fs::write(d.join("lib.mio"), "task heavy = noise(sigma = 60)\n").unwrap();
    insta::assert_snapshot!(mio(&d, &["plan", "lib.mio"]));
}

#[test]
fn restoring_with_a_model_that_is_not_there() {
    let d = dir("restore");
    insta::assert_snapshot!(mio(
        &d,
        &["restore", "--model", "nowhere", "--task", "noise", ".", "."]
    ));
}

#[test]
fn a_worker_started_before_its_inputs_and_a_damaged_job_file() {
    let d = dir("worker");
    let f = tiny(&d, &format!("{DATA}/train"));
    let c = mio_engine::check_file(&f, &[]).unwrap();
    let plan = mio_engine::plan(&c).unwrap();
    let jobs = mio_engine::run::job_files(&c.workflows, &plan, &d).unwrap();
    let eval = jobs.iter().find(|j| j.name == "tiny/net_on_test").unwrap();
    let path = d.join("eval.json");
    mio_engine::run::worker::write_job(&path, eval).unwrap();
    let early = mio(&d, &["worker", "eval.json"])
        .replace(&eval.inputs[0].folder, "[FOLDER]")
        .replace(&eval.inputs[1].folder, "[FOLDER]");
    insta::assert_snapshot!("worker_before_its_inputs", early);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(d.join("cut.json"), &text[..40]).unwrap();
    insta::assert_snapshot!("worker_damaged_job_file", mio(&d, &["worker", "cut.json"]));
}

#[test]
fn a_cluster_run_where_there_is_no_slurm() {
    let d = dir("noslurm");
    tiny(&d, &format!("{DATA}/train"));
    // A PATH without sbatch: nothing is written, the message says what is missing.
    let empty = d.join("bin");
    std::fs::create_dir_all(&empty).unwrap();
    let said = mio_with(
        &d,
        &["run", "tiny.mio", "--executor", "slurm"],
        &[("PATH", empty.to_str().unwrap())],
    );
    assert!(!d.join("runs").exists());
    insta::assert_snapshot!(said);
}
