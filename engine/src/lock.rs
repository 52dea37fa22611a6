//! The state-directory lock: one cairn process at a time per catalog. RocksDB would refuse a
//! second opener anyway, but with an error about its LOCK file; this lock names the holder.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// Held while a command uses the state directory; released on drop or process exit (even on
/// SIGKILL, since the kernel drops `flock` locks with the file descriptor).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock without waiting; kind `Locked` if another process holds it.
    pub fn acquire(state_dir: &Path) -> Result<StateLock> {
        if let Err(e) = std::fs::create_dir_all(state_dir) {
            // A file where the directory should be is a configuration mistake (exit 2).
            let not_dir = std::fs::metadata(state_dir).is_ok_and(|m| !m.is_dir())
                || e.raw_os_error() == Some(libc::ENOTDIR);
            return Err(if not_dir {
                Error::config(format!(
                    "state.dir {} is not a directory",
                    state_dir.display()
                ))
            } else {
                Error::io(
                    format!("creating state directory {}", state_dir.display()),
                    e,
                )
            });
        }
        let path = state_dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "state directory {} is in use by another cairn ({})",
                    state_dir.display(),
                    holder.trim()
                ),
            ));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "pid {}", std::process::id());
        Ok(StateLock { _file: file })
    }
}
