//! A small, seedable random number generator (SplitMix64). Every random draw in mio comes from
//! a generator derived from the workflow seed and what is being drawn (a task, an image), never
//! from a shared one, so results do not depend on the number of threads or on order.

#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    /// A second normal deviate from Box-Muller, kept for the next call.
    spare: Option<f64>,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: seed,
            spare: None,
        }
    }

    /// A generator for one purpose: the seed mixed with each tag (task name, image name, ...).
    pub fn derive(seed: u64, tags: &[&str]) -> Rng {
        let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
        for t in tags {
            for b in t.bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
            h = mix(h ^ 0xff);
        }
        Rng::new(mix(h))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in [lo, hi], both ends included.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo + 1) as u64;
        lo + (self.next_u64() % span) as i64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}

impl Rng {
    /// Standard normal by Marsaglia and Tsang's ziggurat (128 layers): about ten times faster
    /// than [`Rng::normal`], with the same distribution; the noise degradation uses it.
    pub fn normal_fast(&mut self) -> f64 {
        let hz = self.next_u64() as u32 as i32;
        self.ziggurat_from(hz)
    }

    /// The ziggurat from a first 32-bit draw `hz`: the rectangle test, else the base strip's
    /// tail or a wedge's density test, drawing afresh only after a rejection.
    fn ziggurat_from(&mut self, mut hz: i32) -> f64 {
        let t = ziggurat();
        loop {
            let iz = (hz & 127) as usize;
            if hz.unsigned_abs() < t.k[iz] {
                return hz as f64 * t.w[iz];
            }
            if iz == 0 {
                loop {
                    let x = -(1.0 - self.uniform()).ln() / ZIG_R;
                    let y = -(1.0 - self.uniform()).ln();
                    if y + y >= x * x {
                        return if hz > 0 { ZIG_R + x } else { -ZIG_R - x };
                    }
                }
            }
            let x = hz as f64 * t.w[iz];
            if t.f[iz] + self.uniform() * (t.f[iz - 1] - t.f[iz]) < (-0.5 * x * x).exp() {
                return x;
            }
            hz = self.next_u64() as u32 as i32;
        }
    }

    /// Fills `out` with standard normal deviates: the ziggurat, using both halves of every
    /// 64-bit draw on the fast path and finishing a rejected draw as [`Rng::normal_fast`] does.
    pub fn fill_normal(&mut self, out: &mut [f32]) {
        let t = ziggurat();
        let mut i = 0;
        while i < out.len() {
            let bits = self.next_u64();
            for hz in [bits as u32 as i32, (bits >> 32) as u32 as i32] {
                if i == out.len() {
                    break;
                }
                let iz = (hz & 127) as usize;
                out[i] = if hz.unsigned_abs() < t.k[iz] {
                    hz as f32 * t.w32[iz]
                } else {
                    self.ziggurat_from(hz) as f32
                };
                i += 1;
            }
        }
    }

    /// Draws a geometric gap: how many failures before the next success of probability `p`.
    pub fn geometric(&mut self, p: f64) -> u64 {
        if p >= 1.0 {
            return 0;
        }
        let u = 1.0 - self.uniform(); // (0, 1]
        (u.ln() / (1.0 - p).ln()).floor().min(u64::MAX as f64 / 2.0) as u64
    }
}

const ZIG_R: f64 = 3.442619855899;

struct Ziggurat {
    k: [u32; 128],
    w: [f64; 128],
    w32: [f32; 128],
    f: [f64; 128],
}

fn ziggurat() -> &'static Ziggurat {
    static TABLES: std::sync::OnceLock<Ziggurat> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let m1 = 2147483648.0f64;
        let v = 9.91256303526217e-3f64;
        let mut t = Ziggurat {
            k: [0; 128],
            w: [0.0; 128],
            w32: [0.0; 128],
            f: [0.0; 128],
        };
        let mut dn = ZIG_R;
        let mut tn = dn;
        let q = v / (-0.5 * dn * dn).exp();
        t.k[0] = ((dn / q) * m1) as u32;
        t.k[1] = 0;
        t.w[0] = q / m1;
        t.w[127] = dn / m1;
        t.f[0] = 1.0;
        t.f[127] = (-0.5 * dn * dn).exp();
        for i in (1..=126).rev() {
            dn = (-2.0 * (v / dn + (-0.5 * dn * dn).exp()).ln()).sqrt();
            t.k[i + 1] = ((dn / tn) * m1) as u32;
            tn = dn;
            t.f[i] = (-0.5 * dn * dn).exp();
            t.w[i] = dn / m1;
        }
        for i in 0..128 {
            t.w32[i] = t.w[i] as f32;
        }
        t
    })
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_tags_separate_streams() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::derive(0, &["noise", "a.png"]);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::derive(0, &["noise", "a.png"]);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::derive(0, &["noise", "b.png"]);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn draws_have_the_right_moments() {
        let mut r = Rng::new(7);
        let n = 200_000;
        let u: Vec<f64> = (0..n).map(|_| r.uniform()).collect();
        let mean = u.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
        let z: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let m = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
        assert!(m.abs() < 0.01 && (var - 1.0).abs() < 0.02, "{m} {var}");
        // The ziggurat: moments and tails of a standard normal.
        let z: Vec<f64> = (0..n).map(|_| r.normal_fast()).collect();
        let m = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
        let beyond = |t: f64| z.iter().filter(|x| x.abs() > t).count() as f64 / n as f64;
        assert!(m.abs() < 0.01 && (var - 1.0).abs() < 0.02, "{m} {var}");
        assert!((beyond(1.0) - 0.3173).abs() < 0.005, "{}", beyond(1.0));
        assert!((beyond(2.0) - 0.0455).abs() < 0.002, "{}", beyond(2.0));
        assert!((beyond(3.0) - 0.0027).abs() < 0.0006, "{}", beyond(3.0));
        assert!(beyond(3.6) > 0.0, "the tail beyond R is sampled");
        let mut z = vec![0f32; n];
        r.fill_normal(&mut z);
        let m = z.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let var = z
            .iter()
            .map(|&x| (x as f64 - m) * (x as f64 - m))
            .sum::<f64>()
            / n as f64;
        let beyond = |t: f32| z.iter().filter(|x| x.abs() > t).count() as f64 / n as f64;
        assert!(m.abs() < 0.01 && (var - 1.0).abs() < 0.02, "{m} {var}");
        assert!((beyond(2.0) - 0.0455).abs() < 0.0015, "{}", beyond(2.0));
        assert!((beyond(3.0) - 0.0027).abs() < 0.0004, "{}", beyond(3.0));
        // Geometric gaps have mean (1 - p) / p.
        let gaps: Vec<u64> = (0..50_000).map(|_| r.geometric(0.01)).collect();
        let mean = gaps.iter().sum::<u64>() as f64 / gaps.len() as f64;
        assert!((mean - 99.0).abs() < 3.0, "{mean}");
        let ints: Vec<i64> = (0..10_000).map(|_| r.int(7, 9)).collect();
        assert!(ints.iter().all(|&i| (7..=9).contains(&i)));
        assert!([7, 8, 9].iter().all(|v| ints.contains(v)));
    }
}
