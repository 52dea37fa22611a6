//! What the threads of one backup share ([`RunState`]): its options, the data and tree packers,
//! the files-cache records held back until their chunks are durable, the excludes, the chunker's
//! parameters, the live counters, and the warnings and skips the snapshot will list. The walk,
//! the files and the trees add their own methods to it; this file has the ones they all use:
//! recording a warning or a skip, and calling the hook.

use std::io::ErrorKind as IoKind;
use std::path::Path;
use std::sync::Mutex;

use super::deferred::DeferredRecords;
use super::options::{BackupOptions, HookPoint, Progress};
use super::scan::Excludes;
use crate::catalog::Catalog;
use crate::error::Result;
use crate::format::chunk::ChunkerParams;
use crate::format::pack::BlobKind;
use crate::format::snapshot::{SkipReason, Skipped, Warning, WarningKind};
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::packer::Packer;

/// The state of one backup run, shared by every thread of its walk.
pub(super) struct RunState<'a> {
    pub(super) opts: &'a BackupOptions,
    pub(super) catalog: &'a Catalog,
    pub(super) data: Packer<'a>,
    pub(super) trees: Packer<'a>,
    pub(super) records: DeferredRecords<'a>,
    pub(super) excludes: Excludes,
    pub(super) chunker: ChunkerParams,
    pub(super) progress: &'a Progress,
    pub(super) warnings: Mutex<Vec<Warning>>,
    pub(super) skipped: Mutex<Vec<Skipped>>,
    /// Length and id of the chunk that runs of zeros are cut into.
    pub(super) zero_chunk: (usize, Id),
}

impl<'a> RunState<'a> {
    /// The state of a backup of `opts` into `repo`, with nothing walked or stored yet; fails only
    /// for exclude patterns that do not parse.
    pub(super) fn new(
        repo: &'a Repository,
        catalog: &'a Catalog,
        opts: &'a BackupOptions,
        progress: &'a Progress,
    ) -> Result<RunState<'a>> {
        let pack_size = repo.config().pack_size as usize;
        Ok(RunState {
            opts,
            catalog,
            data: Packer::new(repo.store().as_ref(), catalog, BlobKind::Data, pack_size),
            // Trees are small and read often (ls, restore, export): their own packs keep those
            // reads away from the bulk data.
            trees: Packer::new(
                repo.store().as_ref(),
                catalog,
                BlobKind::Tree,
                pack_size / 4,
            ),
            records: DeferredRecords::new(catalog),
            excludes: Excludes::new(&opts.excludes)?,
            chunker: repo.config().chunker,
            progress,
            warnings: Mutex::new(Vec::new()),
            skipped: Mutex::new(Vec::new()),
            zero_chunk: repo.config().chunker.zero_run_chunk(),
        })
    }
}

impl RunState<'_> {
    pub(super) fn warn(&self, rel: &[u8], kind: WarningKind, message: impl ToString) {
        let w = Warning {
            path: display(rel),
            kind,
            message: message.to_string(),
        };
        tracing::warn!(path = %w.path, kind = %w.kind, detail = %w.message, "backup warning");
        self.warnings.lock().expect("poisoned").push(w);
    }

    /// An entry that could not be examined: gone since its directory was listed, or not ours to read.
    pub(super) fn warn_io(&self, rel: &[u8], e: std::io::Error) {
        if e.kind() == IoKind::NotFound {
            self.warn(rel, WarningKind::Vanished, "removed during the scan");
        } else {
            self.warn(rel, WarningKind::Unreadable, e);
        }
    }

    pub(super) fn skip(&self, rel: &[u8], reason: SkipReason) {
        self.skipped.lock().expect("poisoned").push(Skipped {
            path: display(rel),
            reason,
        });
    }

    pub(super) fn call_hook(&self, point: HookPoint, path: &Path) {
        if let Some(h) = &self.opts.hook {
            (h.0)(point, path);
        }
    }
}

fn display(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).into_owned()
}
