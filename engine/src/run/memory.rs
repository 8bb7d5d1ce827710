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
pub(crate) struct Estimate {
    pub per_crop: u64,
    pub needed: u64,
    pub available: u64,
}

impl Estimate {
    pub fn fits(&self) -> bool {
        self.needed <= self.available
    }
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// Measures a step at batch 1 and scales it to `batch`. `None` when it cannot be measured
/// here (not Linux, no /proc, a GPU).
pub(crate) fn estimate(net: &Network, batch: usize, patch: usize) -> Option<Estimate> {
    let dev = net.device();
    if !dev.is_cpu() {
        return None;
    }
    mio_stdlib::kernels::release_free_memory();
    // Writing 5 resets the peak resident size (VmHWM) to the current one.
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    let base = proc_kb("/proc/self/status", "VmRSS:")?;
    let step = || -> candle_core::Result<()> {
        let x = Tensor::rand(0f32, 1f32, (1, 3, patch, patch), &dev)?;
        let ids = Tensor::zeros(1, DType::U32, &dev)?;
        let y = net.forward(&x, &ids)?;
        let _grads = Loss::L1.compute(&y, &x)?.backward()?;
        Ok(())
    };
    step().ok()?;
    let peak = proc_kb("/proc/self/status", "VmHWM:")?;
    let available = proc_kb("/proc/meminfo", "MemAvailable:")? * 1024;
    mio_stdlib::kernels::release_free_memory();
    // The batch-1 step also holds what does not grow with the batch (gradients of the
    // weights, scratch buffers), so this errs on the side of too much.
    let per_crop = peak.saturating_sub(base) * 1024;
    Some(Estimate {
        per_crop,
        needed: per_crop.saturating_mul(batch as u64),
        available,
    })
}

/// `Err` with the numbers and what to change when the step would not fit.
pub(crate) fn check(net: &Network, batch: usize, patch: usize) -> Result<(), String> {
    match estimate(net, batch, patch) {
        Some(e) if !e.fits() => Err(format!(
            "a training step at batch {batch}, patch {patch} needs about {} ({} a crop, measured), \
             and this machine has {} available: lower `batch` or `patch` in the training data, \
             or train on a GPU (docs/cuda.md)",
            gb(e.needed),
            gb(e.per_crop),
            gb(e.available)
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio_stdlib::models::network::{Arch, Spec};
    use mio_stdlib::models::PromptMode;

    #[test]
    fn a_step_is_measured_and_scales_with_the_batch() {
        let spec = Spec {
            arch: Arch::SrResNet {
                channels: 16,
                blocks: 2,
            },
            prompt: PromptMode::None,
            map_size: 0,
            tasks: vec!["noise".into()],
        };
        let net = Network::new(spec, 0, &candle_core::Device::Cpu).unwrap();
        let Some(small) = estimate(&net, 4, 64) else {
            return; // not measurable on this system
        };
        // At patch 64 a crop's step holds some 20 activations of 16 x 64 x 64 floats.
        assert!(small.per_crop > 1 << 20, "{small:?}");
        assert_eq!(small.needed, 4 * small.per_crop);
        // A batch past u64's range saturates rather than wrapping into a small number.
        assert_eq!(estimate(&net, usize::MAX, 64).unwrap().needed, u64::MAX);
        assert!(small.fits());
        // A batch no machine has the memory for is refused, with the numbers.
        let err = check(&net, 1 << 40, 64).unwrap_err();
        assert!(err.contains("lower `batch` or `patch`"), "{err}");
    }
}
