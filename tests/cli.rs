//! The `mio` binary as a user runs it: exit codes, output streams, formatting in place.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mio"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("NO_COLOR")
        .output()
        .expect("run mio")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mio-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn check_ok_exits_zero() {
    let out = mio(&["check", "workflows/quickstart.mio"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok (1 workflow)"));
}

#[test]
fn errors_exit_one_on_stderr_without_colour_when_piped() {
    let out = mio(&["check", "tests/fixtures/invalid/many_errors.mio"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("mio::E014") && err.contains("did you mean `channels`?"),
        "{err}"
    );
    assert!(
        err.contains("5 errors in tests/fixtures/invalid/many_errors.mio"),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no ANSI colour when stderr is not a terminal"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_missing_file_is_a_user_error() {
    let out = mio(&["check", "no/such.mio"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read no/such.mio"));
}

#[test]
fn bad_usage_is_reported_by_clap() {
    let out = mio(&["graph", "workflows/quickstart.mio", "--format", "png"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("possible values: dot, mermaid"));
}

#[test]
fn internal_failure_exits_two() {
    // Formatting a file in a folder we cannot write to is mio's failure, not the file's.
    let dir = temp_dir("readonly");
    let f = dir.join("a.mio");
    std::fs::write(&f, "task a   =   noise()\n").unwrap();
    let mut perms = std::fs::metadata(&dir).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt;
    perms.set_mode(0o555);
    std::fs::set_permissions(&dir, perms.clone()).unwrap();
    let out = mio(&["fmt", f.to_str().unwrap()]);
    perms.set_mode(0o755);
    std::fs::set_permissions(&dir, perms).unwrap();
    // Root may write anyway; then the file must simply be formatted.
    if out.status.code() == Some(0) {
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "task a = noise()\n");
    } else {
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(text(&out.stderr).starts_with("mio: cannot write"));
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "task a   =   noise()\n",
            "nothing lost"
        );
    }
}

#[test]
fn fmt_formats_in_place_and_check_mode_reports() {
    let dir = temp_dir("fmt");
    let f = dir.join("w.mio");
    let messy = "use paper\n# keep me\nworkflow w {\nseed=0   # trailing\n\n\n  data d=images( \"x\",patch=64 )\n}\n";
    std::fs::write(&f, messy).unwrap();
    let path = f.to_str().unwrap();
    let out = mio(&["fmt", "--check", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not formatted"));
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        messy,
        "--check does not write"
    );
    let out = mio(&["fmt", path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let formatted = std::fs::read_to_string(&f).unwrap();
    assert_eq!(
        formatted,
        "use paper\n\n# keep me\nworkflow w {\n  seed = 0 # trailing\n\n  data d = images(\"x\", patch = 64)\n}\n"
    );
    assert_eq!(mio(&["fmt", "--check", path]).status.code(), Some(0));
    assert!(
        std::fs::read_dir(&dir).unwrap().count() == 1,
        "no temporary file left behind"
    );
}

#[test]
fn fmt_refuses_a_file_with_syntax_errors() {
    let dir = temp_dir("fmt-bad");
    let f = dir.join("bad.mio");
    std::fs::write(&f, "workflow w {\n  seed: 0\n}\n").unwrap();
    let out = mio(&["fmt", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("expected `=`, found `:`"));
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "workflow w {\n  seed: 0\n}\n"
    );
}

#[test]
fn every_workflow_in_the_repo_is_formatted() {
    for dir in [
        "workflows",
        "workflows/paper",
        "examples",
        "catalog/src/prelude",
    ] {
        for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
            .unwrap()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "mio") {
                let out = mio(&["fmt", "--check", e.path().to_str().unwrap()]);
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{}: {}",
                    e.path().display(),
                    text(&out.stderr)
                );
            }
        }
    }
}

#[test]
fn plan_lists_nodes_in_dependency_order() {
    let out = mio(&["plan", "workflows/quickstart.mio"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(
        plan.starts_with("workflows/quickstart.mio: 59 node(s) in 1 workflow(s)"),
        "{plan}"
    );
    let pos = |s: &str| plan.find(s).unwrap_or_else(|| panic!("{s} not in\n{plan}"));
    assert!(pos("quickstart/seq stage 1/7") < pos("quickstart/seq stage 7/7"));
    assert!(pos("quickstart/seq stage 7/7") < pos("quickstart/seq_in"));
    assert!(pos("quickstart/seq_ep classifier") < pos("quickstart/seq_ep_in"));
    assert!(pos("quickstart/seq_ep_in") < pos("quickstart/report"));
    // The stage curves of each sequential training, after its last stage, before the report.
    assert!(pos("quickstart/seq stage 7/7") < pos("quickstart/seq stage curves"));
    assert!(pos("quickstart/seq_ep stage curves") < pos("quickstart/report"));
    assert!(!plan.contains("quickstart/mixed stage curves"), "{plan}");
}

#[test]
fn set_overrides_are_checked_like_the_file() {
    let out = mio(&[
        "plan",
        "workflows/quickstart.mio",
        "--set",
        "train.seq.iters=[1, 2]",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("mio::E051") && err.contains("--set train.seq.iters=[1, 2]"),
        "{err}"
    );
    let out = mio(&[
        "plan",
        "workflows/quickstart.mio",
        "--set",
        "train.seq.iters=2k",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("2000 iterations: +blur"));
}

#[test]
fn graph_exports_dot_and_mermaid() {
    let dot = text(&mio(&["graph", "workflows/quickstart.mio", "--format", "dot"]).stdout);
    assert!(dot.starts_with("digraph mio {") && dot.trim_end().ends_with('}'));
    assert_eq!(dot.matches(" -> ").count(), dot.matches("->").count());
    assert!(
        dot.contains("[label=\"train\\nquickstart/seq stage 2/7\"]"),
        "{dot}"
    );
    let mermaid = text(&mio(&["graph", "workflows/quickstart.mio", "--format", "mermaid"]).stdout);
    assert!(mermaid.starts_with("flowchart LR\n"));
    assert_eq!(
        mermaid.matches(" --> ").count(),
        dot.matches(" -> ").count()
    );
}

#[test]
fn plan_of_a_library_file_says_there_is_nothing_to_plan() {
    let out = mio(&["plan", "tests/fixtures/invalid/no_workflow.mio"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("mio::E005"));
    // It still checks clean.
    assert_eq!(
        mio(&["check", "tests/fixtures/invalid/no_workflow.mio"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn a_closed_pipe_is_not_a_crash() {
    use std::io::Read;
    use std::process::Stdio;
    // A plan far larger than a pipe's buffer, so the writer sees the reader hang up.
    let dir = temp_dir("pipe");
    let f = dir.join("big.mio");
    let mut src = String::from("use paper\nworkflow big {\n  data d = images(\"x\")\n");
    for i in 0..400 {
        src.push_str(&format!(
            "  model m{i} = srresnet(channels = {})\n  train m{i} on d {{ strategy = sequential(order = paper.order_cnn), iters = 10 }}\n",
            i + 1
        ));
    }
    src.push_str("}\n");
    std::fs::write(&f, src).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mio"))
        .args(["plan", f.to_str().unwrap()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, then hang up, like `mio plan ... | head -c 1`.
    let mut stdout = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    stdout.read_exact(&mut one).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"));
}

#[test]
fn degrade_is_deterministic_and_compare_measures_it() {
    let dir = temp_dir("degrade");
    let out = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let o = mio(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    let img = "data/test/chelsea.png";
    let said = run(&[
        "degrade",
        img,
        "--task",
        "noise",
        "--seed",
        "3",
        "-o",
        &out("a.png"),
    ]);
    run(&[
        "degrade",
        img,
        "--task",
        "noise",
        "--seed",
        "3",
        "-o",
        &out("b.png"),
    ]);
    run(&[
        "degrade",
        img,
        "--task",
        "noise",
        "--seed",
        "4",
        "-o",
        &out("c.png"),
    ]);
    let bytes = |n: &str| std::fs::read(dir.join(n)).unwrap();
    assert_eq!(bytes("a.png"), bytes("b.png"), "same seed, same bytes");
    assert_ne!(bytes("a.png"), bytes("c.png"));
    assert!(
        said.contains("noise (sigma = ") && said.contains("dB against the input"),
        "{said}"
    );
    // --set fixes a parameter; the out-of-distribution variants are in scope too.
    let said = run(&[
        "degrade",
        img,
        "--task",
        "noise",
        "--set",
        "sigma=50",
        "-o",
        &out("d.png"),
    ]);
    assert!(said.contains("sigma = 50"), "{said}");
    let said = run(&[
        "degrade",
        img,
        "--task",
        "paper.jpeg_out",
        "-o",
        &out("e.png"),
    ]);
    let q: f64 = said
        .split("quality = ")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((10.0..=30.0).contains(&q), "{said}");
    // compare prints PSNR and SSIM, and the Y channel differs from RGB.
    let rgb = run(&["compare", img, &out("d.png"), "--crop", "4"]);
    let y = run(&["compare", img, &out("d.png"), "--crop", "4", "--y"]);
    let psnr = |s: &str| -> f64 { s.split_whitespace().nth(1).unwrap().parse().unwrap() };
    assert!((13.5..16.0).contains(&psnr(&rgb)), "{rgb}");
    assert_ne!(psnr(&rgb), psnr(&y));
    assert!(rgb.contains("SSIM 0."));
    // The contact sheet holds the clean image and seven tasks.
    let sheet = run(&["degrade", img, "--sheet", "-o", &out("sheet.png")]);
    assert_eq!(sheet.matches("row ").count(), 8, "{sheet}");
}

#[test]
fn degrade_and_compare_report_user_errors() {
    let dir = temp_dir("degrade-errors");
    let o = dir.join("x.png");
    let out = mio(&[
        "degrade",
        "data/test/chelsea.png",
        "--task",
        "nosie",
        "-o",
        o.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("did you mean `noise`?"),
        "{}",
        text(&out.stderr)
    );
    let out = mio(&[
        "degrade",
        "data/test/chelsea.png",
        "--task",
        "noise",
        "--set",
        "sigma=-3",
        "-o",
        o.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("`sigma` must be >= 0"),
        "{}",
        text(&out.stderr)
    );
    let out = mio(&[
        "degrade",
        "no/such.png",
        "--task",
        "noise",
        "-o",
        o.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no/such.png: no such file"));
    assert!(!o.exists(), "nothing written on failure");
    let out = mio(&["compare", "data/test/chelsea.png", "data/test/camera.png"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("differ in size"));
}

#[test]
fn a_run_whose_images_are_missing_fails_with_a_message_and_exit_one() {
    let dir = temp_dir("run-missing");
    let file = dir.join("m.mio");
    std::fs::write(
        &file,
        "use paper\nworkflow m {\n  data train = images(\"no/such/folder\")\n  model net = srresnet(channels = 4, blocks = 1)\n  train net on train { tasks = [paper.noise], iters = 2 }\n}\n",
    )
    .unwrap();
    let out = mio(&["run", "-q", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("m/net") && err.contains("no/such/folder"),
        "{err}"
    );
    // Nothing half-done is taken for finished: the step's folder is still a partial one.
    let nodes: Vec<String> = std::fs::read_dir(dir.join("runs/nodes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(nodes.iter().all(|n| n.ends_with(".partial")), "{nodes:?}");
}

#[test]
fn bench_measures_a_model_of_yours_and_refuses_what_does_not_fit() {
    let out = mio(&[
        "bench",
        "--device",
        "cpu",
        "--model",
        "srresnet(channels = 8, blocks = 1, prompt = explicit(dim = 8))",
        "--batch",
        "2",
        "--patch",
        "16",
        "--rounds",
        "1",
        "--raw",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let cases: Vec<(&str, f64)> = stdout
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k, v.parse().unwrap())
        })
        .collect();
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    assert_eq!(
        names,
        [
            "loader.srresnet_batch",
            "mio.srresnet_step",
            "mio.srresnet_infer512"
        ],
        "{stdout}"
    );
    assert!(cases.iter().all(|c| c.1 > 0.0), "{stdout}");
    // bf16 mixed precision is timed beside fp32, for the training step only (restorations
    // compute in fp32).
    let out = mio(&[
        "bench",
        "--device",
        "cpu",
        "--model",
        "srresnet(channels = 8, blocks = 1)",
        "--batch",
        "2",
        "--patch",
        "16",
        "--rounds",
        "1",
        "--precision",
        "fp32,bf16",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let row = |label: &str| {
        table
            .lines()
            .find(|l| l.contains(&format!("({label})")))
            .unwrap_or_else(|| panic!("no {label} row: {table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (fp32, bf16) = (row("mio_fp32"), row("mio_bf16"));
    // network (label) batch x patch step patches/s 512x512 loader
    assert!(fp32[6].parse::<f64>().is_ok(), "{table}");
    assert!(bf16[5].parse::<f64>().unwrap() > 0.0, "{table}");
    assert_eq!(bf16[7], "-", "bf16 timed a restoration: {table}");
    // An arithmetic mio does not have is refused by name.
    let out = mio(&["bench", "--device", "cpu", "--precision", "fp32,fp16"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("`fp16` is not one of auto, fp32, tf32, bf16"),
        "{err}"
    );
    // A backbone whose settings do not fit is checked as in a file, under its flag.
    let out = mio(&["bench", "--model", "restormer(blocks = [1, 1])"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("mio::E056") && err.contains("--model"),
        "{err}"
    );
    // A patch the backbone cannot take.
    let out = mio(&["bench", "--model", "restormer(dim = 8)", "--patch", "12"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a multiple of 8"));
    // A case that does not exist is named, with the ones that do.
    let out = mio(&["bench", "--device", "cpu", "--only", "srresnet64"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no case `srresnet64`") && err.contains("srresnet64x16ep"),
        "{err}"
    );
    // A GPU in a build without CUDA says how to get one.
    let out = mio(&["bench", "--device", "cuda", "--only", "gemm"]);
    if !cfg!(feature = "cuda") {
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("--features cuda"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn the_papers_table_plans_as_slurm_jobs_with_their_dependencies() {
    let out = mio(&[
        "plan",
        "workflows/paper/table.mio",
        "--executor",
        "slurm(partition = \"gpu\", gpus = 1, time = \"2-00:00:00\")",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(
        plan.starts_with("workflows/paper/table.mio: 174 step(s) as Slurm jobs"),
        "{plan}"
    );
    let line = |name: &str| {
        plan.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("{name} not in\n{plan}"))
            .to_string()
    };
    // Training gets the GPU; a test set does not; each waits for what it reads.
    let stage2 = line("table[srresnet_row,strategy=sequential,prompt=none]/net");
    assert!(stage2.contains("--gres=gpu:1"), "{stage2}");
    let testset = line("test/sr");
    assert!(!testset.contains("--gres"), "{testset}");
    assert!(
        testset.contains("--partition=gpu --time=2-00:00:00"),
        "{testset}"
    );
    let report = line("table/report");
    assert!(report.contains("--dependency=afterok:$1:"), "{report}");
    // A mistake in the executor is checked like the file.
    let bad = mio(&[
        "plan",
        "workflows/quickstart.mio",
        "--executor",
        "slurm(gpu = 1)",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("did you mean `gpus`?"),
        "{}",
        text(&bad.stderr)
    );
}
