//! Depthwise 2-D convolution (groups = channels, one filter per channel, stride 1) on the CPU
//! as candle custom ops: the core of Restormer's attention and feed-forward blocks. candle runs
//! a grouped convolution as one convolution per group, 30-90x slower than PyTorch; here every
//! (image, channel) plane is one task for rayon. The common 3x3, pad-1 case pads the plane into
//! a flat layout ([`Flat3`]) where each tap is one shifted slice of a single run, so nine
//! multiply-adds per output (or nine long dot products for the weight gradient) vectorise at
//! any width, built for AVX-512 too when the CPU has it; other filters go a row at a time.
//! Square filters only (the input gradient pads both sides by `k - 1 - pad`).
//!
//! Forward and input gradient are the same kernel (the input gradient is the output gradient
//! convolved with the flipped filter, padded by `k - 1 - pad`); the weight gradient is a dot
//! product of shifted rows per tap, summed over the batch. Other devices and dtypes, strides
//! above 1 and paddings wider than the kernel keep candle's op.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv::{dims4, fast, slice};
use super::scratch::{with_buffer, DEPTHWISE};

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
    if kh == 3 && kw == 3 && pad == 1 {
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

/// The flat padded layout of a 3x3, pad-1 convolution over an `h x w` plane: rows of
/// `wp = w + 2` values inside a zero border, so that output `(y, x)`, at `q = y * wp + x`,
/// reads tap `(ky, kx)` at `q + ky * wp + kx`. Each tap is then one shifted slice of a single
/// run of `h * wp` outputs (two per row are computed and dropped), which vectorises at any
/// width: Restormer's deeper levels are 6 to 12 pixels wide, too narrow for row-wise loops.
#[derive(Clone, Copy)]
struct Flat3 {
    h: usize,
    w: usize,
    wp: usize,
}

impl Flat3 {
    fn new(h: usize, w: usize) -> Flat3 {
        Flat3 { h, w, wp: w + 2 }
    }

    /// Outputs in the flat layout, the dropped columns included.
    fn outputs(&self) -> usize {
        self.h * self.wp
    }

    /// The padded plane, with the two values the last row's rightmost taps read past it.
    fn padded_len(&self) -> usize {
        (self.h + 2) * self.wp + 2
    }

    /// `plane` into `buf` (`padded_len` long) with its zero border.
    fn pad(&self, plane: &[f32], buf: &mut [f32]) {
        buf.fill(0.0);
        for (y, row) in plane.chunks_exact(self.w).take(self.h).enumerate() {
            let at = (y + 1) * self.wp + 1;
            buf[at..at + self.w].copy_from_slice(row);
        }
    }

    /// Tap `ky * 3 + kx`'s view of a padded plane, one per output in the flat layout.
    fn taps<'a>(&self, padded: &'a [f32]) -> [&'a [f32]; 9] {
        let n = self.outputs();
        std::array::from_fn(|t| {
            let at = t / 3 * self.wp + t % 3;
            &padded[at..at + n]
        })
    }
}

/// Runs `$body` compiled for AVX-512 when the CPU has it (the same Rust, vectorised sixteen
/// lanes wide with 32 registers), else for AVX2 (eight lanes), else for the baseline target.
macro_rules! multiversion {
    ($name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn wide($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if super::direct::available() {
                    // SAFETY: the CPU has AVX-512F (checked at run time).
                    return unsafe { wide($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

multiversion!(plane_conv3x3(plane: &[f32], h: usize, w: usize, f: &[f32], out: &mut [f32]) => plane_conv3x3_body);
multiversion!(weight_grad3x3(plane: &[f32], grad: &[f32], h: usize, w: usize, acc: &mut [f64]) => weight_grad3x3_body);

/// [`plane_conv`] for the common case, 3x3 with padding 1, in the [`Flat3`] layout: one pass
/// of nine multiply-adds per output, then the rows copied out.
#[inline(always)]
fn plane_conv3x3_body(plane: &[f32], h: usize, w: usize, f: &[f32], out: &mut [f32]) {
    let g = Flat3::new(h, w);
    let n = g.outputs();
    with_buffer(&DEPTHWISE, g.padded_len() + n, |buf| {
        let (padded, flat) = buf.split_at_mut(g.padded_len());
        g.pad(plane, padded);
        let [a0, a1, a2, b0, b1, b2, c0, c1, c2] = g.taps(padded);
        for i in 0..n {
            flat[i] = f[0] * a0[i]
                + f[1] * a1[i]
                + f[2] * a2[i]
                + f[3] * b0[i]
                + f[4] * b1[i]
                + f[5] * b2[i]
                + f[6] * c0[i]
                + f[7] * c1[i]
                + f[8] * c2[i];
        }
        for (o, row) in out.chunks_exact_mut(w).zip(flat.chunks_exact(g.wp)) {
            o.copy_from_slice(&row[..w]);
        }
    });
}

/// The nine sums of `dy[y][x] * x[y + ky - 1][x + kx - 1]` over one plane (3x3, pad 1), added
/// to `acc`: the output gradient laid out like the outputs of [`Flat3`] (zeros in the dropped
/// columns), each tap one long dot product.
#[inline(always)]
fn weight_grad3x3_body(plane: &[f32], grad: &[f32], h: usize, w: usize, acc: &mut [f64]) {
    let g = Flat3::new(h, w);
    let n = g.outputs();
    with_buffer(&DEPTHWISE, g.padded_len() + n, |buf| {
        let (padded, dy) = buf.split_at_mut(g.padded_len());
        g.pad(plane, padded);
        for (row, d) in dy.chunks_exact_mut(g.wp).zip(grad.chunks_exact(w)) {
            row[..w].copy_from_slice(d);
            row[w..].fill(0.0);
        }
        for (a, tap) in acc.iter_mut().zip(g.taps(padded)) {
            *a += dot::<32>(dy, tap) as f64;
        }
    });
}

/// Sum of `a[i] * b[i]` with `L` independent accumulators, so it vectorises (several
/// registers' worth keep the additions from waiting on each other).
#[inline(always)]
fn dot<const L: usize>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; L];
    let (ac, bc) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..L {
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
        // Partial sums (a row, or a whole plane for 3x3 in its 32 lanes) are added in f64:
        // a channel holds the batch's thousands of products.
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
                            acc[ky * g.kw + kx] += dot::<8>(&grow[lo..hi], src) as f64;
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
/// padding `pad`, stride `stride`: mio's kernel on the CPU for f32 at stride 1; cuDNN's grouped
/// convolution on a GPU; elsewhere at stride 1 the sum of shifted taps ([`depthwise_taps`]); candle's grouped convolution for
/// the rest.
pub fn depthwise_op(x: &Tensor, w: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
    if let Some(y) = super::widened_on_cpu([x, w], |[x, w]| depthwise_op(&x, &w, pad, stride))? {
        return Ok(y);
    }
    if ours(x, w, pad, stride) {
        x.contiguous()?
            .apply_op2(&w.contiguous()?, DepthwiseOp { pad })
    } else if fast()
        && super::on_gpu(x.device())
        && matches!(x.dtype(), DType::F32 | DType::BF16)
        && w.dtype() == x.dtype()
    {
        super::conv::grouped_conv_gpu(x, w, pad, stride, x.dim(1)?)
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
