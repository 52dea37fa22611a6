//! Files that appear whole: written under a hidden temporary name beside the target, then renamed
//! over it, so that a reader (or another process) sees the old file or the new one, never part of
//! one. The local store's puts and streamed objects, the tree-pack cache and the metrics textfile
//! all write this way.
//!
//! A temporary name is `.NAME.tmp-PID-N` (`N` counts up from a random start): hidden (listings skip dot files), unique among this
//! machine's processes, and naming its writer, so that the local store's cleanup can tell a dead
//! writer's file from a live one's (`store/local/cleanup.rs` parses exactly this form).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Where this process's `N` starts: random, so that processes of two containers with the same
/// PID (often 1) writing in one shared folder still pick different names.
fn counter_base() -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        crate::id::random_bytes::<4>()
            .map(|b| u64::from(u32::from_le_bytes(b)))
            .unwrap_or(0)
    })
}

/// A hidden name next to `path`, `.NAME.tmp-PID-N`, unique within this machine's processes.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .expect("a target has a last segment")
        .to_string_lossy();
    path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        counter_base() + TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Creates the file `tmp`, which must not exist, for writing, with `flags` added to open(2)'s
/// (`0` for none). If its folder is gone (a concurrent delete or cleanup removed the folder it
/// emptied), the folder is made again and the file created once more.
pub(crate) fn create_new(tmp: &Path, flags: i32) -> std::io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(flags)
            .open(tmp)
    };
    match open() {
        Err(e) if e.kind() == IoKind::NotFound => {
            if let Some(dir) = tmp.parent() {
                fs::create_dir_all(dir)?;
            }
            open()
        }
        other => other,
    }
}

/// Writes `data` as the whole of `path`: into a new file at [`temp_path`] beside it, fsynced
/// first if `sync`, then renamed over `path`. On failure the temporary file is removed and
/// `path` is as it was. The folder itself is not synced (see [`sync_dir`]).
pub(crate) fn write_whole(path: &Path, data: &[u8], sync: bool) -> std::io::Result<()> {
    let tmp = temp_path(path);
    // Created new (never another writer's file): only then is it this call's to remove.
    let mut f = create_new(&tmp, 0)?;
    let write = || -> std::io::Result<()> {
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)
    };
    let written = write();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Fsyncs directory `dir`, so that an entry it gained or lost survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_name_is_hidden_beside_its_target_and_names_its_writer() {
        let a = temp_path(Path::new("/x/y/obj"));
        let b = temp_path(Path::new("/x/y/obj"));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/x/y")));
        let name = a.file_name().unwrap().to_str().unwrap();
        let tail = name.strip_prefix(".obj.tmp-").unwrap();
        let (pid, n) = tail.split_once('-').unwrap();
        assert_eq!(pid.parse::<u32>().unwrap(), std::process::id());
        n.parse::<u64>().unwrap();
    }

    #[test]
    fn write_whole_replaces_the_target_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file");
        write_whole(&path, b"one", false).unwrap();
        write_whole(&path, b"two", true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<String> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["file".to_string()]);
    }
}
