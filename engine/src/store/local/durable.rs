//! What makes a put durable and atomic: a hidden temporary name next to the target, unique among
//! this machine's processes (and naming the writer, for `cleanup`), and the fsync of a directory
//! that gained or lost an entry.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden name next to `path`, unique within this machine's processes.
pub(super) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .expect("keys have a last segment")
        .to_string_lossy();
    path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Fsyncs directory `dir`, so that an entry it gained or lost survives a power cut.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}
