//! Reading the plan's packs (`--read-data`): each downloaded whole and checked against its name,
//! its index and every blob's id, many in flight on an object store. What is found damaged is
//! recorded in the damage register, so the catalog stops relying on it and the next backup
//! stores it again; a pack read whole clears its old note.

use rayon::prelude::*;

use super::plan::CheckPlan;
use super::report::ProblemKind;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::pack;
use crate::id::Id;
use crate::repo::damage::DamagedBlob;
use crate::repo::{Repository, pack_key};
use crate::store::fetch::FetchOptions;

/// What reading one pack found wrong.
enum PackFailure {
    /// The pack as a whole: unreadable, or it does not hash to its name and no blob explains it.
    Pack(String),
    /// These blobs do not decode to their ids.
    Blobs(Vec<DamagedBlob>),
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

/// Reads every pack of `plan.read`, and adds what it found to `plan.damage`.
pub(super) fn read_packs(repo: &Repository, catalog: &Catalog, plan: &mut CheckPlan) -> Result<()> {
    let meter = crate::progress::meter();
    if !plan.read.is_empty() {
        let bytes: u64 = plan.read.iter().map(|p| plan.in_store[p]).sum();
        meter.begin(
            "check: reading packs",
            "packs",
            Some(plan.read.len() as u64),
            Some(bytes),
            &["failed"],
        );
    }
    let read_all = || -> Vec<(Id, std::result::Result<(), PackFailure>)> {
        plan.read
            .par_iter()
            .map(|id| {
                let r = read_pack(repo, id);
                meter.items(1);
                meter.bytes(plan.in_store[id]);
                meter.count(0, u64::from(r.is_err()));
                (*id, r)
            })
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
    let damage = &mut plan.damage;
    for (id, r) in results {
        match r {
            Ok(()) => {
                // Read whole: whatever a note said about it is no longer true.
                if let Some(note) = plan.notes.get(&id) {
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
    Ok(())
}
