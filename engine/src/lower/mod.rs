//! Lowering: a checked workflow becomes typed jobs (`job.rs`) built from stdlib's own types.
//! This is the one place that matches a built-in's name after checking, and every match lists
//! each built-in of its kind with no arm that picks a default: a name without a lowering, or
//! an argument the checker should have filled in and did not, is a [`LowerError`] (a bug in
//! mio, reported as `mio::E090`). `engine/tests/lowering.rs` lowers every built-in of the
//! catalog with arguments other than its defaults and checks that each one changes the job,
//! so a declared parameter that does nothing fails it.
//!
//! `network.rs` (a backbone call to its configuration) needs no tensors and is also what the
//! checker reads a backbone's constraints from; `jobs.rs` (everything else) comes with the
//! runner (the `run` feature).

#[cfg(feature = "run")]
mod jobs;
mod network;
mod values;

#[cfg(feature = "run")]
pub use jobs::*;
pub use network::network;
pub use values::LowerError;
