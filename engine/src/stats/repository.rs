//! The repository's figures: its snapshots, the unique blobs and packs the catalog knows, the
//! packs' fill and what a gc would free (gc's own marking and weighing, from the catalog, and
//! the store's `condemned/` markers for what is already on its way out), and the growth of the
//! last days.

use std::time::Duration;

use serde::Serialize;

use super::blobs::{BlobTotals, ratio};
use super::growth::{Growth, growth};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::format::pack::BlobKind;
use crate::prune::gc::{self, GcEstimate};
use crate::repo::Repository;
use crate::repo::condemn;

/// What [`repo_stats`] is asked for.
#[derive(Debug, Clone)]
pub struct RepoStatsOptions {
    /// Weigh the packs as a gc would, for their fill and what a gc would free: reads every
    /// snapshot's distinct trees once and lists the store's `condemned/` markers. `None`
    /// leaves those figures out.
    pub gc: Option<GcWeighing>,
    /// The last day of the growth window (`YYYY-MM-DD`; the CLI gives today in the configured
    /// time zone).
    pub growth_until: String,
    /// The growth window's length in days.
    pub growth_days: u32,
}

/// How a gc would weigh the packs: the configuration's `[gc]`, and the present.
#[derive(Debug, Clone, Copy)]
pub struct GcWeighing {
    /// `gc.repack_dead_percent`.
    pub repack_dead_percent: u8,
    /// `gc.grace`.
    pub grace: Duration,
    /// Now, to tell which condemned packs are past their grace.
    pub now: jiff::Timestamp,
}

/// What the repository holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepoStats {
    /// Snapshots the catalog knows.
    pub snapshots: u64,
    /// The day of the oldest snapshot.
    pub first_day: Option<String>,
    /// The day of the newest snapshot.
    pub last_day: Option<String>,
    /// The snapshots' sizes added up, as each backup counted its files (`summary.bytes`).
    pub logical_bytes: u64,
    /// The unique data blobs (chunks) the catalog knows, one copy each.
    pub data: BlobTotals,
    /// The unique tree blobs the catalog knows, one copy each.
    pub trees: BlobTotals,
    /// `logical_bytes` per plaintext byte of the unique data blobs.
    pub dedup_ratio: Option<f64>,
    /// Plaintext bytes of the unique data blobs per stored byte.
    pub compression_ratio: Option<f64>,
    /// The packs.
    pub packs: PackStats,
    /// What a gc would free (`None` when not asked for).
    pub gc: Option<GcStats>,
    /// The last days' growth.
    pub growth: Growth,
}

/// The packs the catalog knows (condemned ones not among them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackStats {
    /// Packs.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Bytes of the frames of live blobs in them, as a gc weighs them (with the gc figures).
    pub live_bytes: Option<u64>,
    /// `live_bytes` per pack byte: how full of what the snapshots need the packs are.
    pub fill: Option<f64>,
}

/// What a gc would free.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcStats {
    /// What the next gc would condemn and repack, weighed from the catalog.
    pub next: GcEstimate,
    /// Packs already condemned (a marker in force in the store) and still in the store at the
    /// catalog's last sync.
    pub condemned_packs: u64,
    /// The bytes of their frames.
    pub condemned_bytes: u64,
    /// Of the condemned packs, those past their grace: a gc run now deletes them.
    pub deletable_packs: u64,
    /// The bytes of their frames.
    pub deletable_bytes: u64,
    /// What gc frees once every grace has passed, if nothing changes meanwhile: the condemned
    /// packs, the packs the next gc condemns and the dead frames of those it repacks.
    pub would_free_bytes: u64,
}

/// The repository's figures: from the catalog (no request), and with `opts.gc` from a walk of
/// every snapshot's distinct trees and a listing of the store's `condemned/` markers.
pub fn repo_stats(
    repo: &Repository,
    catalog: &Catalog,
    opts: &RepoStatsOptions,
) -> Result<RepoStats> {
    let snapshots = catalog.snapshots()?;
    let mut data = BlobTotals::default();
    catalog.for_each_location(BlobKind::Data, &mut |_, loc| data.add(loc))?;
    let mut trees = BlobTotals::default();
    catalog.for_each_location(BlobKind::Tree, &mut |_, loc| trees.add(loc))?;
    let sizes = catalog.pack_sizes()?;
    let pack_bytes: u64 = sizes.values().sum();
    let gc = opts
        .gc
        .as_ref()
        .map(|w| gc_stats(repo, catalog, w))
        .transpose()?;
    let live_bytes = gc.as_ref().map(|g| g.next.live_bytes);
    let logical_bytes: u64 = snapshots.iter().map(|(_, s)| s.summary.bytes).sum();
    Ok(RepoStats {
        snapshots: snapshots.len() as u64,
        first_day: snapshots.iter().map(|(_, s)| s.date.clone()).min(),
        last_day: snapshots.iter().map(|(_, s)| s.date.clone()).max(),
        logical_bytes,
        data,
        trees,
        dedup_ratio: ratio(logical_bytes, data.raw_bytes),
        compression_ratio: data.compression_ratio(),
        packs: PackStats {
            count: sizes.len() as u64,
            bytes: pack_bytes,
            live_bytes,
            fill: live_bytes.and_then(|l| ratio(l, pack_bytes)),
        },
        gc,
        growth: growth(&snapshots, &opts.growth_until, opts.growth_days)?,
    })
}

/// What a gc would free: the next gc's weighing ([`gc::estimate`]), and the packs already
/// condemned, from the catalog's kept index of them and one listing of the store's markers.
fn gc_stats(repo: &Repository, catalog: &Catalog, w: &GcWeighing) -> Result<GcStats> {
    let next = gc::estimate(repo, catalog, w.repack_dead_percent)
        .map_err(|e| e.context("weighing the packs as a gc would"))?;
    let (markers, _) = condemn::list_all(repo.store().as_ref())?;
    let now = w.now.as_second();
    let grace = i64::try_from(w.grace.as_secs()).unwrap_or(i64::MAX);
    let mut s = GcStats {
        next,
        ..GcStats::default()
    };
    for (pack, frames) in catalog.condemned_packs()? {
        // A pack taken back (its marker removed, or a `.kept` object) is not on its way out.
        let Some(m) = markers.get(&pack) else {
            continue;
        };
        s.condemned_packs += 1;
        s.condemned_bytes += frames;
        if m.is_due(now, grace) {
            s.deletable_packs += 1;
            s.deletable_bytes += frames;
        }
    }
    s.would_free_bytes = s.condemned_bytes
        + s.next.condemn_bytes
        + s.next.repack_bytes.saturating_sub(s.next.repack_live_bytes);
    Ok(s)
}
