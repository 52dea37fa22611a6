//! What reaches the store, byte for byte: chunks and their ids, zstd frames, packs, trees and
//! snapshots. One file per section of docs/FORMAT.md; nothing here does I/O beyond the reader or
//! bytes it is given, and nothing knows the catalog or a store.

pub mod chunk;
pub mod codec;
pub mod pack;
pub mod snapshot;
pub mod tree;
