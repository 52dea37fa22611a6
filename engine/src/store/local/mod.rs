//! A store in a local directory (or any mounted filesystem).
//!
//! `put` writes a hidden temporary file next to the target, fsyncs it, renames it into place and
//! fsyncs the directory, so an object is either absent or complete and durable, even across a
//! power cut. Temporary files left by a crash start with a dot and are never listed; they name
//! the process that wrote them (`.NAME.tmp-PID-N`), so that [`Store::clean_temporaries`] can
//! tell a dead writer's file from a live one's.
//!
//! One concern a file: `objects` (the store itself: keys as files, atomic puts, listing and
//! deleting), `writer` (streaming an object into a temporary file that `finish` publishes),
//! `direct` (the writer's `O_DIRECT` path), `ranges` (reading file ranges in cache-sized pieces,
//! which the export's writer shares) and `cleanup` (finding and removing the temporary files of
//! dead writers). Temporary names, whole-file writes and directory fsyncs are
//! `crate::atomic_file`'s, shared with the tree-pack cache and the metrics textfile.
//!
//! [`Store::clean_temporaries`]: crate::store::Store::clean_temporaries

mod cleanup;
mod direct;
mod objects;
mod ranges;
mod writer;

pub use objects::LocalStore;
pub(crate) use ranges::{LastFile, PIECE, read_pieces};
