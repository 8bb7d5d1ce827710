//! SRResNet's body, a chain of residual blocks, as one candle op on the CPU: each block is
//! `f + conv2(relu(conv1(f)))`, or with a prompt's modulation `(f + r) * (1 + scale) + shift`.
//!
//! Why one op: candle's backward allocates a zeroed gradient and adds into it for every edge of
//! the graph, a few full passes over a feature map each. As separate ops a block has four
//! edges of feature-map size (the two convolutions' inputs, both sides of the residual add)
//! and an activation pass; as one op the whole chain has one. Its own backward runs the
//! convolutions' gradients on mio's kernels with the ReLU mask and the residual's gradient
//! applied as the gradients are written.
//!
//! When a gradient will be asked for (some input is tracked by candle's graph), the forward
//! keeps each block's input, `relu(conv1(f))` and (modulated) `f + r` for the backward, as
//! much as candle's graph of separate ops would; restoring keeps nothing. The weights travel as
//! one packed tensor (`[w1, b1, w2, b2]` flattened per block, a concatenation of the
//! variables, so their gradients flow back through candle's `cat`), the modulations as one
//! `[B, blocks * 2C]` tensor (each block's scale, then its shift).

use std::sync::Mutex;

use candle_core::{
    CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor,
};

use super::conv::{self, dims4, fast, slice, Activation, Conv2d, Epilogue, Geometry};
use super::modulate;

/// The output of `blocks` applied in turn to `f` on the CPU in one op, each block modulated by
/// its `(scale, shift)` (`[B, C]` each) when `modulations` is given; or `None` where this op
/// does not apply (another device or dtype, candle's kernels chosen, convolutions that are not
/// "same" with bias and equal channel counts), and the caller composes separate ops.
pub fn residual_blocks(
    f: &Tensor,
    blocks: &[(&Conv2d, &Conv2d)],
    modulations: Option<&[(Tensor, Tensor)]>,
) -> Result<Option<Tensor>> {
    if blocks.is_empty() || !fast() || !f.device().is_cpu() || f.dtype() != DType::F32 {
        return Ok(None);
    }
    let (_, c, _, _) = f.dims4()?;
    let first = blocks[0].0;
    let fits = |conv: &Conv2d| -> Result<bool> {
        let (o, i, kh, kw) = conv.weight().dims4()?;
        let cfg = conv.config();
        Ok(o == c
            && i == c
            && kh == kw
            && cfg.groups == 1
            && cfg.stride == 1
            && 2 * cfg.padding + 1 == kh
            && conv.bias().is_some()
            && conv.weight().dtype() == DType::F32
            && conv.weight().dims() == first.weight().dims())
    };
    for (c1, c2) in blocks {
        if !fits(c1)? || !fits(c2)? {
            return Ok(None);
        }
    }
    if modulations.is_some_and(|m| m.len() != blocks.len()) {
        candle_core::bail!("residual blocks: one modulation per block");
    }
    let mut parts = vec![];
    for (c1, c2) in blocks {
        for conv in [c1, c2] {
            parts.push(conv.weight().flatten_all()?);
            parts.push(conv.bias().expect("checked above").clone());
        }
    }
    let pack = Tensor::cat(&parts, 0)?;
    let st = match modulations {
        None => None,
        Some(m) => {
            let all: Vec<&Tensor> = m.iter().flat_map(|(s, t)| [s, t]).collect();
            Some(Tensor::cat(&all, 1)?.contiguous()?)
        }
    };
    let f = f.contiguous()?;
    let op = Chain {
        blocks: blocks.len(),
        k: first.weight().dim(2)?,
        pad: first.config().padding,
        keep: f.track_op() || pack.track_op() || st.as_ref().is_some_and(|s| s.track_op()),
        saved: Mutex::new(None),
    };
    Ok(Some(match st {
        None => f.apply_op2(&pack, op)?,
        Some(st) => f.apply_op3(&pack, &st, op)?,
    }))
}

/// What the forward keeps of one block for the backward.
struct Saved {
    /// The block's input (none for the first: the op's own input).
    input: Option<Vec<f32>>,
    /// `relu(conv1(f))`.
    h1: Vec<f32>,
    /// `f + r`, where modulated.
    sum: Option<Vec<f32>>,
}

struct Chain {
    blocks: usize,
    k: usize,
    pad: usize,
    /// Whether to keep intermediates (a gradient will be asked for).
    keep: bool,
    saved: Mutex<Option<Vec<Saved>>>,
}

/// One block's packed weights: `w1, b1, w2, b2`.
fn parts(pack: &[f32], block: usize, c: usize, k: usize) -> [&[f32]; 4] {
    let wl = c * c * k * k;
    let p = &pack[block * 2 * (wl + c)..(block + 1) * 2 * (wl + c)];
    let (w1, rest) = p.split_at(wl);
    let (b1, rest) = rest.split_at(c);
    let (w2, b2) = rest.split_at(wl);
    [w1, b1, w2, b2]
}

impl Chain {
    fn geometry(&self, l: &Layout) -> Result<Geometry> {
        let (batch, c, h, w) = dims4(l, "the features")?;
        Ok(Geometry {
            batch,
            cin: c,
            h,
            w,
            cout: c,
            kh: self.k,
            kw: self.k,
            stride: 1,
            pad: self.pad,
        })
    }

    fn check(&self, g: &Geometry, pack: &[f32], st: Option<&[f32]>) -> Result<()> {
        let per_block = 2 * (g.cin * g.cin * self.k * self.k + g.cin);
        if pack.len() != self.blocks * per_block {
            candle_core::bail!(
                "residual blocks: {} packed weights for {} blocks of {} channels",
                pack.len(),
                self.blocks,
                g.cin
            );
        }
        if st.is_some_and(|s| s.len() != g.batch * self.blocks * 2 * g.cout) {
            candle_core::bail!("residual blocks: scale and shift of the wrong size");
        }
        Ok(())
    }

    /// Block `i`'s `[B, 2C]` scale and shift out of all blocks' `[B, blocks * 2C]`.
    fn block_st(&self, g: &Geometry, st: &[f32], i: usize) -> Vec<f32> {
        let c2 = 2 * g.cout;
        st.chunks_exact(self.blocks * c2)
            .flat_map(|row| row[i * c2..(i + 1) * c2].iter().copied())
            .collect()
    }

    /// The output; keeps what the backward needs when `keep`.
    fn run(&self, g: &Geometry, f: &[f32], pack: &[f32], st: Option<&[f32]>) -> Result<Vec<f32>> {
        self.check(g, pack, st)?;
        let mut saved = Vec::with_capacity(if self.keep { self.blocks } else { 0 });
        let mut input: Option<Vec<f32>> = None;
        for i in 0..self.blocks {
            let x: &[f32] = input.as_deref().unwrap_or(f);
            let [w1, b1, w2, b2] = parts(pack, i, g.cin, self.k);
            let h1 = conv::forward(g, x, w1, Some(b1), Activation::Relu);
            // The residual added as the second convolution writes its output.
            let sum = conv::forward_with(g, &h1, w2, Some(b2), Epilogue::Add(x));
            let (out, sum) = match st {
                None => (sum, None),
                Some(st) => {
                    let sti = self.block_st(g, st, i);
                    let out = modulate::forward(&[&sum], &sti, (g.batch, g.cout, g.h * g.w));
                    (out, Some(sum))
                }
            };
            if self.keep {
                saved.push(Saved {
                    input: input.take(),
                    h1,
                    sum,
                });
            }
            input = Some(out);
        }
        if self.keep {
            *self.saved.lock().expect("the blocks' saved state") = Some(saved);
        }
        Ok(input.expect("at least one block"))
    }

    /// Gradients of the features, the packed weights and (modulated) scale-and-shift.
    fn backward(
        &self,
        f: &Tensor,
        pack: &Tensor,
        st: Option<&Tensor>,
        dout: &Tensor,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let dout = dout.contiguous()?;
        let (fs, fl) = f.storage_and_layout();
        let (ps, pl) = pack.storage_and_layout();
        let (ds, dl) = dout.storage_and_layout();
        let st_guard = st.map(|t| t.storage_and_layout());
        let stv = match &st_guard {
            Some((s, l)) => Some(cpu(s, l)?),
            None => None,
        };
        let (fv, pv, dv) = (cpu(&fs, fl)?, cpu(&ps, pl)?, cpu(&ds, dl)?);
        let g = self.geometry(fl)?;
        let taken = self.saved.lock().expect("the blocks' saved state").take();
        let saved = match taken {
            Some(s) => s,
            // A second backward through the same graph: recompute what the first used up.
            None => {
                let again = Chain {
                    keep: true,
                    saved: Mutex::new(None),
                    ..*self
                };
                again.run(&g, fv, pv, stv)?;
                let s = again.saved.lock().expect("the blocks' saved state").take();
                s.expect("a keeping forward saves its state")
            }
        };
        let dims = (g.batch, g.cout, g.h * g.w);
        let k = g.cin * self.k * self.k;
        let mut dpacks: Vec<Vec<f32>> = vec![vec![]; self.blocks];
        let mut dsts: Vec<Vec<f32>> = vec![vec![]; self.blocks];
        let mut d: Option<Vec<f32>> = None;
        // Last block first, each block's saved state freed once used.
        for (i, s) in saved.into_iter().enumerate().rev() {
            let dy: &[f32] = d.as_deref().unwrap_or(dv);
            let x: &[f32] = s.input.as_deref().unwrap_or(fv);
            // Through the modulation: dsum = dy * (1 + scale), and the scale's and shift's
            // sums.
            let mut scaled = None;
            if let (Some(stv), Some(sum)) = (stv, &s.sum) {
                let (dsum, sums) =
                    modulate::residual_backward(dy, sum, &self.block_st(&g, stv, i), dims);
                dsts[i] = sums;
                scaled = Some(dsum);
            }
            let dsum: &[f32] = scaled.as_deref().unwrap_or(dy);
            let [w1, _, w2, _] = parts(pv, i, g.cin, self.k);
            let h1 = &s.h1;
            // The second convolution: its weights' and bias's gradients, and its input's
            // through the ReLU (zero where its output was).
            let dw2 = conv::weight_grad(&g, h1, dsum, true);
            let dh1 = conv::input_grad_with(&g, dsum, w2, Epilogue::Mask(h1));
            let dw1 = conv::weight_grad(&g, x, &dh1, true);
            // The block's input: the first convolution's input gradient plus the residual
            // path's.
            let dx = conv::input_grad_with(&g, &dh1, w1, Epilogue::Add(dsum));
            // [cout][k + 1] rows into the packed layout.
            let dp = &mut dpacks[i];
            for dw in [&dw1, &dw2] {
                for row in dw.chunks_exact(k + 1) {
                    dp.extend_from_slice(&row[..k]);
                }
                dp.extend(dw.chunks_exact(k + 1).map(|row| row[k]));
            }
            d = Some(dx);
        }
        let dev = f.device();
        let dst = match stv {
            None => None,
            Some(_) => {
                // Per image: each block's [scale, shift] gradients side by side.
                let c2 = 2 * g.cout;
                let mut all = Vec::with_capacity(g.batch * self.blocks * c2);
                for b in 0..g.batch {
                    for block in &dsts {
                        all.extend_from_slice(&block[b * c2..(b + 1) * c2]);
                    }
                }
                Some(Tensor::from_vec(all, (g.batch, self.blocks * c2), dev)?)
            }
        };
        Ok((
            Tensor::from_vec(d.expect("at least one block"), f.shape(), dev)?,
            Tensor::from_vec(dpacks.concat(), pack.shape(), dev)?,
            dst,
        ))
    }
}

/// A CPU tensor's values (contiguous f32).
fn cpu<'a>(s: &'a Storage, l: &Layout) -> Result<&'a [f32]> {
    match s {
        Storage::Cpu(c) => slice(c, l, "a residual block operand"),
        _ => candle_core::bail!("residual blocks: a tensor off the CPU"),
    }
}

impl CustomOp2 for Chain {
    fn name(&self) -> &'static str {
        "mio-residual-blocks"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l1)?;
        let out = self.run(
            &g,
            slice(s1, l1, "the features")?,
            slice(s2, l2, "the weights")?,
            None,
        )?;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        f: &Tensor,
        pack: &Tensor,
        _res: &Tensor,
        dout: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (df, dp, _) = self.backward(f, pack, None, dout)?;
        Ok((Some(df), Some(dp)))
    }
}

impl CustomOp3 for Chain {
    fn name(&self) -> &'static str {
        "mio-residual-blocks-modulated"
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
        let g = self.geometry(l1)?;
        if l3.shape().dims() != [g.batch, self.blocks * 2 * g.cout] {
            candle_core::bail!(
                "residual blocks: scale and shift {:?} for {} blocks of features {:?}",
                l3.shape(),
                self.blocks,
                l1.shape()
            );
        }
        let out = self.run(
            &g,
            slice(s1, l1, "the features")?,
            slice(s2, l2, "the weights")?,
            Some(slice(s3, l3, "scale and shift")?),
        )?;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        f: &Tensor,
        pack: &Tensor,
        st: &Tensor,
        _res: &Tensor,
        dout: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (df, dp, dst) = self.backward(f, pack, Some(st), dout)?;
        Ok((Some(df), Some(dp), dst))
    }
}
