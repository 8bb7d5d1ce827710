//! The restoration networks, on candle. One file per architecture; parameter names mirror the
//! reference implementation's (BasicSR), so weights exported from it load by name.

/// Returns a message error without a backtrace (candle's `bail!` records one when
/// `RUST_BACKTRACE` is set, and a user's mistake needs none).
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err(candle_core::Error::Msg(format!($($arg)*)))
    };
}
pub(crate) use fail;

pub mod checkpoint;
pub mod classifier;
pub mod network;
pub mod prompt;
pub mod promptir;
pub mod restormer;
pub mod srresnet;
pub mod swinir;
pub mod uformer;
mod window;

use candle_core::{Result, Tensor};
use candle_nn::VarMap;

use crate::rng::Rng;

pub use mio_catalog::config::PromptMode;

/// A backbone's prompt branch (if it has one) with the latent prompt given to `forward`: both
/// or neither; a prompted backbone without a latent prompt is an error naming `backbone`.
pub(crate) fn with_latent<'a, P>(
    branch: &'a Option<P>,
    z: Option<&'a Tensor>,
    backbone: &str,
) -> Result<Option<(&'a P, &'a Tensor)>> {
    match (branch, z) {
        (Some(p), Some(z)) => Ok(Some((p, z))),
        (Some(_), None) => candle_core::bail!("a prompted {backbone} needs a latent prompt"),
        (None, _) => Ok(None),
    }
}

/// How one variable starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InitRule {
    /// Kaiming normal (fan in, ReLU gain) times the factor; biases 0 (BasicSR's
    /// `default_init_weights(..., scale)`).
    ScaledKaiming(f64),
    /// PyTorch's default for convolutions and linear layers: uniform in +-1/sqrt(fan in), for
    /// weights and biases.
    TorchDefault,
    /// Normal with this standard deviation (`trunc_normal_` at the std the references use
    /// truncates nowhere that matters); biases 0.
    Normal(f64),
    /// Uniform in [lo, hi), weights and biases alike.
    Uniform(f64, f64),
    Const(f64),
}

/// Reads a weights file (safetensors, or a PyTorch checkpoint's `params`), with errors that
/// name the file and say what to do.
pub fn read_weights(
    path: &std::path::Path,
    dev: &candle_core::Device,
) -> Result<std::collections::HashMap<String, Tensor>> {
    checkpoint::read(path, None, dev)
}

/// Loads every variable of `varmap` from a weights file by name (each must be there, with its
/// shape).
pub fn load_varmap(varmap: &VarMap, path: &std::path::Path) -> Result<()> {
    let data = varmap.data().lock().expect("the var map is not poisoned");
    let dev = data
        .values()
        .next()
        .map(|v| v.device().clone())
        .unwrap_or(candle_core::Device::Cpu);
    let t = read_weights(path, &dev)?;
    for (name, var) in data.iter() {
        match t.get(name) {
            Some(w) if w.dims() == var.dims() => var.set(&w.to_dtype(var.dtype())?)?,
            Some(w) => candle_core::bail!(
                "{}: `{name}` has shape {:?}, expected {:?}",
                path.display(),
                w.dims(),
                var.dims()
            ),
            None => candle_core::bail!(
                "{}: no `{name}` (is it the right kind of weights file?)",
                path.display()
            ),
        }
    }
    Ok(())
}

/// Initialises every variable of an SRResNet (or any network of plain convolutions) from the
/// seed as the reference does: the restoration branch's weights Kaiming-normal scaled by
/// `scale` (the reference's 0.1: `SrResNetConfig::init_scale`) with zero biases; the prompt extractor and modulation layers (and, in the prompted
/// SRResNets, conv_first, conv_hr and conv_last, as the reference's classes leave them) as
/// PyTorch's default.
pub fn init_weights(varmap: &VarMap, seed: u64, scale: f64) -> Result<()> {
    // The reference's prompted SRResNets scale only their residual blocks; their conv_first,
    // conv_hr and conv_last keep PyTorch's default (the plain one scales those too).
    let prompted = varmap
        .data()
        .lock()
        .expect("the var map is not poisoned")
        .keys()
        .any(|k| k.starts_with("F_ext_net"));
    init_by(varmap, seed, move |name, _| {
        let default = name.starts_with("F_ext_net")
            || name.starts_with("prompt_")
            || (prompted
                && ["conv_first", "conv_hr", "conv_last"]
                    .iter()
                    .any(|c| name.starts_with(c)));
        if default {
            InitRule::TorchDefault
        } else {
            InitRule::ScaledKaiming(scale)
        }
    })
}

/// PyTorch's default initialisation for every variable (uniform in +-1/sqrt(fan in)), seeded
/// per name: what the reference's task classifier starts from.
pub fn init_default(varmap: &VarMap, seed: u64) -> Result<()> {
    init_by(varmap, seed, |_, _| InitRule::TorchDefault)
}

/// Sets every variable as `rule(name, weight dims)` says (for a bias, the dims of its layer's
/// weight), each from a generator derived from the seed and its name, so creation order does
/// not matter.
pub fn init_by(
    varmap: &VarMap,
    seed: u64,
    rule: impl Fn(&str, &[usize]) -> InitRule,
) -> Result<()> {
    let data = varmap.data().lock().expect("the var map is not poisoned");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let is_bias = name.ends_with(".bias");
        let weight_dims = if is_bias {
            data.get(&name.replace(".bias", ".weight"))
                .map(|w| w.dims().to_vec())
                .unwrap_or(dims.clone())
        } else {
            dims.clone()
        };
        let fan_in: usize = weight_dims[1..].iter().product::<usize>().max(1);
        let mut rng = Rng::derive(seed, &["init", name]);
        let n: usize = dims.iter().product();
        let values: Vec<f32> = match rule(name, &weight_dims) {
            InitRule::TorchDefault => {
                let bound = 1.0 / (fan_in as f64).sqrt();
                (0..n).map(|_| rng.range(-bound, bound) as f32).collect()
            }
            InitRule::Const(v) => vec![v as f32; n],
            InitRule::Uniform(lo, hi) => (0..n).map(|_| rng.range(lo, hi) as f32).collect(),
            InitRule::ScaledKaiming(_) | InitRule::Normal(_) if is_bias => vec![0.0; n],
            InitRule::ScaledKaiming(scale) => {
                let std = scale * (2.0 / fan_in as f64).sqrt();
                (0..n).map(|_| (std * rng.normal()) as f32).collect()
            }
            InitRule::Normal(std) => (0..n).map(|_| (std * rng.normal()) as f32).collect(),
        };
        var.set(&Tensor::from_vec(values, dims, var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// Parameters in a var map.
pub fn parameter_count(varmap: &VarMap) -> usize {
    varmap.all_vars().iter().map(|v| v.elem_count()).sum()
}

#[cfg(test)]
mod tests {
    use super::srresnet::SrResNet;
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;

    fn build(channels: usize, blocks: usize, mode: PromptMode) -> (VarMap, SrResNet) {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let net = SrResNet::new(channels, blocks, mode, vb).unwrap();
        init_weights(&vm, 0, 0.1).unwrap();
        (vm, net)
    }

    /// Every variable of `vm` has a non-zero gradient in `grads`.
    fn assert_all_gradients(vm: &VarMap, grads: &candle_core::backprop::GradStore, what: &str) {
        for (name, var) in vm.data().lock().unwrap().iter() {
            let g = grads
                .get(var)
                .unwrap_or_else(|| panic!("{what}: no gradient for {name}"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0, "{what}: zero gradient for {name}");
        }
    }

    #[test]
    fn the_reference_configuration_has_about_1_2_million_parameters() {
        let (vm, _) = build(64, 16, PromptMode::None);
        // conv_first 1,792 + 32 body convs of 36,928 + conv_hr 36,928 + conv_last 1,731.
        assert_eq!(parameter_count(&vm), 1_792 + 32 * 36_928 + 36_928 + 1_731);
        assert_eq!(parameter_count(&vm), 1_222_147);
        let (ep, _) = build(64, 16, PromptMode::Explicit { dim: 64 });
        let extractor = (64 * 49 + 64) + 2 * (64 * 64 * 9 + 64);
        let modulation = 2 * (17 * (64 * 64 + 64) + (64 * 3 + 3));
        assert_eq!(parameter_count(&ep), 1_222_147 + extractor + modulation);
        let (ap, _) = build(64, 16, PromptMode::Adaptive { dim: 64 });
        assert_eq!(parameter_count(&ap), parameter_count(&ep) + 2 * 64 * 49);
    }

    #[test]
    fn parameter_names_are_the_references() {
        let names = |vm: &VarMap| {
            let mut v: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
            v.sort();
            v
        };
        let (plain, _) = build(8, 2, PromptMode::None);
        assert_eq!(
            names(&plain),
            [
                "body.0.conv1.bias",
                "body.0.conv1.weight",
                "body.0.conv2.bias",
                "body.0.conv2.weight",
                "body.1.conv1.bias",
                "body.1.conv1.weight",
                "body.1.conv2.bias",
                "body.1.conv2.weight",
                "conv_first.bias",
                "conv_first.weight",
                "conv_hr.bias",
                "conv_hr.weight",
                "conv_last.bias",
                "conv_last.weight",
            ]
        );
        let (ep, _) = build(8, 2, PromptMode::Explicit { dim: 16 });
        let n = names(&ep);
        for want in [
            "F_ext_net.conv1.weight",
            "F_ext_net.conv3.bias",
            "body1.0.conv1.weight",
            "body2.0.conv2.bias",
            "prompt_scale1.weight",
            "prompt_shift2.bias",
            "prompt_scalehr.weight",
            "prompt_shiftout.weight",
        ] {
            assert!(n.contains(&want.to_string()), "{want} not in {n:?}");
        }
        assert!(!n.iter().any(|x| x.starts_with("body.")));
    }

    #[test]
    fn initialisation_is_seeded_and_follows_the_reference() {
        let (a, _) = build(16, 2, PromptMode::Adaptive { dim: 8 });
        let (b, _) = build(16, 2, PromptMode::Adaptive { dim: 8 });
        let get = |vm: &VarMap, n: &str| -> Vec<f32> {
            vm.data().lock().unwrap()[n]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert!(
            !a.data().lock().unwrap().contains_key("body.0.conv1.weight"),
            "prompted names differ"
        );
        let w = get(&a, "body1.0.conv1.weight");
        assert_eq!(
            w,
            get(&b, "body1.0.conv1.weight"),
            "same seed, same weights"
        );
        let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
        let want = 0.1 * (2.0f32 / (16.0 * 9.0)).sqrt();
        assert!((std / want - 1.0).abs() < 0.1, "{std} vs {want}");
        // Prompted: conv_hr keeps PyTorch's default; the residual blocks are scaled.
        assert!(get(&a, "conv_hr.bias").iter().any(|&x| x != 0.0));
        assert!(get(&a, "body1.0.conv1.bias").iter().all(|&x| x == 0.0));
        let (plain, _) = build(16, 2, PromptMode::None);
        assert!(get(&plain, "conv_hr.bias").iter().all(|&x| x == 0.0));
        let bound = 1.0 / (8.0f32).sqrt();
        assert!(get(&a, "prompt_scale1.weight")
            .iter()
            .all(|x| x.abs() <= bound));
    }

    #[test]
    fn forward_keeps_the_shape_and_every_variable_gets_a_gradient() {
        for mode in [
            PromptMode::None,
            PromptMode::Explicit { dim: 8 },
            PromptMode::Adaptive { dim: 8 },
        ] {
            let (vm, net) = build(8, 2, mode);
            let x = Tensor::rand(0f32, 1f32, (2, 3, 16, 16), &Device::Cpu).unwrap();
            let source = match mode {
                PromptMode::Explicit { .. } => {
                    Some(Tensor::rand(0f32, 1f32, (2, 1, 32, 32), &Device::Cpu).unwrap())
                }
                PromptMode::Adaptive { .. } => Some(x.clone()),
                PromptMode::None => None,
            };
            let z = match &source {
                Some(s) => net.latent(s).unwrap(),
                None => None,
            };
            if let Some(z) = &z {
                assert_eq!(z.dims(), &[2, 8]);
            }
            let y = net.forward(&x, z.as_ref()).unwrap();
            assert_eq!(y.dims(), x.dims());
            // Against a target, so no gradient is zero by symmetry.
            let target = Tensor::rand(0f32, 1f32, (2, 3, 16, 16), &Device::Cpu).unwrap();
            let loss = (y - target).unwrap().abs().unwrap().mean_all().unwrap();
            let grads = loss.backward().unwrap();
            assert_all_gradients(&vm, &grads, &format!("{mode:?}"));
        }
    }

    /// Central finite differences against autograd for a few entries of each named variable.
    fn gradient_check(vm: &VarMap, loss: impl Fn() -> Tensor, names: &[&str]) {
        let grads = loss().backward().unwrap();
        for name in names {
            let var = vm.data().lock().unwrap()[*name].clone();
            let g: Vec<f64> = grads
                .get(&var)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let base: Vec<f64> = var.flatten_all().unwrap().to_vec1().unwrap();
            for i in [0, base.len() / 2, base.len() - 1] {
                let eps = 1e-6;
                let at = |d: f64| {
                    let mut v = base.clone();
                    v[i] += d;
                    var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap())
                        .unwrap();
                    loss().to_scalar::<f64>().unwrap()
                };
                let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
                var.set(&Tensor::from_vec(base.clone(), var.dims(), &Device::Cpu).unwrap())
                    .unwrap();
                let tol = 1e-6 + 1e-4 * numeric.abs().max(g[i].abs());
                assert!(
                    (numeric - g[i]).abs() < tol,
                    "{name}[{i}]: autograd {} vs finite differences {numeric}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn modulation_and_extractor_gradients_match_finite_differences() {
        use super::prompt::{Extractor, Modulation};
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
        let ext = Extractor::new(3, 6, vb.pp("F_ext_net")).unwrap();
        let m = Modulation::new(6, 4, "1", &vb).unwrap();
        init_weights(&vm, 3, 0.1).unwrap();
        let dev = Device::Cpu;
        let x = Tensor::rand(0f64, 1f64, (2, 3, 20, 20), &dev).unwrap();
        let f = Tensor::rand(-1f64, 1f64, (2, 4, 5, 5), &dev).unwrap();
        let w = Tensor::rand(-1f64, 1f64, (2, 4, 5, 5), &dev).unwrap();
        let loss = || {
            let z = ext.forward(&x).unwrap();
            (m.forward(&f, &z).unwrap() * &w)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        gradient_check(
            &vm,
            loss,
            &[
                "prompt_scale1.weight",
                "prompt_shift1.bias",
                "F_ext_net.conv1.weight",
                "F_ext_net.conv3.bias",
            ],
        );
    }

    /// Every variable of `vm` gets a gradient from an L1 loss on `forward(x)` for random
    /// `x` of `dims`.
    fn check_all_gradients(
        vm: &VarMap,
        dims: (usize, usize, usize, usize),
        forward: impl Fn(&Tensor) -> Tensor,
        what: &str,
    ) {
        let x = Tensor::rand(0f32, 1f32, dims, &Device::Cpu).unwrap();
        let t = Tensor::rand(0f32, 1f32, dims, &Device::Cpu).unwrap();
        let y = forward(&x);
        assert_eq!(y.dims(), x.dims(), "{what}");
        let loss = (y - t).unwrap().abs().unwrap().mean_all().unwrap();
        assert_all_gradients(vm, &loss.backward().unwrap(), what);
    }

    const MODES: [PromptMode; 3] = [
        PromptMode::None,
        PromptMode::Explicit { dim: 8 },
        PromptMode::Adaptive { dim: 8 },
    ];

    /// The prompt source for a mode: task maps (explicit) or the input (adaptive).
    fn latent_source(mode: PromptMode, x: &Tensor) -> Option<Tensor> {
        match mode {
            PromptMode::Explicit { .. } => Some(
                Tensor::rand(0f32, 1f32, (x.dim(0).unwrap(), 1, 32, 32), &Device::Cpu).unwrap(),
            ),
            PromptMode::Adaptive { .. } => Some(x.clone()),
            PromptMode::None => None,
        }
    }

    #[test]
    fn swinir_reference_configuration_and_gradients() {
        use super::swinir::{init_rule, SwinConfig, SwinIr};
        // The paper's configuration: 11,504,163 parameters, as BasicSR's SwinIR counts them.
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        SwinIr::new(&SwinConfig::reference(), PromptMode::None, vb).unwrap();
        assert_eq!(parameter_count(&vm), 11_504_163);
        // With explicit prompts, as MiOIR's SwinIR_EP counts them: the extractor (1 channel
        // in), 6 group modulations and after_body (180 each), before_upsample (64) and last
        // (3); conv_before_upsample (180 -> 64) and a conv_last from 64 channels.
        let ep = VarMap::new();
        let vb = VarBuilder::from_varmap(&ep, DType::F32, &Device::Cpu);
        SwinIr::new(
            &SwinConfig::reference(),
            PromptMode::Explicit { dim: 64 },
            vb,
        )
        .unwrap();
        let extractor = (64 * 49 + 64) + 2 * (64 * 64 * 9 + 64);
        let modulation = 2 * (7 * (64 * 180 + 180) + (64 * 64 + 64) + (64 * 3 + 3));
        let convs = (180 * 64 * 9 + 64) + (64 * 3 * 9 + 3) - (180 * 3 * 9 + 3);
        assert_eq!(
            parameter_count(&ep),
            11_504_163 + extractor + modulation + convs
        );
        // Every variable of a small one gets a gradient (hand-written LayerNorm and softmax),
        // plain and prompted.
        let cfg = SwinConfig {
            embed: 8,
            depths: vec![2, 1],
            heads: 2,
            window: 4,
            mlp_ratio: 2.0,
        };
        for mode in MODES {
            let vm = VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
            let net = SwinIr::new(&cfg, mode, vb).unwrap();
            init_by(&vm, 4, init_rule).unwrap();
            let forward = |x: &Tensor| {
                let z = latent_source(mode, x).map(|s| net.latent(&s).unwrap().unwrap());
                net.forward(x, z.as_ref()).unwrap()
            };
            check_all_gradients(&vm, (2, 3, 8, 12), forward, &format!("swinir {mode:?}"));
            // Sides that are not multiples of the window are refused with a reason.
            let odd = Tensor::zeros((1, 3, 10, 12), DType::F32, &Device::Cpu).unwrap();
            let z = latent_source(mode, &odd).map(|s| net.latent(&s).unwrap().unwrap());
            assert!(net
                .forward(&odd, z.as_ref())
                .unwrap_err()
                .to_string()
                .contains("multiples of its window"));
        }
        // The reference's initialisation: LayerNorm at 1 and 0, linear layers small.
        let vm = VarMap::new();
        SwinIr::new(
            &cfg,
            PromptMode::Explicit { dim: 8 },
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )
        .unwrap();
        init_by(&vm, 0, init_rule).unwrap();
        let get = |n: &str| -> Vec<f32> {
            vm.data().lock().unwrap()[n]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert!(get("layers.0.residual_group.blocks.1.norm2.weight")
            .iter()
            .all(|&v| v == 1.0));
        assert!(get("patch_embed.norm.bias").iter().all(|&v| v == 0.0));
        assert!(get("layers.1.prompt_scale.bias").iter().all(|&v| v == 0.0));
        let qkv = get("layers.0.residual_group.blocks.0.attn.qkv.weight");
        let std = (qkv.iter().map(|v| v * v).sum::<f32>() / qkv.len() as f32).sqrt();
        assert!((std - 0.02).abs() < 0.005, "{std}");
        assert!(
            get("conv_first.bias").iter().any(|&v| v != 0.0),
            "convs keep PyTorch's default"
        );
    }

    #[test]
    fn restormer_reference_configuration_and_gradients() {
        use super::restormer::{init_rule, Restormer, RestormerConfig};
        let count = |mode: PromptMode| {
            let vm = VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
            Restormer::new(&RestormerConfig::reference(), mode, vb).unwrap();
            parameter_count(&vm)
        };
        // The reference configuration: 26,126,644 parameters, as the reference's Restormer
        // counts them (tools/reference.py prints it).
        let plain = count(PromptMode::None);
        assert_eq!(plain, 26_126_644);
        // Four extractors (1 channel in) and six modulation points: latent (384), decoder 3
        // (192), three at 96 and the output (3), as Restormer_EP.
        let extractor = (64 * 49 + 64) + 2 * (64 * 64 * 9 + 64);
        let lin = |c: usize| 2 * (64 * c + c);
        let ep = plain + 4 * extractor + lin(384) + lin(192) + 3 * lin(96) + lin(3);
        assert_eq!(count(PromptMode::Explicit { dim: 64 }), ep);
        assert_eq!(
            count(PromptMode::Adaptive { dim: 64 }),
            ep + 4 * 2 * 64 * 49
        );
        let cfg = RestormerConfig {
            dim: 4,
            blocks: [1, 1, 1, 1],
            refinement: 1,
            heads: [1, 2, 2, 4],
            ffn_expansion: 2.0,
            bias: true,
        };
        for mode in MODES {
            let vm = VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
            let net = Restormer::new(&cfg, mode, vb).unwrap();
            init_by(&vm, 5, init_rule).unwrap();
            let forward = |x: &Tensor| {
                let z = latent_source(mode, x).map(|s| net.latent(&s).unwrap().unwrap());
                if let Some(z) = &z {
                    assert_eq!(z.dims(), &[2, 4 * 8]);
                }
                net.forward(x, z.as_ref()).unwrap()
            };
            // Non-square: the depthwise kernel and the attention must not care.
            check_all_gradients(&vm, (2, 3, 16, 24), forward, &format!("restormer {mode:?}"));
        }
    }

    #[test]
    fn uformer_and_promptir_gradients_and_initialisation() {
        use super::promptir::{PromptIr, PromptIrConfig};
        use super::restormer::RestormerConfig;
        use super::uformer::{init_rule, Uformer, UformerConfig};
        let cfg = UformerConfig {
            embed: 4,
            depths: [1, 2, 1, 1, 2, 1, 1, 1, 2],
            heads: [1, 2, 2, 4, 4, 4, 2, 2, 1],
            window: 2,
            mlp_ratio: 2.0,
            modulator: true,
        };
        for mode in MODES {
            let vm = VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
            let net = Uformer::new(&cfg, mode, vb).unwrap();
            init_by(&vm, 6, init_rule).unwrap();
            let forward = |x: &Tensor| {
                let z = latent_source(mode, x).map(|s| net.latent(&s).unwrap().unwrap());
                if let Some(z) = &z {
                    assert_eq!(z.dims(), &[2, 5 * 8]);
                }
                net.forward(x, z.as_ref()).unwrap()
            };
            check_all_gradients(&vm, (2, 3, 32, 64), forward, &format!("uformer {mode:?}"));
            let odd = Tensor::zeros((1, 3, 32, 48), DType::F32, &Device::Cpu).unwrap();
            let z = latent_source(mode, &odd).map(|s| net.latent(&s).unwrap().unwrap());
            let err = net.forward(&odd, z.as_ref()).unwrap_err().to_string();
            assert!(err.contains("multiples of 32"), "{err}");
        }
        // The reference's initialisation: modulators standard normal, linear layers std 0.02
        // with zero biases, LayerNorm at 1 and 0, convolutions PyTorch's default.
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        Uformer::new(&UformerConfig::reference(), PromptMode::None, vb).unwrap();
        init_by(&vm, 0, init_rule).unwrap();
        let std_of = |n: &str| -> f32 {
            let v: Vec<f32> = vm.data().lock().unwrap()[n]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt()
        };
        assert!((std_of("decoderlayer_0.blocks.3.modulator.weight") - 1.0).abs() < 0.05);
        assert!((std_of("encoderlayer_2.blocks.1.attn.qkv.to_kv.weight") - 0.02).abs() < 0.002);
        assert_eq!(std_of("conv.blocks.0.mlp.linear1.0.bias"), 0.0);
        assert_eq!(std_of("decoderlayer_3.blocks.0.norm2.weight"), 1.0);
        assert!(std_of("upsample_1.deconv.0.bias") > 0.0);

        // PromptIR: every variable (the prompt components too) gets a gradient.
        let pcfg = PromptIrConfig {
            body: RestormerConfig {
                dim: 4,
                blocks: [1, 1, 1, 1],
                refinement: 1,
                heads: [1, 2, 2, 4],
                ffn_expansion: 2.0,
                bias: false,
            },
            prompt_dims: [4, 6, 8],
            prompt_sizes: [5, 3, 2],
            prompt_len: 3,
        };
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let net = PromptIr::new(&pcfg, vb).unwrap();
        init_by(&vm, 7, super::promptir::init_rule).unwrap();
        check_all_gradients(&vm, (2, 3, 16, 24), |x| net.forward(x).unwrap(), "promptir");
        let p: Vec<f32> = vm.data().lock().unwrap()["prompt2.prompt_param"]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(p.iter().all(|&v| (0.0..1.0).contains(&v)) && p.iter().any(|&v| v > 0.5));
    }

    #[test]
    fn a_prompted_model_without_a_prompt_is_an_error() {
        let (_, net) = build(8, 1, PromptMode::Explicit { dim: 8 });
        let x = Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(net
            .forward(&x, None)
            .unwrap_err()
            .to_string()
            .contains("needs a latent prompt"));
    }
}
