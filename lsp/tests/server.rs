//! The language server end to end, over an in-memory connection: the initialize handshake,
//! opening and changing documents, and each feature's answers (snapshots of the JSON).

mod common;

use common::{repo, uri_of, TestServer};
use lsp_server::{Message, Request, RequestId};
use serde_json::{json, Value};

/// Line and UTF-16 column of the first occurrence of `needle` (plus `after` characters).
fn pos(text: &str, needle: &str, after: usize) -> (u32, u32) {
    common::position_of(text, needle, 0, after)
}

fn labels(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap().to_string())
        .collect()
}

const DOC: &str = "use paper\n\ntask heavy = noise(sigma = 50..70)\n\nworkflow w {\n  data train = images(\"imgs\", patch = 64px)\n  model net = srresnet(channels = 32, prompt = explicit)\n  train net on train {\n    strategy = sequential(order = [paper.sr, heavy])\n    iters = 100\n  }\n  eval net on train { tasks = [heavy, paper.noise_out] }\n}\n";

#[test]
fn diagnostics_arrive_on_open_and_follow_changes() {
    let mut s = TestServer::start(false);
    let uri = "file:///tmp/mio-lsp-test/a.mio";
    let d = s.open(uri, "use paper\nworkflow w {\n  data d = images(\"x\", patch = 0)\n  model net = srresnet(chanels = 32)\n}\n");
    let codes: Vec<&str> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["mio::E022", "mio::E014"]);
    insta::assert_snapshot!(
        "diagnostics_on_open",
        serde_json::to_string_pretty(&d).unwrap()
    );
    s.change(uri, 2, DOC);
    assert_eq!(s.diagnostics(uri), json!([]));
    // Half-typed text still gets an answer, and a syntax error with a range on the right line.
    s.change(uri, 3, "use paper\nworkflow w {\n  data d = images(\n");
    let d = s.diagnostics(uri);
    assert_eq!(d[0]["code"], "mio::E001");
    let _ = s.at("textDocument/hover", uri, 2, 5);
}

#[test]
fn completion_knows_parameters_values_settings_and_names() {
    let mut s = TestServer::start(false);
    let uri = "file:///tmp/mio-lsp-test/c.mio";
    s.open(uri, DOC);
    // Inside srresnet( ... ): the parameters not given yet.
    let (l, c) = pos(DOC, "channels = 32, ", 15);
    let items = s.at("textDocument/completion", uri, l, c);
    assert_eq!(
        labels(&items),
        [
            "blocks",
            "init_scale",
            "weights",
            "param_key",
            "maps",
            "classifier"
        ]
    );
    insta::assert_snapshot!(
        "completion_params",
        serde_json::to_string_pretty(&items).unwrap()
    );
    // The value of `prompt =`: the prompt strategies.
    let (l, c) = pos(DOC, "prompt = explicit", 9);
    assert_eq!(
        labels(&s.at("textDocument/completion", uri, l, c)),
        ["none", "explicit", "adaptive"]
    );
    // Inside the train block: its settings not set yet.
    let (l, c) = pos(DOC, "    iters = 100\n", 16);
    let got = labels(&s.at("textDocument/completion", uri, l, c));
    assert!(
        got.contains(&"optimizer".to_string()) && !got.contains(&"iters".to_string()),
        "{got:?}"
    );
    // Task names inside a list of tasks, this file's and the prelude's.
    let (l, c) = pos(DOC, "tasks = [heavy", 9);
    let got = labels(&s.at("textDocument/completion", uri, l, c));
    assert!(
        got.contains(&"heavy".to_string()) && got.contains(&"paper.rain_out".to_string()),
        "{got:?}"
    );
    // After `paper.`: the prelude's names.
    let (l, c) = pos(DOC, "paper.noise_out", 6);
    let got = labels(&s.at("textDocument/completion", uri, l, c));
    assert!(
        got.contains(&"order_cnn".to_string()) && got.contains(&"lowlight".to_string()),
        "{got:?}"
    );
    // Model names after `eval `.
    let text = format!("{}\n", DOC.trim_end().trim_end_matches('}')) + "  eval \n}\n";
    s.change(uri, 2, &text);
    s.diagnostics(uri);
    let (l, c) = pos(&text, "  eval \n", 7);
    assert_eq!(labels(&s.at("textDocument/completion", uri, l, c)), ["net"]);
    // Nothing inside comments and strings.
    let (l, c) = pos(DOC, "\"imgs\"", 2);
    assert_eq!(s.at("textDocument/completion", uri, l, c), json!([]));
}

#[test]
fn hover_shows_docs_signatures_and_effective_values() {
    let mut s = TestServer::start(false);
    let uri = "file:///tmp/mio-lsp-test/h.mio";
    s.open(uri, DOC);
    let text = |v: Value| v["contents"]["value"].as_str().unwrap_or("").to_string();
    let (l, c) = pos(DOC, "srresnet(", 2);
    let h = text(s.at("textDocument/hover", uri, l, c));
    assert!(
        h.contains("srresnet(channels: int = 64") && h.contains("1.2 M parameters"),
        "{h}"
    );
    let (l, c) = pos(DOC, "channels = 32", 1);
    let h = text(s.at("textDocument/hover", uri, l, c));
    assert!(
        h.contains("channels: int = 64") && h.contains("Allowed: >= 1"),
        "{h}"
    );
    // A model: as written, and with every default filled in.
    let (l, c) = pos(DOC, "train net", 7);
    let h = s.at("textDocument/hover", uri, l, c);
    insta::assert_snapshot!("hover_model", text(h));
    // A prelude task, qualified.
    let (l, c) = pos(DOC, "paper.noise_out", 8);
    let h = text(s.at("textDocument/hover", uri, l, c));
    assert!(
        h.contains("task noise_out = noise(sigma = 50..70)") && h.contains("From `paper`"),
        "{h}"
    );
    // A setting of a block.
    let (l, c) = pos(DOC, "iters = 100", 1);
    assert!(text(s.at("textDocument/hover", uri, l, c)).contains("one per stage"));
}

#[test]
fn definition_and_references_resolve_like_the_checker() {
    let mut s = TestServer::start(false);
    let path = repo("tests/fixtures/valid/custom_tasks.mio");
    let uri = uri_of(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    s.open(&uri, &text);
    // `gentle_rain` in the sweep goes to its task item.
    let (l, c) = pos(&text, "to = gentle_rain", 6);
    let def = s.at("textDocument/definition", &uri, l, c);
    let (dl, _) = pos(&text, "task gentle_rain", 5);
    assert_eq!(def["range"]["start"]["line"], dl);
    // Its references: the definition, the let, the eval, the sweep (twice).
    let refs = s.at("textDocument/references", &uri, l, c);
    assert_eq!(refs.as_array().unwrap().len(), 5, "{refs}");
    // A task of an imported file: the definition is in that file.
    let (l, c) = pos(&text, "heavy.murk]", 7);
    let def = s.at("textDocument/definition", &uri, l, c);
    assert!(
        def["uri"]
            .as_str()
            .unwrap()
            .ends_with("tests/fixtures/lib/heavy.mio"),
        "{def}"
    );
    // A model: its declaration, and every use in the workflow.
    let (l, c) = pos(&text, "train net", 7);
    let def = s.at("textDocument/definition", &uri, l, c);
    assert_eq!(def["range"]["start"]["line"], pos(&text, "model net", 0).0);
    assert_eq!(
        s.at("textDocument/references", &uri, l, c)
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn symbols_formatting_and_semantic_tokens() {
    let mut s = TestServer::start(false);
    let uri = "file:///tmp/mio-lsp-test/s.mio";
    s.open(uri, DOC);
    let syms = s.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": uri}}),
    );
    let names: Vec<&str> = syms
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["paper", "heavy", "w"]);
    let children: Vec<&str> = syms[2]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(children, ["train", "net", "train net", "net_on_train"]);
    // Formatting: one edit that gives the same text as `mio fmt`.
    let messy = "use paper\nworkflow w {\nseed=1\n}\n";
    s.change(uri, 2, messy);
    s.diagnostics(uri);
    let edits = s.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": uri}, "options": {"tabSize": 2, "insertSpaces": true}}),
    );
    assert_eq!(
        edits[0]["newText"],
        mio_grammar::format::format(messy).unwrap()
    );
    // Semantic tokens: a flat list of 5-tuples, the first `use` a keyword.
    s.change(uri, 3, DOC);
    s.diagnostics(uri);
    let toks = s.request(
        "textDocument/semanticTokens/full",
        json!({"textDocument": {"uri": uri}}),
    );
    let data = toks["data"].as_array().unwrap();
    assert_eq!(data.len() % 5, 0);
    assert_eq!(
        &data[..5],
        &[json!(0), json!(0), json!(3), json!(0), json!(0)]
    );
    insta::assert_snapshot!("semantic_tokens", serde_json::to_string(&data).unwrap());
}

#[test]
fn positions_are_utf16_by_default_and_utf8_when_offered() {
    let text = "# ünïcödé 😀 comment\nuse paper\ntask t = noise(sigma = 5) # é\nlet x = t\n";
    for (utf8, col) in [(false, 8u32), (true, 8)] {
        let mut s = TestServer::start(utf8);
        let uri = "file:///tmp/mio-lsp-test/u.mio";
        s.open(uri, text);
        let (l, _) = pos(text, "let x = t", 0);
        let def = s.at("textDocument/definition", uri, l, col);
        assert_eq!(def["range"]["start"]["line"], 2);
        assert_eq!(def["range"]["start"]["character"], 5);
    }
    // The comment's width differs between encodings: check the diagnostics' columns.
    let bad = "let y = \"😀\" t\n";
    let s16 = TestServer::start(false);
    let s8 = TestServer::start(true);
    let d16 = s16.open("file:///tmp/mio-lsp-test/v.mio", bad);
    let d8 = s8.open("file:///tmp/mio-lsp-test/v.mio", bad);
    assert_eq!(d16[0]["range"]["start"]["character"], 13);
    assert_eq!(d8[0]["range"]["start"]["character"], 15);
}

#[test]
fn it_never_dies_on_input() {
    let mut s = TestServer::start(false);
    // A path with invalid UTF-8, an unknown scheme, a file deleted under it.
    let dir = std::env::temp_dir().join(format!("mio-lsp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lib = dir.join("lib.mio");
    std::fs::write(&lib, "task t = noise()\n").unwrap();
    let main = dir.join("main.mio");
    let uri = uri_of(&main);
    let text = "use \"lib.mio\"\nlet x = [lib.t]\n";
    assert_eq!(s.open(&uri, text), json!([]));
    std::fs::remove_file(&lib).unwrap();
    s.notify(
        "textDocument/didSave",
        json!({"textDocument": {"uri": uri}}),
    );
    let d = s.diagnostics(&uri);
    assert_eq!(d[0]["code"], "mio::E003");
    for odd in ["file:///tmp/%FF%FE/x.mio", "untitled:Untitled-1"] {
        s.open(odd, "workflow w {\n  seed = \n");
        let _ = s.at("textDocument/completion", odd, 1, 9);
        let _ = s.at("textDocument/hover", odd, 1, 3);
    }
    // Requests about documents never opened, and positions far outside the text.
    assert_eq!(
        s.at("textDocument/hover", "file:///nowhere.mio", 0, 0),
        Value::Null
    );
    assert!(s.at("textDocument/completion", &uri, 999, 999).is_array());
    // An unknown method is an error answer, not a crash; the server still works after it.
    s.client
        .sender
        .send(Message::Request(Request::new(
            RequestId::from(999),
            "mio/unknown".into(),
            json!({}),
        )))
        .unwrap();
    let _ = s.at("textDocument/hover", &uri, 0, 1);
}

#[test]
fn the_executor_setting_completes_and_hovers_like_any_setting() {
    let mut s = TestServer::start(false);
    let uri = "file:///tmp/mio-lsp-test/x.mio";
    let doc = "use paper\nworkflow w {\n  executor = slurm(partition = \"gpu\", gpus = 1, mem = \"8G\")\n}\n";
    s.open(uri, doc);
    // The value of `executor =`: the executors.
    let (l, c) = pos(doc, "executor = slurm", 11);
    assert_eq!(
        labels(&s.at("textDocument/completion", uri, l, c)),
        ["local", "slurm"]
    );
    // Inside slurm( ... ): the parameters not given yet.
    let (l, c) = pos(doc, "gpus = 1, ", 10);
    let got = labels(&s.at("textDocument/completion", uri, l, c));
    assert!(
        got.contains(&"eval_gpus".to_string())
            && got.contains(&"max_jobs".to_string())
            && !got.contains(&"gpus".to_string()),
        "{got:?}"
    );
    // Hover on slurm: its signature and what it does.
    let (l, c) = pos(doc, "slurm(", 2);
    let h = s.at("textDocument/hover", uri, l, c)["contents"]["value"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        h.contains("slurm(partition?: string") && h.contains("sbatch"),
        "{h}"
    );
}

#[test]
fn composite_tasks_complete_hover_and_check_like_any_task() {
    let mut s = TestServer::start(false);
    let uri = "file:///tmp/mio-lsp-test/composite.mio";
    let text = "use paper\n\ntask murky = blur(sigma = 1.0..2.0) then paper.noise\n\nworkflow w {\n  data d = images(\"imgs\", patch = 64px)\n  model net = srresnet(channels = 8)\n  train net on d { strategy = mixed, tasks = [murky, paper.jpeg], iters = 10 }\n  eval net on d { tasks = [murky then jpeg(quality = 20)] }\n}\n";
    let d = s.open(uri, text);
    assert_eq!(d, json!([]), "a composite checks like any task");
    // After a whole step: `then`; after `then`: degradations and tasks.
    let head = "use paper\n\ntask t = blur(sigma = 2.0) \n";
    s.change(uri, 2, head);
    s.diagnostics(uri);
    let (l, c) = pos(head, "(sigma = 2.0) ", 14);
    assert_eq!(
        labels(&s.at("textDocument/completion", uri, l, c)),
        ["then"]
    );
    let next = "use paper\n\ntask t = blur(sigma = 2.0) then \n";
    s.change(uri, 3, next);
    s.diagnostics(uri);
    let (l, c) = pos(next, "then ", 5);
    let got = labels(&s.at("textDocument/completion", uri, l, c));
    assert!(
        got.contains(&"noise".to_string()) && got.contains(&"paper.rain_out".to_string()),
        "{got:?}"
    );
    // Hover: `then` says what it does; a composite task shows its steps.
    s.change(uri, 4, text);
    s.diagnostics(uri);
    let hover = |s: &mut TestServer, needle: &str, after: usize| {
        let (l, c) = pos(text, needle, after);
        s.at("textDocument/hover", uri, l, c)["contents"]["value"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let h = hover(&mut s, "then paper", 1);
    assert!(h.contains("composite task"), "{h}");
    let h = hover(&mut s, "[murky,", 2);
    assert!(
        h.contains("blur(sigma = 1.0..2.0, size = 7..21) then noise(sigma = 15.0..50.0)"),
        "{h}"
    );
}
