//! Every file under tests/fixtures is a test. Invalid files declare the error codes they must
//! produce (`# expect: E011, E022`) and their rendered diagnostics are snapshots; valid files
//! must check and plan, and their plans are snapshots. `# set: path=value` lines are passed as
//! `--set` overrides. Regenerate snapshots with `INSTA_UPDATE=always cargo test --test fixtures`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mio_engine::diagnostic::Code;
use mio_engine::Style;

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mio"))
        .collect();
    files.sort();
    files
}

fn header(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("# {key}:")))
        .map(|s| s.trim().to_string())
        .collect()
}

/// Checks (and plans) a fixture; returns the diagnostics' codes and their rendering, with
/// paths made relative so snapshots do not depend on where the repository lives. The relative
/// path is what gets resolved (integration tests run in the package root), so imported files'
/// names are relative before rendering, and line wrapping cannot depend on the checkout's path.
fn run(path: &Path) -> (Vec<Code>, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let sets = header(&text, "set");
    let rel = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
    let checked = mio_engine::check_source(&rel.display().to_string(), Some(rel), text, &sets);
    let mut diags = checked.diagnostics.clone();
    if diags.is_empty() {
        if let Err(d) = mio_engine::plan(&checked) {
            diags.push(d);
        }
    }
    let rendered = mio_engine::render(&diags, &checked.program.sources, Style::Plain);
    let rendered = rendered.replace(&format!("{}/", env!("CARGO_MANIFEST_DIR")), "");
    (diags.iter().map(|d| d.code).collect(), rendered)
}

fn parse_codes(list: &str) -> Vec<String> {
    list.split(',')
        .map(|c| format!("mio::{}", c.trim()))
        .collect()
}

#[test]
fn invalid_fixtures_report_exactly_their_expected_codes() {
    let mut failures = vec![];
    for path in fixtures("invalid") {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = header(&text, "expect");
        assert_eq!(
            expect.len(),
            1,
            "{} needs one `# expect:` line",
            path.display()
        );
        let mut want = parse_codes(&expect[0]);
        want.sort();
        let (codes, rendered) = run(&path);
        let mut got: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
        got.sort();
        if got != want {
            failures.push(format!(
                "{}: expected {want:?}, got {got:?}\n{rendered}",
                path.display()
            ));
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(format!("invalid__{name}"), rendered);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_error_code_has_an_invalid_fixture() {
    let mut covered = BTreeSet::new();
    for path in fixtures("invalid") {
        let text = std::fs::read_to_string(&path).unwrap();
        for c in parse_codes(&header(&text, "expect")[0]) {
            covered.insert(c);
        }
    }
    // An internal code (a bug in mio) has no file that produces it: the lowering test
    // (engine/tests/lowering.rs) stands for it.
    let missing: Vec<String> = Code::ALL
        .iter()
        .filter(|c| !c.is_internal())
        .map(|c| c.to_string())
        .filter(|c| !covered.contains(c))
        .collect();
    assert!(missing.is_empty(), "no fixture produces {missing:?}");
    assert!(fixtures("invalid").len() >= 30);
}

#[test]
fn valid_fixtures_check_and_plan() {
    for path in fixtures("valid") {
        let (codes, rendered) = run(&path);
        assert!(codes.is_empty(), "{}:\n{rendered}", path.display());
        let text = std::fs::read_to_string(&path).unwrap();
        let checked = mio_engine::check_source(
            "fixture",
            Some(&path),
            text,
            &header(&std::fs::read_to_string(&path).unwrap(), "set"),
        );
        let plan = mio_engine::plan(&checked).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(
            format!("valid__{name}"),
            mio_engine::plan::render_text(&plan, &name)
        );
    }
}

#[test]
fn every_workflow_and_example_checks_and_plans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    for dir in ["workflows", "workflows/paper", "examples"] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            files.extend(
                rd.map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "mio")),
            );
        }
    }
    assert!(
        files.len() >= 5,
        "expected the quickstart, the paper's files and examples"
    );
    for path in files {
        let checked = mio_engine::check_file(&path, &[]).unwrap();
        assert!(
            checked.is_ok(),
            "{}:\n{}",
            path.display(),
            checked.render(Style::Plain)
        );
        let plan = mio_engine::plan(&checked).unwrap();
        assert!(plan.graph.node_count() > 0);
    }
}
