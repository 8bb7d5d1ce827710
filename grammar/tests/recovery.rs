//! Error recovery: one typo never hides the next, the tree keeps what parsed, its spans still
//! slice the right text, and errors read in the user's words.

use mio_grammar::{parse, Item, Stmt};

/// The names the parsed items define, in order.
fn item_names(p: &mio_grammar::Parsed) -> Vec<String> {
    p.file
        .items
        .iter()
        .filter_map(|i| i.name().map(|n| n.name.clone()))
        .collect()
}

const BROKEN: &str = "use paper\n\nworkflow w {\n  seed: 0\n  data d = images(\"x\")\n  model net = srresnet(channels = 32 blocks = 4)\n  train net on d {\n    iters = 10\n  }\n}\n\ntask t = noise(sigma = )\nlet ok = 1\n";

#[test]
fn every_error_is_reported_and_the_rest_of_the_tree_survives() {
    let p = parse(BROKEN);
    let messages: Vec<&str> = p.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[0], "expected `=`, found `:`");
    assert_eq!(messages[1], "expected `,`, `..` or `)`, found `blocks`");
    assert_eq!(messages[2], "expected a value, found `)`");
    // use, the workflow (with its two good statements), and the let survive.
    let names = item_names(&p);
    assert_eq!(names, ["w", "ok"]);
    let Item::Workflow(w) = &p.file.items[1] else {
        panic!("{:?}", p.file.items[1])
    };
    assert_eq!(w.stmts.len(), 2);
    // Spans of recovered statements slice exactly their text.
    for s in &w.stmts {
        let text = &BROKEN[s.span().start..s.span().end];
        match s {
            Stmt::Data(_) => assert_eq!(text, "data d = images(\"x\")"),
            Stmt::Train(_) => assert!(text.starts_with("train net on d {") && text.ends_with('}')),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Error spans point at the offending token.
    assert_eq!(&BROKEN[p.errors[0].span.start..p.errors[0].span.end], ":");
    assert_eq!(
        &BROKEN[p.errors[1].span.start..p.errors[1].span.end],
        "blocks"
    );
    assert_eq!(&BROKEN[p.errors[2].span.start..p.errors[2].span.end], ")");
}

#[test]
fn a_missing_value_at_the_end_of_a_line_points_at_the_line_not_the_next_item() {
    let src = "task a = \ntask b = blur()\n";
    let p = parse(src);
    assert_eq!(p.errors.len(), 1);
    let e = &p.errors[0];
    assert!(e.span.end <= src.find('\n').unwrap(), "{e:?}");
    assert!(e.label.contains("after this"), "{e:?}");
    assert_eq!(p.file.items.len(), 1, "task b survives");
}

#[test]
fn helpful_hints_for_common_slips() {
    let p = parse("workflow w {\n  data d = images('x')\n}\n");
    assert!(
        p.errors[0]
            .help
            .as_deref()
            .unwrap()
            .contains("double quotes"),
        "{:?}",
        p.errors
    );
    let p = parse("workflow w {\n  seed: 0\n}\n");
    assert!(p.errors[0]
        .help
        .as_deref()
        .unwrap()
        .contains("name = value"));
}

#[test]
fn spans_are_shifted_by_the_base_offset() {
    let src = "task a = noise(sigma = 5)\n";
    let p = mio_grammar::parse_at(src, 1000);
    let Item::Task(b) = &p.file.items[0] else {
        panic!()
    };
    assert_eq!(b.name.span.start, 1005);
    assert_eq!(&src[b.name.span.start - 1000..b.name.span.end - 1000], "a");
}

#[test]
fn numbers_keep_their_value_unit_and_text() {
    let p = parse("let x = [2e-4, 250k, 1.5M, 48px, -45deg, 1_000, 2.5]\n");
    let Item::Let(b) = &p.file.items[0] else {
        panic!()
    };
    let mio_grammar::ExprKind::List(xs) = &b.value.kind else {
        panic!()
    };
    let nums: Vec<(f64, bool, Option<&str>, &str)> = xs
        .iter()
        .map(|x| match &x.kind {
            mio_grammar::ExprKind::Number(n) => (
                n.value,
                n.is_int,
                n.unit.map(|u| u.as_str()),
                n.raw.as_str(),
            ),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        nums,
        [
            (2e-4, false, None, "2e-4"),
            (250_000.0, true, None, "250k"),
            (1_500_000.0, true, None, "1.5M"),
            (48.0, true, Some("px"), "48px"),
            (-45.0, true, Some("deg"), "-45deg"),
            (1000.0, true, None, "1_000"),
            (2.5, false, None, "2.5"),
        ]
    );
}

#[test]
fn keywords_are_contextual() {
    // `train` names a data set here; only `true`/`false` are reserved.
    let p = parse(
        "workflow w {\n  data train = images(\"x\")\n  train net on train { iters = 1 }\n}\n",
    );
    assert!(p.errors.is_empty(), "{:?}", p.errors);
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for n in [65, 1000, 100_000] {
        let src = format!(
            "let a = 1\nlet x = {}{}\nlet b = 2\n",
            "[".repeat(n),
            "]".repeat(n)
        );
        let p = parse(&src);
        assert_eq!(p.errors.len(), 1, "n = {n}: {:?}", p.errors);
        assert!(
            p.errors[0].message.contains("nested more than 64"),
            "{:?}",
            p.errors[0]
        );
        let names = item_names(&p);
        assert_eq!(names, ["a", "b"], "the items around it survive");
        assert!(mio_grammar::format::format(&src).is_err());
    }
    // 64 levels are fine, and format round-trips.
    let ok = format!("let x = {}{}\n", "[".repeat(64), "]".repeat(64));
    assert!(parse(&ok).errors.is_empty());
    let f = mio_grammar::format::format(&ok).unwrap();
    assert_eq!(mio_grammar::format::format(&f).unwrap(), f);
    assert!(mio_grammar::parse_expr_at(&"(".repeat(500), 0).is_err());
}
