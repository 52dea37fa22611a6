//! The repository side of the mount: the catalog as the last backup left it, opened without
//! the state lock and opened again when it may have moved on (every few seconds at most when
//! the snapshot folders are looked at, and at once when a read finds a pack gone, which a gc
//! beside the mount repacked), and the names of the snapshots.
//!
//! Names: a snapshot is `snapshots/DATE` when it is its day's only one; when a day has several,
//! each is `DATE` + `T` + its UTC time to the second (and its short id if two share a second),
//! so a name never changes meaning when a later snapshot of another day arrives. `ids/` holds
//! each by its short id (8 hex digits, the whole id where two share those). `latest` is a
//! symlink to the newest by time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use crate::repo::Repository;

/// The least time between two openings of the catalog.
const REOPEN_AT_MOST: Duration = Duration::from_secs(1);

/// How long a listing of the snapshots is shown before the catalog is looked at again.
const FRESH_FOR: Duration = Duration::from_secs(5);

/// One snapshot as the mount shows it.
#[derive(Debug, Clone)]
pub(super) struct Shown {
    pub(super) id: Id,
    pub(super) root: Id,
    /// When it was taken: seconds and nanoseconds since the epoch.
    pub(super) time: (i64, u32),
}

/// The snapshots by name and by id, sorted by name.
#[derive(Debug, Default)]
pub(super) struct SnapList {
    pub(super) by_name: Vec<(String, Shown)>,
    pub(super) by_id: Vec<(String, Shown)>,
    /// The newest one's name in `by_name`.
    pub(super) latest: Option<String>,
}

impl SnapList {
    fn of(all: Vec<(Id, crate::format::snapshot::Snapshot)>) -> SnapList {
        let shown = |id: &Id, s: &crate::format::snapshot::Snapshot| {
            let t = s.time.parse::<jiff::Timestamp>().ok();
            Shown {
                id: *id,
                root: s.root,
                time: t.map_or((0, 0), |t| (t.as_second(), t.subsec_nanosecond() as u32)),
            }
        };
        let mut per_day: HashMap<&str, usize> = HashMap::new();
        for (_, s) in &all {
            *per_day.entry(s.date.as_str()).or_default() += 1;
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut by_name: Vec<(String, Shown)> = all
            .iter()
            .map(|(id, s)| {
                // A date that could not be a file name (a crafted snapshot's) shows the id.
                let name = if !usable_name(&s.date) {
                    id.short()
                } else if per_day[s.date.as_str()] == 1 {
                    s.date.clone()
                } else {
                    let utc = s
                        .time
                        .parse::<jiff::Timestamp>()
                        .map(|t| t.strftime("%H:%M:%SZ").to_string())
                        .unwrap_or_else(|_| id.short());
                    format!("{}T{utc}", s.date)
                };
                *names.entry(name.clone()).or_default() += 1;
                (name, shown(id, s))
            })
            .collect();
        for (name, sh) in &mut by_name {
            if names[name.as_str()] > 1 {
                *name = format!("{name}-{}", sh.id.short());
            }
        }
        // `all` is oldest first: the last one is the newest.
        let latest = by_name.last().map(|(n, _)| n.clone());
        let mut shorts: HashMap<String, usize> = HashMap::new();
        for (id, _) in &all {
            *shorts.entry(id.short()).or_default() += 1;
        }
        let mut by_id: Vec<(String, Shown)> = all
            .iter()
            .map(|(id, s)| {
                let name = if shorts[&id.short()] == 1 {
                    id.short()
                } else {
                    id.to_hex()
                };
                (name, shown(id, s))
            })
            .collect();
        by_name.sort_by(|a, b| a.0.cmp(&b.0));
        by_id.sort_by(|a, b| a.0.cmp(&b.0));
        SnapList {
            by_name,
            by_id,
            latest,
        }
    }

    /// The snapshot named `name` in one of the two lists.
    pub(super) fn find<'a>(list: &'a [(String, Shown)], name: &[u8]) -> Option<&'a Shown> {
        let i = list
            .binary_search_by(|(n, _)| n.as_bytes().cmp(name))
            .ok()?;
        Some(&list[i].1)
    }
}

/// Whether `name` can be a name in a folder: not empty, `.` or `..`, no `/` or NUL, at most
/// 255 bytes (the kernel refuses a whole listing over one bad name).
fn usable_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 200
        && !name.contains(['/', '\0'])
}

/// The repository, its catalog and the snapshots' names.
pub(super) struct RepoSide {
    pub(super) repo: Repository,
    state_dir: PathBuf,
    catalog: RwLock<Arc<Catalog>>,
    list: Mutex<(Instant, Arc<SnapList>)>,
    /// When the catalog was last opened: at most once a second, however many reads fail.
    opened: Mutex<Instant>,
}

impl std::fmt::Debug for RepoSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoSide")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl RepoSide {
    /// Over a catalog opened with [`Catalog::open_reader`] from `state_dir`.
    pub(super) fn new(repo: Repository, state_dir: PathBuf, catalog: Catalog) -> Result<RepoSide> {
        let list = SnapList::of(catalog.snapshots()?);
        Ok(RepoSide {
            repo,
            state_dir,
            catalog: RwLock::new(Arc::new(catalog)),
            list: Mutex::new((Instant::now(), Arc::new(list))),
            opened: Mutex::new(
                Instant::now()
                    .checked_sub(REOPEN_AT_MOST)
                    .unwrap_or_else(Instant::now),
            ),
        })
    }

    /// The catalog now.
    pub(super) fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().expect("catalog").clone()
    }

    /// Opens the catalog again, as the last backup, gc or catalog sync on this state volume
    /// left it; keeps the one held if it cannot be opened (it is being rebuilt).
    pub(super) fn reopen(&self) {
        // Held while opening: a reader that failed beside one reopening waits for it and then
        // reads over the new catalog, instead of finding the reopening "too recent".
        let mut opened = self.opened.lock().expect("catalog opened");
        if opened.elapsed() < REOPEN_AT_MOST {
            return;
        }
        match Catalog::open_reader(&self.state_dir, &self.repo) {
            Ok(Some(c)) => *self.catalog.write().expect("catalog") = Arc::new(c),
            Ok(None) => tracing::debug!("the catalog cannot be reopened now; keeping the one held"),
            Err(e) => {
                tracing::warn!(error = %e, "reopening the catalog failed; keeping the one held")
            }
        }
        *opened = Instant::now();
    }

    /// The snapshots, looked for again in a reopened catalog when the list is older than a few
    /// seconds.
    pub(super) fn list(&self) -> Result<Arc<SnapList>> {
        let mut held = self.list.lock().expect("snapshot list");
        if held.0.elapsed() >= FRESH_FOR {
            self.reopen();
            held.1 = Arc::new(SnapList::of(self.catalog().snapshots()?));
            held.0 = Instant::now();
        }
        Ok(held.1.clone())
    }

    /// `read` over the catalog; once more over a reopened catalog when it fails with
    /// `NotFound` (a pack a gc beside the mount deleted after moving its blobs) or in the
    /// catalog itself (a file of it that the job writing it compacted away).
    pub(super) fn with_catalog<T>(
        &self,
        read: impl Fn(&Repository, &Catalog) -> Result<T>,
    ) -> Result<T> {
        match read(&self.repo, &self.catalog()) {
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Catalog) => {
                tracing::info!(error = %e, "a read found something gone; reading again over the catalog as it is now");
                self.reopen();
                read(&self.repo, &self.catalog())
            }
            other => other,
        }
    }
}

/// A one-line error for a node the kernel should not ask about.
pub(super) fn gone(what: &str) -> Error {
    Error::not_found(format!("{what} is not in the mount"))
}
