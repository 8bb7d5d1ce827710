//! Small self-contained SVG line charts (loss curves, sweep curves), readable in any browser
//! and embedded as they are in report.html.

use std::fmt::Write as _;

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        format!("{:.0}", v)
    } else if v.abs() >= 1.0 {
        format!("{:.2}", v)
    } else {
        format!("{:.2e}", v)
    }
}

/// A chart of named series of (x, y) points; `log_y` plots log10(y) (positive values only).
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
) -> String {
    let (w, h) = (640.0, 360.0);
    let (l, r, t, b) = (70.0, 150.0, 30.0, 45.0);
    let ty = |y: f64| if log_y { y.max(1e-12).log10() } else { y };
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        if !y.is_finite() {
            continue;
        }
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(ty(y));
        y1 = y1.max(ty(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        y1 = y0 + 1.0;
    }
    let px = |x: f64| l + (x - x0) / (x1 - x0) * (w - l - r);
    let py = |y: f64| h - b - (ty(y) - y0) / (y1 - y0) * (h - t - b);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{}\" y=\"18\" font-size=\"13\" text-anchor=\"middle\">{}</text>",
        (w - r + l) / 2.0,
        escape(title)
    );
    let _ = write!(
        s,
        "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"black\"/>",
        h - b,
        w - r,
        h - b,
        h - b
    );
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let xv = x0 + f * (x1 - x0);
        let yv = y0 + f * (y1 - y0);
        let shown_y = if log_y { 10f64.powf(yv) } else { yv };
        let (xp, yp) = (l + f * (w - l - r), h - b - f * (h - t - b));
        let _ = write!(
            s,
            "<text x=\"{xp}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <line x1=\"{l}\" y1=\"{yp}\" x2=\"{}\" y2=\"{yp}\" stroke=\"#ddd\"/>",
            h - b + 15.0,
            nice(xv),
            l - 5.0,
            yp + 4.0,
            nice(shown_y),
            w - r
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text x=\"14\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">{}</text>",
        (w - r + l) / 2.0,
        h - 8.0,
        escape(x_label),
        (h - b + t) / 2.0,
        (h - b + t) / 2.0,
        escape(y_label)
    );
    for (k, (name, p)) in series.iter().enumerate() {
        let c = COLOURS[k % COLOURS.len()];
        let d: Vec<String> = p
            .iter()
            .filter(|(_, y)| y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        if !d.is_empty() {
            let _ = write!(
                s,
                "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\" points=\"{}\"/>",
                d.join(" ")
            );
        }
        let ly = t + 14.0 * k as f64 + 10.0;
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"3\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            w - r + 10.0,
            ly - 4.0,
            w - r + 25.0,
            ly,
            escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_one_polyline_per_series_inside_the_plot() {
        let s = line_chart(
            "loss",
            "step",
            "L1",
            &[
                ("a".into(), vec![(0.0, 1.0), (10.0, 0.1)]),
                ("b <c>".into(), vec![(0.0, 0.5), (10.0, 0.2)]),
            ],
            true,
        );
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("b &lt;c&gt;"));
        // Every point lies inside the plot area.
        for pts in s.split("points=\"").skip(1) {
            for p in pts.split('"').next().unwrap().split(' ') {
                let (x, y) = p.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!(
                    (70.0..=490.0).contains(&x) && (30.0..=315.0).contains(&y),
                    "{x},{y}"
                );
            }
        }
    }
}
