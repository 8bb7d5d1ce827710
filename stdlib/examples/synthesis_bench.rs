//! Synthesis speed: every bundled image degraded by each of the seven paper tasks, images in
//! parallel (rayon, all cores). Prints one line per task: `task images/s`. Run through
//! `tools/bench_synthesis.sh`, which runs the numpy/OpenCV equivalent in the same run.
use std::time::Instant;

use mio_stdlib::degrade::{rng_for, Degradation};
use rayon::prelude::*;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    let mut files = mio_stdlib::image::list_folder(&root.join("train")).unwrap();
    files.extend(mio_stdlib::image::list_folder(&root.join("test")).unwrap());
    let images: Vec<(String, mio_stdlib::image::Image)> = files
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                mio_stdlib::image::load(p).unwrap().image,
            )
        })
        .collect();
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!("threads {}", rayon::current_num_threads());
    // An optional task key runs that task alone (for profiling).
    let only = std::env::args().nth(2);
    let mut total = 0.0;
    for key in mio_stdlib::PAPER_TASKS {
        if only.as_deref().is_some_and(|o| o != key) {
            continue;
        }
        let d = Degradation::paper(key).unwrap();
        let start = Instant::now();
        for round in 0..rounds {
            let out: Vec<usize> = images
                .par_iter()
                .map(|(name, img)| {
                    let mut rng = rng_for(round as u64, key, name);
                    d.apply(img, &mut rng, None).0.data.len()
                })
                .collect();
            std::hint::black_box(out);
        }
        let secs = start.elapsed().as_secs_f64();
        total += secs;
        println!("{key} {:.1}", (rounds * images.len()) as f64 / secs);
    }
    println!("all {:.1}", (rounds * images.len() * 7) as f64 / total);
}
