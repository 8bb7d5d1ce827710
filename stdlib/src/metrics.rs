//! Image quality as the field reports it: PSNR on 8-bit images and SSIM with an 11x11 Gaussian
//! window (sigma 1.5), both after cropping `crop` pixels from every border, on RGB or on the Y
//! channel (ITU-R BT.601, as BasicSR's `to_y_channel`). They agree with BasicSR's
//! `calculate_psnr`/`calculate_ssim` and with scikit-image (`peak_signal_noise_ratio`,
//! `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`).

use crate::image::Image;

/// The planes measured: RGB (three) or Y (one), values on the 0..255 scale, after the crop.
fn planes(img: &Image, crop: usize, y: bool) -> (Vec<Vec<f64>>, usize, usize) {
    let (w, h) = (
        img.width.saturating_sub(2 * crop),
        img.height.saturating_sub(2 * crop),
    );
    let mut out = vec![Vec::with_capacity(w * h); if y { 1 } else { 3 }];
    for row in crop..crop + h {
        for col in crop..crop + w {
            let i = (row * img.width + col) * 3;
            let (r, g, b) = (
                img.data[i] as f64,
                img.data[i + 1] as f64,
                img.data[i + 2] as f64,
            );
            if y {
                out[0].push((65.481 * r + 128.553 * g + 24.966 * b) / 255.0 + 16.0);
            } else {
                out[0].push(r);
                out[1].push(g);
                out[2].push(b);
            }
        }
    }
    (out, w, h)
}

fn check_sizes(a: &Image, b: &Image, crop: usize) -> Result<(), String> {
    if (a.width, a.height) != (b.width, b.height) {
        return Err(format!(
            "the images differ in size: {}x{} and {}x{}",
            a.width, a.height, b.width, b.height
        ));
    }
    if a.width <= 2 * crop || a.height <= 2 * crop {
        return Err(format!(
            "a {crop}-pixel border crop leaves nothing of a {}x{} image",
            a.width, a.height
        ));
    }
    Ok(())
}

/// PSNR in dB (infinite for identical images).
pub fn psnr(a: &Image, b: &Image, crop: usize, y: bool) -> Result<f64, String> {
    check_sizes(a, b, crop)?;
    let (pa, _, _) = planes(a, crop, y);
    let (pb, _, _) = planes(b, crop, y);
    let (mut sum, mut n) = (0.0, 0usize);
    for (x, z) in pa.iter().zip(&pb) {
        for (u, v) in x.iter().zip(z) {
            sum += (u - v) * (u - v);
        }
        n += x.len();
    }
    let mse = sum / n as f64;
    Ok(if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    })
}

/// SSIM, the mean over the valid region of each plane, averaged over planes.
pub fn ssim(a: &Image, b: &Image, crop: usize, y: bool) -> Result<f64, String> {
    check_sizes(a, b, crop)?;
    let (pa, w, h) = planes(a, crop, y);
    let (pb, _, _) = planes(b, crop, y);
    if w < 11 || h < 11 {
        return Err(format!(
            "SSIM needs at least 11x11 pixels after the crop, not {w}x{h}"
        ));
    }
    let mut total = 0.0;
    for (x, z) in pa.iter().zip(&pb) {
        total += ssim_plane(x, z, w, h);
    }
    Ok(total / pa.len() as f64)
}

fn gaussian_window() -> [f64; 11] {
    let mut k = [0.0; 11];
    for (i, v) in k.iter_mut().enumerate() {
        let d = i as f64 - 5.0;
        *v = (-d * d / (2.0 * 1.5 * 1.5)).exp();
    }
    let s: f64 = k.iter().sum();
    k.map(|v| v / s)
}

/// Filters with the 11x11 window at every position where it fits (the "valid" region).
fn filter_valid(p: &[f64], w: usize, h: usize, k: &[f64; 11]) -> Vec<f64> {
    let (ow, oh) = (w - 10, h - 10);
    let mut rows = vec![0.0; h * ow];
    for y in 0..h {
        for x in 0..ow {
            let mut acc = 0.0;
            for (t, kv) in k.iter().enumerate() {
                acc += kv * p[y * w + x + t];
            }
            rows[y * ow + x] = acc;
        }
    }
    let mut out = vec![0.0; oh * ow];
    for y in 0..oh {
        for (t, kv) in k.iter().enumerate() {
            let src = &rows[(y + t) * ow..(y + t + 1) * ow];
            for (o, s) in out[y * ow..(y + 1) * ow].iter_mut().zip(src) {
                *o += kv * s;
            }
        }
    }
    out
}

fn ssim_plane(x: &[f64], z: &[f64], w: usize, h: usize) -> f64 {
    let c1 = (0.01f64 * 255.0).powi(2);
    let c2 = (0.03f64 * 255.0).powi(2);
    let k = gaussian_window();
    let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
    let zz: Vec<f64> = z.iter().map(|v| v * v).collect();
    let xz: Vec<f64> = x.iter().zip(z).map(|(a, b)| a * b).collect();
    let (mx, mz) = (filter_valid(x, w, h, &k), filter_valid(z, w, h, &k));
    let (sxx, szz, sxz) = (
        filter_valid(&xx, w, h, &k),
        filter_valid(&zz, w, h, &k),
        filter_valid(&xz, w, h, &k),
    );
    let mut sum = 0.0;
    for i in 0..mx.len() {
        let (m1, m2) = (mx[i], mz[i]);
        let (v1, v2, cov) = (sxx[i] - m1 * m1, szz[i] - m2 * m2, sxz[i] - m1 * m2);
        sum +=
            ((2.0 * m1 * m2 + c1) * (2.0 * cov + c2)) / ((m1 * m1 + m2 * m2 + c1) * (v1 + v2 + c2));
    }
    sum / mx.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: usize, h: usize, f: impl Fn(usize) -> u8) -> Image {
        Image {
            width: w,
            height: h,
            data: (0..w * h * 3).map(f).collect(),
        }
    }

    #[test]
    fn identical_images_are_perfect_and_psnr_follows_the_formula() {
        let a = img(32, 24, |i| (i * 7 % 251) as u8);
        assert_eq!(psnr(&a, &a, 4, false).unwrap(), f64::INFINITY);
        assert!((ssim(&a, &a, 4, false).unwrap() - 1.0).abs() < 1e-12);
        // Every value off by 5: MSE 25.
        let b = Image {
            data: a.data.iter().map(|&v| v.saturating_add(5)).collect(),
            ..a.clone()
        };
        let a2 = Image {
            data: a.data.iter().map(|&v| v.min(250)).collect(),
            ..a.clone()
        };
        let b2 = Image {
            data: a2.data.iter().map(|&v| v + 5).collect(),
            ..a.clone()
        };
        let want = 10.0 * (255.0f64 * 255.0 / 25.0).log10();
        assert!((psnr(&a2, &b2, 0, false).unwrap() - want).abs() < 1e-9);
        assert!(psnr(&a, &b, 0, false).unwrap() > want - 0.5);
    }

    #[test]
    fn size_mismatch_and_overcropping_are_errors() {
        let a = img(32, 24, |_| 0);
        let b = img(24, 32, |_| 0);
        assert!(psnr(&a, &b, 0, false)
            .unwrap_err()
            .contains("differ in size"));
        assert!(psnr(&a, &a, 12, false)
            .unwrap_err()
            .contains("leaves nothing"));
        assert!(ssim(&a, &a, 8, false).unwrap_err().contains("11x11"));
    }
}
