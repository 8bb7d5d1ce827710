//! Will a training step fit in memory? On the CPU a step that does not is killed by the system
//! without a word (the reference Restormer at batch 8, patch 128 needs more than 24 GB), so
//! before a stage trains, one step at batch 1 is run and its peak memory measured, and a batch
//! whose step would not fit in the memory the machine has available is refused with the
//! numbers. Linux only (it reads /proc); elsewhere, and on GPUs, the check is skipped.

use candle_core::{DType, Tensor};
use mio_stdlib::models::network::Network;
use mio_stdlib::train::Loss;

fn proc_kb(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// What one crop of a training step costs and what the whole batch would, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub per_crop: u64,
    pub needed: u64,
    pub available: u64,
}

impl Estimate {
    /// `per_crop` scaled to `batch` crops; a product past u64's range saturates.
    pub fn for_batch(per_crop: u64, batch: usize, available: u64) -> Estimate {
        Estimate {
            per_crop,
            needed: per_crop.saturating_mul(batch as u64),
            available,
        }
    }

    pub fn fits(&self) -> bool {
        self.needed <= self.available
    }

    /// `Err` with the numbers and what to change when the step would not fit.
    pub fn verdict(&self, batch: usize, patch: usize) -> Result<(), String> {
        if self.fits() {
            return Ok(());
        }
        Err(format!(
            "a training step at batch {batch}, patch {patch} needs about {} ({} a crop, measured), \
             and this machine has {} available: lower `batch` or `patch` in the training data, \
             or train on a GPU (docs/cuda.md)",
            gb(self.needed),
            gb(self.per_crop),
            gb(self.available)
        ))
    }
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// The growth of the process's peak resident size over one step at batch 1 computing in
/// `dtype` (bf16 holds f32 copies beside its bf16 tensors on the CPU), in bytes.
fn measure_step(net: &Network, patch: usize, dtype: DType) -> Option<u64> {
    let dev = net.device();
    mio_stdlib::kernels::release_free_memory();
    // Writing 5 resets the peak resident size (VmHWM) to the current one.
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    let base = proc_kb("/proc/self/status", "VmRSS:")?;
    let step = || -> candle_core::Result<()> {
        let x = Tensor::rand(0f32, 1f32, (1, 3, patch, patch), &dev)?;
        let ids = Tensor::zeros(1, DType::U32, &dev)?;
        let y = net.forward_in(dtype, &x, &ids)?;
        let _grads = Loss::L1.compute(&y, &x)?.backward()?;
        Ok(())
    };
    step().ok()?;
    let peak = proc_kb("/proc/self/status", "VmHWM:")?;
    mio_stdlib::kernels::release_free_memory();
    Some(peak.saturating_sub(base) * 1024)
}

/// Measures a step at batch 1 computing in `dtype` (the stage's precision's) and scales it to
/// `batch`. `None` when it cannot be measured here (not Linux, no /proc, a GPU).
///
/// What is measured is the whole process's resident memory: a test set or eval running beside
/// the stage (`--jobs`) and allocating during the step would inflate it, so the step is
/// measured twice and the smaller taken. One freeing memory during both would hide some of the
/// step's growth; the check then passes a batch it might have refused, as without a check.
pub fn estimate(net: &Network, batch: usize, patch: usize, dtype: DType) -> Option<Estimate> {
    if !net.device().is_cpu() {
        return None;
    }
    let first = measure_step(net, patch, dtype)?;
    let second = measure_step(net, patch, dtype)?;
    let available = proc_kb("/proc/meminfo", "MemAvailable:")? * 1024;
    // The batch-1 step also holds what does not grow with the batch (gradients of the
    // weights, scratch buffers), so this errs on the side of too much.
    Some(Estimate::for_batch(first.min(second), batch, available))
}

/// `Err` with the numbers and what to change when the step would not fit; `Ok` when it fits
/// or cannot be measured here.
pub(crate) fn check(net: &Network, batch: usize, patch: usize, dtype: DType) -> Result<(), String> {
    match estimate(net, batch, patch, dtype) {
        Some(e) => e.verdict(batch, patch),
        None => Ok(()),
    }
}

// The measurement itself is tested in engine/tests/memory.rs, a process of its own: another
// test freeing memory during both steps would hide their growth.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_that_does_not_fit_is_refused_with_the_numbers() {
        let gib = 1u64 << 30;
        let ok = Estimate::for_batch(gib / 4, 8, 4 * gib);
        assert_eq!(ok.needed, 2 * gib);
        assert_eq!(ok.verdict(8, 128), Ok(()));
        let err = Estimate::for_batch(gib, 8, 4 * gib)
            .verdict(8, 128)
            .unwrap_err();
        assert!(
            err.contains("batch 8, patch 128 needs about 8.6 GB (1.1 GB a crop"),
            "{err}"
        );
        assert!(
            err.contains("4.3 GB available: lower `batch` or `patch`"),
            "{err}"
        );
        // A batch past u64's range saturates rather than wrapping into a small number.
        let huge = Estimate::for_batch(3, usize::MAX, u64::MAX - 1);
        assert_eq!(huge.needed, u64::MAX);
        assert!(!huge.fits());
    }
}
