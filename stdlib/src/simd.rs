//! Vector code chosen at run time. `axpy` (`dst += k * src` over f32 rows) for the image code;
//! `vector_fn!` defines a kernel loop compiled for AVX2 when the CPU has it; [`lane_max`],
//! [`lane_sum`] and [`dot`] are reductions written in eight independent lanes, so that they
//! vectorise at all (the compiler keeps a float sum in order, one element at a time). Each is
//! compiled for baseline x86-64 and for AVX2 from the same source: Rust never fuses a multiply
//! and an add on its own, so both give the same bits.

#[inline(always)]
fn axpy_generic(dst: &mut [f32], src: &[f32], k: f32) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += k * s;
    }
}

/// Defines `fn name(args)` whose body runs compiled for AVX2 when the CPU has it (eight lanes
/// wide), else for the baseline target: the body is an `#[inline(always)]` function called
/// from a `#[target_feature(enable = "avx2")]` twin, so it and everything it inlines
/// ([`lane_max`], [`lane_sum`], ...) is compiled for both. For a kernel's inner loops: one call
/// per chunk of work, not per element. (A closure handed to such a twin is not enough: the
/// compiler builds a large closure as a function of its own, for the baseline target.)
macro_rules! vector_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use vector_fn;

vector_fn! {
    /// `dst[i] += k * src[i]` over the shorter of the two.
    #[inline]
    pub fn axpy(dst: &mut [f32], src: &[f32], k: f32) {
        axpy_generic(dst, src, k)
    }
}

const LANES: usize = 8;

/// The largest value (negative infinity for none), in eight lanes.
#[inline(always)]
pub fn lane_max(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    rest.iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// The sum, in eight lanes added at the end.
#[inline(always)]
pub fn lane_sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// `sum(a[i] * b[i])` over the shorter of the two, in eight lanes.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    lane_sum_by(a, b, |x, y| x * y)
}

/// `sum(f(a[i], b[i]))` over the shorter of the two, in eight lanes.
#[inline(always)]
pub fn lane_sum_by(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += f(x, y);
        }
    }
    acc.iter().sum::<f32>() + rest
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

    super::vector_fn! {
        fn twice_the_sum(v: &[f32]) -> f32 {
            super::lane_sum(v) * 2.0
        }
    }

    #[test]
    fn lane_reductions_equal_plain_ones_at_every_length() {
        for n in [0usize, 1, 7, 8, 9, 64, 67] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.25)
                .collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.5).collect();
            let plain_max = a.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let plain_sum: f32 = a.iter().sum();
            let plain_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            // Quarter steps and halves: every partial sum is exact, whatever the order.
            assert_eq!(super::lane_max(&a), plain_max, "max of {n}");
            assert_eq!(super::lane_sum(&a), plain_sum, "sum of {n}");
            assert_eq!(super::dot(&a, &b), plain_dot, "dot of {n}");
            assert_eq!(twice_the_sum(&a), 2.0 * plain_sum);
        }
    }
}
