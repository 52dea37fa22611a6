//! Repository check: is everything every snapshot needs in the store, and intact?
//!
//! Structure (always): every pack's index parses and matches the size the catalog recorded, every
//! snapshot object decodes to its id, every tree a snapshot reaches decodes, every chunk it names
//! is in a known pack. Data (`--read-data`, or a subset of packs): every pack is downloaded, must
//! hash to its name, and every blob in it must decode to its id. Problems name the pack or blob
//! and the snapshots and paths they affect.
//!
//! Damaged blobs that are found are recorded in the damage register ([`crate::repo::damage`]), so the
//! next backup stores them again from the source; a blob whose damaged copy is noted and that has
//! a good copy elsewhere is healed, not a problem. `--repair` also puts back snapshot objects that
//! the catalog still holds intact and moves the others aside (`quarantine/snapshots/<id>`).

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::catalog::{Catalog, SyncReport};
use crate::error::{Error, Result};
use crate::format::pack::{self, BlobKind};
use crate::format::tree::{check_path_len_of, shorten};
use crate::id::Id;
use crate::read::load_tree_through;
use crate::repo::damage::DamagedBlob;
use crate::repo::{Repository, pack_key};
use crate::store::fetch::FetchOptions;

/// Which packs `--read-data` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadData {
    /// Structure only.
    None,
    /// Every pack.
    All,
    /// Part `n` of `m` (1-based): packs whose id falls in that slice; `1/7` … `7/7` cover all.
    Part(u32, u32),
    /// About this percentage of packs, chosen by id (the same ones each time).
    Percent(u32),
}

impl std::str::FromStr for ReadData {
    type Err = Error;
    fn from_str(s: &str) -> Result<ReadData> {
        let bad = || {
            Error::usage(format!(
                "--read-data-subset {s:?}: use N/M (1 <= N <= M) or P% (1..=100)"
            ))
        };
        if let Some(p) = s.strip_suffix('%') {
            let p: u32 = p.parse().map_err(|_| bad())?;
            return if (1..=100).contains(&p) {
                Ok(ReadData::Percent(p))
            } else {
                Err(bad())
            };
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (n.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if n >= 1 && n <= m {
            Ok(ReadData::Part(n, m))
        } else {
            Err(bad())
        }
    }
}

impl ReadData {
    fn selects(&self, id: &Id) -> bool {
        let x = u32::from_le_bytes(id.0[..4].try_into().expect("4"));
        match *self {
            ReadData::None => false,
            ReadData::All => true,
            ReadData::Part(n, m) => x % m == n - 1,
            ReadData::Percent(p) => x % 100 < p,
        }
    }
}

/// A snapshot path that a problem affects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Affected {
    /// Snapshot id (short).
    pub snapshot: String,
    /// Path inside it.
    pub path: String,
}

/// What kind of thing is wrong; serialized as the snake_case name (`corrupt_pack`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A pack is damaged as a whole: its index does not read, its size changed, or it does not
    /// hash to its name with no damaged blob to explain it.
    CorruptPack,
    /// A pack the catalog knew is gone from the store.
    MissingPack,
    /// A blob does not decode to its id (recorded in the damage register).
    CorruptBlob,
    /// A blob a snapshot needs is in no known pack.
    MissingBlob,
    /// A tree does not decode, or holds a path longer than a snapshot path may be.
    CorruptTree,
    /// A snapshot object does not decode to its id (`--repair` puts it back or moves it aside).
    UnreadableSnapshot,
    /// A snapshot object of a format version this cairn does not read (written by a newer one).
    UnsupportedSnapshot,
}

impl ProblemKind {
    /// Every kind.
    pub const ALL: [ProblemKind; 7] = [
        ProblemKind::CorruptPack,
        ProblemKind::MissingPack,
        ProblemKind::CorruptBlob,
        ProblemKind::MissingBlob,
        ProblemKind::CorruptTree,
        ProblemKind::UnreadableSnapshot,
        ProblemKind::UnsupportedSnapshot,
    ];

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::CorruptPack => "corrupt_pack",
            ProblemKind::MissingPack => "missing_pack",
            ProblemKind::CorruptBlob => "corrupt_blob",
            ProblemKind::MissingBlob => "missing_blob",
            ProblemKind::CorruptTree => "corrupt_tree",
            ProblemKind::UnreadableSnapshot => "unreadable_snapshot",
            ProblemKind::UnsupportedSnapshot => "unsupported_snapshot",
        }
    }
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind of thing.
    pub kind: ProblemKind,
    /// The pack, blob or snapshot concerned.
    pub object: String,
    /// What was found.
    pub detail: String,
    /// Snapshot paths that cannot be restored because of it (at most 50 listed).
    pub affected: Vec<Affected>,
    /// How many paths are affected in all.
    pub affected_count: usize,
}

/// What `check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Damaged blobs in the damage register that have a good copy in another pack.
    pub healed: usize,
    /// What `--repair` did, one line each.
    pub repaired: Vec<String>,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Packs in the store.
    pub packs: usize,
    /// Packs downloaded and verified.
    pub packs_read: usize,
    /// Distinct trees checked.
    pub trees: usize,
    /// Problems; empty means healthy.
    pub problems: Vec<Problem>,
}

const MAX_LISTED: usize = 50;

/// What reading one pack found wrong.
enum PackFailure {
    /// The pack as a whole: unreadable, or it does not hash to its name and no blob explains it.
    Pack(String),
    /// These blobs do not decode to their ids.
    Blobs(Vec<DamagedBlob>),
}

struct Damage {
    /// Packs that are damaged, with what is wrong.
    packs: HashMap<Id, (ProblemKind, String)>,
    /// The damage register: (pack, kind, blob) → what was wrong.
    blobs: HashMap<(Id, BlobKind, Id), String>,
}

/// Reads one pack whole and checks its name, index and every blob.
fn read_pack(repo: &Repository, id: &Id) -> std::result::Result<(), PackFailure> {
    let bytes = repo
        .store()
        .get(&pack_key(id))
        .map_err(|e| PackFailure::Pack(e.to_string()))?;
    let entries = match pack::parse_trailer(&bytes, bytes.len() as u64) {
        Ok(entries) => entries,
        Err(e) if Id::of(&bytes) != *id => {
            return Err(PackFailure::Pack(format!(
                "pack does not hash to its name: {e}"
            )));
        }
        Err(e) => return Err(PackFailure::Pack(e.to_string())),
    };
    let bad: Vec<DamagedBlob> = entries
        .iter()
        .filter_map(|e| {
            let frame = bytes
                .get(e.offset as usize..(e.offset as usize).saturating_add(e.length as usize))
                .unwrap_or_default();
            pack::open_blob(e, frame).err().map(|err| DamagedBlob {
                kind: e.kind,
                id: e.id,
                detail: err.to_string(),
            })
        })
        .collect();
    if !bad.is_empty() {
        return Err(PackFailure::Blobs(bad));
    }
    if Id::of(&bytes) != *id {
        return Err(PackFailure::Pack("pack does not hash to its name".into()));
    }
    Ok(())
}

/// Checks the repository. `catalog` must come from [`Catalog::open_for`], whose `sync` report
/// names the packs it could not index or found gone.
///
/// With `repair`, unreadable snapshot objects are put back from the catalog's copy where it
/// hashes to the snapshot's id, and moved aside otherwise (this deletes from the store).
pub fn check(
    repo: &Repository,
    catalog: &Catalog,
    sync: &SyncReport,
    read: ReadData,
    repair: bool,
) -> Result<CheckReport> {
    let in_store: HashMap<Id, u64> = repo.list_packs()?.into_iter().collect();
    let known = catalog.pack_sizes()?;
    let mut damage = Damage {
        packs: HashMap::new(),
        blobs: HashMap::new(),
    };
    let notes = crate::repo::damage::load_all(repo)?;
    for (pack, note) in &notes {
        for b in &note.blobs {
            damage.blobs.insert((*pack, b.kind, b.id), b.detail.clone());
        }
    }
    for hex in &sync.packs_unreadable {
        damage.packs.insert(
            Id::from_hex(hex)?,
            (
                ProblemKind::CorruptPack,
                "pack index unreadable (truncated or damaged)".into(),
            ),
        );
    }
    for hex in &sync.packs_removed {
        damage.packs.insert(
            Id::from_hex(hex)?,
            (
                ProblemKind::MissingPack,
                "pack is gone from the store".into(),
            ),
        );
    }
    for (id, size) in &known {
        match in_store.get(id) {
            Some(s) if s != size => {
                damage.packs.insert(
                    *id,
                    (
                        ProblemKind::CorruptPack,
                        format!("pack is {s} bytes, was {size} when written"),
                    ),
                );
            }
            Some(_) => {}
            None => {
                damage.packs.insert(
                    *id,
                    (
                        ProblemKind::MissingPack,
                        "pack is gone from the store".into(),
                    ),
                );
            }
        }
    }
    let selected: Vec<Id> = in_store
        .keys()
        .filter(|id| read.selects(id) && !damage.packs.contains_key(id))
        .copied()
        .collect();
    let read_all = || -> Vec<(Id, std::result::Result<(), PackFailure>)> {
        selected
            .par_iter()
            .map(|id| (*id, read_pack(repo, id)))
            .collect()
    };
    let results = if repo.reads_locally() {
        read_all()
    } else {
        // On an object store a pack costs a round trip before its bytes stream: as many in
        // flight as planned reads keep, not one per core.
        rayon::ThreadPoolBuilder::new()
            .num_threads(FetchOptions::REMOTE.in_flight)
            .thread_name(|i| format!("cairn-check-{i}"))
            .build()
            .map_err(|e| Error::new(crate::ErrorKind::Io, format!("starting pack readers: {e}")))?
            .install(read_all)
    };
    for (id, r) in results {
        match r {
            Ok(()) => {
                // Read whole: whatever a note said about it is no longer true.
                if let Some(note) = notes.get(&id) {
                    crate::catalog::heal::clear(repo, catalog, note)?;
                    damage.blobs.retain(|(pack, ..), _| *pack != id);
                }
            }
            Err(PackFailure::Blobs(blobs)) => {
                // Recorded: the catalog forgets these copies and the next backup stores the
                // chunks again from the source.
                crate::catalog::heal::record(repo, catalog, &id, &blobs)?;
                for b in blobs {
                    damage.blobs.insert((id, b.kind, b.id), b.detail);
                }
            }
            Err(PackFailure::Pack(detail)) => {
                damage.packs.insert(id, (ProblemKind::CorruptPack, detail));
            }
        }
    }
    let mut repaired = Vec::new();
    let unreadable = unreadable_snapshots(repo, sync)?;
    let mut snapshot_problems = Vec::new();
    for (id, detail, damaged) in &unreadable {
        if !damaged {
            // Intact, of a newer format: never repaired, never moved.
            snapshot_problems.push(Problem {
                kind: ProblemKind::UnsupportedSnapshot,
                object: format!("snapshot {id}"),
                detail: format!("{detail}; check it with that newer cairn"),
                affected: vec![],
                affected_count: 0,
            });
            continue;
        }
        if repair {
            repaired.push(repair_snapshot(repo, catalog, id)?);
            continue;
        }
        snapshot_problems.push(Problem {
            kind: ProblemKind::UnreadableSnapshot,
            object: format!("snapshot {id}"),
            detail: format!("{detail} (cairn check --repair puts it back or moves it aside)"),
            affected: vec![],
            affected_count: 0,
        });
    }
    let mut healed = 0;
    for (pack, kind, blob) in damage.blobs.keys() {
        if catalog
            .locate(*kind, blob)?
            .is_some_and(|l| l.pack != *pack)
        {
            healed += 1;
        }
    }

    // Walk every snapshot; remember trees already found clean so that shared subtrees cost once.
    let mut affected: BTreeMap<String, (ProblemKind, String, Vec<Affected>)> = BTreeMap::new();
    let mut clean: HashSet<Id> = HashSet::new();
    let snapshots = catalog.snapshots()?;
    let mut trees_seen: HashSet<Id> = HashSet::new();
    // On an object store, trees are read a whole tree pack at a time (one request each, checked
    // against the pack's id) into a copy of this check's own, not the state volume's cache:
    // the subject is the store. One request per tree took 229 s for 5,291 trees on Garage.
    let trees = catalog
        .tree_cache()
        .map(|c| c.fresh_beside("check-tree-packs"));
    let walked = (|| -> Result<()> {
        for (sid, snap) in &snapshots {
            let mut w = Walker {
                repo,
                catalog,
                damage: &damage,
                clean: &mut clean,
                affected: &mut affected,
                snap: sid.short(),
                seen: &mut trees_seen,
                trees: trees.as_ref(),
            };
            w.tree(&snap.root, "")?;
        }
        Ok(())
    })();
    if let Some(t) = &trees {
        t.remove();
    }
    walked?;
    let mut problems: Vec<Problem> = affected
        .into_iter()
        .map(|(object, (kind, detail, mut paths))| {
            paths.sort();
            paths.dedup();
            let count = paths.len();
            paths.truncate(MAX_LISTED);
            Problem {
                kind,
                object,
                detail,
                affected: paths,
                affected_count: count,
            }
        })
        .collect();
    problems.extend(snapshot_problems);
    // Damage that no snapshot reaches is still damage.
    for (id, (kind, detail)) in &damage.packs {
        let object = format!("pack {id}");
        if !problems.iter().any(|p| p.object == object) {
            problems.push(Problem {
                kind: *kind,
                object,
                detail: detail.clone(),
                affected: vec![],
                affected_count: 0,
            });
        }
    }
    problems.sort_by(|a, b| a.object.cmp(&b.object));
    Ok(CheckReport {
        healed,
        repaired,
        snapshots: snapshots.len(),
        packs: in_store.len(),
        packs_read: selected.len(),
        trees: trees_seen.len(),
        problems,
    })
}

struct Walker<'a> {
    repo: &'a Repository,
    catalog: &'a Catalog,
    damage: &'a Damage,
    clean: &'a mut HashSet<Id>,
    affected: &'a mut BTreeMap<String, (ProblemKind, String, Vec<Affected>)>,
    snap: String,
    seen: &'a mut HashSet<Id>,
    /// Whole tree packs read from the store for this check, when it is remote.
    trees: Option<&'a crate::catalog::tree_cache::TreeCache>,
}

impl Walker<'_> {
    fn hit(&mut self, object: String, kind: ProblemKind, detail: &str, path: &str) {
        self.affected
            .entry(object)
            .or_insert_with(|| (kind, detail.to_string(), Vec::new()))
            .2
            .push(Affected {
                snapshot: self.snap.clone(),
                path: if path.is_empty() {
                    "/".into()
                } else {
                    path.to_string()
                },
            });
    }

    /// Problems of the blob `id` of `kind`, if any: (object, kind, detail).
    fn blob_problem(
        &self,
        kind: BlobKind,
        id: &Id,
    ) -> Result<Option<(String, ProblemKind, String)>> {
        let Some(loc) = self.catalog.locate(kind, id)? else {
            return Ok(Some((
                format!("blob {id}"),
                ProblemKind::MissingBlob,
                "in no pack of the store".into(),
            )));
        };
        if let Some(detail) = self.damage.blobs.get(&(loc.pack, kind, *id)) {
            return Ok(Some((
                format!("pack {}", loc.pack),
                ProblemKind::CorruptBlob,
                format!(
                    "{detail}; recorded as damaged: the next backup stores it again if the source still has it"
                ),
            )));
        }
        if let Some((k, detail)) = self.damage.packs.get(&loc.pack) {
            return Ok(Some((format!("pack {}", loc.pack), *k, detail.clone())));
        }
        Ok(None)
    }

    /// Returns whether everything below `id` is intact. Walks with an explicit stack, one frame
    /// per open tree: a crafted chain of thousands of trees costs heap, not stack, and a path
    /// longer than [`crate::format::tree::MAX_PATH_LEN`] is reported as a damaged tree instead of followed.
    fn tree(&mut self, id: &Id, path: &str) -> Result<bool> {
        let mut stack = match self.open(id, path, path.len())? {
            Opened::Done(ok) => return Ok(ok),
            Opened::Frame(f) => vec![f],
        };
        loop {
            let top = stack
                .last_mut()
                .expect("the loop returns when the stack empties");
            let Some(e) = top.entries.next() else {
                let done = stack.pop().expect("not empty");
                if done.ok {
                    self.clean.insert(done.id);
                }
                match stack.last_mut() {
                    Some(parent) => parent.ok &= done.ok,
                    None => return Ok(done.ok),
                }
                continue;
            };
            let name = e.name.lossy();
            let (p, len) = if top.path.is_empty() {
                (name.into_owned(), e.name.0.len())
            } else {
                (format!("{}/{name}", top.path), top.len + 1 + e.name.0.len())
            };
            if let Err(err) = check_path_len_of(p.as_bytes(), len) {
                let object = format!("tree {}", top.id);
                top.ok = false;
                self.hit(
                    object,
                    ProblemKind::CorruptTree,
                    err.message(),
                    &shorten(p.as_bytes()),
                );
                continue;
            }
            for c in &e.chunks {
                if let Some((object, kind, detail)) = self.blob_problem(BlobKind::Data, c)? {
                    self.hit(object, kind, &detail, &p);
                    top.ok = false;
                    break;
                }
            }
            if let Some(sub) = crate::read::walk::subtree(&e) {
                match self.open(sub, &p, len)? {
                    Opened::Done(ok) => top.ok &= ok,
                    Opened::Frame(f) => stack.push(f),
                }
            }
        }
    }

    /// Starts on the tree `id` at `path` (`len` raw bytes): the answer when it is known
    /// without reading its entries, else a frame to walk them.
    fn open(&mut self, id: &Id, path: &str, len: usize) -> Result<Opened> {
        self.seen.insert(*id);
        if self.clean.contains(id) {
            return Ok(Opened::Done(true));
        }
        if let Some((object, kind, detail)) = self.blob_problem(BlobKind::Tree, id)? {
            self.hit(object, kind, &detail, path);
            return Ok(Opened::Done(false));
        }
        // The store's copy: a tree cached on the state volume says nothing of the store.
        match load_tree_through(self.repo, self.catalog, self.trees, id) {
            Ok(t) => Ok(Opened::Frame(Frame {
                id: *id,
                path: path.to_string(),
                len,
                entries: t.entries.into_iter(),
                ok: true,
            })),
            Err(e) => {
                self.hit(
                    format!("tree {id}"),
                    ProblemKind::CorruptTree,
                    &e.to_string(),
                    path,
                );
                Ok(Opened::Done(false))
            }
        }
    }
}

/// Snapshot objects in the store that cannot be read, with what is wrong and whether they are
/// damaged (`true`: they do not decode to their id) or intact but of a newer format (`false`):
/// those the catalog sync left out, and those the catalog still holds a good copy of (read
/// again here).
fn unreadable_snapshots(repo: &Repository, sync: &SyncReport) -> Result<Vec<(Id, String, bool)>> {
    let ids = repo.list_snapshot_ids()?;
    let found: Vec<Option<(Id, String, bool)>> = ids
        .par_iter()
        .map(|id| match repo.load_snapshot(id) {
            Ok(_) => Ok(None),
            Err(e) if e.kind() == crate::ErrorKind::Corrupt => Ok(Some((*id, e.to_string(), true))),
            Err(e) if e.kind() == crate::ErrorKind::Unsupported => {
                Ok(Some((*id, e.to_string(), false)))
            }
            Err(e) if e.kind() == crate::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .collect::<Result<_>>()?;
    let mut out: Vec<(Id, String, bool)> = found.into_iter().flatten().collect();
    for hex in &sync.snapshots_unreadable {
        let id = Id::from_hex(hex)?;
        if !out.iter().any(|(i, ..)| *i == id) && ids.contains(&id) {
            out.push((id, "snapshot object does not decode".into(), true));
        }
    }
    out.sort();
    Ok(out)
}

/// Where `--repair` moves a snapshot object that cannot be put back.
pub const QUARANTINE: &str = "quarantine/snapshots/";

/// Puts a damaged snapshot object back from the catalog's copy if that copy hashes to the
/// snapshot's id; otherwise moves the object aside. Returns what was done.
fn repair_snapshot(repo: &Repository, catalog: &Catalog, id: &Id) -> Result<String> {
    let key = format!("{}{id}", crate::repo::SNAPSHOTS);
    if let Some(snap) = catalog.snapshot(id)? {
        let (cid, bytes) = snap.encode();
        if cid == *id {
            repo.store().put(&key, &bytes)?;
            return Ok(format!("snapshot {id}: put back from the catalog's copy"));
        }
    }
    // Read again: only an object that fails its id twice is moved, never one that a flaky read
    // made look damaged.
    let bytes = repo.store().get(&key)?;
    if Id::of(&bytes) == *id {
        return Ok(format!("snapshot {id}: reads intact now; left in place"));
    }
    repo.store().put(&format!("{QUARANTINE}{id}"), &bytes)?;
    repo.store().delete(&key)?;
    Ok(format!(
        "snapshot {id}: moved aside to {QUARANTINE}{id} (no intact copy to put back)"
    ))
}

/// A tree being checked.
struct Frame {
    id: Id,
    path: String,
    /// Length of the raw path (`path` is its lossy rendering).
    len: usize,
    entries: std::vec::IntoIter<crate::format::tree::Entry>,
    /// Whether everything seen below it so far is intact.
    ok: bool,
}

enum Opened {
    /// Intact or not, known without walking it.
    Done(bool),
    /// To walk.
    Frame(Frame),
}

#[cfg(test)]
mod tests {
    use super::ProblemKind;

    /// The names in reports are the serialized names, for every kind.
    #[test]
    fn problem_kinds_serialize_as_their_names() {
        for k in ProblemKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
