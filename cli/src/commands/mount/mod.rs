//! `cairn mount MOUNTPOINT`: the snapshots and the daily archives as a read-only FUSE file
//! system until unmounted (`fusermount3 -u`), interrupted or terminated, each of which
//! unmounts cleanly. No state lock is held, so the nightly job, a gc and other readers run
//! beside it. The model is the engine's `browse`; `fs` adapts it to `fuser`.

mod fs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_engine::browse::{Browser, Sources};
use cairn_engine::catalog::Catalog;
use cairn_engine::config::Config;
use cairn_engine::setup::open_store;
use cairn_engine::{Error, ErrorKind};
use clap::Args;

use super::session::{ReadSession, read_session};
use crate::{Cli, exit};

#[derive(Debug, Args)]
pub struct MountArgs {
    /// An existing, empty directory to mount on.
    mountpoint: PathBuf,
    /// Only `archives/`: the daily archives, read from the exports location alone (no
    /// repository, no state directory needed).
    #[arg(long, conflicts_with = "no_archives")]
    archives_only: bool,
    /// No `archives/` (the exports location is not opened).
    #[arg(long)]
    no_archives: bool,
    /// Let other users read the mount (FUSE's `allow_other`: root, or `user_allow_other` in
    /// /etc/fuse.conf); the kernel then checks each file's stored mode and owner.
    #[arg(long)]
    allow_other: bool,
    /// Threads serving the kernel's requests.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
}

/// Refuses, in one line, a machine without FUSE: no `device` (`/dev/fuse`), or, for a user
/// other than root, no `fusermount3` on `path_var` to mount with.
fn check_fuse(device: &Path, is_root: bool, path_var: Option<&std::ffi::OsStr>) -> Result<()> {
    if !device.exists() {
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "FUSE is not available: {} is missing (load the fuse module, or give the container the device)",
                device.display()
            ),
        )
        .into());
    }
    let found = |cmd: &str| {
        path_var.is_some_and(|p| std::env::split_paths(p).any(|d| d.join(cmd).is_file()))
    };
    if !is_root && !found("fusermount3") && !found("fusermount") {
        return Err(Error::new(
            ErrorKind::Unavailable,
            "FUSE is not available: fusermount3 is not on PATH (install Debian's fuse3)",
        )
        .into());
    }
    Ok(())
}

/// Refuses, in one line, a machine without FUSE and a mount point that is not a free, empty
/// directory outside cairn's own state, store and exports (a mount over them would hide them
/// from the mount itself and from the nightly job).
fn check_mountpoint(path: &Path, cfg: &Config) -> Result<PathBuf> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let is_root = unsafe { libc::geteuid() == 0 };
    check_fuse(
        Path::new("/dev/fuse"),
        is_root,
        std::env::var_os("PATH").as_deref(),
    )?;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("mount point {}", path.display()), e))?;
    if !meta.is_dir() {
        return Err(
            Error::usage(format!("mount point {} is not a directory", path.display())).into(),
        );
    }
    let abs = std::fs::canonicalize(path)
        .map_err(|e| Error::io(format!("mount point {}", path.display()), e))?;
    if is_mounted(&abs) {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "mount point {} is busy: something is mounted there (fusermount3 -u {} unmounts a cairn mount)",
                abs.display(),
                abs.display()
            ),
        )
        .into());
    }
    let mut own = vec![("state.dir", Some(cfg.state.dir.clone()))];
    own.push(("store.path", cfg.store.path.clone()));
    own.push(("exports.path", cfg.exports.path.clone()));
    for (key, p) in own {
        if let Some(p) = p.and_then(|p| std::fs::canonicalize(p).ok())
            && p.starts_with(&abs)
        {
            return Err(Error::usage(format!(
                "mount point {} holds cairn's own {key} ({}): mount elsewhere",
                abs.display(),
                p.display()
            ))
            .into());
        }
    }
    let empty = std::fs::read_dir(&abs)
        .map_err(|e| Error::io(format!("mount point {}", abs.display()), e))?
        .next()
        .is_none();
    if !empty {
        return Err(Error::usage(format!(
            "mount point {} is not empty: its files would be hidden while it is mounted",
            abs.display()
        ))
        .into());
    }
    Ok(abs)
}

/// Whether `abs` is a mount point now (in this process's mount table).
fn is_mounted(abs: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = abs.to_string_lossy();
    table.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| unescape_mountinfo(m) == want)
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as octal escapes.
fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The repository with a catalog opened read-only, as the read-only commands open it
/// ([`read_session`]); when this state volume had none, the session built it under the state
/// lock, which is let go here and the catalog opened again read-only before the mount begins.
fn repo_source(cfg: &Config) -> Result<(cairn_engine::repo::Repository, PathBuf, Catalog)> {
    let ReadSession {
        repo,
        catalog,
        _lock,
    } = read_session(cfg)?;
    let dir = cfg.state.dir.clone();
    if _lock.is_none() {
        return Ok((repo, dir, catalog));
    }
    drop((catalog, _lock));
    let c = Catalog::open_reader(&dir, &repo)?
        .ok_or_else(|| Error::new(ErrorKind::Catalog, "the catalog just built does not open"))?;
    Ok((repo, dir, c))
}

/// Blocks the stopping signals in this thread, before any other of this command exists, so that
/// every thread inherits the mask and they are taken only by the wait below.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set; pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits up to `d` for one of the signals in `set`.
fn wait_signal(set: &libc::sigset_t, d: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    };
    // SAFETY: `set` is initialised; a null info pointer is allowed.
    let s = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (s > 0).then_some(s)
}

pub(super) fn run_mount(cli: &Cli, cfg: &Config, a: &MountArgs) -> Result<u8> {
    // Before any store is opened: an S3 store starts threads, which must inherit the mask, or
    // a signal taken by one of them would end the process with the file system still mounted.
    let set = block_stop_signals();
    let mountpoint = check_mountpoint(&a.mountpoint, cfg)?;
    let repo = if a.archives_only {
        None
    } else {
        Some(repo_source(cfg)?)
    };
    let exports = if a.no_archives {
        None
    } else {
        match open_store(&cfg.exports, "exports", false) {
            Ok(s) => Some(s),
            Err(e) if !a.archives_only => {
                tracing::warn!(error = %e, "the exports location does not open; mounting without archives/");
                None
            }
            Err(e) => return Err(anyhow::Error::from(e).context("opening the exports location")),
        }
    };
    // SAFETY: getuid/getgid have no preconditions.
    let owner = unsafe { (libc::getuid(), libc::getgid()) };
    let browser = Browser::new(Sources { repo, exports }, owner)?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("cairn".into()),
        fuser::MountOption::Subtype("cairn".into()),
        fuser::MountOption::RO,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoAtime,
        fuser::MountOption::DefaultPermissions,
    ];
    if a.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(usize::from(a.threads));
    let session = fuser::spawn_mount(fs::CairnFs { browser }, &mountpoint, &config)
        .map_err(|e| mount_error(&mountpoint, e))?;
    if !cli.quiet {
        eprintln!(
            "cairn: mounted at {}; Ctrl-C, SIGTERM or `fusermount3 -u {}` unmounts",
            mountpoint.display(),
            mountpoint.display()
        );
    }
    tracing::info!(mountpoint = %mountpoint.display(), "mounted");
    loop {
        if let Some(sig) = wait_signal(&set, Duration::from_millis(500)) {
            tracing::info!(signal = sig, "unmounting");
            if let Err(e) = session.umount_and_join() {
                // Busy (a shell inside it): detach it, so that no dead mount stays behind.
                tracing::warn!(error = %e, "unmounting failed; detaching the mount instead");
                detach(&mountpoint)
                    .with_context(|| format!("unmounting {}", mountpoint.display()))?;
            }
            break;
        }
        if session.guard.is_finished() {
            // Unmounted from outside (`fusermount3 -u`, `umount`).
            session
                .join()
                .with_context(|| format!("serving {}", mountpoint.display()))?;
            break;
        }
    }
    tracing::info!(mountpoint = %mountpoint.display(), "unmounted");
    Ok(exit::OK)
}

/// Detaches the mount at `path` (`umount -l`, or `fusermount3 -u -z` for a user other than
/// root): it goes away as soon as nothing uses it.
fn detach(path: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path; umount2 has no other preconditions.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let st = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(path)
        .status()
        .context("running fusermount3 -u -z")?;
    anyhow::ensure!(st.success(), "fusermount3 -u -z failed ({st})");
    Ok(())
}

/// A mount that failed, in one line naming the mount point.
fn mount_error(mountpoint: &Path, e: std::io::Error) -> anyhow::Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Io,
    };
    Error::new(kind, format!("mounting on {}: {e}", mountpoint.display())).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_fuse_is_refused_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_fuse(&dir.path().join("fuse"), true, None).unwrap_err();
        let line = crate::one_line(&e);
        assert!(line.starts_with("FUSE is not available: "), "{line}");
        assert!(
            line.contains("/fuse is missing") && !line.contains('\n'),
            "{line}"
        );
        // The device, but no fusermount3 for a user other than root.
        std::fs::write(dir.path().join("fuse"), b"").unwrap();
        let e = check_fuse(
            &dir.path().join("fuse"),
            false,
            Some(dir.path().as_os_str()),
        )
        .unwrap_err();
        assert!(crate::one_line(&e).contains("fusermount3 is not on PATH"));
        std::fs::write(dir.path().join("fusermount3"), b"").unwrap();
        check_fuse(
            &dir.path().join("fuse"),
            false,
            Some(dir.path().as_os_str()),
        )
        .unwrap();
        check_fuse(&dir.path().join("fuse"), true, None).unwrap();
    }

    #[test]
    fn mountinfo_escapes_are_read_back() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b\\134c"), "/mnt/a b\\c");
    }
}
