//! What a user sees while a run goes: a line per node, and for training a progress bar
//! (indicatif) on a terminal, with the step, loss, learning rate, speed and time left; away
//! from a terminal (a log file, a Slurm job's output), the same as a plain line every few
//! seconds.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    quiet: bool,
    tty: bool,
    total: usize,
    last: Instant,
    bar: Option<ProgressBar>,
}

fn eta(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Progress {
    pub fn new(quiet: bool, total: usize) -> Progress {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
            total,
            last: Instant::now() - Duration::from_secs(60),
            bar: None,
        }
    }

    /// Leaves the bar where it is (its last state stays on screen) before other lines.
    fn close_line(&mut self) {
        if let Some(b) = self.bar.take() {
            b.abandon();
        }
    }

    fn bar(&mut self, total: u64) -> &ProgressBar {
        if self.bar.as_ref().and_then(|b| b.length()) != Some(total) {
            self.close_line();
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("      [{bar:24}] {pos}/{len}  {msg}")
                    .expect("a valid template")
                    .progress_chars("#>-"),
            );
            self.bar = Some(b);
        }
        self.bar.as_ref().expect("just set")
    }

    pub fn cached(&mut self, k: usize, name: &str) {
        if !self.quiet {
            eprintln!("[{}/{}] {name}: cached", k + 1, self.total);
        }
    }

    pub fn start(&mut self, k: usize, name: &str, detail: &str) {
        eprintln!("[{}/{}] {name}: {detail}", k + 1, self.total);
        self.last = Instant::now() - Duration::from_secs(60);
    }

    pub fn done(&mut self, _k: usize, name: &str, secs: f64) {
        self.close_line();
        eprintln!("      {name}: done in {}", eta(secs));
    }

    /// A node another process (a cluster job, a worker) finished while this one waited for it.
    pub fn finished_elsewhere(&mut self, name: &str) {
        self.close_line();
        eprintln!("      {name}: finished by the other process; not run again");
    }

    pub fn failed(&mut self, name: &str) {
        self.close_line();
        eprintln!("      {name}: failed");
    }

    pub fn note(&mut self, text: &str) {
        self.close_line();
        eprintln!("      {text}");
    }

    /// A training step: drawn at most 10 times a second on a terminal, every 5 s elsewhere,
    /// and always at the last step.
    pub fn step(&mut self, step: u64, total: u64, loss: f32, lr: f64, rate: f64) {
        let last = step + 1 == total;
        let every = if self.tty { 0.1 } else { 5.0 };
        if self.quiet || (!last && self.last.elapsed().as_secs_f64() < every) {
            return;
        }
        self.last = Instant::now();
        let left = (total - step - 1) as f64 / rate.max(1e-9);
        let stats = format!(
            "loss {loss:.4}  lr {lr:.2e}  {rate:.1} it/s  ETA {}",
            eta(left)
        );
        if self.tty {
            let b = self.bar(total);
            b.set_position(step + 1);
            b.set_message(stats);
            if last {
                self.close_line();
            }
        } else {
            let width = 24usize;
            let filled = ((step + 1) as usize * width) / total.max(1) as usize;
            let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
            eprintln!("      [{bar}] {}/{total}  {stats}", step + 1);
        }
    }
}
