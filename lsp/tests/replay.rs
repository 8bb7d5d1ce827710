//! Types every workflow and example in the repository one character at a time into the server,
//! asking for completion and hover at the cursor after each keystroke: every request must get
//! an answer (an error answer fails the test) and the server must never die.

mod common;

use common::{uri_of, TestServer};

#[test]
fn typing_every_workflow_character_by_character() {
    let files = common::shipped_files();
    assert!(files.len() >= 8);
    let mut s = TestServer::start(false);
    let mut requests = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let uri = uri_of(path);
        s.open(&uri, "");
        let mut version = 1;
        for (i, c) in text.char_indices() {
            let typed = &text[..i + c.len_utf8()];
            version += 1;
            s.change(&uri, version, typed);
            let line = typed.matches('\n').count() as u32;
            let col = typed.rsplit('\n').next().unwrap().encode_utf16().count() as u32;
            // `request` panics on an error answer.
            s.at("textDocument/completion", &uri, line, col);
            s.at("textDocument/hover", &uri, line, col.saturating_sub(1));
            requests += 2;
        }
        // Once complete, the file is clean again.
        version += 1;
        s.change(&uri, version, &text);
        assert_eq!(
            s.diagnostics(&uri),
            serde_json::json!([]),
            "{}",
            path.display()
        );
    }
    assert!(requests > 10_000, "{requests}");
}
