//! The state volume: the directory the catalog lives in must be writable and have room to grow.

use std::path::{Path, PathBuf};

use super::finding::{Finding, Status, finding};

/// Below this much free space on the state volume the night fails: the catalog cannot grow.
const STATE_FAIL_BYTES: u64 = 64 << 20;
/// Below this much free space (or 5% of the volume) it is a warning.
const STATE_WARN_BYTES: u64 = 1 << 30;

/// The state directory: writable (a temporary file made and removed) and with room to grow.
pub(super) fn state_dir(dir: &Path) -> Finding {
    let check = "state";
    // The first night's directory may not exist yet: the run makes it inside its parent.
    let existing: PathBuf = if dir.exists() {
        dir.to_path_buf()
    } else {
        match dir.parent() {
            Some(p) if p.is_dir() => p.to_path_buf(),
            _ => {
                return finding(
                    check,
                    Status::Fail,
                    format!(
                        "{} does not exist, nor its parent (state.dir)",
                        dir.display()
                    ),
                );
            }
        }
    };
    if let Err(e) = tempfile::tempfile_in(&existing) {
        return finding(
            check,
            Status::Fail,
            format!("{} is not writable ({e}) (state.dir)", existing.display()),
        );
    }
    let Some((free, total)) = free_space(&existing) else {
        return finding(
            check,
            Status::Warn,
            format!("{}: free space unknown", existing.display()),
        );
    };
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    let text = format!(
        "{}: {} free of {}",
        existing.display(),
        gib(free),
        gib(total)
    );
    if free < STATE_FAIL_BYTES {
        finding(
            check,
            Status::Fail,
            format!("{text}: the catalog cannot grow; enlarge the state volume"),
        )
    } else if free < STATE_WARN_BYTES || free < total / 20 {
        finding(
            check,
            Status::Warn,
            format!("{text}: nearly full; enlarge the state volume"),
        )
    } else {
        finding(check, Status::Ok, text)
    }
}

/// Free and total bytes of the filesystem that holds `dir`, if it says.
fn free_space(dir: &Path) -> Option<(u64, u64)> {
    // A path with a NUL fails the call (`EINVAL`): `None`, as before.
    let st = rustix::fs::statvfs(dir).ok()?;
    let block = st.f_frsize;
    Some((st.f_bavail * block, st.f_blocks * block))
}
