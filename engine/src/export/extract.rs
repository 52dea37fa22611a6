//! One file out of a day's archive without reading the archive: the manifest says where the
//! file's content starts in the tar stream, the seek table which frames hold it, and only those
//! frames are fetched (one ranged read for adjacent frames) and decoded, each against its own
//! content checksum and the table's length. A missing or damaged seek table falls back to
//! reading the archive from its start, with a warning; nothing that does not check is written.
//!
//! This file finds the file in the manifest (following a hardlink to its first name) and falls
//! back to the scan; reading by the table is `frames`'s, and restoring whole paths onto a target
//! by it `restore::day_paths`'s (re-exported here as `restore_paths`).

use std::io::Write;

use super::manifest::{DayKeys, Manifest, ManifestEntry};
use super::manifest_stream::read_manifest_filtered;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::EntryKind;
use crate::store::Store;

pub use super::frames::{FrameReader, HeaderMeta, MAX_TABLE_FRAMES, check_seek_table, read_table};
pub use crate::restore::restore_day_paths as restore_paths;

/// How a file was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Through the seek table: only the frames holding the file.
    Seek {
        /// Frames fetched.
        frames: usize,
        /// Compressed bytes fetched (the table and the frames).
        bytes: u64,
    },
    /// From the archive's start (no usable seek table).
    Scan,
}

/// The day's manifest with the first entry `pick` accepts (none when it accepts none), read as
/// a stream: memory stays bounded whatever the manifest's size.
fn first_entry(
    exports: &dyn Store,
    keys: &DayKeys,
    pick: &dyn Fn(&ManifestEntry) -> bool,
) -> Result<Manifest> {
    let mut found = false;
    read_manifest_filtered(exports, keys, &mut |e| {
        let take = !found && pick(e);
        found |= take;
        take
    })
}

/// The manifest of the day of `keys` (without its lists) and the entry of the file `path`,
/// following a hardlink to its first name.
fn find_file(
    exports: &dyn Store,
    keys: &DayKeys,
    path: &[u8],
) -> Result<(Manifest, ManifestEntry)> {
    let path = path.strip_suffix(b"/").unwrap_or(path);
    let date = &keys.date;
    let mut manifest = first_entry(exports, keys, &|e| e.path.0 == path)?;
    let e = manifest.entries.pop().ok_or_else(|| {
        Error::not_found(format!(
            "{} is not in the archive of {date}",
            String::from_utf8_lossy(path)
        ))
    })?;
    if e.kind != EntryKind::File {
        return Err(Error::usage(format!(
            "{} is a {} in the archive of {date}, not a file",
            String::from_utf8_lossy(path),
            e.kind
        )));
    }
    let Some(first) = &e.link else {
        return Ok((manifest, e));
    };
    // The first name comes earlier in the manifest; one more pass finds it.
    let mut again = first_entry(exports, keys, &|x| x.path == *first && x.link.is_none())?;
    let target = again.entries.pop().ok_or_else(|| {
        Error::corrupt(format!(
            "the manifest of {date} names a hardlink {} to a missing file",
            String::from_utf8_lossy(path)
        ))
    })?;
    // A link's content is its first name's: a folder there (whose size is 0) would print
    // nothing and pass, and no tar header of a file is there to check.
    if target.kind != EntryKind::File {
        return Err(Error::corrupt(format!(
            "the manifest of {date} names a hardlink {} to {}, a {}, not a file",
            String::from_utf8_lossy(path),
            target.path.lossy(),
            target.kind
        )));
    }
    Ok((manifest, target))
}

/// Writes the content of `path` in the archive of `date` to `out`, reading only what it needs.
/// The path must be a file in the day's manifest. Returns how it was read.
pub fn extract(exports: &dyn Store, date: &str, path: &[u8], out: &mut dyn Write) -> Result<Route> {
    let keys = DayKeys::new(date)?;
    let (manifest, entry) = find_file(exports, &keys, path)?;
    // A manifest that misplaces its table is refused, not worked around.
    check_seek_table(&keys, &manifest)?;
    extract_entry(exports, &keys, &manifest, &entry, out)
}

/// [`extract`] of an entry already found in `manifest`.
fn extract_entry(
    exports: &dyn Store,
    keys: &DayKeys,
    manifest: &Manifest,
    entry: &ManifestEntry,
    out: &mut dyn Write,
) -> Result<Route> {
    if entry.size == 0 && entry.offset.is_none() {
        // An empty file of a manifest written before empty files had an offset: nothing says
        // where its header is, so it is taken from the manifest as it is (documented).
        return Ok(Route::Seek {
            frames: 0,
            bytes: 0,
        });
    }
    let reader = FrameReader::open(exports, keys, manifest);
    match reader {
        Ok(mut r) => {
            let frames = r
                .copy(entry, out)
                .map_err(|e| e.context(format!("reading {} by the seek table", keys.archive)))?;
            Ok(Route::Seek {
                frames,
                bytes: r.fetched,
            })
        }
        // Only a table that is absent or does not check sends the read to the start; any other
        // failure (the network) is reported, not turned into a read of the whole archive.
        Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
            tracing::warn!(archive = %keys.archive, error = %e, "no usable seek table; reading the archive from its start");
            scan(exports, &keys.archive, entry, out)?;
            Ok(Route::Scan)
        }
        Err(e) => Err(e),
    }
}

/// Reads the archive from its start and copies the entry's content: the fallback.
fn scan(exports: &dyn Store, key: &str, entry: &ManifestEntry, out: &mut dyn Write) -> Result<()> {
    let reader = crate::store::ObjectReader::open(exports, key)?;
    let dec = zstd::stream::read::Decoder::new(reader)
        .map_err(|e| Error::corrupt("zstd decoder").with_source(e))?;
    let (guard, names) = crate::tar::guard::TarGuard::with_names(dec);
    let mut archive = tar::Archive::new(guard);
    for item in archive
        .entries()
        .map_err(|e| Error::corrupt(format!("{key}: not a tar")).with_source(e))?
    {
        let mut item =
            item.map_err(|e| Error::corrupt(format!("{key}: damaged")).with_source(e))?;
        let path = names
            .borrow()
            .path
            .clone()
            .unwrap_or_else(|| item.path_bytes().into_owned());
        if path == entry.path.0
            && item.header().entry_type().is_file()
            && entry.offset.is_none_or(|o| o == item.raw_file_position())
        {
            if item.size() != entry.size {
                return Err(Error::corrupt(format!(
                    "{} is {} bytes in the archive, {} in its manifest",
                    entry.path.lossy(),
                    item.size(),
                    entry.size
                )));
            }
            let n = std::io::copy(&mut item, &mut WriteAll(out)).map_err(|e| {
                Error::new(ErrorKind::Corrupt, format!("{key}: damaged content: {e}"))
            })?;
            if n != entry.size {
                return Err(Error::corrupt(format!("{}: cut short", entry.path.lossy())));
            }
            return Ok(());
        }
    }
    Err(Error::corrupt(format!(
        "{} is in the manifest but not in the archive",
        entry.path.lossy()
    )))
}

/// A `Write` over a `&mut dyn Write`.
struct WriteAll<'a>(&'a mut dyn Write);

impl Write for WriteAll<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
