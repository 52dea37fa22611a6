//! Object stores: where packs, snapshots and the repository config live.
//!
//! The [`Store`] trait is deliberately small — `put`, `get`, `get_range`, `list`, `delete`, and
//! `clean_temporaries` for what a killed writer leaves — so
//! that a backend is easy to write and easy to check: one conformance suite (in the engine's
//! integration tests) runs against every backend. Retrying and fault injection are wrappers that
//! implement the same trait, so the rest of the engine never knows which it is talking to.
//!
//! Keys are relative, `/`-separated, made of `[A-Za-z0-9._-]` segments that do not start with
//! a dot; [`check_key`] enforces that, so no key can escape a local store's root.

mod contract;
#[cfg(any(test, feature = "fault-injection"))]
mod fault;
pub mod fetch;
mod local;
mod memory;
mod reader;
mod retry;
mod s3;

pub use contract::*;
#[cfg(any(test, feature = "fault-injection"))]
pub use fault::{Fault, FaultStore, Op};
pub use local::LocalStore;
pub(crate) use local::{LastFile, PIECE, read_pieces};
pub use memory::MemoryStore;
pub use reader::ObjectReader;
pub use retry::{RetryPolicy, RetryStore};
pub use s3::{S3Config, S3Store, credential_from_env};
