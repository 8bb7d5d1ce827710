//! The arithmetic precision of a run's matrix products and convolutions (`precision =` in a
//! train block): `fp32` computes in full single precision everywhere; `tf32` lets the GPU's
//! tensor cores round the products' inputs to TF32 (10-bit mantissa, fp32 range and
//! accumulation), as PyTorch does by default for cuDNN convolutions. The CPU always computes in
//! fp32, whatever the setting.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Tf32,
}

impl Precision {
    pub const NAMES: [&'static str; 2] = ["fp32", "tf32"];

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fp32" => Some(Precision::Fp32),
            "tf32" => Some(Precision::Tf32),
            _ => None,
        }
    }
}

static PRECISION: AtomicU8 = AtomicU8::new(0);

/// Sets the precision of the GPU's products from now on (cuBLAS's matrix products and cuDNN's
/// convolutions); no effect on the CPU's.
pub fn set(p: Precision) {
    PRECISION.store(p as u8, Ordering::Relaxed);
    #[cfg(feature = "cuda")]
    candle_core::cuda::set_gemm_reduced_precision_f32(p == Precision::Tf32);
}

pub fn get() -> Precision {
    match PRECISION.load(Ordering::Relaxed) {
        1 => Precision::Tf32,
        _ => Precision::Fp32,
    }
}

/// What `precision = auto` (`None`) or an explicit setting means on `dev`: `auto` is tf32 on a
/// GPU (cuBLAS and cuDNN ignore it on GPUs without tensor cores for it) and fp32 on the CPU.
pub fn resolve(setting: Option<Precision>, dev: &candle_core::Device) -> Precision {
    match setting {
        Some(p) => p,
        None if dev.is_cuda() => Precision::Tf32,
        None => Precision::Fp32,
    }
}

/// Sets the precision until dropped, then restores the one before (a training stage's setting
/// does not leak into the evaluations that run after it in the same process).
pub struct Scoped(Precision);

impl Scoped {
    pub fn new(p: Precision) -> Self {
        let before = get();
        set(p);
        Scoped(before)
    }
}

impl Drop for Scoped {
    fn drop(&mut self) {
        set(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in Precision::NAMES {
            assert_eq!(Precision::parse(name).unwrap().name(), name);
        }
        assert_eq!(Precision::parse("bf16"), None);
        assert_eq!(Precision::default(), Precision::Fp32);
    }

    #[test]
    fn auto_is_fp32_on_the_cpu_and_a_scope_restores_the_setting() {
        let cpu = candle_core::Device::Cpu;
        assert_eq!(resolve(None, &cpu), Precision::Fp32);
        assert_eq!(resolve(Some(Precision::Tf32), &cpu), Precision::Tf32);
        assert_eq!(get(), Precision::Fp32);
        {
            let _s = Scoped::new(Precision::Tf32);
            assert_eq!(get(), Precision::Tf32);
        }
        assert_eq!(get(), Precision::Fp32);
    }
}
