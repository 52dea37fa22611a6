//! The repository: what the store holds and how writers share it. [`Repository`] is a store with
//! its layout and config object; the packer fills packs and reports their entries to a
//! [`index::BlobIndex`]; leases keep writers apart; condemned markers and the damage register are
//! the store's own records of packs to delete and blobs found damaged. Nothing here knows the
//! catalog: it sits above, implementing the index.

pub mod condemn;
pub mod damage;
pub mod index;
pub mod lease;
pub mod packer;
mod repository;

pub use repository::*;
