//! Fault injection: `mio run` under the things that happen to real runs. Two runs in one
//! folder, kill -9 at chosen write points, SIGTERM during training and during the task
//! classifier, a panic inside a step, damaged outputs and checkpoints, a full disk, and test
//! folders with tiny, oddly named and colliding images. Each case asserts that nothing finished
//! is lost or changed: the final results equal those of an undisturbed run, byte for byte.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data");
const MIO: &str = env!("CARGO_BIN_EXE_mio");

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mio-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Two models (one with explicit prompts, two stages and a task classifier), two tasks, two
/// test images, an interpolation sweep and the report: every kind of node, in a few seconds.
fn workflow(classifier_iters: usize) -> String {
    format!(
        r#"use paper

workflow tiny {{
  seed = 5
  data train = images("{DATA}/train", patch = 24px, batch = 4)
  data test = images("{DATA}/test", limit = 2)

  model plain = srresnet(channels = 8, blocks = 1)
  model ep = srresnet(channels = 8, blocks = 1, prompt = explicit(dim = 8, map_size = 16))

  train plain on train {{
    tasks = [paper.noise, paper.haze]
    iters = 10
    ema = 0.9
    checkpoint_every = 3
  }}
  train ep on train {{
    strategy = sequential(order = [paper.noise, paper.haze])
    iters = [5, 5]
    ema = 0
    checkpoint_every = 2
    classifier = classifier(iters = {classifier_iters}, batch = 4)
  }}
  eval plain on test as plain_in {{ tasks = [paper.noise, paper.haze] }}
  eval ep on test as ep_in {{ tasks = [paper.noise, paper.haze] }}
  sweep ep on "{DATA}/test/chelsea.png" as blend {{ from = noise, to = haze, steps = 3 }}
  report {{ baseline = plain }}
}}
"#
    )
}

struct Ws {
    dir: PathBuf,
    file: PathBuf,
}

impl Ws {
    fn new(name: &str, text: &str) -> Ws {
        let dir = temp_dir(name);
        let file = dir.join("tiny.mio");
        std::fs::write(&file, text).unwrap();
        Ws { dir, file }
    }

    fn cmd(&self, env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(MIO);
        c.args(["run", "-q"]).arg(&self.file);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, env: &[(&str, &str)]) -> Output {
        self.cmd(env).output().unwrap()
    }

    fn run_ok(&self) -> String {
        let out = self.run(&[]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "mio run failed:\n{err}");
        err
    }

    fn spawn(&self, env: &[(&str, &str)]) -> Child {
        self.cmd(env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The first node folder under `runs/nodes` whose name starts with `kind` (`eval-`,
    /// `train-`), finished or not.
    fn node(&self, kind: &str) -> PathBuf {
        std::fs::read_dir(self.nodes())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} node"))
    }

    fn nodes(&self) -> PathBuf {
        self.dir.join("runs/nodes")
    }

    fn results(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("runs/tiny/results.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Each finished node's files (name -> bytes), records and image paths aside.
    fn outputs(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = vec![];
        for e in std::fs::read_dir(self.nodes()).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !p.is_dir() || name.contains('.') {
                continue;
            }
            for f in [
                "weights.safetensors",
                "model.safetensors",
                "classifier.safetensors",
            ] {
                if let Ok(b) = std::fs::read(p.join(f)) {
                    out.push((format!("{name}/{f}"), b));
                }
            }
        }
        out.sort();
        out
    }
}

/// Asserts what every finished run folder must be: no working folders, no temporary files,
/// and each stage's loss log one line per step, in order.
fn assert_clean(ws: &Ws) {
    let mut todo = vec![ws.nodes()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".partial"),
                "a working folder is left: {}",
                p.display()
            );
            assert!(
                !mio_stdlib::fsio::is_temp(p.file_name().unwrap()),
                "a temporary file is left: {}",
                p.display()
            );
            if p.is_dir() {
                todo.push(p);
            } else if name == "losses.jsonl" {
                let text = std::fs::read_to_string(&p).unwrap();
                for (k, line) in text.lines().enumerate() {
                    let j: serde_json::Value = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("{}: line {k}: {e}", p.display()));
                    assert_eq!(j["step"].as_u64(), Some(k as u64), "{}", p.display());
                }
            }
        }
    }
}

/// The run ended as an undisturbed one: the same results and weights, and clean folders.
fn assert_as_undisturbed(ws: &Ws, results: &serde_json::Value, outputs: &[(String, Vec<u8>)]) {
    assert_eq!(&ws.results(), results);
    assert!(
        ws.outputs() == outputs,
        "the weights differ from an undisturbed run's"
    );
    assert_clean(ws);
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for a child, killing it (and failing) after `limit`: a hang is a failure, not a
/// stuck test.
fn finish(mut child: Child, limit: Duration) -> (Option<i32>, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                use std::io::Read as _;
                let _ = s.read_to_string(&mut err);
            }
            return (status.code(), err);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("mio did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

/// The reference: one undisturbed run of `text`.
fn reference(name: &str, text: &str) -> (serde_json::Value, Vec<(String, Vec<u8>)>) {
    let ws = Ws::new(name, text);
    ws.run_ok();
    assert_clean(&ws);
    (ws.results(), ws.outputs())
}

#[test]
fn a_second_run_in_the_same_folder_is_refused_naming_the_first() {
    // Long enough that the first run still holds the folder when the second starts.
    let text = workflow(40).replace("    iters = 10\n", "    iters = 200\n");
    let (results, outputs) = reference("lock-ref", &text);
    let ws = Ws::new("lock", &text);
    let first = ws.spawn(&[]);
    let pid = format!("\"pid\":{}", first.id());
    let lock = ws.dir.join("runs/.mio-lock");
    wait_until("the first run's lock", Duration::from_secs(60), || {
        std::fs::read_to_string(&lock).is_ok_and(|t| t.contains(&pid))
    });
    let second = ws.run(&[]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is in use by") && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    let (code, err) = finish(first, Duration::from_secs(300));
    assert_eq!(code, Some(0), "{err}");
    assert_as_undisturbed(&ws, &results, &outputs);

    // A holder killed with SIGKILL leaves its lock file, not its lock: the next run goes on.
    let again = Ws::new("lock-stale", &text);
    let mut doomed = again.spawn(&[]);
    let pid = format!("\"pid\":{}", doomed.id());
    let lock = again.dir.join("runs/.mio-lock");
    wait_until("the doomed run's lock", Duration::from_secs(60), || {
        std::fs::read_to_string(&lock).is_ok_and(|t| t.contains(&pid))
    });
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    again.run_ok();
    assert_as_undisturbed(&again, &results, &outputs);
}

#[test]
fn a_run_killed_at_any_write_resumes_to_the_same_results() {
    let text = workflow(12);
    let (results, outputs) = reference("kill-ref", &text);
    // Write points spread over the whole run: test sets, checkpoints, stages, the classifier,
    // evals, the sweep, the report, the manifest (two points per atomic write: the temporary
    // file complete, then renamed).
    let mut killed = 0;
    for n in [
        1, 2, 5, 9, 14, 20, 27, 35, 44, 54, 65, 77, 90, 104, 119, 135, 150, 165, 180,
    ] {
        let ws = Ws::new(&format!("kill-{n}"), &text);
        let out = ws.run(&[("MIO_KILL_AT_WRITE", &n.to_string())]);
        if out.status.code().is_none() {
            killed += 1;
            // Killed: a rerun picks up where it stopped.
            ws.run_ok();
        } else {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(ws.results(), results, "killed at write {n}");
        assert!(
            ws.outputs() == outputs,
            "killed at write {n}: the weights differ"
        );
        assert_clean(&ws);
        // And nothing is left to do.
        let again = ws.run(&[]);
        let said = String::from_utf8_lossy(&again.stdout);
        assert!(
            said.contains(": 0 step(s) run"),
            "killed at write {n}, then: {said}"
        );
    }
    assert!(killed >= 15, "only {killed} of the runs were killed");
}

#[test]
fn sigterm_saves_training_and_the_classifier_and_a_rerun_ends_as_if_never_stopped() {
    // A first stage and a classifier long enough to be caught in the act (the signal must land
    // while the checkpoint seen is still there, however slow the machine).
    let text = workflow(400).replace("    iters = 10\n", "    iters = 200\n");
    assert!(text.contains("iters = 200"));
    let (results, outputs) = reference("term-ref", &text);
    let ws = Ws::new("term", &text);
    for (what, file) in [
        ("a training stage", "stage1.safetensors"),
        ("the classifier", "classifier.ckpt.safetensors"),
    ] {
        let child = ws.spawn(&[]);
        let nodes = ws.nodes();
        wait_until(what, Duration::from_secs(120), || {
            std::fs::read_dir(&nodes).is_ok_and(|rd| {
                rd.flatten().any(|e| {
                    e.path().join(file).exists()
                        && e.path().extension().is_some_and(|x| x == "partial")
                })
            })
        });
        signal(&child, "-TERM");
        let (code, err) = finish(child, Duration::from_secs(120));
        if code == Some(0) {
            // It finished in the moment between the look and the signal: nothing to resume.
            continue;
        }
        assert_eq!(code, Some(130), "stopping {what}: {err}");
        assert!(err.contains("progress is saved"), "{err}");
        let saved = std::fs::read_dir(&nodes)
            .unwrap()
            .flatten()
            .any(|e| e.path().join(file).exists());
        assert!(saved, "no checkpoint of {what} after SIGTERM");
    }
    ws.run_ok();
    assert_as_undisturbed(&ws, &results, &outputs);
}

#[test]
fn a_panic_in_a_step_ends_the_run_with_its_message_instead_of_hanging() {
    let ws = Ws::new("panic", &workflow(10));
    for jobs in ["1", "3"] {
        let child = Command::new(MIO)
            .args(["run", "-q", "--jobs", jobs])
            .arg(&ws.file)
            .env("MIO_PANIC_IN", "tiny/plain_in")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (code, err) = finish(child, Duration::from_secs(300));
        assert_eq!(code, Some(1), "--jobs {jobs}: {err}");
        assert!(
            err.contains("tiny/plain_in") && err.contains("mio crashed in this step"),
            "{err}"
        );
        // The report of an earlier run would say it is outdated; here there is none yet, and
        // the failed step left no empty working folder.
        assert!(!ws.nodes().read_dir().unwrap().flatten().any(|e| e
            .file_name()
            .to_string_lossy()
            .starts_with("eval-")
            && e.file_name().to_string_lossy().ends_with(".partial")));
    }
    ws.run_ok();
    // A later failure marks the published report as outdated, keeping its numbers.
    let out = ws.run(&[("MIO_PANIC_IN", "tiny/report")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "everything is cached: the report does not rerun"
    );
    std::fs::write(&ws.file, workflow(10).replace("steps = 3", "steps = 4")).unwrap();
    let out = ws.run(&[("MIO_PANIC_IN", "tiny/blend")]);
    assert_eq!(out.status.code(), Some(1));
    let md = std::fs::read_to_string(ws.dir.join("runs/tiny/report.md")).unwrap();
    assert!(md.starts_with("<!-- mio: outdated -->"), "{md}");
    assert!(
        md.contains("tiny/blend") && md.contains("| plain |"),
        "{md}"
    );
}

#[test]
fn damaged_outputs_and_checkpoints_are_noticed_moved_aside_and_rebuilt() {
    let text = workflow(10);
    let (results, outputs) = reference("damage-ref", &text);
    let ws = Ws::new("damage", &text);
    ws.run_ok();
    // One byte of a finished stage's weights changed, same length.
    let stage = std::fs::read_dir(ws.nodes())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("model.safetensors").exists())
        .unwrap();
    let w = stage.join("weights.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&w, &bytes).unwrap();
    let err = ws.run_ok();
    assert!(
        err.contains("damaged") && err.contains("weights.safetensors"),
        "{err}"
    );
    let aside: Vec<_> = std::fs::read_dir(ws.nodes())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged folder is kept, aside");
    assert_as_undisturbed(&ws, &results, &outputs);

    // A checkpoint truncated in a working folder (a full disk, a bad copy): the step starts
    // over with a warning instead of failing on every rerun.
    let ws = Ws::new("damage-ckpt", &text);
    let partial_checkpoint = || {
        std::fs::read_dir(ws.nodes()).ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.path().join("stage1.safetensors"))
                .find(|p| p.exists())
        })
    };
    // Each run publishes one file and is killed just after: step by step to a checkpoint.
    let mut tries = 0;
    let ckpt = loop {
        let out = ws.run(&[("MIO_KILL_AT_WRITE", "2")]);
        assert!(out.status.code().is_none(), "not killed");
        if let Some(c) = partial_checkpoint() {
            break c;
        }
        tries += 1;
        assert!(tries < 100, "no checkpoint in a working folder");
    };
    let len = std::fs::metadata(&ckpt).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ckpt)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = ws.run_ok();
    assert!(
        err.contains("cannot be read") && err.contains("starting this step over"),
        "{err}"
    );
    assert_as_undisturbed(&ws, &results, &outputs);
}

#[test]
fn a_full_disk_fails_clearly_and_a_rerun_with_room_finishes() {
    let text = workflow(10);
    let (results, outputs) = reference("disk-ref", &text);
    let root = temp_dir("disk");
    let mnt = root.join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=600k", "tmpfs"])
        .arg(&mnt)
        .output();
    match &mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            println!(
                "skipped: cannot mount a small tmpfs here ({})",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            println!("skipped: cannot run mount ({e})");
            return;
        }
    }
    let file = mnt.join("tiny.mio");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(MIO)
        .args(["run", "-q"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let remount = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(remount.success());
    let rerun = Command::new(MIO)
        .args(["run", "-q"])
        .arg(&file)
        .output()
        .unwrap();
    let ws = Ws {
        dir: mnt.clone(),
        file,
    };
    let (got, got_outputs) = (rerun.status.success().then(|| ws.results()), ws.outputs());
    let _ = Command::new("umount").arg(&mnt).status();
    assert!(!out.status.success(), "the small disk did not fill");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains(&mnt.display().to_string()),
        "the error names no file: {err}"
    );
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert_eq!(got.unwrap(), results);
    assert_eq!(got_outputs, outputs);
}

fn png(path: &Path, w: usize, h: usize) {
    let mut img = mio_stdlib::image::Image::new(w, h);
    for (k, v) in img.data.iter_mut().enumerate() {
        *v = (k * 37 % 251) as u8;
    }
    img.save_png(path).unwrap();
}

#[test]
fn tiny_oddly_named_and_colliding_images_are_all_evaluated_and_restored() {
    let root = temp_dir("odd");
    let test = root.join("test");
    std::fs::create_dir_all(&test).unwrap();
    std::fs::copy(format!("{DATA}/test/chelsea.png"), test.join("a.png")).unwrap();
    // The same stem as JPEG, and tiny sizes, under the sr scale on a side.
    let jpeg = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 5, y as u8 * 7, 90]));
    jpeg.save(test.join("a.jpg")).unwrap();
    for (name, w, h) in [("tiny.png", 2, 2), ("row.png", 300, 2), ("col.png", 8, 1)] {
        png(&test.join(name), w, h);
    }
    #[cfg(unix)]
    let odd: Vec<PathBuf> = {
        use std::os::unix::ffi::OsStrExt as _;
        [&b"\xffodd.png"[..], &b"\xfeodd.png"[..]]
            .iter()
            .map(|n| test.join(std::ffi::OsStr::from_bytes(n)))
            .collect()
    };
    #[cfg(unix)]
    for p in &odd {
        std::fs::copy(format!("{DATA}/test/camera.png"), p).unwrap();
    }
    let text = format!(
        r#"use paper

workflow odd {{
  data train = images("{DATA}/train", patch = 24px, batch = 2)
  data test = images("test")
  model net = srresnet(channels = 4, blocks = 1, prompt = adaptive(dim = 4))
  train net on train {{ tasks = [paper.sr, paper.haze], iters = 2, ema = 0 }}
  eval net on test {{ tasks = [paper.sr, paper.haze], metrics = [psnr(crop = 0)] }}
  sweep net on test as blend {{ from = sr, to = haze, steps = 2 }}
}}
"#
    );
    let ws = Ws {
        dir: root.clone(),
        file: root.join("odd.mio"),
    };
    std::fs::write(&ws.file, text).unwrap();
    ws.run_ok();
    let eval = ws.node("eval-");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval.join("results.json")).unwrap()).unwrap();
    let expected = if cfg!(unix) { 7 } else { 5 };
    for task in results["tasks"].as_array().unwrap() {
        let images = task["images"].as_array().unwrap();
        assert_eq!(images.len(), expected, "{task}");
        let mut files: Vec<&str> = images
            .iter()
            .map(|i| i["restored"].as_str().unwrap())
            .collect();
        for f in &files {
            assert!(eval.join(f).is_file(), "{f} missing");
        }
        files.sort();
        files.dedup();
        assert_eq!(
            files.len(),
            expected,
            "two images share an output: {files:?}"
        );
    }
    // `mio degrade` on an image smaller than the sr scale.
    let out = Command::new(MIO)
        .args(["degrade", "--task", "sr", "-o"])
        .arg(root.join("tiny_sr.png"))
        .arg(test.join("tiny.png"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `mio restore`: never over an input; every image restored under a name of its own.
    let train = ws.node("train-");
    let restore = |input: &Path, output: &Path| {
        Command::new(MIO)
            .arg("restore")
            .arg("--model")
            .arg(&train)
            .arg(input)
            .arg(output)
            .output()
            .unwrap()
    };
    let before: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&test)
        .unwrap()
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
        .collect();
    for (input, output) in [
        (test.clone(), test.clone()),
        (test.join("a.png"), test.join("a.png")),
        (test.clone(), root.join("test/.")),
    ] {
        let out = restore(&input, &output);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("replace"), "{err}");
    }
    for (p, bytes) in &before {
        assert_eq!(&std::fs::read(p).unwrap(), bytes, "{} changed", p.display());
    }
    let out_dir = root.join("restored");
    let out = restore(&test, &out_dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("a.jpg.png"),
        "the renamed output is announced: {err}"
    );
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), expected);
    let tiny = mio_stdlib::image::load(&out_dir.join("tiny.png"))
        .unwrap()
        .image;
    assert_eq!((tiny.width, tiny.height), (2, 2));
    // A file that is not an image among them: skipped with its name, the rest restored.
    std::fs::write(test.join("broken.png"), b"not a png").unwrap();
    let out = restore(&test, &root.join("restored2"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("skipped") && err.contains("broken.png"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(root.join("restored2")).unwrap().count(),
        expected
    );
}

#[test]
fn a_depth_map_is_part_of_the_key_and_a_wrong_one_is_an_error_naming_it() {
    let root = temp_dir("depth");
    let test = root.join("test");
    std::fs::create_dir_all(&test).unwrap();
    std::fs::copy(format!("{DATA}/test/chelsea.png"), test.join("cat.png")).unwrap();
    let (w, h) = {
        let i = mio_stdlib::image::load(&test.join("cat.png"))
            .unwrap()
            .image;
        (i.width as u32, i.height as u32)
    };
    let depth = |shift: u32, ww: u32| {
        image::GrayImage::from_fn(ww, h, |x, _| image::Luma([((x + shift) % 256) as u8]))
            .save(test.join("cat.depth.png"))
            .unwrap()
    };
    depth(0, w);
    let text = format!(
        r#"use paper

workflow d {{
  data train = images("{DATA}/train", patch = 24px, batch = 2)
  data test = images("test")
  model net = srresnet(channels = 4, blocks = 1)
  train net on train {{ tasks = [paper.haze], iters = 2, ema = 0 }}
  eval net on test {{ tasks = [paper.haze] }}
}}
"#
    );
    let ws = Ws {
        dir: root.clone(),
        file: root.join("d.mio"),
    };
    std::fs::write(&ws.file, text).unwrap();
    ws.run_ok();
    let explain = || {
        let out = Command::new(MIO)
            .args(["run", "--explain"])
            .arg(&ws.file)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(explain().contains("0 of"), "{}", explain());
    depth(40, w);
    let why = explain();
    assert!(
        why.lines().any(|l| l.contains("will run")
            && l.contains("test/haze")
            && l.contains("an input file changed")),
        "{why}"
    );
    depth(0, w + 1);
    let out = ws.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cat.depth.png") && err.contains("depth map"),
        "{err}"
    );
}

#[test]
fn a_missing_folder_fails_the_run_before_any_work_and_explain_says_so() {
    let text = workflow(10).replace(
        &format!("images(\"{DATA}/test\", limit = 2)"),
        "images(\"no/such/folder\", limit = 2)",
    );
    let ws = Ws::new("missing", &text);
    let out = ws.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no/such/folder: no such folder; nothing was run"),
        "{err}"
    );
    // Not one step ran: no finished or working folder, though training comes first.
    assert_eq!(std::fs::read_dir(ws.nodes()).unwrap().count(), 0);
    let explain = Command::new(MIO)
        .args(["run", "--explain"])
        .arg(&ws.file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("test/noise") && l.contains("no/such/folder does not exist")),
        "{text}"
    );
}
