//! What a snapshot restore will do, computed from the trees alone: the directories to make, the
//! files to write, the second names of hardlinked files, symlinks and special files, and the
//! bytes. Planning touches no target, so a dry run prints exactly this value and an execution
//! ([`super::snapshot::execute`]) only carries it out; a crafted snapshot is refused before
//! anything is written.

use serde::Serialize;

use super::file::FileJob;
use super::target::{components, show};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Entry, EntryKind};
use crate::read::walk::{Descend, walk};
use crate::read::{HardlinkGroups, find_entry, load_tree};
use crate::repo::Repository;

/// A path as checked components.
pub(super) type Parts = Vec<Vec<u8>>;

/// A restore's plan, in tree order within each kind of entry.
#[derive(Debug, Default)]
pub struct RestorePlan {
    /// Parents of the requested paths, made first (empty for a whole snapshot).
    pub(super) roots: Vec<Parts>,
    pub(super) dirs: Vec<(Parts, Entry)>,
    pub(super) files: Vec<FileJob>,
    /// A second name of a file, and the first name it links to.
    pub(super) links: Vec<(Parts, Entry, Parts)>,
    pub(super) symlinks: Vec<(Parts, Entry)>,
    pub(super) specials: Vec<(Parts, Entry)>,
}

/// The plan in numbers, as a dry run reports it and as an execution must match it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    /// Directories made (the requested ones and everything below).
    pub dirs: u64,
    /// Files whose content is written (first names of hardlinked files included).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Second names of hardlinked files.
    pub hardlinks: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Fifos, device nodes and sockets (sockets are skipped, as are devices when not root).
    pub specials: u64,
}

impl RestorePlan {
    /// Plans `snap`, or the entries at `paths` inside it (and everything below them).
    pub fn new(
        repo: &Repository,
        catalog: &Catalog,
        snap: &Snapshot,
        paths: &[String],
    ) -> Result<RestorePlan> {
        let mut plan = RestorePlan::default();
        let mut groups = HardlinkGroups::new();
        if paths.is_empty() {
            plan.walk_below(repo, catalog, &snap.root, b"", &mut groups)?;
            return Ok(plan);
        }
        for p in paths {
            let parts = components(p.as_bytes())?;
            let e = find_entry(repo, catalog, &snap.root, p.as_bytes())?;
            let parent = parts[..parts.len() - 1].to_vec();
            plan.roots.push(parent.clone());
            let path = parts.join(&b'/');
            let sub = crate::read::walk::subtree(&e).copied();
            plan.add(parent, e, &mut groups);
            if let Some(sub) = sub {
                plan.walk_below(repo, catalog, &sub, &path, &mut groups)?;
            }
        }
        Ok(plan)
    }

    /// Plans every entry below the tree `root`, whose own path is `prefix`.
    fn walk_below(
        &mut self,
        repo: &Repository,
        catalog: &Catalog,
        root: &crate::Id,
        prefix: &[u8],
        groups: &mut HardlinkGroups<Parts>,
    ) -> Result<()> {
        walk(
            root,
            prefix,
            &mut |id, _| load_tree(repo, catalog, id),
            &mut |path, e| {
                let mut parent: Parts = path.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
                parent.pop();
                self.add(parent, e.clone(), groups);
                Ok(Descend::Into)
            },
        )
    }

    fn add(&mut self, parent: Parts, e: Entry, groups: &mut HardlinkGroups<Parts>) {
        match e.kind {
            EntryKind::Dir => self.dirs.push((parent, e)),
            EntryKind::File => {
                let mut path = parent.clone();
                path.push(e.name.0.clone());
                let folder = path[0].clone();
                match groups.link_to(&folder, &e, || path) {
                    Some(first) => self.links.push((parent, e, first)),
                    None => self.files.push(FileJob { parent, entry: e }),
                }
            }
            EntryKind::Symlink => self.symlinks.push((parent, e)),
            _ => self.specials.push((parent, e)),
        }
    }

    /// The plan in numbers.
    pub fn summary(&self) -> PlanSummary {
        PlanSummary {
            dirs: self.dirs.len() as u64,
            files: self.files.len() as u64,
            bytes: self.files.iter().map(|f| f.entry.size).sum(),
            hardlinks: self.links.len() as u64,
            symlinks: self.symlinks.len() as u64,
            specials: self.specials.len() as u64,
        }
    }

    /// Every path the plan makes, relative to the target, with its kind, in plan order.
    pub fn paths(&self) -> Vec<(String, EntryKind)> {
        let name = |parent: &Parts, e: &Entry| {
            let mut p = parent.clone();
            p.push(e.name.0.clone());
            (show(&p), e.kind)
        };
        let mut out: Vec<(String, EntryKind)> = Vec::new();
        out.extend(self.dirs.iter().map(|(p, e)| name(p, e)));
        out.extend(self.files.iter().map(|f| name(&f.parent, &f.entry)));
        out.extend(self.links.iter().map(|(p, e, _)| name(p, e)));
        out.extend(self.symlinks.iter().map(|(p, e)| name(p, e)));
        out.extend(self.specials.iter().map(|(p, e)| name(p, e)));
        out
    }
}
