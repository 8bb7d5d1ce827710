//! mio's metrics, bicubic resize and JPEG against the field's tools: values computed by
//! `tools/reference.sh` (scikit-image, PyTorch, OpenCV's libjpeg) and pinned in
//! stdlib/tests/data/.

use std::path::{Path, PathBuf};

use mio_stdlib::degrade;
use mio_stdlib::image::{load, Image};
use mio_stdlib::metrics::{psnr, ssim};
use mio_stdlib::resize::Kernel;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn img(p: &Path) -> Image {
    load(p).unwrap_or_else(|e| panic!("{e}")).image
}

/// A tiny reader for the flat JSON files the script writes: `"key": number` pairs in order.
fn numbers(text: &str) -> Vec<(String, f64)> {
    let mut out = vec![];
    let mut rest = text;
    while let Some(q) = rest.find('"') {
        let after = &rest[q + 1..];
        let Some(end) = after.find('"') else { break };
        let key = after[..end].to_string();
        let tail = after[end + 1..].trim_start();
        rest = &after[end + 1..];
        if let Some(v) = tail.strip_prefix(':') {
            let v = v.trim_start();
            let len = v
                .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
                .unwrap_or(v.len());
            if let Ok(n) = v[..len].parse::<f64>() {
                out.push((key, n));
            }
        }
    }
    out
}

#[test]
fn psnr_and_ssim_match_scikit_image() {
    let json = std::fs::read_to_string(data("metrics.json")).unwrap();
    let mut checked = 0;
    for name in ["chelsea_noise", "camera_jpeg", "hopper_blur"] {
        let clean = img(&data(&format!("metrics/{name}_clean.png")));
        let degraded = img(&data(&format!("metrics/{name}_degraded.png")));
        assert_ne!(clean.width, clean.height, "the pairs are not square");
        let start = json.find(&format!("\"{name}\"")).unwrap();
        let section: Vec<(String, f64)> = numbers(&json[start..]).into_iter().take(8).collect();
        for (key, want) in &section {
            let crop = if key.contains("crop4") { 4 } else { 0 };
            let y = key.ends_with("_y");
            if key.starts_with("psnr") {
                let got = psnr(&clean, &degraded, crop, y).unwrap();
                assert!(
                    (got - want).abs() < 1e-3,
                    "{name} {key}: {got} vs scikit-image {want}"
                );
            } else {
                let got = ssim(&clean, &degraded, crop, y).unwrap();
                assert!(
                    (got - want).abs() < 1e-4,
                    "{name} {key}: {got} vs scikit-image {want}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 24);
}

#[test]
fn bicubic_matches_pytorch_within_one_level() {
    for name in ["chelsea", "brick", "astronaut", "hubble"] {
        let clean = img(&data(&format!("bicubic/{name}.png")));
        let torch_sr = img(&data(&format!("bicubic/{name}_sr.png")));
        let ours = degrade::super_resolution(&clean, 4, Kernel::Torch);
        assert_eq!((ours.width, ours.height), (torch_sr.width, torch_sr.height));
        let max = ours
            .data
            .iter()
            .zip(&torch_sr.data)
            .map(|(a, b)| (*a as i16 - *b as i16).abs())
            .max()
            .unwrap();
        let same = ours
            .data
            .iter()
            .zip(&torch_sr.data)
            .filter(|(a, b)| a == b)
            .count() as f64
            / ours.data.len() as f64;
        assert!(max <= 1, "{name}: max difference {max}/255 from PyTorch");
        assert!(
            same > 0.99,
            "{name}: only {:.3} of the values equal PyTorch's",
            same
        );
    }
}

#[test]
fn matlab_bicubic_matches_pils_antialiased_bicubic_inside_the_border() {
    for name in ["chelsea", "brick", "astronaut", "hubble"] {
        let clean = img(&data(&format!("bicubic/{name}.png")));
        let pil = img(&data(&format!("bicubic/{name}_pil_lr.png")));
        let (w, h) = (clean.width / 4, clean.height / 4);
        let ours = mio_stdlib::resize::resize_image(&clean, w, h, (4.0, 4.0), Kernel::Matlab);
        assert_eq!((ours.width, ours.height), (pil.width, pil.height));
        // The kernel spans 16 input pixels when shrinking by 4: two output pixels from the edge.
        // PIL rounds its intermediate (horizontal) pass to 8 bits, so it can land two levels away.
        let (mut max, mut sum, mut n) = (0, 0i64, 0i64);
        for y in 2..h - 2 {
            for x in 2..w - 2 {
                for c in 0..3 {
                    let i = (y * w + x) * 3 + c;
                    let d = (ours.data[i] as i16 - pil.data[i] as i16).abs();
                    max = max.max(d);
                    sum += d as i64;
                    n += 1;
                }
            }
        }
        let mean = sum as f64 / n as f64;
        assert!(
            max <= 2 && mean < 0.3,
            "{name}: max {max}/255, mean {mean:.3} from PIL inside the border"
        );
        // And it is not the PyTorch kernel: without antialiasing the result differs.
        let torch = mio_stdlib::resize::resize_image(&clean, w, h, (4.0, 4.0), Kernel::Torch);
        assert_ne!(torch.data, ours.data);
    }
}

#[test]
fn jpeg_sizes_and_quality_are_in_libjpegs_range() {
    let json = std::fs::read_to_string(data("jpeg.json")).unwrap();
    for name in [
        "test/chelsea.png",
        "test/camera.png",
        "test/grace_hopper.png",
    ] {
        let clean = img(&repo(&format!("data/{name}")));
        let start = json.find(name).unwrap();
        for q in [10u8, 30, 50, 70, 90] {
            let at = start + json[start..].find(&format!("\"{q}\": {{")).unwrap();
            let pair = numbers(&json[at..]);
            let (bytes, lib_psnr) = (pair[0].1, pair[1].1);
            let ours = degrade::jpeg_size(&clean, q) as f64;
            let got = psnr(&clean, &degrade::jpeg(&clean, q), 0, false).unwrap();
            assert!(
                (ours / bytes - 1.0).abs() < 0.03,
                "{name} q{q}: {ours} bytes vs libjpeg {bytes}"
            );
            assert!(
                (got - lib_psnr).abs() < 0.15,
                "{name} q{q}: {got:.2} dB vs libjpeg {lib_psnr:.2}"
            );
        }
    }
}

#[test]
fn noise_at_sigma_50_lands_near_the_papers_input_psnr() {
    // MIOIR: denoising inputs at sigma 50 sit around 14-15 dB.
    for name in [
        "data/test/chelsea.png",
        "data/test/grace_hopper.png",
        "data/train/coffee.png",
    ] {
        let clean = img(&repo(name));
        let mut rng = degrade::rng_for(0, "noise(sigma = 50)", name);
        let noisy = degrade::add_noise(&clean, 50.0 / 255.0, &mut rng);
        let p = psnr(&clean, &noisy, 0, false).unwrap();
        assert!((13.5..16.0).contains(&p), "{name}: {p:.2} dB");
    }
}

/// The largest absolute difference between two tensors of the same shape.
fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// A model mio builds holds exactly the variables a reference checkpoint holds.
fn assert_same_names(
    vm: &candle_nn::VarMap,
    weights: &std::collections::HashMap<String, candle_core::Tensor>,
    what: &str,
) {
    let mut ours: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
    // A saved `relative_position_index` buffer (Uformer's) belongs to an attention whose bias
    // table mio has: mio computes the index.
    let mut theirs: Vec<String> = weights
        .keys()
        .filter(|k| match k.strip_suffix("relative_position_index") {
            Some(attn) => {
                let table = format!("{attn}relative_position_bias_table");
                assert!(ours.contains(&table), "{what}: {k} without {table}");
                false
            }
            None => true,
        })
        .cloned()
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "{what}");
}

#[test]
fn srresnet_loads_pytorch_weights_by_name_and_gives_the_same_output() {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use mio_stdlib::models::{srresnet::SrResNet, PromptMode};
    let dev = Device::Cpu;
    for (name, mode) in [
        ("plain", PromptMode::None),
        ("explicit", PromptMode::Explicit { dim: 16 }),
        ("adaptive", PromptMode::Adaptive { dim: 16 }),
    ] {
        let weights =
            candle_core::safetensors::load(data(&format!("srresnet/{name}.safetensors")), &dev)
                .unwrap();
        let io =
            candle_core::safetensors::load(data(&format!("srresnet/{name}_io.safetensors")), &dev)
                .unwrap();
        // The same names, no more and no fewer, as a model mio builds itself.
        let vm = VarMap::new();
        SrResNet::new(16, 2, mode, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        assert_same_names(&vm, &weights, name);
        let net = SrResNet::new(
            16,
            2,
            mode,
            VarBuilder::from_tensors(weights, DType::F32, &dev),
        )
        .unwrap();
        let x = &io["x"];
        let z = match mode {
            PromptMode::Explicit { .. } => net.latent(&io["maps"]).unwrap(),
            PromptMode::Adaptive { .. } => net.latent(x).unwrap(),
            PromptMode::None => None,
        };
        let y = net.forward(x, z.as_ref()).unwrap();
        let diff: f32 = max_abs_diff(&y, &io["y"]);
        assert!(diff < 1e-4, "{name}: max difference {diff} from PyTorch");
        // The prompt matters: a wrong one gives another output.
        if let Some(z) = z {
            let other = net.forward(x, Some(&(z * 0.5).unwrap())).unwrap();
            let d: f32 = max_abs_diff(&other, &io["y"]);
            assert!(d > 1e-3, "{name}: the prompt changed nothing");
        }
    }
}

#[test]
fn swinir_matches_basicsrs_own_implementation() {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use mio_stdlib::models::swinir::{SwinConfig, SwinIr};
    use mio_stdlib::models::PromptMode;
    let dev = Device::Cpu;
    let cfg = SwinConfig {
        embed: 12,
        depths: vec![2, 2],
        heads: 2,
        window: 4,
        mlp_ratio: 2.0,
    };
    let weights = candle_core::safetensors::load(data("swinir/small.safetensors"), &dev).unwrap();
    let io = candle_core::safetensors::load(data("swinir/small_io.safetensors"), &dev).unwrap();
    let vm = VarMap::new();
    SwinIr::new(
        &cfg,
        PromptMode::None,
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )
    .unwrap();
    assert_same_names(&vm, &weights, "swinir");
    let net = SwinIr::new(
        &cfg,
        PromptMode::None,
        VarBuilder::from_tensors(weights, DType::F32, &dev),
    )
    .unwrap();
    let y = net.forward(&io["x"], None).unwrap();
    let diff: f32 = max_abs_diff(&y, &io["y"]);
    assert!(diff < 1e-4, "max difference {diff} from BasicSR's SwinIR");
}

/// Builds `arch` with `mode` as a mio `Network` (two tasks, so an explicit model's two task
/// maps are the reference input's two prompt maps), loads the reference export `dir/name` by
/// name and compares the output on the reference input.
fn network_matches_reference(
    arch: mio_stdlib::models::network::Arch,
    dir: &str,
    name: &str,
    mode: mio_stdlib::models::PromptMode,
) {
    use candle_core::{Device, Tensor};
    use mio_stdlib::models::network::{Network, Spec};
    use mio_stdlib::models::PromptMode;
    let dev = Device::Cpu;
    let mut weights =
        candle_core::safetensors::load(data(&format!("{dir}/{name}.safetensors")), &dev).unwrap();
    let io = candle_core::safetensors::load(data(&format!("{dir}/{name}_io.safetensors")), &dev)
        .unwrap();
    let spec = Spec {
        arch,
        prompt: mode,
        map_size: 32,
        tasks: vec!["first".into(), "second".into()],
    };
    let mut net = Network::new(spec, 0, &dev).unwrap();
    assert_same_names(&net.varmap, &weights, &format!("{dir}/{name}"));
    if let PromptMode::Explicit { .. } = mode {
        weights.insert("prompt_maps".into(), io["source"].clone());
    }
    net.set_weights(&weights, name).unwrap();
    let ids = Tensor::new(&[0u32, 1], &dev).unwrap();
    let y = net.forward(&io["x"], &ids).unwrap();
    let diff = max_abs_diff(&y, &io["y"]);
    assert!(
        diff < 1e-4,
        "{dir}/{name}: max difference {diff} from PyTorch"
    );
    // The same weights as BasicSR saves them (`{"params": ...}` in a .pth, written by
    // PyTorch: tools/checkpoints.sh make), read through the checkpoint reader.
    let pth = data(&format!("{dir}/{name}.pth"));
    assert!(
        pth.exists() || name != "explicit" || dir == "srresnet",
        "{}: missing (tools/checkpoints.sh make)",
        pth.display()
    );
    if pth.exists() {
        let mut from_pth = mio_stdlib::models::checkpoint::read(&pth, None, &dev).unwrap();
        if let PromptMode::Explicit { .. } = mode {
            from_pth.insert("prompt_maps".into(), io["source"].clone());
        }
        let mut again = Network::new(net.spec.clone(), 1, &dev).unwrap();
        again.set_weights(&from_pth, name).unwrap();
        let y = again.forward(&io["x"], &ids).unwrap();
        let diff = max_abs_diff(&y, &io["y"]);
        assert!(
            diff < 1e-4,
            "{dir}/{name}.pth: max difference {diff} from PyTorch"
        );
    }
    if mode != PromptMode::None {
        // The prompt matters: another one gives another output.
        let z = net.latent(&io["x"], &ids).unwrap().unwrap();
        let other = net
            .forward_latent(&io["x"], Some(&(z * 0.5).unwrap()))
            .unwrap();
        assert!(
            max_abs_diff(&other, &io["y"]) > 1e-3,
            "{dir}/{name}: the prompt changed nothing"
        );
    }
}

#[test]
fn restormer_loads_reference_weights_by_name_and_gives_the_same_output() {
    use mio_stdlib::models::network::Arch;
    use mio_stdlib::models::restormer::RestormerConfig;
    use mio_stdlib::models::PromptMode;
    let cfg = RestormerConfig {
        dim: 6,
        blocks: [1, 2, 1, 1],
        refinement: 1,
        heads: [1, 2, 2, 3],
        ffn_expansion: 2.66,
        bias: true,
    };
    for (name, mode) in [
        ("plain", PromptMode::None),
        ("explicit", PromptMode::Explicit { dim: 8 }),
        ("adaptive", PromptMode::Adaptive { dim: 8 }),
    ] {
        network_matches_reference(Arch::Restormer(cfg.clone()), "restormer", name, mode);
    }
    // The reference configuration's parameter counts, as PyTorch counted them.
    let counts = std::fs::read_to_string(data("restormer/counts.json")).unwrap();
    let counts = numbers(&counts);
    for (name, mode) in [
        ("plain", PromptMode::None),
        ("explicit", PromptMode::Explicit { dim: 64 }),
        ("adaptive", PromptMode::Adaptive { dim: 64 }),
    ] {
        let vm = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(
            &vm,
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        );
        mio_stdlib::models::restormer::Restormer::new(&RestormerConfig::reference(), mode, vb)
            .unwrap();
        let want = counts.iter().find(|(k, _)| k == name).unwrap().1 as usize;
        assert_eq!(mio_stdlib::models::parameter_count(&vm), want, "{name}");
    }
}

#[test]
fn prompted_swinir_matches_the_reference_structure() {
    use mio_stdlib::models::network::Arch;
    use mio_stdlib::models::swinir::SwinConfig;
    use mio_stdlib::models::PromptMode;
    let cfg = SwinConfig {
        embed: 12,
        depths: vec![2, 1],
        heads: 2,
        window: 4,
        mlp_ratio: 2.0,
    };
    for (name, mode) in [
        ("explicit", PromptMode::Explicit { dim: 8 }),
        ("adaptive", PromptMode::Adaptive { dim: 8 }),
    ] {
        network_matches_reference(Arch::SwinIr(cfg.clone()), "swinir", name, mode);
    }
}

#[test]
fn uformer_loads_reference_weights_by_name_and_gives_the_same_output() {
    use mio_stdlib::models::network::Arch;
    use mio_stdlib::models::uformer::UformerConfig;
    use mio_stdlib::models::PromptMode;
    // Window 2 (sides multiples of 32), a shifted block in the encoder, the bottleneck and the
    // last decoder level, modulators in the decoder; the input is 32x64.
    let cfg = UformerConfig {
        embed: 4,
        depths: [1, 2, 1, 1, 2, 1, 1, 1, 2],
        heads: [1, 1, 2, 2, 4, 4, 2, 2, 1],
        window: 2,
        mlp_ratio: 4.0,
        modulator: true,
    };
    for (name, mode) in [
        ("plain", PromptMode::None),
        ("explicit", PromptMode::Explicit { dim: 8 }),
        ("adaptive", PromptMode::Adaptive { dim: 8 }),
    ] {
        network_matches_reference(Arch::Uformer(cfg.clone()), "uformer", name, mode);
    }
    // The files hold one `relative_position_index` per block, as the reference saves them.
    let w = candle_core::safetensors::load(
        data("uformer/plain.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let blocks: usize = cfg.depths.iter().sum();
    assert_eq!(
        w.keys()
            .filter(|k| k.ends_with("relative_position_index"))
            .count(),
        blocks
    );
    // Uformer-B's parameter counts, as PyTorch counted them (about 50.9 M plain).
    let counts = numbers(&std::fs::read_to_string(data("uformer/counts.json")).unwrap());
    for (name, mode) in [
        ("plain", PromptMode::None),
        ("explicit", PromptMode::Explicit { dim: 64 }),
        ("adaptive", PromptMode::Adaptive { dim: 64 }),
    ] {
        let vm = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(
            &vm,
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        );
        mio_stdlib::models::uformer::Uformer::new(&UformerConfig::reference(), mode, vb).unwrap();
        let want = counts.iter().find(|(k, _)| k == name).unwrap().1 as usize;
        assert_eq!(mio_stdlib::models::parameter_count(&vm), want, "{name}");
    }
    assert_eq!(counts[0].1 as usize, 50_880_946);
}

#[test]
fn promptir_loads_reference_weights_by_name_and_gives_the_same_output() {
    use mio_stdlib::models::network::Arch;
    use mio_stdlib::models::promptir::PromptIrConfig;
    use mio_stdlib::models::restormer::RestormerConfig;
    use mio_stdlib::models::PromptMode;
    // Prompt sides (6, 4, 3) other than the features' (8x20, 4x10, 2x5): the resize matters.
    let cfg = PromptIrConfig {
        body: RestormerConfig {
            dim: 6,
            blocks: [1, 2, 1, 1],
            refinement: 1,
            heads: [1, 2, 2, 3],
            ffn_expansion: 2.66,
            bias: true,
        },
        prompt_dims: [4, 8, 10],
        prompt_sizes: [6, 4, 3],
        prompt_len: 3,
    };
    network_matches_reference(Arch::PromptIr(cfg), "promptir", "plain", PromptMode::None);
    let counts = numbers(&std::fs::read_to_string(data("promptir/counts.json")).unwrap());
    let vm = candle_nn::VarMap::new();
    let vb =
        candle_nn::VarBuilder::from_varmap(&vm, candle_core::DType::F32, &candle_core::Device::Cpu);
    mio_stdlib::models::promptir::PromptIr::new(&PromptIrConfig::reference(), vb).unwrap();
    assert_eq!(
        mio_stdlib::models::parameter_count(&vm),
        counts[0].1 as usize
    );
}
