//! The configured folders as a whole: each must be a single name that can be opened, entered
//! and listed before anything is read or stored, and each must still have been walked before
//! the snapshot is committed. A folder that fails either check fails the backup
//! ([`FoldersUnreadable`], as the cause of its error), since a night without it would publish
//! an archive that looks complete and is not.

use std::io::ErrorKind as IoKind;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::options::BackupOptions;
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::{Warning, WarningKind};
use crate::format::tree::valid_name;

/// A configured folder that cannot be backed up at all, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderFailure {
    /// The folder, as configured.
    pub folder: String,
    /// The system's error, or what the path is instead of a directory.
    pub error: String,
}

/// The folders that failed a backup, as the cause of its error: the run reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldersUnreadable(pub Vec<FolderFailure>);

impl std::fmt::Display for FoldersUnreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let each: Vec<String> = self
            .0
            .iter()
            .map(|x| format!("{} ({})", x.folder, x.error))
            .collect();
        write!(
            f,
            "source folder{} {} cannot be read: nothing was backed up or published; run as a \
             user that may read the share (the pods' runAsUser or supplementalGroups), or name \
             a folder that may be absent in source.optional_folders",
            if self.0.len() == 1 { "" } else { "s" },
            each.join(", ")
        )
    }
}

impl std::error::Error for FoldersUnreadable {}

impl FoldersUnreadable {
    /// The folders of `err`, if a backup failed for them.
    pub fn of(err: &Error) -> Option<&[FolderFailure]> {
        err.cause()
            .and_then(|s| s.downcast_ref::<FoldersUnreadable>())
            .map(|f| f.0.as_slice())
    }
}

/// The configured folders that cannot be opened, entered and listed (missing, not a directory,
/// no permission, a listing that fails), checked before anything is read or stored: a night
/// without one of them would publish an archive that looks complete and is not. An absent folder
/// in `optional` is fine.
pub fn unreadable_folders(
    root: &Path,
    folders: &[String],
    optional: &[String],
) -> Vec<FolderFailure> {
    let mut out = Vec::new();
    for name in folders {
        let path = root.join(name);
        let problem = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == IoKind::NotFound && optional.contains(name) => None,
            Err(e) => Some(e.to_string()),
            Ok(m) if !m.is_dir() => Some(format!("{} is not a directory", path.display())),
            Ok(_) => listing_problem(&path),
        };
        if let Some(error) = problem {
            out.push(FolderFailure {
                folder: name.clone(),
                error,
            });
        }
    }
    out
}

/// Why the directory at `path` cannot be backed up, if it cannot: it must be searchable (its
/// entries stat-able) and readable by this process's effective ids, and its listing must start.
fn listing_problem(path: &Path) -> Option<String> {
    use rustix::fs::{Access, AtFlags, CWD, accessat};
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    if let Err(e) = accessat(CWD, &c, Access::READ_OK | Access::EXEC_OK, AtFlags::EACCESS) {
        return Some(std::io::Error::from(e).to_string());
    }
    match std::fs::read_dir(path) {
        Err(e) => Some(e.to_string()),
        Ok(mut entries) => match entries.next() {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        },
    }
}

/// The one-line error of a night whose folders cannot all be read (the folders are its cause:
/// [`FoldersUnreadable::of`]).
pub fn folders_error(failed: &[FolderFailure]) -> Error {
    Error::new(ErrorKind::Io, "").with_source(FoldersUnreadable(failed.to_vec()))
}

/// Before the walk: every folder is a single name below the source root, and every one that is
/// not allowed to be absent can be read.
pub(super) fn check_folders(opts: &BackupOptions) -> Result<()> {
    for f in &opts.folders {
        if !valid_name(f.as_bytes()) {
            return Err(Error::config(format!(
                "folder {f:?} must be a single name below the source root"
            )));
        }
    }
    let failed = unreadable_folders(&opts.source_root, &opts.folders, &opts.optional_folders);
    if !failed.is_empty() {
        return Err(folders_error(&failed));
    }
    Ok(())
}

/// After the walk: the configured folders that could not be walked after all (gone since the
/// check, a listing that failed), as the walk's `warnings` name them.
pub(super) fn folders_lost_in_walk(folders: &[String], warnings: &[Warning]) -> Vec<FolderFailure> {
    folders
        .iter()
        .filter_map(|f| {
            warnings
                .iter()
                .find(|w| {
                    &w.path == f
                        && matches!(
                            w.kind,
                            WarningKind::MissingFolder
                                | WarningKind::NotADirectory
                                | WarningKind::Unreadable
                        )
                })
                .map(|w| FolderFailure {
                    folder: f.clone(),
                    error: w.message.clone(),
                })
        })
        .collect()
}
