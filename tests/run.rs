//! `mio run` end to end at a tiny size: the report and its numbers, the cache (what reruns
//! after which edit), and a training node killed with SIGKILL that resumes to the same weights.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data");

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mio-run-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A workflow small enough to train in a second: a plain model (mixed) and an explicit-prompt
/// model (two sequential stages), two tasks, two test images, a sweep.
fn tiny(train: &str, test: &str) -> String {
    format!(
        r#"use paper

workflow tiny {{
  seed = 3
  data train = images("{train}", patch = 24px, batch = 4)
  data test = images("{test}", limit = 2)

  model plain = srresnet(channels = 8, blocks = 1)
  model ep = srresnet(channels = 8, blocks = 1, prompt = explicit(dim = 8, map_size = 16))

  train plain on train {{
    tasks = [paper.noise, paper.jpeg]
    iters = 12
    ema = 0
  }}
  train ep on train {{
    strategy = sequential(order = [paper.noise, paper.jpeg])
    iters = [6, 6]
    ema = 0
    classifier = classifier(iters = 5, batch = 4)
  }}
  eval plain on test as plain_in {{ tasks = [paper.noise, paper.jpeg] }}
  eval ep on test as ep_in {{ tasks = [paper.noise, paper.jpeg] }}
  sweep ep on "{test}/chelsea.png" as blend {{ from = noise, to = jpeg, steps = 3 }}
  report {{ baseline = plain }}
}}
"#
    )
}

struct Workspace {
    dir: PathBuf,
    file: PathBuf,
}

impl Workspace {
    fn new(name: &str, text: &str) -> Workspace {
        let dir = temp_dir(name);
        let file = dir.join("tiny.mio");
        std::fs::write(&file, text).unwrap();
        Workspace { dir, file }
    }

    fn checked(&self) -> mio_engine::Checked {
        let c = mio_engine::check_file(&self.file, &[]).unwrap();
        assert!(c.is_ok(), "{}", c.render(mio_engine::Style::Plain));
        c
    }

    fn run(&self) -> mio_engine::run::Summary {
        let c = self.checked();
        let plan = mio_engine::plan(&c).unwrap();
        mio_engine::run::run(&c.workflows, &plan, &self.dir, Default::default())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The names of the nodes that would run now.
    fn stale(&self) -> BTreeSet<String> {
        let c = self.checked();
        let plan = mio_engine::plan(&c).unwrap();
        mio_engine::run::status(&c.workflows, &plan, &self.dir)
            .unwrap()
            .into_iter()
            .filter(|s| !s.cached)
            .map(|s| s.name)
            .collect()
    }

    /// `mio run tiny.mio -q` from the file's folder, as users run it; the report's Markdown.
    fn run_here(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_mio"))
            .args(["run", "tiny.mio", "-q"])
            .current_dir(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(self.dir.join("runs/tiny/report.md")).unwrap()
    }

    fn edit(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.file).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(&self.file, text.replacen(from, to, 1)).unwrap();
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn a_run_writes_the_report_and_its_numbers_match_the_saved_images() {
    let ws = Workspace::new(
        "report",
        &tiny(&format!("{DATA}/train"), &format!("{DATA}/test")),
    );
    let summary = ws.run();
    assert_eq!(summary.ran.len(), 11, "{:?}", summary.ran);
    let report = ws.dir.join("runs/tiny");
    for f in [
        "report.md",
        "report.html",
        "results.csv",
        "results.json",
        "manifest.yaml",
        "loss.svg",
    ] {
        assert!(report.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(
        md.contains("| PSNR | noise | jpeg | Avg | vs plain |"),
        "{md}"
    );
    assert!(
        md.contains("| input (degraded) |") && md.contains("| ep |"),
        "{md}"
    );
    // The sequential model's PSNR after each of its two stages, on both tasks.
    let stages = &json(&report.join("results.json"))["stages"];
    assert_eq!(stages.as_array().unwrap().len(), 1, "{stages}");
    assert_eq!(stages[0]["model"], "ep");
    let rows = stages[0]["psnr"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v.as_f64().unwrap() > 5.0)));
    assert!(report.join("stages_ep.svg").is_file());
    // Every image the HTML shows is embedded.
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.matches("data:image/png;base64,").count() >= 3);
    assert!(!html.contains("src=\"grid_"));
    // The table's numbers are the means of PSNRs recomputed from the saved images.
    let results = json(&report.join("results.json"));
    let table = &results["tables"][0];
    assert_eq!(table["metric"], "psnr");
    let row = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["label"] == "plain")
        .unwrap();
    let nodes = ws.dir.join("runs/nodes");
    let eval_dir = std::fs::read_dir(&nodes)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("eval-")
                && json(&p.join("results.json"))["model"] == "plain"
        })
        .unwrap();
    let ev = json(&eval_dir.join("results.json"));
    for (k, task) in ["noise", "jpeg"].iter().enumerate() {
        let images = ev["tasks"][k]["images"].as_array().unwrap();
        assert_eq!(images.len(), 2);
        let mut sum = 0.0;
        for im in images {
            let restored =
                mio_stdlib::image::load(&eval_dir.join(im["restored"].as_str().unwrap()))
                    .unwrap()
                    .image;
            let clean = mio_stdlib::image::load(Path::new(im["clean"].as_str().unwrap()))
                .unwrap()
                .image;
            let p = mio_stdlib::metrics::psnr(&restored, &clean, 4, false).unwrap();
            assert!((p - im["output"]["psnr"].as_f64().unwrap()).abs() < 1e-9);
            sum += p;
        }
        let shown = row["values"][task].as_f64().unwrap();
        assert!(
            (shown - sum / 2.0).abs() < 1e-9,
            "{task}: {shown} vs {}",
            sum / 2.0
        );
    }
    // Restoring in tiles equals restoring whole, and `mio restore` uses a run's model.
    let ep_dir = std::fs::read_dir(&nodes)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p.join("network.json")).is_ok_and(|t| t.contains("explicit"))
                && p.file_name().unwrap().to_string_lossy().contains("train-")
        })
        .unwrap();
    let dev = candle_core::Device::Cpu;
    let loaded =
        mio_engine::run::restore::load_model(&ep_dir, None, &Default::default(), &dev).unwrap();
    let img = mio_stdlib::image::load(Path::new(&format!("{DATA}/test/camera.png")))
        .unwrap()
        .image
        .crop(10, 20, 300, 200);
    let x = mio_engine::run::restore::to_tensor(&img, &dev).unwrap();
    let z = loaded
        .net
        .task_latent(loaded.task("jpeg").unwrap())
        .unwrap();
    let whole = mio_engine::run::restore::restore_tensor(&loaded.net, &x, Some(&z), 0, 0).unwrap();
    let tiled =
        mio_engine::run::restore::restore_tensor(&loaded.net, &x, Some(&z), 64, 16).unwrap();
    let d: f32 = (whole - tiled)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(d < 1e-4, "tiled differs by {d}");
    let out = ws.dir.join("restored");
    let mio = env!("CARGO_BIN_EXE_mio");
    let run = |extra: &[&str]| {
        Command::new(mio)
            .arg("restore")
            .arg("--model")
            .arg(&ep_dir)
            .args(extra)
            .arg(format!("{DATA}/test"))
            .arg(&out)
            .output()
            .unwrap()
    };
    let r = run(&[]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("give --task (one of noise, jpeg)"));
    let r = run(&["--task", "jpeg", "--tile", "128"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);

    // Four at a time (one training at a time): the same numbers.
    let par = Workspace::new(
        "report-jobs",
        &tiny(&format!("{DATA}/train"), &format!("{DATA}/test")),
    );
    let c = par.checked();
    let plan = mio_engine::plan(&c).unwrap();
    let options = mio_engine::run::Options {
        jobs: 4,
        quiet: true,
        ..Default::default()
    };
    let s = mio_engine::run::run(&c.workflows, &plan, &par.dir, options).unwrap();
    assert_eq!(s.ran.len(), 11);
    assert_eq!(json(&par.dir.join("runs/tiny/results.json")), results);

    // Nothing is redone.
    assert!(ws.stale().is_empty());
    let again = ws.run();
    assert!(again.ran.is_empty() && again.cached.len() == 11);
    // Each run keeps its manifest; manifest.yaml is the latest.
    let history: Vec<_> = std::fs::read_dir(report.join("history")).unwrap().collect();
    assert_eq!(history.len(), 2);
    let latest = std::fs::read_to_string(report.join("manifest.yaml")).unwrap();
    assert!(latest.contains("cached: true") && !latest.contains("cached: false"));
}

#[test]
fn each_edit_reruns_exactly_what_it_changes() {
    // Training images of its own, so one can be changed.
    let ws = Workspace::new("edits", "");
    let train = ws.dir.join("train");
    std::fs::create_dir_all(&train).unwrap();
    for f in ["astronaut.png", "coffee.png", "rocket.png"] {
        std::fs::copy(format!("{DATA}/train/{f}"), train.join(f)).unwrap();
    }
    std::fs::write(&ws.file, tiny("train", &format!("{DATA}/test"))).unwrap();
    ws.run();
    assert!(ws.stale().is_empty());

    // A comment: nothing.
    ws.edit(
        "workflow tiny {",
        "# a comment\nworkflow tiny {  # and another",
    );
    assert_eq!(ws.stale(), set(&[]));

    // An eval's metrics: that eval and the report.
    ws.edit(
        "eval plain on test as plain_in { tasks = [paper.noise, paper.jpeg] }",
        "eval plain on test as plain_in { tasks = [paper.noise, paper.jpeg], metrics = [psnr(crop = 2)] }",
    );
    assert_eq!(ws.stale(), set(&["tiny/plain_in", "tiny/report"]));
    ws.run();

    // The second stage's iterations: that stage and what reads it.
    ws.edit("iters = [6, 6]", "iters = [6, 7]");
    assert_eq!(
        ws.stale(),
        set(&[
            "tiny/ep stage 2/2",
            "tiny/ep stage curves",
            "tiny/ep_in",
            "tiny/blend",
            "tiny/report"
        ])
    );
    ws.run();

    // bf16 mixed precision for one model: that model's training and what reads it; the
    // weights it writes stay fp32, as every other model's.
    ws.edit(
        "    iters = 12\n    ema = 0\n",
        "    iters = 12\n    ema = 0\n    precision = bf16\n",
    );
    assert_eq!(
        ws.stale(),
        set(&["tiny/plain", "tiny/plain_in", "tiny/report"])
    );
    ws.run();
    assert!(ws.stale().is_empty());
    let mut weights = vec![];
    let mut folders = vec![ws.dir.clone()];
    while let Some(d) = folders.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                folders.push(p);
            } else if p.file_name().is_some_and(|n| n == "weights.safetensors") {
                weights.push(p);
            }
        }
    }
    assert!(weights.len() >= 3, "{weights:?}");
    for w in &weights {
        for (name, t) in candle_core::safetensors::load(w, &candle_core::Device::Cpu).unwrap() {
            assert_eq!(
                t.dtype(),
                candle_core::DType::F32,
                "{name} in {}",
                w.display()
            );
        }
    }

    // A training image: every training node and what follows; the test sets stay.
    let img = mio_stdlib::image::load(&train.join("coffee.png"))
        .unwrap()
        .image;
    let mut changed = img.clone();
    changed.data[0] = changed.data[0].wrapping_add(1);
    changed.save_png(&train.join("coffee.png")).unwrap();
    let stale = ws.stale();
    assert_eq!(
        stale,
        set(&[
            "tiny/plain",
            "tiny/ep stage 1/2",
            "tiny/ep stage 2/2",
            "tiny/ep stage curves",
            "tiny/ep classifier",
            "tiny/plain_in",
            "tiny/ep_in",
            "tiny/blend",
            "tiny/report"
        ])
    );
    let c = ws.checked();
    let plan = mio_engine::plan(&c).unwrap();
    let why = mio_engine::run::status(&c.workflows, &plan, &ws.dir).unwrap();
    let plain = why.iter().find(|s| s.name == "tiny/plain").unwrap();
    assert_eq!(plain.why, "an input file changed");
}

/// The newest `.partial` training checkpoint under `nodes`.
fn partial_checkpoint(nodes: &Path) -> Option<PathBuf> {
    std::fs::read_dir(nodes).ok()?.find_map(|e| {
        let p = e.ok()?.path();
        let name = p.file_name()?.to_string_lossy().into_owned();
        (name.starts_with("train-") && name.ends_with(".partial"))
            .then(|| p.join("stage1.safetensors"))
            .filter(|c| c.exists())
    })
}

#[test]
fn a_training_node_killed_with_sigkill_resumes_to_the_same_weights() {
    let text = format!(
        r#"use paper

workflow kill {{
  seed = 1
  data train = images("{DATA}/train", patch = 32px, batch = 4)
  model net = srresnet(channels = 16, blocks = 2)
  train net on train {{
    tasks = [paper.noise, paper.blur]
    iters = 150
    ema = 0.9
    checkpoint_every = 10
  }}
}}
"#
    );
    let mio = env!("CARGO_BIN_EXE_mio");
    let run_to_the_end = |ws: &Workspace| {
        let out = Command::new(mio)
            .args(["run", "-q"])
            .arg(&ws.file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let whole = Workspace::new("whole", &text);
    run_to_the_end(&whole);

    let killed = Workspace::new("killed", &text);
    let mut child = Command::new(mio)
        .args(["run", "-q"])
        .arg(&killed.file)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let nodes = killed.dir.join("runs/nodes");
    let start = std::time::Instant::now();
    while partial_checkpoint(&nodes).is_none() {
        assert!(start.elapsed().as_secs() < 120, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let ckpt = partial_checkpoint(&nodes).expect("the checkpoint survives the kill");
    let meta = candle_core::safetensors::load(&ckpt, &candle_core::Device::Cpu).unwrap();
    let done: Vec<f64> = meta["meta.steps_done"].to_vec1().unwrap();
    assert!(done[0] < 150.0, "killed before the end (at {})", done[0]);

    run_to_the_end(&killed);
    let weights = |ws: &Workspace, file: &str| -> Vec<u8> {
        let dir = std::fs::read_dir(ws.dir.join("runs/nodes"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.starts_with("train-") && !n.ends_with(".partial")
            })
            .unwrap();
        std::fs::read(dir.join(file)).unwrap()
    };
    assert!(weights(&whole, "weights.safetensors") == weights(&killed, "weights.safetensors"));
    assert!(weights(&whole, "model.safetensors") == weights(&killed, "model.safetensors"));
}

#[test]
fn ready_made_pairs_run_from_the_files_folder_show_their_input_in_the_report() {
    // Run as users do, from the file's folder (data paths relative to `.`): the report's image
    // grid finds the degraded input of a pair, not only the test sets' images.
    let ws = Workspace::new("pairs", "");
    let lq = ws.dir.join("lq");
    std::fs::create_dir_all(&lq).unwrap();
    std::fs::copy(format!("{DATA}/test/camera.png"), lq.join("camera.png")).unwrap();
    std::fs::write(
        &ws.file,
        format!(
            r#"use paper

workflow tiny {{
  data train = images("{DATA}/train", patch = 24px, batch = 2)
  data real = pairs(lq = "lq", gt = "{DATA}/test")
  model net = srresnet(channels = 8, blocks = 1)
  train net on train {{ tasks = [noise], iters = 2, ema = 0 }}
  eval net on real {{ tasks = [noise] }}
}}
"#
        ),
    )
    .unwrap();
    let md = ws.run_here();
    assert!(
        md.contains("**noise** (input | net | ground truth)"),
        "{md}"
    );
}

#[test]
fn composites_and_real_pairs_share_a_named_table_and_prompts_are_analysed() {
    // An adaptive and an explicit model trained on a composite beside a plain task, evaluated
    // on two of the Unknown composites and on ready-made pairs in one named table.
    let ws = Workspace::new("unknown", "");
    let lq = ws.dir.join("lq");
    std::fs::create_dir_all(&lq).unwrap();
    // The "real" pair: an image darkened and noisy, by the composite itself.
    let out = Command::new(env!("CARGO_BIN_EXE_mio"))
        .args([
            "degrade",
            &format!("{DATA}/test/camera.png"),
            "--task",
            "udc",
            "-o",
        ])
        .arg(lq.join("camera.png"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        &ws.file,
        format!(
            r#"use paper

task dim_noisy = lowlight(gamma = 2.0) then noise(sigma = 10..20)

workflow tiny {{
  data train = images("{DATA}/train", patch = 24px, batch = 4)
  data test = images("{DATA}/test", limit = 2)
  data real = pairs(lq = "lq", gt = "{DATA}/test")
  model ap = srresnet(channels = 8, blocks = 1, prompt = adaptive(dim = 8))
  model ep = srresnet(channels = 8, blocks = 1, prompt = explicit(dim = 8, map_size = 16))
  train ap on train {{ tasks = [paper.noise, dim_noisy], iters = 4, ema = 0 }}
  train ep on train {{
    tasks = [paper.noise, dim_noisy]
    iters = 4
    ema = 0
    classifier = classifier(iters = 3, batch = 4)
  }}
  eval ap on test as ap_in {{ tasks = [paper.noise, dim_noisy] }}
  eval ep on test as ep_known {{ tasks = [paper.noise, dim_noisy], labels = known }}
  eval ap on test as ap_unknown {{ tasks = [paper.mild, paper.udc], table = "Unknown" }}
  eval ap on real as ap_real {{ tasks = [udc_real], table = "Unknown" }}
}}

task udc_real = paper.udc
"#
        ),
    )
    .unwrap();
    let md = ws.run_here();
    // One table for the composites and the real pairs, the model one row across them.
    assert!(md.contains("## PSNR on Unknown"), "{md}");
    assert!(
        md.contains("| PSNR | mild | udc | udc_real | Avg |"),
        "the columns side by side: {md}"
    );
    let row = md
        .lines()
        .skip_while(|l| !l.starts_with("## PSNR on Unknown"))
        .find(|l| l.starts_with("| ap |"))
        .unwrap_or_else(|| panic!("no ap row: {md}"));
    assert_eq!(row.matches(" - ").count(), 0, "every column filled: {row}");
    // The composite's test set is its steps in order: darker than the input, and noisy.
    let results = json(&ws.dir.join("runs/tiny/results.json"));
    let text = results.to_string();
    assert!(text.contains("dim_noisy"), "{text}");
    // What the prompts learn: the adaptive model's CHI is a number, the explicit model told
    // the true task has one prompt per task, and the projection plots exist.
    let section = md
        .split("## What the prompts learn")
        .nth(1)
        .unwrap_or_else(|| panic!("no prompt analysis: {md}"));
    let line = |eval: &str| {
        section
            .lines()
            .find(|l| l.contains(&format!("| {eval} |")))
            .unwrap_or_else(|| panic!("no {eval}: {section}"))
            .to_string()
    };
    let ap = line("ap_in");
    let chi: f64 = ap
        .trim_end_matches(" |")
        .rsplit("| ")
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{ap}"));
    assert!(chi.is_finite() && chi >= 0.0, "{ap}");
    assert!(line("ep_known").contains("∞"), "{section}");
    let svgs: Vec<String> = std::fs::read_dir(ws.dir.join("runs/tiny"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("prompts_") && n.ends_with(".svg"))
        .collect();
    assert!(svgs.len() >= 3, "{svgs:?}");
    // Renaming the table rewrites the report and reruns no evaluation.
    assert!(ws.stale().is_empty());
    ws.edit("table = \"Unknown\"", "table = \"Real world\"");
    ws.edit("table = \"Unknown\"", "table = \"Real world\"");
    assert_eq!(ws.stale(), set(&["tiny/report"]));
}
