//! 2-D convolution on the CPU as candle custom ops: forward, input gradient and weight gradient
//! as im2col/col2im over tiles of output rows, each tile one GEMM (the `gemm` crate, the one
//! candle's matmul uses). Images are spread over rayon's threads; a batch smaller than the
//! thread count (single-image inference) parallelises inside the GEMM instead. Candle's own conv
//! is kept for other dtypes, for grouped convolutions on the CPU, and when the switch
//! ([`set_fast`]) turns ours off for comparison. On a GPU (the `cuda` feature) the same ops run
//! on cuDNN (cudnn.rs): forward, both gradients and the bias gradient, grouped convolutions
//! (depthwise) included, the bias and activation in one pass after the forward.

use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "cuda")]
use candle_core::CudaStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Module, Result, Shape, Tensor,
};
use candle_nn::{Init, VarBuilder};
use gemm::Parallelism;
use rayon::prelude::*;

pub(super) use super::direct::Epilogue;
use super::scratch::{with_buffer, SharedOut, IM2COL};

static FAST: AtomicBool = AtomicBool::new(true);

/// Whether convolutions on the CPU use mio's kernels (the default) or candle's.
pub fn set_fast(on: bool) {
    FAST.store(on, Ordering::Relaxed);
}

pub fn fast() -> bool {
    FAST.load(Ordering::Relaxed)
}

static DIRECT: AtomicBool = AtomicBool::new(true);

/// Whether stride-1 convolutions use the direct AVX-512 kernels (direct.rs, the default where
/// the CPU has them) or im2col over GEMM (for comparison and tests).
pub fn set_direct(on: bool) {
    DIRECT.store(on, Ordering::Relaxed);
}

/// An activation applied to a convolution's output in the same pass (and undone in its
/// backward in the same pass as the bias gradient), instead of as a graph node of its own: in
/// candle each node costs several full passes over the tensor in the backward (a zeroed
/// gradient, masks, products, the accumulation), which for SRResNet's ReLUs was a third of a
/// training step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    None,
    Relu,
    /// LeakyReLU with this negative slope (positive).
    LeakyRelu(f32),
}

impl Activation {
    /// The derivative at a point whose *output* is `out` (the sign of the output is the sign of
    /// the input for both activations, so the output is all the backward keeps).
    #[inline]
    fn slope_at_output(self, out: f32) -> f32 {
        match self {
            Activation::None => 1.0,
            Activation::Relu => {
                if out > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu(a) => {
                if out > 0.0 {
                    1.0
                } else {
                    a
                }
            }
        }
    }

    /// The same with candle's ops, for devices mio has no kernel for.
    pub fn candle(self, t: Tensor) -> Result<Tensor> {
        match self {
            Activation::None => Ok(t),
            Activation::Relu => t.relu(),
            Activation::LeakyRelu(a) => t.maximum(&(&t * a as f64)?),
        }
    }
}

/// The geometry of one convolution: zero padding and stride (square), dilation 1, no groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geometry {
    pub batch: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Geometry {
    fn ho(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    fn wo(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    /// Rows of the GEMM: input channels times kernel taps.
    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }
    /// Output rows per tile: the im2col buffer stays near 1 MiB, the L2 cache of the machines
    /// measured (256 Ki to 1 Mi values gave the same forward and input-gradient speed; the
    /// weight gradient was 15% faster at 256 Ki than at 1 Mi).
    fn tile_rows(&self) -> usize {
        let per_row = self.k() * self.wo();
        ((1 << 18) / per_row.max(1)).clamp(1, self.ho())
    }
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }
    /// Whether the direct kernels take this convolution.
    fn direct(&self) -> bool {
        DIRECT.load(Ordering::Relaxed)
            && super::direct::available()
            && super::direct::supports(self.stride, self.pad, self.kh, self.kw)
    }
    #[cfg(feature = "cuda")]
    fn cudnn(&self, groups: usize) -> super::cudnn::ConvShape {
        super::cudnn::ConvShape {
            batch: self.batch,
            cin: self.cin,
            h: self.h,
            w: self.w,
            cout: self.cout,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            pad: self.pad,
            groups,
        }
    }
    fn dims(&self) -> (super::direct::ImageDims, super::direct::KernelDims) {
        (
            (self.batch, self.cin, self.h, self.w),
            (self.cout, self.kh, self.kw),
        )
    }
}

pub(super) fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("conv2d kernel: {what} must be f32");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("conv2d kernel: {what} must be contiguous"),
    }
}

/// Fills `cols` (`k` rows of `rows * wo` values) with the input taps of output rows
/// `y0..y0 + rows`.
fn im2col(g: &Geometry, x: &[f32], y0: usize, rows: usize, cols: &mut [f32]) {
    let (wo, n) = (g.wo(), rows * g.wo());
    let mut r = 0;
    for c in 0..g.cin {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let dst = &mut cols[r * n..(r + 1) * n];
                r += 1;
                for (t, out_row) in dst.chunks_exact_mut(wo).enumerate() {
                    let iy = ((y0 + t) * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        out_row.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    tap_row(g, src, kx, out_row);
                }
            }
        }
    }
}

/// One output row's values of tap `kx` from input row `src`.
#[inline]
fn tap_row(g: &Geometry, src: &[f32], kx: usize, out: &mut [f32]) {
    let off = kx as isize - g.pad as isize;
    if g.stride == 1 {
        // Output x reads input x + off: a shifted copy with zeros at the edges.
        let lo = (-off).max(0) as usize;
        let hi = ((g.w as isize - off).min(out.len() as isize)).max(lo as isize) as usize;
        out[..lo].fill(0.0);
        out[hi..].fill(0.0);
        if hi > lo {
            let s = (lo as isize + off) as usize;
            out[lo..hi].copy_from_slice(&src[s..s + hi - lo]);
        }
    } else {
        for (x, o) in out.iter_mut().enumerate() {
            let ix = (x * g.stride) as isize + off;
            *o = if ix >= 0 && (ix as usize) < g.w {
                src[ix as usize]
            } else {
                0.0
            };
        }
    }
}

/// Adds `cols` (as [`im2col`] lays it out) back onto the input gradient `dx`.
fn col2im(g: &Geometry, cols: &[f32], y0: usize, rows: usize, dx: &mut [f32]) {
    let (wo, n) = (g.wo(), rows * g.wo());
    let mut r = 0;
    for c in 0..g.cin {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let src = &cols[r * n..(r + 1) * n];
                r += 1;
                let off = kx as isize - g.pad as isize;
                for (t, row) in src.chunks_exact(wo).enumerate() {
                    let iy = ((y0 + t) * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    if g.stride == 1 {
                        let lo = (-off).max(0) as usize;
                        let hi = ((g.w as isize - off).min(wo as isize)).max(lo as isize) as usize;
                        let s = (lo as isize + off) as usize;
                        for (d, v) in dst[s..s + hi - lo].iter_mut().zip(&row[lo..hi]) {
                            *d += v;
                        }
                    } else {
                        for (x, v) in row.iter().enumerate() {
                            let ix = (x * g.stride) as isize + off;
                            if ix >= 0 && (ix as usize) < g.w {
                                dst[ix as usize] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `dst (m x n) = lhs (m x k) * rhs (k x n)` (plus `dst` when `accumulate`), every operand a
/// slice with its (row, column) strides.
///
/// Orientation matters to the `gemm` crate: it reads a left operand whose rows are adjacent
/// (row stride 1) and a right operand whose rows are adjacent without packing them, so the
/// large im2col matrix is passed that way round (the convolution's output transposed).
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: (&mut [f32], usize, usize),
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    accumulate: bool,
    par: Parallelism,
) {
    let (d, rs, cs) = dst;
    // Bounds the raw-pointer call below: every element it may touch is inside its slice.
    debug_assert!(m == 0 || n == 0 || (m - 1) * rs + (n - 1) * cs < d.len());
    // SAFETY: `dst` is a unique borrow covering the m x n view (checked above in debug builds,
    // guaranteed by the callers' shapes), so it aliases neither operand.
    unsafe { gemm_raw(m, n, k, (d.as_mut_ptr(), rs, cs), lhs, rhs, accumulate, par) }
}

/// [`matmul`] into a raw destination.
///
/// # Safety
/// `dst` must be valid for writes over the m x n view with its strides, and no other thread
/// may touch that view during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    m: usize,
    n: usize,
    k: usize,
    dst: (*mut f32, usize, usize),
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    accumulate: bool,
    par: Parallelism,
) {
    debug_assert!(m == 0 || k == 0 || (m - 1) * lhs.1 + (k - 1) * lhs.2 < lhs.0.len());
    debug_assert!(k == 0 || n == 0 || (k - 1) * rhs.1 + (n - 1) * rhs.2 < rhs.0.len());
    gemm::gemm(
        m,
        n,
        k,
        dst.0,
        dst.2 as isize,
        dst.1 as isize,
        accumulate,
        lhs.0.as_ptr(),
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0.as_ptr(),
        rhs.2 as isize,
        rhs.1 as isize,
        if accumulate { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        par,
    )
}

/// Images are spread over threads when there are enough of them; otherwise each GEMM uses
/// every thread.
fn split(batch: usize) -> (bool, Parallelism) {
    let threads = rayon::current_num_threads();
    if batch >= threads {
        (true, Parallelism::None)
    } else {
        (false, Parallelism::Rayon(threads))
    }
}

fn for_images<F>(batch: usize, per_image: usize, out: &mut [f32], across: bool, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    if across {
        out.par_chunks_mut(per_image)
            .enumerate()
            .for_each(|(b, o)| f(b, o));
    } else {
        for (b, o) in out.chunks_mut(per_image).enumerate().take(batch) {
            f(b, o);
        }
    }
}

/// Forward: `x [B, Cin, H, W]`, `w [Cout, Cin, KH, KW]` (and a bias `[Cout]`) to
/// `[B, Cout, Ho, Wo]`.
pub(super) fn forward(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    forward_with(g, x, w, bias, Epilogue::Act(act))
}

/// The forward with each output value passed through `epilogue` as it is written (in the
/// direct kernel's last pass; a pass of its own on the im2col path).
pub(super) fn forward_with(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    epilogue: Epilogue,
) -> Vec<f32> {
    if g.direct() {
        let (xd, wd) = g.dims();
        return super::direct::conv(xd, wd, g.pad, x, w, bias, epilogue);
    }
    let mut out = im2col_forward(g, x, w, bias);
    apply_epilogue(&mut out, epilogue);
    out
}

fn apply_epilogue(out: &mut [f32], epilogue: Epilogue) {
    if matches!(epilogue, Epilogue::None | Epilogue::Act(Activation::None)) {
        return;
    }
    const CHUNK: usize = 1 << 14;
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(k, o)| epilogue.apply(k * CHUNK, o));
}

/// [`forward`] through im2col and GEMM (no activation).
fn im2col_forward(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let n = g.ho() * g.wo();
    let mut out = vec![0f32; g.batch * g.cout * n];
    let (across, par) = split(g.batch);
    for_images(g.batch, g.cout * n, &mut out, across, |b, o| {
        image_forward(g, x, w, bias, b, o, across, par);
    });
    out
}

/// Image `b`'s output `o` (`cout x ho*wo`) of [`forward`].
#[allow(clippy::too_many_arguments)]
fn image_forward(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    b: usize,
    o: &mut [f32],
    across: bool,
    par: Parallelism,
) {
    let (k, n) = (g.k(), g.ho() * g.wo());
    let xb = &x[b * g.cin * g.h * g.w..(b + 1) * g.cin * g.h * g.w];
    // The bias first, then the GEMM accumulates onto it.
    if let Some(bias) = bias {
        for (row, &v) in o.chunks_exact_mut(n).zip(bias) {
            row.fill(v);
        }
    }
    let acc = bias.is_some();
    if g.is_pointwise() {
        matmul(n, g.cout, k, (o, 1, n), (xb, 1, n), (w, 1, k), acc, par);
        return;
    }
    if !across {
        // One image on several threads: its tiles of output rows in parallel, each GEMM on
        // one thread (many small threaded GEMMs synchronise more than they compute).
        let threads = rayon::current_num_threads();
        let tile = g.tile_rows().min(g.ho().div_ceil(2 * threads)).max(1);
        let out = SharedOut(o.as_mut_ptr());
        (0..g.ho().div_ceil(tile)).into_par_iter().for_each(|t| {
            let y0 = t * tile;
            let rows = tile.min(g.ho() - y0);
            let tn = rows * g.wo();
            with_buffer(&IM2COL, k * tn, |cols| {
                im2col(g, xb, y0, rows, cols);
                // SAFETY: tile t writes columns y0 * wo .. y0 * wo + tn of each of the cout
                // rows of this image's output (cout x n), which no other tile writes; `o`
                // outlives the parallel loop.
                unsafe {
                    gemm_raw(
                        tn,
                        g.cout,
                        k,
                        (out.at(y0 * g.wo()), 1, n),
                        (cols, 1, tn),
                        (w, 1, k),
                        acc,
                        Parallelism::None,
                    )
                };
            });
        });
        return;
    }
    let tile = g.tile_rows();
    with_buffer(&IM2COL, k * tile * g.wo(), |cols| {
        let mut y0 = 0;
        while y0 < g.ho() {
            let rows = tile.min(g.ho() - y0);
            let tn = rows * g.wo();
            im2col(g, xb, y0, rows, &mut cols[..k * tn]);
            let dst = &mut o[y0 * g.wo()..];
            matmul(
                tn,
                g.cout,
                k,
                (dst, 1, n),
                (cols, 1, tn),
                (w, 1, k),
                acc,
                par,
            );
            y0 += rows;
        }
    });
}

/// Input gradient: `dy [B, Cout, Ho, Wo]` and `w` to `dx [B, Cin, H, W]`.
pub(super) fn input_grad(g: &Geometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    input_grad_with(g, dy, w, Epilogue::None)
}

/// The input gradient through `epilogue`, as [`forward_with`].
pub(super) fn input_grad_with(g: &Geometry, dy: &[f32], w: &[f32], epilogue: Epilogue) -> Vec<f32> {
    if g.direct() {
        let (xd, wd) = g.dims();
        return super::direct::input_grad(xd, wd, g.pad, dy, w, epilogue);
    }
    let mut dx = im2col_input_grad(g, dy, w);
    apply_epilogue(&mut dx, epilogue);
    dx
}

fn im2col_input_grad(g: &Geometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let (k, n) = (g.k(), g.ho() * g.wo());
    let mut dx = vec![0f32; g.batch * g.cin * g.h * g.w];
    let (across, par) = split(g.batch);
    for_images(g.batch, g.cin * g.h * g.w, &mut dx, across, |b, o| {
        let dyb = &dy[b * g.cout * n..(b + 1) * g.cout * n];
        if g.is_pointwise() {
            // dx = w^T dy
            matmul(n, k, g.cout, (o, 1, n), (dyb, 1, n), (w, k, 1), false, par);
            return;
        }
        let tile = g.tile_rows();
        with_buffer(&IM2COL, k * tile * g.wo(), |cols| {
            let mut y0 = 0;
            while y0 < g.ho() {
                let rows = tile.min(g.ho() - y0);
                let tn = rows * g.wo();
                let dyt = &dyb[y0 * g.wo()..];
                // cols^T (tn x k) = dy^T (tn x cout) * W (cout x k)
                matmul(
                    tn,
                    k,
                    g.cout,
                    (&mut *cols, 1, tn),
                    (dyt, 1, n),
                    (w, k, 1),
                    false,
                    par,
                );
                col2im(g, &cols[..k * tn], y0, rows, o);
                y0 += rows;
            }
        });
    });
    dx
}

/// Weight gradient: `x` and `dy` to `dw [Cout, Cin, KH, KW]`, summed over the batch; with
/// `bias`, each output channel's row ends with one more value, the bias's gradient (the sum of
/// `dy`): the im2col matrix gets a row of ones, so the GEMM computes it in the same pass.
pub(super) fn weight_grad(g: &Geometry, x: &[f32], dy: &[f32], bias: bool) -> Vec<f32> {
    if g.direct() {
        let (xd, wd) = g.dims();
        return super::direct::weight_grad(xd, wd, g.pad, x, dy, bias);
    }
    let (k, n) = (g.k(), g.ho() * g.wo());
    let kb = k + bias as usize;
    let (across, par) = split(g.batch);
    let one = |b: usize, dw: &mut [f32], first: bool| {
        let xb = &x[b * g.cin * g.h * g.w..(b + 1) * g.cin * g.h * g.w];
        let dyb = &dy[b * g.cout * n..(b + 1) * g.cout * n];
        if g.is_pointwise() {
            // dw += dy x^T
            matmul(
                g.cout,
                k,
                n,
                (dw, kb, 1),
                (dyb, n, 1),
                (xb, 1, n),
                !first,
                par,
            );
            if bias {
                for (c, row) in dyb.chunks_exact(n).enumerate() {
                    let s = row.iter().map(|&v| v as f64).sum::<f64>() as f32;
                    let db = &mut dw[c * kb + k];
                    *db = if first { s } else { *db + s };
                }
            }
            return;
        }
        let tile = g.tile_rows();
        with_buffer(&IM2COL, kb * tile * g.wo(), |cols| {
            let mut y0 = 0;
            let mut first = first;
            while y0 < g.ho() {
                let rows = tile.min(g.ho() - y0);
                let tn = rows * g.wo();
                im2col(g, xb, y0, rows, &mut cols[..k * tn]);
                if bias {
                    cols[k * tn..kb * tn].fill(1.0);
                }
                let dyt = &dyb[y0 * g.wo()..];
                matmul(
                    g.cout,
                    kb,
                    tn,
                    (&mut *dw, kb, 1),
                    (dyt, n, 1),
                    (cols, 1, tn),
                    !first,
                    par,
                );
                first = false;
                y0 += rows;
            }
        });
    };
    if across {
        (0..g.batch)
            .into_par_iter()
            .fold(
                || (vec![0f32; g.cout * kb], true),
                |(mut dw, first), b| {
                    one(b, &mut dw, first);
                    (dw, false)
                },
            )
            .map(|(dw, _)| dw)
            .reduce(
                || vec![0f32; g.cout * kb],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                },
            )
    } else {
        let mut dw = vec![0f32; g.cout * kb];
        for b in 0..g.batch {
            one(b, &mut dw, b == 0);
        }
        dw
    }
}

pub(super) fn dims4(l: &Layout, what: &str) -> Result<(usize, usize, usize, usize)> {
    l.shape().dims4().map_err(|_| {
        candle_core::Error::Msg(format!(
            "conv2d kernel: {what} must be 4-D, got {:?}",
            l.shape()
        ))
    })
}

/// `conv2d(x, w)`: the forward op; its backward is the two ops below. `groups` other than 1
/// (depthwise) only on a GPU.
struct Conv2dOp {
    stride: usize,
    pad: usize,
    groups: usize,
}

impl Conv2dOp {
    fn geometry(&self, x: &Layout, w: &Layout) -> Result<Geometry> {
        let (batch, cin, h, wd) = dims4(x, "the input")?;
        let (cout, wc, kh, kw) = dims4(w, "the weight")?;
        if wc * self.groups != cin || cout % self.groups != 0 {
            candle_core::bail!(
                "conv2d kernel: {cin} input channels in {} groups but the weight expects {wc} per group",
                self.groups
            );
        }
        if h + 2 * self.pad < kh || wd + 2 * self.pad < kw {
            candle_core::bail!(
                "conv2d kernel: a {h}x{wd} input is smaller than the {kh}x{kw} kernel"
            );
        }
        Ok(Geometry {
            batch,
            cin,
            h,
            w: wd,
            cout,
            kh,
            kw,
            stride: self.stride,
            pad: self.pad,
        })
    }
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "mio-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l1, l2)?;
        if self.groups != 1 {
            candle_core::bail!("conv2d kernel: grouped convolutions run on the GPU only");
        }
        let out = forward(
            &g,
            slice(s1, l1, "the input")?,
            slice(s2, l2, "the weight")?,
            None,
            Activation::None,
        );
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.batch, g.cout, g.ho(), g.wo())),
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
        let (dx, dw) = gradients(x, w, &dy, self.stride, self.pad, self.groups, false)?;
        Ok((dx, Some(dw)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        use super::cudnn::{convolve, Direction};
        let g = self.geometry(l1, l2)?;
        let y = convolve(
            &s1.device,
            &g.cudnn(self.groups),
            Direction::Forward,
            (s1, l1),
            (s2, l2),
        )?;
        Ok((y, Shape::from((g.batch, g.cout, g.ho(), g.wo()))))
    }
}

/// The input's and the weight's gradients of a convolution (with `bias`, the weight's comes
/// as `[Cout, K + 1]`, the bias's gradient last in each row). No input gradient for an input
/// that no gradient flows back to (a network's first layer reading the images).
fn gradients(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    stride: usize,
    pad: usize,
    groups: usize,
    bias: bool,
) -> Result<(Option<Tensor>, Tensor)> {
    let dx = x
        .track_op()
        .then(|| {
            dy.apply_op2_no_bwd(
                w,
                &InputGrad {
                    stride,
                    pad,
                    groups,
                    h: x.dim(2)?,
                    w: x.dim(3)?,
                },
            )
        })
        .transpose()?;
    let dw = x.apply_op2_no_bwd(
        dy,
        &WeightGrad {
            stride,
            pad,
            groups,
            kh: w.dim(2)?,
            kw: w.dim(3)?,
            bias,
        },
    )?;
    Ok((dx, dw))
}

/// `act(conv2d(x, w) + b)` in one pass: the bias is where the GEMM starts, and its gradient
/// comes out of the weight gradient's GEMM (candle's broadcast add would reduce over three
/// strided dimensions, one of the slowest things in a training step).
struct Conv2dBiasOp {
    stride: usize,
    pad: usize,
    act: Activation,
}

impl CustomOp3 for Conv2dBiasOp {
    fn name(&self) -> &'static str {
        "mio-conv2d-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Conv2dOp {
            stride: self.stride,
            pad: self.pad,
            groups: 1,
        }
        .geometry(l1, l2)?;
        let bias = slice(s3, l3, "the bias")?;
        if bias.len() != g.cout {
            candle_core::bail!(
                "conv2d kernel: {} bias values for {} channels",
                bias.len(),
                g.cout
            );
        }
        let out = forward(
            &g,
            slice(s1, l1, "the input")?,
            slice(s2, l2, "the weight")?,
            Some(bias),
            self.act,
        );
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.batch, g.cout, g.ho(), g.wo())),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Through the activation first: its derivative read off the output.
        let dy = match self.act {
            Activation::None => dy.contiguous()?,
            act => dy
                .contiguous()?
                .apply_op2_no_bwd(&res.contiguous()?, &ActGrad(act))?,
        };
        if !x.device().is_cpu() {
            // cuDNN's weight gradient has no bias row: the bias's is a reduction of its own.
            let (dx, dw) = gradients(x, w, &dy, self.stride, self.pad, 1, false)?;
            let db = dy.apply_op1_no_bwd(&BiasGrad)?;
            return Ok((dx, Some(dw), Some(db)));
        }
        let (dx, dwb) = gradients(x, w, &dy, self.stride, self.pad, 1, true)?;
        let k = dwb.dim(1)? - 1;
        let dw = dwb.narrow(1, 0, k)?.reshape(w.shape())?;
        let db = dwb.narrow(1, k, 1)?.flatten_all()?;
        Ok((dx, Some(dw), Some(db)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        use super::cudnn::{convolve, Direction};
        let g = Conv2dOp {
            stride: self.stride,
            pad: self.pad,
            groups: 1,
        }
        .geometry(l1, l2)?;
        if l3.shape().elem_count() != g.cout {
            candle_core::bail!(
                "conv2d kernel: {} bias values for {} channels",
                l3.shape().elem_count(),
                g.cout
            );
        }
        let dev = &s1.device;
        let mut y = convolve(dev, &g.cudnn(1), Direction::Forward, (s1, l1), (s2, l2))?;
        super::elementwise_cuda::bias_act(
            dev,
            y.as_cuda_slice_mut::<f32>()?,
            (s3, l3),
            g.cout,
            g.ho() * g.wo(),
            self.act,
        )?;
        Ok((y, Shape::from((g.batch, g.cout, g.ho(), g.wo()))))
    }
}

/// `dy [B, C, H, W]` summed to `[C]`: a convolution's bias gradient where the weight gradient
/// does not give it (on a GPU, by cuDNN).
struct BiasGrad;

impl CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        "mio-bias-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = dims4(l, "the output gradient")?;
        let dy = slice(s, l, "the output gradient")?;
        let mut db = vec![0f64; c];
        for (i, plane) in dy.chunks(h * w).enumerate() {
            db[i % c] += plane.iter().map(|&v| v as f64).sum::<f64>();
        }
        Ok((
            CpuStorage::F32(db.into_iter().map(|v| v as f32).collect()),
            Shape::from(c),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let c = dims4(l, "the output gradient")?.1;
        Ok((super::cudnn::bias_grad(&s.device, (s, l))?, Shape::from(c)))
    }
}

/// `(dy, out)` to `dy * act'(out)`.
struct ActGrad(Activation);

impl CustomOp2 for ActGrad {
    fn name(&self) -> &'static str {
        "mio-activation-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dy = slice(s1, l1, "the output gradient")?;
        let out = slice(s2, l2, "the output")?;
        let mut g = vec![0f32; dy.len()];
        g.par_chunks_mut(1 << 14)
            .zip(dy.par_chunks(1 << 14).zip(out.par_chunks(1 << 14)))
            .for_each(|(g, (d, o))| {
                for ((g, &d), &o) in g.iter_mut().zip(d).zip(o) {
                    *g = d * self.0.slope_at_output(o);
                }
            });
        Ok((CpuStorage::F32(g), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let g = super::elementwise_cuda::act_grad(&s1.device, (s1, l1), (s2, l2), self.0)?;
        Ok((g, l1.shape().clone()))
    }
}

/// `(dy, w)` to the input gradient.
struct InputGrad {
    stride: usize,
    pad: usize,
    groups: usize,
    h: usize,
    w: usize,
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "mio-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l1, l2)?;
        let dx = input_grad(
            &g,
            slice(s1, l1, "the output gradient")?,
            slice(s2, l2, "the weight")?,
        );
        Ok((
            CpuStorage::F32(dx),
            Shape::from((g.batch, g.cin, self.h, self.w)),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        use super::cudnn::{convolve, Direction};
        let g = self.geometry(l1, l2)?;
        let shape = g.cudnn(self.groups);
        let dx = convolve(&s1.device, &shape, Direction::InputGrad, (s1, l1), (s2, l2))?;
        Ok((dx, Shape::from((g.batch, g.cin, self.h, self.w))))
    }
}

impl InputGrad {
    /// The convolution's geometry from `dy`'s and the weight's layouts (`groups` input
    /// channels per filter row).
    fn geometry(&self, dy: &Layout, w: &Layout) -> Result<Geometry> {
        let (batch, cout, ..) = dims4(dy, "the output gradient")?;
        let (_, per_group, kh, kw) = dims4(w, "the weight")?;
        Ok(Geometry {
            batch,
            cin: per_group * self.groups,
            h: self.h,
            w: self.w,
            cout,
            kh,
            kw,
            stride: self.stride,
            pad: self.pad,
        })
    }
}

/// `(x, dy)` to the weight gradient `[Cout, Cin, KH, KW]`, or with `bias` to
/// `[Cout, Cin * KH * KW + 1]`: each row ends with the bias's gradient.
struct WeightGrad {
    stride: usize,
    pad: usize,
    groups: usize,
    kh: usize,
    kw: usize,
    bias: bool,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "mio-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if self.groups != 1 {
            candle_core::bail!("conv2d kernel: grouped convolutions run on the GPU only");
        }
        let g = self.geometry(l1, l2)?;
        let (cin, cout) = (g.cin, g.cout);
        let dw = weight_grad(
            &g,
            slice(s1, l1, "the input")?,
            slice(s2, l2, "the output gradient")?,
            self.bias,
        );
        let shape = if self.bias {
            Shape::from((cout, g.k() + 1))
        } else {
            Shape::from((cout, cin, self.kh, self.kw))
        };
        Ok((CpuStorage::F32(dw), shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        use super::cudnn::{convolve, Direction};
        if self.bias {
            candle_core::bail!("conv2d kernel: on a GPU the bias gradient is its own op");
        }
        let g = self.geometry(l1, l2)?;
        let shape = g.cudnn(self.groups);
        let dw = convolve(
            &s1.device,
            &shape,
            Direction::WeightGrad,
            (s1, l1),
            (s2, l2),
        )?;
        let per_group = g.cin / self.groups;
        Ok((dw, Shape::from((g.cout, per_group, self.kh, self.kw))))
    }
}

impl WeightGrad {
    fn geometry(&self, x: &Layout, dy: &Layout) -> Result<Geometry> {
        let (batch, cin, h, w) = dims4(x, "the input")?;
        let (_, cout, ..) = dims4(dy, "the output gradient")?;
        Ok(Geometry {
            batch,
            cin,
            h,
            w,
            cout,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            pad: self.pad,
        })
    }
}

/// `x [B, Cin, H, W]` convolved with `w [Cout, Cin, KH, KW]`, zero padding `pad`, stride
/// `stride`: mio's kernel on the CPU and cuDNN on a GPU for f32, candle's otherwise.
pub fn conv2d_op(x: &Tensor, w: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
    if let Some(y) = super::widened_on_cpu([x, w], |[x, w]| conv2d_op(&x, &w, pad, stride))? {
        return Ok(y);
    }
    if ours(x, w) {
        x.contiguous()?.apply_op2(
            &w.contiguous()?,
            Conv2dOp {
                stride,
                pad,
                groups: 1,
            },
        )
    } else {
        x.conv2d(w, pad, stride, 1, 1)
    }
}

/// Whether mio's op runs: f32 on the CPU; f32 or bf16 on a GPU (cuDNN).
fn ours(x: &Tensor, w: &Tensor) -> bool {
    let dtype = x.dtype();
    fast()
        && w.dtype() == dtype
        && match dtype {
            DType::F32 => x.device().is_cpu() || super::on_gpu(x.device()),
            DType::BF16 => super::on_gpu(x.device()),
            _ => false,
        }
}

/// A grouped convolution (`groups` divides both channel counts; the channel count itself:
/// depthwise) on cuDNN, for a GPU.
pub fn grouped_conv_gpu(
    x: &Tensor,
    w: &Tensor,
    pad: usize,
    stride: usize,
    groups: usize,
) -> Result<Tensor> {
    x.contiguous()?.apply_op2(
        &w.contiguous()?,
        Conv2dOp {
            stride,
            pad,
            groups,
        },
    )
}

/// [`conv2d_op`] plus a bias `[Cout]` per output channel, fused on the CPU.
pub fn conv2d_bias_op(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    pad: usize,
    stride: usize,
) -> Result<Tensor> {
    conv2d_bias_act_op(x, w, b, pad, stride, Activation::None)
}

/// [`conv2d_bias_op`] followed by an activation, all in one op on the CPU.
pub fn conv2d_bias_act_op(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    pad: usize,
    stride: usize,
    act: Activation,
) -> Result<Tensor> {
    if let Some(y) = super::widened_on_cpu([x, w, b], |[x, w, b]| {
        conv2d_bias_act_op(&x, &w, &b, pad, stride, act)
    })? {
        return Ok(y);
    }
    if ours(x, w) && x.dtype() == DType::F32 && b.dtype() == DType::F32 {
        x.contiguous()?.apply_op3(
            &w.contiguous()?,
            &b.contiguous()?,
            Conv2dBiasOp { stride, pad, act },
        )
    } else {
        // A bf16 convolution on a GPU: cuDNN's, then the bias and activation as candle's ops.
        act.candle(conv2d_op(x, w, pad, stride)?.broadcast_add(&b.reshape((
            1,
            b.elem_count(),
            1,
            1,
        ))?)?)
    }
}

/// The configuration of a [`Conv2d`] layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    pub padding: usize,
    pub stride: usize,
    /// 1: a plain convolution; the channel count: depthwise.
    pub groups: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            padding: 0,
            stride: 1,
            groups: 1,
        }
    }
}

/// A convolution layer with PyTorch's parameter names (`weight [out, in / groups, k, k]`,
/// `bias [out]`), running on mio's kernels where they apply.
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: Conv2dConfig,
}

impl Conv2d {
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
    pub fn config(&self) -> Conv2dConfig {
        self.cfg
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, Activation::None)
    }
}

impl Conv2d {
    /// The convolution followed by `act` (fused into the convolution's kernel on the CPU).
    pub fn forward_act(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        let (p, s) = (self.cfg.padding, self.cfg.stride);
        let y = if self.cfg.groups == 1 {
            match &self.bias {
                Some(b) => return conv2d_bias_act_op(x, &self.weight, b, p, s, act),
                None => conv2d_op(x, &self.weight, p, s)?,
            }
        } else if self.cfg.groups == self.weight.dim(0)? {
            // One filter per channel: depthwise.
            super::depthwise::depthwise_op(x, &self.weight, p, s)?
        } else {
            x.conv2d(&self.weight, p, s, 1, self.cfg.groups)?
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
            None => y,
        };
        act.candle(y)
    }
}

fn layer(
    cin: usize,
    cout: usize,
    k: usize,
    cfg: Conv2dConfig,
    bias: bool,
    vb: VarBuilder,
) -> Result<Conv2d> {
    // Placeholder values: the models' init functions set every variable from the seed.
    let bound = 1.0 / ((cin / cfg.groups * k * k) as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let weight = vb.get_with_hints((cout, cin / cfg.groups, k, k), "weight", init)?;
    let bias = bias
        .then(|| vb.get_with_hints(cout, "bias", init))
        .transpose()?;
    Ok(Conv2d { weight, bias, cfg })
}

/// A convolution with a bias (as `candle_nn::conv2d`).
pub fn conv2d(
    cin: usize,
    cout: usize,
    k: usize,
    cfg: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    layer(cin, cout, k, cfg, true, vb)
}

/// A convolution without a bias.
pub fn conv2d_no_bias(
    cin: usize,
    cout: usize,
    k: usize,
    cfg: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    layer(cin, cout, k, cfg, false, vb)
}
