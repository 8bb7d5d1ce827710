//! The layout ARCHITECTURE.md describes, held by tests: the engine's modules use each other
//! without cycles, no source file outside the kernels grows past about 1,000 lines, and the
//! language server (with the checker it runs) builds without the tensor stack.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `run/nodes/eval.rs` -> `run::nodes::eval`; `run/mod.rs` -> `run`; `lib.rs` -> `` (the root).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

/// The module a path names: its longest prefix that is a module.
fn resolve(modules: &BTreeSet<String>, segments: &[&str]) -> Option<String> {
    (0..=segments.len()).rev().find_map(|n| {
        let m = segments[..n].join("::");
        modules.contains(&m).then_some(m)
    })
}

/// Which modules each module uses, from the paths in its code (`crate::a::b`, `super::x`,
/// and `child::item` for its own children); a file's inline test module is left out.
fn engine_uses() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(ROOT).join("engine/src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let path_re = |text: &str| -> Vec<Vec<String>> {
        // Paths of identifiers joined by `::`.
        let bytes = text.as_bytes();
        let mut out = vec![];
        let mut i = 0;
        while i < bytes.len() {
            let starts = (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_')
                && (i == 0
                    || !(bytes[i - 1].is_ascii_alphanumeric()
                        || bytes[i - 1] == b'_'
                        || bytes[i - 1] == b':'));
            if !starts {
                i += 1;
                continue;
            }
            let mut segs = vec![];
            let mut j = i;
            loop {
                let k = j;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                segs.push(text[k..j].to_string());
                if text[j..].starts_with("::")
                    && text[j + 2..]
                        .bytes()
                        .next()
                        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                {
                    j += 2;
                } else {
                    break;
                }
            }
            if segs.len() > 1 {
                out.push(segs);
            }
            i = j.max(i + 1);
        }
        out
    };
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let me = module_of(&src, f);
        let text = std::fs::read_to_string(f).unwrap();
        // Code only: no inline test module, no comments (doc links name modules too).
        let code: String = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap()
            .lines()
            .map(|l| match l.find("//") {
                Some(i) if !l[..i].contains('"') => &l[..i],
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let code = code.as_str();
        let parent: Vec<&str> = me.split("::").filter(|s| !s.is_empty()).collect();
        let entry = uses.entry(me.clone()).or_default();
        for segs in path_re(code) {
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            let target = match segs[0] {
                "crate" => resolve(&modules, &segs[1..]),
                "super" => {
                    let mut base = parent.clone();
                    let mut rest = &segs[..];
                    while rest.first() == Some(&"super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    let full: Vec<&str> =
                        base.iter().copied().chain(rest.iter().copied()).collect();
                    resolve(&modules, &full)
                }
                "self" => None,
                first => {
                    // A child module used by its name.
                    let child: Vec<&str> = parent.iter().copied().chain([first]).collect();
                    modules
                        .contains(&child.join("::"))
                        .then(|| {
                            resolve(
                                &modules,
                                &parent
                                    .iter()
                                    .copied()
                                    .chain(segs.iter().copied())
                                    .collect::<Vec<_>>(),
                            )
                        })
                        .flatten()
                }
            };
            if let Some(t) = target {
                if t != me {
                    entry.insert(t);
                }
            }
        }
    }
    uses
}

#[test]
fn the_engine_modules_use_each_other_without_cycles() {
    let uses = engine_uses();
    assert!(uses.len() > 30, "{} modules found", uses.len());
    // Depth-first search for a back edge, reporting the cycle it closes.
    fn visit(
        m: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for t in uses.get(m).into_iter().flatten() {
            match state.get(t.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == t).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(t.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(t, uses, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in uses.keys() {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(m, &uses, &mut state, &mut vec![]) {
                let shown: Vec<String> = cycle
                    .iter()
                    .map(|m| {
                        if m.is_empty() {
                            "(crate root)".into()
                        } else {
                            m.clone()
                        }
                    })
                    .collect();
                panic!("a module cycle: {}", shown.join(" -> "));
            }
        }
    }
    // The scan sees real edges (so an empty graph cannot pass).
    assert!(
        uses["run::nodes::eval"].contains("run::nodes::common"),
        "{uses:?}"
    );
    assert!(uses["plan"].contains("lower"), "{uses:?}");
}

#[test]
fn no_source_file_outside_the_kernels_passes_about_a_thousand_lines() {
    let mut files = vec![];
    for dir in [
        "src",
        "grammar/src",
        "catalog/src",
        "stdlib/src",
        "engine/src",
        "lsp/src",
    ] {
        rust_files(&Path::new(ROOT).join(dir), &mut files);
    }
    let kernels = Path::new(ROOT).join("stdlib/src/kernels");
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(&kernels))
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 1050).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(files.len() > 50);
    assert!(long.is_empty(), "split these by concern: {long:?}");
}

/// Runs cargo (the one running the tests) in the repository; its stdout, or the failure.
fn cargo(args: &[&str], target: Option<&str>) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(args).current_dir(ROOT);
    if let Some(t) = target {
        cmd.env("CARGO_TARGET_DIR", Path::new(ROOT).join(t));
    }
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {}:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_language_server_builds_without_the_tensor_stack() {
    let tree = cargo(
        &[
            "tree",
            "--offline",
            "-p",
            "mio-lsp",
            "-e",
            "normal",
            "--prefix",
            "none",
        ],
        None,
    );
    assert!(
        tree.contains("mio-engine") && tree.contains("mio-catalog"),
        "{tree}"
    );
    let heavy: Vec<&str> = tree
        .lines()
        .filter(|l| {
            ["candle", "gemm", "mio-stdlib", "plotters"]
                .iter()
                .any(|c| l.starts_with(c))
        })
        .collect();
    assert!(heavy.is_empty(), "mio-lsp pulls in {heavy:?}");
}

#[test]
fn the_checker_compiles_without_the_runner() {
    // The checker alone, as the language server uses it, in a target folder of its own (a
    // `cargo check` of just the front half: no candle to build).
    cargo(
        &[
            "check",
            "--offline",
            "-q",
            "-p",
            "mio-engine",
            "--no-default-features",
            "--lib",
        ],
        Some("target/checker-alone"),
    );
}
