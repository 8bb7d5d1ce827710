//! The memory check's measurement of a real training step. A test binary of its own: the
//! measurement reads the process's peak resident size, which another test allocating or
//! freeing at the same time would disturb.

use candle_core::DType;
use mio_engine::run::memory::estimate;
use mio_stdlib::models::network::{Arch, Network, Spec, SrResNetConfig};
use mio_stdlib::models::PromptMode;

#[test]
fn a_step_is_measured_and_scales_with_the_batch() {
    let spec = Spec {
        arch: Arch::SrResNet(SrResNetConfig {
            channels: 16,
            blocks: 2,
            init_scale: 0.1,
        }),
        prompt: PromptMode::None,
        map_size: 0,
        tasks: vec!["noise".into()],
    };
    let net = Network::new(spec, 0, &candle_core::Device::Cpu).unwrap();
    let Some(small) = estimate(&net, 4, 64, DType::F32) else {
        return; // not measurable on this system (not Linux)
    };
    // At patch 64 a crop's step holds some 20 activations of 16 x 64 x 64 floats.
    assert!(small.per_crop > 1 << 20, "{small:?}");
    assert_eq!(small.needed, 4 * small.per_crop);
    assert!(small.fits());
    assert!(small.available > 0);
    // A larger crop is measured as costing more.
    let large = estimate(&net, 1, 128, DType::F32).unwrap();
    assert!(large.per_crop > small.per_crop, "{small:?} {large:?}");
    // A batch no machine has the memory for is refused.
    let err = estimate(&net, 1 << 40, 64, DType::F32)
        .unwrap()
        .verdict(1 << 40, 64)
        .unwrap_err();
    assert!(err.contains("lower `batch` or `patch`"), "{err}");
    // A bf16 step on the CPU is measured as it runs: its bf16 tensors beside the f32 copies
    // its ops compute on, more than fp32's (measured: 5.6-6.0 against 3.1-3.4 MB a crop).
    let bf16 = estimate(&net, 4, 64, DType::BF16).unwrap();
    assert!(bf16.per_crop > small.per_crop, "{small:?} {bf16:?}");
}
