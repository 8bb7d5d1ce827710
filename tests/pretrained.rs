//! Models that start from someone's weights: the reference's checkpoints as they are (a BasicSR
//! `.pth` written by PyTorch, its `.npy` task maps, its classifier; stdlib/tests/data/pth/),
//! evaluated untrained with the numbers `mio restore` gives, trained further with an eighth
//! task, and part of the cache key by their contents.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::mio_in as mio;

use candle_core::{Device, Tensor};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data");
const PTH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/stdlib/tests/data/pth");
const ARCH: &str =
    "srresnet(channels = 16, blocks = 2, prompt = explicit(dim = 16, map_size = 32px))";

fn workflow(extra: &str) -> String {
    format!(
        r#"use paper

task fog = haze(beta = 2.5..3.0)

workflow released {{
  seed = 0
  data train = images("{DATA}/train", patch = 32px, batch = 4)
  data test = images("{DATA}/test", limit = 2)

  model ref = srresnet(channels = 16, blocks = 2, prompt = explicit(dim = 16, map_size = 32px),
                       weights = "ref.pth", maps = "type7.npy", classifier = "classifier.pth")
  model more = srresnet(channels = 16, blocks = 2, prompt = explicit(dim = 16, map_size = 32px),
                        weights = "ref.pth", param_key = "params_ema", maps = "type7.npy")

  train more on train {{
    strategy = mixed
    tasks = [paper.blur, paper.noise, paper.jpeg, paper.rain, paper.haze, paper.lowlight, paper.sr, fog]
    iters = 3
    optimizer = adam(lr = 1e-9)
    ema = 0
    classifier = classifier(iters = 2, batch = 4)
  }}

  eval ref on test as ref_known {{ tasks = [paper.rain], labels = known, metrics = [psnr] }}
  eval ref on test as ref_predicted {{ tasks = [paper.rain], metrics = [psnr] }}
  eval more on test as more_known {{ tasks = [paper.noise, fog], labels = known, metrics = [psnr] }}
  {extra}
}}
"#
    )
}

fn workspace(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mio-pretrained-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (from, to) in [
        ("srresnet_ep.pth", "ref.pth"),
        ("type7.npy", "type7.npy"),
        ("classifier.pth", "classifier.pth"),
    ] {
        std::fs::copy(Path::new(PTH).join(from), dir.join(to)).unwrap();
    }
    dir
}

fn ok(o: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    text
}

fn results(dir: &Path, eval: &str) -> (PathBuf, serde_json::Value) {
    for e in std::fs::read_dir(dir.join("runs/nodes")).unwrap().flatten() {
        let r = e.path().join("results.json");
        if let Ok(text) = std::fs::read_to_string(&r) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["eval"] == eval {
                return (e.path(), v);
            }
        }
    }
    panic!("no results of {eval}");
}

fn node(dir: &Path, kind: &str) -> PathBuf {
    std::fs::read_dir(dir.join("runs/nodes"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{kind}-"))
        })
        .unwrap_or_else(|| panic!("no {kind} step"))
}

fn pixels(p: &Path) -> Vec<u8> {
    image::open(p).unwrap().to_rgb8().into_raw()
}

#[test]
fn released_weights_evaluate_as_mio_restore_restores_and_train_further() {
    let dir = workspace("run");
    std::fs::write(dir.join("ref.mio"), workflow("")).unwrap();
    ok(&mio(&dir, &["run", "ref.mio"]));

    // Untrained, with the true task: the eval's restored image is `mio restore`'s.
    let (eval_dir, r) = results(&dir, "ref_known");
    let img = &r["tasks"][0]["images"][0];
    let degraded = dir
        .join("runs/nodes")
        .join(img["degraded"].as_str().unwrap());
    let restored = eval_dir.join(img["restored"].as_str().unwrap());
    let out = dir.join("restored.png");
    // `mio restore` with the released files, and how it picks the task.
    let restore = |how: &[&str]| {
        let mut args = vec![
            "restore",
            "--model",
            "ref.pth",
            "--arch",
            ARCH,
            "--maps",
            "type7.npy",
        ];
        args.extend(how);
        args.extend([degraded.to_str().unwrap(), out.to_str().unwrap()]);
        ok(&mio(&dir, &args))
    };
    restore(&["--task", "rain"]);
    assert_eq!(pixels(&out), pixels(&restored));

    // Predicted labels come from the classifier file, as `mio restore --classifier` guesses.
    let (_, r) = results(&dir, "ref_predicted");
    let img = &r["tasks"][0]["images"][0];
    let guess = img["predicted"]
        .as_str()
        .expect("a predicted task")
        .to_string();
    let said = restore(&["--classifier", "classifier.pth"]);
    assert!(
        said.contains(&format!("the classifier says `{guess}`")),
        "{said}"
    );

    // Trained further with an eighth task: starts from the EMA weights (a learning rate of
    // 1e-9 leaves them), the seven tasks keep the file's maps, `fog` gets a map of its own.
    let dev = Device::Cpu;
    let start =
        candle_core::pickle::read_all_with_key(dir.join("ref.pth"), Some("params_ema")).unwrap();
    let trained =
        candle_core::safetensors::load(node(&dir, "train").join("weights.safetensors"), &dev)
            .unwrap();
    for (name, t) in &start {
        let d = (t - &trained[name])
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            d < 1e-4,
            "{name} moved by {d}: training did not start from the file"
        );
    }
    let maps = &trained["prompt_maps"];
    assert_eq!(maps.dims(), &[8, 1, 32, 32]);
    let npy = Tensor::read_npy(dir.join("type7.npy"))
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap();
    let row = |t: &Tensor, i: usize| -> Vec<f32> {
        t.get(i).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    };
    // The model's task k is its list's k-th; the file's order is blur, noise, jpeg, rain, haze,
    // lowlight, sr: the same seven here.
    for k in 0..7 {
        assert_eq!(row(maps, k), row(&npy, k), "task {k} lost its map");
    }
    assert_ne!(row(maps, 7), row(&npy, 4), "fog took haze's map");

    // TensorBoard: every record's framing and checksums hold; the training's loss at each
    // step, the evaluation's mean PSNR per task, and an image of each task.
    use mio_engine::run::tensorboard::{files_under, read, Value};
    let events: Vec<_> = files_under(&dir.join("runs/tensorboard/released/more"))
        .iter()
        .flat_map(|f| read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect();
    let scalars = |tag: &str| -> Vec<(i64, f32)> {
        events
            .iter()
            .flat_map(|e| e.values.iter().map(move |(t, v)| (e.step, t, v)))
            .filter_map(|(s, t, v)| match v {
                Value::Scalar(x) if t == tag => Some((s, *x)),
                _ => None,
            })
            .collect()
    };
    let steps: Vec<i64> = scalars("train/loss").iter().map(|s| s.0).collect();
    assert_eq!(steps, vec![1, 2, 3]);
    let (_, r) = results(&dir, "more_known");
    let psnr: Vec<f64> = r["tasks"][1]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["output"]["psnr"].as_f64().unwrap())
        .collect();
    let mean = psnr.iter().sum::<f64>() / psnr.len() as f64;
    let logged = scalars("eval/more_known/fog/psnr");
    assert_eq!(logged.len(), 1);
    assert!(
        (logged[0].1 as f64 - mean).abs() < 1e-3,
        "{logged:?} vs {mean}"
    );
    let images = events
        .iter()
        .flat_map(|e| &e.values)
        .filter(|(t, v)| t.starts_with("eval/more_known/") && matches!(v, Value::Image { .. }))
        .count();
    assert_eq!(images, 2, "an image for noise and one for fog");

    // A finished run's model as starting weights: its 8 maps, of which the model (untrained)
    // is told the reference's seven by name; it restores as the trained model did.
    // (given as the training step's folder: the weights file in it is read)
    let weights = node(&dir, "train");
    // and the classifier step of `ref` (its classifier.json names its outputs) as a classifier
    let classifier = node(&dir, "classifier");
    let again = format!(
        r#"use paper
workflow again {{
  data test = images("{DATA}/test", limit = 2)
  model again = srresnet(channels = 16, blocks = 2, prompt = explicit(dim = 16, map_size = 32px),
                         weights = {weights:?}, classifier = {classifier:?})
  eval again on test as again_known {{ tasks = [paper.noise], labels = known, metrics = [psnr] }}
  eval again on test as again_predicted {{ tasks = [paper.rain], metrics = [psnr] }}
}}
"#
    );
    std::fs::write(dir.join("again.mio"), again).unwrap();
    ok(&mio(&dir, &["run", "again.mio"]));
    let (_, r1) = results(&dir, "more_known");
    let (_, r2) = results(&dir, "again_known");
    assert_eq!(
        r1["tasks"][0]["images"][0]["output"]["psnr"],
        r2["tasks"][0]["images"][0]["output"]["psnr"],
        "the same weights and the same `noise` map restore alike"
    );
    let (_, r3) = results(&dir, "again_predicted");
    assert_eq!(
        r3["tasks"][0]["images"][0]["predicted"], guess,
        "the classifier step's folder predicts as the Classifier.pth it was read from"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_weights_files_are_part_of_the_cache_key_and_a_wrong_file_is_a_clear_error() {
    let dir = workspace("key");
    std::fs::write(dir.join("ref.mio"), workflow("")).unwrap();
    let o = ok(&mio(&dir, &["run", "ref.mio", "--explain"]));
    assert!(o.contains("released/ref weights"), "{o}");
    ok(&mio(&dir, &["run", "ref.mio"]));
    let o = ok(&mio(&dir, &["run", "ref.mio", "--explain"]));
    assert!(!o.contains("will run"), "{o}");
    // The same weights in other bytes (a bare state dict): every step that reads them runs.
    std::fs::copy(
        Path::new(PTH).join("srresnet_ep_bare.pth"),
        dir.join("ref.pth"),
    )
    .unwrap();
    let o = ok(&mio(&dir, &["run", "ref.mio", "--explain"]));
    assert!(o.contains("an input file changed"), "{o}");
    // A bare state dict has no `params_ema`: the step that asks for it says so.
    let o = mio(&dir, &["run", "ref.mio"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no weights under `params_ema`"), "{err}");
    // A checkpoint of another architecture: one error naming what differs.
    let text = workflow("").replace(
        "model ref = srresnet(channels = 16",
        "model ref = srresnet(channels = 24",
    );
    std::fs::write(dir.join("ref.mio"), text).unwrap();
    let o = mio(&dir, &["run", "ref.mio"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("does not fit srresnet(channels = 24"), "{err}");
    assert!(
        err.contains("looks like srresnet(channels = 16, blocks = 2"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn settings_that_go_with_weights_are_checked() {
    let dir = workspace("check");
    let cases = [
        (
            "model x = srresnet(channels = 8, maps = \"type7.npy\")",
            "`maps` goes with starting weights",
        ),
        (
            "model x = srresnet(channels = 8, weights = \"ref.pth\", maps = \"type7.npy\")",
            "`maps` is for explicit prompts",
        ),
        (
            "model x = srresnet(channels = 8, prompt = explicit, weights = \"ref.pth\")\n  eval x on test { tasks = [paper.rain] }",
            "has no task classifier",
        ),
        (
            "model x = srresnet(channels = 8, param_key = \"params_ema\")",
            "`param_key` goes with starting weights",
        ),
    ];
    for (decl, want) in cases {
        let text = format!(
            "use paper\ntask fog = haze(beta = 2.5..3.0)\nworkflow w {{\n  data test = images(\"{DATA}/test\")\n  {decl}\n}}\n"
        );
        std::fs::write(dir.join("w.mio"), text).unwrap();
        let o = mio(&dir, &["check", "w.mio"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{decl}: accepted");
        assert!(err.contains(want), "{decl}:\n{err}");
        assert!(err.contains("E057"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_export_has_the_reference_names_and_its_maps_as_npy() {
    let dir = workspace("export");
    let out = dir.join("exported");
    let o = ok(&mio(
        &dir,
        &[
            "export",
            "--model",
            "ref.pth",
            "--arch",
            ARCH,
            "--maps",
            "type7.npy",
            "--classifier",
            "classifier.pth",
            out.to_str().unwrap(),
        ],
    ));
    assert!(o.contains("export.json"), "{o}");
    // The weights under exactly the checkpoint's names, with its values.
    let dev = Device::Cpu;
    let original: std::collections::HashMap<String, Tensor> =
        candle_core::pickle::read_all_with_key(dir.join("ref.pth"), Some("params"))
            .unwrap()
            .into_iter()
            .collect();
    let exported = candle_core::safetensors::load(out.join("weights.safetensors"), &dev).unwrap();
    let mut a: Vec<&String> = original.keys().collect();
    let mut b: Vec<&String> = exported.keys().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    for (k, t) in &original {
        let same: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let got: Vec<f32> = exported[k].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(same, got, "{k}");
    }
    // The maps as the reference ships them: float64 [7, S, S] in its task order.
    let maps = Tensor::read_npy(out.join("maps.npy")).unwrap();
    assert_eq!(maps.dtype(), candle_core::DType::F64);
    let npy = Tensor::read_npy(dir.join("type7.npy")).unwrap();
    assert_eq!(maps.dims(), npy.dims());
    let diff: f64 = (&maps - &npy)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(diff < 1e-6, "maps differ by {diff} (f32 in between)");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("export.json")).unwrap()).unwrap();
    assert_eq!(info["tasks"][6], "sr");
    assert_eq!(info["arch"]["channels"], 16);
    // A folder of other files is not written into.
    std::fs::create_dir_all(dir.join("busy")).unwrap();
    std::fs::write(dir.join("busy/notes.txt"), "mine").unwrap();
    let o = mio(
        &dir,
        &[
            "export",
            "--model",
            "ref.pth",
            "--arch",
            ARCH,
            "--maps",
            "type7.npy",
            "busy",
        ],
    );
    assert!(!o.status.success());
    assert_eq!(
        std::fs::read_to_string(dir.join("busy/notes.txt")).unwrap(),
        "mine"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
