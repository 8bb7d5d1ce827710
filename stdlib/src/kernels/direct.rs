//! Direct stride-1 convolution for x86-64 CPUs with AVX-512: no im2col matrix and no GEMM
//! packing, the two copies that cost the im2col path (conv.rs) a quarter of its time.
//!
//! Each image is copied once into a zero-padded buffer whose planes have row stride `wp` (the
//! padded width). In that layout the input of output position `q = y * wp + x` under tap
//! `(ky, kx)` sits at `q + ky * wp + kx`, one offset per tap for every position, so the output
//! can be computed over the flat range `q in 0..ho * wp` in vectors of 16 positions without
//! caring where rows end (the `wp - wo` positions per row past the edge are computed and thrown
//! away: 4% at width 48).
//!
//! - Forward ([`conv`]): a register tile of `CO` output channels x 48 positions accumulates
//!   over input channels and taps; every input vector loaded feeds `CO` FMAs and every weight
//!   is a broadcast from a packed `[ci][tap][CO]` block.
//! - Input gradient: the forward of `dy` with the kernel flipped and transposed, padded by
//!   `k - 1 - pad` ([`input_grad`]).
//! - Weight gradient ([`weight_grad`]): `dy` transposed to positions x channels, so a tile of
//!   64 output channels (four vectors) x `J` (input channel, tap) pairs accumulates over
//!   positions without horizontal sums; the bias gradient is one more pair whose "input" is a
//!   plane of ones.
//!
//! Outputs are written through an [`Epilogue`] (an activation, a residual added, a ReLU mask) in
//! the pass that copies them out of the kernel's scratch, so the fused ops need no pass of
//! their own. Callers check [`available`] (the CPU has AVX-512F) and [`supports`] first.

use rayon::prelude::*;

use super::conv::Activation;
use super::scratch::{with_buffer, SharedOut, OUTPUT, PADDED};

/// Output positions per forward tile: three vectors.
const XV: usize = 3;
const BLK: usize = 16 * XV;
/// Output channels per forward tile (remainders use 4, 2, 1).
const CO_MAX: usize = 8;
/// Values of padded input a forward chunk covers (768 KiB; of 24 Ki to 384 Ki values, the
/// fastest on the machine measured).
const CHUNK_VALUES: usize = 192 * 1024;
/// Positions of transposed `dy` a weight-gradient chunk should keep in the L2 cache (values).
const WCHUNK_VALUES: usize = 64 * 1024;

/// `(batch, channels, height, width)` of a convolution's input.
pub type ImageDims = (usize, usize, usize, usize);
/// `(output channels, kernel height, kernel width)`.
pub type KernelDims = (usize, usize, usize);

/// What happens to each value of a convolution's output as it is written, in the pass that
/// writes it.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    None,
    /// An activation.
    Act(Activation),
    /// Plus the value at the same index of this tensor (a residual).
    Add(&'a [f32]),
    /// Zero where the value at the same index of this tensor is not positive (through a ReLU
    /// whose output it is).
    Mask(&'a [f32]),
}

impl Epilogue<'_> {
    /// Writes `src` through the epilogue to `dst`; `at` is the index of `src[0]` in the whole
    /// output (what `Add` and `Mask` read).
    ///
    /// # Safety
    /// `dst` must be valid for writes of `src.len()` values; `at + src.len()` is inside the
    /// tensors of `Add` and `Mask` (checked).
    #[inline]
    pub unsafe fn write_row(self, at: usize, src: &[f32], dst: *mut f32) {
        let n = src.len();
        // One loop per variant, over slices of the row's length, so each vectorises.
        match self {
            Epilogue::None | Epilogue::Act(Activation::None) => copy(src, dst),
            Epilogue::Act(Activation::Relu) => {
                for (i, &v) in src.iter().enumerate() {
                    dst.add(i).write(v.max(0.0));
                }
            }
            Epilogue::Act(Activation::LeakyRelu(a)) => {
                for (i, &v) in src.iter().enumerate() {
                    dst.add(i).write(if v > 0.0 { v } else { v * a });
                }
            }
            Epilogue::Add(t) => {
                for (i, (&v, &r)) in src.iter().zip(&t[at..at + n]).enumerate() {
                    dst.add(i).write(v + r);
                }
            }
            Epilogue::Mask(t) => {
                for (i, (&v, &m)) in src.iter().zip(&t[at..at + n]).enumerate() {
                    dst.add(i).write(if m > 0.0 { v } else { 0.0 });
                }
            }
        }
    }

    /// The same in place (the im2col path's pass of its own).
    pub fn apply(self, at: usize, row: &mut [f32]) {
        let n = row.len();
        match self {
            Epilogue::None | Epilogue::Act(Activation::None) => {}
            Epilogue::Act(Activation::Relu) => row.iter_mut().for_each(|v| *v = v.max(0.0)),
            Epilogue::Act(Activation::LeakyRelu(a)) => row.iter_mut().for_each(|v| {
                if *v <= 0.0 {
                    *v *= a
                }
            }),
            Epilogue::Add(t) => row
                .iter_mut()
                .zip(&t[at..at + n])
                .for_each(|(v, r)| *v += r),
            Epilogue::Mask(t) => row.iter_mut().zip(&t[at..at + n]).for_each(|(v, &m)| {
                if m <= 0.0 {
                    *v = 0.0
                }
            }),
        }
    }
}

/// Copies `src` to `dst`: a short row inline (vectors and one masked tail) instead of a call
/// to `memcpy`, whose per-call cost dominated copying rows of 48 values.
///
/// # Safety
/// `dst` valid for `src.len()` writes, not overlapping `src`; AVX-512F (every caller is
/// behind [`available`]).
#[inline]
unsafe fn copy(src: &[f32], dst: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    avx::copy(src.as_ptr(), dst, src.len());
    #[cfg(not(target_arch = "x86_64"))]
    std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len());
}

/// Whether this CPU runs the direct kernels (AVX-512F), checked once.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX512.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether a convolution has a direct kernel: stride 1, and a padding no larger than the
/// kernel minus one (so the input gradient is a convolution with padding `k - 1 - pad`).
pub fn supports(stride: usize, pad: usize, kh: usize, kw: usize) -> bool {
    stride == 1 && pad < kh && pad < kw && !(kh == 1 && kw == 1 && pad == 0)
}

/// The geometry of one image's stride-1 convolution in the padded flat layout.
#[derive(Clone, Copy, Debug)]
struct Plan {
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    ph: usize,
    pw: usize,
}

impl Plan {
    /// A convolution padded by `pad` on every side.
    fn same_pad(
        (cin, h, w): (usize, usize, usize),
        (cout, kh, kw): KernelDims,
        pad: usize,
    ) -> Plan {
        Plan {
            cin,
            cout,
            h,
            w,
            kh,
            kw,
            ph: pad,
            pw: pad,
        }
    }

    fn wp(&self) -> usize {
        self.w + 2 * self.pw
    }
    fn hp(&self) -> usize {
        self.h + 2 * self.ph
    }
    fn ho(&self) -> usize {
        self.hp() + 1 - self.kh
    }
    fn wo(&self) -> usize {
        self.wp() + 1 - self.kw
    }
    /// Flat output positions computed, rounded up to whole tiles.
    fn qr(&self) -> usize {
        (self.ho() * self.wp()).div_ceil(BLK) * BLK
    }
    /// Stride between the padded input's planes: every tap of every computed position reads
    /// inside its own plane (the tail is zeros).
    fn ps(&self) -> usize {
        (self.qr() + (self.kh - 1) * self.wp() + self.kw - 1).div_ceil(16) * 16
    }
    fn taps(&self) -> usize {
        self.kh * self.kw
    }
    /// The flat offset of each tap.
    fn offsets(&self) -> Vec<usize> {
        let wp = self.wp();
        (0..self.kh)
            .flat_map(|ky| (0..self.kw).map(move |kx| ky * wp + kx))
            .collect()
    }
}

/// Copies image `x` (`cin x h x w`) into `dst` (`cin` planes of `ps` values), zero-padded.
/// Channels over threads with `par` (a single large image).
fn pad_image(p: &Plan, x: &[f32], dst: &mut [f32], par: bool) {
    let (wp, ps, plane) = (p.wp(), p.ps(), p.h * p.w);
    let one = |(c, d): (usize, &mut [f32])| {
        let src = &x[c * plane..(c + 1) * plane];
        d[..p.ph * wp].fill(0.0);
        for (y, row) in src.chunks_exact(p.w).enumerate() {
            let r = &mut d[(p.ph + y) * wp..(p.ph + y + 1) * wp];
            r[..p.pw].fill(0.0);
            // SAFETY: the destination is `r`'s middle, `p.w` values long.
            unsafe { copy(row, r[p.pw..p.pw + p.w].as_mut_ptr()) };
            r[p.pw + p.w..].fill(0.0);
        }
        d[(p.ph + p.h) * wp..].fill(0.0);
    };
    let planes = &mut dst[..p.cin * ps];
    if par {
        planes.par_chunks_exact_mut(ps).enumerate().for_each(one);
    } else {
        planes.chunks_exact_mut(ps).enumerate().for_each(one);
    }
}

/// The output-channel blocks of the forward: as many of `CO_MAX` as fit, then 4, 2, 1.
fn blocks(cout: usize) -> Vec<(usize, usize)> {
    let mut out = vec![];
    let mut c = 0;
    for size in [CO_MAX, 4, 2, 1] {
        while cout - c >= size {
            out.push((c, size));
            c += size;
        }
    }
    out
}

/// Weights packed per block as `[ci][tap][c]`, read through `w(o, i, t)` (output channel,
/// input channel, tap).
fn pack(p: &Plan, w: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(p.cout * p.cin * p.taps());
    for (o0, size) in blocks(p.cout) {
        for i in 0..p.cin {
            for t in 0..p.taps() {
                for c in 0..size {
                    out.push(w(o0 + c, i, t));
                }
            }
        }
    }
    out
}

/// One stride-1 convolution of `batch` images `x` (`cin x h x w` each) with packed weights:
/// the output (`cout x ho x wo` each), each value written through `epilogue` (an activation,
/// a residual, a mask).
///
/// Each image is padded once; its output rows are computed in chunks (a few rows of every
/// output channel, sized to stay in the L2 cache) into a per-thread scratch in the flat
/// layout, and each chunk is copied out without the positions past the row ends, through the
/// epilogue, while it is still in cache. Images over threads when there are enough of them,
/// otherwise each image's chunks over threads.
fn run(
    p: &Plan,
    batch: usize,
    x: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    epilogue: Epilogue,
) -> Vec<f32> {
    let (in_len, out_len) = (p.cin * p.h * p.w, p.cout * p.ho() * p.wo());
    let (ho, wo, wp) = (p.ho(), p.wo(), p.wp());
    let threads = rayon::current_num_threads();
    let rows = (CHUNK_VALUES / (p.cin.max(1) * wp)).clamp(1, ho);
    let n_chunks = ho.div_ceil(rows);
    let image = |b: usize, o: SharedOut, par: bool| {
        with_buffer(&PADDED, p.cin * p.ps(), |xp| {
            pad_image(p, &x[b * in_len..(b + 1) * in_len], xp, par);
            let xp: &[f32] = xp;
            let one = |k: usize| {
                let (y0, y1) = (k * rows, ((k + 1) * rows).min(ho));
                // Whole tiles covering the chunk's rows (a tile may reach into the next
                // chunk's rows; those values are computed twice and copied once).
                let q0 = y0 * wp / BLK * BLK;
                let q1 = ((y1 - 1) * wp + wo).div_ceil(BLK) * BLK;
                // A plane stride that is not a multiple of a page's worth of values, so the
                // tile's eight planes do not share cache sets.
                let os = q1 - q0 + 16;
                with_buffer(&OUTPUT, p.cout * os, |op| {
                    // SAFETY: tiles write positions q0..q1 of each plane of `op` (plane
                    // stride os), which is this thread's own buffer.
                    unsafe {
                        chunk_tiles(p, xp, packed, bias, SharedOut(op.as_mut_ptr()), os, q0, q1)
                    };
                    for c in 0..p.cout {
                        for y in y0..y1 {
                            let src = &op[c * os + y * wp - q0..][..wo];
                            let at = (c * ho + y) * wo;
                            // SAFETY: chunk k alone writes rows y0..y1 of image b's output
                            // planes, inside `out` (see below).
                            unsafe { epilogue.write_row(b * out_len + at, src, o.at(at)) };
                        }
                    }
                });
            };
            if par {
                (0..n_chunks).into_par_iter().for_each(one);
            } else {
                (0..n_chunks).for_each(one);
            }
        })
    };
    let len = batch * out_len;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let base = SharedOut(out.as_mut_ptr());
    // `base.at(b * out_len)` is image b's output, `out_len` values inside the allocation.
    if batch >= threads {
        (0..batch)
            .into_par_iter()
            .for_each(|b| image(b, SharedOut(base.at(b * out_len)), false));
    } else {
        for b in 0..batch {
            image(b, SharedOut(base.at(b * out_len)), true);
        }
    }
    // SAFETY: every image's chunks wrote every value of its `out_len` (all rows of all
    // planes), each exactly once.
    unsafe { out.set_len(len) };
    out
}

/// The tiles of positions `q0..q1` (`q0` a whole tile) for every output-channel block, into
/// `out` (`cout` planes of stride `os`, position `q` at `q - q0`).
///
/// # Safety
/// `out` must be writable for `cout` planes of `os >= q1 - q0` values that no other thread
/// touches; `xp` is the padded image of `p`; `q1 <= qr`.
#[allow(clippy::too_many_arguments)]
unsafe fn chunk_tiles(
    p: &Plan,
    xp: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    out: SharedOut,
    os: usize,
    q0: usize,
    q1: usize,
) {
    debug_assert!(xp.len() >= p.cin * p.ps() && q1 <= p.qr() && q0.is_multiple_of(BLK));
    debug_assert!((q1 - q0).is_multiple_of(BLK) && os >= q1 - q0);
    let offs = p.offsets();
    let per_channel = p.cin * p.taps();
    let mut wofs = 0;
    for (o0, size) in blocks(p.cout) {
        let w = &packed[wofs..wofs + per_channel * size];
        wofs += per_channel * size;
        let b = bias.map(|b| &b[o0..o0 + size]);
        let mut q = q0;
        while q < q1 {
            let dst = out.at(o0 * os + q - q0);
            let src = xp.as_ptr().add(q);
            // SAFETY (all four): reads stay inside xp (ps covers the last tile's taps),
            // writes are the tile's own positions in planes o0..o0 + size.
            #[cfg(target_arch = "x86_64")]
            match size {
                8 => avx::forward_tile::<8>(src, p.ps(), p.cin, &offs, w, b, dst, os),
                4 => avx::forward_tile::<4>(src, p.ps(), p.cin, &offs, w, b, dst, os),
                2 => avx::forward_tile::<2>(src, p.ps(), p.cin, &offs, w, b, dst, os),
                _ => avx::forward_tile::<1>(src, p.ps(), p.cin, &offs, w, b, dst, os),
            }
            q += BLK;
        }
    }
}

/// `conv2d(x, w) + bias` for stride 1, `x [batch, cin, h, w]`, `w [cout, cin, kh, kw]`, to
/// `[batch, cout, ho, wo]`, each value passed through `epilogue(flat index, value)`.
pub fn conv(
    (batch, cin, h, w): ImageDims,
    (cout, kh, kw): KernelDims,
    pad: usize,
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    epilogue: Epilogue,
) -> Vec<f32> {
    assert!(available(), "the direct kernels need AVX-512F");
    let p = Plan::same_pad((cin, h, w), (cout, kh, kw), pad);
    let taps = kh * kw;
    let packed = pack(&p, |o, i, t| wt[(o * cin + i) * taps + t]);
    run(&p, batch, x, &packed, bias, epilogue)
}

/// The input gradient of [`conv`]: `dy [batch, cout, ho, wo]` to `dx [batch, cin, h, w]`
/// (through `epilogue` as there), as a convolution of `dy` with the flipped, transposed kernel.
pub fn input_grad(
    (batch, cin, h, w): ImageDims,
    (cout, kh, kw): KernelDims,
    pad: usize,
    dy: &[f32],
    wt: &[f32],
    epilogue: Epilogue,
) -> Vec<f32> {
    assert!(available(), "the direct kernels need AVX-512F");
    let (ho, wo) = (h + 2 * pad + 1 - kh, w + 2 * pad + 1 - kw);
    let p = Plan {
        cin: cout,
        cout: cin,
        h: ho,
        w: wo,
        kh,
        kw,
        ph: kh - 1 - pad,
        pw: kw - 1 - pad,
    };
    let taps = kh * kw;
    let packed = pack(&p, |o, i, t| {
        let (ky, kx) = (t / kw, t % kw);
        wt[(i * cin + o) * taps + (kh - 1 - ky) * kw + (kw - 1 - kx)]
    });
    run(&p, batch, dy, &packed, None, epilogue)
}

/// Pairs (input channel, tap) per weight-gradient tile for `v` vectors of output channels.
fn pairs_per_tile(v: usize) -> usize {
    24 / v
}

/// The weight gradient of [`conv`]: `x` and `dy` to `dw [cout, cin * kh * kw (+ 1)]` summed
/// over the batch, each row ending with the bias's gradient when `bias`.
#[allow(clippy::too_many_arguments)]
pub fn weight_grad(
    (batch, cin, h, w): ImageDims,
    (cout, kh, kw): KernelDims,
    pad: usize,
    x: &[f32],
    dy: &[f32],
    bias: bool,
) -> Vec<f32> {
    assert!(available(), "the direct kernels need AVX-512F");
    let p = Plan::same_pad((cin, h, w), (cout, kh, kw), pad);
    let (taps, wp, qr, ps) = (p.taps(), p.wp(), p.qr(), p.ps());
    let (ho, wo) = (p.ho(), p.wo());
    let k = cin * taps;
    let kb = k + bias as usize;
    // Output channels rounded up to vectors; blocks of up to four vectors.
    let cs = cout.div_ceil(16) * 16;
    let co_blocks: Vec<(usize, usize)> = (0..cs)
        .step_by(64)
        .map(|c0| (c0, ((cs - c0) / 16).min(4)))
        .collect();
    // Pair offsets into the buffer: the cin padded planes, a plane of ones (the bias), a
    // plane of zeros (what the pairs padding a tile read).
    let ones_plane = cin * ps;
    let zeros_plane = (cin + 1) * ps;
    let mut offs: Vec<usize> = (0..cin)
        .flat_map(|i| p.offsets().into_iter().map(move |o| i * ps + o))
        .collect();
    if bias {
        offs.push(ones_plane);
    }
    let (in_len, dy_len) = (cin * h * w, cout * ho * wo);
    let chunk = (WCHUNK_VALUES / cs).max(16).min(qr);
    // Accumulators: per co block, [pairs rounded up to the tile's J][vectors * 16].
    let layout: Vec<(usize, usize, usize)> = {
        let mut at = 0;
        co_blocks
            .iter()
            .map(|&(_, v)| {
                let j = pairs_per_tile(v);
                let rows = kb.div_ceil(j) * j;
                let start = at;
                at += rows * v * 16;
                (start, rows, j)
            })
            .collect()
    };
    let acc_len = layout
        .last()
        .map(|&(s, r, _)| s + r * co_blocks.last().unwrap().1 * 16);
    let acc_len = acc_len.unwrap_or(0);
    let scratch = (cin + 2) * ps + qr * cs;
    // One image's positions `q0..q1` added into `acc` (buffers prepared by `prepare`).
    let block_offs: Vec<Vec<usize>> = layout
        .iter()
        .map(|&(_, rows, _)| {
            let mut o = offs.clone();
            o.resize(rows, zeros_plane);
            o
        })
        .collect();
    let tiles = |buf: &[f32], acc: &mut [f32], q0: usize, q1: usize| {
        let (xp, dyt) = buf.split_at((cin + 2) * ps);
        for (bi, &(c0, v)) in co_blocks.iter().enumerate() {
            let (start, rows, j) = layout[bi];
            let row_offs = &block_offs[bi];
            for r0 in (0..rows).step_by(j) {
                let a = &mut acc[start + r0 * v * 16..start + (r0 + j) * v * 16];
                // SAFETY: the tile reads dyt rows q0..q1 (columns c0..c0 + 16v < cs) and
                // xp at pair offsets + q (q < qr, every plane is ps >= qr long), and writes
                // its own j x 16v accumulators.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    let d = dyt.as_ptr().add(q0 * cs + c0);
                    let xs = xp.as_ptr().add(q0);
                    let o = &row_offs[r0..r0 + j];
                    match v {
                        4 => avx::weight_tile::<4, 6>(d, cs, xs, o, q1 - q0, a),
                        3 => avx::weight_tile::<3, 8>(d, cs, xs, o, q1 - q0, a),
                        2 => avx::weight_tile::<2, 12>(d, cs, xs, o, q1 - q0, a),
                        _ => avx::weight_tile::<1, 24>(d, cs, xs, o, q1 - q0, a),
                    }
                }
            }
        }
    };
    // The padded image, the ones and zeros planes, and dy transposed to [qr][cs] with zeros
    // at the positions past each row's edge.
    let prepare = |b: usize, buf: &mut [f32]| {
        let (xp, dyt) = buf.split_at_mut((cin + 2) * ps);
        pad_image(&p, &x[b * in_len..(b + 1) * in_len], xp, false);
        xp[ones_plane..zeros_plane].fill(1.0);
        xp[zeros_plane..].fill(0.0);
        // Zeros where no output gradient goes: past each row's edge, past the last row, and
        // in the channels that round cout up to whole vectors (the rest is overwritten).
        for y in 0..ho {
            dyt[(y * wp + wo) * cs..(y + 1) * wp * cs].fill(0.0);
            if cs > cout {
                for xx in 0..wo {
                    dyt[(y * wp + xx) * cs + cout..(y * wp + xx + 1) * cs].fill(0.0);
                }
            }
        }
        dyt[ho * wp * cs..].fill(0.0);
        let dyb = &dy[b * dy_len..(b + 1) * dy_len];
        // In blocks of 16 channels x 16 positions: a plain loop either way round strides by a
        // whole plane (or a whole dyt row) per value, and planes a power of two apart share
        // cache sets.
        let mut block = [[0f32; 16]; 16];
        for y in 0..ho {
            for x0 in (0..wo).step_by(16) {
                let xn = (wo - x0).min(16);
                for c0 in (0..cout).step_by(16) {
                    let cn = (cout - c0).min(16);
                    for (c, row) in block.iter_mut().enumerate().take(cn) {
                        let at = (c0 + c) * ho * wo + y * wo + x0;
                        // SAFETY: `row` holds 16 >= xn values.
                        unsafe { copy(&dyb[at..at + xn], row.as_mut_ptr()) };
                    }
                    for xx in 0..xn {
                        let dst = &mut dyt[(y * wp + x0 + xx) * cs + c0..][..cn];
                        for (c, d) in dst.iter_mut().enumerate() {
                            *d = block[c][xx];
                        }
                    }
                }
            }
        }
    };
    let threads = rayon::current_num_threads();
    let acc = if batch >= threads {
        (0..batch)
            .into_par_iter()
            .fold(
                || vec![0f32; acc_len],
                |mut acc, b| {
                    with_buffer(&OUTPUT, scratch, |buf| {
                        prepare(b, buf);
                        let mut q0 = 0;
                        while q0 < qr {
                            let q1 = (q0 + chunk).min(qr);
                            tiles(buf, &mut acc, q0, q1);
                            q0 = q1;
                        }
                    });
                    acc
                },
            )
            .reduce(
                || vec![0f32; acc_len],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                },
            )
    } else {
        let mut total = vec![0f32; acc_len];
        let mut buf = vec![0f32; scratch];
        for b in 0..batch {
            prepare(b, &mut buf);
            let buf: &[f32] = &buf;
            let part = (0..qr.div_ceil(chunk))
                .into_par_iter()
                .fold(
                    || vec![0f32; acc_len],
                    |mut acc, c| {
                        tiles(buf, &mut acc, c * chunk, ((c + 1) * chunk).min(qr));
                        acc
                    },
                )
                .reduce(
                    || vec![0f32; acc_len],
                    |mut a, b| {
                        a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                        a
                    },
                );
            total.iter_mut().zip(&part).for_each(|(x, y)| *x += y);
        }
        total
    };
    // Transpose the accumulators to [cout][kb].
    let mut dw = vec![0f32; cout * kb];
    for (bi, &(c0, v)) in co_blocks.iter().enumerate() {
        let (start, _, _) = layout[bi];
        for r in 0..kb {
            for c in 0..v * 16 {
                if c0 + c < cout {
                    dw[(c0 + c) * kb + r] = acc[start + r * v * 16 + c];
                }
            }
        }
    }
    dw
}

#[cfg(target_arch = "x86_64")]
// The tiles index several register arrays in lockstep.
#[allow(clippy::needless_range_loop)]
mod avx {
    use std::arch::x86_64::*;

    use super::XV;

    /// `n` values from `src` to `dst` in vectors, the tail masked.
    ///
    /// # Safety
    /// AVX-512F; both valid for `n` values.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn copy(src: *const f32, dst: *mut f32, n: usize) {
        let mut i = 0;
        while i + 16 <= n {
            _mm512_storeu_ps(dst.add(i), _mm512_loadu_ps(src.add(i)));
            i += 16;
        }
        if i < n {
            let m: __mmask16 = ((1u32 << (n - i)) - 1) as u16;
            _mm512_mask_storeu_ps(dst.add(i), m, _mm512_maskz_loadu_ps(m, src.add(i)));
        }
    }

    /// One forward tile: `CO` output planes (stride `os`) x `16 * XV` positions from `dst`,
    /// accumulated over `cin` input planes (stride `ps`) from `src` and the taps at `offs`,
    /// weights `w` as `[ci][tap][CO]`, starting from the bias (or zero).
    ///
    /// # Safety
    /// AVX-512F; `src + i * ps + off + 16 * XV` in bounds for every plane and offset, `w`
    /// holds `cin * offs.len() * CO` values, `dst + c * os + 16 * XV` writable.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward_tile<const CO: usize>(
        src: *const f32,
        ps: usize,
        cin: usize,
        offs: &[usize],
        w: &[f32],
        bias: Option<&[f32]>,
        dst: *mut f32,
        os: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); XV]; CO];
        if let Some(b) = bias {
            for c in 0..CO {
                let v = _mm512_set1_ps(b[c]);
                for a in acc[c].iter_mut() {
                    *a = v;
                }
            }
        }
        let mut wp = w.as_ptr();
        for i in 0..cin {
            let plane = src.add(i * ps);
            for &off in offs {
                let s = plane.add(off);
                let mut v = [_mm512_setzero_ps(); XV];
                for (j, vj) in v.iter_mut().enumerate() {
                    *vj = _mm512_loadu_ps(s.add(16 * j));
                }
                for (c, ac) in acc.iter_mut().enumerate() {
                    let wv = _mm512_set1_ps(*wp.add(c));
                    for j in 0..XV {
                        ac[j] = _mm512_fmadd_ps(wv, v[j], ac[j]);
                    }
                }
                wp = wp.add(CO);
            }
        }
        for (c, ac) in acc.iter().enumerate() {
            let d = dst.add(c * os);
            for (j, a) in ac.iter().enumerate() {
                _mm512_storeu_ps(d.add(16 * j), *a);
            }
        }
    }

    /// One weight-gradient tile: `J` (input channel, tap) pairs x `V` vectors of output
    /// channels, `acc` (`[J][16 V]`) plus the sum over `n` positions of `dy[q][c]` (row stride
    /// `cs`) times `x[off_j + q]`.
    ///
    /// # Safety
    /// AVX-512F; `dy + q * cs + 16 V` and `x + off_j + q` in bounds for q < n.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight_tile<const V: usize, const J: usize>(
        dy: *const f32,
        cs: usize,
        x: *const f32,
        offs: &[usize],
        n: usize,
        acc: &mut [f32],
    ) {
        debug_assert!(offs.len() == J && acc.len() == J * V * 16);
        let mut a = [[_mm512_setzero_ps(); V]; J];
        let mut xs = [x; J];
        for j in 0..J {
            xs[j] = x.add(offs[j]);
        }
        for q in 0..n {
            let row = dy.add(q * cs);
            let mut d = [_mm512_setzero_ps(); V];
            for (v, dv) in d.iter_mut().enumerate() {
                *dv = _mm512_loadu_ps(row.add(16 * v));
            }
            for j in 0..J {
                let b = _mm512_set1_ps(*xs[j].add(q));
                for v in 0..V {
                    a[j][v] = _mm512_fmadd_ps(b, d[v], a[j][v]);
                }
            }
        }
        let out = acc.as_mut_ptr();
        for j in 0..J {
            for v in 0..V {
                let p = out.add((j * V + v) * 16);
                _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), a[j][v]));
            }
        }
    }
}
