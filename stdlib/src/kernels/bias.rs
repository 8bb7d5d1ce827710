//! A bias added to every row `[.., C]` (a linear layer's on tokens), as a candle custom op on
//! the CPU. candle's broadcast add is fine forward, but its backward sums the gradient over the
//! broadcast dimensions with a reduction that walks each column down the rows, on one thread:
//! measured at a tenth of a Uformer training step. Here the column sums accumulate row by row
//! (contiguous, vectorised) in parallel chunks.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv::{fast, slice};
use crate::simd::vector_fn;

/// Rows per rayon task.
const ROWS: usize = 512;

/// `x + bias` for `x` `[.., C]` and `bias` `[C]`.
pub fn add_bias_rows(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if fast() && x.device().is_cpu() && x.dtype() == DType::F32 && bias.dtype() == DType::F32 {
        return x.contiguous()?.apply_op2(&bias.contiguous()?, AddBias);
    }
    x.broadcast_add(bias)
}

/// The sums of the columns of `x` `[.., C]`: `[C]` (the gradient of a bias added to every row).
pub fn column_sums(x: &Tensor) -> Result<Tensor> {
    if fast() && x.device().is_cpu() && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op1_no_bwd(&ColumnSums);
    }
    let c = *x.dims().last().unwrap_or(&1);
    x.reshape(((), c))?.sum(0)
}

fn sums(x: &[f32], c: usize) -> Vec<f32> {
    let total = x
        .par_chunks(c * ROWS)
        .map(|rows| {
            let mut part = vec![0f32; c];
            add_rows(&mut part, rows);
            part.into_iter().map(f64::from).collect::<Vec<f64>>()
        })
        .reduce(|| vec![0f64; c], add_f64);
    total.into_iter().map(|v| v as f32).collect()
}

vector_fn! {
    /// Adds each row of `rows` (as wide as `part`) to `part`.
    fn add_rows(part: &mut [f32], rows: &[f32]) {
        for row in rows.chunks_exact(part.len()) {
            for (p, &v) in part.iter_mut().zip(row) {
                *p += v;
            }
        }
    }
}

vector_fn! {
    /// `out = x + bias` row by row (rows as wide as `bias`).
    fn rows_plus_bias(out: &mut [f32], x: &[f32], bias: &[f32]) {
        let c = bias.len();
        for (row, x) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            for ((o, &v), &b) in row.iter_mut().zip(x).zip(bias) {
                *o = v + b;
            }
        }
    }
}

/// `a + b`, element by element: how per-task partial sums are combined in a rayon reduce.
pub(super) fn add_f64(mut a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
    a
}

fn width(l: &Layout) -> Result<usize> {
    match l.dims().last() {
        Some(&c) if c > 0 => Ok(c),
        _ => candle_core::bail!("row bias: no columns in {:?}", l.dims()),
    }
}

struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "mio-add-bias-rows"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let c = width(l1)?;
        let x = slice(s1, l1, "the input")?;
        let bias = slice(s2, l2, "the bias")?;
        if bias.len() != c {
            candle_core::bail!("row bias: {} values for rows of {c}", bias.len());
        }
        // Written in parallel from the input (a copy first was one thread's pass more).
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(c * ROWS)
            .zip(x.par_chunks(c * ROWS))
            .for_each(|(rows, x)| rows_plus_bias(rows, x, bias));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(dy.clone()), Some(column_sums(dy)?)))
    }
}

struct ColumnSums;

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "mio-column-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let c = width(l)?;
        let out = sums(slice(s, l, "the input")?, c);
        Ok((CpuStorage::F32(out), Shape::from(c)))
    }
}
