//! One file's content: where its chunks are, and writing them into the target from a source
//! (chunk by chunk from the store, or from planned reads).

use std::io::Read;
use std::sync::atomic::Ordering::Relaxed;

use rustix::fs::{Mode, OFlags};

use super::Counters;
use super::target::{Meta, Target, cstr, os_err, show};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::tree::Entry;
use crate::id::Id;
use crate::repo::index::BlobLocation;

/// A file to write: its parent's path and its entry.
#[derive(Debug)]
pub(super) struct FileJob {
    pub(super) parent: Vec<Vec<u8>>,
    pub(super) entry: Entry,
}

/// The file's path below the target, for messages.
pub(super) fn job_path(job: &FileJob) -> String {
    if job.parent.is_empty() {
        job.entry.name.lossy().into_owned()
    } else {
        format!("{}/{}", show(&job.parent), job.entry.name.lossy())
    }
}

/// Where each chunk of a file is.
pub(super) fn locate_chunks(catalog: &Catalog, job: &FileJob) -> Result<Vec<(Id, BlobLocation)>> {
    let mut out = Vec::with_capacity(job.entry.chunks.len());
    for id in &job.entry.chunks {
        let loc = catalog.locate(BlobKind::Data, id)?.ok_or_else(|| {
            Error::not_found(format!(
                "{}: chunk {} is in no known pack",
                job_path(job),
                id.short()
            ))
        })?;
        out.push((*id, loc));
    }
    Ok(out)
}

/// Where a restore gets a chunk's content from: read and checked on its own, or taken from a
/// planned read ([`super::remote`]).
pub(super) type ChunkSource<'a> = dyn FnMut(&Id, &BlobLocation) -> Result<Vec<u8>> + 'a;

/// Writes one file from `locations`, its chunks in order, asking `source` for each chunk that
/// is not a run of zeros (those become holes without a read).
pub(super) fn restore_file(
    target: &Target,
    job: &FileJob,
    locations: &[(Id, BlobLocation)],
    source: &mut ChunkSource<'_>,
    verify: bool,
    counters: &Counters,
) -> Result<()> {
    let e = &job.entry;
    let path = job_path(job);
    let dir = target.dir(&job.parent, false)?;
    let written = target.file(&dir, &e.name.0, &path, e.size, &Meta::of(e), &mut |w| {
        for (id, loc) in locations {
            // Holes of sparse images are long runs of one zero chunk: no need to read it.
            if counters.is_zeros(id, loc.raw_length) {
                w.skip(u64::from(loc.raw_length))?;
            } else {
                w.write(&source(id, loc)?)?;
            }
            crate::progress::meter().bytes(u64::from(loc.raw_length));
        }
        Ok(())
    })?;
    let meter = crate::progress::meter();
    meter.items(1);
    if !written {
        counters.unchanged.fetch_add(1, Relaxed);
        meter.bytes(e.size);
        return Ok(());
    }
    counters.files.fetch_add(1, Relaxed);
    counters.bytes.fetch_add(e.size, Relaxed);
    if verify {
        let c = cstr(&e.name.0)?;
        let fd = rustix::fs::openat(
            &dir,
            &c,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| os_err(format!("re-reading {path}"), err))?;
        let mut f = std::fs::File::from(fd);
        let mut buf = Vec::new();
        for (id, loc) in locations {
            buf.resize(loc.raw_length as usize, 0);
            f.read_exact(&mut buf)
                .map_err(|err| Error::io(format!("re-reading {path}"), err))?;
            if Id::of(&buf) != *id {
                return Err(Error::corrupt(format!(
                    "{path}: restored content does not match chunk {}",
                    id.short()
                )));
            }
        }
        let mut extra = [0u8; 1];
        if f.read(&mut extra)
            .map_err(|err| Error::io(format!("re-reading {path}"), err))?
            != 0
        {
            return Err(Error::corrupt(format!(
                "{path}: restored file is longer than the snapshot says"
            )));
        }
        counters.verified.fetch_add(1, Relaxed);
    }
    Ok(())
}
