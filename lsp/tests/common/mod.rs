//! The in-memory test client shared by the language server's tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use lsp_server::{Connection, Message, Notification, Request, RequestId};
use serde_json::{json, Value};

pub struct TestServer {
    pub client: Connection,
    thread: Option<JoinHandle<()>>,
    next_id: i32,
}

impl TestServer {
    pub fn start(utf8: bool) -> TestServer {
        let (server, client) = Connection::memory();
        let thread = std::thread::spawn(move || mio_lsp::run(server).expect("server ran"));
        let mut t = TestServer {
            client,
            thread: Some(thread),
            next_id: 0,
        };
        let caps = if utf8 {
            json!({"general": {"positionEncodings": ["utf-8", "utf-16"]}})
        } else {
            json!({})
        };
        let init = t.request("initialize", json!({"capabilities": caps}));
        assert!(init["capabilities"]["hoverProvider"].as_bool().unwrap());
        t.notify("initialized", json!({}));
        t
    }

    pub fn notify(&self, method: &str, params: Value) {
        self.client
            .sender
            .send(Message::Notification(Notification::new(
                method.into(),
                params,
            )))
            .unwrap();
    }

    /// Sends a request and returns its result, skipping notifications on the way (an error
    /// answer panics with its message).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = RequestId::from(self.next_id);
        self.client
            .sender
            .send(Message::Request(Request::new(
                id.clone(),
                method.into(),
                params,
            )))
            .unwrap();
        loop {
            match self
                .client
                .receiver
                .recv_timeout(Duration::from_secs(30))
                .expect("an answer")
            {
                Message::Response(r) if r.id == id => {
                    if let Some(e) = r.error {
                        panic!("{method} failed: {}", e.message);
                    }
                    return r.result.unwrap_or(Value::Null);
                }
                _ => {}
            }
        }
    }

    /// The next published diagnostics for `uri`.
    pub fn diagnostics(&self, uri: &str) -> Value {
        loop {
            match self
                .client
                .receiver
                .recv_timeout(Duration::from_secs(30))
                .expect("diagnostics")
            {
                Message::Notification(n)
                    if n.method == "textDocument/publishDiagnostics" && n.params["uri"] == uri =>
                {
                    return n.params["diagnostics"].clone();
                }
                _ => {}
            }
        }
    }

    pub fn open(&self, uri: &str, text: &str) -> Value {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "mio", "version": 1, "text": text}}),
        );
        self.diagnostics(uri)
    }

    pub fn change(&self, uri: &str, version: i32, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]}),
        );
    }

    pub fn at(&mut self, method: &str, uri: &str, line: u32, character: u32) -> Value {
        let mut params = json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}});
        if method == "textDocument/references" {
            params["context"] = json!({"includeDeclaration": true});
        }
        self.request(method, params)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        if let Some(t) = self.thread.take() {
            t.join().expect("the server exits cleanly");
        }
    }
}

pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

pub fn uri_of(path: &Path) -> String {
    mio_lsp::document::path_to_uri(path)
        .unwrap()
        .as_str()
        .to_string()
}

/// Line and UTF-16 column of the `k`-th occurrence of `needle` in `text`, `after` bytes into it.
pub fn position_of(text: &str, needle: &str, k: usize, after: usize) -> (u32, u32) {
    let off = text
        .match_indices(needle)
        .nth(k)
        .unwrap_or_else(|| panic!("{needle} #{k} not in text"))
        .0
        + after;
    let line = text[..off].matches('\n').count();
    let col = text[..off]
        .rsplit('\n')
        .next()
        .unwrap()
        .encode_utf16()
        .count();
    (line as u32, col as u32)
}

/// Every `.mio` file the repository ships (workflows, the paper's, examples), sorted.
pub fn shipped_files() -> Vec<PathBuf> {
    let mut files = vec![];
    for dir in ["workflows", "workflows/paper", "examples"] {
        for e in std::fs::read_dir(repo(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "mio") {
                files.push(e.path());
            }
        }
    }
    files.sort();
    files
}
