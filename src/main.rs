//! `mio`: the command line. Each subcommand reads a `.mio` file, reports every problem with
//! miette diagnostics, and exits 0 (ok), 1 (the file has errors) or 2 (mio itself failed).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { file, set } => check(&file, &set),
        Command::Fmt { file, check } => fmt(&file, check),
        Command::Plan { file, set } => plan_cmd(&file, &set, None),
        Command::Graph { file, format, set } => plan_cmd(&file, &set, Some(format)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::User) => ExitCode::from(1),
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
    write_atomic(file, &formatted)
        .map_err(|e| Failure::Internal(format!("cannot write {}: {e}", file.display())))?;
    eprintln!("formatted {}", file.display());
    Ok(())
}

/// Writes through a temporary file and a rename, so a crash never leaves half a file.
fn write_atomic(file: &Path, text: &str) -> std::io::Result<()> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.mio-fmt.tmp",
        file.file_name().unwrap_or_default().to_string_lossy()
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, file)
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
