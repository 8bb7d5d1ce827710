//! The one vector kernel the image code needs: `dst += k * src` over f32 rows. Compiled twice,
//! for baseline x86-64 and for AVX2 (chosen at run time), from the same source: Rust never
//! fuses a multiply and an add on its own, so both give the same bits.

#[inline(always)]
fn axpy_generic(dst: &mut [f32], src: &[f32], k: f32) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += k * s;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn axpy_avx2(dst: &mut [f32], src: &[f32], k: f32) {
    axpy_generic(dst, src, k)
}

/// `dst[i] += k * src[i]` over the shorter of the two.
#[inline]
pub fn axpy(dst: &mut [f32], src: &[f32], k: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { axpy_avx2(dst, src, k) };
            return;
        }
    }
    axpy_generic(dst, src, k)
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_paths_agree_bit_for_bit() {
        let src: Vec<f32> = (0..1003).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut a: Vec<f32> = (0..1003).map(|i| i as f32 * 1e-3).collect();
        let mut b = a.clone();
        super::axpy(&mut a, &src, 0.123);
        super::axpy_generic(&mut b, &src, 0.123);
        assert_eq!(a, b);
    }
}
