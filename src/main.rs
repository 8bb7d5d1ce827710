//! `mio`: the command line. Each subcommand reads a `.mio` file, reports every problem with
//! miette diagnostics, and exits 0 (ok), 1 (the file has errors) or 2 (mio itself failed).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod bench;
mod cluster;
mod restore;
mod watch;
use mio_engine::{plan, Style};
use mio_stdlib::kernels::precision::{resolve, Precision, Scoped};

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
        /// Where the steps would run (`local`, `slurm`, `slurm(partition = "gpu")`): with
        /// slurm, the sbatch line of every step and its dependencies
        #[arg(long)]
        executor: Option<String>,
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
        /// Run each step in a `mio worker` process of its own, from a job file under
        /// `runs/jobs/` (as a cluster executor does); the results are the same
        #[arg(long)]
        isolate: bool,
        /// Where the steps run, overriding the file's `executor`: `local`, `slurm` or
        /// `slurm(partition = "gpu", gpus = 1, ...)`, checked like the file
        #[arg(long)]
        executor: Option<String>,
        /// With a cluster executor: follow the jobs to the end instead of returning once they
        /// are submitted
        #[arg(long)]
        wait: bool,
    },
    /// Each step's state: cached, queued or running (its job, and a training step's progress),
    /// failed (why, or the end of its log), not submitted
    Status {
        file: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// Cancel the run's queued and running cluster jobs
    Cancel {
        file: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// Run one step of a planned workflow from its job file (written by `mio run --isolate`,
    /// or by a cluster executor), in this process; its inputs must be finished
    Worker {
        /// The job file (JSON): the step's lowered work and the folders it reads and writes
        job: PathBuf,
        /// No progress bars
        #[arg(long, short)]
        quiet: bool,
    },
    /// Re-check on every save, print the diagnostics, and rerun what the edit made stale
    Watch {
        file: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// Restore an image, or every image of a folder, with a trained model
    Restore(restore::RestoreArgs),
    /// Turn another tool's experiment files into a .mio file
    #[command(subcommand)]
    Import(ImportFrom),
    /// Write a trained model in the reference implementation's layout (weights under its
    /// names, task maps as .npy), for its PyTorch code
    Export(restore::ExportArgs),
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
pub(crate) enum Failure {
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
        Command::Plan {
            file,
            set,
            executor,
        } => match executor {
            Some(e) => cluster::plan(&file, &with_executor(&set, &e)),
            None => plan_cmd(&file, &set, None),
        },
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
            isolate,
            executor,
            wait,
        } => {
            let set = match &executor {
                Some(e) => with_executor(&set, e),
                None => set,
            };
            run(&file, &set, explain, quiet, jobs, isolate, wait)
        }
        Command::Status { file, set } => cluster::status(&file, &set),
        Command::Cancel { file, set } => cluster::cancel(&file, &set),
        Command::Worker { job, quiet } => worker(&job, quiet),
        Command::Restore(args) => restore::restore(args),
        Command::Import(ImportFrom::Basicsr {
            options,
            output,
            force,
        }) => import_basicsr(&options, output, force),
        Command::Export(args) => restore::export(args),
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
pub(crate) fn style() -> Style {
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

pub(crate) fn load(file: &Path, set: &[String]) -> Result<mio_engine::Checked, Failure> {
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
pub(crate) fn emit(text: &str) -> Result<(), Failure> {
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
    isolate: bool,
    wait: bool,
) -> Result<(), Failure> {
    let (checked, plan) = planned(file, set)?;
    let base = base_of(file);
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
    if let Some(Ok(mio_engine::job::Executor::Slurm(s))) =
        wfs.first().map(mio_engine::lower::executor)
    {
        return cluster::run(wfs, &plan, base, &s, quiet, wait);
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
    let isolate = if isolate {
        Some(std::env::current_exe().map_err(|e| {
            Failure::Internal(format!("cannot find this program to start workers: {e}"))
        })?)
    } else {
        None
    };
    let options = mio_engine::run::Options {
        quiet,
        jobs,
        isolate,
        ..Default::default()
    };
    on_signal(options.stop.clone());
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

/// The checked file and its plan; a plan that cannot be made is shown as a diagnostic.
pub(crate) fn planned(
    file: &Path,
    set: &[String],
) -> Result<(mio_engine::Checked, plan::Plan), Failure> {
    let checked = load(file, set)?;
    let plan = mio_engine::plan(&checked).map_err(|d| {
        eprint!(
            "{}",
            mio_engine::render(&[d], &checked.program.sources, style())
        );
        Failure::User
    })?;
    Ok((checked, plan))
}

/// The folder of a `.mio` file, which its data paths are relative to.
pub(crate) fn base_of(file: &Path) -> &Path {
    file.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `--set` with `executor=EXPR` added (`--executor EXPR`).
fn with_executor(set: &[String], executor: &str) -> Vec<String> {
    let mut set = set.to_vec();
    set.push(format!("executor={executor}"));
    set
}

/// Ctrl-C, SIGTERM and SIGHUP (Slurm, systemd, a closed terminal) set `stop`: a training step
/// saves a checkpoint and the run ends; a second one quits at once.
pub(crate) fn on_signal(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let _ = ctrlc::set_handler(move || {
        if stop.swap(true, std::sync::atomic::Ordering::SeqCst) {
            eprintln!("\nmio: stopped without saving the current step");
            std::process::exit(130);
        }
        eprintln!("\nmio: stopping: saving a checkpoint (Ctrl-C again to quit at once)");
    });
}

/// `mio worker JOB_FILE`: one step, from its job file.
fn worker(job: &Path, quiet: bool) -> Result<(), Failure> {
    use mio_engine::run::worker::{self, Outcome};
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    on_signal(stop.clone());
    match worker::run_file(job, quiet, stop) {
        Ok(Outcome::Done { seconds }) => emit(&format!("done in {seconds:.0} s\n")),
        Ok(Outcome::Cached) => emit("already finished\n"),
        Ok(Outcome::Interrupted) | Err(mio_engine::run::RunError::Interrupted { .. }) => {
            eprintln!(
                "mio: interrupted; its progress is saved and the same job continues from there"
            );
            Err(Failure::Interrupted)
        }
        Ok(Outcome::Failed { error }) => {
            eprintln!("error: {error}");
            Err(Failure::User)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(Failure::User)
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    Step,
    Infer,
    Both,
}

#[derive(clap::Subcommand)]
enum ImportFrom {
    /// BasicSR (and the reference implementation's) option files: one per training stage,
    /// chained by `path.pretrain_network_g`
    Basicsr {
        /// The option files (YAML), in any order
        #[arg(required = true)]
        options: Vec<PathBuf>,
        /// The .mio file to write (default: beside the first option file)
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Write over an existing file
        #[arg(long)]
        force: bool,
    },
}

/// `mio import basicsr`: writes the .mio file, says what it could not map, and checks it.
fn import_basicsr(
    options: &[PathBuf],
    output: Option<PathBuf>,
    force: bool,
) -> Result<(), Failure> {
    let user = |m: String| {
        eprintln!("error: {m}");
        Failure::User
    };
    let imported = mio_engine::import::basicsr(options).map_err(user)?;
    let out = output.unwrap_or_else(|| mio_engine::import::default_output(options));
    if out.exists() && !force {
        return Err(user(format!(
            "{} exists: give another --output, or --force to write over it",
            out.display()
        )));
    }
    mio_stdlib::data::write_atomic(&out, imported.text.as_bytes())
        .map_err(|e| user(format!("{}: cannot write it: {e}", out.display())))?;
    println!("wrote {}", out.display());
    if !imported.unmapped.is_empty() {
        println!("not mapped ({}):", imported.unmapped.len());
        for u in &imported.unmapped {
            println!("  {u}");
        }
    }
    // The file must check as written: anything else is a bug in the importer.
    load(&out, &[]).map(|_| ())
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
    /// The training arithmetic, one or more of fp32, tf32, bf16, auto (comma-separated: each
    /// is timed; auto: tf32 on a GPU, fp32 on the CPU; bf16: mixed precision, timed for the
    /// training step only, as restorations compute in fp32)
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    precision: Vec<String>,
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
            let spec =
                mio_engine::lower::network(&call, vec![]).map_err(|e| user(e.to_string()))?;
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
    let mut precisions = vec![];
    for p in &a.precision {
        match p.as_str() {
            "auto" => precisions.push(("mio".to_string(), None)),
            other => match Precision::parse(other) {
                Some(p) => precisions.push((format!("mio_{other}"), Some(p))),
                None => {
                    return Err(user(format!(
                        "--precision: `{other}` is not one of auto, {}",
                        Precision::NAMES.join(", ")
                    )))
                }
            },
        }
    }
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
        "mio bench on {} ({threads} CPU threads, {} arithmetic), median of up to {} rounds",
        if gpu {
            format!("{dev:?}")
        } else {
            "the CPU".into()
        },
        precisions
            .iter()
            .map(|(_, p)| resolve(*p, &dev).name())
            .collect::<Vec<_>>()
            .join(" and "),
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
    // (label, mio's kernels, precision)
    let mut labels: Vec<(String, bool, Option<Precision>)> = precisions
        .iter()
        .map(|(label, p)| (label.clone(), true, *p))
        .collect();
    if a.candle && !gpu {
        labels.push(("candle".into(), false, None));
    }
    for c in &cases {
        if a.phase != Phase::Infer {
            say(&format!(
                "{}: the data loader's batch of {} crops of {}",
                c.name, c.batch, c.patch
            ));
            let ms = bench::loader_ms(c.batch, c.patch, a.rounds, a.budget);
            record(format!("loader.{}_batch", c.name), ms);
        }
        for (label, fast, precision) in &labels {
            let (label, fast) = (label.as_str(), *fast);
            mio_stdlib::kernels::conv::set_fast(fast);
            let _precision = Scoped::new(resolve(*precision, &dev));
            if a.phase != Phase::Infer {
                say(&format!(
                    "{} ({label}): a training step at batch {}, patch {}",
                    c.name, c.batch, c.patch
                ));
                let step = bench::train_step_ms(c, &dev, a.rounds, a.budget).map_err(internal)?;
                record(format!("{label}.{}_step", c.name), step);
            }
            // Restorations compute in fp32 whatever the training precision.
            if a.phase != Phase::Step && *precision != Some(Precision::Bf16) {
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
            "\n{:<24} {:>12} {:>10} {:>10} {:>16} {:>10}",
            "network", "batch x patch", "step ms", "patches/s", "512x512 ms", "loader ms"
        );
        for c in &cases {
            let loader = get(&format!("loader.{}_batch", c.name));
            for (label, ..) in &labels {
                let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
                let step = get(&format!("{label}.{}_step", c.name));
                let infer = get(&format!("{label}.{}_infer512", c.name));
                let name = if labels.len() > 1 {
                    format!("{} ({label})", c.name)
                } else {
                    c.name.clone()
                };
                println!(
                    "{name:<24} {:>12} {:>10} {:>10} {:>16} {:>10}",
                    format!("{} x {}", c.batch, c.patch),
                    show(step),
                    show(step.map(|s| c.batch as f64 / (s / 1e3))),
                    show(infer),
                    show(loader)
                );
            }
        }
        println!(
            "\nloader ms: the CPU's threads synthesising one batch; a GPU's stage makes it ahead \
             on a thread of its own, so a step waits only where it is the longer"
        );
    }
    Ok(())
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
    let (_, p) = planned(file, set)?;
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
    let d = mio_engine::lower::degradation(task).map_err(|e| Failure::Internal(e.to_string()))?;
    let mut rng = mio_stdlib::degrade::rng_for(seed, &task.text(), &src.name);
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
