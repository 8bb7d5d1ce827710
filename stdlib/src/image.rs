//! 8-bit RGB images: reading them with a clear error for every file mio cannot use, writing
//! them atomically as PNG. Every degradation reads and returns this type, so every step ends
//! re-quantised to 8 bits, as the paper's pipeline does.

use std::fmt;
use std::path::{Path, PathBuf};

/// An 8-bit RGB image, row-major, three bytes a pixel.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Image({}x{})", self.width, self.height)
    }
}

impl Image {
    pub fn new(width: usize, height: usize) -> Image {
        Image {
            width,
            height,
            data: vec![0; width * height * 3],
        }
    }

    /// From values in [0, 1] (interleaved RGB): clamped, then rounded to 8 bits.
    pub fn from_f32(width: usize, height: usize, values: &[f32]) -> Image {
        assert_eq!(values.len(), width * height * 3);
        let mut data = vec![0u8; values.len()];
        quantize_into(values, &mut data);
        Image {
            width,
            height,
            data,
        }
    }

    /// Values in [0, 1], interleaved RGB.
    pub fn to_f32(&self) -> Vec<f32> {
        self.data
            .iter()
            .map(|&v| v as f32 * (1.0 / 255.0))
            .collect()
    }

    /// The `w` x `h` region whose top-left corner is (`x`, `y`).
    pub fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> Image {
        assert!(
            x + w <= self.width && y + h <= self.height,
            "crop outside the image"
        );
        let mut data = Vec::with_capacity(w * h * 3);
        for row in y..y + h {
            let start = (row * self.width + x) * 3;
            data.extend_from_slice(&self.data[start..start + w * 3]);
        }
        Image {
            width: w,
            height: h,
            data,
        }
    }

    /// The image as PNG bytes (for formats that embed images, such as TensorBoard's).
    pub fn png_bytes(&self) -> Result<Vec<u8>, String> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::write_buffer_with_format(
            &mut out,
            &self.data,
            self.width as u32,
            self.height as u32,
            image::ExtendedColorType::Rgb8,
            image::ImageFormat::Png,
        )
        .map_err(|e| e.to_string())?;
        Ok(out.into_inner())
    }

    /// Writes a PNG through a temporary file and a rename, so no reader ever sees half a file.
    pub fn save_png(&self, path: &Path) -> Result<(), ImageError> {
        crate::fsio::atomic(path, |tmp| {
            image::save_buffer_with_format(
                tmp,
                &self.data,
                self.width as u32,
                self.height as u32,
                image::ExtendedColorType::Rgb8,
                image::ImageFormat::Png,
            )
        })
        .map_err(|e| ImageError::new(path, ErrorKind::Write(e.to_string())))
    }
}

/// Rounds a value in [0, 1] to 8 bits: `round(clamp(v) * 255)`.
#[inline]
#[allow(clippy::manual_clamp)] // `clamp` would keep a NaN, and the cast below needs a number
pub fn quantize(v: f32) -> u8 {
    // `max`/`min` (unlike `clamp`) turn NaN into 0, so the cast below always sees a number in
    // [0.5, 255.5]; adding 0.5 and truncating equals `round()` there, and it vectorises.
    let x = v.max(0.0).min(1.0) * 255.0 + 0.5;
    // SAFETY: x is finite and within 0..=255.5, so it fits an i32.
    unsafe { x.to_int_unchecked::<i32>() as u8 }
}

/// [`quantize`] over a slice.
pub fn quantize_into(src: &[f32], dst: &mut [u8]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = quantize(s);
    }
}

/// Why an image cannot be used.
#[derive(Clone, Debug, PartialEq)]
pub enum ErrorKind {
    Missing,
    Unreadable(String),
    /// Not an image mio reads, or a damaged one.
    Corrupt(String),
    /// A depth map that cannot be used (unreadable, or not the image's size): why and the fix.
    Depth(String),
    /// 16-bit or floating-point samples.
    HighBitDepth(String),
    /// Pixels that are not fully opaque.
    Transparent,
    TooSmall {
        width: usize,
        height: usize,
        need: usize,
    },
    Write(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ImageError {
    pub path: PathBuf,
    pub kind: ErrorKind,
}

impl ImageError {
    pub fn new(path: &Path, kind: ErrorKind) -> Self {
        ImageError {
            path: path.to_path_buf(),
            kind,
        }
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.kind {
            ErrorKind::Missing => write!(f, "{p}: no such file"),
            ErrorKind::Unreadable(e) => write!(f, "{p}: cannot read it: {e}"),
            ErrorKind::Corrupt(e) => write!(f, "{p}: not a PNG or JPEG image mio can decode ({e})"),
            ErrorKind::HighBitDepth(c) => write!(
                f,
                "{p}: {c} samples; mio works on 8-bit images (convert it, e.g. `convert {p} -depth 8 out.png`)"
            ),
            ErrorKind::Transparent => write!(
                f,
                "{p}: has transparent pixels; restoration needs opaque RGB (flatten it onto a background first)"
            ),
            ErrorKind::TooSmall { width, height, need } => write!(
                f,
                "{p}: {width}x{height} is smaller than the {need}x{need} patch (use a smaller `patch` or drop the image)"
            ),
            ErrorKind::Write(e) => write!(f, "{p}: cannot write it: {e}"),
            ErrorKind::Depth(e) => write!(f, "{p}: {e}"),
        }
    }
}

impl std::error::Error for ImageError {}

/// An image read from disk, and what was done to make it RGB.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub image: Image,
    /// For example "grey image: its channel is used for R, G and B".
    pub notes: Vec<String>,
}

/// A failed read of `path`: missing, or unreadable with the system's reason.
pub fn read_error(path: &Path, e: std::io::Error) -> ImageError {
    let kind = if e.kind() == std::io::ErrorKind::NotFound {
        ErrorKind::Missing
    } else {
        ErrorKind::Unreadable(e.to_string())
    };
    ImageError::new(path, kind)
}

/// Reads a PNG or JPEG as 8-bit RGB. Grey images are replicated to RGB and a fully opaque
/// alpha channel is dropped (each with a note); 16-bit, transparent, damaged and missing files
/// are errors that name the file.
pub fn load(path: &Path) -> Result<Loaded, ImageError> {
    let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
    decode(path, &bytes)
}

/// Decodes image bytes (`path` only names them in errors and notes).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Loaded, ImageError> {
    use image::ColorType as C;
    let img = image::load_from_memory(bytes)
        .map_err(|e| ImageError::new(path, ErrorKind::Corrupt(e.to_string())))?;
    let mut notes = vec![];
    let (width, height) = (img.width() as usize, img.height() as usize);
    let data = match img.color() {
        C::Rgb8 => img.into_rgb8().into_raw(),
        C::L8 => {
            notes.push(format!(
                "{}: grey image: its channel is used for R, G and B",
                path.display()
            ));
            img.into_rgb8().into_raw()
        }
        C::Rgba8 | C::La8 => {
            let rgba = img.into_rgba8();
            if rgba.pixels().any(|p| p.0[3] != 255) {
                return Err(ImageError::new(path, ErrorKind::Transparent));
            }
            notes.push(format!(
                "{}: fully opaque alpha channel dropped",
                path.display()
            ));
            image::DynamicImage::ImageRgba8(rgba).into_rgb8().into_raw()
        }
        other => {
            let what = match other {
                C::L16 | C::La16 | C::Rgb16 | C::Rgba16 => "16-bit",
                _ => "floating-point",
            };
            return Err(ImageError::new(path, ErrorKind::HighBitDepth(what.into())));
        }
    };
    Ok(Loaded {
        image: Image {
            width,
            height,
            data,
        },
        notes,
    })
}

/// Reads an image that must hold a `patch` x `patch` crop.
pub fn load_for_patch(path: &Path, patch: usize) -> Result<Loaded, ImageError> {
    let loaded = load(path)?;
    let (w, h) = (loaded.image.width, loaded.image.height);
    if w < patch || h < patch {
        return Err(ImageError::new(
            path,
            ErrorKind::TooSmall {
                width: w,
                height: h,
                need: patch,
            },
        ));
    }
    Ok(loaded)
}

/// Names for outputs made from `paths`, one each and no two alike: the file's stem (lossy
/// UTF-8); where stems collide, the whole file name (`a.png` and `a.jpg` give `a.png` and
/// `a.jpg`, so the outputs are `a.png.png` and `a.jpg.png`); where those collide too (two
/// names that differ only in bytes that are not UTF-8), a counter (`name~2`). Compared
/// without case, since some filesystems ignore it.
pub fn unique_stems(paths: &[PathBuf]) -> Vec<String> {
    use std::collections::HashMap;
    let lossy = |s: Option<&std::ffi::OsStr>| s.unwrap_or_default().to_string_lossy().into_owned();
    let count = |names: &[String]| {
        let mut m: HashMap<String, usize> = HashMap::new();
        for n in names {
            *m.entry(n.to_lowercase()).or_default() += 1;
        }
        m
    };
    let stems: Vec<String> = paths.iter().map(|p| lossy(p.file_stem())).collect();
    let seen = count(&stems);
    let names: Vec<String> = paths
        .iter()
        .zip(&stems)
        .map(|(p, s)| {
            if seen[&s.to_lowercase()] > 1 {
                lossy(p.file_name())
            } else {
                s.clone()
            }
        })
        .collect();
    let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
    names
        .into_iter()
        .map(|n| {
            let mut candidate = n.clone();
            let mut k = 1;
            while !taken.insert(candidate.to_lowercase()) {
                k += 1;
                candidate = format!("{n}~{k}");
            }
            candidate
        })
        .collect()
}

/// The image files (PNG, JPEG) of a folder, sorted by name; other files are skipped.
pub fn list_folder(dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let rd = std::fs::read_dir(dir).map_err(|e| read_error(dir, e))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p
                .extension()
                .map(|e| e.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            matches!(ext.as_str(), "png" | "jpg" | "jpeg")
                && !name.ends_with(".depth.png")
                && !name.starts_with('.')
        })
        .collect();
    files.sort();
    Ok(files)
}
