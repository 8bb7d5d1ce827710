//! The report written out: one [`doc::Document`] (gathered by the report node from the
//! artifacts of its inputs) rendered as Markdown, self-contained HTML, CSV and JSON, each by a
//! module of its own that knows nothing of runs, nodes or networks.

pub mod csv;
pub mod doc;
pub mod html;
pub mod json;
pub mod markdown;
