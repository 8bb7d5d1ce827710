//! `mio import basicsr OPTIONS.yml...`: BasicSR (and the reference's) option files as one
//! `.mio` file. One file is one training; several files are the stages of a sequential
//! training, chained by `path.pretrain_network_g` (a stage starts from the previous stage's
//! `net_g_latest.pth`), each stage's tasks read from the name of its `meta_info` file. Every
//! key mio does not map is reported with its file and line, and why.

use std::path::{Path, PathBuf};

use crate::yaml::{line_of, Value};

/// One option file, parsed.
struct Options {
    path: PathBuf,
    text: String,
    root: Value,
}

/// A key that was not mapped, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Unmapped {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub why: String,
}

impl std::fmt::Display for Unmapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(
                f,
                "{}:{l}: `{}`: {}",
                self.file.display(),
                self.key,
                self.why
            ),
            None => write!(f, "{}: `{}`: {}", self.file.display(), self.key, self.why),
        }
    }
}

/// The `.mio` text and what could not be mapped.
pub struct Imported {
    pub text: String,
    pub unmapped: Vec<Unmapped>,
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut v = v;
    for k in path {
        v = v.get(*k)?;
    }
    (!v.is_null()).then_some(v)
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        // `!!float 2e-4` and quoted numbers.
        Value::Tagged(t) => num(&t.value),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => text(&t.value),
        _ => None,
    }
}

fn list(v: &Value) -> Option<Vec<f64>> {
    v.as_sequence()?.iter().map(num).collect()
}

/// A number as a .mio file writes it: `2e-4`, `0.999`, `100k`.
fn lit(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        let i = x as i64;
        if i != 0 && i % 1_000_000 == 0 {
            format!("{}M", i / 1_000_000)
        } else if i != 0 && i % 1000 == 0 {
            format!("{}k", i / 1000)
        } else {
            i.to_string()
        }
    } else if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

fn float(x: f64) -> String {
    let s = lit(x);
    if x.fract() == 0.0 && !s.ends_with(['k', 'M']) {
        format!("{s}.0")
    } else {
        s
    }
}

fn quote(s: &str) -> String {
    mio_grammar::format::quote(s)
}

/// The seven tasks' keys found in a meta file's name (`meta_info_blur_noise.txt`,
/// `MiO_train_SR.txt`, `.../dark/...`); failing those, the reference's letter codes that end
/// its stem (`MiO-meta-DF2K_300_rj.txt`, `..._r+j+b.txt`: s sr, b blur, n noise, j jpeg, r
/// rain, h haze, d dark).
fn tasks_in_name(name: &str) -> Vec<&'static str> {
    const TASKS: [&str; 7] = ["sr", "blur", "noise", "jpeg", "rain", "haze", "lowlight"];
    let lower = name.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = vec![];
    for (task, spellings) in TASKS.into_iter().zip([
        &["sr", "x4", "bicubic"][..],
        &["blur", "deblur"],
        &["noise", "noisy", "denoise", "dn"],
        &["jpeg", "jpg", "car"],
        &["rain", "derain", "rainy"],
        &["haze", "hazy", "dehaze", "fog"],
        &["lowlight", "dark", "low", "lol"],
    ]) {
        if words.iter().any(|w| spellings.contains(w)) {
            out.push(task);
        }
    }
    if !out.is_empty() {
        return out;
    }
    let file = lower.rsplit(['/', '\\']).next().unwrap_or(&lower);
    let stem = file.split('.').next().unwrap_or(file);
    let codes: String = stem
        .rsplit(['_', '-'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|&c| c != '+')
        .collect();
    let task_of = |c: char| "sbnjrhd".find(c).map(|i| TASKS[i]);
    if codes.is_empty() || !codes.chars().all(|c| task_of(c).is_some()) {
        return vec![];
    }
    TASKS
        .into_iter()
        .filter(|t| codes.chars().any(|c| task_of(c) == Some(t)))
        .collect()
}

/// Reads the option files; one that cannot be read or parsed is an error naming it.
fn read(files: &[PathBuf]) -> Result<Vec<Options>, String> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("{}: cannot read it: {e}", f.display()))?;
            let root: Value = crate::yaml::from_str(&text)
                .map_err(|e| format!("{}: not a YAML option file: {e}", f.display()))?;
            if !root.is_mapping() {
                return Err(format!(
                    "{}: not an option file (its top level is not a set of keys)",
                    f.display()
                ));
            }
            Ok(Options {
                path: f.clone(),
                text,
                root,
            })
        })
        .collect()
}

/// Puts the files in stage order: the one without `pretrain_network_g` first, then each whose
/// pretrained network is under the previous one's experiment `name`; files the chain does
/// not link keep their given order after it.
fn chain(mut opts: Vec<Options>) -> Vec<Options> {
    let name = |o: &Options| get(&o.root, &["name"]).and_then(text).unwrap_or_default();
    let pretrain = |o: &Options| {
        get(&o.root, &["path", "pretrain_network_g"])
            .and_then(text)
            .filter(|s| s != "~" && !s.is_empty())
    };
    let mut out: Vec<Options> = vec![];
    if let Some(i) = opts.iter().position(|o| pretrain(o).is_none()) {
        out.push(opts.remove(i));
        loop {
            let prev = name(out.last().expect("one"));
            let next = opts
                .iter()
                .position(|o| pretrain(o).is_some_and(|p| !prev.is_empty() && p.contains(&prev)));
            match next {
                Some(i) => out.push(opts.remove(i)),
                None => break,
            }
        }
    }
    out.extend(opts);
    out
}

struct Out {
    unmapped: Vec<Unmapped>,
}

impl Out {
    fn skip(&mut self, o: &Options, path: &[&str], why: impl Into<String>) {
        self.unmapped.push(Unmapped {
            file: o.path.clone(),
            line: line_of(&o.text, path),
            key: path.join("."),
            why: why.into(),
        });
    }
}

/// The backbone call of `network_g`.
fn backbone(o: &Options, out: &mut Out) -> String {
    let Some(net) = get(&o.root, &["network_g"]) else {
        out.skip(
            o,
            &["network_g"],
            "missing: the model is left as srresnet's defaults",
        );
        return "srresnet".into();
    };
    let kind = get(net, &["type"]).and_then(text).unwrap_or_default();
    let model_type = get(&o.root, &["model_type"])
        .and_then(text)
        .unwrap_or_default();
    let tag = format!("{kind} {model_type}").to_lowercase();
    let prompt = if tag.contains("_ep") {
        ", prompt = explicit"
    } else if tag.contains("_ap") {
        ", prompt = adaptive"
    } else {
        ""
    };
    let arg = |k: &str| get(net, &[k]).and_then(num);
    let mut args: Vec<String> = vec![];
    let mut used: Vec<&str> = vec!["type"];
    let lower = kind.to_lowercase();
    let name = if lower.contains("srresnet") {
        for (k, to) in [("num_feat", "channels"), ("num_block", "blocks")] {
            if let Some(v) = arg(k) {
                args.push(format!("{to} = {}", lit(v)));
                used.push(k);
            }
        }
        // A scale-1 SRResNet is mio's; in and out channels are 3.
        used.extend(["num_in_ch", "num_out_ch"]);
        if arg("upscale").is_some_and(|u| u == 1.0) {
            used.push("upscale");
        }
        "srresnet"
    } else if lower.contains("swinir") {
        if let Some(v) = arg("embed_dim") {
            args.push(format!("embed = {}", lit(v)));
            used.push("embed_dim");
        }
        if let Some(d) = get(net, &["depths"]).and_then(list) {
            let d: Vec<String> = d.iter().map(|x| lit(*x)).collect();
            args.push(format!("depths = [{}]", d.join(", ")));
            used.push("depths");
        }
        if let Some(h) = get(net, &["num_heads"]).and_then(list) {
            if h.windows(2).all(|w| w[0] == w[1]) && !h.is_empty() {
                args.push(format!("heads = {}", lit(h[0])));
                used.push("num_heads");
            }
        }
        if let Some(v) = arg("window_size") {
            args.push(format!("window = {}px", lit(v)));
            used.push("window_size");
        }
        if let Some(v) = arg("mlp_ratio") {
            args.push(format!("mlp_ratio = {}", float(v)));
            used.push("mlp_ratio");
        }
        used.extend([
            "in_chans",
            "img_range",
            "upscale",
            "upsampler",
            "resi_connection",
            "img_size",
        ]);
        "swinir"
    } else if lower.contains("uformer") {
        if let Some(v) = arg("embed_dim") {
            args.push(format!("embed = {}", lit(v)));
            used.push("embed_dim");
        }
        for (k, to) in [("depths", "depths"), ("num_heads", "heads")] {
            if let Some(l) = get(net, &[k]).and_then(list) {
                let l: Vec<String> = l.iter().map(|x| lit(*x)).collect();
                args.push(format!("{to} = [{}]", l.join(", ")));
                used.push(k);
            }
        }
        if let Some(v) = arg("win_size") {
            args.push(format!("window = {}px", lit(v)));
            used.push("win_size");
        }
        if let Some(v) = arg("mlp_ratio") {
            args.push(format!("mlp_ratio = {}", float(v)));
            used.push("mlp_ratio");
        }
        if let Some(b) = get(net, &["modulator"]).and_then(Value::as_bool) {
            args.push(format!("modulator = {b}"));
            used.push("modulator");
        }
        // The variants mio builds: linear token projection, LeFF (the reference's choice).
        for (k, only) in [("token_projection", "linear"), ("token_mlp", "leff")] {
            if get(net, &[k]).and_then(text).is_none_or(|v| v == only) {
                used.push(k);
            }
        }
        used.extend(["in_chans", "dd_in", "upscale", "img_size", "qkv_bias"]);
        "uformer"
    } else if lower.contains("promptir") {
        restormer_body(net, &mut args, &mut used);
        if get(net, &["decoder"])
            .and_then(Value::as_bool)
            .is_none_or(|d| d)
        {
            used.push("decoder");
        }
        // Its prompt blocks are its own: no explicit or adaptive branch to ask for.
        return finish(o, out, net, &used, "promptir", args, "");
    } else if lower.contains("restormer") {
        restormer_body(net, &mut args, &mut used);
        used.push("dual_pixel_task");
        "restormer"
    } else {
        out.skip(
            o,
            &["network_g", "type"],
            format!("`{kind}` is not a backbone mio has (srresnet, swinir, restormer, uformer, promptir): srresnet's defaults stand in"),
        );
        return if prompt.is_empty() {
            "srresnet".into()
        } else {
            format!("srresnet({})", prompt.trim_start_matches(", "))
        };
    };
    finish(o, out, net, &used, name, args, prompt)
}

/// The arguments of a Restormer body (Restormer's and PromptIR's `network_g`): `dim`, the
/// levels' blocks and heads, the refinement, the FFN expansion, the bias; the LayerNorm
/// variant mio builds ("WithBias") and the channel counts (3) are taken as read.
fn restormer_body<'a>(net: &'a Value, args: &mut Vec<String>, used: &mut Vec<&'a str>) {
    let arg = |k: &str| get(net, &[k]).and_then(num);
    if let Some(v) = arg("dim") {
        args.push(format!("dim = {}", lit(v)));
        used.push("dim");
    }
    for (k, to) in [("num_blocks", "blocks"), ("heads", "heads")] {
        if let Some(l) = get(net, &[k]).and_then(list) {
            let l: Vec<String> = l.iter().map(|x| lit(*x)).collect();
            args.push(format!("{to} = [{}]", l.join(", ")));
            used.push(k);
        }
    }
    if let Some(v) = arg("num_refinement_blocks") {
        args.push(format!("refinement = {}", lit(v)));
        used.push("num_refinement_blocks");
    }
    if let Some(v) = arg("ffn_expansion_factor") {
        args.push(format!("ffn_expansion = {}", float(v)));
        used.push("ffn_expansion_factor");
    }
    if let Some(b) = get(net, &["bias"]).and_then(Value::as_bool) {
        args.push(format!("bias = {b}"));
        used.push("bias");
    }
    if get(net, &["LayerNorm_type"])
        .and_then(text)
        .is_none_or(|v| v == "WithBias")
    {
        used.push("LayerNorm_type");
    }
    used.extend(["inp_channels", "out_channels"]);
}

/// The backbone call from its arguments and prompt; every key of `network_g` not `used` is
/// reported as not mapped.
fn finish(
    o: &Options,
    out: &mut Out,
    net: &Value,
    used: &[&str],
    name: &str,
    args: Vec<String>,
    prompt: &str,
) -> String {
    if let Some(m) = net.as_mapping() {
        for k in m.keys().filter_map(Value::as_str) {
            if !used.contains(&k) {
                out.skip(o, &["network_g", k], "no such setting of mio's backbone");
            }
        }
    }
    let mut all = args;
    if !prompt.is_empty() {
        all.push(prompt.trim_start_matches(", ").to_string());
    }
    format!("{name}({})", all.join(", "))
}

/// Converts option files (in any order) to a `.mio` text.
pub fn basicsr(files: &[PathBuf]) -> Result<Imported, String> {
    if files.is_empty() {
        return Err("give one option file per training stage".into());
    }
    let opts = chain(read(files)?);
    let mut out = Out { unmapped: vec![] };
    let first = &opts[0];
    let last = opts.last().expect("one");
    // The stages' common name (`SRResNet_S_EP_stage1_10w`, `..._stage2_10w`: `SRResNet_S_EP`).
    let names: Vec<String> = opts
        .iter()
        .filter_map(|o| get(&o.root, &["name"]).and_then(text))
        .collect();
    let mut common = names.first().cloned().unwrap_or_else(|| "imported".into());
    for n in &names[1.min(names.len())..] {
        let same = common
            .chars()
            .zip(n.chars())
            .take_while(|(a, b)| a == b)
            .count();
        common = common.chars().take(same).collect();
    }
    if names.len() > 1 {
        // Cut the word the stages differ in, and a trailing `stage`.
        if let Some(cut) = common.rfind('_') {
            common.truncate(cut);
        }
        for tail in ["_stage", "_Stage", "_s"] {
            if let Some(c) = common.strip_suffix(tail) {
                common = c.to_string();
            }
        }
    }
    let workflow: String = common
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '_')
        .to_string();
    let workflow = if workflow.is_empty() {
        "imported".into()
    } else {
        workflow
    };

    // Stages: the tasks of each file's training set; a stage adds the tasks it has that the
    // one before did not.
    let mut stage_tasks: Vec<Vec<&'static str>> = vec![];
    let mut iters: Vec<f64> = vec![];
    for o in &opts {
        let meta = get(&o.root, &["datasets", "train", "meta_info"])
            .or_else(|| get(&o.root, &["datasets", "train", "meta_info_file"]))
            .and_then(text)
            .unwrap_or_default();
        let t = tasks_in_name(&meta);
        if t.is_empty() {
            out.skip(
                o,
                &["datasets", "train", "meta_info"],
                format!("no task named in `{meta}`: the stage's tasks are left to fill in"),
            );
        }
        stage_tasks.push(t);
        match get(&o.root, &["train", "total_iter"]).and_then(num) {
            Some(n) => iters.push(n),
            None => out.skip(
                o,
                &["train", "total_iter"],
                "missing: 1000 iterations stand in",
            ),
        }
        if iters.len() < stage_tasks.len() {
            iters.push(1000.0);
        }
    }
    let mut order: Vec<&'static str> = vec![];
    for t in &stage_tasks {
        for x in t {
            if !order.contains(x) {
                order.push(x);
            }
        }
    }
    let sequential = opts.len() > 1;

    // Data: the last stage's sets (every task); mio degrades clean images itself.
    let train = get(&last.root, &["datasets", "train"]);
    let gt = train.and_then(|t| get(t, &["dataroot_gt"])).and_then(text);
    let mut data_args = vec![quote(gt.as_deref().unwrap_or("TRAIN_IMAGES"))];
    if gt.is_none() {
        out.skip(
            last,
            &["datasets", "train"],
            "no `dataroot_gt`: the clean training images' folder is left as TRAIN_IMAGES",
        );
    }
    if let Some(p) = train.and_then(|t| get(t, &["gt_size"])).and_then(num) {
        data_args.push(format!("patch = {}px", lit(p)));
    }
    if let Some(b) = train
        .and_then(|t| get(t, &["batch_size_per_gpu"]))
        .and_then(num)
    {
        let gpus = get(&last.root, &["num_gpu"])
            .and_then(num)
            .unwrap_or(1.0)
            .max(1.0);
        data_args.push(format!("batch = {}", lit(b * gpus)));
    }
    let flip = train
        .and_then(|t| get(t, &["use_flip"]))
        .and_then(Value::as_bool);
    let rot = train
        .and_then(|t| get(t, &["use_rot"]))
        .and_then(Value::as_bool);
    if flip.is_some() || rot.is_some() {
        let mut a = vec![];
        if flip == Some(true) {
            a.push("flip");
        }
        if rot == Some(true) {
            a.push("rot90");
        }
        data_args.push(format!("augment = [{}]", a.join(", ")));
    }
    for k in ["dataroot_lq", "filename_tmpl", "dataset_enlarge_ratio"] {
        let v = train.and_then(|t| get(t, &[k]));
        if v.is_some_and(|v| num(v) != Some(1.0)) {
            out.skip(
                last,
                &["datasets", "train", k],
                "mio degrades the clean images itself, with the tasks' degradations",
            );
        }
    }

    let mut lines = vec![
        format!(
            "# Imported by `mio import basicsr` from {}.",
            opts.iter()
                .map(|o| o.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "# Paths are as the option files wrote them (BasicSR's are relative to its repository)."
            .into(),
        String::new(),
        "use paper".into(),
        String::new(),
        format!("workflow {workflow} {{"),
    ];
    if let Some(s) = get(&first.root, &["manual_seed"]).and_then(num) {
        lines.push(format!("  seed = {}", lit(s)));
    }
    lines.push(format!("  data train = images({})", data_args.join(", ")));
    let val = get(&last.root, &["datasets", "val"]);
    let val_pairs = val.and_then(|v| {
        Some((
            get(v, &["dataroot_lq"]).and_then(text)?,
            get(v, &["dataroot_gt"]).and_then(text)?,
        ))
    });
    if let Some((lq, gt)) = &val_pairs {
        lines.push(format!(
            "  data val = pairs(lq = {}, gt = {})",
            quote(lq),
            quote(gt)
        ));
    }
    lines.push(format!("  model net = {}", backbone(last, &mut out)));
    lines.push(String::new());
    lines.push("  train net on train {".into());
    let task_list = |ts: &[&str]| {
        ts.iter()
            .map(|t| format!("paper.{t}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if sequential {
        lines.push(format!(
            "    strategy = sequential(order = [{}])",
            task_list(&order)
        ));
        if stage_tasks.len() != order.len() {
            out.skip(
                last,
                &["datasets", "train", "meta_info"],
                format!(
                    "{} stages add {} tasks: a sequential run adds one task per stage",
                    stage_tasks.len(),
                    order.len()
                ),
            );
        }
        let it: Vec<String> = iters.iter().map(|x| lit(*x)).collect();
        lines.push(format!("    iters = [{}]", it.join(", ")));
    } else {
        lines.push("    strategy = mixed".into());
        lines.push(format!("    tasks = [{}]", task_list(&order)));
        lines.push(format!("    iters = {}", lit(iters[0])));
    }
    let t = get(&last.root, &["train"]);
    if let Some(o) = t.and_then(|t| get(t, &["optim_g"])) {
        let kind = get(o, &["type"]).and_then(text).unwrap_or_default();
        let name = match kind.as_str() {
            "Adam" => Some("adam"),
            "AdamW" => Some("adamw"),
            _ => None,
        };
        match name {
            Some(n) => {
                let mut a = vec![];
                if let Some(lr) = get(o, &["lr"]).and_then(num) {
                    a.push(format!("lr = {}", lit(lr)));
                }
                if let Some(b) = get(o, &["betas"]).and_then(list) {
                    if b.len() == 2 {
                        a.push(format!("betas = ({}, {})", float(b[0]), float(b[1])));
                    }
                }
                if let Some(w) = get(o, &["weight_decay"]).and_then(num) {
                    a.push(format!("weight_decay = {}", float(w)));
                }
                lines.push(format!("    optimizer = {n}({})", a.join(", ")));
            }
            None => out.skip(
                last,
                &["train", "optim_g", "type"],
                format!("`{kind}`: mio has adam and adamw; adam stands in"),
            ),
        }
    }
    if let Some(s) = t.and_then(|t| get(t, &["scheduler"])) {
        let kind = get(s, &["type"]).and_then(text).unwrap_or_default();
        if kind == "CosineAnnealingRestartLR" || kind == "CosineAnnealingRestartCyclicLR" {
            let mut a = vec![];
            if let Some(m) = get(s, &["eta_min"])
                .or_else(|| get(s, &["eta_mins"]))
                .and_then(num)
            {
                a.push(format!("min_lr = {}", lit(m)));
            }
            if let Some(p) = get(s, &["periods"]).and_then(list) {
                // A period per stage as the stage's length is mio's default.
                if !(sequential && p.len() == 1) {
                    let p: Vec<String> = p.iter().map(|x| lit(*x)).collect();
                    a.push(format!("periods = [{}]", p.join(", ")));
                }
            }
            if let Some(w) = get(s, &["restart_weights"]).and_then(list) {
                if w.iter().any(|x| *x != 1.0) {
                    out.skip(
                        last,
                        &["train", "scheduler", "restart_weights"],
                        "mio restarts at the full learning rate",
                    );
                }
            }
            lines.push(format!("    schedule = cosine_restart({})", a.join(", ")));
        } else {
            out.skip(
                last,
                &["train", "scheduler", "type"],
                format!("`{kind}`: mio's schedules are cosine_restart, step and constant"),
            );
        }
    }
    if let Some(p) = t.and_then(|t| get(t, &["pixel_opt"])) {
        let kind = get(p, &["type"]).and_then(text).unwrap_or_default();
        match kind.as_str() {
            "L1Loss" => lines.push("    loss = l1".into()),
            "MSELoss" => lines.push("    loss = l2".into()),
            "CharbonnierLoss" => lines.push("    loss = charbonnier".into()),
            _ => out.skip(
                last,
                &["train", "pixel_opt", "type"],
                format!("`{kind}`: not a loss mio has"),
            ),
        }
        if get(p, &["loss_weight"])
            .and_then(num)
            .is_some_and(|w| w != 1.0)
        {
            out.skip(
                last,
                &["train", "pixel_opt", "loss_weight"],
                "mio's loss is unweighted",
            );
        }
    }
    match t.and_then(|t| get(t, &["ema_decay"])).and_then(num) {
        Some(e) => lines.push(format!("    ema = {}", float(e))),
        None => lines.push("    ema = 0".into()),
    }
    if t.and_then(|t| get(t, &["warmup_iter"]))
        .and_then(num)
        .is_some_and(|w| w > 0.0)
    {
        out.skip(last, &["train", "warmup_iter"], "mio has no warm-up");
    }
    if let Some(n) = get(&last.root, &["logger", "save_checkpoint_freq"]).and_then(num) {
        lines.push(format!("    checkpoint_every = {}", lit(n)));
    }
    lines.push("  }".into());

    if val_pairs.is_some() {
        let m = get(&last.root, &["val", "metrics", "psnr"]);
        let crop = m.and_then(|m| get(m, &["crop_border"])).and_then(num);
        let y = m
            .and_then(|m| get(m, &["test_y_channel"]))
            .and_then(Value::as_bool);
        let mut a = vec![];
        if let Some(c) = crop {
            a.push(format!("crop = {}px", lit(c)));
        }
        if let Some(y) = y {
            a.push(format!("y = {y}"));
        }
        // BasicSR's validation folder mixes the tasks: one column, named after the first task;
        // an explicit-prompt model's classifier gives each image its task.
        lines.push(
            "  # the validation pairs mix the tasks: one column, named after the first".into(),
        );
        lines.push(format!(
            "  eval net on val {{ tasks = [paper.{}], metrics = [psnr({})] }}",
            order.first().copied().unwrap_or("sr"),
            a.join(", ")
        ));
        if m.is_none() {
            out.skip(
                last,
                &["val", "metrics"],
                "no psnr metric: psnr's defaults stand in",
            );
        }
    }
    lines.push("}".into());
    for o in &opts {
        for (path, why) in [
            (
                &["val", "save_img"][..],
                "evaluations keep their images (`save_images`)",
            ),
            (
                &["logger", "wandb"][..],
                "mio logs to TensorBoard, under the run folder",
            ),
        ] {
            if get(&o.root, path).is_some_and(|v| v.as_bool() != Some(false) && !v.is_mapping()) {
                out.skip(o, path, why);
            }
        }
        if let Some(r) = get(&o.root, &["path", "resume_state"]) {
            if text(r).is_some_and(|s| s != "~") {
                out.skip(o, &["path", "resume_state"], "mio resumes a run by itself");
            }
        }
    }
    Ok(Imported {
        text: lines.join("\n") + "\n",
        unmapped: out.unmapped,
    })
}

/// Where the imported file goes when none is given: beside the first option file.
pub fn default_output(files: &[PathBuf]) -> PathBuf {
    let first = files
        .first()
        .map(PathBuf::as_path)
        .unwrap_or(Path::new("."));
    first.with_extension("mio")
}
