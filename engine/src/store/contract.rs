//! The contract every backend keeps: the [`Store`] trait with its doc comments, the writer of
//! one object, listings, the request counts a backend reports, and the key rules
//! ([`check_key`]). Backends, wrappers and the conformance suite all hold to this file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectInfo {
    /// The full key, including the prefix that was listed.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// What [`Store::clean_temporaries`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Cleaned {
    /// Temporary objects removed (files, or aborted multipart uploads).
    pub objects: u64,
    /// Their bytes, where the backend knows them (S3 does not list the size of an upload).
    pub bytes: u64,
}

/// An object as its server names it, so that a writer of another store on the same server can
/// copy from it inside the server (see [`Store::server_object`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerObject {
    /// Which server: two stores can copy between each other only when this is equal.
    pub server: String,
    /// The bucket.
    pub bucket: String,
    /// The object's full key in the bucket, prefix included.
    pub key: String,
    /// The version the object had when it was named (S3: its ETag), when it was asked to be
    /// pinned: a copy from an object rewritten since fails, and the writer sends the bytes.
    pub version: Option<String>,
}

/// Requests a backend sent and bytes it moved since it was opened (see
/// [`Store::request_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestStats {
    /// Every request, whatever its method.
    pub requests: u64,
    /// GET requests: objects, ranges and listings.
    pub gets: u64,
    /// PUT and POST requests: objects, parts, multipart starts and completions.
    pub puts: u64,
    /// HEAD requests.
    pub heads: u64,
    /// DELETE requests.
    pub deletes: u64,
    /// Response bodies received, by their declared length.
    pub bytes_read: u64,
    /// Request bodies sent.
    pub bytes_written: u64,
    /// Copies inside the server (parts copied from another object): counted in `puts` too.
    pub copies: u64,
    /// Bytes those copies moved inside the server, which never crossed the link.
    pub bytes_copied: u64,
}

impl RequestStats {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &RequestStats) -> RequestStats {
        RequestStats {
            requests: self.requests - earlier.requests,
            gets: self.gets - earlier.gets,
            puts: self.puts - earlier.puts,
            heads: self.heads - earlier.heads,
            deletes: self.deletes - earlier.deletes,
            bytes_read: self.bytes_read - earlier.bytes_read,
            bytes_written: self.bytes_written - earlier.bytes_written,
            copies: self.copies - earlier.copies,
            bytes_copied: self.bytes_copied - earlier.bytes_copied,
        }
    }
}

/// A flat namespace of immutable objects.
///
/// Every method may be called from many threads at once.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Stores `data` under `key`.
    ///
    /// Contract: *atomic* — a concurrent or later reader sees either no object or all of
    /// `data`, never a prefix; *durable on return* — once `Ok` is returned the object survives a
    /// crash of this process and of the machine; *idempotent* — putting the same bytes under
    /// the same key again succeeds and changes nothing. Putting different bytes under an
    /// existing key replaces the object; the engine only does that for keys whose content is
    /// determined by their name, so callers never rely on it.
    fn put(&self, key: &str, data: &[u8]) -> Result<()>;

    /// Reads the whole object.
    ///
    /// Contract: a missing object is an error of kind `NotFound`, which is never retryable.
    fn get(&self, key: &str) -> Result<Vec<u8>>;

    /// Reads `len` bytes starting at `offset`.
    ///
    /// Contract: returns exactly `len` bytes; a range that does not lie within the object is an
    /// error of kind `Corrupt` (the caller computed it from an index that promised the bytes),
    /// and a missing object is `NotFound`.
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>>;

    /// Lists the objects whose key starts with `prefix`, sorted by key.
    ///
    /// Contract: complete — every object whose `put` returned before the call started is
    /// listed; objects still being written are not.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;

    /// Removes the object.
    ///
    /// Contract: idempotent — deleting a missing object succeeds.
    fn delete(&self, key: &str) -> Result<()>;

    /// Starts writing a large object piece by piece (the daily archive).
    ///
    /// Contract: the object becomes visible only when [`ObjectWriter::finish`] returns `Ok`,
    /// whole and durable, with the same guarantees as `put`; if the writer is dropped or
    /// aborted instead, no object (and no partial object) is visible under `key`. The default
    /// buffers in memory and calls `put`; backends override it to stream.
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        check_key(key)?;
        Ok(Box::new(BufferedWriter {
            store: self,
            key: key.to_string(),
            buf: Vec::new(),
        }))
    }

    /// Removes what writers that died (a killed process, a lost machine) left below `prefix`:
    /// the backend's temporary objects — hidden `.NAME.tmp-PID-N` files of a local directory,
    /// unfinished multipart uploads on S3 — written to last more than `older_than` ago.
    ///
    /// Contract: never removes or changes a visible object; never removes a temporary object
    /// of a writer that may still be alive (a local store checks the PID in the name against
    /// the processes of this host; a backend that cannot tell relies on the age alone, so
    /// `older_than` must exceed the longest write); folders left empty go too. A backend
    /// without temporary objects removes nothing.
    fn clean_temporaries(&self, prefix: &str, older_than: Duration) -> Result<Cleaned>;

    /// The size of the object `key`.
    ///
    /// Contract: the length a `get` of the object would return; a missing object is
    /// `NotFound`. The default finds it in a listing; backends answer with one cheaper request
    /// (a HEAD on S3, a stat locally).
    fn size(&self, key: &str) -> Result<u64> {
        check_key(key)?;
        self.list(key)?
            .into_iter()
            .find(|o| o.key == key)
            .map(|o| o.size)
            .ok_or_else(|| crate::error::Error::not_found(format!("object {key} not found")))
    }

    /// The local file that holds `key`, for backends that keep objects as files.
    ///
    /// Only an optimization: it lets an archive being written to a local directory copy ranges
    /// of packs inside the kernel ([`ObjectWriter::copy_from_file`]) instead of through two
    /// buffers. Contract: the file's bytes are the object's bytes; a wrapper that changes what
    /// reads return (fault injection) must answer `None`, so that its reads are the only path.
    fn local_file(&self, key: &str) -> Option<PathBuf> {
        let _ = key;
        None
    }

    /// Where `key` lives on its server, for backends whose writers can copy ranges between
    /// objects of one server ([`ObjectWriter::write_copy`]; S3's `UploadPartCopy`).
    ///
    /// Only an optimization, like [`Store::local_file`]: the bytes a copy puts into an object
    /// must be the bytes a read of `key` returns, so a wrapper that changes what reads return
    /// (fault injection) must answer `None`. With `pin`, the answer carries the object's current
    /// version (one request), and a copy from it fails once it is rewritten: for objects that
    /// can be (an earlier day's archive, under `--force`); a key that names its content (a
    /// pack) needs no pin.
    fn server_object(&self, key: &str, pin: bool) -> Option<ServerObject> {
        let _ = (key, pin);
        None
    }

    /// Requests sent and bytes moved since the backend was opened, for a backend that counts
    /// them (S3: every request the SDK sends, retries included). Wrappers pass it on; others
    /// answer `None`. This is how the cost of an operation on an object store is measured.
    fn request_stats(&self) -> Option<RequestStats> {
        None
    }

    /// The store's own clock, where the backend has one: what leases and condemned markers are
    /// timed by, so that machines whose clocks disagree (a pod on a node whose clock ran ahead)
    /// still agree on when a lease lapses.
    ///
    /// Contract: the current time as the store's server keeps it, to within a few seconds (S3:
    /// the `Date` of a response; a local directory: the modification time its file system gives
    /// a file written now). `None` when the backend has no clock of its own (memory): callers
    /// then use this machine's. Wrappers pass it on.
    fn clock(&self) -> Result<Option<jiff::Timestamp>> {
        Ok(None)
    }
}

/// A large object being written; see [`Store::create`].
pub trait ObjectWriter: std::io::Write + Send {
    /// Publishes the object atomically and durably.
    ///
    /// Contract: after `Ok` the writer may only be dropped. After an error of a retryable kind
    /// (a lost connection while an upload completes) `finish` may be called again, and that
    /// call publishes the whole object or fails with an error of a permanent kind: a writer
    /// that lost bytes (a part that never arrived, an `fsync` that failed) must never publish
    /// what is left. This is what lets [`RetryStore`](super::RetryStore) retry publication
    /// without replaying the stream.
    fn finish(&mut self) -> Result<()>;

    /// Appends `len` bytes of the file `src` starting at `offset`, exactly as `write_all` of
    /// those bytes would.
    ///
    /// Returns `Ok(false)`, having written nothing, when this writer cannot read `src` itself;
    /// the caller then reads the bytes and writes them. A range beyond the end of `src` is an
    /// error of kind `Corrupt`.
    fn copy_from_file(&mut self, src: &Path, offset: u64, len: u64) -> Result<bool> {
        let _ = (src, offset, len);
        Ok(false)
    }

    /// Appends `data`, which are the bytes at `offset` of the object `src`, exactly as
    /// `write_all(data)` would.
    ///
    /// The caller holds the bytes (it hashes and checks everything it publishes); a writer on
    /// the same server as `src` may copy them there instead of sending them (S3:
    /// `UploadPartCopy`, for runs of at least 5 MiB), and falls back to sending `data` when the
    /// server refuses the copy. Errors are those of `write_all`. The default sends `data`.
    fn write_copy(&mut self, src: &ServerObject, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let _ = (src, offset);
        self.write_all(data)
    }
}

struct BufferedWriter<'a, S: ?Sized> {
    store: &'a S,
    key: String,
    buf: Vec<u8>,
}

impl<S: Store + ?Sized> std::io::Write for BufferedWriter<'_, S> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<S: Store + ?Sized> ObjectWriter for BufferedWriter<'_, S> {
    fn finish(&mut self) -> Result<()> {
        // `put` is whole or nothing and the buffer stays: a retry sends the same bytes.
        self.store.put(&self.key, &self.buf)
    }
}

impl<S: Store + ?Sized> Store for Arc<S> {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        (**self).put(key, data)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        (**self).get(key)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        (**self).get_range(key, offset, len)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        (**self).list(prefix)
    }
    fn delete(&self, key: &str) -> Result<()> {
        (**self).delete(key)
    }
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        (**self).create(key)
    }
    fn local_file(&self, key: &str) -> Option<PathBuf> {
        (**self).local_file(key)
    }
    fn request_stats(&self) -> Option<RequestStats> {
        (**self).request_stats()
    }
    fn clock(&self) -> Result<Option<jiff::Timestamp>> {
        (**self).clock()
    }
    fn server_object(&self, key: &str, pin: bool) -> Option<ServerObject> {
        (**self).server_object(key, pin)
    }
    fn size(&self, key: &str) -> Result<u64> {
        (**self).size(key)
    }
    fn clean_temporaries(&self, prefix: &str, older_than: Duration) -> Result<Cleaned> {
        (**self).clean_temporaries(prefix, older_than)
    }
}

/// Rejects keys that could escape a directory or collide with a backend's temporary files.
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!("invalid object key {key:?}")))
    }
}

/// Checks a listing prefix: empty, or a key, optionally ending in `/`.
pub fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_key(prefix.strip_suffix('/').unwrap_or(prefix))
}

/// Slices `data[offset..offset+len]` with the `get_range` contract's error.
pub(crate) fn slice_range(key: &str, data: &[u8], offset: u64, len: u64) -> Result<Vec<u8>> {
    let end = offset
        .checked_add(len)
        .filter(|&e| e <= data.len() as u64)
        .ok_or_else(|| {
            Error::corrupt(format!(
                "range {offset}+{len} is outside object {key} of {} bytes",
                data.len()
            ))
        })?;
    Ok(data[offset as usize..end as usize].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for good in ["config", "packs/ab/abcdef", "snapshots/x-1_2.json"] {
            check_key(good).unwrap();
        }
        for bad in [
            "", "/abs", "a//b", "../x", "a/../b", ".hidden", "a/.tmp", "sp ace", "a/", "ü",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        check_prefix("").unwrap();
        check_prefix("packs/").unwrap();
        assert!(check_prefix("../").is_err());
    }
}
