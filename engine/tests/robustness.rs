//! The checker never panics: random edits of every real `.mio` file in the repository, and
//! random overrides, go through load, check and plan, and every diagnostic's spans lie inside
//! a known source.

use proptest::prelude::*;

fn real_files() -> Vec<(std::path::PathBuf, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = vec![];
    for dir in [
        "workflows",
        "workflows/paper",
        "tests/fixtures/valid",
        "tests/fixtures/invalid",
    ] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "mio") {
                    out.push((e.path(), std::fs::read_to_string(e.path()).unwrap()));
                }
            }
        }
    }
    out.sort();
    out
}

fn check_all_spans(checked: &mio_engine::Checked) {
    for d in &checked.diagnostics {
        let sources = &checked.program.sources;
        assert!(sources.file_of(d.primary.span.start).is_some(), "{d:?}");
        // Rendering must not panic either.
        let _ = mio_engine::render(std::slice::from_ref(d), sources, mio_engine::Style::Plain);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_edits_never_panic_the_checker(
        file in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..8, "[{}()\\[\\]=,.\"#a-z0-9 \n_-]{0,6}"), 1..6)
    ) {
        let files = real_files();
        let (path, text) = file.get(&files);
        let mut text = text.clone();
        for (at, del, ins) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) { i -= 1; }
            let mut j = (i + del).min(text.len());
            while !text.is_char_boundary(j) { j += 1; }
            text.replace_range(i..j, &ins);
        }
        let checked = mio_engine::check_source("edited.mio", Some(path), text, &[]);
        check_all_spans(&checked);
        if checked.is_ok() {
            if let Ok(plan) = mio_engine::plan(&checked) {
                let _ = mio_engine::plan::render_dot(&plan);
            }
        }
    }

    #[test]
    fn random_overrides_never_panic(
        path in "[a-z_.]{0,20}",
        value in "[a-z0-9_.()\\[\\], =\"-]{0,16}",
    ) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/quickstart.mio");
        let checked = mio_engine::check_file(&root, &[format!("{path}={value}")]).unwrap();
        check_all_spans(&checked);
    }
}

#[test]
fn valid_overrides_change_the_checked_workflow() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/quickstart.mio");
    let checked = mio_engine::check_file(
        &root,
        &[
            "train.seq.iters=2k".into(),
            "train.seq.optimizer.lr=1e-3".into(),
            "model.seq_ep.prompt.dim=16".into(),
        ],
    )
    .unwrap();
    assert!(
        checked.is_ok(),
        "{}",
        checked.render(mio_engine::Style::Plain)
    );
    let wf = &checked.workflows[0];
    let seq = wf.train_of("seq").unwrap();
    assert!(seq.stages.iter().all(|s| s.iters == 2000));
    let lr = seq
        .setting("optimizer")
        .unwrap()
        .as_call()
        .unwrap()
        .arg("lr")
        .unwrap()
        .as_f64();
    assert_eq!(lr, Some(1e-3));
    let prompt = wf
        .model("seq_ep")
        .unwrap()
        .backbone
        .arg("prompt")
        .unwrap()
        .as_call()
        .unwrap();
    assert_eq!(prompt.arg("dim").unwrap().as_int(), Some(16));
    // The other models keep their defaults.
    let mixed = wf.train_of("mixed").unwrap();
    assert_eq!(mixed.stages.len(), 1);
    assert_eq!(mixed.stages[0].iters, 1400);
}

#[test]
fn mixed_given_a_per_stage_list_trains_for_its_total() {
    let src = "use paper\nworkflow w {\n  data d = images(\"x\")\n  model m = srresnet()\n  model s = srresnet()\n  \
               train m on d { strategy = mixed, tasks = paper.tasks, iters = paper.iters_srresnet }\n  \
               train s on d { strategy = sequential(order = paper.order_cnn), iters = paper.iters_srresnet }\n}\n";
    let checked = mio_engine::check_source("t.mio", None, src.into(), &[]);
    assert!(
        checked.is_ok(),
        "{}",
        checked.render(mio_engine::Style::Plain)
    );
    let wf = &checked.workflows[0];
    let total = |name: &str| {
        wf.train_of(name)
            .unwrap()
            .stages
            .iter()
            .map(|s| s.iters)
            .sum::<u64>()
    };
    assert_eq!(total("m"), 2_500_000);
    assert_eq!(total("s"), total("m"));
    assert_eq!(wf.train_of("s").unwrap().stages.len(), 7);
    assert_eq!(wf.train_of("s").unwrap().stages[6].iters, 1_000_000);
}

#[test]
fn matrix_rows_share_test_sets_and_end_in_one_report_per_matrix() {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/paper/table.mio");
    let checked = mio_engine::check_file(&root, &[]).unwrap();
    assert!(
        checked.is_ok(),
        "{}",
        checked.render(mio_engine::Style::Plain)
    );
    // Table 3's twelve rows, Uformer's six and PromptIR's two.
    assert_eq!(checked.workflows.len(), 20);
    let plan = mio_engine::plan(&checked).unwrap();
    let count =
        |k: mio_engine::plan::NodeKind| plan.graph.node_weights().filter(|n| n.kind == k).count();
    use mio_engine::plan::NodeKind::*;
    // 7 in-distribution + 7 out-of-distribution degradations, sr_out being the same as sr,
    // and the 5 Unknown composites.
    assert_eq!(count(TestSet), 13 + 5);
    // One report per matrix.
    assert_eq!(count(Report), 3);
    assert_eq!(count(Eval), 3 * 20);
    // 10 mixed rows of one stage + 10 sequential rows of seven.
    assert_eq!(count(Train), 10 + 10 * 7);
    let shared = plan
        .graph
        .node_weights()
        .find(|n| n.kind == TestSet)
        .unwrap();
    assert_eq!(shared.workflows.len(), 20);
}

#[test]
fn every_error_code_is_documented() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/errors.md"),
    )
    .unwrap();
    for code in mio_engine::diagnostic::Code::ALL {
        let heading = format!("## {code}: {}", code.summary());
        assert!(doc.contains(&heading), "docs/errors.md lacks `{heading}`");
    }
}

#[test]
fn deeply_nested_input_is_reported_not_fatal() {
    let src = format!(
        "use paper\nworkflow w {{\n  seed = {}{}\n}}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let checked = mio_engine::check_source(
        "deep.mio",
        None,
        src,
        &[format!("seed={}", "[".repeat(3000))],
    );
    let codes: Vec<_> = checked.diagnostics.iter().map(|d| d.code).collect();
    assert!(
        codes.contains(&mio_engine::diagnostic::Code::Syntax),
        "{codes:?}"
    );
    assert!(
        codes.contains(&mio_engine::diagnostic::Code::BadOverride),
        "{codes:?}"
    );
}
