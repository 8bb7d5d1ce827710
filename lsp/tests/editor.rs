//! The VS Code extension under lsp/editors/vscode stays consistent with the language: valid
//! JSON, every rule it includes exists, its ids match, and it highlights every keyword of the
//! grammar (read from mio.pest).

use std::path::Path;

use serde_json::Value;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn the_vscode_extension_matches_the_language() {
    let package: Value = serde_json::from_str(&read("editors/vscode/package.json")).unwrap();
    let grammar: Value =
        serde_json::from_str(&read("editors/vscode/syntaxes/mio.tmLanguage.json")).unwrap();
    let _: Value =
        serde_json::from_str(&read("editors/vscode/language-configuration.json")).unwrap();
    assert_eq!(package["contributes"]["languages"][0]["id"], "mio");
    assert_eq!(
        package["contributes"]["languages"][0]["extensions"][0],
        ".mio"
    );
    assert_eq!(
        package["contributes"]["grammars"][0]["scopeName"],
        grammar["scopeName"]
    );
    assert!(read("editors/vscode/extension.js").contains("args: [\"lsp\"]"));

    // Every include names a rule of the repository, and every rule is used.
    let repo = grammar["repository"].as_object().unwrap();
    let includes: Vec<&str> = grammar["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["include"].as_str().unwrap().trim_start_matches('#'))
        .collect();
    for i in &includes {
        assert!(repo.contains_key(*i), "missing rule {i}");
    }
    for k in repo.keys() {
        assert!(includes.contains(&k.as_str()), "unused rule {k}");
    }

    // Every keyword rule of the grammar (`kw_use = @{ "use" ~ ... }`) is highlighted.
    let pest = read("../grammar/src/mio.pest");
    let text = serde_json::to_string(&grammar).unwrap();
    let mut n = 0;
    for line in pest.lines().filter(|l| l.starts_with("kw_")) {
        let kw = line.split('"').nth(1).unwrap();
        assert!(
            text.contains(&format!("|{kw}|"))
                || text.contains(&format!("({kw}|"))
                || text.contains(&format!("|{kw})")),
            "`{kw}` is not highlighted"
        );
        n += 1;
    }
    assert!(n >= 17);
}
