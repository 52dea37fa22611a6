//! The share, read as the backup would read it: each configured folder is sampled breadth
//! first, bounded whatever its size, and the first directory or file this process may not read
//! is named with its owner and mode.

use std::collections::VecDeque;
use std::fs::DirEntry;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::finding::{Finding, Status, finding};
use crate::backup::scan::Excludes;
use crate::config::Config;

/// Directories of each source folder listed, breadth first: enough to find a share whose files
/// belong to another user, bounded whatever its size.
pub const DIRS_PER_FOLDER: usize = 1000;
/// Regular files opened in each listed directory (the first by name).
pub const FILES_PER_DIR: usize = 8;
/// Files opened in each source folder in all.
pub const OPENS_PER_FOLDER: usize = 4000;
/// Names read of one directory: a directory of millions costs no more than this.
const MAX_LISTING: usize = 100_000;

/// One finding per configured source folder, in their order: an absent folder that may be
/// absent is fine, every other one is sampled ([`source_folder`]).
pub(super) fn source_folders(cfg: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let who = Identity::current();
    let excludes = Excludes::new(&cfg.source.exclude);
    for folder in &cfg.source.folders {
        let optional = cfg.source.optional_folders.contains(folder);
        let absent = std::fs::symlink_metadata(cfg.source.root.join(folder))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        if optional && absent {
            out.push(finding(
                format!("source {folder}"),
                Status::Ok,
                "absent, and source.optional_folders allows it",
            ));
            continue;
        }
        out.push(match &excludes {
            Ok(ex) => source_folder(&cfg.source.root, folder, ex, &who),
            Err(e) => finding(format!("source {folder}"), Status::Fail, e.to_string()),
        });
    }
    out
}

/// The uid, gid and supplementary groups a check of readability is made as.
pub(super) struct Identity {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl Identity {
    pub(super) fn current() -> Identity {
        use rustix::process::{getegid, geteuid, getgroups};
        let groups = getgroups().unwrap_or_default();
        Identity {
            uid: geteuid().as_raw(),
            gid: getegid().as_raw(),
            groups: groups.into_iter().map(|g| g.as_raw()).collect(),
        }
    }

    fn describe(&self) -> String {
        let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
        format!(
            "uid {} (gid {}, groups {})",
            self.uid,
            self.gid,
            if groups.is_empty() {
                "none".to_string()
            } else {
                groups.join(",")
            }
        )
    }
}

/// A bounded breadth-first sample of `folder`, as the backup would read it: up to
/// [`DIRS_PER_FOLDER`] directories listed (every subdirectory of a listed one is queued, so a
/// top level of thousands of photos does not hide the folders below it), in each the first
/// [`FILES_PER_DIR`] regular files opened for reading (by name), at most [`OPENS_PER_FOLDER`] in
/// all. The first that cannot be is named with its owner and mode, or, when not even its
/// metadata can be read, the directory that may not be entered.
pub(super) fn source_folder(
    root: &Path,
    folder: &str,
    excludes: &Excludes,
    who: &Identity,
) -> Finding {
    let check = format!("source {folder}");
    let top = root.join(folder);
    match std::fs::symlink_metadata(&top) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return finding(
                check,
                Status::Fail,
                format!("{} is not a directory", top.display()),
            );
        }
        Err(e) => {
            return finding(
                check,
                Status::Fail,
                format!(
                    "{} cannot be read ({e}); source.folders names it",
                    top.display()
                ),
            );
        }
    }
    let mut sample = Sample {
        root,
        excludes,
        queue: VecDeque::from([top]),
        dirs: 0,
        opened: 0,
        queued: 1,
    };
    if let Err((path, e)) = sample.read_all() {
        return unreadable(check, root, who, &path, &e);
    }
    let Sample {
        dirs,
        opened,
        queued,
        ..
    } = sample;
    finding(
        check,
        Status::Ok,
        format!(
            "{dirs} directories listed and {opened} files opened{}, all readable by {}",
            if queued >= DIRS_PER_FOLDER || opened >= OPENS_PER_FOLDER {
                " (a sample: the first, breadth first)"
            } else {
                ""
            },
            who.describe()
        ),
    )
}

/// The breadth-first sample of one folder under way: the directories queued and what was
/// counted so far.
struct Sample<'a> {
    root: &'a Path,
    excludes: &'a Excludes,
    queue: VecDeque<PathBuf>,
    /// Directories listed.
    dirs: usize,
    /// Files opened.
    opened: usize,
    /// Directories queued, the folder itself included.
    queued: usize,
}

impl Sample<'_> {
    /// Lists every queued directory in turn and reads what it holds; stops at the first path
    /// that cannot be read, with why.
    fn read_all(&mut self) -> Result<(), (PathBuf, std::io::Error)> {
        while let Some(dir) = self.queue.pop_front() {
            self.dirs += 1;
            let names = match bounded_listing(&dir) {
                Ok(names) => names,
                Err(e) => return Err((dir, e)),
            };
            self.read_listing(names)?;
        }
        Ok(())
    }

    /// One listed directory: its subdirectories queued while the sample has room, its first
    /// regular files opened and read; excluded entries are passed over.
    fn read_listing(&mut self, names: Vec<DirEntry>) -> Result<(), (PathBuf, std::io::Error)> {
        let mut files_here = 0usize;
        for entry in names {
            let path = entry.path();
            let rel = path.strip_prefix(self.root).unwrap_or(&path);
            if self.excludes.is_excluded(
                entry.file_name().as_encoded_bytes(),
                rel.as_os_str().as_encoded_bytes(),
            ) {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if self.queued < DIRS_PER_FOLDER {
                    self.queued += 1;
                    self.queue.push_back(path);
                }
            } else if kind.is_file() && files_here < FILES_PER_DIR && self.opened < OPENS_PER_FOLDER
            {
                files_here += 1;
                self.opened += 1;
                if let Err(e) = read_first_byte(&path) {
                    return Err((path, e));
                }
            }
        }
        Ok(())
    }
}

/// One directory's names, sorted, bounded: a directory of millions costs no more than this.
fn bounded_listing(dir: &Path) -> std::io::Result<Vec<DirEntry>> {
    let mut names: Vec<DirEntry> = std::fs::read_dir(dir)?
        .take(MAX_LISTING)
        .collect::<std::io::Result<_>>()?;
    names.sort_by_key(|e| e.file_name());
    Ok(names)
}

/// Opens a regular file and reads a byte of it, non-blocking and without following links:
/// opening must not hang or leave.
fn read_first_byte(path: &Path) -> std::io::Result<usize> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .and_then(|mut f| f.read(&mut [0u8; 1]))
}

/// The owner and mode of `path`, if its metadata can be read.
fn owner(path: &Path) -> Option<String> {
    std::fs::symlink_metadata(path).ok().map(|m| {
        format!(
            "owner uid {} gid {}, mode {:04o}",
            m.uid(),
            m.gid(),
            m.mode() & 0o7777
        )
    })
}

/// The failed `check` for `path` below `root`, which `who` could not read (`e`): its owner and
/// mode, or the directory above it that may be listed but not entered.
fn unreadable(
    check: String,
    root: &Path,
    who: &Identity,
    path: &Path,
    e: &std::io::Error,
) -> Finding {
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let detail = match (owner(path), path.parent()) {
        (Some(o), _) => format!(
            "{} is not readable by {} ({}): {o}",
            rel(path),
            who.describe(),
            e.kind()
        ),
        // Not even its metadata: the directory above may be listed but not entered.
        (None, Some(dir)) => format!(
            "{} may be listed but not entered by {} ({}): {}",
            rel(dir),
            who.describe(),
            e.kind(),
            owner(dir).unwrap_or_else(|| "its owner and mode cannot be read".into())
        ),
        (None, None) => format!("{} is not readable ({})", rel(path), e.kind()),
    };
    finding(
        check,
        Status::Fail,
        format!(
            "{detail}; run the pods as a user that can read the share (runAsUser) or add \
             its group (supplementalGroups)"
        ),
    )
}
