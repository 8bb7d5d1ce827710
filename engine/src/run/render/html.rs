//! `report.html`: the same report self-contained, charts inline (SVG) and images embedded.

use std::fmt::Write as _;

use super::doc::{self, Document, Table};
use crate::run::artifact::SweepResults;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Standard base64 (for images embedded in the HTML).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

pub fn table(t: &Table) -> String {
    let mut s = String::from("<table><tr>");
    let _ = write!(s, "<th>{}</th>", escape(&t.metric.to_uppercase()));
    for task in &t.tasks {
        let _ = write!(s, "<th>{}</th>", escape(task));
    }
    s.push_str("<th>Avg</th>");
    if let Some(b) = t.baseline {
        let _ = write!(s, "<th>vs {}</th>", escape(&t.rows[b].label));
    }
    s.push_str("</tr>");
    for row in &t.rows {
        let _ = write!(s, "<tr><td>{}</td>", escape(&row.label));
        for v in &row.values {
            let _ = write!(s, "<td>{}</td>", doc::value(*v, &t.metric));
        }
        let _ = write!(s, "<td><b>{}</b></td>", doc::value(row.avg(), &t.metric));
        if t.baseline.is_some() {
            let _ = write!(s, "<td>{}</td>", doc::delta(t.delta(row), &t.metric));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>\n");
    s
}

pub fn render(d: &Document) -> String {
    let title = escape(&d.title);
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}</style></head><body><h1>{title}</h1>\n"
    );
    if !d.warnings.is_empty() {
        html.push_str("<p><b>Warnings</b></p><ul>");
        for w in &d.warnings {
            let _ = write!(html, "<li>{}</li>", escape(w));
        }
        html.push_str("</ul>\n");
    }
    for t in &d.tables {
        let _ = write!(
            html,
            "<h2>{} on {}</h2>{}",
            escape(&t.metric.to_uppercase()),
            escape(&t.caption),
            table(t)
        );
    }
    for a in &d.accuracy {
        let _ = write!(html, "<p>{}</p>", escape(&doc::accuracy_line(a)));
    }
    if !d.prompts.is_empty() {
        let _ = write!(
            html,
            "<h2>What the prompts learn</h2><p>{}</p><table><tr><th>model</th><th>eval</th><th>images</th><th>tasks</th><th>CHI</th></tr>",
            escape(doc::PROMPTS_INTRO)
        );
        for p in &d.prompts {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&p.label),
                escape(&p.eval),
                p.images,
                p.tasks,
                escape(&doc::chi(p.chi))
            );
        }
        html.push_str("</table>");
        for p in &d.prompts {
            html.push_str(&p.figure.svg);
            if let Some(c) = &p.confusion {
                let _ = write!(
                    html,
                    "<p>Task classifier of {} on {}: true task (rows) against its guess (columns).</p><table><tr><th>true \\ guessed</th>",
                    escape(&p.label),
                    escape(&p.eval)
                );
                for g in &c.guessed {
                    let _ = write!(html, "<th>{}</th>", escape(g));
                }
                html.push_str("</tr>");
                for (t, row) in c.truth.iter().zip(&c.counts) {
                    let _ = write!(html, "<tr><td>{}</td>", escape(t));
                    for n in row {
                        let _ = write!(html, "<td>{n}</td>");
                    }
                    html.push_str("</tr>");
                }
                html.push_str("</table>");
            }
        }
    }
    if let Some(f) = &d.loss {
        let _ = write!(html, "<h2>Training loss</h2>{}", f.svg);
    }
    for s in &d.stages {
        let _ = write!(
            html,
            "<h2>PSNR after each stage: {}</h2>{}",
            escape(&s.model),
            s.figure.svg
        );
    }
    for s in &d.sweeps {
        match &s.results {
            SweepResults::Param {
                sweep, task, param, ..
            } => {
                let svg = s.figure.as_ref().map(|f| f.svg.as_str()).unwrap_or("");
                let _ = write!(
                    html,
                    "<h2>{}: {} at each {}</h2>{svg}",
                    escape(sweep),
                    escape(task),
                    escape(param)
                );
            }
            SweepResults::Prompts {
                sweep, from, to, ..
            } => {
                let _ = write!(
                    html,
                    "<h2>Prompt interpolation {}: {} to {}</h2>",
                    escape(sweep),
                    escape(from),
                    escape(to)
                );
                for p in &s.strips {
                    let _ = write!(
                        html,
                        "<p><img src=\"data:image/png;base64,{}\"></p>",
                        base64(&p.png)
                    );
                }
            }
        }
    }
    for g in &d.grids {
        for grid in &g.grids {
            let _ = write!(
                html,
                "<p><b>{}</b> ({})<br><img src=\"data:image/png;base64,{}\"></p>",
                escape(&grid.task),
                escape(&grid.caption),
                base64(&grid.picture.png)
            );
        }
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }
}
