//! `mio watch FILE`: re-check on every save and print the diagnostics; when the file is clean,
//! say which steps are stale and why, stop the run in flight (a training stage saves its
//! checkpoint, so work whose key did not change continues where it was) and run again. What
//! did not change stays cached: editing a comment reruns nothing, an eval's metrics that eval
//! and the report, a stage's iterations that stage and what follows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use notify_debouncer_mini::new_debouncer;
use notify_debouncer_mini::notify::RecursiveMode;

type Running = (JoinHandle<()>, Arc<AtomicBool>);

fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[watch] {text}");
    let _ = out.flush();
}

/// One round: check, explain, and start a run (after stopping the one in flight).
fn round(file: &Path, set: &[String], running: &mut Option<Running>, style: mio_engine::Style) {
    let checked = match mio_engine::check_file(file, set) {
        Ok(c) => c,
        Err(e) => {
            say(&format!("cannot read {}: {e}", file.display()));
            return;
        }
    };
    if !checked.is_ok() {
        eprint!("{}", checked.render(style));
        say(&format!(
            "{} error(s); waiting for the next save",
            checked.diagnostics.len()
        ));
        return;
    }
    let plan = match mio_engine::plan(&checked) {
        Ok(p) => p,
        Err(d) => {
            eprint!(
                "{}",
                mio_engine::render(&[d], &checked.program.sources, style)
            );
            return;
        }
    };
    let base = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let stale = match mio_engine::run::status(&checked.workflows, &plan, &base) {
        Ok(s) => s.into_iter().filter(|s| !s.cached).collect::<Vec<_>>(),
        Err(e) => {
            say(&format!("{e}"));
            return;
        }
    };
    if let Some((handle, stop)) = running.take() {
        stop.store(true, Ordering::SeqCst);
        let _ = handle.join();
    }
    if stale.is_empty() {
        say("checked: ok; everything is up to date");
        return;
    }
    say(&format!("checked: ok; {} step(s) to run", stale.len()));
    for s in &stale {
        say(&format!("  {}: {}", s.name, s.why));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let options = mio_engine::run::Options {
        stop: stop.clone(),
        quiet: true,
        jobs: 1,
        // Another `mio run` in the same folder: wait for it (a change of the file stops the wait).
        wait_for_lock: true,
        isolate: None,
    };
    let handle = std::thread::spawn(move || {
        match mio_engine::run::run(&checked.workflows, &plan, &base, options) {
            Ok(s) => say(&format!(
                "done in {:.1} s; ran: {}",
                s.seconds,
                if s.ran.is_empty() {
                    "nothing".to_string()
                } else {
                    s.ran.join(", ")
                }
            )),
            Err(mio_engine::run::RunError::Interrupted { node }) => {
                say(&format!("stopped during {node}: the file changed"))
            }
            Err(e) => say(&format!("failed: {e}")),
        }
    });
    *running = Some((handle, stop));
}

pub fn watch(file: &Path, set: &[String], style: mio_engine::Style) -> Result<(), String> {
    let file: PathBuf = file.to_path_buf();
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = file.file_name().map(|n| n.to_os_string());
    let (tx, rx) = mpsc::channel();
    let mut debouncer = new_debouncer(Duration::from_millis(150), tx)
        .map_err(|e| format!("cannot watch files: {e}"))?;
    // The folder, not the file: editors save by writing a new file and renaming it over.
    debouncer
        .watcher()
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    say(&format!("watching {} (Ctrl-C to stop)", file.display()));
    let mut running: Option<Running> = None;
    let mut last = std::fs::read(&file).ok();
    round(&file, set, &mut running, style);
    for events in rx {
        let Ok(events) = events else {
            continue;
        };
        let ours = events
            .iter()
            .any(|e| e.path.file_name().map(|n| n.to_os_string()) == name);
        // Only a change of the text counts: reading the file, touching it or saving it
        // unchanged also raise events.
        let now = std::fs::read(&file).ok();
        if ours && now.is_some() && now != last {
            last = now;
            round(&file, set, &mut running, style);
        }
    }
    Ok(())
}
