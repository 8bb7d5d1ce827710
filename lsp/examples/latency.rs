//! Time from `didChange` to `publishDiagnostics` on a generated 2,000-line file (a benchmark,
//! not a test): `cargo run --release -p mio-lsp --example latency [LINES] [EDITS]`.
use std::time::{Duration, Instant};

use lsp_server::{Connection, Message, Notification, Request, RequestId};
use serde_json::json;

fn generate(lines: usize) -> String {
    let mut s = String::from("use paper\n\n");
    let tasks = lines / 5;
    for i in 0..tasks {
        s.push_str(&format!(
            "task t{i} = noise(sigma = {}..{})\n",
            1 + i % 40,
            11 + i % 40
        ));
    }
    s.push_str("\nworkflow big {\n  data train = images(\"x\", patch = 64px)\n  data test = images(\"y\")\n");
    let mut i = 0;
    while s.lines().count() + 8 < lines {
        let (a, b) = (i % tasks, (i + 1) % tasks);
        s.push_str(&format!(
            "  model m{i} = srresnet(channels = 16, blocks = 2)\n  train m{i} on train {{\n    strategy = sequential(order = [t{a}, t{b}])\n    iters = [100, 200]\n  }}\n  eval m{i} on test as e{i} {{ tasks = [t{a}, t{b}] }}\n\n"
        ));
        i += 1;
    }
    s.push_str("}\n");
    s
}

fn main() {
    let lines: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let edits: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let text = generate(lines);
    let (server, client) = Connection::memory();
    let thread = std::thread::spawn(move || mio_lsp::run(server).unwrap());
    let send = |m: Message| client.sender.send(m).unwrap();
    send(Message::Request(Request::new(
        RequestId::from(1),
        "initialize".into(),
        json!({"capabilities": {}}),
    )));
    let _ = client.receiver.recv().unwrap();
    send(Message::Notification(Notification::new(
        "initialized".into(),
        json!({}),
    )));
    let uri = "file:///tmp/latency.mio";
    let wait_diagnostics = || loop {
        if let Message::Notification(n) = client
            .receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap()
        {
            if n.method == "textDocument/publishDiagnostics" {
                return n.params["diagnostics"].as_array().unwrap().len();
            }
        }
    };
    send(Message::Notification(Notification::new(
        "textDocument/didOpen".into(),
        json!({"textDocument": {"uri": uri, "languageId": "mio", "version": 0, "text": text}}),
    )));
    assert_eq!(wait_diagnostics(), 0, "the generated file is valid");
    let mut times = vec![];
    for k in 0..edits {
        // Alternate a valid edit and one with an error in the middle of the file.
        let edited = if k % 2 == 0 {
            text.replacen("blocks = 2", "blocks = 3", 1)
        } else {
            text.replacen("blocks = 2", "blocks = -3", 1)
        };
        let start = Instant::now();
        send(Message::Notification(Notification::new(
            "textDocument/didChange".into(),
            json!({"textDocument": {"uri": uri, "version": k + 1}, "contentChanges": [{"text": edited}]}),
        )));
        let n = wait_diagnostics();
        times.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(n, k % 2, "edit {k}");
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    println!(
        "{} lines, {edits} edits: didChange -> publishDiagnostics p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        text.lines().count(),
        q(0.5),
        q(0.95),
        times[times.len() - 1]
    );
    send(Message::Request(Request::new(
        RequestId::from(2),
        "shutdown".into(),
        json!(null),
    )));
    let _ = client.receiver.recv();
    send(Message::Notification(Notification::new(
        "exit".into(),
        json!(null),
    )));
    thread.join().unwrap();
}
