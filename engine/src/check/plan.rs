//! What a check will do, decided before it reads a pack: the packs in the store, the damage
//! already known (the damage register, packs the catalog could not index or found gone or of
//! another size), and the packs `--read-data` downloads. A dry run prints this plan; the check
//! then reads exactly [`CheckPlan::read`].

use std::collections::HashMap;

use serde::Serialize;

use super::report::ProblemKind;
use crate::catalog::{Catalog, SyncReport};
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::damage::DamageNote;

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
    pub(super) fn selects(&self, id: &Id) -> bool {
        let x = u32::from_le_bytes(id.0[..4].try_into().expect("4"));
        match *self {
            ReadData::None => false,
            ReadData::All => true,
            ReadData::Part(n, m) => x % m == n - 1,
            ReadData::Percent(p) => x % 100 < p,
        }
    }
}

/// Damage known to a check: packs with what is wrong, and damaged blobs by pack.
#[derive(Debug, Default)]
pub(super) struct Damage {
    /// Packs that are damaged, with what is wrong.
    pub(super) packs: HashMap<Id, (ProblemKind, String)>,
    /// The damage register: (pack, kind, blob) → what was wrong.
    pub(super) blobs: HashMap<(Id, BlobKind, Id), String>,
}

/// A check's plan.
#[derive(Debug)]
pub struct CheckPlan {
    /// Packs in the store, with their sizes.
    pub(super) in_store: HashMap<Id, u64>,
    /// The damage register's notes, by pack.
    pub(super) notes: HashMap<Id, DamageNote>,
    /// Damage known before reading anything.
    pub(super) damage: Damage,
    /// The packs to download and verify, sorted.
    pub read: Vec<Id>,
}

/// The plan in numbers, as `check --dry-run` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckPlanSummary {
    /// Packs in the store.
    pub packs: usize,
    /// Packs to download and verify.
    pub packs_to_read: usize,
    /// Their bytes.
    pub bytes_to_read: u64,
    /// Packs already known to be damaged or gone.
    pub packs_known_damaged: usize,
}

impl CheckPlan {
    /// Plans a check of `repo` whose catalog's sync reported `sync`, reading the packs `read`
    /// selects (none already known to be damaged).
    pub fn new(
        repo: &Repository,
        catalog: &Catalog,
        sync: &SyncReport,
        read: ReadData,
    ) -> Result<CheckPlan> {
        let in_store: HashMap<Id, u64> = repo.list_packs()?.into_iter().collect();
        let known = catalog.pack_sizes()?;
        let mut damage = Damage::default();
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
            let wrong = match in_store.get(id) {
                Some(s) if s != size => (
                    ProblemKind::CorruptPack,
                    format!("pack is {s} bytes, was {size} when written"),
                ),
                Some(_) => continue,
                None => (
                    ProblemKind::MissingPack,
                    "pack is gone from the store".into(),
                ),
            };
            damage.packs.insert(*id, wrong);
        }
        let mut selected: Vec<Id> = in_store
            .keys()
            .filter(|id| read.selects(id) && !damage.packs.contains_key(id))
            .copied()
            .collect();
        selected.sort();
        Ok(CheckPlan {
            in_store,
            notes,
            damage,
            read: selected,
        })
    }

    /// The plan in numbers.
    pub fn summary(&self) -> CheckPlanSummary {
        CheckPlanSummary {
            packs: self.in_store.len(),
            packs_to_read: self.read.len(),
            bytes_to_read: self.read.iter().map(|p| self.in_store[p]).sum(),
            packs_known_damaged: self.damage.packs.len(),
        }
    }
}
