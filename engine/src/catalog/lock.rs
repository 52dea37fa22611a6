//! The state-directory lock: one cairn process at a time per catalog. RocksDB would refuse a
//! second opener anyway, but with an error about its LOCK file; this lock names the holder.

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

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
        if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "state directory {} is in use by another cairn ({})",
                    state_dir.display(),
                    holder(&file)
                ),
            ));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        // One write of the whole line: `write!` would issue one per piece, and a reader between
        // them would see `pid ` alone. The newline tells a reader the line is complete.
        let _ = file.write_all(format!("pid {}\n", std::process::id()).as_bytes());
        Ok(StateLock { _file: file })
    }
}

/// How long a process that found the lock taken waits for the holder's pid: a holder writes it
/// just after taking the lock (truncating the file first), so an empty file is most often one
/// caught in between.
const PID_PATIENCE: Duration = Duration::from_millis(250);

/// `pid N` of the lock's holder, as it wrote it in the lock file, or `pid unknown` if it wrote
/// none within [`PID_PATIENCE`] (a holder stopped or killed right after taking the lock).
fn holder(file: &File) -> String {
    let start = Instant::now();
    loop {
        let mut buf = [0u8; 64];
        let n = file.read_at(&mut buf, 0).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        let pid = text
            .trim()
            .strip_prefix("pid ")
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        // A complete line, or, once the wait is over, what an older cairn wrote without one.
        let complete = text.ends_with('\n') || start.elapsed() >= PID_PATIENCE;
        if let Some(pid) = pid.filter(|_| complete) {
            return format!("pid {pid}");
        }
        if start.elapsed() >= PID_PATIENCE {
            return "pid unknown".to_string();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes the lock as another cairn would (`flock` locks belong to an open file description,
    /// so a second `open` in this process conflicts like another process).
    fn hold(dir: &Path) -> File {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("lock"))
            .unwrap();
        rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive).unwrap();
        f
    }

    /// A holder that took the lock but has not written its pid yet (or never will) is not named
    /// by an empty pair of brackets.
    #[test]
    fn a_holder_that_wrote_no_pid_is_named_pid_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let _held = hold(dir.path());
        let e = StateLock::acquire(dir.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Locked);
        let msg = e.to_string();
        assert!(!msg.contains("()"), "{msg}");
        assert!(msg.contains("(pid unknown)"), "{msg}");
    }

    /// A holder that writes its pid just after the lock was found taken (it truncates the file,
    /// then writes) is named by it.
    #[test]
    fn a_holder_writing_its_pid_just_after_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut held = hold(dir.path());
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(40));
            held.write_all(b"pid 4242\n").unwrap();
            held
        });
        let e = StateLock::acquire(dir.path()).unwrap_err();
        let _held = writer.join().unwrap();
        assert!(e.to_string().contains("(pid 4242)"), "{e}");
    }

    /// The lock names this process once taken, and a second taker names it.
    #[test]
    fn the_holder_is_named_by_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let _lock = StateLock::acquire(dir.path()).unwrap();
        let e = StateLock::acquire(dir.path()).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("(pid {})", std::process::id())),
            "{e}"
        );
    }
}
