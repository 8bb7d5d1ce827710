//! `mio`: the command line. Each subcommand reads a `.mio` file, reports every problem with
//! miette diagnostics, and exits 0 (ok), 1 (the file has errors) or 2 (mio itself failed).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod bench;
mod watch;
use mio_engine::{plan, Style};

#[derive(Parser)]
#[command(
    name = "mio",
    version,
    about = "Declarative multiple-in-one image restoration experiments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report every error in a .mio file (and the files it imports)
    Check {
        file: PathBuf,
        /// Override a setting, checked like the file: --set train.iters=1k
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// Format a .mio file in place (idempotent, keeps comments)
    Fmt {
        file: PathBuf,
        /// Do not write; exit 1 if the file is not formatted
        #[arg(long)]
        check: bool,
    },
    /// List the work a file describes, in order, with what each step needs
    Plan {
        file: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// Degrade an image with a task (deterministic: the same seed gives the same bytes)
    Degrade {
        image: PathBuf,
        /// A task: `noise`, `paper.rain_out`, `blur(sigma = 2.0)` (the paper's tasks are in scope)
        #[arg(long, required_unless_present = "sheet")]
        task: Option<String>,
        /// Seed of the random draws
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Change a parameter of the task's degradation: --set sigma=30
        #[arg(long = "set", value_name = "PARAM=VALUE")]
        set: Vec<String>,
        /// A contact sheet of the clean image and all seven tasks instead
        #[arg(long, conflicts_with = "task")]
        sheet: bool,
        /// Where to write the PNG
        #[arg(short, long)]
        output: PathBuf,
    },
    /// PSNR and SSIM of an image against a reference
    Compare {
        reference: PathBuf,
        image: PathBuf,
        /// Pixels cropped from every border first
        #[arg(long, default_value_t = 0)]
        crop: usize,
        /// Measure the Y channel (ITU-R BT.601) instead of RGB
        #[arg(long)]
        y: bool,
    },
    /// Run a workflow: synthesise the test sets, train, evaluate, sweep and write the report
    /// (finished work is reused; Ctrl-C saves progress and a rerun continues)
    Run {
        file: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
        /// Only say, for each step, whether it is cached or will run, and why
        #[arg(long)]
        explain: bool,
        /// One line per step, no progress bars
        #[arg(long, short)]
        quiet: bool,
        /// Steps run at once; one training step at a time whatever the number, with test
        /// sets, evaluations and sweeps beside it (on two cores they slow the training more
        /// than they gain: the quickstart took 538 s with 2, 504 s with 1)
        #[arg(long, short, default_value_t = 1)]
        jobs: usize,
    },
    /// Re-check on every save, print the diagnostics, and rerun what the edit made stale
    Watch {
        file: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// Restore an image, or every image of a folder, with a trained model
    Restore(RestoreArgs),
    /// Measure training and restoration speed on this machine: kernels and the standard
    /// networks, or a model of yours
    Bench(BenchArgs),
    /// Run the language server over stdin and stdout (for editors)
    Lsp,
    /// Print the work graph for Graphviz or Mermaid
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

/// Why a command did not succeed.
enum Failure {
    /// The user's file has errors (already printed).
    User,
    /// mio could not do its job (I/O and the like).
    Internal(String),
    /// Stopped by Ctrl-C, progress saved.
    Interrupted,
}

fn main() -> ExitCode {
    mio_stdlib::kernels::tune_allocator();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { file, set } => check(&file, &set),
        Command::Fmt { file, check } => fmt(&file, check),
        Command::Plan { file, set } => plan_cmd(&file, &set, None),
        Command::Graph { file, format, set } => plan_cmd(&file, &set, Some(format)),
        Command::Degrade {
            image,
            task,
            seed,
            set,
            sheet,
            output,
        } => match task {
            Some(t) if !sheet => degrade(&image, &t, seed, &set, &output),
            _ => contact_sheet(&image, seed, &output),
        },
        Command::Compare {
            reference,
            image,
            crop,
            y,
        } => compare(&reference, &image, crop, y),
        Command::Run {
            file,
            set,
            explain,
            quiet,
            jobs,
        } => run(&file, &set, explain, quiet, jobs),
        Command::Restore(args) => restore(args),
        Command::Bench(args) => bench_cmd(args),
        Command::Watch { file, set } => {
            watch::watch(&file, &set, style()).map_err(Failure::Internal)
        }
        Command::Lsp => {
            mio_lsp::run_stdio().map_err(|e| Failure::Internal(format!("language server: {e}")))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::User) => ExitCode::from(1),
        Err(Failure::Interrupted) => ExitCode::from(130),
        Err(Failure::Internal(msg)) => {
            eprintln!("mio: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Colour only on a terminal, and never with NO_COLOR set.
fn style() -> Style {
    if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        Style::Color
    } else {
        Style::Plain
    }
}

fn read_error(file: &Path, e: std::io::Error) -> Failure {
    // A missing file is the user's mistake, not mio's.
    eprintln!("error: cannot read {}: {e}", file.display());
    Failure::User
}

fn load(file: &Path, set: &[String]) -> Result<mio_engine::Checked, Failure> {
    let checked = mio_engine::check_file(file, set).map_err(|e| read_error(file, e))?;
    if !checked.is_ok() {
        eprint!("{}", checked.render(style()));
        let n = checked.diagnostics.len();
        eprintln!(
            "{n} error{} in {}",
            if n == 1 { "" } else { "s" },
            file.display()
        );
        return Err(Failure::User);
    }
    Ok(checked)
}

/// Writes to stdout; a reader that went away (`mio plan | head`) is not an error.
fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Internal(format!("cannot write the output: {e}"))),
    }
}

fn run(
    file: &Path,
    set: &[String],
    explain: bool,
    quiet: bool,
    jobs: usize,
) -> Result<(), Failure> {
    let checked = load(file, set)?;
    let plan = mio_engine::plan(&checked).map_err(|d| {
        eprint!(
            "{}",
            mio_engine::render(&[d], &checked.program.sources, style())
        );
        Failure::User
    })?;
    let base = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let wfs = &checked.workflows;
    if explain {
        let status = mio_engine::run::status(wfs, &plan, base)
            .map_err(|e| Failure::Internal(e.to_string()))?;
        let width = status
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0)
            .min(48);
        let mut out = String::new();
        for s in &status {
            let what = if s.cached { "cached  " } else { "will run" };
            let why = if s.cached { "" } else { &s.why };
            let line = format!("{what}  {:<width$}  {why}", s.name);
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let todo = status.iter().filter(|s| !s.cached).count();
        out.push_str(&format!("{todo} of {} step(s) to run\n", status.len()));
        return emit(&out);
    }
    let threads = wfs
        .first()
        .and_then(|w| w.setting("threads"))
        .and_then(|v| v.as_int())
        .unwrap_or(0);
    if threads > 0 {
        // Fails only if the pool was built already, which cannot happen before this point.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads as usize)
            .build_global();
    }
    let options = mio_engine::run::Options {
        quiet,
        jobs,
        ..Default::default()
    };
    let stop = options.stop.clone();
    let _ = ctrlc::set_handler(move || {
        if stop.swap(true, std::sync::atomic::Ordering::SeqCst) {
            eprintln!("\nmio: stopped without saving the current step");
            std::process::exit(130);
        }
        eprintln!("\nmio: stopping: saving a checkpoint (Ctrl-C again to quit at once)");
        // (SIGTERM and SIGHUP arrive here too, as from Slurm, systemd or a closed terminal.)
    });
    match mio_engine::run::run(wfs, &plan, base, options) {
        Ok(summary) => {
            let mut out = format!(
                "done in {:.0} s: {} step(s) run, {} cached\n",
                summary.seconds,
                summary.ran.len(),
                summary.cached.len()
            );
            for r in &summary.reports {
                out.push_str(&format!("report: {}\n", r.join("report.md").display()));
            }
            emit(&out)
        }
        Err(e @ mio_engine::run::RunError::Interrupted { .. }) => {
            eprintln!("mio: {e}");
            Err(Failure::Interrupted)
        }
        // A step that cannot do its work (a missing image folder, a task the model was not
        // trained on, a diverging loss) is the experiment's problem, not mio's: exit 1.
        Err(e @ mio_engine::run::RunError::Busy(_)) => {
            eprintln!("error: {e}");
            Err(Failure::User)
        }
        Err(e @ mio_engine::run::RunError::Node { .. }) => {
            eprintln!("error: {e}");
            Err(Failure::User)
        }
        Err(e) => Err(Failure::Internal(e.to_string())),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    Step,
    Infer,
    Both,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Where to run: auto (a GPU when mio is built with CUDA and one is present), cpu, cuda,
    /// cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    /// Timed rounds per case; the median is reported
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds after which a case stops adding rounds (at least one is timed)
    #[arg(long, default_value_t = 30.0)]
    budget: f64,
    /// Measure this backbone instead of the standard networks, written as in a .mio file:
    /// 'restormer(dim = 24, prompt = explicit)'
    #[arg(long)]
    model: Option<String>,
    /// Crops per training step (with --model)
    #[arg(long, default_value_t = 8, requires = "model")]
    batch: usize,
    /// Side of the training crops (with --model)
    #[arg(long, default_value_t = 48, requires = "model")]
    patch: usize,
    /// Only these cases, comma-separated: kernels, gemm, or network names (srresnet32x4, ...)
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also time the networks with candle's own CPU convolutions, for comparison
    #[arg(long)]
    candle: bool,
    /// Time only the training steps, or only the restorations
    #[arg(long, value_enum, default_value_t = Phase::Both)]
    phase: Phase,
    /// Print `case milliseconds` lines (what tools/bench_train.sh reads) instead of a table
    #[arg(long)]
    raw: bool,
}

fn bench_cmd(a: BenchArgs) -> Result<(), Failure> {
    let user = |m: String| {
        eprintln!("error: {m}");
        Failure::User
    };
    let internal = |e: candle_core::Error| Failure::Internal(e.to_string());
    mio_stdlib::kernels::tune_allocator();
    let dev = mio_engine::run::device_named(&a.device).map_err(user)?;
    let gpu = !dev.is_cpu();
    let wanted = |name: &str| a.only.is_empty() || a.only.iter().any(|o| o == name);
    let known: Vec<String> = ["gemm", "kernels"]
        .into_iter()
        .map(String::from)
        .chain(bench::standard_cases(gpu).into_iter().map(|c| c.name))
        .collect();
    if let Some(o) = a.only.iter().find(|o| !known.contains(o)) {
        return Err(user(format!(
            "--only: no case `{o}` here; the cases are {}",
            known.join(", ")
        )));
    }
    let cases = match &a.model {
        Some(text) => {
            let call = mio_engine::resolve_backbone(text, "--model").map_err(|e| {
                eprint!("{e}");
                Failure::User
            })?;
            let spec = mio_engine::run::spec_from_call(&call, vec![]).map_err(user)?;
            let multiple = spec.arch.side_multiple();
            if a.patch % multiple != 0 {
                return Err(user(format!(
                    "--patch {} is not a multiple of {multiple}, which this backbone needs",
                    a.patch
                )));
            }
            vec![bench::NetCase {
                name: call.name.clone(),
                arch: spec.arch,
                prompt: spec.prompt,
                batch: a.batch,
                patch: a.patch,
            }]
        }
        None => bench::standard_cases(gpu)
            .into_iter()
            .filter(|c| wanted(&c.name))
            .collect(),
    };
    let threads = rayon::current_num_threads();
    let mut rows: Vec<(String, f64)> = vec![];
    // Raw lines go out as they are measured, so a case that fails later loses nothing.
    let mut record = |name: String, v: f64| {
        if a.raw {
            println!("{name} {v:.2}");
        }
        rows.push((name, v));
    };
    let say = |what: &str| {
        if !a.raw {
            eprintln!("measuring {what}...");
        }
    };
    eprintln!(
        "mio bench on {} ({threads} CPU threads), median of up to {} rounds",
        if gpu {
            format!("{dev:?}")
        } else {
            "the CPU".into()
        },
        a.rounds
    );
    if a.model.is_none() && wanted("gemm") {
        say("the GEMM peak");
        let g = bench::gemm_gflops(&dev, a.rounds).map_err(internal)?;
        record("mio.gemm1024_gflops".into(), g);
    }
    if a.model.is_none() && !gpu && wanted("kernels") {
        say("the convolution kernels");
        for (name, v) in bench::kernel_cases(a.rounds).map_err(internal)? {
            record(name, v);
        }
    }
    let labels: &[(&str, bool)] = if a.candle && !gpu {
        &[("mio", true), ("candle", false)]
    } else {
        &[("mio", true)]
    };
    for c in &cases {
        for &(label, fast) in labels {
            mio_stdlib::kernels::conv::set_fast(fast);
            if a.phase != Phase::Infer {
                say(&format!(
                    "{} ({label}): a training step at batch {}, patch {}",
                    c.name, c.batch, c.patch
                ));
                let step = bench::train_step_ms(c, &dev, a.rounds, a.budget).map_err(internal)?;
                record(format!("{label}.{}_step", c.name), step);
            }
            if a.phase != Phase::Step {
                say(&format!("{} ({label}): restoring a 512x512 image", c.name));
                let infer = bench::infer_ms(c, &dev, a.rounds, a.budget).map_err(internal)?;
                record(format!("{label}.{}_infer512", c.name), infer);
            }
        }
    }
    mio_stdlib::kernels::conv::set_fast(true);
    if a.raw {
        return Ok(());
    }
    let get = |k: &str| rows.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    if let Some(g) = get("mio.gemm1024_gflops") {
        println!("GEMM 1024x1024x1024: {g:.1} GFLOP/s");
    }
    if get("mio.conv3x3_fwd_bwd").is_some() {
        println!(
            "\n{:<36} {:>10} {:>10}",
            "kernel (forward + backward)", "mio ms", "candle ms"
        );
        for (k, what) in [
            ("conv3x3_fwd_bwd", "conv 3x3 64->64, 8x64x64"),
            ("dwconv3x3_fwd_bwd", "depthwise 3x3, 144 ch, 8x64x64"),
        ] {
            let m = get(&format!("mio.{k}")).unwrap_or(f64::NAN);
            let c = get(&format!("candle.{k}")).unwrap_or(f64::NAN);
            println!("{what:<36} {m:>10.1} {c:>10.1}");
        }
    }
    if !cases.is_empty() {
        println!(
            "\n{:<18} {:>12} {:>10} {:>10} {:>16}",
            "network", "batch x patch", "step ms", "patches/s", "512x512 ms"
        );
        for c in &cases {
            for &(label, _) in labels {
                let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
                let step = get(&format!("{label}.{}_step", c.name));
                let infer = get(&format!("{label}.{}_infer512", c.name));
                let name = if labels.len() > 1 {
                    format!("{} ({label})", c.name)
                } else {
                    c.name.clone()
                };
                println!(
                    "{name:<18} {:>12} {:>10} {:>10} {:>16}",
                    format!("{} x {}", c.batch, c.patch),
                    show(step),
                    show(step.map(|s| c.batch as f64 / (s / 1e3))),
                    show(infer)
                );
            }
        }
    }
    Ok(())
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// A training step's folder (runs/nodes/train-...), or a .safetensors file of weights
    /// named as in the reference implementation (then give --arch)
    #[arg(long)]
    model: PathBuf,
    /// The architecture of a bare weights file, as in a .mio file:
    /// 'srresnet(channels = 64, blocks = 16, prompt = explicit)'
    #[arg(long)]
    arch: Option<String>,
    /// The task to restore (explicit prompts); without it the classifier guesses
    #[arg(long)]
    task: Option<String>,
    /// The task classifier (runs/nodes/classifier-...) that guesses the task
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Blend tasks' prompts for style control: noise:0.3,rain:0.7
    #[arg(long, conflicts_with = "task")]
    prompt_mix: Option<String>,
    /// Tile side in pixels (0: the whole image, tiles of 512 above a megapixel)
    #[arg(long, default_value_t = 0)]
    tile: usize,
    /// Where to run: auto (a GPU when mio is built with CUDA and one is present), cpu, cuda,
    /// cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    /// An image or a folder of images
    input: PathBuf,
    /// The restored image (PNG), or a folder for a folder
    output: PathBuf,
}

fn restore(a: RestoreArgs) -> Result<(), Failure> {
    use mio_stdlib::models::PromptMode;
    let user = |m: String| {
        eprintln!("error: {m}");
        Failure::User
    };
    let dev = mio_engine::run::device_named(&a.device).map_err(user)?;
    let loaded =
        mio_engine::restore::load_model(&a.model, a.arch.as_deref(), &dev).map_err(user)?;
    let explicit = matches!(loaded.net.spec.prompt, PromptMode::Explicit { .. });
    let fixed = match (&a.task, &a.prompt_mix) {
        (Some(t), _) if explicit => Some(
            loaded
                .net
                .task_latent(loaded.task(t).map_err(user)?)
                .map_err(|e| Failure::Internal(e.to_string()))?,
        ),
        (_, Some(m)) if explicit => {
            let mix = mio_engine::restore::parse_mix(m).map_err(user)?;
            Some(loaded.mix(&mix).map_err(user)?)
        }
        (Some(_), _) | (_, Some(_)) => {
            return Err(user(
                "--task and --prompt-mix need a model with explicit prompts; this one finds the task itself".into(),
            ))
        }
        _ => None,
    };
    let classifier = match (&a.classifier, explicit && fixed.is_none()) {
        (Some(c), true) => {
            let file = if c.is_dir() {
                c.join("classifier.safetensors")
            } else {
                c.clone()
            };
            let vm = candle_nn::VarMap::new();
            let net = mio_stdlib::models::classifier::TaskClassifier::new(
                loaded.tasks.len(),
                candle_nn::VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev),
            )
            .map_err(|e| Failure::Internal(e.to_string()))?;
            mio_stdlib::models::load_varmap(&vm, &file).map_err(|e| user(e.to_string()))?;
            Some(net)
        }
        (None, true) => {
            let names: Vec<&str> = loaded.tasks.iter().map(|t| t.0.as_str()).collect();
            return Err(user(format!(
                "this model needs its task: give --task (one of {}) or --classifier runs/nodes/classifier-...",
                names.join(", ")
            )));
        }
        _ => None,
    };
    let files = restore_targets(&a.input, &a.output).map_err(user)?;
    let n = files.len();
    let mut failed = 0;
    for (k, (src, dst)) in files.iter().enumerate() {
        let skip = |why: &dyn std::fmt::Display| {
            eprintln!("[{}/{n}] skipped {}: {why}", k + 1, src.display());
        };
        let img = match mio_stdlib::image::load(src) {
            Ok(l) => l.image,
            Err(e) => {
                skip(&e);
                failed += 1;
                continue;
            }
        };
        let z = match &classifier {
            Some(c) => {
                let guess = mio_engine::restore::to_tensor(&img, &dev)
                    .and_then(|x| mio_engine::restore::at_least_min_side(&x))
                    .and_then(|x| c.predict(&x))
                    .map(|p| p[0] as usize);
                let id = match guess {
                    Ok(id) => id,
                    Err(e) => {
                        skip(&format!("the classifier cannot read it ({e})"));
                        failed += 1;
                        continue;
                    }
                };
                eprintln!(
                    "[{}/{n}] {}: the classifier says `{}`",
                    k + 1,
                    src.display(),
                    loaded.tasks[id].0
                );
                Some(
                    loaded
                        .net
                        .task_latent(id)
                        .map_err(|e| Failure::Internal(e.to_string()))?,
                )
            }
            None => fixed.clone(),
        };
        let t = std::time::Instant::now();
        let out = match mio_engine::restore::restore(&loaded.net, &img, z.as_ref(), a.tile) {
            Ok(out) => out,
            Err(e) => {
                skip(&format!("{}x{}: {e}", img.width, img.height));
                failed += 1;
                continue;
            }
        };
        if let Err(e) = out.save_png(dst) {
            skip(&e);
            failed += 1;
            continue;
        }
        eprintln!(
            "[{}/{n}] {} -> {} ({}x{}, {:.1} s)",
            k + 1,
            src.display(),
            dst.display(),
            img.width,
            img.height,
            t.elapsed().as_secs_f64()
        );
    }
    if failed > 0 {
        eprintln!("{failed} of {n} image(s) skipped; the others are restored");
        return Err(Failure::User);
    }
    Ok(())
}

/// Where `mio restore` writes each input: one image to the output file (or into the output
/// folder, under its own stem, when that is a folder); a folder's images into the output
/// folder, each under a name of its own (`a.png` and `a.jpg` both there: `a.png.png` and
/// `a.jpg.png`, said on stderr). Never over an input: an output folder that is the input
/// folder (by any path), or an output file that is the input, is refused; in any other
/// folder an output only replaces a directory entry, never an input's bytes (writes rename).
fn restore_targets(input: &Path, output: &Path) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    if !input.is_dir() {
        if !input.exists() {
            return Err(format!("{}: no such file or folder", input.display()));
        }
        let dst = if output.is_dir() {
            let stem = input.file_stem().unwrap_or_default().to_string_lossy();
            output.join(format!("{stem}.png"))
        } else {
            output.to_path_buf()
        };
        if mio_stdlib::fsio::same_file(input, &dst) {
            return Err(format!(
                "{} is the input: restoring into it would replace the original; give another output",
                dst.display()
            ));
        }
        return Ok(vec![(input.to_path_buf(), dst)]);
    }
    if output.is_file() {
        return Err(format!(
            "{} is a file: a folder of images is restored into a folder",
            output.display()
        ));
    }
    if mio_stdlib::fsio::same_file(input, output) {
        return Err(format!(
            "{} is the input folder: restoring into it would replace or mix with the originals; give another folder",
            output.display()
        ));
    }
    let list = mio_stdlib::image::list_folder(input).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(output).map_err(|e| format!("{}: {e}", output.display()))?;
    let names = mio_stdlib::image::unique_stems(&list);
    let mut out = vec![];
    for (p, name) in list.into_iter().zip(names) {
        let dst = output.join(format!("{name}.png"));
        let plain = p
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name != plain {
            eprintln!(
                "note: {} is written as {} (another input has the name {plain})",
                p.display(),
                dst.display()
            );
        }
        out.push((p, dst));
    }
    Ok(out)
}

fn check(file: &Path, set: &[String]) -> Result<(), Failure> {
    let checked = load(file, set)?;
    let n = checked.workflows.len();
    let s = if n == 1 { "" } else { "s" };
    emit(&format!("{}: ok ({n} workflow{s})\n", file.display()))
}

fn fmt(file: &Path, check_only: bool) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file).map_err(|e| read_error(file, e))?;
    let formatted = match mio_grammar::format::format(&text) {
        Ok(f) => f,
        Err(_) => {
            // Show the syntax errors the same way `check` does.
            let checked =
                mio_engine::check_source(&file.display().to_string(), Some(file), text, &[]);
            let syntax: Vec<_> = checked
                .diagnostics
                .iter()
                .filter(|d| d.code == mio_engine::diagnostic::Code::Syntax)
                .cloned()
                .collect();
            eprint!(
                "{}",
                mio_engine::render(&syntax, &checked.program.sources, style())
            );
            eprintln!("not formatted: {} has syntax errors", file.display());
            return Err(Failure::User);
        }
    };
    if formatted == text {
        return Ok(());
    }
    if check_only {
        eprintln!(
            "{} is not formatted (run `mio fmt {}`)",
            file.display(),
            file.display()
        );
        return Err(Failure::User);
    }
    mio_stdlib::fsio::write_atomic(file, formatted.as_bytes())
        .map_err(|e| Failure::Internal(format!("cannot write {}: {e}", file.display())))?;
    eprintln!("formatted {}", file.display());
    Ok(())
}

fn plan_cmd(file: &Path, set: &[String], graph: Option<GraphFormat>) -> Result<(), Failure> {
    let checked = load(file, set)?;
    let p = match mio_engine::plan(&checked) {
        Ok(p) => p,
        Err(d) => {
            eprint!(
                "{}",
                mio_engine::render(&[d], &checked.program.sources, style())
            );
            return Err(Failure::User);
        }
    };
    let out = match graph {
        None => plan::render_text(&p, &file.display().to_string()),
        Some(GraphFormat::Dot) => plan::render_dot(&p),
        Some(GraphFormat::Mermaid) => plan::render_mermaid(&p),
    };
    emit(&out)
}

fn load_image(path: &Path) -> Result<mio_stdlib::image::Image, Failure> {
    match mio_stdlib::image::load(path) {
        Ok(l) => {
            for n in l.notes {
                eprintln!("note: {n}");
            }
            Ok(l.image)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(Failure::User)
        }
    }
}

fn save_image(img: &mio_stdlib::image::Image, path: &Path) -> Result<(), Failure> {
    img.save_png(path)
        .map_err(|e| Failure::Internal(e.to_string()))
}

/// An image to degrade: its pixels, its file name (which seeds the draws, as in the test-set
/// builder) and the depth map beside it, if any.
struct Source {
    image: mio_stdlib::image::Image,
    name: String,
    depth: Option<Vec<f32>>,
}

fn read_source(path: &Path) -> Result<Source, Failure> {
    let image = load_image(path)?;
    let depth = mio_stdlib::degrade::depth_file(path, image.width, image.height).map_err(|e| {
        eprintln!("error: {e}");
        Failure::User
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Source { image, name, depth })
}

/// Degrades `src` with `task`; returns the result and what was drawn, with its PSNR against
/// the input (`sigma = 33; 17.89 dB`).
fn apply_task(
    src: &Source,
    task: &mio_engine::ir::Task,
    seed: u64,
) -> Result<(mio_stdlib::image::Image, String), Failure> {
    let d = mio_engine::degradation(task).map_err(Failure::Internal)?;
    let mut rng = mio_stdlib::degrade::rng_for(seed, &task.degradation.to_string(), &src.name);
    let (out, drawn) = d.apply(&src.image, &mut rng, src.depth.as_deref());
    let params: Vec<String> = drawn
        .iter()
        .map(|(n, v)| format!("{n} = {}", short(*v)))
        .collect();
    let p = mio_stdlib::metrics::psnr(&src.image, &out, 0, false).unwrap_or(f64::NAN);
    Ok((
        out,
        format!("{}; {p:.2} dB against the input", params.join(", ")),
    ))
}

/// Degrades one image as the test-set builder would, and says what was drawn.
fn degrade(
    image: &Path,
    task: &str,
    seed: u64,
    set: &[String],
    output: &Path,
) -> Result<(), Failure> {
    let task = mio_engine::resolve_task(task, set, style()).map_err(|rendered| {
        eprint!("{rendered}");
        Failure::User
    })?;
    refuse_overwrite(image, output)?;
    let src = read_source(image)?;
    let (out, what) = apply_task(&src, &task, seed)?;
    save_image(&out, output)?;
    emit(&format!(
        "{}: {} ({what}) -> {}\n",
        image.display(),
        task.name,
        output.display()
    ))
}

/// An output that would replace its input is refused: the original is the user's data.
fn refuse_overwrite(input: &Path, output: &Path) -> Result<(), Failure> {
    if mio_stdlib::fsio::same_file(input, output) {
        eprintln!(
            "error: {} is the input: writing there would replace the original; give another output",
            output.display()
        );
        return Err(Failure::User);
    }
    Ok(())
}

fn short(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The clean image and its seven degradations (the paper's in-distribution tasks), in a 4 x 2 grid.
fn contact_sheet(image: &Path, seed: u64, output: &Path) -> Result<(), Failure> {
    refuse_overwrite(image, output)?;
    let src = read_source(image)?;
    let mut tiles = vec![("clean".to_string(), src.image.clone(), String::new())];
    for key in mio_stdlib::PAPER_TASKS {
        let task = mio_engine::resolve_task(key, &[], style()).map_err(Failure::Internal)?;
        let (out, what) = apply_task(&src, &task, seed)?;
        tiles.push((key.to_string(), out, what));
    }
    let (w, h, gap) = (src.image.width, src.image.height, 4);
    let mut sheet = mio_stdlib::image::Image::new(4 * w + 3 * gap, 2 * h + gap);
    sheet.data.fill(255);
    let mut legend = String::new();
    for (i, (label, tile, info)) in tiles.iter().enumerate() {
        let (x0, y0) = ((i % 4) * (w + gap), (i / 4) * (h + gap));
        for y in 0..h {
            let dst = ((y0 + y) * sheet.width + x0) * 3;
            sheet.data[dst..dst + w * 3].copy_from_slice(&tile.data[y * w * 3..(y + 1) * w * 3]);
        }
        legend.push_str(&format!(
            "  row {}, column {}: {label} {info}\n",
            i / 4 + 1,
            i % 4 + 1
        ));
    }
    save_image(&sheet, output)?;
    emit(&format!(
        "{} -> {} (seed {seed})\n{legend}",
        image.display(),
        output.display()
    ))
}

fn compare(reference: &Path, image: &Path, crop: usize, y: bool) -> Result<(), Failure> {
    let a = load_image(reference)?;
    let b = load_image(image)?;
    let measure = || -> Result<(f64, f64), String> {
        Ok((
            mio_stdlib::metrics::psnr(&a, &b, crop, y)?,
            mio_stdlib::metrics::ssim(&a, &b, crop, y)?,
        ))
    };
    match measure() {
        Ok((p, s)) => emit(&format!(
            "PSNR {p:.4} dB  SSIM {s:.6}  ({}, crop {crop})\n",
            if y { "Y channel" } else { "RGB" }
        )),
        Err(why) => {
            eprintln!("error: {why}");
            Err(Failure::User)
        }
    }
}
