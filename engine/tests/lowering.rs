//! Every argument of every built-in reaches the jobs. For each parameter of the catalog (and of
//! every block), a small workflow is lowered twice, with two different values of it; the jobs
//! must differ in something the runner reads (the canonical texts that only name the values,
//! a backbone's and a degradation's, are left out of the comparison). A parameter declared in
//! the catalog but ignored by lowering fails here, and so does one without a pair of values
//! below. Each built-in of a kind is also lowered against every other of the same kind, so two
//! names lowered to the same thing fail too.

use mio_catalog::{builtins, Default, Kind};
use mio_engine::job::Job;
use serde_json::Value as Json;

/// A workflow that uses every kind of built-in. `{KEY}` placeholders are filled per case.
const TEMPLATE: &str = r#"use paper
{DECLS}
workflow w {
  {WORKFLOW}
  data train = {TRAIN_DATA}
  data test = {TEST_DATA}
  model m = {BACKBONE}
  train m on train { {TRAIN} }
  eval m on test { {EVAL} }
  {SWEEP}
  report { {REPORT} }
}
"#;

#[derive(Clone)]
struct Case {
    decls: String,
    workflow: String,
    train_data: String,
    test_data: String,
    backbone: String,
    train: Vec<(String, String)>,
    eval: Vec<(String, String)>,
    sweep: Option<Vec<(String, String)>>,
    report: String,
}

impl Case {
    fn base() -> Case {
        let kv = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        Case {
            decls: String::new(),
            workflow: String::new(),
            train_data: r#"images("imgs", patch = 32px, batch = 2)"#.into(),
            test_data: r#"images("imgs")"#.into(),
            backbone: "srresnet(channels = 8, blocks = 1, prompt = explicit)".into(),
            train: kv(&[
                ("strategy", "mixed"),
                ("tasks", "[noise, rain]"),
                ("iters", "10"),
            ]),
            eval: kv(&[("tasks", "[noise, rain]")]),
            sweep: Some(kv(&[("from", "noise"), ("to", "rain")])),
            report: String::new(),
        }
    }

    fn set(list: &mut Vec<(String, String)>, key: &str, value: &str) {
        match list.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.into(),
            None => list.push((key.into(), value.into())),
        }
    }

    fn source(&self) -> String {
        let block = |v: &[(String, String)]| {
            v.iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        TEMPLATE
            .replace("{DECLS}", &self.decls)
            .replace("{WORKFLOW}", &self.workflow)
            .replace("{TRAIN_DATA}", &self.train_data)
            .replace("{TEST_DATA}", &self.test_data)
            .replace("{BACKBONE}", &self.backbone)
            .replace("{TRAIN}", &block(&self.train))
            .replace("{EVAL}", &block(&self.eval))
            .replace(
                "{SWEEP}",
                &self
                    .sweep
                    .as_ref()
                    .map(|s| format!("sweep m on test as s {{ {} }}", block(s)))
                    .unwrap_or_default(),
            )
            .replace("{REPORT}", &self.report)
    }
}

/// Arguments a call needs whatever is tested (its required parameters).
fn required(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "sequential" => &[("order", "[noise, rain]")],
        "step" => &[("milestones", "[5]")],
        "images" => &[("path", "\"imgs\"")],
        "pairs" => &[("lq", "\"lq\""), ("gt", "\"gt\"")],
        _ => &[],
    }
}

/// Two values of a parameter, `(builtin, param) -> (a, b)`; `a` is empty for "the default".
fn values(builtin: &str, param: &str) -> Option<(&'static str, &'static str)> {
    Some(match (builtin, param) {
        ("srresnet", "channels") => ("", "16"),
        ("srresnet", "blocks") => ("", "2"),
        ("srresnet", "init_scale") => ("", "0.2"),
        (_, "prompt") => ("", "adaptive"),
        (_, "weights") => ("", "\"w.pth\""),
        (_, "param_key") => ("", "\"params_ema\""),
        (_, "maps") => ("", "\"type7.npy\""),
        (_, "classifier") if builtin != "train" => ("", "\"Classifier.pth\""),
        ("swinir", "embed") => ("", "90"),
        ("swinir", "depths") => ("", "[6, 6]"),
        ("swinir", "heads") => ("", "4"),
        ("swinir", "window") => ("", "4px"),
        ("swinir", "mlp_ratio") => ("", "4.0"),
        ("restormer", "dim") => ("", "24"),
        ("restormer", "blocks") => ("", "[1, 1, 1, 1]"),
        ("restormer", "refinement") => ("", "1"),
        ("restormer", "heads") => ("", "[1, 1, 1, 1]"),
        ("restormer", "ffn_expansion") => ("", "2.0"),
        ("restormer", "bias") => ("", "true"),
        ("uformer", "embed") => ("", "16"),
        ("uformer", "depths") => ("", "[1, 1, 1, 1, 1, 1, 1, 1, 1]"),
        ("uformer", "heads") => ("", "[1, 1, 1, 1, 1, 1, 1, 1, 1]"),
        ("uformer", "window") => ("", "4px"),
        ("uformer", "mlp_ratio") => ("", "2.0"),
        ("uformer", "modulator") => ("", "false"),
        ("promptir", "dim") => ("", "24"),
        ("promptir", "blocks") => ("", "[1, 1, 1, 1]"),
        ("promptir", "refinement") => ("", "1"),
        ("promptir", "heads") => ("", "[1, 1, 1, 1]"),
        ("promptir", "ffn_expansion") => ("", "2.0"),
        ("promptir", "bias") => ("", "true"),
        ("promptir", "prompt_dims") => ("", "[8, 8, 8]"),
        ("promptir", "prompt_sizes") => ("", "[8, 4, 2]"),
        ("promptir", "prompt_len") => ("", "2"),
        ("explicit", "dim") => ("", "16"),
        ("explicit", "map_size") => ("", "64px"),
        ("adaptive", "dim") => ("", "16"),
        ("sr", "scale") => ("", "2"),
        ("sr", "kernel") => ("", "matlab"),
        ("blur", "sigma") => ("", "2.0"),
        ("blur", "size") => ("", "9px"),
        ("noise", "sigma") => ("", "25"),
        ("jpeg", "quality") => ("", "40"),
        ("rain", "value") => ("", "60"),
        ("rain", "length") => ("", "25px"),
        ("rain", "angle") => ("", "10deg"),
        ("rain", "width") => ("", "5px"),
        ("haze", "a") => ("", "0.9"),
        ("haze", "beta") => ("", "1.0"),
        ("lowlight", "gamma") => ("", "2.0"),
        ("psnr" | "ssim", "crop") => ("", "2px"),
        ("psnr" | "ssim", "y") => ("", "true"),
        ("charbonnier", "eps") => ("", "0.01"),
        ("adam" | "adamw", "lr") => ("", "1e-3"),
        ("adam" | "adamw", "betas") => ("", "(0.8, 0.9)"),
        ("adam" | "adamw", "weight_decay") => ("", "0.1"),
        ("adam" | "adamw", "eps") => ("", "1e-6"),
        ("cosine_restart", "min_lr") => ("", "1e-6"),
        ("cosine_restart", "periods") => ("", "[5, 5]"),
        ("step", "milestones") => ("[5]", "[3]"),
        ("step", "gamma") => ("", "0.1"),
        ("sequential", "order") => ("[noise, rain]", "[rain, noise]"),
        ("images", "path") => ("\"imgs\"", "\"more\""),
        ("images", "patch") => ("", "48px"),
        ("images", "batch") => ("", "4"),
        ("images", "augment") => ("", "[flip]"),
        ("images", "limit") => ("", "3"),
        ("pairs", "lq") => ("\"lq\"", "\"lq2\""),
        ("pairs", "gt") => ("\"gt\"", "\"gt2\""),
        ("classifier", "iters") => ("", "100"),
        ("classifier", "lr") => ("", "1e-2"),
        ("classifier", "batch") => ("", "4"),
        ("classifier", "patch") => ("", "32"),
        ("classifier", "augment") => ("", "[flip, scale]"),
        ("slurm", "partition") => ("", "\"gpu\""),
        ("slurm", "gpus") => ("", "1"),
        ("slurm", "eval_gpus") => ("", "1"),
        ("slurm", "cpus") => ("", "4"),
        ("slurm", "mem") => ("", "\"8G\""),
        ("slurm", "time") => ("", "\"1:00:00\""),
        ("slurm", "account") => ("", "\"lab\""),
        ("slurm", "qos") => ("", "\"high\""),
        ("slurm", "extra") => ("", "[\"--constraint=a100\"]"),
        ("slurm", "max_jobs") => ("", "3"),
        ("workflow", "seed") => ("", "3"),
        ("train", "strategy") => ("", "sequential(order = [noise, rain])"),
        ("train", "tasks") => ("", "[noise, rain, jpeg]"),
        ("train", "iters") => ("", "20"),
        ("train", "optimizer") => ("", "adamw"),
        ("train", "schedule") => ("", "constant"),
        ("train", "loss") => ("", "l2"),
        ("train", "ema") => ("", "0.5"),
        ("train", "grad_clip") => ("", "1.0"),
        ("train", "checkpoint_every") => ("", "5"),
        ("train", "classifier") => ("", "classifier(iters = 7)"),
        ("train", "precision") => ("", "tf32"),
        ("eval", "tasks") => ("", "[noise]"),
        ("eval", "metrics") => ("", "[psnr]"),
        ("eval", "labels") => ("", "known"),
        ("eval", "images") => ("", "2"),
        ("eval", "save_images") => ("", "false"),
        ("eval", "table") => ("", "\"Unknown\""),
        ("sweep", "from") => ("", "rain"),
        ("sweep", "to") => ("", "noise"),
        ("sweep", "steps") => ("", "3"),
        ("sweep", "degrade") => ("", "noise"),
        ("report", "title") => ("", "\"a title\""),
        ("report", "baseline") => ("", "m"),
        ("report", "formats") => ("", "[md]"),
        _ => return None,
    })
}

/// Settings the run reads, not a node: where it runs and where it writes.
const RUN_LEVEL: &[(&str, &str, &str)] = &[
    (
        "workflow",
        "device",
        "the run's device (`lower::device`), the same for every node",
    ),
    (
        "workflow",
        "threads",
        "the size of the process's thread pool",
    ),
    ("workflow", "output", "the run folder (`run::output_dir`)"),
    (
        "workflow",
        "executor",
        "where the run's steps run (`lower::executor`; its parameters are checked below)",
    ),
];

/// A call of `builtin` with `param = value` (nothing when `value` is empty) and its required
/// arguments.
fn call(builtin: &str, param: &str, value: &str) -> String {
    let mut args: Vec<String> = required(builtin)
        .iter()
        .filter(|(k, _)| *k != param)
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    if !value.is_empty() {
        args.push(format!("{param} = {value}"));
    }
    // How a weights file is read matters only with one.
    if ["param_key", "maps", "classifier"].contains(&param) {
        args.push("weights = \"w.pth\"".into());
    }
    format!("{builtin}({})", args.join(", "))
}

/// The case that puts `text` (a call of a built-in of `kind`) where that kind is used.
fn place(kind: Kind, builtin: &str, text: &str) -> Case {
    let mut c = Case::base();
    match kind {
        Kind::Backbone => {
            // (Transformers need patches that are multiples of their windows: 32 is, and
            // 128 for Uformer's 16 windows of 8.)
            if builtin == "uformer" {
                c.train_data = r#"images("imgs", patch = 128px, batch = 2)"#.into();
            }
            c.backbone = if builtin == "promptir" {
                // Its prompts are its own: nothing to interpolate.
                c.sweep = None;
                text.into()
            } else if text.contains("prompt") {
                text.into()
            } else {
                text.replacen('(', "(prompt = explicit, ", 1)
                    .replace(", )", ")")
            };
        }
        Kind::Prompt => {
            c.backbone = format!("srresnet(channels = 8, blocks = 1, prompt = {text})");
            if builtin == "none" {
                // Nothing to interpolate without prompts.
                c.sweep = None;
            }
        }
        Kind::Degradation => {
            c.decls = format!("task t = {text}");
            Case::set(&mut c.train, "tasks", "[t, rain]");
            Case::set(&mut c.eval, "tasks", "[t, rain]");
            c.sweep = Some(vec![
                ("from".into(), "t".into()),
                ("to".into(), "rain".into()),
            ]);
        }
        Kind::Metric => Case::set(&mut c.eval, "metrics", &format!("[{text}]")),
        Kind::Loss => Case::set(&mut c.train, "loss", text),
        Kind::Optimizer => Case::set(&mut c.train, "optimizer", text),
        Kind::Schedule => Case::set(&mut c.train, "schedule", text),
        Kind::Strategy => {
            Case::set(&mut c.train, "strategy", text);
            if builtin == "sequential" {
                c.train.retain(|(k, _)| k != "tasks");
            }
        }
        Kind::Dataset if builtin == "pairs" => {
            c.test_data = text.into();
            // Sweeps need clean images: over one file instead.
            c.sweep = None;
        }
        Kind::Dataset => {
            c.train_data = text.into();
            c.test_data = text.into();
        }
        Kind::Classifier => Case::set(&mut c.train, "classifier", text),
        Kind::Executor => c.workflow = format!("executor = {text}"),
        Kind::Block => unreachable!("blocks are placed by `block_case`"),
    }
    c
}

fn block_case(block: &str, param: &str, value: &str) -> Case {
    let mut c = Case::base();
    if value.is_empty() {
        return c;
    }
    match block {
        "workflow" => c.workflow = format!("{param} = {value}"),
        "train" => {
            Case::set(&mut c.train, param, value);
            if param == "strategy" {
                c.train.retain(|(k, _)| k != "tasks");
            }
        }
        "eval" => Case::set(&mut c.eval, param, value),
        "sweep" => {
            let s = c.sweep.get_or_insert_with(Vec::new);
            Case::set(s, param, value);
        }
        "report" => c.report = format!("{param} = {value}"),
        other => panic!("no placement for the block `{other}`"),
    }
    c
}

/// The jobs of a workflow's plan as JSON, without the canonical texts that only name values;
/// reports only when `reports` (they carry the whole checked workflow).
fn jobs(source: &str, reports: bool) -> Json {
    let checked = mio_engine::check_source("lowering.mio", None, source.to_string(), &[]);
    assert!(
        checked.is_ok(),
        "{source}\n{}",
        checked.render(mio_engine::Style::Plain)
    );
    let plan = mio_engine::plan(&checked).unwrap_or_else(|d| panic!("{source}\n{d:?}"));
    let list: Vec<&Job> = plan
        .graph
        .node_weights()
        .map(|n| &n.job)
        .filter(|j| reports == matches!(j, Job::Report(_)))
        .collect();
    let mut v = serde_json::to_value(list).unwrap();
    strip(&mut v);
    v
}

/// The executor a workflow lowers to.
fn executor(source: &str) -> mio_engine::job::Executor {
    let checked = mio_engine::check_source("lowering.mio", None, source.to_string(), &[]);
    assert!(
        checked.is_ok(),
        "{}",
        checked.render(mio_engine::Style::Plain)
    );
    mio_engine::lower::executor(&checked.workflows[0]).unwrap()
}

fn strip(v: &mut Json) {
    match v {
        Json::Object(m) => {
            m.remove("text");
            m.remove("backbone");
            m.values_mut().for_each(strip);
        }
        Json::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

#[test]
fn every_parameter_of_every_builtin_reaches_the_jobs() {
    let mut checked = 0;
    let mut problems = vec![];
    for b in builtins::all() {
        for p in b.params {
            let Some((a, bv)) = values(b.name, p.name) else {
                problems.push(format!(
                    "{}.{}: no pair of values in engine/tests/lowering.rs",
                    b.name, p.name
                ));
                continue;
            };
            assert!(
                !a.is_empty() || !matches!(p.default, Default::Required),
                "{}.{} is required: give both values",
                b.name,
                p.name
            );
            let one = place(b.kind, b.name, &call(b.name, p.name, a)).source();
            let two = place(b.kind, b.name, &call(b.name, p.name, bv)).source();
            let same = if b.kind == Kind::Executor {
                // The executor is the run's, not a node's.
                executor(&one) == executor(&two)
            } else {
                jobs(&one, false) == jobs(&two, false)
            };
            if same {
                problems.push(format!(
                    "{}.{}: `{}` and `{}` lower to the same jobs (the parameter does nothing)",
                    b.name,
                    p.name,
                    if a.is_empty() { "the default" } else { a },
                    bv
                ));
            }
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 60, "only {checked} parameters checked");
}

#[test]
fn every_setting_of_every_block_reaches_the_jobs_or_the_run() {
    let mut problems = vec![];
    for b in builtins::BLOCKS {
        for p in b.params {
            if let Some((_, _, why)) = RUN_LEVEL
                .iter()
                .find(|(blk, name, _)| *blk == b.name && *name == p.name)
            {
                assert!(!why.is_empty());
                continue;
            }
            // A sweep over a parameter is a sweep of its own kind: `param` and `values`.
            if b.name == "sweep" && (p.name == "param" || p.name == "values") {
                continue;
            }
            let Some((a, bv)) = values(b.name, p.name) else {
                problems.push(format!(
                    "{}.{}: no pair of values in engine/tests/lowering.rs",
                    b.name, p.name
                ));
                continue;
            };
            let reports = b.name == "report";
            let one = block_case(b.name, p.name, a).source();
            let two = block_case(b.name, p.name, bv).source();
            if jobs(&one, reports) == jobs(&two, reports) {
                problems.push(format!(
                    "{}.{}: `{}` and `{bv}` lower to the same jobs",
                    b.name,
                    p.name,
                    if a.is_empty() { "the default" } else { a },
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_parameter_sweep_lowers_its_parameter_and_values() {
    let sweep = |param: &str, values: &str| {
        let mut c = Case::base();
        c.sweep = Some(vec![
            ("degrade".into(), "blur".into()),
            ("param".into(), format!("\"{param}\"")),
            ("values".into(), values.into()),
        ]);
        jobs(&c.source(), false)
    };
    let base = sweep("sigma", "[3, 5]");
    assert_ne!(base, sweep("size", "[3, 5]"), "`param` does nothing");
    assert_ne!(base, sweep("sigma", "[3, 7]"), "`values` does nothing");
}

#[test]
fn each_builtin_lowers_unlike_the_others_of_its_kind() {
    let kinds = [
        Kind::Backbone,
        Kind::Prompt,
        Kind::Degradation,
        Kind::Metric,
        Kind::Loss,
        Kind::Optimizer,
        Kind::Schedule,
        Kind::Strategy,
    ];
    assert_ne!(
        executor(&place(Kind::Executor, "local", "local").source()),
        executor(&place(Kind::Executor, "slurm", "slurm").source())
    );
    for kind in kinds {
        let lowered: Vec<(&str, Json)> = builtins::of_kind(kind)
            .map(|b| {
                (
                    b.name,
                    jobs(&place(kind, b.name, &call(b.name, "", "")).source(), false),
                )
            })
            .collect();
        for (i, (a, ja)) in lowered.iter().enumerate() {
            for (b, jb) in &lowered[i + 1..] {
                assert_ne!(ja, jb, "`{a}` and `{b}` lower to the same jobs");
            }
        }
    }
}

#[test]
fn init_scale_scales_the_initial_weights() {
    use mio_stdlib::models::network::{Arch, Network};
    let spec = |scale: &str| {
        let mut c = place(
            Kind::Backbone,
            "srresnet",
            &format!("srresnet(channels = 8, blocks = 1, prompt = none, init_scale = {scale})"),
        );
        c.sweep = None;
        let checked = mio_engine::check_source("s.mio", None, c.source(), &[]);
        let plan = mio_engine::plan(&checked).unwrap();
        plan.graph
            .node_weights()
            .find_map(|n| match &n.job {
                Job::Train(t) => Some(t.model.network.clone()),
                _ => None,
            })
            .unwrap()
    };
    let (small, large) = (spec("0.1"), spec("0.4"));
    assert!(matches!(&large.arch, Arch::SrResNet(c) if c.init_scale == 0.4));
    let std_of = |s| {
        let net = Network::new(s, 0, &candle_core::Device::Cpu).unwrap();
        let w = net.varmap.data().lock().unwrap()["body.0.conv1.weight"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt()
    };
    let ratio = std_of(large) / std_of(small);
    assert!((ratio - 4.0).abs() < 1e-3, "{ratio}");
}

#[test]
fn the_catalog_defaults_are_the_reference_configurations() {
    use mio_catalog::config::{
        Arch, PromptIrConfig, RestormerConfig, SrResNetConfig, SwinConfig, UformerConfig,
    };
    for (name, want) in [
        ("srresnet", Arch::SrResNet(SrResNetConfig::reference())),
        ("swinir", Arch::SwinIr(SwinConfig::reference())),
        ("restormer", Arch::Restormer(RestormerConfig::reference())),
        ("uformer", Arch::Uformer(UformerConfig::reference())),
        ("promptir", Arch::PromptIr(PromptIrConfig::reference())),
    ] {
        let call = mio_engine::resolve_backbone(name, "--arch").unwrap();
        let spec = mio_engine::lower::network(&call, vec![]).unwrap();
        assert_eq!(spec.arch, want, "{name}'s defaults");
        assert!(spec.arch.problems().is_empty(), "{name}");
    }
}

#[test]
fn the_paper_prelude_holds_the_catalogs_in_distribution_ranges() {
    for key in mio_catalog::PAPER_TASKS {
        let task = mio_engine::resolve_task(&format!("paper.{key}"), &[], mio_engine::Style::Plain)
            .unwrap();
        let from_prelude = mio_engine::lower::degradation(&task).unwrap();
        let from_catalog = mio_stdlib::degrade::Degradation::paper(key).unwrap();
        assert_eq!(from_prelude, from_catalog, "{key}");
    }
}

#[test]
fn each_augmentation_of_the_classifier_reaches_its_job() {
    let b = builtins::lookup(Kind::Classifier, "classifier").expect("the classifier");
    let p = b
        .params
        .iter()
        .find(|p| p.name == "augment")
        .expect("augment");
    let mio_catalog::Ty::List(mio_catalog::Ty::Word(words)) = p.ty else {
        panic!("augment is a list of words, not {:?}", p.ty)
    };
    assert!(words.contains(&"exposure"), "{words:?}");
    let lowered = |ws: &[&str]| {
        let text = call("classifier", "augment", &format!("[{}]", ws.join(", ")));
        jobs(
            &place(Kind::Classifier, "classifier", &text).source(),
            false,
        )
    };
    let every = lowered(words);
    for w in words.iter() {
        let rest: Vec<&str> = words.iter().copied().filter(|x| x != w).collect();
        assert_ne!(lowered(&rest), every, "leaving `{w}` out changes nothing");
    }
}
