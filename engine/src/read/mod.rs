//! Reading snapshots back, for every command that reads: the read handle (trees, path look-ups,
//! file content, each blob checked against its id) and questions across snapshots (`diff`,
//! `find`). Readers use this handle and never the writer.

mod handle;
pub mod query;
pub mod walk;

pub use handle::*;
