//! The task classifier's training data. A classifier reads a whole degraded image at test
//! time, so it learns from crops cut out of larger regions degraded as a whole (haze's depth
//! and rain's streak field span the region, not the crop), and since a few training images
//! are all the content it sees, each region is also rescaled (zoomed out or in), recoloured
//! (channels swapped, or grey) and re-exposed (a tone curve) before it is degraded: the
//! degradations keep their labels, the content and its brightness no longer give the task
//! away. Regions are drawn in rounds: `count` of them, each from a random image and the tasks
//! in turn, rebuilt every round from a generator of its own.

use rayon::prelude::*;

use crate::data::{flip_h, rot90, Augment, Batch, TaskSpec, TrainSet};
use crate::image::Image;
use crate::resize::{resize_image, resize_to, Kernel};
use crate::rng::Rng;

/// What is done to a region's clean image before it is degraded.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RegionAugment {
    /// Rescale by a factor drawn log-uniformly from this range (1..1: never).
    pub scale: (f64, f64),
    /// Swap the colour channels at random, or (a quarter of the time) make the region grey.
    pub colour: bool,
    /// Re-expose the region: a tone curve `v^g` with `g` drawn log-uniformly from this range
    /// (1..1: never), so an image's own brightness stops giving a task away (a dark photo
    /// is not low light).
    #[serde(default = "no_exposure")]
    pub exposure: (f64, f64),
}

fn no_exposure() -> (f64, f64) {
    (1.0, 1.0)
}

/// Degraded regions and their task ids.
pub struct RegionPool {
    pub regions: Vec<(Image, usize)>,
}

/// Steps of a classifier's training between two rounds of regions.
pub const ROUND_STEPS: u64 = 1000;
/// Pixels of the regions degraded at a time (about 100 MB).
const ROUND_PIXELS: usize = 32 << 20;

impl RegionPool {
    /// The regions of `round` for crops of side `patch`: each four crops wide (at most 384
    /// pixels, at least the crop), as many as fit the pixel budget (between 64 and 1,024).
    pub fn for_crops(
        set: &TrainSet,
        tasks: &[TaskSpec],
        seed: u64,
        round: u64,
        patch: usize,
        augment: RegionAugment,
    ) -> RegionPool {
        let side = (4 * patch).min(384).max(patch);
        let count = (ROUND_PIXELS / side.pow(2)).clamp(64, 1024);
        Self::build(set, tasks, seed, round, count, side, patch, augment)
    }

    /// `count` regions of side `side` (before rescaling; the image's own when it is smaller),
    /// for round `round`: each an image drawn at random, the tasks taken in turn.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        set: &TrainSet,
        tasks: &[TaskSpec],
        seed: u64,
        round: u64,
        count: usize,
        side: usize,
        min_side: usize,
        augment: RegionAugment,
    ) -> RegionPool {
        assert!(!tasks.is_empty(), "regions need at least one task");
        let regions = (0..count)
            .into_par_iter()
            .map(|i| {
                let mut rng = Rng::derive(seed, &["region", &round.to_string(), &i.to_string()]);
                let (_, img, depth) = &set.images[rng.int(0, set.images.len() as i64 - 1) as usize];
                let task = &tasks[i % tasks.len()];
                let f = log_uniform(augment.scale, &mut rng);
                // The window in the image that becomes the region: `side / f` wide, so that
                // zooming in or out gives about `side` pixels, and at least `min_side` after it.
                let want = |len: usize| {
                    ((side as f64 / f).round() as usize)
                        .max((min_side as f64 / f).ceil() as usize)
                        .min(len)
                };
                let (ww, wh) = (want(img.width), want(img.height));
                let x = rng.int(0, (img.width - ww) as i64) as usize;
                let y = rng.int(0, (img.height - wh) as i64) as usize;
                let mut region = img.crop(x, y, ww, wh);
                let mut region_depth = depth.as_ref().map(|d| {
                    let mut out = Vec::with_capacity(ww * wh);
                    for row in y..y + wh {
                        out.extend_from_slice(&d[row * img.width + x..row * img.width + x + ww]);
                    }
                    out
                });
                let (ow, oh) = (
                    ((ww as f64 * f).round() as usize).max(min_side),
                    ((wh as f64 * f).round() as usize).max(min_side),
                );
                if (ow, oh) != (ww, wh) {
                    // MATLAB's kernel antialiases when shrinking.
                    let step = (ww as f64 / ow as f64, wh as f64 / oh as f64);
                    region = resize_image(&region, ow, oh, step, Kernel::Matlab);
                    region_depth =
                        region_depth.map(|d| resize_to(&d, ww, wh, 1, ow, oh, Kernel::Torch));
                }
                if augment.colour {
                    recolour(&mut region, &mut rng);
                }
                let g = log_uniform(augment.exposure, &mut rng);
                if g != 1.0 {
                    expose(&mut region, g);
                }
                let (lq, _) = task
                    .degradation
                    .apply(&region, &mut rng, region_depth.as_deref());
                (lq, task.id)
            })
            .collect();
        RegionPool { regions }
    }

    /// `size` crops of `patch` pixels for `step`, each from a region drawn at random, flipped
    /// and rotated as `augment` says. `gt` repeats `lq` (the classifier has no use for it).
    pub fn batch(
        &self,
        seed: u64,
        step: u64,
        size: usize,
        patch: usize,
        augment: Augment,
    ) -> Batch {
        let mut b = Batch {
            lq: vec![],
            gt: vec![],
            task: vec![],
        };
        for i in 0..size {
            let mut rng = Rng::derive(seed, &["crop", &step.to_string(), &i.to_string()]);
            let (img, task) = &self.regions[rng.int(0, self.regions.len() as i64 - 1) as usize];
            let p = patch.min(img.width).min(img.height);
            let x = rng.int(0, (img.width - p) as i64) as usize;
            let y = rng.int(0, (img.height - p) as i64) as usize;
            let mut c = img.crop(x, y, p, p);
            if augment.flip && rng.uniform() < 0.5 {
                c = flip_h(&c);
            }
            if augment.rot90 {
                c = rot90(&c, rng.int(0, 3) as usize);
            }
            b.lq.push(c);
            b.task.push(*task);
        }
        b.gt = b.lq.clone();
        b
    }
}

/// A factor drawn log-uniformly from `lo..hi` (`lo` when the range is empty).
fn log_uniform((lo, hi): (f64, f64), rng: &mut Rng) -> f64 {
    if hi > lo {
        (lo.ln() + rng.uniform() * (hi.ln() - lo.ln())).exp()
    } else {
        lo
    }
}

/// Applies the tone curve `v^g` (values in 0..1) to every channel.
fn expose(img: &mut Image, g: f64) {
    let table: Vec<u8> = (0..256)
        .map(|v| ((v as f64 / 255.0).powf(g) * 255.0).round() as u8)
        .collect();
    for v in img.data.iter_mut() {
        *v = table[*v as usize];
    }
}

/// Swaps the channels by a random permutation, or a quarter of the time makes the image grey
/// (BT.601 luma).
fn recolour(img: &mut Image, rng: &mut Rng) {
    const ORDERS: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    if rng.uniform() < 0.25 {
        for px in img.data.chunks_exact_mut(3) {
            let g = (px[0] as u32 * 299 + px[1] as u32 * 587 + px[2] as u32 * 114 + 500) / 1000;
            px.fill(g as u8);
        }
    } else {
        let order = ORDERS[rng.int(0, 5) as usize];
        for px in img.data.chunks_exact_mut(3) {
            let v = [px[0], px[1], px[2]];
            for (k, &o) in order.iter().enumerate() {
                px[k] = v[o];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::degrade::{Degradation, Sampled};

    fn set() -> TrainSet {
        let mut img = Image::new(120, 90);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = ((i * 7) % 251) as u8;
        }
        TrainSet {
            images: vec![("a.png".into(), img, None)],
            patch: 16,
            augment: Augment {
                flip: true,
                rot90: true,
            },
        }
    }

    fn tasks() -> Vec<TaskSpec> {
        ["noise", "lowlight"]
            .iter()
            .enumerate()
            .map(|(id, k)| TaskSpec {
                id,
                name: k.to_string(),
                degradation: match *k {
                    "noise" => Degradation::Noise {
                        sigma: Sampled::Fixed(30.0),
                    },
                    _ => Degradation::Lowlight {
                        gamma: Sampled::Fixed(3.0),
                    },
                },
                text: k.to_string(),
            })
            .collect()
    }

    #[test]
    fn regions_take_the_tasks_in_turn_and_are_the_same_from_the_same_seed() {
        let aug = RegionAugment {
            scale: (0.5, 2.0),
            colour: true,
            exposure: (1.0, 1.0),
        };
        let a = RegionPool::build(&set(), &tasks(), 1, 0, 6, 64, 16, aug);
        let b = RegionPool::build(&set(), &tasks(), 1, 0, 6, 64, 16, aug);
        let c = RegionPool::build(&set(), &tasks(), 1, 1, 6, 64, 16, aug);
        let ids: Vec<usize> = a.regions.iter().map(|r| r.1).collect();
        assert_eq!(ids, [0, 1, 0, 1, 0, 1]);
        assert!(a.regions.iter().zip(&b.regions).all(|(x, y)| x.0 == y.0));
        assert!(
            a.regions.iter().zip(&c.regions).any(|(x, y)| x.0 != y.0),
            "another round"
        );
        for (img, _) in &a.regions {
            // About `side` pixels after rescaling, never below `min_side`, never past the
            // image (a zoom-in window of an image smaller than `side / f` stays its size).
            assert!(img.width >= 16 && img.height >= 16);
            assert!(
                img.width <= 240 && img.height <= 180,
                "{}x{}",
                img.width,
                img.height
            );
        }
        // Low light darkens its regions; noise leaves them about as bright.
        let mean = |i: &Image| i.data.iter().map(|&v| v as f64).sum::<f64>() / i.data.len() as f64;
        let (dark, noisy): (Vec<_>, Vec<_>) = a.regions.iter().partition(|r| r.1 == 1);
        let (d, n) = (
            dark.iter().map(|r| mean(&r.0)).sum::<f64>() / 3.0,
            noisy.iter().map(|r| mean(&r.0)).sum::<f64>() / 3.0,
        );
        assert!(d < n * 0.6, "low light {d:.1} against noise {n:.1}");
    }

    #[test]
    fn exposure_brightens_or_darkens_the_region_before_it_is_degraded() {
        let mean = |p: &RegionPool| {
            p.regions
                .iter()
                .map(|r| r.0.data.iter().map(|&v| v as f64).sum::<f64>() / r.0.data.len() as f64)
                .sum::<f64>()
        };
        let noise = &tasks()[..1];
        let pool = |exposure| {
            let aug = RegionAugment {
                scale: (1.0, 1.0),
                colour: false,
                exposure,
            };
            RegionPool::build(&set(), noise, 3, 0, 4, 48, 16, aug)
        };
        let (plain, bright, dark) = (pool((1.0, 1.0)), pool((0.5, 0.5)), pool((2.0, 2.0)));
        assert!(
            mean(&bright) > mean(&plain) * 1.2,
            "{} {}",
            mean(&bright),
            mean(&plain)
        );
        assert!(
            mean(&dark) < mean(&plain) * 0.8,
            "{} {}",
            mean(&dark),
            mean(&plain)
        );
        // The same draws otherwise: the same windows, and a drawn exponent is reproducible.
        let ranged = |s| {
            let aug = RegionAugment {
                scale: (1.0, 1.0),
                colour: false,
                exposure: (0.75, 1.35),
            };
            RegionPool::build(&set(), noise, s, 0, 4, 48, 16, aug)
        };
        assert!(ranged(3)
            .regions
            .iter()
            .zip(&ranged(3).regions)
            .all(|(a, b)| a.0 == b.0));
    }

    #[test]
    fn crops_are_cut_from_the_regions_with_their_labels() {
        let aug = RegionAugment {
            scale: (1.0, 1.0),
            colour: false,
            exposure: (1.0, 1.0),
        };
        let pool = RegionPool::build(&set(), &tasks(), 2, 0, 4, 48, 16, aug);
        let b = pool.batch(
            2,
            5,
            8,
            16,
            Augment {
                flip: false,
                rot90: false,
            },
        );
        assert_eq!(b.lq.len(), 8);
        for (crop, t) in b.lq.iter().zip(&b.task) {
            assert_eq!((crop.width, crop.height), (16, 16));
            // The crop is a piece of a region of its task.
            let found = pool.regions.iter().filter(|r| r.1 == *t).any(|(r, _)| {
                (0..=r.height - 16)
                    .any(|y| (0..=r.width - 16).any(|x| r.crop(x, y, 16, 16) == *crop))
            });
            assert!(found, "a crop of task {t} not in that task's regions");
        }
        assert_eq!(
            pool.batch(
                2,
                5,
                8,
                16,
                Augment {
                    flip: true,
                    rot90: true
                }
            )
            .lq
            .len(),
            8
        );
    }
}
