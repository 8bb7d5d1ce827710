//! Parse and check a generated 5,000-line workflow file (the target is under 50 ms on a
//! 2-core machine). Run: `cargo bench -p mio-engine --bench check`.

use criterion::{criterion_group, criterion_main, Criterion};

/// A realistic, valid file of about `lines` lines: user tasks, then one workflow with many
/// models, each trained sequentially and evaluated.
pub fn generate(lines: usize) -> String {
    let mut s = String::from("# generated for the benchmark\nuse paper\n\n");
    let tasks = lines / 5;
    for i in 0..tasks {
        let lo = 1 + i % 40;
        s.push_str(&format!("task t{i} = noise(sigma = {lo}..{})\n", lo + 10));
    }
    s.push_str("\nworkflow big {\n  seed = 0\n  data train = images(\"x\", patch = 64px, batch = 4)\n  data test = images(\"y\")\n\n");
    let mut i = 0;
    while s.lines().count() + 10 < lines {
        let (a, b, c) = (i % tasks, (i + 1) % tasks, (i + 2) % tasks);
        s.push_str(&format!(
            "  # model {i}\n  model m{i} = srresnet(channels = 16, blocks = 2, prompt = explicit(dim = 32))\n  \
             train m{i} on train {{\n    strategy = sequential(order = [t{a}, t{b}, t{c}])\n    \
             iters = [100, 200, 1k]\n    optimizer = adam(lr = 2e-4, betas = (0.9, 0.99))\n  }}\n  \
             eval m{i} on test as e{i} {{ tasks = [t{a}, t{b}, paper.noise], metrics = [psnr(crop = 4)] }}\n\n"
        ));
        i += 1;
    }
    s.push_str("}\n");
    s
}

fn bench(c: &mut Criterion) {
    let src = generate(5000);
    let n = src.lines().count();
    // Sanity: the generated file is valid, so the benchmark measures the success path.
    let checked = mio_engine::check_source("bench.mio", None, src.clone(), &[]);
    assert!(
        checked.is_ok(),
        "{}",
        checked.render(mio_engine::Style::Plain)
    );
    let mut g = c.benchmark_group(format!("{n}-line workflow"));
    g.sample_size(30);
    g.bench_function("parse", |b| {
        b.iter(|| mio_grammar::parse(std::hint::black_box(&src)))
    });
    g.bench_function("parse + check", |b| {
        b.iter(|| {
            mio_engine::check_source("bench.mio", None, std::hint::black_box(src.clone()), &[])
        })
    });
    g.bench_function("parse + check + plan", |b| {
        b.iter(|| {
            let checked =
                mio_engine::check_source("bench.mio", None, std::hint::black_box(src.clone()), &[]);
            mio_engine::plan(&checked).unwrap()
        })
    });
    g.bench_function("format", |b| {
        b.iter(|| mio_grammar::format::format(std::hint::black_box(&src)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
