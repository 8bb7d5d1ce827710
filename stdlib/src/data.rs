//! Data sets: clean training images cut into random paired crops on the fly, and test sets
//! written once per task as inspectable PNGs and reused.
//!
//! A training crop is taken with a margin, degraded, and cut to the patch from its centre (so
//! blur, rain and bicubic see image context, not the crop's edge), then flipped and rotated
//! together with its clean twin, as the reference degrades first and augments pairs after.
//! Every crop draws from a generator derived from (seed, stage, step, index in the batch), so a
//! batch is the same whatever the number of threads and whichever batch was drawn before.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::degrade::{depth_file, rng_for, Degradation};
use crate::image::{load_for_patch, Image, ImageError};
use crate::rng::Rng;

/// A task as the data side needs it: its index among the model's tasks (the prompt and
/// classifier label), its name, the degradation and that degradation's canonical text (which
/// seeds its draws, so changing a parameter changes the draws).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskSpec {
    pub id: usize,
    pub name: String,
    pub degradation: Degradation,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    pub flip: bool,
    pub rot90: bool,
}

/// Clean training images in memory.
pub struct TrainSet {
    pub images: Vec<(String, Image, Option<Vec<f32>>)>,
    pub patch: usize,
    pub augment: Augment,
}

/// A batch of paired crops: degraded (`lq`) and clean (`gt`), and each crop's task id.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub lq: Vec<Image>,
    pub gt: Vec<Image>,
    pub task: Vec<usize>,
}

/// Extra context around a crop when degrading it: a multiple of 4, so a x4 bicubic sees
/// whole low-resolution pixels.
const MARGIN: usize = 16;

impl TrainSet {
    /// Loads every image of `dir` (at most `limit`, 0 for all; see [`TrainSet::from_files`] for
    /// a list). Returns the notes of the conversions made (grey to RGB, ...).
    pub fn load(
        dir: &Path,
        patch: usize,
        augment: Augment,
        limit: usize,
    ) -> Result<(TrainSet, Vec<String>), ImageError> {
        let mut files = crate::image::list_folder(dir)?;
        if limit > 0 {
            files.truncate(limit);
        }
        if files.is_empty() {
            return Err(ImageError::new(
                dir,
                crate::image::ErrorKind::Corrupt("no PNG or JPEG images in the folder".into()),
            ));
        }
        Self::from_files(&files, patch, augment)
    }

    /// Loads the listed images; each must hold a patch.
    pub fn from_files(
        files: &[PathBuf],
        patch: usize,
        augment: Augment,
    ) -> Result<(TrainSet, Vec<String>), ImageError> {
        let loaded: Vec<Result<_, ImageError>> = files
            .par_iter()
            .map(|p| {
                let l = load_for_patch(p, patch)?;
                let depth = depth_file(p, l.image.width, l.image.height)?;
                Ok((name_of(p), l.image, depth, l.notes))
            })
            .collect();
        let mut images = vec![];
        let mut notes = vec![];
        for r in loaded {
            let (name, img, depth, n) = r?;
            notes.extend(n);
            images.push((name, img, depth));
        }
        Ok((
            TrainSet {
                images,
                patch,
                augment,
            },
            notes,
        ))
    }

    /// The batch for `step` of `stage`: `size` crops, each from a random image with a task drawn
    /// uniformly from `tasks`.
    pub fn batch(
        &self,
        tasks: &[TaskSpec],
        seed: u64,
        stage: usize,
        step: u64,
        size: usize,
    ) -> Batch {
        assert!(!tasks.is_empty(), "a batch needs at least one task");
        let crops: Vec<(Image, Image, usize)> = (0..size)
            .into_par_iter()
            .map(|i| {
                let mut rng = Rng::derive(
                    seed,
                    &[
                        "train",
                        &stage.to_string(),
                        &step.to_string(),
                        &i.to_string(),
                    ],
                );
                self.crop(tasks, &mut rng)
            })
            .collect();
        let mut b = Batch {
            lq: vec![],
            gt: vec![],
            task: vec![],
        };
        for (lq, gt, t) in crops {
            b.lq.push(lq);
            b.gt.push(gt);
            b.task.push(t);
        }
        b
    }

    fn crop(&self, tasks: &[TaskSpec], rng: &mut Rng) -> (Image, Image, usize) {
        let (_, img, depth) = &self.images[rng.int(0, self.images.len() as i64 - 1) as usize];
        let task = &tasks[rng.int(0, tasks.len() as i64 - 1) as usize];
        let p = self.patch;
        // Top-left of the patch, then the context window around it (clipped to the image).
        let x = rng.int(0, (img.width - p) as i64) as usize;
        let y = rng.int(0, (img.height - p) as i64) as usize;
        let (cx0, cy0) = (x.saturating_sub(MARGIN), y.saturating_sub(MARGIN));
        let (cx1, cy1) = (
            (x + p + MARGIN).min(img.width),
            (y + p + MARGIN).min(img.height),
        );
        let context = img.crop(cx0, cy0, cx1 - cx0, cy1 - cy0);
        let context_depth = depth.as_ref().map(|d| {
            let mut out = Vec::with_capacity((cx1 - cx0) * (cy1 - cy0));
            for row in cy0..cy1 {
                out.extend_from_slice(&d[row * img.width + cx0..row * img.width + cx1]);
            }
            out
        });
        let (degraded, _) = task
            .degradation
            .apply(&context, rng, context_depth.as_deref());
        let mut lq = degraded.crop(x - cx0, y - cy0, p, p);
        let mut gt = img.crop(x, y, p, p);
        if self.augment.flip && rng.uniform() < 0.5 {
            lq = flip_h(&lq);
            gt = flip_h(&gt);
        }
        if self.augment.rot90 {
            let k = rng.int(0, 3) as usize;
            lq = rot90(&lq, k);
            gt = rot90(&gt, k);
        }
        (lq, gt, task.id)
    }
}

impl Batch {
    /// The batch as `[B, 3, P, P]` f32 tensors in [0, 1] (lq, gt) and a `[B]` u32 tensor of
    /// task ids.
    pub fn to_tensors(
        &self,
        device: &candle_core::Device,
    ) -> candle_core::Result<(
        candle_core::Tensor,
        candle_core::Tensor,
        candle_core::Tensor,
    )> {
        let to = |imgs: &[Image]| -> candle_core::Result<candle_core::Tensor> {
            let (b, h, w) = (imgs.len(), imgs[0].height, imgs[0].width);
            let mut v = Vec::with_capacity(b * 3 * h * w);
            for img in imgs {
                for c in 0..3 {
                    v.extend(
                        img.data
                            .iter()
                            .skip(c)
                            .step_by(3)
                            .map(|&x| x as f32 / 255.0),
                    );
                }
            }
            candle_core::Tensor::from_vec(v, (b, 3, h, w), device)
        };
        let ids: Vec<u32> = self.task.iter().map(|&t| t as u32).collect();
        Ok((
            to(&self.lq)?,
            to(&self.gt)?,
            candle_core::Tensor::from_vec(ids, self.task.len(), device)?,
        ))
    }
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn flip_h(img: &Image) -> Image {
    let mut out = Image::new(img.width, img.height);
    for y in 0..img.height {
        for x in 0..img.width {
            let (s, d) = (
                (y * img.width + x) * 3,
                (y * img.width + img.width - 1 - x) * 3,
            );
            out.data[d..d + 3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    out
}

/// Rotated by `k` quarter turns counter-clockwise.
pub fn rot90(img: &Image, k: usize) -> Image {
    let mut cur = img.clone();
    for _ in 0..k % 4 {
        let (w, h) = (cur.width, cur.height);
        let mut out = Image::new(h, w);
        for y in 0..h {
            for x in 0..w {
                // (x, y) -> (y, w - 1 - x)
                let (s, d) = ((y * w + x) * 3, ((w - 1 - x) * h + y) * 3);
                out.data[d..d + 3].copy_from_slice(&cur.data[s..s + 3]);
            }
        }
        cur = out;
    }
    cur
}

/// One degraded test image.
#[derive(Clone, Debug)]
pub struct TestPair {
    pub clean: PathBuf,
    pub degraded: PathBuf,
    /// The parameters drawn for it.
    pub params: Vec<(String, f64)>,
    /// Whether it was made now (false: an earlier run's file was reused).
    pub made: bool,
}

/// BLAKE3 over the parts (each followed by its length, so `["ab", "c"]` and `["a", "bc"]`
/// differ), printed as 32 hex digits: stable names for cached files and content keys.
pub fn content_key(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p);
        h.update(&(p.len() as u64).to_le_bytes());
    }
    h.finalize().to_hex()[..32].to_string()
}

/// The content key of a file's name and bytes, read in blocks (a weights file of gigabytes is
/// never held in memory); as [`content_key`] of `[name, bytes]`.
pub fn file_key(path: &Path) -> std::io::Result<String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut h = blake3::Hasher::new();
    h.update(name.as_bytes());
    h.update(&(name.len() as u64).to_le_bytes());
    let mut f = std::fs::File::open(path)?;
    let n = std::io::copy(&mut f, &mut h)?;
    h.update(&n.to_le_bytes());
    Ok(h.finalize().to_hex()[..32].to_string())
}

/// Writes `task`'s degraded copy of each clean image into `dir` once: the file name holds a key
/// of the image's bytes, the degradation's text and the seed, so an existing file is reused and
/// a changed image or parameter makes a new one. Images are degraded in parallel; the drawn
/// parameters go into a `.params` file beside each PNG.
pub fn build_test_set(
    clean: &[PathBuf],
    task: &TaskSpec,
    seed: u64,
    dir: &Path,
) -> Result<Vec<TestPair>, ImageError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ImageError::new(dir, crate::image::ErrorKind::Write(e.to_string())))?;
    clean
        .par_iter()
        .map(|path| {
            let bytes = std::fs::read(path).map_err(|e| crate::image::read_error(path, e))?;
            let key = content_key(&[&bytes, task.text.as_bytes(), &seed.to_le_bytes()]);
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let out = dir.join(format!("{stem}.{}.{}.png", task.name, &key[..12]));
            let params_file = out.with_extension("params");
            if out.exists() && params_file.exists() {
                let params = read_params(&params_file);
                return Ok(TestPair {
                    clean: path.clone(),
                    degraded: out,
                    params,
                    made: false,
                });
            }
            let img = crate::image::decode(path, &bytes)?.image;
            let depth = depth_file(path, img.width, img.height)?;
            let mut rng = rng_for(seed, &task.text, &name_of(path));
            let (degraded, drawn) = task.degradation.apply(&img, &mut rng, depth.as_deref());
            // The parameters first, the image last: an image without its parameters is remade.
            let text: String = drawn.iter().map(|(n, v)| format!("{n} = {v}\n")).collect();
            write_atomic(&params_file, text.as_bytes()).map_err(|e| {
                ImageError::new(&params_file, crate::image::ErrorKind::Write(e.to_string()))
            })?;
            degraded.save_png(&out)?;
            let params = drawn.iter().map(|(n, v)| (n.to_string(), *v)).collect();
            Ok(TestPair {
                clean: path.clone(),
                degraded: out,
                params,
                made: true,
            })
        })
        .collect()
}

fn read_params(p: &Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(" = ")?;
            Some((n.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Writes through a temporary file and a rename: a reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::fsio::write_atomic(path, bytes)
}
