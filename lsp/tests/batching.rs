//! Edits that arrive together are analysed once, at the latest text; a request made stale by a
//! later edit is answered `ContentModified`, a cancelled one `RequestCanceled`. Every message
//! is queued before the server starts, so the server sees them as one batch whatever the
//! machine's speed.

mod common;

use lsp_server::{Connection, Message, Notification, Request, RequestId};
use serde_json::json;

#[test]
fn a_burst_of_edits_is_analysed_once_and_stale_requests_are_not_served() {
    let (server, client) = Connection::memory();
    let send = |m: Message| client.sender.send(m).unwrap();
    let req = |id: i32, method: &str, params: serde_json::Value| {
        Message::Request(Request::new(RequestId::from(id), method.into(), params))
    };
    let note = |method: &str, params: serde_json::Value| {
        Message::Notification(Notification::new(method.into(), params))
    };
    let uri = "file:///tmp/mio-batch/b.mio";
    send(req(1, "initialize", json!({"capabilities": {}})));
    send(note("initialized", json!({})));
    let mut text = String::from("use paper\nworkflow w {\n  seed = 1\n}\n");
    send(note(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "mio", "version": 0, "text": text}}),
    ));
    let hover = |id: i32| {
        req(
            id,
            "textDocument/hover",
            json!({"textDocument": {"uri": uri}, "position": {"line": 2, "character": 3}}),
        )
    };
    // A request, then 30 keystrokes: the request is stale.
    send(hover(2));
    for k in 0..30 {
        text.insert(text.find("seed = 1").unwrap() + 8, '0');
        send(note(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": k + 1}, "contentChanges": [{"text": text}]}),
        ));
    }
    // A cancelled request, then one that is served, on the latest text.
    send(hover(3));
    send(note("$/cancelRequest", json!({"id": 3})));
    send(hover(4));
    send(req(5, "shutdown", json!(null)));
    send(note("exit", json!(null)));
    let thread = std::thread::spawn(move || mio_lsp::run(server).unwrap());
    thread.join().unwrap();

    let mut published = vec![];
    let mut answers = std::collections::HashMap::new();
    while let Ok(m) = client.receiver.try_recv() {
        match m {
            Message::Notification(n) if n.method == "textDocument/publishDiagnostics" => {
                published.push(n.params["version"].as_i64().unwrap())
            }
            Message::Response(r) => {
                answers.insert(r.id.to_string(), r);
            }
            _ => {}
        }
    }
    // Analysed once, at version 30 (the first version never analysed on its own either).
    assert_eq!(published, vec![30], "{published:?}");
    let code = |id: &str| answers[id].error.as_ref().map(|e| e.code);
    assert_eq!(code("2"), Some(-32801), "stale: ContentModified");
    assert_eq!(code("3"), Some(-32800), "cancelled: RequestCanceled");
    let served = answers["4"].result.as_ref().unwrap();
    assert!(
        served["contents"]["value"]
            .as_str()
            .unwrap()
            .contains("seed"),
        "{served}"
    );
    assert!(answers["5"].error.is_none());
}

#[test]
fn completion_in_a_task_list_offers_tasks_not_numbers() {
    let uri = common::uri_of(&common::repo("workflows/x.mio"));
    let mut s = common::TestServer::start(false);
    let text = "use paper\nworkflow w {\n  data d = images(\"x\")\n  model m = srresnet()\n  train m on d { tasks = [ }\n}\n";
    s.open(&uri, text);
    let col = text.lines().nth(4).unwrap().find('[').unwrap() as u32 + 1;
    let labels_at = |s: &mut common::TestServer, col: u32| -> Vec<String> {
        s.at("textDocument/completion", &uri, 4, col)
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["label"].as_str().unwrap().to_string())
            .collect()
    };
    let labels = labels_at(&mut s, col);
    assert!(labels.iter().any(|l| l == "paper.noise"), "{labels:?}");
    assert!(
        !labels.iter().any(|l| l.contains("iters_")),
        "a number offered as a task: {labels:?}"
    );
    // After `paper.` too.
    s.change(&uri, 1, &text.replace("tasks = [ }", "tasks = [paper. }"));
    let labels = labels_at(&mut s, col + 6);
    assert!(labels.iter().any(|l| l == "noise"), "{labels:?}");
    assert!(!labels.iter().any(|l| l.contains("iters_")), "{labels:?}");
}
