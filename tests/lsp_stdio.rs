//! `mio lsp` over real stdin and stdout, fed what a broken client might send: a body that is
//! not JSON, a JSON array, an object that is no message, a header without Content-Length.
//! Each gets an error answer (or is dropped) and the server goes on answering.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

fn frame(body: &str) -> String {
    format!("Content-Length: {}\r\n\r\n{body}", body.len())
}

fn read_message(r: &mut impl BufRead) -> serde_json::Value {
    let mut len = 0;
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "the server closed its output"
        );
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            len = v.parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// The next message that is not a notification.
fn answer(r: &mut impl BufRead) -> serde_json::Value {
    loop {
        let m = read_message(r);
        if m.get("method").is_none() {
            return m;
        }
    }
}

#[test]
fn malformed_messages_get_error_answers_and_the_server_goes_on() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mio"))
        .arg("lsp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut send = |s: &str| {
        input.write_all(s.as_bytes()).unwrap();
        input.flush().unwrap();
    };
    send(&frame(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{}}}"#,
    ));
    assert!(answer(&mut output)["result"]["capabilities"].is_object());
    send(&frame(
        r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#,
    ));

    send(&frame("{this is not json"));
    let a = answer(&mut output);
    assert_eq!(a["error"]["code"], -32700, "{a}");
    assert!(a["id"].is_null());

    send(&frame(r#"[{"jsonrpc":"2.0","id":2,"method":"shutdown"}]"#));
    assert_eq!(answer(&mut output)["error"]["code"], -32600);

    send(&frame(r#"{"jsonrpc":"2.0","id":3,"params":{}}"#));
    let a = answer(&mut output);
    assert_eq!(
        (a["id"].clone(), a["error"]["code"].clone()),
        (3.into(), (-32600).into())
    );

    // A header block without Content-Length: dropped; the next message is read.
    send("X-Unknown: 1\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"lost\"}");
    let text = "use paper\nworkflow w {\n  seed = 1\n}\n";
    send(&frame(
        &serde_json::json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
            "textDocument": {"uri": "file:///tmp/w.mio", "languageId": "mio", "version": 1, "text": text}}})
        .to_string(),
    ));
    send(&frame(
        r#"{"jsonrpc":"2.0","id":5,"method":"textDocument/hover","params":{"textDocument":{"uri":"file:///tmp/w.mio"},"position":{"line":2,"character":3}}}"#,
    ));
    let a = answer(&mut output);
    assert_eq!(a["id"], 5, "{a}");
    assert!(a["result"]["contents"].is_object(), "{a}");

    send(&frame(r#"{"jsonrpc":"2.0","id":6,"method":"shutdown"}"#));
    assert_eq!(answer(&mut output)["id"], 6);
    send(&frame(r#"{"jsonrpc":"2.0","method":"exit"}"#));
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("without Content-Length"), "{err}");
}
