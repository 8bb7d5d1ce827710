//! Depthwise 2-D convolution (groups = channels, one filter per channel, stride 1) on the CPU
//! as candle custom ops: the core of Restormer's attention and feed-forward blocks. candle runs
//! a grouped convolution as one convolution per group, 30-90x slower than PyTorch; here every
//! (image, channel) plane is one task for rayon, and each output row is a few shifted
//! multiply-adds over contiguous rows, which the compiler vectorises. Square filters only (the
//! input gradient pads both sides by `k - 1 - pad`).
//!
//! Forward and input gradient are the same kernel (the input gradient is the output gradient
//! convolved with the flipped filter, padded by `k - 1 - pad`); the weight gradient is a dot
//! product of shifted rows per tap, summed over the batch. Other devices and dtypes, strides
//! above 1 and paddings wider than the kernel keep candle's op.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv::{dims4, fast, slice};

/// One depthwise convolution: `batch` images of `c` planes `h x w`, a `kh x kw` filter per
/// channel, zero padding `pad` on every side, stride 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    batch: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    pad: usize,
}

impl Geometry {
    fn ho(&self) -> usize {
        self.h + 2 * self.pad + 1 - self.kh
    }
    fn wo(&self) -> usize {
        self.w + 2 * self.pad + 1 - self.kw
    }
}

/// `out (ho x wo) = plane (h x w) * filter (kh x kw)` with zero padding `pad` (which may differ
/// from the geometry's: the input gradient runs this with `k - 1 - pad`).
#[allow(clippy::too_many_arguments)]
fn plane_conv(
    plane: &[f32],
    h: usize,
    w: usize,
    filter: &[f32],
    kh: usize,
    kw: usize,
    pad: usize,
    out: &mut [f32],
) {
    if kh == 3 && kw == 3 && pad == 1 && w >= 3 {
        return plane_conv3x3(plane, h, w, filter, out);
    }
    let ho = h + 2 * pad + 1 - kh;
    let wo = w + 2 * pad + 1 - kw;
    out.fill(0.0);
    for (y, orow) in out.chunks_exact_mut(wo).enumerate().take(ho) {
        for ky in 0..kh {
            let iy = (y + ky) as isize - pad as isize;
            if iy < 0 || iy >= h as isize {
                continue;
            }
            let irow = &plane[iy as usize * w..(iy as usize + 1) * w];
            for kx in 0..kw {
                let f = filter[ky * kw + kx];
                // Output x reads input x + off.
                let off = kx as isize - pad as isize;
                let lo = (-off).max(0) as usize;
                let hi = (w as isize - off).clamp(0, wo as isize) as usize;
                if hi <= lo {
                    continue;
                }
                let src = &irow[(lo as isize + off) as usize..(hi as isize + off) as usize];
                for (o, &v) in orow[lo..hi].iter_mut().zip(src) {
                    *o += f * v;
                }
            }
        }
    }
}

/// The input rows above, at and below output row `y` of a 3x3, pad-1 convolution (zeros
/// outside the plane).
fn rows3<'a>(plane: &'a [f32], zeros: &'a [f32], h: usize, w: usize, y: usize) -> [&'a [f32]; 3] {
    let row = |i: isize| {
        if i < 0 || i >= h as isize {
            zeros
        } else {
            &plane[i as usize * w..(i as usize + 1) * w]
        }
    };
    [row(y as isize - 1), row(y as isize), row(y as isize + 1)]
}

/// The nine shifted views of a 3x3 pad-1 convolution over the interior of a row (outputs
/// 1..w-1, `n = w - 2` of them): tap `ky * 3 + kx` reads row `ky` from `kx`.
fn taps3(rows: [&[f32]; 3], n: usize) -> [&[f32]; 9] {
    let [r0, r1, r2] = rows;
    [
        &r0[..n],
        &r0[1..n + 1],
        &r0[2..n + 2],
        &r1[..n],
        &r1[1..n + 1],
        &r1[2..n + 2],
        &r2[..n],
        &r2[1..n + 1],
        &r2[2..n + 2],
    ]
}

/// [`plane_conv`] for the common case, 3x3 with padding 1: each output row is one pass over its
/// interior with all nine taps (shifted slices the compiler vectorises), its two ends apart.
/// Nine passes of a few dozen values each cost more in loop overhead than they compute.
fn plane_conv3x3(plane: &[f32], h: usize, w: usize, f: &[f32], out: &mut [f32]) {
    let zeros = vec![0f32; w];
    for (y, o) in out.chunks_exact_mut(w).enumerate().take(h) {
        let [r0, r1, r2] = rows3(plane, &zeros, h, w, y);
        let n = w - 2;
        let [a0, a1, a2, b0, b1, b2, c0, c1, c2] = taps3([r0, r1, r2], n);
        let inner = &mut o[1..n + 1];
        for i in 0..n {
            inner[i] = f[0] * a0[i]
                + f[1] * a1[i]
                + f[2] * a2[i]
                + f[3] * b0[i]
                + f[4] * b1[i]
                + f[5] * b2[i]
                + f[6] * c0[i]
                + f[7] * c1[i]
                + f[8] * c2[i];
        }
        let at = |r: &[f32], x: isize| {
            if x < 0 || x >= w as isize {
                0.0
            } else {
                r[x as usize]
            }
        };
        for x in [0, w - 1] {
            let xi = x as isize;
            let mut acc = 0.0;
            for (ky, r) in [r0, r1, r2].iter().enumerate() {
                for kx in 0..3 {
                    acc += f[ky * 3 + kx] * at(r, xi + kx as isize - 1);
                }
            }
            o[x] = acc;
        }
    }
}

/// The nine sums of `dy[y][x] * x[y + ky - 1][x + kx - 1]` over one plane (3x3, pad 1), added
/// to `acc`: sixteen f32 lanes per tap over the rows' interiors (so the loop vectorises), the
/// two ends of each row apart, into f64 once per plane.
fn weight_grad3x3(plane: &[f32], grad: &[f32], h: usize, w: usize, acc: &mut [f64]) {
    const L: usize = 16;
    let zeros = vec![0f32; w];
    let mut lanes = [[0f32; L]; 9];
    let mut ends = [0f32; 9];
    let n = w - 2;
    let full = n / L * L;
    for (y, g) in grad.chunks_exact(w).enumerate().take(h) {
        let [r0, r1, r2] = rows3(plane, &zeros, h, w, y);
        let src = taps3([r0, r1, r2], n);
        let gi = &g[1..n + 1];
        for o in (0..full).step_by(L) {
            let gv = &gi[o..o + L];
            for (lane, s) in lanes.iter_mut().zip(&src) {
                let sv = &s[o..o + L];
                for i in 0..L {
                    lane[i] += gv[i] * sv[i];
                }
            }
        }
        for i in full..n {
            for (e, s) in ends.iter_mut().zip(&src) {
                *e += gi[i] * s[i];
            }
        }
        // The two ends: output x = 0 and x = w - 1.
        let at = |r: &[f32], x: isize| {
            if x < 0 || x >= w as isize {
                0.0
            } else {
                r[x as usize]
            }
        };
        for x in [0, w - 1] {
            for (ky, r) in [r0, r1, r2].iter().enumerate() {
                for kx in 0..3 {
                    ends[ky * 3 + kx] += g[x] * at(r, x as isize + kx as isize - 1);
                }
            }
        }
    }
    for ((a, lane), e) in acc.iter_mut().zip(&lanes).zip(&ends) {
        *a += lane.iter().map(|&v| v as f64).sum::<f64>() + *e as f64;
    }
}

/// Sum of `a[i] * b[i]` with eight independent accumulators, so it vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

fn forward(g: &Geometry, x: &[f32], filters: &[f32]) -> Vec<f32> {
    let (plane_in, plane_out, taps) = (g.h * g.w, g.ho() * g.wo(), g.kh * g.kw);
    let mut out = vec![0f32; g.batch * g.c * plane_out];
    out.par_chunks_mut(plane_out)
        .enumerate()
        .for_each(|(i, o)| {
            let c = i % g.c;
            plane_conv(
                &x[i * plane_in..(i + 1) * plane_in],
                g.h,
                g.w,
                &filters[c * taps..(c + 1) * taps],
                g.kh,
                g.kw,
                g.pad,
                o,
            );
        });
    out
}

fn input_grad(g: &Geometry, dy: &[f32], filters: &[f32]) -> Vec<f32> {
    let (plane_in, plane_out, taps) = (g.h * g.w, g.ho() * g.wo(), g.kh * g.kw);
    // The flipped filters, padded by k - 1 - pad: dx[y][x] = sum dy[y - ky + pad][x - kx + pad] f[ky][kx].
    let flipped: Vec<f32> = filters
        .chunks_exact(taps)
        .flat_map(|f| f.iter().rev().copied())
        .collect();
    let mut dx = vec![0f32; g.batch * g.c * plane_in];
    dx.par_chunks_mut(plane_in).enumerate().for_each(|(i, o)| {
        let c = i % g.c;
        plane_conv(
            &dy[i * plane_out..(i + 1) * plane_out],
            g.ho(),
            g.wo(),
            &flipped[c * taps..(c + 1) * taps],
            g.kh,
            g.kw,
            g.kh - 1 - g.pad,
            o,
        );
    });
    dx
}

fn weight_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (plane_in, plane_out, taps) = (g.h * g.w, g.ho() * g.wo(), g.kh * g.kw);
    let (wo, ho) = (g.wo(), g.ho());
    let mut dw = vec![0f32; g.c * taps];
    dw.par_chunks_mut(taps).enumerate().for_each(|(c, out)| {
        // Rows are summed in f64: a plane holds thousands of products.
        let mut acc = vec![0f64; taps];
        for b in 0..g.batch {
            let i = b * g.c + c;
            let plane = &x[i * plane_in..(i + 1) * plane_in];
            let grad = &dy[i * plane_out..(i + 1) * plane_out];
            if g.kh == 3 && g.kw == 3 && g.pad == 1 {
                weight_grad3x3(plane, grad, g.h, g.w, &mut acc);
                continue;
            }
            for (y, grow) in grad.chunks_exact(wo).enumerate().take(ho) {
                for ky in 0..g.kh {
                    let iy = (y + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let irow = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for kx in 0..g.kw {
                        let off = kx as isize - g.pad as isize;
                        let lo = (-off).max(0) as usize;
                        let hi = (g.w as isize - off).clamp(0, wo as isize) as usize;
                        if hi > lo {
                            let src =
                                &irow[(lo as isize + off) as usize..(hi as isize + off) as usize];
                            acc[ky * g.kw + kx] += dot(&grow[lo..hi], src) as f64;
                        }
                    }
                }
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = a as f32;
        }
    });
    dw
}

/// `depthwise(x [B, C, H, W], w [C, 1, KH, KW])`; its backward is the two ops below.
struct DepthwiseOp {
    pad: usize,
}

fn geometry(x: &Layout, w: &Layout, pad: usize) -> Result<Geometry> {
    let (batch, c, h, wd) = dims4(x, "the input")?;
    let (wc, one, kh, kw) = dims4(w, "the weight")?;
    if wc != c || one != 1 {
        candle_core::bail!(
            "depthwise kernel: {c} channels but the weight has shape [{wc}, {one}, {kh}, {kw}]"
        );
    }
    if h + 2 * pad < kh || wd + 2 * pad < kw {
        candle_core::bail!(
            "depthwise kernel: a {h}x{wd} input is smaller than the {kh}x{kw} kernel"
        );
    }
    Ok(Geometry {
        batch,
        c,
        h,
        w: wd,
        kh,
        kw,
        pad,
    })
}

impl CustomOp2 for DepthwiseOp {
    fn name(&self) -> &'static str {
        "mio-depthwise"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = geometry(l1, l2, self.pad)?;
        let out = forward(
            &g,
            slice(s1, l1, "the input")?,
            slice(s2, l2, "the weight")?,
        );
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.batch, g.c, g.ho(), g.wo())),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (h, wd) = (x.dim(2)?, x.dim(3)?);
        let dx = dy.apply_op2_no_bwd(
            w,
            &DepthwiseInputGrad {
                pad: self.pad,
                h,
                w: wd,
            },
        )?;
        let dw = x.apply_op2_no_bwd(
            &dy,
            &DepthwiseWeightGrad {
                pad: self.pad,
                kh: w.dim(2)?,
                kw: w.dim(3)?,
            },
        )?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `(dy, w)` to the input gradient.
struct DepthwiseInputGrad {
    pad: usize,
    h: usize,
    w: usize,
}

impl CustomOp2 for DepthwiseInputGrad {
    fn name(&self) -> &'static str {
        "mio-depthwise-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, c, ..) = dims4(l1, "the output gradient")?;
        let (_, _, kh, kw) = dims4(l2, "the weight")?;
        let g = Geometry {
            batch,
            c,
            h: self.h,
            w: self.w,
            kh,
            kw,
            pad: self.pad,
        };
        let dx = input_grad(
            &g,
            slice(s1, l1, "the output gradient")?,
            slice(s2, l2, "the weight")?,
        );
        Ok((CpuStorage::F32(dx), Shape::from((batch, c, self.h, self.w))))
    }
}

/// `(x, dy)` to the weight gradient `[C, 1, KH, KW]`.
struct DepthwiseWeightGrad {
    pad: usize,
    kh: usize,
    kw: usize,
}

impl CustomOp2 for DepthwiseWeightGrad {
    fn name(&self) -> &'static str {
        "mio-depthwise-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, c, h, w) = dims4(l1, "the input")?;
        let g = Geometry {
            batch,
            c,
            h,
            w,
            kh: self.kh,
            kw: self.kw,
            pad: self.pad,
        };
        let dw = weight_grad(
            &g,
            slice(s1, l1, "the input")?,
            slice(s2, l2, "the output gradient")?,
        );
        Ok((CpuStorage::F32(dw), Shape::from((c, 1, self.kh, self.kw))))
    }
}

/// Whether mio's depthwise kernel can run this convolution.
fn ours(x: &Tensor, w: &Tensor, pad: usize, stride: usize) -> bool {
    fast()
        && stride == 1
        && x.device().is_cpu()
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && w.dims4()
            .is_ok_and(|(_, one, kh, kw)| one == 1 && kh == kw && pad < kh)
}

/// `x [B, C, H, W]` convolved channel by channel with `w [C, 1, KH, KW]` (groups = C), zero
/// padding `pad`, stride `stride`: mio's kernel on the CPU for f32 at stride 1; elsewhere at
/// stride 1 the sum of shifted taps ([`depthwise_taps`]); candle's grouped convolution for
/// the rest.
pub fn depthwise_op(x: &Tensor, w: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
    if ours(x, w, pad, stride) {
        x.contiguous()?
            .apply_op2(&w.contiguous()?, DepthwiseOp { pad })
    } else if stride == 1 && fast() {
        depthwise_taps(x, w, pad)
    } else {
        x.conv2d(w, pad, stride, 1, x.dim(1)?)
    }
}

/// A stride-1 depthwise convolution from differentiable tensor ops on any device: the padded
/// input, shifted once per filter tap, times that tap's per-channel weight, summed. candle runs
/// a grouped convolution as one convolution per group, thousands of small kernel launches a
/// layer on a GPU for Restormer's widths; this is three per tap whatever the channel count.
pub fn depthwise_taps(x: &Tensor, w: &Tensor, pad: usize) -> Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    let (ho, wo) = (h + 2 * pad + 1 - kh, wd + 2 * pad + 1 - kw);
    let xp = x.pad_with_zeros(2, pad, pad)?.pad_with_zeros(3, pad, pad)?;
    let mut acc: Option<Tensor> = None;
    for ky in 0..kh {
        for kx in 0..kw {
            let tap = w
                .narrow(2, ky, 1)?
                .narrow(3, kx, 1)?
                .reshape((1, c, 1, 1))?;
            let term = xp
                .narrow(2, ky, ho)?
                .narrow(3, kx, wo)?
                .broadcast_mul(&tap)?;
            acc = Some(match acc {
                None => term,
                Some(a) => (a + term)?,
            });
        }
    }
    match acc {
        Some(a) => Ok(a),
        None => Tensor::zeros((b, c, ho, wo), x.dtype(), x.device()),
    }
}
