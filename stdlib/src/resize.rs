//! Bicubic resizing, two ways. `torch`: PyTorch's `interpolate(mode='bicubic',
//! align_corners=False)` without antialiasing (a = -0.75, clamped borders), which the reference
//! implementation uses to make its super-resolution inputs. `matlab`: MATLAB's `imresize`
//! (a = -0.5, antialiased when shrinking, symmetric borders), as BasicSR's `imresize` computes it.
//! Both are separable; [`resize_image`] works on 8-bit images row by row.

use crate::image::Image;

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

/// Resizes interleaved `channels`-channel f32 data from `w` x `h` to `ow` x `oh`. The vertical
/// pass (a weighted sum of whole rows, which vectorises) runs first when shrinking, so the
/// horizontal pass (a gather) always runs on the smaller image.
fn separable(
    data: &[f32],
    (w, h, channels): (usize, usize, usize),
    (ow, oh): (usize, usize),
    tx: &Taps,
    ty: &Taps,
) -> Vec<f32> {
    if oh < h {
        let mid = vertical(data, w * channels, oh, ty);
        horizontal(&mid, (w, oh, channels), ow, tx)
    } else {
        let mid = horizontal(data, (w, h, channels), ow, tx);
        vertical(&mid, ow * channels, oh, ty)
    }
}

/// Each output row is the taps' weighted sum of input rows of `stride` values.
fn vertical(data: &[f32], stride: usize, oh: usize, ty: &Taps) -> Vec<f32> {
    let mut out = vec![0f32; oh * stride];
    for (y, dst) in out.chunks_exact_mut(stride).enumerate() {
        for k in 0..ty.n {
            let wgt = ty.weight[y * ty.n + k];
            crate::simd::axpy(dst, &data[ty.index[y * ty.n + k] * stride..][..stride], wgt);
        }
    }
    out
}

/// Each output pixel of each row is the taps' weighted sum of input pixels.
fn horizontal(
    data: &[f32],
    (w, h, channels): (usize, usize, usize),
    ow: usize,
    tx: &Taps,
) -> Vec<f32> {
    let mut out = vec![0f32; h * ow * channels];
    for (row, dst) in data
        .chunks_exact(w * channels)
        .zip(out.chunks_exact_mut(ow * channels))
    {
        for ((px, idx), wgt) in dst
            .chunks_exact_mut(channels)
            .zip(tx.index.chunks_exact(tx.n))
            .zip(tx.weight.chunks_exact(tx.n))
        {
            if channels == 3 {
                let mut acc = [0f32; 3];
                for (&i, &wv) in idx.iter().zip(wgt) {
                    let s = &row[i * 3..i * 3 + 3];
                    acc[0] += wv * s[0];
                    acc[1] += wv * s[1];
                    acc[2] += wv * s[2];
                }
                px.copy_from_slice(&acc);
            } else {
                for (&i, &wv) in idx.iter().zip(wgt) {
                    for (c, p) in px.iter_mut().enumerate() {
                        *p += wv * row[i * channels + c];
                    }
                }
            }
        }
    }
    out
}

/// The taps of `kernel` for one axis sampled every `step` input pixels.
fn taps(kernel: Kernel, in_len: usize, out_len: usize, step: f64) -> Taps {
    match kernel {
        Kernel::Torch => torch_taps(in_len, out_len, step),
        // MATLAB's taps take the scale (out / in), not the step.
        Kernel::Matlab => matlab_taps(in_len, out_len, 1.0 / step),
    }
}

/// Resizes an 8-bit RGB image to `ow` x `oh` with the sampling steps of [`resize_by`] /
/// [`resize_to`], re-quantising the result. Works row by row: rows are converted to f32 as they
/// are read and quantised as they are finished, so no full-size f32 copy is ever made.
pub fn resize_image(img: &Image, ow: usize, oh: usize, step: (f64, f64), kernel: Kernel) -> Image {
    let (w, h) = (img.width, img.height);
    let (tx, ty) = (taps(kernel, w, ow, step.0), taps(kernel, h, oh, step.1));
    let row_f32 = |y: usize, buf: &mut Vec<f32>| {
        buf.clear();
        buf.extend(
            img.data[y * w * 3..(y + 1) * w * 3]
                .iter()
                .map(|&v| v as f32 * (1.0 / 255.0)),
        );
    };
    let mut out = Image::new(ow, oh);
    let mut acc = vec![0f32; ow.max(w) * 3];
    let mut buf = Vec::with_capacity(w * 3);
    if oh < h {
        // Shrinking: weighted sums of input rows first, then the gather on the few rows left.
        let mut mid = vec![0f32; oh * w * 3];
        for (y, dst) in mid.chunks_exact_mut(w * 3).enumerate() {
            for k in 0..ty.n {
                row_f32(ty.index[y * ty.n + k], &mut buf);
                crate::simd::axpy(dst, &buf, ty.weight[y * ty.n + k]);
            }
        }
        let small = horizontal(&mid, (w, oh, 3), ow, &tx);
        crate::image::quantize_into(&small, &mut out.data);
    } else {
        // Growing: the gather on the few input rows, then weighted sums of those rows.
        let mut mid = vec![0f32; h * ow * 3];
        for (y, dst) in mid.chunks_exact_mut(ow * 3).enumerate() {
            row_f32(y, &mut buf);
            dst.copy_from_slice(&horizontal(&buf, (w, 1, 3), ow, &tx));
        }
        let acc = &mut acc[..ow * 3];
        for (y, dst) in out.data.chunks_exact_mut(ow * 3).enumerate() {
            acc.fill(0.0);
            for k in 0..ty.n {
                let src = &mid[ty.index[y * ty.n + k] * ow * 3..][..ow * 3];
                crate::simd::axpy(acc, src, ty.weight[y * ty.n + k]);
            }
            crate::image::quantize_into(acc, dst);
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    let (tx, ty) = (taps(kernel, w, ow, step_x), taps(kernel, h, oh, step_y));
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
