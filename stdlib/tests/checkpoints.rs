//! Checkpoints as the reference writes them, written by PyTorch (`tools/checkpoints.sh make`,
//! pinned in tests/data/pth/): a BasicSR `.pth` of an SRResNet with explicit prompts
//! (`params` and `params_ema`), a bare state dict, the task maps as a float64 `.npy`, a task
//! classifier; and PyTorch's outputs on fixed inputs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mio_stdlib::models::checkpoint;
use mio_stdlib::models::classifier::{reorder, TaskClassifier};
use mio_stdlib::models::network::{Arch, Network, Spec, SrResNetConfig};
use mio_stdlib::models::PromptMode;

const REFERENCE: [&str; 7] = ["blur", "noise", "jpeg", "rain", "haze", "lowlight", "sr"];

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/pth")
        .join(rel)
}

fn io() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(data("io.safetensors"), &Device::Cpu).unwrap()
}

fn spec(channels: usize, tasks: &[&str]) -> Spec {
    Spec {
        arch: Arch::SrResNet(SrResNetConfig {
            channels,
            blocks: 2,
            init_scale: 0.1,
        }),
        prompt: PromptMode::Explicit { dim: 16 },
        map_size: 32,
        tasks: tasks.iter().map(|t| t.to_string()).collect(),
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn restore(net: &Network, task: &str) -> Tensor {
    let io = io();
    let id = net.task_id(task).unwrap() as u32;
    let ids = Tensor::new(&[id], &Device::Cpu).unwrap();
    net.forward(&io["x"], &ids).unwrap()
}

#[test]
fn a_basicsr_checkpoint_and_its_npy_maps_restore_as_pytorch_does() {
    let dev = Device::Cpu;
    let maps = checkpoint::read_maps(&data("type7.npy"), &dev).unwrap();
    assert_eq!(maps.dims(), &[7, 1, 32, 32]);
    assert_eq!(maps.dtype(), DType::F32);
    for (key, want) in [(None, "y_params"), (Some("params_ema"), "y_ema")] {
        let mut net = Network::new(spec(16, &REFERENCE), 0, &dev).unwrap();
        net.load_key(&data("srresnet_ep.pth"), key).unwrap();
        net.set_maps(&maps, "type7.npy").unwrap();
        let y = restore(&net, "rain");
        let d = max_diff(&y, &io()[want]);
        assert!(d < 1e-4, "{key:?}: differs from PyTorch by {d}");
    }
    // The EMA is not the weights: reading the wrong key would show.
    let d = max_diff(&io()["y_params"], &io()["y_ema"]);
    assert!(
        d > 1e-2,
        "the fixture's two weight sets barely differ ({d})"
    );
}

#[test]
fn maps_follow_the_task_names_whatever_the_networks_order() {
    // A network whose tasks are in another order takes each map by its task's name.
    let dev = Device::Cpu;
    let maps = checkpoint::read_maps(&data("type7.npy"), &dev).unwrap();
    let order = ["sr", "rain", "blur"];
    let idx: Vec<u32> = order
        .iter()
        .map(|t| REFERENCE.iter().position(|r| r == t).unwrap() as u32)
        .collect();
    let picked = maps
        .index_select(&Tensor::new(idx.as_slice(), &dev).unwrap(), 0)
        .unwrap();
    let mut net = Network::new(spec(16, &order), 0, &dev).unwrap();
    net.load(&data("srresnet_ep_bare.pth")).unwrap();
    net.set_maps(&picked, "type7.npy").unwrap();
    let d = max_diff(&restore(&net, "rain"), &io()["y_params"]);
    assert!(d < 1e-4, "a bare state dict: differs from PyTorch by {d}");
}

#[test]
fn a_wrong_architecture_is_one_error_listing_what_differs() {
    let mut net = Network::new(spec(32, &REFERENCE), 0, &Device::Cpu).unwrap();
    let e = net.load(&data("srresnet_ep.pth")).unwrap_err().to_string();
    assert!(e.contains("does not fit srresnet(channels = 32"), "{e}");
    assert!(e.contains("differ in shape"), "{e}");
    assert!(
        e.contains(
            "`body1.0.conv1.weight` is [16, 16, 3, 3] in the file, [32, 32, 3, 3] in the network"
        ),
        "{e}"
    );
    assert!(
        e.contains("looks like srresnet(channels = 16, blocks = 2, prompt = explicit(dim = 16))"),
        "{e}"
    );
    // Missing and extra tensors: a plain network given the prompted file.
    let mut plain = Network::new(
        Spec {
            prompt: PromptMode::None,
            ..spec(16, &REFERENCE)
        },
        0,
        &Device::Cpu,
    )
    .unwrap();
    let e = plain
        .load(&data("srresnet_ep.pth"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("are not in the file: body.0.conv1.bias"), "{e}");
    assert!(
        e.contains("are not in the network: F_ext_net.conv1.bias"),
        "{e}"
    );
}

#[test]
fn a_missing_key_a_damaged_file_and_a_map_file_are_clear_errors() {
    let dev = Device::Cpu;
    let mut net = Network::new(spec(16, &REFERENCE), 0, &dev).unwrap();
    let e = net
        .load_key(&data("srresnet_ep.pth"), Some("state_dict"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no weights under `state_dict`"), "{e}");
    let e = net
        .load_key(&data("srresnet_ep_bare.pth"), Some("params_ema"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no weights under `params_ema`"), "{e}");
    let dir = std::env::temp_dir().join(format!("mio-pth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(data("srresnet_ep.pth")).unwrap();
    for cut in [10, bytes.len() / 2, bytes.len() - 30] {
        let f = dir.join("cut.pth");
        std::fs::write(&f, &bytes[..cut]).unwrap();
        let e = net.load(&f).unwrap_err().to_string();
        assert!(e.contains("cut.pth"), "{e}");
    }
    let e = net.load(&data("type7.npy")).unwrap_err().to_string();
    assert!(e.contains("task maps go to `maps`"), "{e}");
    let e = checkpoint::read_maps(&data("srresnet_ep.pth"), &dev)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no `prompt_maps`"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_reference_classifier_loads_in_any_task_order() {
    let dev = Device::Cpu;
    let file: Vec<String> = REFERENCE.iter().map(|t| t.to_string()).collect();
    let io = io();
    let want = &io["classifier_logits"];
    for order in [REFERENCE.to_vec(), vec!["sr", "noise", "rain"]] {
        let tasks: Vec<(String, String)> = order
            .iter()
            .map(|t| (format!("my_{t}"), t.to_string()))
            .collect();
        let t = checkpoint::read(&data("classifier.pth"), None, &dev).unwrap();
        let t = reorder(t, &file, &tasks, "classifier.pth").unwrap();
        let vm = candle_nn::VarMap::new();
        let c = TaskClassifier::new(
            tasks.len(),
            candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &dev),
        )
        .unwrap();
        for (name, var) in mio_stdlib::trainer::sorted_vars(&vm) {
            var.set(&t[&name]).unwrap();
        }
        let got = c.forward(&io["classifier_x"]).unwrap();
        let idx: Vec<u32> = order
            .iter()
            .map(|t| REFERENCE.iter().position(|r| r == t).unwrap() as u32)
            .collect();
        let want = want
            .index_select(&Tensor::new(idx.as_slice(), &dev).unwrap(), 1)
            .unwrap();
        let d = max_diff(&got, &want);
        assert!(d < 1e-4, "{order:?}: logits differ from PyTorch's by {d}");
    }
    let e = reorder(
        checkpoint::read(&data("classifier.pth"), None, &dev).unwrap(),
        &file,
        &[("fog".into(), "fog".into())],
        "classifier.pth",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("no output for `fog`"), "{e}");
}
