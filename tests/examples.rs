//! Every teaching file under examples/ runs end to end (they are tiny by design): each is
//! copied to a temporary folder with its data paths made absolute, run, and its report checked.

use std::path::{Path, PathBuf};

fn run_example(name: &str) -> (PathBuf, mio_engine::run::Summary) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples").join(name)).unwrap();
    let text = text.replace("\"../data/", &format!("\"{}/data/", root.display()));
    let dir = std::env::temp_dir().join(format!("mio-example-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let checked = mio_engine::check_file(&file, &[]).unwrap();
    assert!(
        checked.is_ok(),
        "{}",
        checked.render(mio_engine::Style::Plain)
    );
    let plan = mio_engine::plan(&checked).unwrap();
    let options = mio_engine::run::Options {
        quiet: true,
        ..Default::default()
    };
    let summary = mio_engine::run::run(&checked.workflows, &plan, &dir, options)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(summary.ran.len(), plan.graph.node_count(), "{name}");
    (dir, summary)
}

fn report(dir: &Path, folder: &str) -> String {
    std::fs::read_to_string(dir.join("runs").join(folder).join("report.md")).unwrap()
}

#[test]
fn custom_task_trains_and_evaluates_its_own_task() {
    let (dir, _) = run_example("custom_task.mio");
    let md = report(&dir, "custom_task");
    assert!(
        md.contains("| PSNR | noise | rain | downpour | rain_out | Avg |"),
        "{md}"
    );
    // The noise curve: one row per sigma, the input getting worse as sigma grows.
    let rows: Vec<(f64, f64)> = md
        .lines()
        .skip_while(|l| !l.starts_with("| sigma | input |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let c: Vec<&str> = l.split('|').map(str::trim).collect();
            (c[1].parse().unwrap(), c[2].parse().unwrap())
        })
        .collect();
    let sigmas: Vec<f64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(sigmas, [10.0, 30.0, 50.0, 70.0], "{md}");
    assert!(rows.windows(2).all(|w| w[1].1 < w[0].1), "{rows:?}");
}

#[test]
fn task_order_evaluates_both_orders() {
    let (dir, _) = run_example("task_order.mio");
    let md = report(&dir, "task_order");
    assert!(
        md.contains("| PSNR | lowlight | noise | sr | Avg |"),
        "{md}"
    );
    assert!(
        md.contains("| PSNR | sr | noise | lowlight | Avg |"),
        "{md}"
    );
}

#[test]
fn adaptive_prompt_is_evaluated_on_seen_and_unseen_tasks() {
    let (dir, _) = run_example("adaptive_prompt.mio");
    let md = report(&dir, "adaptive_prompt");
    assert!(md.contains("| PSNR | haze | jpeg | Avg |"), "{md}");
    let strip = dir.join("runs/adaptive_prompt/sweep_noise_to_lowlight_strip_chelsea.png");
    assert!(mio_stdlib::image::load(&strip).is_ok());
}

#[test]
fn the_interpolation_sweep_writes_its_strip() {
    let (dir, _) = run_example("interpolation_sweep.mio");
    let folder = dir.join("runs/interpolation_sweep");
    let strip = folder.join("sweep_blend_strip_chelsea.png");
    let img = mio_stdlib::image::load(&strip).unwrap().image;
    // The input and five blends side by side.
    let one = mio_stdlib::image::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/test/chelsea.png"),
    )
    .unwrap()
    .image;
    assert_eq!(img.width, 6 * one.width + 5 * 4);
    assert!(report(&dir, "interpolation_sweep").contains("| a | mean intensity | PSNR vs clean |"));
}

#[test]
fn the_matrix_gathers_its_six_rows_into_one_table() {
    let (dir, summary) = run_example("matrix.mio");
    let md = report(&dir, "grid");
    let rows = md
        .lines()
        .skip_while(|l| !l.starts_with("| PSNR"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .count();
    assert_eq!(rows, 7, "the input row and six models:\n{md}");
    // The three test sets are made once for the six rows.
    let sets = summary
        .ran
        .iter()
        .filter(|n| n.starts_with("test/"))
        .count();
    assert_eq!(sets, 3, "{:?}", summary.ran);
}

#[test]
fn the_transformers_train_with_prompts_and_each_stage_draws_its_loss() {
    let (dir, _) = run_example("transformers.mio");
    let md = report(&dir, "transformers");
    for row in [
        "| restormer_ep |",
        "| restormer_ep (true task) |",
        "| swinir_ap |",
        "| uformer_ap |",
        "| promptir |",
    ] {
        assert!(md.contains(row), "{row} missing:\n{md}");
    }
    // Restormer's explicit prompts need the classifier at test time.
    assert!(md.contains("Task classifier for `restormer_ep`"), "{md}");
    assert!(md.contains("![training loss](loss.png)"), "{md}");
    let loss = dir.join("runs/transformers/loss.png");
    assert_eq!(mio_stdlib::image::load(&loss).unwrap().image.width, 800);
    // Every training stage drew its own curve beside its log.
    let stages: Vec<_> = std::fs::read_dir(dir.join("runs/nodes"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("train-")
        })
        .collect();
    // Three stages each for Restormer, SwinIR and Uformer; PromptIR's mixed training is one.
    assert_eq!(stages.len(), 10);
    for s in stages {
        assert!(
            mio_stdlib::image::load(&s.join("loss.png")).is_ok(),
            "{}",
            s.display()
        );
    }
}
