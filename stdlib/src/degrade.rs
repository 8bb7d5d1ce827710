//! The seven degradations of multiple-in-one restoration (MIOIR.md), each a pure function of
//! (image, parameters, seed). Parameters given as ranges are drawn per image from a generator
//! derived from the seed and the image's name, so the same seed gives the same bytes whatever
//! the number of threads. Every step ends re-quantised to 8 bits.

use crate::image::{quantize, Image};
use crate::resize::{self, Kernel};
use crate::rng::Rng;
use crate::simd::axpy;

/// The generator for degrading one image: derived from the seed, the degradation's canonical
/// text (so different parameters draw differently) and the image's file name (so images draw
/// independently and in any order).
pub fn rng_for(seed: u64, degradation: &str, image_name: &str) -> Rng {
    Rng::derive(seed, &[degradation, image_name])
}

/// A parameter: a fixed value or a range `lo..hi` drawn uniformly per image.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Sampled {
    Fixed(f64),
    Range(f64, f64),
}

impl Sampled {
    pub fn draw(&self, rng: &mut Rng) -> f64 {
        match *self {
            Sampled::Fixed(v) => v,
            Sampled::Range(lo, hi) => rng.range(lo, hi),
        }
    }
    /// An integer, both ends of a range included.
    pub fn draw_int(&self, rng: &mut Rng) -> i64 {
        match *self {
            Sampled::Fixed(v) => v.round() as i64,
            Sampled::Range(lo, hi) => rng.int(lo.round() as i64, hi.round() as i64),
        }
    }
}

/// A degradation with its parameters, as a `.mio` task declares it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Degradation {
    /// Bicubic down by `scale`, then back up to the original size.
    Sr { scale: u32, kernel: Kernel },
    /// Isotropic Gaussian blur; `size` is drawn odd.
    Blur { sigma: Sampled, size: Sampled },
    /// Additive colour Gaussian noise, sigma on the 0..255 scale (rounded after drawing).
    Noise { sigma: Sampled },
    /// Baseline JPEG at the drawn quality.
    Jpeg { quality: Sampled },
    /// Synthetic rain streaks.
    Rain {
        value: Sampled,
        length: Sampled,
        angle: Sampled,
        width: Sampled,
    },
    /// Atmospheric scattering with a depth map.
    Haze { a: Sampled, beta: Sampled },
    /// Gamma darkening.
    Lowlight { gamma: Sampled },
    /// A composite ("unknown") degradation: its steps applied one after the other, each with a
    /// generator of its own derived from the image's and the step's place in the chain.
    Chain(Vec<Degradation>),
}

/// A catalog default (`1.0..3.0`, `7..21`, `-45deg..45deg`, `4`, `bicubic`) as an argument.
fn default_arg(text: &str) -> Option<Arg> {
    let number = |t: &str| -> Option<f64> {
        t.trim()
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .parse()
            .ok()
    };
    if let Some((lo, hi)) = text.split_once("..") {
        return Some(Arg::Num(Sampled::Range(number(lo)?, number(hi)?)));
    }
    match number(text) {
        Some(v) => Some(Arg::Num(Sampled::Fixed(v))),
        None if text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Some(Arg::Word(text.to_string()))
        }
        None => None,
    }
}

/// An argument of a degradation call, as the checker resolved it.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Num(Sampled),
    Word(String),
}

impl Degradation {
    /// The degradation named `name` with the given arguments (every parameter present: the
    /// checker fills in defaults). The error names what is missing or wrong.
    pub fn from_args(name: &str, args: &[(String, Arg)]) -> Result<Degradation, String> {
        let num = |p: &str| -> Result<Sampled, String> {
            match args.iter().find(|(n, _)| n == p) {
                Some((_, Arg::Num(s))) => Ok(*s),
                Some(_) => Err(format!("`{name}`: `{p}` must be a number or a range")),
                None => Err(format!("`{name}`: `{p}` is missing")),
            }
        };
        Ok(match name {
            "sr" => {
                let kernel = match args.iter().find(|(n, _)| n == "kernel") {
                    Some((_, Arg::Word(w))) if w == "matlab" => Kernel::Matlab,
                    _ => Kernel::Torch,
                };
                let scale = match num("scale")? {
                    Sampled::Fixed(v) => v as u32,
                    Sampled::Range(..) => return Err("`sr`: `scale` must be one number".into()),
                };
                Degradation::Sr { scale, kernel }
            }
            "blur" => Degradation::Blur {
                sigma: num("sigma")?,
                size: num("size")?,
            },
            "noise" => Degradation::Noise {
                sigma: num("sigma")?,
            },
            "jpeg" => Degradation::Jpeg {
                quality: num("quality")?,
            },
            "rain" => Degradation::Rain {
                value: num("value")?,
                length: num("length")?,
                angle: num("angle")?,
                width: num("width")?,
            },
            "haze" => Degradation::Haze {
                a: num("a")?,
                beta: num("beta")?,
            },
            "lowlight" => Degradation::Lowlight {
                gamma: num("gamma")?,
            },
            other => return Err(format!("no degradation `{other}`")),
        })
    }

    /// The paper's in-distribution task of this key (`sr`, `blur`, ...), for tools and tests:
    /// the degradation with the catalog's defaults, which are the paper's ranges (the one
    /// place they are written; a test holds the `paper` prelude's tasks equal to them).
    pub fn paper(key: &str) -> Option<Degradation> {
        use mio_catalog::{builtins, Default, Kind};
        let b = builtins::lookup(Kind::Degradation, key)?;
        let args = b
            .params
            .iter()
            .map(|p| match p.default {
                Default::Value(text) => Some((p.name.to_string(), default_arg(text)?)),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Degradation::from_args(key, &args).ok()
    }

    /// The degradation's kind: its built-in's name (`noise`), or for a composite its steps'
    /// names in order (`blur then sr then noise`), as the language writes it.
    pub fn key(&self) -> String {
        match self {
            Degradation::Sr { .. } => "sr".into(),
            Degradation::Blur { .. } => "blur".into(),
            Degradation::Noise { .. } => "noise".into(),
            Degradation::Jpeg { .. } => "jpeg".into(),
            Degradation::Rain { .. } => "rain".into(),
            Degradation::Haze { .. } => "haze".into(),
            Degradation::Lowlight { .. } => "lowlight".into(),
            Degradation::Chain(steps) => steps
                .iter()
                .map(Degradation::key)
                .collect::<Vec<_>>()
                .join(" then "),
        }
    }

    /// The steps a composite applies in order; a single degradation is its own one step.
    pub fn steps(&self) -> &[Degradation] {
        match self {
            Degradation::Chain(steps) => steps,
            one => std::slice::from_ref(one),
        }
    }

    /// Degrades `img`. `rng` should be derived for this image (see [`Rng::derive`]); `depth`
    /// (haze only) is a depth map in [0, 1] of the image's size, else the synthetic prior is used.
    /// Returns the image and the parameters drawn (a composite's in step order).
    pub fn apply(
        &self,
        img: &Image,
        rng: &mut Rng,
        depth: Option<&[f32]>,
    ) -> (Image, Vec<(&'static str, f64)>) {
        match *self {
            Degradation::Chain(ref steps) => {
                // One seed for the chain from the image's generator, then one generator per
                // step: a step draws the same whatever the steps before it drew.
                let base = rng.next_u64();
                let mut out = img.clone();
                let mut drawn = vec![];
                for (i, step) in steps.iter().enumerate() {
                    let mut r = Rng::derive(base, &["step", &i.to_string()]);
                    let (next, d) = step.apply(&out, &mut r, depth);
                    out = next;
                    drawn.extend(d);
                }
                (out, drawn)
            }
            Degradation::Sr { scale, kernel } => (
                super_resolution(img, scale, kernel),
                vec![("scale", scale as f64)],
            ),
            Degradation::Blur { sigma, size } => {
                let s = sigma.draw(rng);
                let k = odd_size(size, rng);
                (
                    gaussian_blur(img, s, k),
                    vec![("sigma", s), ("size", k as f64)],
                )
            }
            Degradation::Noise { sigma } => {
                let s = sigma.draw(rng).round();
                (add_noise(img, s / 255.0, rng), vec![("sigma", s)])
            }
            Degradation::Jpeg { quality } => {
                let q = quality.draw(rng).round().clamp(1.0, 100.0) as u8;
                (jpeg(img, q), vec![("quality", q as f64)])
            }
            Degradation::Rain {
                value,
                length,
                angle,
                width,
            } => {
                let v = value.draw_int(rng).max(1);
                let w = odd_size(width, rng);
                let l = length.draw_int(rng).max(1) as usize;
                let a = angle.draw(rng);
                let out = rain(img, v as f64, l, a, w, rng);
                (
                    out,
                    vec![
                        ("value", v as f64),
                        ("length", l as f64),
                        ("angle", a),
                        ("width", w as f64),
                    ],
                )
            }
            Degradation::Haze { a, beta } => {
                let av = a.draw(rng);
                let b = beta.draw(rng);
                let prior;
                let d = match depth {
                    Some(d) => d,
                    None => {
                        prior = depth_prior(img.width, img.height, rng);
                        &prior
                    }
                };
                (haze(img, d, av, b), vec![("a", av), ("beta", b)])
            }
            Degradation::Lowlight { gamma } => {
                let g = gamma.draw(rng);
                (map_values(img, |v| v.powf(g as f32)), vec![("gamma", g)])
            }
        }
    }
}

/// An odd kernel size drawn from the range (even draws step up by one, within the range).
fn odd_size(size: Sampled, rng: &mut Rng) -> usize {
    match size {
        Sampled::Fixed(v) => (v.round() as usize) | 1,
        Sampled::Range(lo, hi) => {
            let (lo, hi) = (lo.round() as i64, hi.round() as i64);
            let first = lo | 1;
            let count = ((hi - first).max(0) / 2) + 1;
            (first + 2 * rng.int(0, count - 1)) as usize
        }
    }
}

fn map_values(img: &Image, f: impl Fn(f32) -> f32) -> Image {
    let lut: Vec<u8> = (0..256).map(|v| quantize(f(v as f32 / 255.0))).collect();
    Image {
        width: img.width,
        height: img.height,
        data: img.data.iter().map(|&v| lut[v as usize]).collect(),
    }
}

/// Bicubic down by `scale` and back up, each step re-quantised.
pub fn super_resolution(img: &Image, scale: u32, kernel: Kernel) -> Image {
    let (w, h) = (img.width, img.height);
    let f = 1.0 / scale as f64;
    // A side shorter than the scale shrinks to one pixel (sampled across the whole side), so
    // images of any size go through.
    let side = |n: usize| ((n as f64 * f).floor() as usize).max(1);
    let (sw, sh) = (side(w), side(h));
    let step = |n: usize, s: usize| {
        if n < scale as usize {
            n as f64 / s as f64
        } else {
            scale as f64
        }
    };
    let small = resize::resize_image(img, sw, sh, (step(w, sw), step(h, sh)), kernel);
    resize::resize_image(
        &small,
        w,
        h,
        (sw as f64 / w as f64, sh as f64 / h as f64),
        kernel,
    )
}

/// Reflect-101 index (`dcb|abcd|cba`), as OpenCV's default border and numpy's `reflect`.
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut i = i.rem_euclid(period);
    if i >= n {
        i = period - i;
    }
    i as usize
}

/// A normalised 1-D Gaussian of odd `size`.
fn gaussian_kernel(sigma: f64, size: usize) -> Vec<f32> {
    let r = (size / 2) as i64;
    let w: Vec<f64> = (-r..=r)
        .map(|x| (-((x * x) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = w.iter().sum();
    w.iter().map(|v| (v / s) as f32).collect()
}

/// Separable convolution of interleaved `channels`-channel data with reflect-101 borders.
/// Each pass is a sum of shifted copies (one per tap) of a padded row or of whole rows, which
/// the compiler vectorises. `emit` receives each finished output row.
fn convolve_separable_rows(
    (w, h, channels): (usize, usize, usize),
    k: &[f32],
    read: impl Fn(usize, &mut [f32]),
    mut emit: impl FnMut(usize, &[f32]),
) {
    let r = k.len() / 2;
    let stride = w * channels;
    let mut padded = vec![0f32; (w + 2 * r) * channels];
    let mut mid = vec![0f32; h * stride];
    for y in 0..h {
        read(y, &mut padded[r * channels..(r + w) * channels]);
        for px in (0..r).chain(r + w..w + 2 * r) {
            let sx = reflect(px as i64 - r as i64, w);
            padded.copy_within((sx + r) * channels..(sx + r + 1) * channels, px * channels);
        }
        let out = &mut mid[y * stride..(y + 1) * stride];
        for (t, &kv) in k.iter().enumerate() {
            axpy(out, &padded[t * channels..t * channels + stride], kv);
        }
    }
    let mut dst = vec![0f32; stride];
    for y in 0..h {
        dst.fill(0.0);
        for (t, &kv) in k.iter().enumerate() {
            let sy = reflect(y as i64 + t as i64 - r as i64, h);
            axpy(&mut dst, &mid[sy * stride..(sy + 1) * stride], kv);
        }
        emit(y, &dst);
    }
}

fn convolve_separable(data: &[f32], w: usize, h: usize, channels: usize, k: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    let stride = w * channels;
    convolve_separable_rows(
        (w, h, channels),
        k,
        |y, row| row.copy_from_slice(&data[y * stride..(y + 1) * stride]),
        |y, row| out[y * stride..(y + 1) * stride].copy_from_slice(row),
    );
    out
}

pub fn gaussian_blur(img: &Image, sigma: f64, size: usize) -> Image {
    let k = gaussian_kernel(sigma, size);
    let mut out = Image::new(img.width, img.height);
    let stride = img.width * 3;
    convolve_separable_rows(
        (img.width, img.height, 3),
        &k,
        |y, row| {
            for (d, &v) in row.iter_mut().zip(&img.data[y * stride..(y + 1) * stride]) {
                *d = v as f32 * (1.0 / 255.0);
            }
        },
        |y, row| crate::image::quantize_into(row, &mut out.data[y * stride..(y + 1) * stride]),
    );
    out
}

/// Adds N(0, sigma) to every channel of every pixel (sigma on the 0..1 scale), clipped.
pub fn add_noise(img: &Image, sigma: f64, rng: &mut Rng) -> Image {
    // Draw every deviate first (scalar), then add and quantise in a pass that vectorises.
    let s = sigma as f32;
    let mut noisy = vec![0f32; img.data.len()];
    rng.fill_normal(&mut noisy);
    for (n, &v) in noisy.iter_mut().zip(&img.data) {
        *n = v as f32 * (1.0 / 255.0) + s * *n;
    }
    Image::from_f32(img.width, img.height, &noisy)
}

/// Encodes as baseline JPEG the way libjpeg does by default (4:2:0 chroma, box-averaged).
fn jpeg_bytes(img: &Image, quality: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut bytes, quality);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    enc.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
    enc.encode(
        &img.data,
        img.width as u16,
        img.height as u16,
        jpeg_encoder::ColorType::Rgb,
    )
    .expect("encoding an in-memory RGB image cannot fail");
    bytes
}

/// JPEG compression at `quality`: encoded as libjpeg would and decoded again.
pub fn jpeg(img: &Image, quality: u8) -> Image {
    let decoded =
        image::load_from_memory_with_format(&jpeg_bytes(img, quality), image::ImageFormat::Jpeg)
            .expect("decoding what we just encoded cannot fail")
            .into_rgb8();
    Image {
        width: img.width,
        height: img.height,
        data: decoded.into_raw(),
    }
}

/// The size in bytes of the JPEG [`jpeg`] makes (for comparing with other encoders).
pub fn jpeg_size(img: &Image, quality: u8) -> usize {
    jpeg_bytes(img, quality).len()
}

/// The motion kernel of a streak: a diagonal line of `length` pixels rotated by `angle - 45`
/// degrees and shrunk by `1 - length / 100` about its centre (as OpenCV's
/// `getRotationMatrix2D` + `warpAffine` of an identity matrix in the reference), sampled
/// bilinearly, then Gaussian-blurred across `width` pixels.
fn streak_kernel(length: usize, angle: f64, width: usize) -> (Vec<f32>, usize) {
    let n = length;
    let c = n as f64 / 2.0;
    let scale = 1.0 - n as f64 / 100.0;
    let (s, co) = (
        (angle - 45.0).to_radians().sin(),
        (angle - 45.0).to_radians().cos(),
    );
    let (alpha, beta) = (scale * co, scale * s);
    // Forward map: [x'; y'] = [[a, b], [-b, a]] [x - c; y - c] + [c; c]; sample its inverse.
    let det = alpha * alpha + beta * beta;
    let mut k = vec![0f32; n * n];
    for y in 0..n {
        for x in 0..n {
            let (dx, dy) = (x as f64 - c, y as f64 - c);
            let sx = (alpha * dx - beta * dy) / det + c;
            let sy = (beta * dx + alpha * dy) / det + c;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let mut v = 0.0;
            for (yy, wy) in [(y0, 1.0 - fy), (y0 + 1.0, fy)] {
                for (xx, wx) in [(x0, 1.0 - fx), (x0 + 1.0, fx)] {
                    // The identity matrix: 1 on the diagonal.
                    let inside = xx >= 0.0 && yy >= 0.0 && xx < n as f64 && yy < n as f64;
                    if inside && xx == yy {
                        v += wx * wy;
                    }
                }
            }
            k[y * n + x] = v as f32;
        }
    }
    // Gaussian blur of the kernel itself (OpenCV's sigma for a given size).
    let sigma = 0.3 * ((width as f64 - 1.0) * 0.5 - 1.0) + 0.8;
    let g = gaussian_kernel(sigma, width);
    (convolve_separable(&k, n, n, 1, &g), n)
}

/// Rain: seeds where a uniform draw in [0, 256) lands above `256 - value / 100`, spread by a
/// small cross, smeared by the streak kernel, min-max normalised to [0, 1] (8-bit), added to
/// every channel and clipped. The smearing scatters each seed (the field is sparse), with
/// zero beyond the borders.
pub fn rain(
    img: &Image,
    value: f64,
    length: usize,
    angle: f64,
    width: usize,
    rng: &mut Rng,
) -> Image {
    let (w, h) = (img.width, img.height);
    // A pixel seeds a streak when a uniform draw in [0, 256) lands at or above
    // `256 - value / 100`: probability p = value / 25600. Rather than one draw per pixel, draw
    // the gaps between seeds (geometric) and each seed's value (uniform above the threshold).
    let threshold = 256.0 - value * 0.01;
    let p = (value * 0.01 / 256.0).min(1.0);
    let mut seeds: Vec<(usize, usize, f32)> = vec![];
    let mut at = rng.geometric(p) as usize;
    while at < w * h {
        seeds.push((at % w, at / w, rng.range(threshold, 256.0) as f32));
        at += 1 + rng.geometric(p) as usize;
    }
    // The 3x3 cross [[0, .1, 0], [.1, 8, .1], [0, .1, 0]] around each seed.
    let mut spots: Vec<(i64, i64, f32)> = Vec::with_capacity(seeds.len() * 5);
    for &(x, y, u) in &seeds {
        let (x, y) = (x as i64, y as i64);
        spots.push((x, y, 8.0 * u));
        for (dx, dy) in [(-1, 0), (1, 0), (0, -1), (0, 1)] {
            spots.push((x + dx, y + dy, 0.1 * u));
        }
    }
    let (k, n) = streak_kernel(length, angle, width);
    let r = (n / 2) as i64;
    let mut field = vec![0f32; w * h];
    for &(sx, sy, v) in &spots {
        // The kernel's columns that land inside the image, the same for every kernel row.
        let (kx0, kx1) = ((r - sx).max(0), (w as i64 + r - sx).min(n as i64));
        if kx0 >= kx1 {
            continue;
        }
        for ky in 0..n as i64 {
            let y = sy + ky - r;
            if y < 0 || y >= h as i64 {
                continue;
            }
            let x0 = (sx + kx0 - r) as usize;
            let dst = &mut field[y as usize * w + x0..y as usize * w + x0 + (kx1 - kx0) as usize];
            let src = &k[(ky * n as i64 + kx0) as usize..(ky * n as i64 + kx1) as usize];
            axpy(dst, src, v);
        }
    }
    let (lo, hi) = field
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut out = img.data.clone();
    for (i, px) in out.chunks_exact_mut(3).enumerate() {
        let streak = ((field[i] - lo) / span * 255.0).round();
        for v in px {
            *v = (*v as f32 + streak).min(255.0) as u8;
        }
    }
    Image {
        width: w,
        height: h,
        data: out,
    }
}

/// The synthetic depth prior used when an image has no depth file: far at the top, near at
/// the bottom (d = 1 - y / (H - 1)), plus a smooth random relief (four cosine waves with
/// periods of at least half the image) weighing a quarter, normalised to [0, 1].
pub fn depth_prior(w: usize, h: usize, rng: &mut Rng) -> Vec<f32> {
    use std::f64::consts::TAU;
    // cos(a(x) + b(y)) = cos a cos b - sin a sin b: trigonometry per row and column only, then
    // one multiply-add per wave and pixel along each row.
    struct Wave {
        cos_x: Vec<f32>,
        sin_x: Vec<f32>,
        ys: Vec<(f32, f32)>,
    }
    let waves: Vec<Wave> = (0..4)
        .map(|_| {
            let fx = rng.range(0.0, 2.0) / w.max(1) as f64;
            let fy = rng.range(0.0, 2.0) / h.max(1) as f64;
            let ph = rng.range(0.0, TAU);
            let (sin_x, cos_x) = (0..w)
                .map(|x| {
                    let (s, c) = (TAU * fx * x as f64 + ph).sin_cos();
                    (s as f32, c as f32)
                })
                .unzip();
            let ys = (0..h)
                .map(|y| {
                    let (s, c) = (TAU * fy * y as f64).sin_cos();
                    (s as f32, c as f32)
                })
                .collect();
            Wave { cos_x, sin_x, ys }
        })
        .collect();
    let mut d = vec![0f32; w * h];
    for (y, row) in d.chunks_exact_mut(w.max(1)).enumerate() {
        // 0.75 * base + 0.25 * (relief / 4 * 0.5 + 0.5), relief the sum of the four cosines.
        row.fill(0.75 * (1.0 - y as f32 / (h.max(2) - 1) as f32) + 0.125);
        for wave in &waves {
            let (sb, cb) = wave.ys[y];
            let (cc, ss) = (cb * 0.03125, sb * 0.03125);
            axpy(row, &wave.cos_x, cc);
            axpy(row, &wave.sin_x, -ss);
        }
    }
    let (lo, hi) = d
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let scale = if hi > lo { 1.0 / (hi - lo) } else { 1.0 };
    for v in &mut d {
        *v = (*v - lo) * scale;
    }
    d
}

/// I = J T + A (1 - T), T = exp(-beta d).
pub fn haze(img: &Image, depth: &[f32], a: f64, beta: f64) -> Image {
    assert_eq!(
        depth.len(),
        img.width * img.height,
        "depth map of another size"
    );
    let mut out = img.data.clone();
    let (a, beta) = (a as f32, beta as f32);
    for (px, &d) in out.chunks_exact_mut(3).zip(depth) {
        let t = (-beta * d).exp();
        let air = a * (1.0 - t);
        for v in px {
            *v = quantize(*v as f32 * (1.0 / 255.0) * t + air);
        }
    }
    Image {
        width: img.width,
        height: img.height,
        data: out,
    }
}

/// Where an image's depth map would be: `NAME.depth.png` beside it.
pub fn depth_path(image_path: &std::path::Path) -> std::path::PathBuf {
    let mut name = image_path.file_stem().unwrap_or_default().to_os_string();
    name.push(".depth.png");
    image_path.with_file_name(name)
}

/// The depth map stored next to an image (`NAME.depth.png`, grey, near = dark), normalised to
/// [0, 1]; `None` when there is none. One that cannot be read, or of another size than the
/// image, is an error naming it (haze would otherwise fall back to the prior unnoticed).
pub fn depth_file(
    image_path: &std::path::Path,
    w: usize,
    h: usize,
) -> Result<Option<Vec<f32>>, crate::image::ImageError> {
    use crate::image::{ErrorKind, ImageError};
    let p = depth_path(image_path);
    if !p.exists() {
        return Ok(None);
    }
    let img = image::open(&p)
        .map_err(|e| {
            ImageError::new(
                &p,
                ErrorKind::Depth(format!(
                    "the depth map of {} cannot be read ({e}); replace it with a grey PNG of \
                     the image's size, or remove it to use the depth prior",
                    image_path.display()
                )),
            )
        })?
        .into_luma16();
    if img.width() as usize != w || img.height() as usize != h {
        return Err(ImageError::new(
            &p,
            ErrorKind::Depth(format!(
                "a {}x{} depth map for the {w}x{h} image {}; it must have the image's size \
                 (resize it, or remove it to use the depth prior)",
                img.width(),
                img.height(),
                image_path.display()
            )),
        ));
    }
    let v: Vec<f32> = img.into_raw().iter().map(|&x| x as f32).collect();
    let (lo, hi) = v
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    Ok(Some(v.iter().map(|x| (x - lo) / span).collect()))
}
