//! `mio watch`: a save that breaks the file prints its diagnostics; a save that changes an
//! eval's metrics reruns that eval and the report, nothing else.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data");

fn wait_for(rx: &mpsc::Receiver<String>, what: &str, seen: &mut Vec<String>) -> String {
    let start = Instant::now();
    loop {
        let left = Duration::from_secs(120).saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(what) {
                    return line;
                }
            }
            Err(_) => panic!("no `{what}` from mio watch; it said:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn watch_reruns_what_an_edit_changes_and_reports_errors() {
    let dir = std::env::temp_dir().join(format!("mio-watch-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("w.mio");
    let text = format!(
        r#"use paper

workflow w {{
  data train = images("{DATA}/train", patch = 24px, batch = 2)
  data test = images("{DATA}/test", limit = 1)
  model net = srresnet(channels = 4, blocks = 1)
  train net on train {{ tasks = [paper.noise], iters = 3, ema = 0 }}
  eval net on test as a {{ tasks = [paper.noise] }}
  eval net on test as b {{ tasks = [paper.noise], metrics = [psnr()] }}
}}
"#
    );
    std::fs::write(&file, &text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mio"))
        .arg("watch")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send(l);
        }
    });
    let mut seen = vec![];
    let first = wait_for(&rx, "; ran: ", &mut seen);
    assert!(
        first.contains("w/net") && first.contains("w/a") && first.contains("w/report"),
        "{}",
        seen.join("\n")
    );

    // A mistake: its diagnostic, and no run.
    std::fs::write(&file, text.replace("iters = 3", "iters = three")).unwrap();
    wait_for(&rx, "error(s); waiting for the next save", &mut seen);
    // The diagnostic comes on stderr, read by another thread: it may arrive after that line.
    if !seen.iter().any(|l| l.contains("mio::E")) {
        wait_for(&rx, "mio::E", &mut seen);
    }

    // One eval's metrics: that eval and the report.
    std::fs::write(
        &file,
        text.replace("metrics = [psnr()]", "metrics = [psnr(crop = 2)]"),
    )
    .unwrap();
    let ran = wait_for(&rx, "; ran: ", &mut seen);
    let _ = child.kill();
    let _ = child.wait();
    let names: Vec<&str> = ran.split("ran: ").nth(1).unwrap().split(", ").collect();
    assert_eq!(names, ["w/b", "w/report"], "{}", seen.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
