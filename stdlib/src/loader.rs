//! A stage's training batches, synthesised ahead of the steps that use them: a thread of its
//! own draws and degrades the crops of the next steps (on rayon's threads, as
//! [`TrainSet::batch`] does) and converts them to tensors, into a bounded queue while the device
//! runs the current step, so a GPU does not wait on degradation. A step's batch depends on
//! (seed, stage, step) alone, so the batches are the same whether made ahead or in line.

use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::Scope;

use candle_core::{Device, Tensor};

use crate::data::{Batch, TaskSpec, TrainSet};

/// A batch as tensors in the CPU's memory: degraded `[B, 3, P, P]`, clean, task ids `[B]`.
pub type Tensors = (Tensor, Tensor, Tensor);

/// What one batch is drawn from.
#[derive(Clone, Copy)]
pub struct Draw<'a> {
    pub set: &'a TrainSet,
    pub tasks: &'a [TaskSpec],
    pub seed: u64,
    pub stage: usize,
    pub size: usize,
}

impl Draw<'_> {
    pub fn batch(&self, step: u64) -> Batch {
        self.set
            .batch(self.tasks, self.seed, self.stage, step, self.size)
    }

    /// [`Draw::batch`] as tensors on the CPU.
    pub fn tensors(&self, step: u64) -> candle_core::Result<Tensors> {
        self.batch(step).to_tensors(&Device::Cpu)
    }
}

/// The batches of `steps`, in order.
pub struct Loader<'a> {
    draw: Draw<'a>,
    queue: Option<Receiver<(u64, candle_core::Result<Tensors>)>>,
}

impl<'a> Loader<'a> {
    /// Batches made `ahead` steps in advance on a thread of `scope` (0: each made when asked,
    /// on the caller's thread). The thread stops when the loader is dropped.
    pub fn new<'scope>(
        scope: &'scope Scope<'scope, '_>,
        draw: Draw<'a>,
        steps: Range<u64>,
        ahead: usize,
    ) -> Self
    where
        'a: 'scope,
    {
        let queue = (ahead > 0 && !steps.is_empty()).then(|| {
            let (tx, rx) = sync_channel(ahead);
            scope.spawn(move || {
                for step in steps {
                    // A closed queue: the stage stopped early.
                    if tx.send((step, draw.tensors(step))).is_err() {
                        return;
                    }
                }
            });
            rx
        });
        Loader { draw, queue }
    }

    /// The batch of `step` as tensors on the CPU: the steps must be asked for in order.
    pub fn next(&mut self, step: u64) -> candle_core::Result<Tensors> {
        let Some(rx) = &self.queue else {
            return self.draw.tensors(step);
        };
        match rx.recv() {
            Ok((s, batch)) if s == step => batch,
            Ok((s, _)) => {
                candle_core::bail!("the loader made step {s}'s batch where step {step}'s was asked")
            }
            // The producer ended: it panicked (its panic reaches the scope), or the steps ran
            // out; make this one in line.
            Err(_) => self.draw.tensors(step),
        }
    }
}

/// How many batches a stage on `dev` makes ahead: a few on a GPU, which would otherwise wait on
/// the CPU's degradation at every step; none on the CPU, where the step itself keeps every core
/// busy (docs/performance.md measured it). `MIO_LOADER_AHEAD=N` overrides both.
pub fn ahead_for(dev: &candle_core::Device) -> usize {
    if let Some(n) = std::env::var("MIO_LOADER_AHEAD")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return n;
    }
    if dev.is_cpu() {
        0
    } else {
        3
    }
}
