//! Times check and plan of a file: `cargo run --release -p mio-engine --example check_timing FILE`.
//! Minimum and median of 20 runs each (this machine is a shared VM: single runs are noise).
fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: check_timing FILE.mio");
    let src = std::fs::read_to_string(&path).unwrap();
    let time = |f: &dyn Fn()| {
        let mut t: Vec<f64> = (0..20)
            .map(|_| {
                let s = std::time::Instant::now();
                f();
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(f64::total_cmp);
        (t[0], t[10])
    };
    let check = || mio_engine::check_source("f.mio", None, src.clone(), &[]);
    assert!(
        check().is_ok(),
        "{}",
        check().render(mio_engine::Style::Plain)
    );
    let (a, b) = time(&|| {
        std::hint::black_box(check());
    });
    println!("parse + check: min {a:.1} ms, median {b:.1} ms");
    let checked = check();
    let (a, b) = time(&|| {
        std::hint::black_box(mio_engine::plan(&checked).unwrap());
    });
    println!("plan: min {a:.1} ms, median {b:.1} ms");
}
