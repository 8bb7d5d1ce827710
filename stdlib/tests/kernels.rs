//! mio's convolution kernels against candle's own op (forward and both gradients) over random
//! shapes, and against finite differences where candle's backward cannot go (non-square inputs
//! with stride 2, which candle 0.11 rejects with "shape mismatch in add"); the depthwise kernel
//! against candle's grouped convolution and finite differences.

use candle_core::{Device, Tensor, Var};
use mio_stdlib::kernels::conv::{conv2d_bias_op, conv2d_op};
use mio_stdlib::kernels::depthwise::{depthwise_op, depthwise_taps};
use mio_stdlib::rng::Rng;

fn random(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.range(-1.0, 1.0) as f32).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / scale)
        .fold(0.0, f32::max)
}

/// What [`run`] and [`run_depthwise`] return, in order.
const PARTS: [&str; 3] = ["output", "input grad", "weight grad"];

/// Every tensor of `ours` has the shape of its counterpart in `theirs` and is within `tol` of
/// it (relative to the largest value); a failure names the part (`names[k]`, else its index)
/// and `context`.
fn assert_close(ours: &[Tensor], theirs: &[Tensor], tol: f32, names: &[&str], context: &str) {
    assert_eq!(ours.len(), theirs.len(), "{context}: how many parts");
    for (k, (a, t)) in ours.iter().zip(theirs).enumerate() {
        let part = names.get(k).map_or(format!("part {k}"), |n| n.to_string());
        assert_eq!(a.dims(), t.dims(), "{context}: {part}");
        let e = max_rel(a, t);
        assert!(
            e < tol,
            "{context}: {part}: relative error {e} for {:?}",
            a.dims()
        );
    }
}

/// Forward output and the gradients of `sum(y * r)` for input and weight.
fn run(x: &Tensor, w: &Tensor, r: &Tensor, pad: usize, stride: usize, ours: bool) -> [Tensor; 3] {
    let xv = Var::from_tensor(x).unwrap();
    let wv = Var::from_tensor(w).unwrap();
    let y = if ours {
        conv2d_op(xv.as_tensor(), wv.as_tensor(), pad, stride).unwrap()
    } else {
        xv.as_tensor()
            .conv2d(wv.as_tensor(), pad, stride, 1, 1)
            .unwrap()
    };
    let loss = (&y * r).unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    [
        y,
        g.get(xv.as_tensor()).unwrap().clone(),
        g.get(wv.as_tensor()).unwrap().clone(),
    ]
}

#[test]
fn forward_and_gradients_equal_candles_over_random_shapes() {
    let mut rng = Rng::derive(7, &["conv shapes"]);
    let mut cases = 0;
    while cases < 60 {
        let k: usize = [1, 3, 3, 5, 7][rng.int(0, 4) as usize];
        let stride = 1 + rng.int(0, 1) as usize;
        let pad = rng.int(0, k as i64 / 2 + 1) as usize;
        let (b, cin, cout) = (
            1 + rng.int(0, 2) as usize,
            1 + rng.int(0, 5) as usize,
            1 + rng.int(0, 5) as usize,
        );
        let h = k + rng.int(0, 11) as usize;
        // candle's backward fails for stride > 1 unless the input is square.
        let w = if stride == 1 {
            k + rng.int(0, 11) as usize
        } else {
            h
        };
        let x = random(&mut rng, &[b, cin, h, w]);
        let wt = random(&mut rng, &[cout, cin, k, k]);
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        let r = random(&mut rng, &[b, cout, ho, wo]);
        let ours = run(&x, &wt, &r, pad, stride, true);
        let theirs = run(&x, &wt, &r, pad, stride, false);
        let context = format!(
            "x {:?}, w {:?}, pad {pad}, stride {stride}",
            x.dims(),
            wt.dims()
        );
        assert_close(&ours, &theirs, 1e-4, &PARTS, &context);
        cases += 1;
    }
}

#[test]
fn gradients_match_finite_differences_on_non_square_strided_inputs() {
    let mut rng = Rng::derive(8, &["conv fd"]);
    for (h, w, k, stride, pad) in [(9, 14, 3, 2, 1), (12, 7, 7, 2, 3), (10, 6, 3, 3, 0)] {
        let x = random(&mut rng, &[2, 3, h, w])
            .to_dtype(candle_core::DType::F64)
            .unwrap();
        let wt = random(&mut rng, &[4, 3, k, k]);
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        let r = random(&mut rng, &[2, 4, ho, wo]);
        let x = x.to_dtype(candle_core::DType::F32).unwrap();
        let [_, gx, gw] = run(&x, &wt, &r, pad, stride, true);
        let loss = |x: &Tensor, w: &Tensor| -> f64 {
            let y = conv2d_op(x, w, pad, stride).unwrap();
            (&y * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let gx: Vec<f32> = gx.flatten_all().unwrap().to_vec1().unwrap();
        let gw: Vec<f32> = gw.flatten_all().unwrap().to_vec1().unwrap();
        let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let ws: Vec<f32> = wt.flatten_all().unwrap().to_vec1().unwrap();
        let eps = 1e-2f32;
        // The loss is linear in each input, so central differences are exact up to rounding.
        for i in (0..xs.len()).step_by(7) {
            let mut p = xs.clone();
            p[i] += eps;
            let mut m = xs.clone();
            m[i] -= eps;
            let t = |v: Vec<f32>| Tensor::from_vec(v, x.dims(), &Device::Cpu).unwrap();
            let fd = (loss(&t(p), &wt) - loss(&t(m), &wt)) / (2.0 * eps as f64);
            assert!(
                (fd - gx[i] as f64).abs() < 2e-3,
                "dx[{i}]: {fd} vs {}",
                gx[i]
            );
        }
        for i in 0..ws.len() {
            let mut p = ws.clone();
            p[i] += eps;
            let mut m = ws.clone();
            m[i] -= eps;
            let t = |v: Vec<f32>| Tensor::from_vec(v, wt.dims(), &Device::Cpu).unwrap();
            let fd = (loss(&x, &t(p)) - loss(&x, &t(m))) / (2.0 * eps as f64);
            assert!(
                (fd - gw[i] as f64).abs() < 2e-3,
                "dw[{i}]: {fd} vs {}",
                gw[i]
            );
        }
    }
}

#[test]
fn a_single_image_uses_the_threaded_gemm_and_agrees() {
    // Batch 1 takes the other path (threads inside the GEMM); large enough to be tiled.
    let mut rng = Rng::derive(9, &["conv big"]);
    let x = random(&mut rng, &[1, 16, 70, 90]);
    let w = random(&mut rng, &[8, 16, 3, 3]);
    let r = random(&mut rng, &[1, 8, 70, 90]);
    let ours = run(&x, &w, &r, 1, 1, true);
    let theirs = run(&x, &w, &r, 1, 1, false);
    assert_close(&ours, &theirs, 1e-4, &PARTS, "batch 1");
}

#[test]
fn the_fused_bias_equals_a_broadcast_add_and_gets_its_gradient() {
    let mut rng = Rng::derive(10, &["conv bias"]);
    for (b, cin, cout, h, w, k, stride, pad) in [
        (3, 4, 5, 9, 11, 3, 1, 1),
        (2, 3, 6, 8, 8, 7, 2, 3),
        (2, 3, 6, 5, 7, 1, 1, 0),
    ] {
        let x = random(&mut rng, &[b, cin, h, w]);
        let wt = random(&mut rng, &[cout, cin, k, k]);
        let bias = random(&mut rng, &[cout]);
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        let r = random(&mut rng, &[b, cout, ho, wo]);
        let grads = |fused: bool| -> Vec<Tensor> {
            let (xv, wv, bv) = (
                Var::from_tensor(&x).unwrap(),
                Var::from_tensor(&wt).unwrap(),
                Var::from_tensor(&bias).unwrap(),
            );
            let y = if fused {
                conv2d_bias_op(xv.as_tensor(), wv.as_tensor(), bv.as_tensor(), pad, stride).unwrap()
            } else {
                xv.as_tensor()
                    .conv2d(wv.as_tensor(), pad, stride, 1, 1)
                    .unwrap()
                    .broadcast_add(&bv.as_tensor().reshape((1, cout, 1, 1)).unwrap())
                    .unwrap()
            };
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            vec![
                y,
                g.get(xv.as_tensor()).unwrap().clone(),
                g.get(wv.as_tensor()).unwrap().clone(),
                g.get(bv.as_tensor()).unwrap().clone(),
            ]
        };
        assert_close(&grads(true), &grads(false), 1e-4, &["x", "w", "bias"], "");
    }
}

/// The ways to compute a depthwise convolution: mio's CPU kernel, the sum of shifted taps
/// (what other devices use), candle's grouped convolution.
#[derive(Clone, Copy, Debug)]
enum Depthwise {
    Kernel,
    Taps,
    Candle,
}

/// Depthwise forward and gradients of `sum(y * r)`.
fn run_depthwise(x: &Tensor, w: &Tensor, r: &Tensor, pad: usize, how: Depthwise) -> [Tensor; 3] {
    let xv = Var::from_tensor(x).unwrap();
    let wv = Var::from_tensor(w).unwrap();
    let (xt, wt) = (xv.as_tensor(), wv.as_tensor());
    let y = match how {
        Depthwise::Kernel => depthwise_op(xt, wt, pad, 1).unwrap(),
        Depthwise::Taps => depthwise_taps(xt, wt, pad).unwrap(),
        Depthwise::Candle => xt.conv2d(wt, pad, 1, 1, x.dim(1).unwrap()).unwrap(),
    };
    let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    [
        y,
        g.get(xv.as_tensor()).unwrap().clone(),
        g.get(wv.as_tensor()).unwrap().clone(),
    ]
}

#[test]
fn depthwise_forward_and_gradients_equal_candles_over_random_shapes() {
    let mut rng = Rng::derive(11, &["depthwise shapes"]);
    let mut shapes = vec![];
    for _ in 0..40 {
        let k: usize = [1, 3, 3, 5, 7][rng.int(0, 4) as usize];
        let pad = rng.int(0, k as i64 - 1) as usize;
        let (b, c) = (1 + rng.int(0, 2) as usize, 1 + rng.int(0, 9) as usize);
        // Non-square inputs too, and planes narrower than the filter where the padding
        // allows (one output wide).
        let least = k.saturating_sub(2 * pad).max(1);
        let mut side = || least + rng.int(0, 14) as usize;
        let (h, w) = (side(), side());
        shapes.push((b, c, h, w, k, pad));
    }
    // Restormer's deepest levels are a few pixels across.
    for (h, w) in [(1, 1), (1, 4), (2, 2), (5, 1), (6, 6)] {
        shapes.push((2, 3, h, w, 3, 1));
    }
    // A training crop's plane: the weight gradient sums 15,000 products a plane in f32 lanes.
    shapes.push((2, 2, 120, 124, 3, 1));
    for (case, &(b, c, h, w, k, pad)) in shapes.iter().enumerate() {
        let x = random(&mut rng, &[b, c, h, w]);
        let wt = random(&mut rng, &[c, 1, k, k]);
        let r = random(&mut rng, &[b, c, h + 2 * pad + 1 - k, w + 2 * pad + 1 - k]);
        let theirs = run_depthwise(&x, &wt, &r, pad, Depthwise::Candle);
        for how in [Depthwise::Kernel, Depthwise::Taps] {
            let ours = run_depthwise(&x, &wt, &r, pad, how);
            let context = format!("case {case}: {how:?}, x {:?}, k {k}, pad {pad}", x.dims());
            assert_close(&ours, &theirs, 1e-4, &PARTS, &context);
        }
    }
}

#[test]
fn depthwise_gradients_match_finite_differences() {
    let mut rng = Rng::derive(12, &["depthwise fd"]);
    let (b, c, h, w, k, pad) = (2, 3, 7, 10, 3, 1);
    let x = random(&mut rng, &[b, c, h, w]);
    let wt = random(&mut rng, &[c, 1, k, k]);
    let r = random(&mut rng, &[b, c, h, w]);
    let [_, gx, gw] = run_depthwise(&x, &wt, &r, pad, Depthwise::Kernel);
    let loss = |x: &Tensor, w: &Tensor| -> f64 {
        let y = depthwise_op(x, w, pad, 1).unwrap();
        (&y * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let eps = 1e-2f32;
    for (t, g, other_is_x) in [(&x, &gx, false), (&wt, &gw, true)] {
        let base: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        for i in (0..base.len()).step_by(5) {
            let at = |d: f32| {
                let mut v = base.clone();
                v[i] += d;
                let v = Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap();
                if other_is_x {
                    loss(&x, &v)
                } else {
                    loss(&v, &wt)
                }
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps as f64);
            assert!((fd - g[i] as f64).abs() < 2e-3, "[{i}]: {fd} vs {}", g[i]);
        }
    }
}

/// Output and gradients (for every input) of `sum(y * r)` where `y = f(inputs)`.
fn grads_of(inputs: &[Tensor], r: &Tensor, f: impl Fn(&[Tensor]) -> Tensor) -> Vec<Tensor> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![y];
    out.extend(ts.iter().map(|t| g.get(t).unwrap().clone()));
    out
}

#[test]
fn fused_activations_equal_candles_ops_and_their_gradients() {
    use mio_stdlib::kernels::conv::{conv2d_bias_act_op, Activation};
    let mut rng = Rng::derive(13, &["conv act"]);
    for act in [
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::LeakyRelu(0.01),
    ] {
        let (x, w, b) = (
            random(&mut rng, &[3, 4, 9, 11]),
            random(&mut rng, &[5, 4, 3, 3]),
            random(&mut rng, &[5]),
        );
        let r = random(&mut rng, &[3, 5, 9, 11]);
        let fused = grads_of(&[x.clone(), w.clone(), b.clone()], &r, |t| {
            conv2d_bias_act_op(&t[0], &t[1], &t[2], 1, 1, act).unwrap()
        });
        let plain = grads_of(&[x, w, b], &r, |t| {
            let y = t[0]
                .conv2d(&t[1], 1, 1, 1, 1)
                .unwrap()
                .broadcast_add(&t[2].reshape((1, 5, 1, 1)).unwrap())
                .unwrap();
            match act {
                Activation::Relu => y.relu().unwrap(),
                Activation::LeakyRelu(a) => y.maximum(&(&y * a as f64).unwrap()).unwrap(),
                Activation::None => y,
            }
        });
        assert_close(&fused, &plain, 1e-4, &[], &format!("{act:?}"));
    }
}

#[test]
fn fused_modulation_equals_candles_ops_and_their_gradients() {
    use mio_stdlib::kernels::modulate::residual_modulate;
    let mut rng = Rng::derive(14, &["modulate"]);
    let (b, c, h, w) = (3, 5, 7, 300); // planes longer than one 256-value row of partial sums
    for residual in [false, true] {
        // f, scale, shift and, with a residual, r.
        let mut inputs = vec![
            random(&mut rng, &[b, c, h, w]),
            random(&mut rng, &[b, c]),
            random(&mut rng, &[b, c]),
        ];
        if residual {
            inputs.push(random(&mut rng, &[b, c, h, w]));
        }
        let r = random(&mut rng, &[b, c, h, w]);
        let fused = grads_of(&inputs, &r, |t| {
            residual_modulate(&t[0], t.get(3), &t[1], &t[2]).unwrap()
        });
        let plain = grads_of(&inputs, &r, |t| {
            let x = match t.get(3) {
                Some(res) => (&t[0] + res).unwrap(),
                None => t[0].clone(),
            };
            let s = t[1].unsqueeze(2).unwrap().unsqueeze(3).unwrap();
            let sh = t[2].unsqueeze(2).unwrap().unsqueeze(3).unwrap();
            x.broadcast_mul(&(s + 1.0).unwrap())
                .unwrap()
                .broadcast_add(&sh)
                .unwrap()
        });
        assert_close(&fused, &plain, 1e-4, &[], &format!("residual {residual}"));
    }
}

#[test]
fn channel_norm_and_gated_gelu_equal_candles_ops_and_their_gradients() {
    use mio_stdlib::kernels::gate::gated_gelu;
    use mio_stdlib::kernels::norm::channel_norm;
    let mut rng = Rng::derive(15, &["restormer ops"]);
    let (b, c, h, w) = (2, 6, 5, 9);
    let r = random(&mut rng, &[b, c, h, w]);
    // Scaled and shifted input, so the normalisation has work to do.
    let x = ((random(&mut rng, &[b, c, h, w]) * 3.0).unwrap() + 1.5).unwrap();
    let inputs = [x, random(&mut rng, &[c]), random(&mut rng, &[c])];
    let ours = grads_of(&inputs, &r, |t| channel_norm(&t[0], &t[1], &t[2]).unwrap());
    let theirs = grads_of(&inputs, &r, |t| {
        let mean = t[0].mean_keepdim(1).unwrap();
        let centred = t[0].broadcast_sub(&mean).unwrap();
        let var = centred.sqr().unwrap().mean_keepdim(1).unwrap();
        centred
            .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&t[1].reshape((1, c, 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&t[2].reshape((1, c, 1, 1)).unwrap())
            .unwrap()
    });
    assert_close(&ours, &theirs, 1e-4, &[], "channel norm");
    let t = (random(&mut rng, &[b, 2 * c, h, w]) * 3.0).unwrap();
    let r = random(&mut rng, &[b, c, h, w]);
    let ours = grads_of(std::slice::from_ref(&t), &r, |t| gated_gelu(&t[0]).unwrap());
    let theirs = grads_of(&[t], &r, |t| {
        (t[0].narrow(1, 0, c).unwrap().gelu_erf().unwrap() * t[0].narrow(1, c, c).unwrap()).unwrap()
    });
    assert_close(&ours, &theirs, 1e-5, &[], "gated gelu");
}

#[test]
fn direct_and_im2col_paths_both_equal_candles_over_random_shapes() {
    use mio_stdlib::kernels::conv::set_direct;
    use mio_stdlib::kernels::direct;
    // Channel counts that fill the direct kernel's 8-channel tiles and its 1-4 vector
    // weight-gradient tiles, with remainders; widths on and off multiples of 16; batch 1 (a
    // single image's rows over threads) and larger.
    let mut rng = Rng::derive(15, &["direct shapes"]);
    let channels = [1, 3, 5, 8, 13, 16, 24, 40, 64, 70];
    let mut cases = vec![];
    for _ in 0..24 {
        let k = [3, 3, 3, 5, 7][rng.int(0, 4) as usize];
        let pad = rng.int(0, k as i64 - 1) as usize;
        let b = [1, 1, 2, 3][rng.int(0, 3) as usize];
        let cin = channels[rng.int(0, 9) as usize];
        let cout = channels[rng.int(0, 9) as usize];
        let h = k + rng.int(0, 20) as usize;
        let w = k + rng.int(0, 40) as usize;
        cases.push((k, pad, b, cin, cout, h, w));
    }
    // A tall single image whose rows split into several chunks.
    cases.push((3, 1, 1, 16, 24, 90, 70));
    for (k, pad, b, cin, cout, h, w) in cases {
        let x = random(&mut rng, &[b, cin, h, w]);
        let wt = random(&mut rng, &[cout, cin, k, k]);
        let (ho, wo) = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
        let r = random(&mut rng, &[b, cout, ho, wo]);
        let theirs = run(&x, &wt, &r, pad, 1, false);
        for on in [true, false] {
            set_direct(on);
            let ours = run(&x, &wt, &r, pad, 1, true);
            set_direct(true);
            let context = format!(
                "direct {on}, x {:?}, w {:?}, pad {pad}",
                x.dims(),
                wt.dims()
            );
            assert_close(&ours, &theirs, 1e-4, &PARTS, &context);
        }
    }
    if !direct::available() {
        eprintln!("note: this CPU has no AVX-512F, so only the im2col path was compared");
    }
}

/// `n` residual blocks' "same" 3x3 convolutions with biases, as SRResNet's body has.
fn block_layers(
    n: usize,
    c: usize,
    rng: &mut Rng,
) -> (
    Vec<(
        mio_stdlib::kernels::conv::Conv2d,
        mio_stdlib::kernels::conv::Conv2d,
    )>,
    candle_nn::VarMap,
) {
    use mio_stdlib::kernels::conv::{conv2d, Conv2dConfig};
    let map = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&map, candle_core::DType::F32, &Device::Cpu);
    let same = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    let layers = (0..n)
        .map(|i| {
            let vb = vb.pp(i.to_string());
            (
                conv2d(c, c, 3, same, vb.pp("conv1")).unwrap(),
                conv2d(c, c, 3, same, vb.pp("conv2")).unwrap(),
            )
        })
        .collect();
    // Random weights of the size the blocks see in training.
    for (name, var) in map.data().lock().unwrap().iter() {
        let t = random(rng, var.dims());
        let scale = if name.ends_with("bias") { 0.1 } else { 0.2 };
        var.set(&(t * scale).unwrap()).unwrap();
    }
    (layers, map)
}

#[test]
fn fused_residual_blocks_equal_their_separate_ops_and_their_gradients() {
    use mio_stdlib::kernels::conv::Activation;
    use mio_stdlib::kernels::modulate::residual_modulate;
    use mio_stdlib::kernels::resblock::residual_blocks;
    let mut rng = Rng::derive(16, &["resblock"]);
    for (n, b, c, h, w, modulated) in [
        (1, 2, 8, 9, 13, false),
        (3, 3, 16, 12, 20, true),
        (2, 1, 5, 7, 7, true),
        (3, 2, 8, 6, 10, false),
    ] {
        let (layers, map) = block_layers(n, c, &mut rng);
        let blocks: Vec<_> = layers.iter().map(|(a, b)| (a, b)).collect();
        let f = Var::from_tensor(&random(&mut rng, &[b, c, h, w])).unwrap();
        let mods: Vec<(Var, Var)> = (0..n)
            .map(|_| {
                (
                    Var::from_tensor(&(random(&mut rng, &[b, c]) * 0.5).unwrap()).unwrap(),
                    Var::from_tensor(&random(&mut rng, &[b, c])).unwrap(),
                )
            })
            .collect();
        let st: Vec<(Tensor, Tensor)> = mods
            .iter()
            .map(|(s, t)| (s.as_tensor().clone(), t.as_tensor().clone()))
            .collect();
        let st = modulated.then_some(st.as_slice());
        let fused = residual_blocks(f.as_tensor(), &blocks, st)
            .unwrap()
            .expect("the fused blocks apply on the CPU");
        let mut separate = f.as_tensor().clone();
        for (i, (c1, c2)) in blocks.iter().enumerate() {
            let inner = c2
                .forward_act(
                    &c1.forward_act(&separate, Activation::Relu).unwrap(),
                    Activation::None,
                )
                .unwrap();
            separate = match st {
                Some(m) => residual_modulate(&separate, Some(&inner), &m[i].0, &m[i].1).unwrap(),
                None => (&separate + inner).unwrap(),
            };
        }
        assert!(max_rel(&fused, &separate) < 1e-5, "{n} blocks: output");
        let mut watched: Vec<(String, Tensor)> = map
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        watched.push(("features".into(), f.as_tensor().clone()));
        if modulated {
            for (i, (s, t)) in mods.iter().enumerate() {
                watched.push((format!("scale {i}"), s.as_tensor().clone()));
                watched.push((format!("shift {i}"), t.as_tensor().clone()));
            }
        }
        let r = random(&mut rng, &[b, c, h, w]);
        let loss = |y: &Tensor| (y * &r).unwrap().sum_all().unwrap();
        let gf = loss(&fused).backward().unwrap();
        let gs = loss(&separate).backward().unwrap();
        // A second backward through the same fused graph recomputes what the first used up.
        let again = loss(&fused).backward().unwrap();
        for (name, t) in &watched {
            let fused = gf.get(t).unwrap().clone();
            let context = format!("{n} blocks, {name}");
            assert_close(
                std::slice::from_ref(&fused),
                &[gs.get(t).unwrap().clone()],
                1e-4,
                &[],
                &context,
            );
            // (1e-4, not exact: the im2col-vs-direct test may switch paths in between.)
            let again = again.get(t).unwrap().clone();
            assert_close(&[again], &[fused], 1e-4, &["again"], &context);
        }
    }
}

#[test]
fn fused_residual_blocks_decline_what_they_do_not_cover() {
    use mio_stdlib::kernels::conv::{conv2d, conv2d_no_bias, Conv2dConfig};
    use mio_stdlib::kernels::resblock::residual_blocks;
    let mut rng = Rng::derive(17, &["resblock declines"]);
    let (layers, _map) = block_layers(1, 4, &mut rng);
    let (c1, c2) = (&layers[0].0, &layers[0].1);
    let f = random(&mut rng, &[1, 4, 6, 6]);
    assert!(residual_blocks(&f, &[(c1, c2)], None).unwrap().is_some());
    assert!(residual_blocks(&f, &[], None).unwrap().is_none());
    // f64 features, a strided or bias-free convolution: the caller composes separate ops.
    let f64s = f.to_dtype(candle_core::DType::F64).unwrap();
    assert!(residual_blocks(&f64s, &[(c1, c2)], None).unwrap().is_none());
    let map = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&map, candle_core::DType::F32, &Device::Cpu);
    let strided = Conv2dConfig {
        padding: 1,
        stride: 2,
        ..Default::default()
    };
    let s = conv2d(4, 4, 3, strided, vb.pp("s")).unwrap();
    assert!(residual_blocks(&f, &[(&s, c2)], None).unwrap().is_none());
    let same = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    let nb = conv2d_no_bias(4, 4, 3, same, vb.pp("nb")).unwrap();
    assert!(residual_blocks(&f, &[(c1, &nb)], None).unwrap().is_none());
    // A modulation count that is not one per block is a mistake, not a fallback.
    let st = (random(&mut rng, &[1, 4]), random(&mut rng, &[1, 4]));
    let two = [st.clone(), st];
    assert!(residual_blocks(&f, &[(c1, c2)], Some(&two)).is_err());
}

#[test]
fn no_input_gradient_is_computed_for_an_input_nothing_flows_back_to() {
    use mio_stdlib::kernels::conv::conv2d_bias_op;
    let mut rng = Rng::derive(18, &["untracked input"]);
    // A first layer: the images are plain tensors, the weights variables.
    let x = random(&mut rng, &[2, 3, 8, 9]);
    let (w, b) = (
        Var::from_tensor(&random(&mut rng, &[4, 3, 3, 3])).unwrap(),
        Var::from_tensor(&random(&mut rng, &[4])).unwrap(),
    );
    let r = random(&mut rng, &[2, 4, 8, 9]);
    let y = conv2d_bias_op(&x, w.as_tensor(), b.as_tensor(), 1, 1).unwrap();
    let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none(), "an input gradient for the images");
    // The weight's gradient is still the one candle computes with the input tracked.
    let xv = Var::from_tensor(&x).unwrap();
    let theirs = run(xv.as_tensor(), w.as_tensor(), &r, 1, 1, false);
    assert!(max_rel(g.get(w.as_tensor()).unwrap(), &theirs[2]) < 1e-4);
}

#[test]
fn token_depthwise_equals_the_channels_first_convolution_and_its_gradients() {
    use mio_stdlib::kernels::tokens::depthwise_tokens;
    let mut rng = Rng::derive(13, &["token depthwise"]);
    // Grids of one pixel, one row, one column, odd channel counts (no vector-width multiple),
    // and a LeFF-sized one.
    let shapes = [
        (1, 1, 1, 1),
        (2, 1, 5, 3),
        (1, 6, 1, 7),
        (2, 4, 6, 5),
        (1, 7, 9, 13),
        (2, 16, 16, 64),
    ];
    for &(b, h, w, c) in &shapes {
        let x = random(&mut rng, &[b, h, w, c]);
        let wt = random(&mut rng, &[c, 1, 3, 3]);
        let bias = random(&mut rng, &[c]);
        let r = random(&mut rng, &[b, h, w, c]);
        let ours = grads_of(&[x.clone(), wt.clone(), bias.clone()], &r, |t| {
            depthwise_tokens(&t[0], &t[1], &t[2]).unwrap()
        });
        // candle's grouped convolution over the channels-first grid, plus the bias.
        let theirs = grads_of(&[x, wt, bias], &r, |t| {
            let first = t[0].permute((0, 3, 1, 2)).unwrap().contiguous().unwrap();
            let y = first
                .conv2d(&t[1], 1, 1, 1, c)
                .unwrap()
                .broadcast_add(&t[2].reshape((1, c, 1, 1)).unwrap())
                .unwrap();
            y.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap()
        });
        let context = format!("grid {:?}", (b, h, w, c));
        let names = ["output", "input grad", "weight grad", "bias grad"];
        assert_close(&ours, &theirs, 1e-4, &names, &context);
    }
}

#[test]
fn row_norm_and_gelu_equal_candles_ops_and_their_gradients() {
    use mio_stdlib::kernels::gate::gelu;
    use mio_stdlib::kernels::norm::row_norm;
    let mut rng = Rng::derive(16, &["transformer ops"]);
    // Rows of odd and vector-sized widths, more rows than one task takes.
    for (n, c) in [(1, 1), (3, 7), (300, 16), (520, 60)] {
        let r = random(&mut rng, &[2, n, c]);
        let x = ((random(&mut rng, &[2, n, c]) * 3.0).unwrap() + 1.5).unwrap();
        let inputs = [x, random(&mut rng, &[c]), random(&mut rng, &[c])];
        let ours = grads_of(&inputs, &r, |t| row_norm(&t[0], &t[1], &t[2]).unwrap());
        let theirs = grads_of(&inputs, &r, |t| {
            let mean = t[0].mean_keepdim(2).unwrap();
            let centred = t[0].broadcast_sub(&mean).unwrap();
            let var = centred.sqr().unwrap().mean_keepdim(2).unwrap();
            centred
                .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
                .unwrap()
                .broadcast_mul(&t[1])
                .unwrap()
                .broadcast_add(&t[2])
                .unwrap()
        });
        let names = ["output", "input grad", "weight grad", "bias grad"];
        assert_close(&ours, &theirs, 1e-4, &names, &format!("row norm {n}x{c}"));
        let t = (random(&mut rng, &[3, n, c]) * 4.0).unwrap();
        let r = random(&mut rng, &[3, n, c]);
        let ours = grads_of(std::slice::from_ref(&t), &r, |t| gelu(&t[0]).unwrap());
        let theirs = grads_of(&[t], &r, |t| t[0].gelu_erf().unwrap());
        assert_close(
            &ours,
            &theirs,
            1e-5,
            &["output", "input grad"],
            &format!("gelu {n}x{c}"),
        );
    }
}

#[test]
fn window_softmax_equals_candles_ops_and_their_gradients() {
    use mio_stdlib::kernels::attention::window_softmax;
    let mut rng = Rng::derive(17, &["window softmax"]);
    // 2 images x 4 windows, 3 heads, windows of 9 positions; with and without a mask.
    let (b, nw, heads, n) = (2, 4, 3, 9);
    let logits = (random(&mut rng, &[b * nw, heads, n, n]) * 4.0).unwrap();
    let bias = random(&mut rng, &[heads, n, n]);
    let r = random(&mut rng, &[b * nw, heads, n, n]);
    let mask: Vec<f32> = (0..nw * n * n)
        .map(|i| if (i * 7) % 5 == 0 { -100.0 } else { 0.0 })
        .collect();
    let mask = Tensor::from_vec(mask, (nw, n, n), &Device::Cpu).unwrap();
    for m in [None, Some(&mask)] {
        let ours = grads_of(&[logits.clone(), bias.clone()], &r, |t| {
            window_softmax(&t[0], &t[1], m).unwrap()
        });
        let theirs = grads_of(&[logits.clone(), bias.clone()], &r, |t| {
            let mut a = t[0].broadcast_add(&t[1].unsqueeze(0).unwrap()).unwrap();
            if let Some(m) = m {
                a = a
                    .reshape((b, nw, heads, n, n))
                    .unwrap()
                    .broadcast_add(&m.unsqueeze(1).unwrap().unsqueeze(0).unwrap())
                    .unwrap()
                    .reshape((b * nw, heads, n, n))
                    .unwrap();
            }
            let e = a
                .broadcast_sub(&a.max_keepdim(3).unwrap())
                .unwrap()
                .exp()
                .unwrap();
            e.broadcast_div(&e.sum_keepdim(3).unwrap()).unwrap()
        });
        let names = ["output", "logits grad", "bias grad"];
        assert_close(
            &ours,
            &theirs,
            1e-5,
            &names,
            &format!("mask {}", m.is_some()),
        );
    }
}

/// `a @ b` for `[batch, m, k]` and `[batch, k, n]` in f64, from the values as they are laid out.
fn naive_matmul(a: &Tensor, b: &Tensor) -> Vec<f64> {
    let (batch, m, _) = a.dims3().unwrap();
    let n = b.dim(2).unwrap();
    let a: Vec<Vec<Vec<f32>>> = a.to_vec3().unwrap();
    let b: Vec<Vec<Vec<f32>>> = b.to_vec3().unwrap();
    let mut out = Vec::with_capacity(batch * m * n);
    for (a, b) in a.iter().zip(&b) {
        for row in a {
            for j in 0..n {
                let column = b.iter().map(|b_row| b_row[j] as f64);
                out.push(row.iter().zip(column).map(|(x, y)| *x as f64 * y).sum());
            }
        }
    }
    assert_eq!(out.len(), batch * m * n);
    out
}

/// mio's candle-core spreads a batch of products too small for gemm's own threads over the
/// threads, one product each (vendor/candle-core/PATCHED.md): every product must land in its
/// own place, whatever the layouts (transposed operands, a shared right-hand side, a shared
/// left-hand side) and sizes (one row, one column, and one product above the threshold).
#[test]
fn batched_products_equal_each_product_computed_alone() {
    let mut rng = Rng::derive(23, &["batched matmul"]);
    let check = |a: &Tensor, b: &Tensor, what: &str| {
        let ours: Vec<f32> = a
            .matmul(b)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want = naive_matmul(a, b);
        assert_eq!(ours.len(), want.len(), "{what}");
        for (i, (o, w)) in ours.iter().zip(&want).enumerate() {
            assert!(
                (*o as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what}: element {i} is {o}, want {w}"
            );
        }
    };
    for (batch, m, n, k) in [
        (64, 16, 16, 8),
        (37, 1, 5, 3),
        (9, 7, 1, 11),
        (3, 130, 120, 100),
        // No inner dimension: all zeros (the product's output starts uninitialised otherwise,
        // every value written by gemm, which the comparisons above would catch if not).
        (4, 3, 5, 0),
    ] {
        let a = random(&mut rng, &[batch, m, k]);
        let b = random(&mut rng, &[batch, k, n]);
        let at = random(&mut rng, &[batch, k, m]).transpose(1, 2).unwrap();
        let bt = random(&mut rng, &[batch, n, k]).transpose(1, 2).unwrap();
        let shape = format!("{batch}x{m}x{n}x{k}");
        check(&a, &b, &format!("{shape} contiguous"));
        check(&at, &bt, &format!("{shape} both transposed"));
        check(&a, &bt, &format!("{shape} rhs transposed"));
        let shared_b = random(&mut rng, &[1, k, n])
            .broadcast_as((batch, k, n))
            .unwrap();
        check(&a, &shared_b, &format!("{shape} one rhs for the batch"));
        let shared_a = random(&mut rng, &[1, m, k])
            .broadcast_as((batch, m, k))
            .unwrap();
        check(&shared_a, &b, &format!("{shape} one lhs for the batch"));
    }
}
