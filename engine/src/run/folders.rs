//! The workflow's report folder (`<output>/<workflow>/`): a finished report copied in, and the
//! banner on a published report when a later run did not finish.

use std::path::{Path, PathBuf};

use petgraph::graph::NodeIndex;

use crate::job::Job;
use crate::plan::Plan;

/// Each report node of the plan and its workflow's (or matrix's) folder under `out`.
pub(crate) fn report_folders(plan: &Plan, out: &Path) -> Vec<(NodeIndex, PathBuf)> {
    plan.graph
        .node_indices()
        .filter_map(|i| match &plan.graph[i].job {
            Job::Report(r) => Some((i, out.join(r.folder_name()))),
            _ => None,
        })
        .collect()
}

/// Writes a file of the folder through a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    mio_stdlib::fsio::write_atomic(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Copies a finished report node's files into the workflow's folder (each file atomically).
pub(crate) fn publish(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for e in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        if e.file_name() == crate::run::store::DONE_FILE {
            continue;
        }
        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            let bytes = std::fs::read(e.path()).map_err(|e| e.to_string())?;
            write_atomic(&to.join(e.file_name()), &bytes)?;
        }
    }
    Ok(())
}

const OUTDATED_START: &str = "<!-- mio: outdated -->";
const OUTDATED_END: &str = "<!-- /mio: outdated -->";

/// After a run that failed or was stopped, says at the top of the workflow's `report.md` and
/// `report.html` (when an earlier run wrote them) that they do not show the file as it is now,
/// and why. The earlier numbers stay; the next successful run replaces both files.
pub(crate) fn mark_outdated(folder: &Path, why: &str) {
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let strip = |text: &str| -> String {
        match (text.find(OUTDATED_START), text.find(OUTDATED_END)) {
            (Some(a), Some(b)) if b > a => {
                let rest = &text[b + OUTDATED_END.len()..];
                format!("{}{}", &text[..a], rest.strip_prefix('\n').unwrap_or(rest))
            }
            _ => text.to_string(),
        }
    };
    let md_path = folder.join("report.md");
    if let Ok(md) = std::fs::read_to_string(&md_path) {
        let banner = format!(
            "{OUTDATED_START}\n> **Outdated.** The latest `mio run` (unix time {when}) did not \
             finish: {}. This report is from an earlier run and may not match the file as it \
             is now; run again to update it.\n{OUTDATED_END}\n",
            why.replace('\n', " ")
        );
        let _ = write_atomic(&md_path, format!("{banner}{}", strip(&md)).as_bytes());
    }
    let html_path = folder.join("report.html");
    if let Ok(html) = std::fs::read_to_string(&html_path) {
        let html = strip(&html);
        let banner = format!(
            "{OUTDATED_START}<p style=\"background:#fff3cd;padding:8px\"><b>Outdated.</b> The \
             latest <code>mio run</code> did not finish: {}. This report is from an earlier run \
             and may not match the file as it is now.</p>{OUTDATED_END}\n",
            crate::run::render::html::escape(why)
        );
        let at = html.find("<body>").map(|i| i + "<body>".len()).unwrap_or(0);
        let _ = write_atomic(
            &html_path,
            format!("{}{banner}{}", &html[..at], &html[at..]).as_bytes(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outdated_report_says_so_once_and_keeps_its_numbers() {
        let dir = std::env::temp_dir().join(format!("mio-outdated-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("report.md"), "# tiny\n| a | 21.5 |\n").unwrap();
        std::fs::write(
            dir.join("report.html"),
            "<html><body><h1>tiny</h1></body></html>",
        )
        .unwrap();
        mark_outdated(&dir, "tiny/plain: the loss became NaN");
        mark_outdated(&dir, "tiny/ep: <stopped>");
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert_eq!(md.matches("**Outdated.**").count(), 1, "{md}");
        assert!(
            md.contains("tiny/ep: <stopped>") && !md.contains("NaN"),
            "{md}"
        );
        assert!(md.ends_with("# tiny\n| a | 21.5 |\n"), "{md}");
        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        assert_eq!(html.matches("Outdated.").count(), 1, "{html}");
        assert!(html.contains("tiny/ep: &lt;stopped&gt;") && html.contains("<h1>tiny</h1>"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
