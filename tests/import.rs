//! `mio import basicsr`: option files written in the reference's shape (tests/fixtures/basicsr,
//! from the keys in MIOIR.md) become a .mio file that checks and plans, with every key it could
//! not map named with its file and line.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::mio_in as mio;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/basicsr");

fn workspace(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mio-import-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(FIXTURES).unwrap().flatten() {
        std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
    }
    dir
}

fn say(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_chain_of_stage_files_becomes_one_sequential_training_that_checks_and_plans() {
    let dir = workspace("chain");
    // Given out of order: the chain of `pretrain_network_g` puts them in order.
    let o = mio(
        &dir,
        &[
            "import",
            "basicsr",
            "stage3.yml",
            "stage1.yml",
            "stage2.yml",
            "-o",
            "imported.mio",
        ],
    );
    let said = say(&o);
    assert!(o.status.success(), "{said}");
    let text = std::fs::read_to_string(dir.join("imported.mio")).unwrap();
    for want in [
        "workflow SRResNet_S_EP {",
        "seed = 0",
        "data train = images(\"datasets/DF2K/HR_sub\", patch = 128px, batch = 16, augment = [flip, rot90])",
        "data val = pairs(lq = \"datasets/MiO_val/LQ\", gt = \"datasets/MiO_val/GT\")",
        "model net = srresnet(channels = 64, blocks = 16, prompt = explicit)",
        "strategy = sequential(order = [paper.sr, paper.blur, paper.noise])",
        "iters = [100k, 100k, 100k]",
        "optimizer = adam(lr = 2e-4, betas = (0.9, 0.99), weight_decay = 0.0)",
        "schedule = cosine_restart(min_lr = 1e-7)",
        "loss = l1",
        "ema = 0.999",
        "checkpoint_every = 5k",
        "eval net on val { tasks = [paper.sr], metrics = [psnr(crop = 4px, y = false)] }",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    // It checks (the command checks it too) and plans: three stages.
    let o = mio(&dir, &["plan", "imported.mio"]);
    let plan = say(&o);
    assert!(o.status.success(), "{plan}");
    assert!(plan.contains("stage 3/3"), "{plan}");
    // An existing file is not written over without --force.
    let o = mio(
        &dir,
        &["import", "basicsr", "stage1.yml", "-o", "imported.mio"],
    );
    assert!(!o.status.success());
    assert!(say(&o).contains("--force"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn what_is_not_mapped_is_named_with_its_line() {
    let dir = workspace("unmapped");
    let o = mio(&dir, &["import", "basicsr", "restormer_mixed.yml"]);
    let said = say(&o);
    assert!(o.status.success(), "{said}");
    let text = std::fs::read_to_string(dir.join("restormer_mixed.mio")).unwrap();
    for want in [
        "model net = restormer(dim = 48, blocks = [4, 6, 6, 8], heads = [1, 2, 4, 8], refinement = 4, ffn_expansion = 2.66, bias = false, prompt = adaptive)",
        "strategy = mixed",
        "tasks = [paper.sr, paper.blur, paper.noise, paper.jpeg, paper.rain, paper.haze, paper.lowlight]",
        "optimizer = adamw(lr = 2e-4, betas = (0.9, 0.99), weight_decay = 0.02)",
        "schedule = cosine_restart(min_lr = 1e-6, periods = [50k, 50k])",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    let line = |key: &str| {
        let src = std::fs::read_to_string(dir.join("restormer_mixed.yml")).unwrap();
        src.lines()
            .position(|l| l.trim_start().starts_with(key))
            .map(|n| n + 1)
            .unwrap()
    };
    assert!(
        said.contains(&format!(
            "restormer_mixed.yml:{}: `train.warmup_iter`: mio has no warm-up",
            line("warmup_iter")
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "restormer_mixed.yml:{}: `train.scheduler.restart_weights`: mio restarts at the full learning rate",
            line("restart_weights")
        )),
        "{said}"
    );
    assert!(
        !said.contains("dataset_enlarge_ratio"),
        "a ratio of 1 is what mio does: {said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broken_option_files_are_clear_errors() {
    let dir = workspace("broken");
    std::fs::write(dir.join("cut.yml"), "name: x\ntrain:\n  optim_g: [1, 2\n").unwrap();
    let o = mio(&dir, &["import", "basicsr", "cut.yml"]);
    assert!(!o.status.success());
    assert!(
        say(&o).contains("cut.yml: not a YAML option file"),
        "{}",
        say(&o)
    );
    std::fs::write(dir.join("list.yml"), "- a\n- b\n").unwrap();
    let o = mio(&dir, &["import", "basicsr", "list.yml"]);
    assert!(say(&o).contains("not an option file"), "{}", say(&o));
    let o = mio(&dir, &["import", "basicsr", "missing.yml"]);
    assert!(
        say(&o).contains("missing.yml: cannot read it"),
        "{}",
        say(&o)
    );
    assert!(!dir.join("cut.mio").exists() && !dir.join("list.mio").exists());
    // An unknown network: srresnet stands in, and the import says so.
    let text = std::fs::read_to_string(dir.join("stage1.yml"))
        .unwrap()
        .replace(
            "type: SRResNet_EP\n  num_in_ch",
            "type: HAT_EP\n  num_in_ch",
        );
    std::fs::write(dir.join("hat.yml"), text).unwrap();
    let o = mio(&dir, &["import", "basicsr", "hat.yml"]);
    assert!(o.status.success(), "{}", say(&o));
    assert!(
        say(&o).contains("`HAT_EP` is not a backbone mio has"),
        "{}",
        say(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_references_uformer_and_promptir_files_become_their_backbones_and_letter_coded_tasks() {
    let dir = workspace("transformers");
    // The reference names its meta files by task letters (`..._rj.txt`: rain, jpeg).
    let o = mio(
        &dir,
        &[
            "import",
            "basicsr",
            "uformer_ep_rj.yml",
            "uformer_ep_r.yml",
            "-o",
            "u.mio",
        ],
    );
    assert!(o.status.success(), "{}", say(&o));
    let text = std::fs::read_to_string(dir.join("u.mio")).unwrap();
    for want in [
        "model net = uformer(embed = 32, depths = [1, 2, 8, 8, 2, 8, 8, 2, 1], window = 8px, modulator = true, prompt = explicit)",
        "strategy = sequential(order = [paper.rain, paper.jpeg])",
        "optimizer = adamw(lr = 2e-4, betas = (0.9, 0.99), weight_decay = 0.02)",
        "schedule = cosine_restart(min_lr = 1e-6)",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    // Its settings are all mapped (token projection and MLP are the variants mio builds).
    assert!(!say(&o).contains("network_g"), "{}", say(&o));
    let o = mio(
        &dir,
        &["import", "basicsr", "promptir_m.yml", "-o", "p.mio"],
    );
    assert!(o.status.success(), "{}", say(&o));
    let text = std::fs::read_to_string(dir.join("p.mio")).unwrap();
    assert!(text.contains("model net = promptir()"), "{text}");
    assert!(
        text.contains("tasks = [paper.sr, paper.blur, paper.noise, paper.jpeg, paper.rain, paper.haze, paper.lowlight]"),
        "{text}"
    );
    for file in ["u.mio", "p.mio"] {
        let o = mio(&dir, &["check", file]);
        assert!(o.status.success(), "{file}: {}", say(&o));
    }
}
