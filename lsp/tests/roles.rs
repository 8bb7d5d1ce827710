//! Names are resolved by their role, as the checker resolves them, on the shipped quickstart:
//! the strategy `mixed` is not the model `mixed`, the keyword `train` is not the data `train`,
//! and the prelude's names lead into the prelude.

mod common;

use common::{repo, uri_of, TestServer};
use serde_json::Value;

fn at(text: &str, needle: &str, k: usize, after: usize) -> (u32, u32) {
    common::position_of(text, needle, k, after)
}

fn lines(v: &Value) -> Vec<u64> {
    let mut l: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["range"]["start"]["line"].as_u64().unwrap())
        .collect();
    l.sort();
    l
}

/// The semantic token type at (line, col), from the flat 5-tuples.
fn token_type(data: &[Value], line: u32, col: u32) -> Option<u64> {
    let (mut l, mut c) = (0u64, 0u64);
    for t in data.chunks(5) {
        let dl = t[0].as_u64().unwrap();
        l += dl;
        c = if dl == 0 {
            c + t[1].as_u64().unwrap()
        } else {
            t[1].as_u64().unwrap()
        };
        if l == line as u64 && c == col as u64 {
            return t[3].as_u64();
        }
    }
    None
}

#[test]
fn built_ins_and_keywords_are_not_the_users_names() {
    let path = repo("workflows/quickstart.mio");
    let text = std::fs::read_to_string(&path).unwrap();
    let uri = uri_of(&path);
    let mut s = TestServer::start(false);
    assert_eq!(s.open(&uri, &text), Value::Array(vec![]));
    let line_of = |needle: &str, k: usize| at(&text, needle, k, 0).0 as u64;

    // `strategy = mixed`: the built-in strategy.
    let (l, c) = at(&text, "strategy = mixed", 0, "strategy = ".len() + 1);
    let hover = s.at("textDocument/hover", &uri, l, c);
    let shown = hover["contents"]["value"].as_str().unwrap();
    assert!(
        !shown.contains("model mixed") && shown.contains("mixed"),
        "{shown}"
    );
    assert_eq!(s.at("textDocument/definition", &uri, l, c), Value::Null);

    // The model `mixed`: its references are where it is trained and evaluated, not the strategy.
    let (l, c) = at(&text, "model mixed", 0, "model ".len() + 1);
    let refs = s.at("textDocument/references", &uri, l, c);
    let got = lines(&refs);
    assert!(got.contains(&line_of("train mixed on", 0)), "{got:?}");
    assert!(
        got.contains(&line_of("eval mixed on test as mixed_in", 0)),
        "{got:?}"
    );
    assert!(!got.contains(&line_of("strategy = mixed", 0)), "{got:?}");

    // `data train`: its references are the `on train`s, never the `train` keywords.
    let (l, c) = at(&text, "data train", 0, "data ".len() + 1);
    let refs = s.at("textDocument/references", &uri, l, c);
    for r in refs.as_array().unwrap() {
        let start = &r["range"]["start"];
        let (rl, rc) = (
            start["line"].as_u64().unwrap(),
            start["character"].as_u64().unwrap(),
        );
        let line = text.lines().nth(rl as usize).unwrap();
        assert_ne!(rc, 2, "a `train` keyword among the references: {line}");
    }
    assert!(refs.as_array().unwrap().len() >= 4, "{refs}");

    // The keyword `train` leads nowhere.
    let (l, c) = at(&text, "train mixed on", 0, 1);
    assert_eq!(s.at("textDocument/definition", &uri, l, c), Value::Null);

    // Highlighting: the model is a variable where it is trained, the strategy a built-in.
    let toks = s.request(
        "textDocument/semanticTokens/full",
        serde_json::json!({"textDocument": {"uri": uri}}),
    );
    let data = toks["data"].as_array().unwrap();
    let (l, c) = at(&text, "train mixed on", 0, "train ".len());
    assert_eq!(
        token_type(data, l, c),
        Some(7),
        "the model in `train mixed on`"
    );
    let (l, c) = at(&text, "strategy = mixed", 0, "strategy = ".len());
    assert_eq!(token_type(data, l, c), Some(4), "the strategy `mixed`");
    let (l, c) = at(&text, "lr = 5e-4", 0, "lr = ".len());
    assert_eq!(token_type(data, l, c), Some(1), "`5e-4` is one number");

    // `paper.order_cnn` and a paper task open the prelude, read-only.
    let (l, c) = at(&text, "paper.order_cnn", 0, "paper.".len() + 2);
    let def = s.at("textDocument/definition", &uri, l, c);
    let target = def["uri"].as_str().unwrap();
    assert!(target.ends_with("paper.mio"), "{def}");
    let file = mio_lsp::document::uri_to_path(&target.parse().unwrap()).unwrap();
    let prelude = std::fs::read_to_string(&file).unwrap();
    let line = prelude
        .lines()
        .nth(def["range"]["start"]["line"].as_u64().unwrap() as usize);
    assert!(line.unwrap().contains("order_cnn"), "{line:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "the prelude copy is read-only");
    }
}

#[test]
fn on_every_shipped_file_keywords_lead_nowhere_and_every_name_answers() {
    let files = common::shipped_files();
    assert!(files.len() >= 10);
    let mut s = TestServer::start(true);
    let keywords = [
        "workflow", "data", "model", "train", "eval", "sweep", "report", "use", "on", "as",
    ];
    let mut checked = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let uri = uri_of(&path);
        s.open(&uri, &text);
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        for t in mio_grammar::lex::tokens(&text) {
            if t.kind != mio_grammar::lex::TokenKind::Word {
                continue;
            }
            let word = &text[t.span.start..t.span.end];
            let line = line_starts.partition_point(|&l| l <= t.span.start) - 1;
            let col = (t.span.start - line_starts[line]) as u32;
            let def = s.at("textDocument/definition", &uri, line as u32, col);
            let _ = s.at("textDocument/hover", &uri, line as u32, col);
            let at_line_start = text[line_starts[line]..t.span.start].trim().is_empty();
            if keywords.contains(&word) && (at_line_start || matches!(word, "on" | "as")) {
                assert_eq!(
                    def,
                    Value::Null,
                    "{}: the keyword `{word}` at {}:{col}",
                    path.display(),
                    line + 1
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked}");
}
