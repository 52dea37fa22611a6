//! Reads planned by object: a reader that knows every range it will need hands the whole list
//! over, in the order it wants the bytes; neighbouring ranges of one object become one ranged
//! read, several reads are kept in flight, and the ranges come back in order.
//!
//! On an object store a request costs a round trip (~10–20 ms to MinIO over a network) while
//! the bytes of a pack arrive at hundreds of MB/s, so the cost of a restore or an export is
//! requests × latency ÷ requests in flight, not bytes. Reading blob by blob, one after another,
//! made a restore of 40,000 small files from S3 take 100× longer than from disk. This module
//! knows nothing of packs or blobs: it moves byte ranges of objects of any [`Store`], so every
//! backend and wrapper (retry, faults) serves it unchanged.
//!
//! Where things are: `planner.rs` the wants, the merge rule and the requests it makes;
//! `in_order.rs` reads of a list known in advance ([`fetch_in_order`], [`fetch_all`]);
//! `prefetch.rs` reads discovered as a producer goes ([`Prefetch`]).
//!
//! [`Store`]: crate::store::Store

mod in_order;
mod planner;
mod prefetch;

pub use in_order::{fetch_all, fetch_in_order};
pub use planner::{FetchOptions, Request, Want, plan};
pub use prefetch::{Prefetch, Ticket};

#[cfg(test)]
mod tests;
