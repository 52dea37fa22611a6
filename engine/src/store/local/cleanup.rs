//! The temporary files of dead writers: a file named `.NAME.tmp-PID-N` whose process is gone (or
//! is a later process that reused the PID) and that was last written before the cutoff is
//! removed, and so are the folders left empty.

use std::fs;
use std::io::ErrorKind as IoKind;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::atomic_file::sync_dir;
use crate::error::{Error, Result};
use crate::store::Cleaned;

/// The writer's PID in a temporary file name `.NAME.tmp-PID-N` (as `atomic_file::temp_path`
/// makes them), if it is one.
fn temp_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp-")?;
    let (pid, n) = tail.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether process `pid` of this host may be the one that last wrote a file at `mtime`: it
/// exists and started no later than that. A PID reused by a later process (a new pod's cairn
/// often gets the PID the killed one had) is not the writer.
fn may_be_writer(pid: u32, mtime: SystemTime) -> bool {
    use rustix::process::{Pid, test_kill_process};
    // Signal 0 only checks that the process exists (EPERM: it does, as another user's).
    let exists = match i32::try_from(pid).map(Pid::from_raw) {
        Ok(Some(p)) => matches!(test_kill_process(p), Ok(()) | Err(rustix::io::Errno::PERM)),
        // PID 0: `kill(0, 0)` asked about our own process group, which exists.
        Ok(None) => true,
        // Beyond any PID a process can have.
        Err(_) => false,
    };
    if !exists {
        return false;
    }
    match process_start(pid) {
        Some(start) => start <= mtime + Duration::from_secs(1),
        None => true, // cannot tell: keep the file
    }
}

/// When process `pid` started, from `/proc` (field 22 of its stat, in clock ticks since boot).
fn process_start(pid: u32) -> Option<SystemTime> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces: count fields after the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    // SAFETY: sysconf has no preconditions. Kept on libc: rustix's `clock_ticks_per_second`
    // reads the aux vector from /proc and panics where it cannot; sysconf cannot fail.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&h| h > 0)?;
    Some(
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(boot)
            + Duration::from_millis(ticks * 1000 / hz),
    )
}

/// Removes dead writers' temporary files below `dir` that were last written before `cutoff`,
/// then `dir` itself if it is empty (never the root). Returns whether `dir` is gone.
pub(super) fn clean_dir(
    dir: &Path,
    root: &Path,
    cutoff: SystemTime,
    out: &mut Cleaned,
) -> Result<bool> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    let mut removed = false;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let ft = ent
            .file_type()
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if ft.is_dir() && !name.starts_with('.') {
            removed |= clean_dir(&ent.path(), root, cutoff, out)?;
            continue;
        }
        let Some(pid) = temp_pid(&name).filter(|_| ft.is_file()) else {
            continue;
        };
        let Ok(md) = ent.metadata() else { continue };
        let Ok(mtime) = md.modified() else { continue };
        if mtime > cutoff || may_be_writer(pid, mtime) {
            continue;
        }
        match fs::remove_file(ent.path()) {
            Ok(()) => {
                removed = true;
                out.objects += 1;
                out.bytes += md.len();
                tracing::info!(file = %ent.path().display(), bytes = md.len(), "removed a dead writer's temporary file");
            }
            Err(e) if e.kind() == IoKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", ent.path().display()), e)),
        }
    }
    // An empty folder goes whatever its age: a kill between removing a folder's last object
    // and the folder itself leaves one that no listing shows. It holds no data, and writers
    // recreate a folder that vanishes under them.
    if dir != root && fs::remove_dir(dir).is_ok() {
        sync_dir(dir.parent().expect("below root"))?;
        return Ok(true);
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(false)
}
