//! The arithmetic precision of a training run (`precision =` in a train block): `fp32` computes
//! in full single precision everywhere; `tf32` lets the GPU's tensor cores round the products'
//! inputs to TF32 (10-bit mantissa, fp32 range and accumulation), as PyTorch does by default
//! for cuDNN convolutions, and the CPU computes in fp32 for it; `bf16` is mixed precision: the
//! network's forward and backward run on bf16 tensors (the products on bf16 tensor cores with
//! fp32 accumulation, norms, softmax and the other fused ops in f32 arithmetic on bf16
//! storage), while the trained variables (the master weights), their gradients and Adam's
//! moments stay fp32 (`Network::cast`). On the CPU, which has no bf16 products, bf16 gives the
//! same roundings as on a GPU at fp32's arithmetic plus the casts (slower than fp32: for
//! checking a configuration before a GPU run, not for speed).

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Tf32,
    Bf16,
}

impl Precision {
    pub const NAMES: [&'static str; 3] = ["fp32", "tf32", "bf16"];

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fp32" => Some(Precision::Fp32),
            "tf32" => Some(Precision::Tf32),
            "bf16" => Some(Precision::Bf16),
            _ => None,
        }
    }

    /// The dtype a network computes in: bf16 for mixed precision, f32 otherwise (the trained
    /// variables are f32 either way).
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::Bf16 => candle_core::DType::BF16,
            Precision::Fp32 | Precision::Tf32 => candle_core::DType::F32,
        }
    }
}

static PRECISION: AtomicU8 = AtomicU8::new(0);

/// Sets the precision from now on: of the GPU's products (cuBLAS's matrix products and cuDNN's
/// convolutions; under bf16 an fp32 product that remains, such as a loss's, may use TF32), and
/// the dtype a training step computes in ([`Precision::dtype`]).
pub fn set(p: Precision) {
    PRECISION.store(p as u8, Ordering::Relaxed);
    #[cfg(feature = "cuda")]
    candle_core::cuda::set_gemm_reduced_precision_f32(p != Precision::Fp32);
}

pub fn get() -> Precision {
    match PRECISION.load(Ordering::Relaxed) {
        1 => Precision::Tf32,
        2 => Precision::Bf16,
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
        assert_eq!(Precision::parse("fp16"), None);
        assert_eq!(Precision::Bf16.dtype(), candle_core::DType::BF16);
        assert_eq!(Precision::Tf32.dtype(), candle_core::DType::F32);
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
            let _b = Scoped::new(Precision::Bf16);
            assert_eq!(get(), Precision::Bf16);
        }
        assert_eq!(get(), Precision::Fp32);
    }
}
