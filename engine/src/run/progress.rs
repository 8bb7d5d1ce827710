//! What a user sees while a run goes: a line per node, and for training a progress line that
//! redraws itself on a terminal (a new line every few seconds elsewhere) with the step, loss,
//! learning rate, speed and time left.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    quiet: bool,
    tty: bool,
    total: usize,
    last: Instant,
    line_open: bool,
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
            line_open: false,
        }
    }

    fn close_line(&mut self) {
        if self.line_open {
            eprintln!();
            self.line_open = false;
        }
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
        let width = 24usize;
        let filled = ((step + 1) as usize * width) / total.max(1) as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        let text = format!(
            "      [{bar}] {}/{total}  loss {loss:.4}  lr {lr:.2e}  {rate:.1} it/s  ETA {}",
            step + 1,
            eta(left)
        );
        if self.tty {
            eprint!("\r{text}\x1b[K");
            let _ = std::io::stderr().flush();
            self.line_open = true;
            if last {
                self.close_line();
            }
        } else {
            eprintln!("{text}");
        }
    }
}
