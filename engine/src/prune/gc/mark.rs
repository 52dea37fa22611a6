//! Marking: every tree and chunk reachable from the snapshots is live; a tree the catalog no
//! longer knows is looked for in the condemned packs, and a condemned pack found to hold what a
//! snapshot needs is taken back (revived) before anything is judged due.

use std::collections::{HashMap, HashSet};

use crate::catalog::Catalog;
use crate::error::{ErrorKind, Result};
use crate::format::pack::{BlobKind, PackEntry};
use crate::id::Id;
use crate::read::walk::Descend;
use crate::repo::Repository;
use crate::repo::condemn::{self, Marker};
use crate::repo::index::BlobLocation;

/// What is live: every tree and chunk reachable from the snapshots walked so far.
#[derive(Debug, Default)]
pub(super) struct Live {
    pub(super) trees: HashSet<Id>,
    pub(super) chunks: HashSet<Id>,
    pub(super) walked: HashSet<Id>,
    /// Snapshots not to walk (see [`GcOptions::assume_forgotten`]).
    pub(super) skip: HashSet<Id>,
}

impl Live {
    pub(super) fn contains(&self, kind: BlobKind, id: &Id) -> bool {
        match kind {
            BlobKind::Data => self.chunks.contains(id),
            BlobKind::Tree => self.trees.contains(id),
        }
    }

    /// Marks everything below the snapshots of `catalog` not walked yet. Trees are walked once
    /// however many snapshots share them, with an explicit stack (no recursion). A tree the
    /// catalog does not know is looked for in the condemned packs: a backup that ran beside the
    /// marking may have committed a snapshot whose new tree pack was condemned as unreferenced.
    pub(super) fn mark(
        &mut self,
        repo: &Repository,
        catalog: &Catalog,
        condemned: &mut Condemned<'_>,
    ) -> Result<()> {
        let snapshots = catalog.snapshots()?;
        let meter = crate::progress::meter();
        meter.begin(
            "marking what snapshots use",
            "snapshots",
            Some(snapshots.len() as u64),
            None,
            &[],
        );
        for (sid, snap) in snapshots {
            meter.items(1);
            if self.skip.contains(&sid) || !self.walked.insert(sid) {
                continue;
            }
            if !self.trees.insert(snap.root) {
                continue;
            }
            // The one walk every reader uses, so gc refuses exactly what they refuse; a tree
            // shared with a snapshot walked before is not walked again.
            let (trees, chunks) = (&mut self.trees, &mut self.chunks);
            crate::read::walk::walk(
                &snap.root,
                b"",
                &mut |tree, _| match crate::read::load_tree(repo, catalog, tree) {
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        match condemned.find(BlobKind::Tree, tree)? {
                            Some(loc) => crate::format::tree::Tree::decode(&repo.read_blob(
                                BlobKind::Tree,
                                tree,
                                &loc,
                            )?),
                            None => Err(e),
                        }
                    }
                    t => t,
                },
                &mut |_, e| {
                    chunks.extend(e.chunks.iter().copied());
                    Ok(match crate::read::walk::subtree(e) {
                        Some(sub) if trees.insert(*sub) => Descend::Into,
                        _ => Descend::Skip,
                    })
                },
            )
            .map_err(|e| {
                e.context(format!(
                    "gc stopped: snapshot {} cannot be walked (cairn check names the damage)",
                    sid.short()
                ))
            })?;
        }
        Ok(())
    }
}

/// The condemned packs still in the store, whose indexes are read (one ranged read each) only
/// when a tree is missing from the catalog; a pack a live tree is found in is revived.
pub(super) struct Condemned<'a> {
    repo: &'a Repository,
    packs: Vec<(Id, u64)>,
    index: Option<HashMap<(BlobKind, Id), (Id, PackEntry)>>,
    entries: HashMap<Id, (u64, Vec<PackEntry>)>,
    pub(super) revived: HashSet<Id>,
}

impl<'a> Condemned<'a> {
    pub(super) fn new(repo: &'a Repository, packs: Vec<(Id, u64)>) -> Condemned<'a> {
        Condemned {
            repo,
            packs,
            index: None,
            entries: HashMap::new(),
            revived: HashSet::new(),
        }
    }

    /// Where a blob is in a condemned pack, if it is; that pack is then revived.
    pub(super) fn find(&mut self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        if self.index.is_none() {
            let mut index = HashMap::new();
            for (pack, size) in &self.packs {
                let entries = match self.repo.read_pack_index(pack, *size) {
                    Ok(e) => e,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => {
                        tracing::warn!(pack = %pack, error = %e, "the index of a condemned pack cannot be read");
                        continue;
                    }
                };
                for e in &entries {
                    index.entry((e.kind, e.id)).or_insert((*pack, *e));
                }
                self.entries.insert(*pack, (*size, entries));
            }
            self.index = Some(index);
        }
        let found = self
            .index
            .as_ref()
            .and_then(|i| i.get(&(kind, *id)).copied());
        Ok(found.map(|(pack, e)| {
            self.revived.insert(pack);
            BlobLocation::of(pack, &e)
        }))
    }

    /// Takes the revived packs back: their markers go and the catalog indexes them again.
    pub(super) fn revive(&self, store: &dyn crate::store::Store, catalog: &Catalog) -> Result<()> {
        for pack in &self.revived {
            tracing::info!(pack = %pack, "a condemned pack holds a tree a snapshot needs; taking it back");
            condemn::remove(store, pack)?;
            if let Some((size, entries)) = self.entries.get(pack) {
                catalog.add_pack(pack, *size, entries)?;
            }
        }
        Ok(())
    }
}

/// The condemned packs still in the store, with their sizes.
pub(super) fn condemned_in(
    markers: &HashMap<Id, Marker>,
    in_store: &HashMap<Id, u64>,
) -> Vec<(Id, u64)> {
    markers
        .keys()
        .filter_map(|p| in_store.get(p).map(|s| (*p, *s)))
        .collect()
}

/// The condemned packs in `markers` that a live blob needs: it has no copy the catalog knows
/// elsewhere (the catalog forgot condemned packs). Reads each one's index (one ranged read).
pub(super) fn review(
    repo: &Repository,
    catalog: &Catalog,
    live: &Live,
    markers: &[&Marker],
    in_store: &HashMap<Id, u64>,
) -> Result<Review> {
    let mut r = Review::default();
    for m in markers {
        let entries = match repo.read_pack_index(&m.pack, in_store[&m.pack]) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                // Not deleted while unknown: it may hold what a snapshot needs.
                tracing::warn!(pack = %m.pack, error = %e, "the index of a condemned pack cannot be read; keeping the pack (cairn check reports it)");
                r.kept.insert(m.pack);
                continue;
            }
        };
        for e in &entries {
            // No copy the catalog can use (none, or only a damaged one).
            if live.contains(e.kind, &e.id) && !catalog.contains(e.kind, &e.id)? {
                tracing::info!(pack = %m.pack, blob = %e.id, "a condemned pack is needed by a snapshot; taking it back");
                r.revived.insert(m.pack);
                break;
            }
        }
    }
    Ok(r)
}

/// What [`review`] found among condemned packs.
#[derive(Debug, Default)]
pub(super) struct Review {
    /// Needed by a snapshot: taken back.
    pub(super) revived: HashSet<Id>,
    /// Their index cannot be read: neither deleted nor taken back.
    pub(super) kept: HashSet<Id>,
}
