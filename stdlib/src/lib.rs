//! mio's built-in building blocks: the implementations behind the catalog (`mio-catalog`, re-
//! exported here): image IO, the seven degradations, bicubic resizing, metrics, data sets, the
//! networks on candle, training and the CPU kernels.

pub use mio_catalog::{
    builtins, catalog, prelude, Bound, Builtin, Default, Kind, Param, Prelude, Ty, PAPER_TASKS,
    PRELUDES, REFERENCE_TASK_INDEX,
};

pub mod analysis;
pub mod data;
pub mod degrade;
pub mod fsio;
pub mod image;
pub mod kernels;
pub mod loader;
pub mod metrics;
pub mod models;
pub mod regions;
pub mod resize;
pub mod rng;
mod simd;
pub mod train;
pub mod trainer;
