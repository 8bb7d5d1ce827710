//! Property tests of the front end: random programs, written with random layout and comments,
//! parse cleanly; formatting is idempotent, keeps every comment and does not change the tree;
//! random bytes and random edits of real files never panic the parser or the formatter.

use mio_grammar::{comments::comments, format::format, parse};
use proptest::prelude::*;

fn ident() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,7}".prop_filter("not a boolean", |s| s != "true" && s != "false")
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..100_000).prop_map(|n| n.to_string()),
        (0u32..1000, 0u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
        (1u32..10, 1u32..9).prop_map(|(a, e)| format!("{a}e-{e}")),
        (1u32..999).prop_map(|n| format!("{n}k")),
        (1u32..9).prop_map(|n| format!("{n}M")),
        (1u32..512).prop_map(|n| format!("{n}px")),
        (0u32..90).prop_map(|n| format!("-{n}deg")),
    ]
}

fn string() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _./-]{0,12}".prop_map(|s| format!("\"{s}\""))
}

/// Separators between tokens: spaces, newlines and comments, at random.
fn gap() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(" ".to_string()),
        1 => Just("  ".to_string()),
        1 => Just("\n    ".to_string()),
        1 => "[a-z ]{0,10}".prop_map(|c| format!(" # {c}\n  ")),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        number(),
        string(),
        Just("true".to_string()),
        ident(),
        (ident(), ident()).prop_map(|(a, b)| format!("{a}.{b}")),
        (number(), number()).prop_map(|(a, b)| format!("{a}..{b}")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..4), gap())
                .prop_map(|(xs, g)| format!("[{}]", xs.join(&format!(",{g}")))),
            prop::collection::vec(inner.clone(), 2..4)
                .prop_map(|xs| format!("({})", xs.join(", "))),
            (
                ident(),
                prop::collection::vec((ident(), inner), 0..3),
                gap()
            )
                .prop_map(|(f, args, g)| {
                    let a: Vec<String> = args
                        .into_iter()
                        .map(|(n, v)| format!("{n} ={g}{v}"))
                        .collect();
                    format!("{f}({})", a.join(", "))
                }),
            // A composite task: calls or names chained with `then`.
            prop::collection::vec(
                prop_oneof![
                    ident(),
                    (ident(), ident()).prop_map(|(f, a)| format!("{f}({a} = 1)"))
                ],
                2..4
            )
            .prop_map(|xs| xs.join(" then ")),
        ]
    })
}

fn block() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((ident(), expr()), 0..4),
        any::<bool>(),
    )
        .prop_map(|(settings, multiline)| {
            let s: Vec<String> = settings
                .into_iter()
                .map(|(n, v)| format!("{n} = {v}"))
                .collect();
            if multiline {
                format!("{{\n    {}\n  }}", s.join("\n    "))
            } else {
                format!("{{ {} }}", s.join(", "))
            }
        })
}

fn stmt() -> impl Strategy<Value = String> {
    prop_oneof![
        (ident(), expr()).prop_map(|(n, v)| format!("{n} = {v}")),
        (ident(), expr()).prop_map(|(n, v)| format!("data {n} = {v}")),
        (ident(), expr()).prop_map(|(n, v)| format!("model {n} = {v}")),
        (ident(), ident(), block()).prop_map(|(m, d, b)| format!("train {m} on {d} {b}")),
        (ident(), ident(), prop::option::of(ident()), block()).prop_map(|(m, d, a, b)| {
            format!(
                "eval {m} on {d}{} {b}",
                a.map(|a| format!(" as {a}")).unwrap_or_default()
            )
        }),
        (ident(), string(), block()).prop_map(|(m, t, b)| format!("sweep {m} on {t} {b}")),
        block().prop_map(|b| format!("report {b}")),
    ]
}

fn item() -> impl Strategy<Value = String> {
    prop_oneof![
        ident().prop_map(|n| format!("use {n}")),
        (string(), ident()).prop_map(|(p, a)| format!("use {p} as {a}")),
        (ident(), expr()).prop_map(|(n, v)| format!("task {n} = {v}")),
        (ident(), expr()).prop_map(|(n, v)| format!("let {n} = {v}")),
        (
            ident(),
            prop::option::of(ident()),
            prop::collection::vec((stmt(), gap()), 0..6)
        )
            .prop_map(|(n, ext, stmts)| {
                let body: Vec<String> = stmts
                    .into_iter()
                    .map(|(s, g)| {
                        format!("  {s}{}", if g.contains('#') { g } else { String::new() })
                    })
                    .collect();
                format!(
                    "workflow {n}{} {{\n{}\n}}",
                    ext.map(|e| format!(" extends {e}")).unwrap_or_default(),
                    body.join("\n")
                )
            }),
        (
            ident(),
            prop::collection::vec(ident(), 1..3),
            prop::collection::vec((ident(), ident(), expr()), 0..3)
        )
            .prop_map(|(n, bases, axes)| {
                let a: Vec<String> = axes
                    .into_iter()
                    .map(|(x, y, v)| format!("  {x}.{y} = [{v}]"))
                    .collect();
                format!(
                    "matrix {n} over {} {{\n{}\n}}",
                    bases.join(", "),
                    a.join("\n")
                )
            }),
    ]
}

fn program() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            item(),
            prop_oneof![Just("\n"), Just("\n\n"), Just("\n# note\n")],
        ),
        0..6,
    )
    .prop_map(|items| {
        items
            .into_iter()
            .map(|(i, sep)| format!("{i}{sep}"))
            .collect()
    })
}

fn comment_texts(src: &str) -> Vec<String> {
    let mut v: Vec<String> = comments(src)
        .into_iter()
        .map(|c| c.text.trim().to_string())
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn generated_programs_parse_and_format_round_trips(src in program()) {
        let parsed = parse(&src);
        prop_assert!(parsed.errors.is_empty(), "{src}\n{:?}", parsed.errors);
        let once = format(&src).unwrap();
        let twice = format(&once).unwrap();
        prop_assert_eq!(&once, &twice, "formatting is not idempotent");
        let mut a = parsed.file;
        let mut b = parse(&once).file;
        a.erase_spans();
        b.erase_spans();
        prop_assert_eq!(a, b, "formatting changed the tree:\n{}", once);
        prop_assert_eq!(comment_texts(&src), comment_texts(&once), "a comment was lost");
    }

    #[test]
    fn the_parallel_chunked_parse_equals_the_whole_parse(src in program()) {
        // When every piece parses, the tree (spans included) is the whole parse's.
        if let Some(chunked) = mio_grammar::parse_chunked_everywhere(&src) {
            prop_assert_eq!(chunked.file, parse(&src).file, "{}", src);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text);
        let _ = format(&text);
    }

    #[test]
    fn random_text_made_of_mio_tokens_never_panics(
        toks in prop::collection::vec(prop_oneof![
            Just("{"), Just("}"), Just("("), Just(")"), Just("["), Just("]"), Just("="), Just(","),
            Just(".."), Just("."), Just("\""), Just("#"), Just("\n"), Just(" "), Just("workflow"),
            Just("train"), Just("on"), Just("as"), Just("use"), Just("task"), Just("x"), Just("1k"),
            Just("-"), Just("2e-4"), Just("matrix"), Just("over"), Just("eval"), Just("}\n"),
        ], 0..80)
    ) {
        let text: String = toks.concat();
        let _ = parse(&text);
        let _ = format(&text);
    }
}

/// The repository's real `.mio` files, for the edit test.
fn real_files() -> Vec<String> {
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
                    out.push(std::fs::read_to_string(e.path()).unwrap());
                }
            }
        }
    }
    out
}

#[test]
fn every_real_file_parses_the_same_in_pieces() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut n = 0;
    for dir in [
        "workflows",
        "workflows/paper",
        "examples",
        "tests/fixtures/valid",
        "catalog/src/prelude",
    ] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "mio") {
                let text = std::fs::read_to_string(e.path()).unwrap();
                let chunked = mio_grammar::parse_chunked_everywhere(&text)
                    .unwrap_or_else(|| panic!("{}", e.path().display()));
                assert_eq!(chunked.file, parse(&text).file, "{}", e.path().display());
                n += 1;
            }
        }
    }
    assert!(n >= 15);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_edits_of_real_files_never_panic(
        file in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..6, "[{}()\\[\\]=,.\"#a-z0-9 \n]{0,4}"), 1..5)
    ) {
        let files = real_files();
        prop_assume!(!files.is_empty());
        let mut text = file.get(&files).clone();
        for (at, del, ins) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) { i -= 1; }
            let mut j = (i + del).min(text.len());
            while !text.is_char_boundary(j) { j += 1; }
            text.replace_range(i..j, &ins);
        }
        let parsed = parse(&text);
        for e in &parsed.errors {
            prop_assert!(e.span.start <= e.span.end && e.span.end <= text.len() + 1, "bad span {:?}", e.span);
        }
        if let Ok(f) = format(&text) {
            prop_assert_eq!(format(&f).unwrap(), f);
        }
    }
}

/// Every token of a text that parses without errors lies inside one of its items (or is a
/// comment): nothing is read past and dropped.
fn every_token_is_in_an_item(text: &str) -> Result<(), String> {
    let parsed = parse(text);
    if !parsed.errors.is_empty() {
        return Ok(());
    }
    let spans: Vec<mio_grammar::Span> = parsed.file.items.iter().map(|i| i.span()).collect();
    for t in mio_grammar::lex::tokens(text) {
        if t.kind == mio_grammar::lex::TokenKind::Comment {
            continue;
        }
        if !spans
            .iter()
            .any(|s| s.start <= t.span.start && t.span.end <= s.end)
        {
            return Err(format!(
                "`{}` at {} belongs to no item and no error was reported",
                &text[t.span.start..t.span.end],
                t.span.start
            ));
        }
    }
    Ok(())
}

/// A formatted text keeps the tokens and comments of the original, in order (commas aside).
fn same_tokens(before: &str, after: &str) -> Result<(), String> {
    let (a, b) = (
        mio_grammar::lex::significant(before),
        mio_grammar::lex::significant(after),
    );
    if a == b {
        Ok(())
    } else {
        let k = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        Err(format!(
            "the tokens differ from #{k}: {:?} became {:?}\n{after}",
            a.get(k),
            b.get(k)
        ))
    }
}

const STRAY: &[&str] = &[
    "}", "{", ")", "(", "]", "[", "=", ",", "zzz", "\"s\"", "1", "..", ".", "workflow", "train",
    "}\n", "\nzzz\n", "# c\n", "\n# c\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn a_stray_token_anywhere_is_reported_or_kept(
        file in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        stray in prop::sample::select(STRAY),
        second in prop::option::of((any::<prop::sample::Index>(), prop::sample::select(STRAY))),
    ) {
        let files = real_files();
        let mut text = file.get(&files).clone();
        // At a token boundary: before a token, or after the last one.
        let insert = |text: &mut String, at: &prop::sample::Index, s: &str| {
            let toks = mio_grammar::lex::tokens(text);
            let k = at.index(toks.len() + 1);
            let pos = toks.get(k).map_or(text.len(), |t| t.span.start);
            text.insert_str(pos, &format!(" {s} "));
        };
        insert(&mut text, &at, stray);
        if let Some((at2, s2)) = second {
            insert(&mut text, &at2, s2);
        }
        prop_assert!(every_token_is_in_an_item(&text).is_ok(), "{}\n{text}", every_token_is_in_an_item(&text).unwrap_err());
        if let Ok(f) = format(&text) {
            prop_assert!(same_tokens(&text, &f).is_ok(), "{}", same_tokens(&text, &f).unwrap_err());
            prop_assert!(every_token_is_in_an_item(&f).is_ok());
        }
    }

    #[test]
    fn comments_anywhere_in_generated_programs_stay_in_place_or_the_file_is_left_alone(
        src in program(),
        at in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
    ) {
        let mut text = src.clone();
        for (n, a) in at.iter().enumerate() {
            let toks = mio_grammar::lex::tokens(&text);
            let k = a.index(toks.len() + 1);
            let pos = toks.get(k).map_or(text.len(), |t| t.span.start);
            text.insert_str(pos, &format!("# note {n}\n"));
        }
        if let Ok(f) = format(&text) {
            prop_assert!(same_tokens(&text, &f).is_ok(), "{}", same_tokens(&text, &f).unwrap_err());
            prop_assert_eq!(format(&f).unwrap(), f.clone(), "not idempotent");
        }
    }
}

#[test]
fn comments_on_call_arguments_stay_beside_their_argument() {
    let src = "workflow w {\n  model m = srresnet(\n    channels = 32, # width\n    # depth next\n    blocks = 4,\n  )\n}\n";
    let f = format(src).unwrap();
    assert!(f.contains("channels = 32, # width\n"), "{f}");
    assert!(f.contains("    # depth next\n    blocks = 4,\n"), "{f}");
    assert_eq!(format(&f).unwrap(), f);
}

#[test]
fn crlf_and_a_byte_order_mark_are_kept() {
    let src = "\u{feff}use paper\r\n\r\nworkflow w {\r\n  seed   = 1 # s\r\n}\r\n";
    assert!(parse(src).errors.is_empty(), "{:?}", parse(src).errors);
    let f = format(src).unwrap();
    assert_eq!(
        f,
        "\u{feff}use paper\r\n\r\nworkflow w {\r\n  seed = 1 # s\r\n}\r\n"
    );
    assert_eq!(format(&f).unwrap(), f);
}

#[test]
fn text_after_a_closed_workflow_is_an_error_not_dropped() {
    for src in [
        "workflow a { seed = 1 } workflow b { seed = \"x\" } junk\n",
        "workflow a {}\nzzz\n",
        "workflow a {\n  seed = 1\n}\n  }\n  seed = 2\n}\n",
    ] {
        let p = parse(src);
        assert!(!p.errors.is_empty(), "{src}");
        assert!(
            p.errors[0].message.contains("after the end of workflow"),
            "{:?}",
            p.errors
        );
        assert!(format(src).is_err());
    }
}

#[test]
fn text_after_any_complete_item_is_an_error_and_the_item_is_kept() {
    for (src, kept) in [
        ("use paper\n}\nworkflow w {}\n", 2),
        ("task t = noise() junk\n", 1),
        ("let x = [1, 2] ]\n", 1),
        (
            "workflow w { seed = 1 }\nmatrix m over w { w.seed = [1] } zzz\n",
            2,
        ),
    ] {
        let p = parse(src);
        assert_eq!(p.errors.len(), 1, "{src}: {:?}", p.errors);
        assert!(
            p.errors[0].message.contains("belongs to no item"),
            "{:?}",
            p.errors
        );
        assert_eq!(p.file.items.len(), kept, "{src}");
        assert!(format(src).is_err());
    }
}
