//! The data side as its users rely on it: degradations keep shape and respect their ranges,
//! the same seed gives the same bytes with 1 or 2 threads, bad images get clear errors, test
//! sets are written once and reused, and training crops stay aligned with their clean twins.

use std::path::{Path, PathBuf};

use mio_stdlib::data::{build_test_set, Augment, TaskSpec, TrainSet};
use mio_stdlib::degrade::{rng_for, Degradation, Sampled};
use mio_stdlib::image::{self, ErrorKind, Image};
use proptest::prelude::*;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mio-stdlib-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn spec(id: usize, key: &str) -> TaskSpec {
    TaskSpec {
        id,
        name: key.into(),
        degradation: Degradation::paper(key).unwrap(),
        text: format!("{key}()"),
    }
}

fn pattern(w: usize, h: usize, seed: u64) -> Image {
    let mut rng = mio_stdlib::rng::Rng::new(seed);
    let mut img = Image::new(w, h);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let smooth = ((x * 3 + y * 5 + c * 40) % 256) as f64;
                img.data[(y * w + x) * 3 + c] = (0.8 * smooth + 0.2 * rng.range(0.0, 255.0)) as u8;
            }
        }
    }
    img
}

fn in_range(v: f64, lo: f64, hi: f64) -> bool {
    v >= lo - 1e-9 && v <= hi + 1e-9
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn degradations_keep_the_shape_and_draw_inside_their_ranges(
        w in 24usize..72, h in 24usize..72, seed in any::<u64>(), which in 0usize..7
    ) {
        let key = mio_stdlib::PAPER_TASKS[which];
        let img = pattern(w, h, seed);
        let d = Degradation::paper(key).unwrap();
        let (out, drawn) = d.apply(&img, &mut rng_for(seed, key, "p.png"), None);
        prop_assert_eq!((out.width, out.height, out.data.len()), (w, h, w * h * 3));
        for (name, v) in drawn {
            let ok = match (key, name) {
                ("sr", "scale") => v == 4.0,
                ("blur", "sigma") => in_range(v, 1.0, 3.0),
                ("blur", "size") => in_range(v, 7.0, 21.0) && v as i64 % 2 == 1,
                ("noise", "sigma") => in_range(v, 15.0, 50.0) && v.fract() == 0.0,
                ("jpeg", "quality") => in_range(v, 30.0, 70.0) && v.fract() == 0.0,
                ("rain", "value") => in_range(v, 50.0, 100.0),
                ("rain", "length") => in_range(v, 20.0, 40.0),
                ("rain", "angle") => in_range(v, -45.0, 45.0),
                ("rain", "width") => in_range(v, 3.0, 11.0) && v as i64 % 2 == 1,
                ("haze", "a") => in_range(v, 0.8, 1.0),
                ("haze", "beta") => in_range(v, 0.5, 2.5),
                ("lowlight", "gamma") => in_range(v, 1.0, 3.0),
                _ => false,
            };
            prop_assert!(ok, "{} drew {} = {}", key, name, v);
        }
        // Same seed, same bytes.
        let (again, _) = d.apply(&img, &mut rng_for(seed, key, "p.png"), None);
        prop_assert_eq!(out, again);
    }
}

#[test]
fn each_degradation_changes_the_image_the_way_it_should() {
    let img = image::load(&repo("data/test/chelsea.png")).unwrap().image;
    let mean = |i: &Image| i.data.iter().map(|&v| v as f64).sum::<f64>() / i.data.len() as f64;
    let run = |d: Degradation| d.apply(&img, &mut rng_for(1, "t", "chelsea.png"), None).0;
    let psnr = |o: &Image| mio_stdlib::metrics::psnr(&img, o, 0, false).unwrap();
    let dark = run(Degradation::Lowlight {
        gamma: Sampled::Fixed(2.0),
    });
    assert!(mean(&dark) < mean(&img) * 0.8, "low light darkens");
    let hazy = run(Degradation::Haze {
        a: Sampled::Fixed(0.9),
        beta: Sampled::Fixed(2.0),
    });
    assert!(
        mean(&hazy) > mean(&img),
        "haze brightens towards the atmospheric light"
    );
    let rainy = run(Degradation::paper("rain").unwrap());
    assert!(
        rainy.data.iter().zip(&img.data).all(|(r, c)| r >= c),
        "rain only adds light"
    );
    for (d, lo, hi) in [
        (
            Degradation::Noise {
                sigma: Sampled::Fixed(15.0),
            },
            24.0,
            26.0,
        ),
        (
            Degradation::Blur {
                sigma: Sampled::Fixed(2.0),
                size: Sampled::Fixed(13.0),
            },
            25.0,
            40.0,
        ),
        (Degradation::paper("sr").unwrap(), 25.0, 40.0),
    ] {
        let p = psnr(&run(d.clone()));
        assert!((lo..hi).contains(&p), "{d:?}: {p:.2} dB");
    }
}

#[test]
fn the_same_seed_gives_the_same_bytes_with_one_or_two_threads() {
    let (set, _) = TrainSet::load(
        &repo("data/train"),
        48,
        Augment {
            flip: true,
            rot90: true,
        },
        0,
    )
    .unwrap();
    let tasks: Vec<TaskSpec> = mio_stdlib::PAPER_TASKS
        .iter()
        .enumerate()
        .map(|(i, k)| spec(i, k))
        .collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            (
                set.batch(&tasks, 7, 3, 11, 16),
                set.batch(&tasks, 7, 3, 12, 16),
            )
        })
    };
    let (a1, a2) = run(1);
    let (b1, b2) = run(2);
    assert_eq!(a1, b1);
    assert_eq!(a2, b2);
    assert_ne!(a1, a2, "different steps draw different batches");
    assert!(
        a1.task
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 2,
        "tasks are mixed"
    );

    let dir1 = temp("threads1");
    let dir2 = temp("threads2");
    let clean = image::list_folder(&repo("data/test")).unwrap();
    let task = spec(0, "rain");
    let build = |threads: usize, dir: &Path| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| build_test_set(&clean, &task, 5, dir).unwrap())
    };
    let p1 = build(1, &dir1);
    let p2 = build(2, &dir2);
    for (x, y) in p1.iter().zip(&p2) {
        assert_eq!(
            std::fs::read(&x.degraded).unwrap(),
            std::fs::read(&y.degraded).unwrap()
        );
    }
}

#[test]
fn training_crops_stay_aligned_with_their_clean_twins() {
    // An identity degradation: any misalignment in cropping or augmentation shows as lq != gt.
    let (set, _) = TrainSet::load(
        &repo("data/train"),
        32,
        Augment {
            flip: true,
            rot90: true,
        },
        3,
    )
    .unwrap();
    assert_eq!(set.images.len(), 3, "limit");
    let listed = vec![repo("data/train/brick.png"), repo("data/test/camera.png")];
    let (from_list, _) = TrainSet::from_files(
        &listed,
        32,
        Augment {
            flip: false,
            rot90: false,
        },
    )
    .unwrap();
    let names: Vec<&str> = from_list
        .images
        .iter()
        .map(|(n, _, _)| n.as_str())
        .collect();
    assert_eq!(names, ["brick.png", "camera.png"]);
    let id = TaskSpec {
        id: 5,
        name: "identity".into(),
        degradation: Degradation::Lowlight {
            gamma: Sampled::Fixed(1.0),
        },
        text: "lowlight(gamma = 1)".into(),
    };
    let b = set.batch(&[id], 0, 0, 0, 8);
    assert_eq!(b.lq, b.gt);
    assert!(b.task.iter().all(|&t| t == 5));
    let (lq, gt, task) = b.to_tensors(&candle_core::Device::Cpu).unwrap();
    assert_eq!(lq.dims(), &[8, 3, 32, 32]);
    assert_eq!(gt.dims(), &[8, 3, 32, 32]);
    assert_eq!(task.to_vec1::<u32>().unwrap(), vec![5; 8]);
    let v: Vec<f32> = lq.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    // Channel planes: pixel (0, 0) of crop 0.
    let px = &b.lq[0].data[0..3];
    for c in 0..3 {
        assert_eq!(v[c * 32 * 32], px[c] as f32 / 255.0);
    }
}

#[test]
fn test_sets_are_written_once_and_remade_when_their_inputs_change() {
    let src = temp("testset-src");
    let out = temp("testset-out");
    for f in ["chelsea.png", "camera.png"] {
        std::fs::copy(repo(&format!("data/test/{f}")), src.join(f)).unwrap();
    }
    let clean = image::list_folder(&src).unwrap();
    let task = spec(2, "noise");
    let first = build_test_set(&clean, &task, 0, &out).unwrap();
    assert!(first.iter().all(|p| p.made && p.degraded.exists()));
    assert!(first.iter().all(|p| p.params[0].0 == "sigma"));
    let stamp = std::fs::metadata(&first[0].degraded)
        .unwrap()
        .modified()
        .unwrap();
    let again = build_test_set(&clean, &task, 0, &out).unwrap();
    assert!(again.iter().all(|p| !p.made), "reused");
    assert_eq!(
        std::fs::metadata(&again[0].degraded)
            .unwrap()
            .modified()
            .unwrap(),
        stamp
    );
    assert_eq!(first[0].params, again[0].params);
    // A changed parameter, seed or image makes new files.
    let other = TaskSpec {
        text: "noise(sigma = 60)".into(),
        degradation: Degradation::Noise {
            sigma: Sampled::Fixed(60.0),
        },
        ..task.clone()
    };
    assert!(build_test_set(&clean, &other, 0, &out)
        .unwrap()
        .iter()
        .all(|p| p.made));
    assert!(build_test_set(&clean, &task, 1, &out)
        .unwrap()
        .iter()
        .all(|p| p.made));
    let flipped = mio_stdlib::data::flip_h(&image::load(&clean[0]).unwrap().image);
    flipped.save_png(&clean[0]).unwrap();
    let after = build_test_set(&clean, &task, 0, &out).unwrap();
    assert_eq!(
        after.iter().map(|p| p.made).collect::<Vec<_>>(),
        [true, false]
    );
    // The outputs are ordinary PNGs.
    assert!(image::load(&after[0].degraded).is_ok());
}

#[test]
fn every_unusable_image_gets_an_error_naming_the_file() {
    let dir = temp("io");
    let err = |p: &Path| image::load(p).unwrap_err();
    // Missing.
    let missing = dir.join("nope.png");
    assert_eq!(err(&missing).kind, ErrorKind::Missing);
    assert!(err(&missing).to_string().contains("nope.png: no such file"));
    // Corrupt.
    let corrupt = dir.join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nthis is not really a png").unwrap();
    assert!(
        matches!(err(&corrupt).kind, ErrorKind::Corrupt(_)),
        "{}",
        err(&corrupt)
    );
    assert!(err(&corrupt)
        .to_string()
        .starts_with(&corrupt.display().to_string()));
    let text = dir.join("notes.jpg");
    std::fs::write(&text, b"hello").unwrap();
    assert!(matches!(err(&text).kind, ErrorKind::Corrupt(_)));
    // 16-bit.
    let deep = dir.join("deep.png");
    ::image::ImageBuffer::<::image::Rgb<u16>, Vec<u16>>::from_pixel(
        8,
        8,
        ::image::Rgb([1000, 2000, 3000]),
    )
    .save(&deep)
    .unwrap();
    assert!(matches!(err(&deep).kind, ErrorKind::HighBitDepth(_)));
    assert!(err(&deep).to_string().contains("16-bit"));
    // Grey: converted, with a note.
    let grey = dir.join("grey.png");
    ::image::GrayImage::from_pixel(40, 30, ::image::Luma([77]))
        .save(&grey)
        .unwrap();
    let l = image::load(&grey).unwrap();
    assert_eq!(&l.image.data[..3], &[77, 77, 77]);
    assert!(l.notes[0].contains("grey"));
    // Alpha: opaque is dropped with a note, transparent is an error.
    let opaque = dir.join("opaque.png");
    ::image::RgbaImage::from_pixel(8, 8, ::image::Rgba([1, 2, 3, 255]))
        .save(&opaque)
        .unwrap();
    let l = image::load(&opaque).unwrap();
    assert_eq!(&l.image.data[..3], &[1, 2, 3]);
    assert!(l.notes[0].contains("alpha"));
    let clear = dir.join("clear.png");
    ::image::RgbaImage::from_pixel(8, 8, ::image::Rgba([1, 2, 3, 10]))
        .save(&clear)
        .unwrap();
    assert_eq!(err(&clear).kind, ErrorKind::Transparent);
    // Too small for the patch.
    let small = image::load_for_patch(&opaque, 48).unwrap_err();
    assert!(
        small
            .to_string()
            .contains("8x8 is smaller than the 48x48 patch"),
        "{small}"
    );
    // A training folder with one bad image names it.
    std::fs::copy(repo("data/test/camera.png"), dir.join("good.png")).unwrap();
    let e = TrainSet::load(
        &dir,
        48,
        Augment {
            flip: false,
            rot90: false,
        },
        0,
    )
    .err()
    .unwrap();
    assert!(e.path.starts_with(&dir), "{e}");
}

#[test]
fn haze_uses_a_depth_file_beside_the_image_when_there_is_one() {
    let dir = temp("depth");
    let img_path = dir.join("scene.png");
    let img = pattern(40, 30, 3);
    img.save_png(&img_path).unwrap();
    let haze = Degradation::Haze {
        a: Sampled::Fixed(1.0),
        beta: Sampled::Fixed(3.0),
    };
    let without = mio_stdlib::degrade::depth_file(&img_path, 40, 30).unwrap();
    assert!(without.is_none());
    // Near (dark) on the left, far (bright) on the right: haze must grow left to right.
    let depth = ::image::GrayImage::from_fn(40, 30, |x, _| ::image::Luma([(x * 6) as u8]));
    depth.save(dir.join("scene.depth.png")).unwrap();
    let d = mio_stdlib::degrade::depth_file(&img_path, 40, 30)
        .unwrap()
        .expect("depth file read");
    assert_eq!(d[0], 0.0);
    assert_eq!(d[39], 1.0);
    let (out, _) = haze.apply(&img, &mut rng_for(0, "haze", "scene.png"), Some(&d));
    let col_mean = |x: usize| {
        (0..30)
            .map(|y| out.data[(y * 40 + x) * 3] as f64)
            .sum::<f64>()
            / 30.0
    };
    assert!(
        col_mean(39) > 250.0 && col_mean(0) < col_mean(39),
        "{} {}",
        col_mean(0),
        col_mean(39)
    );
    // A depth file of another size, or one that cannot be read, is an error naming it.
    let e = mio_stdlib::degrade::depth_file(&img_path, 41, 30).unwrap_err();
    assert_eq!(e.path, dir.join("scene.depth.png"));
    assert!(
        e.to_string()
            .contains("40x30 depth map for the 41x30 image"),
        "{e}"
    );
    std::fs::write(dir.join("scene.depth.png"), b"not a png").unwrap();
    let e = mio_stdlib::degrade::depth_file(&img_path, 40, 30).unwrap_err();
    assert!(e.to_string().contains("cannot be read"), "{e}");
    // Through a test set too: the error names the depth map, not only the image.
    let e = build_test_set(
        std::slice::from_ref(&img_path),
        &spec(0, "haze"),
        0,
        &dir.join("set"),
    )
    .unwrap_err();
    assert_eq!(e.path, dir.join("scene.depth.png"));
}

#[test]
fn every_degradation_takes_images_of_any_size() {
    // Sides under the sr scale (4) and single rows or columns: no panic, the shape kept.
    for (w, h) in [
        (1, 1),
        (2, 2),
        (3, 5),
        (300, 2),
        (8, 1),
        (1, 9),
        (4, 4),
        (5, 3),
    ] {
        let img = pattern(w, h, 1);
        for key in mio_stdlib::PAPER_TASKS {
            let d = Degradation::paper(key).unwrap();
            let (out, _) = d.apply(&img, &mut rng_for(0, key, "tiny.png"), None);
            assert_eq!((out.width, out.height), (w, h), "{key} on {w}x{h}");
        }
    }
}

#[test]
fn a_composite_degrades_as_its_steps_one_after_the_other() {
    let img = image::load(&repo("data/test/chelsea.png")).unwrap().image;
    let fixed = Sampled::Fixed;
    let blur = Degradation::Blur {
        sigma: fixed(2.0),
        size: fixed(9.0),
    };
    let sr = Degradation::paper("sr").unwrap();
    let jpeg = Degradation::Jpeg {
        quality: fixed(40.0),
    };
    // Steps that draw nothing: the chain is exactly the three applied in turn.
    let chain = Degradation::Chain(vec![blur.clone(), sr.clone(), jpeg.clone()]);
    let mut rng = rng_for(3, "c", "chelsea.png");
    let (out, drawn) = chain.apply(&img, &mut rng, None);
    let by_hand = {
        let r = &mut rng_for(0, "any", "x");
        let a = blur.apply(&img, r, None).0;
        let b = sr.apply(&a, r, None).0;
        jpeg.apply(&b, r, None).0
    };
    assert_eq!(out, by_hand, "blur, then x4 down and up, then JPEG");
    assert_eq!(
        drawn.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        ["sigma", "size", "scale", "quality"],
        "the parameters of every step, in order"
    );
    assert_eq!(chain.key(), "blur then sr then jpeg");
    assert_eq!(chain.steps().len(), 3);
    // Steps that draw: the same seed gives the same bytes, another seed other draws, and each
    // step leaves its mark (darker than the noise alone, noisier than the darkening alone).
    let random = Degradation::Chain(vec![
        Degradation::Lowlight {
            gamma: Sampled::Range(1.5, 2.5),
        },
        Degradation::Noise {
            sigma: Sampled::Range(10.0, 30.0),
        },
    ]);
    let run = |seed: u64| random.apply(&img, &mut rng_for(seed, "c", "chelsea.png"), None);
    let (a, da) = run(1);
    let (b, db) = run(1);
    let (c, dc) = run(2);
    assert_eq!(a, b);
    assert_eq!(da, db);
    assert_ne!(da, dc, "another seed draws other parameters");
    assert_ne!(a, c);
    let mean = |i: &Image| i.data.iter().map(|&v| v as f64).sum::<f64>() / i.data.len() as f64;
    assert!(mean(&a) < mean(&img) * 0.8, "the low-light step darkens");
    let gamma = da[0].1;
    let dark_only = Degradation::Lowlight {
        gamma: Sampled::Fixed(gamma),
    }
    .apply(&img, &mut rng_for(0, "x", "y"), None)
    .0;
    let psnr = mio_stdlib::metrics::psnr(&dark_only, &a, 0, false).unwrap();
    assert!(
        psnr < 30.0,
        "the noise step adds noise on the darkened image ({psnr:.1} dB from it)"
    );
}
