//! Condemned packs: the store's record that a garbage collection found a pack unneeded, and
//! from when it may be deleted.
//!
//! A marker is the object `condemned/<pack id>.<since>.<due>` (Unix seconds of the marking run's
//! clock). Everything a reader needs is in the key, so one listing tells every machine which
//! packs are on their way out: a backup must not deduplicate against them, and a later gc —
//! on this machine or another, with whatever grace it was configured with — deletes a pack only
//! once both `due` and its own grace after `since` have passed. The body is a small JSON note
//! for people (reason, host). A marker outlives its pack by [`MARKER_KEPT`], so that a catalog
//! that was not synced in that time learns the pack was collected, not lost.
//!
//! A pack is taken back by deleting its markers, or, by a key that may not delete (the nightly
//! key), by writing `condemned/<pack id>.kept`: while that object exists, no marker of the pack
//! counts, for readers and for gc alike. A backup writes it for the packs its snapshot needs that
//! were condemned while it ran (or that it stored again under a condemned name); the next gc,
//! which may delete, removes the markers and then the `.kept` object. This module knows keys and
//! times; what is condemned and when is `gc`'s.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::{ErrorKind, Result};
use crate::id::Id;
use crate::store::Store;

/// Prefix of the markers.
pub const CONDEMNED: &str = "condemned/";

/// How long a marker stays after its pack was deleted.
pub const MARKER_KEPT: i64 = 30 * 24 * 3600;

/// Why a pack was condemned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// No blob in it is reachable from a snapshot.
    Unreferenced,
    /// Its reachable blobs were copied into new packs.
    Repacked,
}

/// One marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The condemned pack.
    pub pack: Id,
    /// When it was condemned (Unix seconds).
    pub since: i64,
    /// Not deleted before this (Unix seconds): `since` plus the marking run's grace.
    pub due: i64,
    /// The marker's key.
    pub key: String,
}

impl Marker {
    /// Whether the pack may be deleted at `now` by a run whose grace is `grace` seconds.
    pub fn is_due(&self, now: i64, grace: i64) -> bool {
        now >= self.due && now >= self.since.saturating_add(grace)
    }
}

/// The key of a marker.
pub fn key(pack: &Id, since: i64, due: i64) -> String {
    format!("{CONDEMNED}{pack}.{since}.{due}")
}

/// The suffix of the object that takes a pack back (see the module's doc).
const KEPT: &str = ".kept";

/// The key of the object that takes `pack` back.
pub fn kept_key(pack: &Id) -> String {
    format!("{CONDEMNED}{pack}{KEPT}")
}

/// Whether `hex` is an id as keys spell it: 64 lower-case hex digits (another spelling would name
/// the same pack under a key nothing deletes).
fn canonical_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn parse_kept(key: &str) -> Option<Id> {
    let hex = key.strip_prefix(CONDEMNED)?.strip_suffix(KEPT)?;
    canonical_hex(hex).then(|| Id::from_hex(hex).ok())?
}

fn parse(key: &str) -> Option<Marker> {
    let rest = key.strip_prefix(CONDEMNED)?;
    let mut parts = rest.split('.');
    let (hex, since, due) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !canonical_hex(hex) {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(since) || !digits(due) {
        return None;
    }
    Some(Marker {
        pack: Id::from_hex(hex).ok()?,
        since: since.parse().ok()?,
        due: due.parse().ok()?,
        key: key.to_string(),
    })
}

/// Every marker in force, by pack (the earliest, should a pack have two: a rerun after a
/// kill); markers of packs taken back with a `.kept` object do not count.
pub fn list(store: &dyn Store) -> Result<HashMap<Id, Marker>> {
    Ok(list_all(store)?.0)
}

/// The markers in force (as [`list`]) and the packs taken back by a `.kept` object, from one
/// listing.
pub fn list_all(store: &dyn Store) -> Result<(HashMap<Id, Marker>, Vec<Id>)> {
    let mut out: HashMap<Id, Marker> = HashMap::new();
    let mut extra = Vec::new();
    let mut kept = Vec::new();
    for o in store.list(CONDEMNED)? {
        if let Some(pack) = parse_kept(&o.key) {
            kept.push(pack);
            continue;
        }
        match parse(&o.key) {
            Some(m) => match out.get(&m.pack) {
                Some(old) if old.since <= m.since => extra.push(m),
                _ => {
                    if let Some(old) = out.insert(m.pack, m) {
                        extra.push(old);
                    }
                }
            },
            None => {
                tracing::warn!(key = %o.key, "ignoring an object in condemned/ that is not named like a marker")
            }
        }
    }
    if !extra.is_empty() {
        tracing::debug!(
            count = extra.len(),
            "packs with more than one marker; the earliest counts"
        );
    }
    for pack in &kept {
        out.remove(pack);
    }
    Ok((out, kept))
}

/// Takes `pack` back with a key that may not delete: its markers stop counting.
pub fn keep(store: &dyn Store, pack: &Id) -> Result<()> {
    let note = serde_json::json!({
        "pack": pack.to_hex(),
        "host": crate::repo::lease::hostname(),
    });
    store.put(
        &kept_key(pack),
        &serde_json::to_vec(&note).expect("serializes"),
    )
}

/// Ends a `.kept` take-back, for a gc that may delete: the pack's markers first, then the
/// object, so that a kill in between leaves nothing in force that was not.
pub fn clear_kept(store: &dyn Store, pack: &Id) -> Result<()> {
    for k in keys_of(store, pack)? {
        if parse(&k).is_some() {
            match store.delete(&k) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    match store.delete(&kept_key(pack)) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Every marker key of `pack` (there is one, or two after a killed run).
pub fn keys_of(store: &dyn Store, pack: &Id) -> Result<Vec<String>> {
    Ok(store
        .list(&format!("{CONDEMNED}{pack}."))?
        .into_iter()
        .map(|o| o.key)
        .collect())
}

/// Writes the marker of `pack`, condemned at `since` for `reason`, not to be deleted before
/// `due`. Returns its key.
pub fn write(store: &dyn Store, pack: &Id, since: i64, due: i64, reason: Reason) -> Result<String> {
    let key = key(pack, since, due);
    let note = serde_json::json!({
        "pack": pack.to_hex(),
        "reason": reason,
        "host": crate::repo::lease::hostname(),
    });
    store.put(&key, &serde_json::to_vec(&note).expect("serializes"))?;
    Ok(key)
}

/// Deletes every marker of `pack`; a marker already gone is no error.
pub fn remove(store: &dyn Store, pack: &Id) -> Result<()> {
    for k in keys_of(store, pack)? {
        match store.delete(&k) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_strangers_are_refused() {
        let id = Id::from_hex(&"ab".repeat(32)).unwrap();
        let k = key(&id, 1_764_000_000, 1_764_086_400);
        let m = parse(&k).unwrap();
        assert_eq!((m.pack, m.since, m.due), (id, 1_764_000_000, 1_764_086_400));
        assert!(m.is_due(1_764_086_400, 3600));
        assert!(!m.is_due(1_764_086_399, 0));
        assert!(
            !m.is_due(1_764_086_400, 2 * 86_400),
            "a longer grace of the deleting run counts"
        );
        assert_eq!(parse_kept(&kept_key(&id)), Some(id));
        assert!(parse(&kept_key(&id)).is_none());
        assert!(parse_kept(&k).is_none());
        assert!(parse_kept(&format!("{CONDEMNED}{}.kept", id.to_hex().to_uppercase())).is_none());
        for bad in [
            format!("{CONDEMNED}{id}.1"),
            format!("{CONDEMNED}{id}.1.2.3"),
            format!("{CONDEMNED}{id}.-1.2"),
            format!("{CONDEMNED}{id}.1.9999999999999999999"),
            format!("{CONDEMNED}abc.1.2"),
            format!("{CONDEMNED}{id}..2"),
            format!("{CONDEMNED}{}.1.2", id.to_hex().to_uppercase()),
        ] {
            assert!(parse(&bad).is_none(), "{bad}");
        }
    }
}
