//! mio's convolution kernels against candle's own op (forward and both gradients) over random
//! shapes, and against finite differences where candle's backward cannot go (non-square inputs
//! with stride 2, which candle 0.11 rejects with "shape mismatch in add").

use candle_core::{Device, Tensor, Var};
use mio_stdlib::kernels::conv::{conv2d_bias_op, conv2d_op};
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
        let k = [1, 3, 3, 5, 7][rng.int(0, 4) as usize];
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
        for (what, (a, t)) in ["output", "input grad", "weight grad"]
            .iter()
            .zip(ours.iter().zip(&theirs))
        {
            assert_eq!(a.dims(), t.dims(), "{what}");
            let e = max_rel(a, t);
            assert!(
                e < 1e-4,
                "{what}: relative error {e} for x {:?}, w {:?}, pad {pad}, stride {stride}",
                x.dims(),
                wt.dims()
            );
        }
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
    for (a, t) in ours.iter().zip(&theirs) {
        assert!(max_rel(a, t) < 1e-4);
    }
}

#[test]
fn the_fused_bias_equals_a_broadcast_add_and_gets_its_gradient() {
    let mut rng = Rng::derive(10, &["conv bias"]);
    for (b, cin, cout, h, w, k, stride, pad) in
        [(3, 4, 5, 9, 11, 3, 1, 1), (2, 3, 6, 8, 8, 7, 2, 3)]
    {
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
        for (a, t) in grads(true).iter().zip(&grads(false)) {
            assert!(max_rel(a, t) < 1e-4, "{:?}", a.dims());
        }
    }
}
