//! Time from `didChange` to `publishDiagnostics` on a generated 2,000-line file; then a burst
//! of 54 keystrokes sent back to back and the hover that follows them; then semantic tokens of
//! a generated 1 MB file (a benchmark, not a test):
//! `cargo run --release -p mio-lsp --example latency [LINES] [EDITS]`.
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
    // A burst of keystrokes sent back to back, then a hover: only the latest text needs
    // analysing.
    let start = Instant::now();
    let mut typed = text.clone();
    let at = typed.find("iters = [100, 200]").unwrap() + "iters = [100, 200".len();
    for k in 0..54 {
        typed.insert(at + k, '0');
        send(Message::Notification(Notification::new(
            "textDocument/didChange".into(),
            json!({"textDocument": {"uri": uri, "version": 1000 + k}, "contentChanges": [{"text": typed}]}),
        )));
    }
    send(Message::Request(Request::new(
        RequestId::from(3),
        "textDocument/hover".into(),
        json!({"textDocument": {"uri": uri}, "position": {"line": 2, "character": 6}}),
    )));
    let mut published = 0;
    loop {
        match client
            .receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap()
        {
            Message::Response(r) if r.id == RequestId::from(3) => break,
            Message::Notification(n) if n.method == "textDocument/publishDiagnostics" => {
                published += 1
            }
            _ => {}
        }
    }
    println!(
        "54 keystrokes back to back, then a hover: answered {:.1} ms after the first ({published} analyses published before it)",
        start.elapsed().as_secs_f64() * 1e3
    );
    // Semantic tokens of a 1 MB file.
    let big = generate(lines * 1_000_000 / text.len().max(1));
    let big_uri = "file:///tmp/latency-big.mio";
    send(Message::Notification(Notification::new(
        "textDocument/didOpen".into(),
        json!({"textDocument": {"uri": big_uri, "languageId": "mio", "version": 0, "text": big}}),
    )));
    let start = Instant::now();
    send(Message::Request(Request::new(
        RequestId::from(4),
        "textDocument/semanticTokens/full".into(),
        json!({"textDocument": {"uri": big_uri}}),
    )));
    let n = loop {
        if let Message::Response(r) = client
            .receiver
            .recv_timeout(Duration::from_secs(600))
            .unwrap()
        {
            if r.id == RequestId::from(4) {
                break r.result.unwrap()["data"].as_array().unwrap().len() / 5;
            }
        }
    };
    println!(
        "semantic tokens of a {:.2} MB file ({n} tokens), its analysis included: {:.0} ms",
        big.len() as f64 / 1e6,
        start.elapsed().as_secs_f64() * 1e3
    );
    let start = Instant::now();
    send(Message::Request(Request::new(
        RequestId::from(5),
        "textDocument/semanticTokens/full".into(),
        json!({"textDocument": {"uri": big_uri}}),
    )));
    loop {
        if let Message::Response(r) = client
            .receiver
            .recv_timeout(Duration::from_secs(600))
            .unwrap()
        {
            if r.id == RequestId::from(5) {
                break;
            }
        }
    }
    println!(
        "semantic tokens of the same file again (analysed): {:.0} ms",
        start.elapsed().as_secs_f64() * 1e3
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
