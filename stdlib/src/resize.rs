//! Bicubic resizing, two ways. `torch`: PyTorch's `interpolate(mode='bicubic',
//! align_corners=False)` without antialiasing (a = -0.75, clamped borders), which the reference
//! implementation uses to make its super-resolution inputs. `matlab`: MATLAB's `imresize`
//! (a = -0.5, antialiased when shrinking, symmetric borders), as BasicSR's `imresize` computes it.
//! Both work on f32 planes and are separable.

/// One output sample: the input indices it reads and their weights.
struct Taps {
    index: Vec<usize>,
    weight: Vec<f32>,
    /// Taps per output sample.
    n: usize,
}

fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// PyTorch's taps: source = scale * (dst + 0.5) - 0.5, four neighbours clamped to the border.
fn torch_taps(in_len: usize, out_len: usize, scale: f64) -> Taps {
    let mut index = Vec::with_capacity(out_len * 4);
    let mut weight = Vec::with_capacity(out_len * 4);
    for o in 0..out_len {
        // PyTorch computes the source coordinate and the weights in the input's precision
        // (f32); do the same so results agree to the last bit in most pixels.
        let src = (scale as f32) * (o as f32 + 0.5) - 0.5;
        let i0 = src.floor();
        let t = (src - i0) as f64;
        let ws = [
            cubic(t + 1.0, -0.75),
            cubic(t, -0.75),
            cubic(1.0 - t, -0.75),
            cubic(2.0 - t, -0.75),
        ];
        for (k, w) in ws.iter().enumerate() {
            let i = (i0 as i64 - 1 + k as i64).clamp(0, in_len as i64 - 1) as usize;
            index.push(i);
            weight.push(*w as f32);
        }
    }
    Taps {
        index,
        weight,
        n: 4,
    }
}

/// MATLAB's taps (BasicSR `calculate_weights_indices`), with symmetric borders.
fn matlab_taps(in_len: usize, out_len: usize, scale: f64) -> Taps {
    let antialias = scale < 1.0;
    let width = if antialias { 4.0 / scale } else { 4.0 };
    let n = width.ceil() as usize + 2;
    let mut index = Vec::with_capacity(out_len * n);
    let mut weight = Vec::with_capacity(out_len * n);
    for o in 0..out_len {
        let x = (o + 1) as f64;
        let u = x / scale + 0.5 * (1.0 - 1.0 / scale);
        let left = (u - width / 2.0).floor();
        let mut ws = Vec::with_capacity(n);
        for k in 0..n {
            let j = left + k as f64; // 1-based
            let d = u - j;
            ws.push(if antialias {
                scale * cubic(d * scale, -0.5)
            } else {
                cubic(d, -0.5)
            });
        }
        let sum: f64 = ws.iter().sum();
        for (k, w) in ws.iter().enumerate() {
            let j = left as i64 + k as i64 - 1; // 0-based
            let n = in_len as i64;
            let i = if j < 0 {
                -j - 1
            } else if j >= n {
                2 * n - j - 1
            } else {
                j
            };
            index.push(i.clamp(0, n - 1) as usize);
            weight.push((w / sum) as f32);
        }
    }
    Taps { index, weight, n }
}

/// Resizes interleaved `channels`-channel f32 data from `w` x `h` to `ow` x `oh`.
fn separable(
    data: &[f32],
    (w, h, channels): (usize, usize, usize),
    (ow, oh): (usize, usize),
    tx: &Taps,
    ty: &Taps,
) -> Vec<f32> {
    // Rows first (width), then columns (height); accumulate in f32 as PyTorch does.
    let mut mid = vec![0f32; h * ow * channels];
    for y in 0..h {
        let row = &data[y * w * channels..(y + 1) * w * channels];
        let out = &mut mid[y * ow * channels..(y + 1) * ow * channels];
        for x in 0..ow {
            for c in 0..channels {
                let mut acc = 0f32;
                for k in 0..tx.n {
                    acc += tx.weight[x * tx.n + k] * row[tx.index[x * tx.n + k] * channels + c];
                }
                out[x * channels + c] = acc;
            }
        }
    }
    let mut out = vec![0f32; oh * ow * channels];
    let stride = ow * channels;
    for y in 0..oh {
        let dst = &mut out[y * stride..(y + 1) * stride];
        for k in 0..ty.n {
            let wgt = ty.weight[y * ty.n + k];
            let src = &mid[ty.index[y * ty.n + k] * stride..(ty.index[y * ty.n + k] + 1) * stride];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += wgt * s;
            }
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// PyTorch bicubic, a = -0.75, no antialiasing.
    Torch,
    /// MATLAB imresize bicubic, a = -0.5, antialiased when shrinking.
    Matlab,
}

/// Resizes by a scale factor (as `interpolate(scale_factor=...)`): the output is
/// `floor(w * factor)` x `floor(h * factor)` and the sampling step is exactly `1 / factor`.
pub fn resize_by(
    data: &[f32],
    w: usize,
    h: usize,
    channels: usize,
    factor: f64,
    kernel: Kernel,
) -> (Vec<f32>, usize, usize) {
    let ow = ((w as f64) * factor).floor() as usize;
    let oh = ((h as f64) * factor).floor() as usize;
    let out = resize_with_scale(
        data,
        w,
        h,
        channels,
        ow,
        oh,
        1.0 / factor,
        1.0 / factor,
        kernel,
    );
    (out, ow, oh)
}

/// Resizes to a size (as `interpolate(size=...)`): the step is `in / out` on each axis.
pub fn resize_to(
    data: &[f32],
    w: usize,
    h: usize,
    channels: usize,
    ow: usize,
    oh: usize,
    kernel: Kernel,
) -> Vec<f32> {
    resize_with_scale(
        data,
        w,
        h,
        channels,
        ow,
        oh,
        w as f64 / ow as f64,
        h as f64 / oh as f64,
        kernel,
    )
}

#[allow(clippy::too_many_arguments)]
fn resize_with_scale(
    data: &[f32],
    w: usize,
    h: usize,
    channels: usize,
    ow: usize,
    oh: usize,
    step_x: f64,
    step_y: f64,
    kernel: Kernel,
) -> Vec<f32> {
    let (tx, ty) = match kernel {
        Kernel::Torch => (torch_taps(w, ow, step_x), torch_taps(h, oh, step_y)),
        // MATLAB's taps take the scale (out / in), not the step.
        Kernel::Matlab => (
            matlab_taps(w, ow, 1.0 / step_x),
            matlab_taps(h, oh, 1.0 / step_y),
        ),
    };
    separable(data, (w, h, channels), (ow, oh), &tx, &ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_images_stay_constant_and_identity_is_exact() {
        let data = vec![0.3f32; 20 * 12 * 3];
        for k in [Kernel::Torch, Kernel::Matlab] {
            let (down, ow, oh) = resize_by(&data, 20, 12, 3, 0.25, k);
            assert_eq!((ow, oh), (5, 3));
            assert!(down.iter().all(|v| (v - 0.3).abs() < 1e-6), "{k:?}");
            let up = resize_to(&down, 5, 3, 3, 20, 12, k);
            assert!(up.iter().all(|v| (v - 0.3).abs() < 1e-6), "{k:?}");
        }
        let ramp: Vec<f32> = (0..8 * 8).map(|i| i as f32 / 64.0).collect();
        let same = resize_to(&ramp, 8, 8, 1, 8, 8, Kernel::Torch);
        assert!(same.iter().zip(&ramp).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn torch_taps_match_hand_computed_values() {
        // Downscale by 4: output 0 samples input coordinate 4 * 0.5 - 0.5 = 1.5.
        let t = torch_taps(16, 4, 4.0);
        assert_eq!(&t.index[..4], &[0, 1, 2, 3]);
        let expect = [
            cubic(1.5, -0.75),
            cubic(0.5, -0.75),
            cubic(0.5, -0.75),
            cubic(1.5, -0.75),
        ];
        for (w, e) in t.weight[..4].iter().zip(expect) {
            assert!((*w as f64 - e).abs() < 1e-7);
        }
        assert!((expect.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
