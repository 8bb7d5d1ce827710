//! Times parsing a file: `cargo run --release -p mio-grammar --example parse_timing FILE`.
//! Prints the minimum and median of 20 runs (this machine is a shared VM: single runs are noise).
fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: parse_timing FILE.mio");
    let src = std::fs::read_to_string(path).unwrap();
    let mut times: Vec<f64> = (0..20)
        .map(|_| {
            let t = std::time::Instant::now();
            std::hint::black_box(mio_grammar::parse(&src));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "parse: min {:.1} ms, median {:.1} ms ({} lines)",
        times[0],
        times[10],
        src.lines().count()
    );
}
