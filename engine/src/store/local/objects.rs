//! The local store itself: objects as files under a root directory, a key's `/` being
//! subdirectories; puts are atomic and durable, listings skip the hidden temporary files, and
//! deletes remove the folders they leave empty, as an object store shows no empty prefix.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::cleanup::clean_dir;
use super::writer::LocalWriter;
use crate::atomic_file::{self, sync_dir, temp_path};
use crate::error::{Error, Result};
use crate::store::{Cleaned, ObjectInfo, ObjectWriter, Store, check_key, check_prefix};

/// Objects as files under a root directory; a key's `/` are subdirectories.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root`, created if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if let Err(e) = fs::create_dir_all(&root) {
            // A file on the path is a mistake in the configuration, not an I/O failure.
            return Err(match fs::metadata(&root) {
                Ok(md) if !md.is_dir() => not_a_dir(&root),
                _ if e.raw_os_error() == Some(libc::ENOTDIR) => not_a_dir(&root),
                _ => Error::io(format!("creating store directory {}", root.display()), e),
            });
        }
        Self::open_existing(root)
    }

    /// A store rooted at `root`, which must be an existing directory: a missing one is a
    /// configuration error (kind `Config`) rather than an empty store, so that a typo in a path
    /// is not mistaken for a lost repository and nothing is created by commands that only read.
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        match fs::metadata(&root) {
            Ok(md) if md.is_dir() => Ok(LocalStore { root }),
            Ok(_) => Err(not_a_dir(&root)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                Err(Error::config(format!(
                    "store directory {} does not exist (`cairn init` creates it)",
                    root.display()
                )))
            }
            Err(e) => Err(Error::io(
                format!("opening store directory {}", root.display()),
                e,
            )),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Creates `dir` and any missing parents, fsyncing each parent that gained an entry so the
    /// new directories survive a crash along with the files put into them.
    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.ensure_dir(parent)?;
        }
        match fs::create_dir(dir) {
            Ok(()) => sync_dir(dir.parent().unwrap_or(dir)),
            Err(e) if e.kind() == IoKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::io(format!("creating {}", dir.display()), e)),
        }
    }
}

fn not_a_dir(root: &Path) -> Error {
    Error::config(format!(
        "store directory {} is not a directory",
        root.display()
    ))
}

fn open_existing(path: &Path, key: &str) -> Result<File> {
    File::open(path).map_err(|e| {
        if e.kind() == IoKind::NotFound {
            Error::not_found(format!("object {key} not found"))
        } else {
            Error::io(format!("opening object {key}"), e)
        }
    })
}

impl Store for LocalStore {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        let dir = path.parent().expect("keys are below the root");
        self.ensure_dir(dir)?;
        // Fsynced, renamed into place, then the folder fsynced: atomic and durable.
        atomic_file::write_whole(&path, data, true)
            .map_err(|e| Error::io(format!("writing object {key}"), e))?;
        sync_dir(dir)
    }

    /// The file system's time: a temporary file is written in the root and its modification
    /// time read back (on a network file system shared by several machines, the server's or
    /// the writing client's clock, as that file system keeps times).
    fn clock(&self) -> Result<Option<jiff::Timestamp>> {
        // A random name: two machines sharing the directory may run cairn under one pid.
        let tmp = temp_path(
            &self
                .root
                .join(format!("clock-{}", crate::id::random_hex(8)?)),
        );
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("reading the local store's clock", e))?;
        let t = f.metadata().and_then(|m| m.modified());
        let _ = fs::remove_file(&tmp);
        let t = t.map_err(|e| Error::io("reading the local store's clock", e))?;
        jiff::Timestamp::try_from(t).map(Some).map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Io,
                format!("the local store's clock: {e}"),
            )
        })
    }

    fn size(&self, key: &str) -> Result<u64> {
        let f = open_existing(&self.path(key)?, key)?;
        Ok(f.metadata()
            .map_err(|e| Error::io(format!("stat of object {key}"), e))?
            .len())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let mut f = open_existing(&self.path(key)?, key)?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)
            .map_err(|e| Error::io(format!("reading object {key}"), e))?;
        Ok(out)
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut f = open_existing(&self.path(key)?, key)?;
        let size = f
            .metadata()
            .map_err(|e| Error::io(format!("stat of object {key}"), e))?
            .len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::corrupt(format!(
                "range {offset}+{len} is outside object {key} of {size} bytes"
            )));
        }
        let mut out = vec![0; len as usize];
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.read_exact(&mut out))
            .map_err(|e| Error::io(format!("reading object {key}"), e))?;
        Ok(out)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        check_prefix(prefix)?;
        // Walk from the deepest directory that the prefix names completely.
        let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
        let mut out = Vec::new();
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        walk(&start, dir_part, prefix, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        let path = self.path(key)?;
        self.ensure_dir(path.parent().expect("keys are below the root"))?;
        Ok(Box::new(LocalWriter::create(path, key)?))
    }

    fn local_file(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }

    fn clean_temporaries(&self, prefix: &str, older_than: Duration) -> Result<Cleaned> {
        check_prefix(prefix)?;
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut out = Cleaned::default();
        // A prefix names a folder (`2026-11-01/`) or the whole store; clean the deepest folder
        // it names completely, as `list` walks.
        let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        if clean_dir(&start, &self.root, cutoff, &mut out)? {
            // The folder went: so may its parents, as `delete` does.
            let mut dir = start.parent().expect("below root");
            while dir != self.root && fs::remove_dir(dir).is_ok() {
                dir = dir.parent().expect("below root");
            }
        }
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("deleting object {key}"), e)),
        }
        // Directories are an artefact of this backend: remove the ones left empty, as an object
        // store would show no prefix once its last object is gone.
        let mut dir = path.parent().expect("below root");
        while dir != self.root && fs::remove_dir(dir).is_ok() {
            dir = dir.parent().expect("below root");
        }
        sync_dir(dir)
    }
}

fn walk(dir: &Path, rel: &str, prefix: &str, out: &mut Vec<ObjectInfo>) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue; // temporary files of puts in flight or interrupted
        }
        let key = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let ft = ent
            .file_type()
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        if ft.is_dir() {
            // Descend only where keys below could still match the prefix.
            let k = format!("{key}/");
            if k.starts_with(prefix) || prefix.starts_with(&k) {
                walk(&ent.path(), &key, prefix, out)?;
            }
        } else if ft.is_file() && key.starts_with(prefix) {
            let size = ent
                .metadata()
                .map_err(|e| Error::io(format!("stat of {key}"), e))?
                .len();
            out.push(ObjectInfo { key, size });
        }
    }
    Ok(())
}
