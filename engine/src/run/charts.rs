//! Line charts (and scatter plots) through plotters: as PNG for the files a user opens outside a browser (each
//! training stage's loss curve beside its `losses.jsonl`, the report's loss chart), and as SVG
//! for the report (embedded as they are in report.html): the same drawing on both backends.
//! PNG text is drawn with a bundled font (DejaVu Sans, assets/LICENSE-DejaVu.txt), so nothing
//! depends on the fonts a machine has; SVG text names DejaVu Sans and falls back to the
//! browser's sans-serif.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const FAMILY: &str = "mio-sans";

const COLOURS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

fn font_registered() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are the bundled font: registering cannot fail on them.
        let _ = register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// Draws named series of (x, y) points, y on a log scale when `log_y`, into an RGB buffer of
/// `w` x `h`.
fn draw(
    buf: &mut [u8],
    (w, h): (u32, u32),
    title: &str,
    labels: (&str, &str),
    series: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
) -> Result<(), String> {
    let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
    draw_on(&root, title, labels, series, log_y, Mark::Line)
}

/// How a series is drawn: joined by a line, or as separate dots.
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    Line,
    Dot,
}

/// Draws the chart on any plotters backend.
fn draw_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
    mark: Mark,
) -> Result<(), String> {
    font_registered();
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite() && (!log_y || y > 0.0);
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, p)| p.iter().filter(finite).copied())
        .collect();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if pts.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 1.0, 10.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        (y0, y1) = if log_y {
            (y0 / 2.0, y1 * 2.0)
        } else {
            (y0 - 1.0, y1 + 1.0)
        };
    }
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(root);
    chart
        .caption(title, (FAMILY, 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64);
    macro_rules! finish {
        ($c:expr) => {{
            let mut c = $c;
            c.configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .label_style((FAMILY, 12))
                .light_line_style(RGBColor(0xee, 0xee, 0xee))
                .draw()
                .map_err(err)?;
            for (k, (name, p)) in series.iter().enumerate() {
                let colour = COLOURS[k % COLOURS.len()];
                let drawn = match mark {
                    Mark::Line => c.draw_series(LineSeries::new(
                        p.iter().filter(finite).copied(),
                        colour.stroke_width(2),
                    )),
                    Mark::Dot => c.draw_series(
                        p.iter()
                            .filter(finite)
                            .map(|&xy| Circle::new(xy, 4, colour.filled())),
                    ),
                };
                drawn
                    .map_err(err)?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        // A line, or a short thick one that reads as a dot.
                        let (a, b, width) = match mark {
                            Mark::Line => (0, 16, 2),
                            Mark::Dot => (5, 11, 8),
                        };
                        PathElement::new(vec![(x + a, y), (x + b, y)], colour.stroke_width(width))
                    });
            }
            if series.len() > 1 {
                c.configure_series_labels()
                    .label_font((FAMILY, 12))
                    .background_style(WHITE.mix(0.85))
                    .border_style(RGBColor(0xbb, 0xbb, 0xbb))
                    .draw()
                    .map_err(err)?;
            }
        }};
    }
    if log_y {
        finish!(chart
            .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
            .map_err(err)?);
    } else {
        finish!(chart.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?);
    }
    root.present().map_err(err)?;
    Ok(())
}

/// The chart as an SVG document of 640 x 360 (text in DejaVu Sans, else sans-serif).
pub fn line_chart_svg(
    title: &str,
    labels: (&str, &str),
    series: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
) -> Result<String, String> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (640, 360)).into_drawing_area();
        draw_on(&root, title, labels, series, log_y, Mark::Line)?;
    }
    Ok(svg_fonts(s))
}

/// Groups of (x, y) points as coloured dots, one colour and legend entry a group: an SVG
/// document of 640 x 480.
pub fn scatter_svg(
    title: &str,
    labels: (&str, &str),
    groups: &[(String, Vec<(f64, f64)>)],
) -> Result<String, String> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (640, 480)).into_drawing_area();
        draw_on(&root, title, labels, groups, false, Mark::Dot)?;
    }
    Ok(svg_fonts(s))
}

/// Text in DejaVu Sans, else the browser's sans-serif.
fn svg_fonts(s: String) -> String {
    s.replace(
        &format!("font-family=\"{FAMILY}\""),
        "font-family=\"DejaVu Sans, sans-serif\"",
    )
}

/// Writes the chart as a PNG of 800 x 450 pixels (atomically, through a rename).
pub fn line_chart_png(
    path: &Path,
    title: &str,
    labels: (&str, &str),
    series: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
) -> Result<(), String> {
    let (w, h) = (800u32, 450u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    draw(&mut buf, (w, h), title, labels, series, log_y)?;
    let img = mio_stdlib::image::Image {
        width: w as usize,
        height: h as usize,
        data: buf,
    };
    img.save_png(path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_chart_draws_its_curves_and_text_on_white() {
        let series = vec![
            (
                "stage 1".to_string(),
                (1..=100).map(|i| (i as f64, 1.0 / i as f64)).collect(),
            ),
            (
                "stage 2".to_string(),
                vec![(100.0, 0.02), (200.0, f64::NAN), (300.0, 0.01)],
            ),
        ];
        let (w, h) = (400u32, 300u32);
        let mut buf = vec![0u8; (w * h * 3) as usize];
        draw(
            &mut buf,
            (w, h),
            "Training loss",
            ("iteration", "L1"),
            &series,
            true,
        )
        .unwrap();
        let px: Vec<&[u8]> = buf.chunks_exact(3).collect();
        let white = px.iter().filter(|p| p == &&[255, 255, 255]).count();
        let first = px.iter().filter(|p| p == &&[0x1f, 0x77, 0xb4]).count();
        let second = px.iter().filter(|p| p == &&[0xd6, 0x27, 0x28]).count();
        let dark = px.iter().filter(|p| p.iter().all(|&c| c < 80)).count();
        assert!(white > px.len() / 2, "mostly white background");
        assert!(
            first > 100 && second > 20,
            "both curves drawn: {first}, {second}"
        );
        // Text (title, ticks, axis names) and axes are dark pixels from the bundled font.
        assert!(dark > 500, "{dark} dark pixels");
        // No series at all still gives a valid, empty chart.
        draw(&mut buf, (w, h), "nothing", ("x", "y"), &[], false).unwrap();
    }

    #[test]
    fn the_svg_has_its_curves_text_and_legend() {
        let series = vec![
            ("a".to_string(), vec![(0.0, 1.0), (10.0, 0.1)]),
            (
                "b <c>".to_string(),
                vec![(0.0, 0.5), (5.0, f64::NAN), (10.0, 0.2)],
            ),
        ];
        let s = line_chart_svg("loss", ("step", "L1"), &series, true).unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..40.min(s.len())]);
        assert!(s.contains("b &lt;c&gt;"), "the legend escapes its names");
        let texts: Vec<&str> = s
            .split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split("</text>").next()?.trim()))
            .collect();
        for want in ["loss", "step", "L1", "a"] {
            assert!(texts.contains(&want), "no `{want}` in {texts:?}");
        }
        assert!(
            s.contains("#1F77B4") || s.contains("#1f77b4"),
            "the first curve's colour"
        );
        assert!(
            s.contains("#D62728") || s.contains("#d62728"),
            "the second curve's colour"
        );
        assert!(!s.contains("mio-sans"), "a font family browsers know");
        // An empty chart is still a valid document.
        let e = line_chart_svg("nothing", ("x", "y"), &[], false).unwrap();
        assert!(e.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn a_scatter_draws_a_dot_per_point_in_its_group_colour() {
        let groups = vec![
            (
                "noise".to_string(),
                vec![(0.0, 0.0), (1.0, 0.5), (2.0, 1.0)],
            ),
            ("rain".to_string(), vec![(-1.0, 2.0), (f64::NAN, 1.0)]),
        ];
        let s = scatter_svg("Prompts", ("first", "second"), &groups).unwrap();
        assert!(s.trim_end().ends_with("</svg>"));
        // Three dots of the first colour, one of the second (the NaN point is left out).
        let dots = |colour: &str| {
            s.split("<circle")
                .skip(1)
                .filter(|c| {
                    c.split("/>")
                        .next()
                        .unwrap_or("")
                        .to_ascii_lowercase()
                        .contains(colour)
                })
                .count()
        };
        assert_eq!(dots("#1f77b4"), 3, "{s}");
        assert_eq!(dots("#d62728"), 1, "{s}");
        for want in ["Prompts", "first", "second", "noise", "rain"] {
            assert!(s.contains(want), "no `{want}`");
        }
    }

    #[test]
    fn the_png_is_written_and_decodes() {
        let dir = std::env::temp_dir().join(format!("mio-png-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("loss.png");
        let series = vec![("loss".to_string(), vec![(0.0, 0.5), (10.0, 0.1)])];
        line_chart_png(&path, "loss", ("step", "L1"), &series, false).unwrap();
        let img = mio_stdlib::image::load(&path).unwrap().image;
        assert_eq!((img.width, img.height), (800, 450));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
