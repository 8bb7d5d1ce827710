//! Prints mio's JPEG sizes and PSNR at several qualities for the given images (to compare with
//! libjpeg's in stdlib/tests/data/jpeg.json): `cargo run -p mio-stdlib --example jpeg_table IMG...`.
fn main() {
    for path in std::env::args().skip(1) {
        let img = mio_stdlib::image::load(std::path::Path::new(&path))
            .unwrap()
            .image;
        for q in [10u8, 30, 50, 70, 90] {
            let out = mio_stdlib::degrade::jpeg(&img, q);
            let p = mio_stdlib::metrics::psnr(&img, &out, 0, false).unwrap();
            println!(
                "{path} q{q}: {} bytes, {p:.2} dB",
                mio_stdlib::degrade::jpeg_size(&img, q)
            );
        }
    }
}
