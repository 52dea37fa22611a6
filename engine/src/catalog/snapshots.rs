//! Snapshot records: the catalog keeps every snapshot of the store as JSON, so that listing
//! them or picking one (`latest`, a date, an id prefix, the newest as of an instant) costs no
//! request. A sync makes them follow the store's snapshot objects.

use rocksdb::IteratorMode;

use crate::catalog::db::Catalog;
use crate::catalog::records::snapshot_record;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;

impl Catalog {
    /// Records a committed snapshot.
    pub fn add_snapshot(&self, id: &Id, snap: &Snapshot) -> Result<()> {
        let v = serde_json::to_vec(snap).expect("serializes");
        Ok(self.db.put_cf(self.cf("snapshots"), id.as_bytes(), v)?)
    }

    /// Forgets a snapshot that was deleted from the store.
    pub fn remove_snapshot(&self, id: &Id) -> Result<()> {
        Ok(self.db.delete_cf(self.cf("snapshots"), id.as_bytes())?)
    }

    pub(super) fn snapshot_ids(&self) -> Result<Vec<Id>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf("snapshots"), IteratorMode::Start)
        {
            let (k, _) = item?;
            out.push(Id::from_slice(&k)?);
        }
        Ok(out)
    }

    /// One known snapshot, as the catalog holds it.
    pub fn snapshot(&self, id: &Id) -> Result<Option<Snapshot>> {
        match self.db.get_pinned_cf(self.cf("snapshots"), id.as_bytes())? {
            Some(v) => Ok(Some(snapshot_record(&v)?)),
            None => Ok(None),
        }
    }

    /// Every known snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf("snapshots"), IteratorMode::Start)
        {
            let (k, v) = item?;
            let snap = snapshot_record(&v)?;
            out.push((Id::from_slice(&k)?, snap));
        }
        // By the instant, not the text: RFC 3339 fractions drop trailing zeros, so as strings
        // `…00.5Z` sorts before `…00Z`. A time that does not parse sorts first.
        out.sort_by_cached_key(|(id, s)| (s.time.parse::<jiff::Timestamp>().ok(), *id));
        Ok(out)
    }

    /// Finds one snapshot: `latest`, a date (`YYYY-MM-DD`, newest of that day), or an id or a
    /// unique id prefix of at least 4 hex digits.
    pub fn resolve_snapshot(&self, selector: &str) -> Result<(Id, Snapshot)> {
        let all = self.snapshots()?;
        let pick = |mut v: Vec<(Id, Snapshot)>, what: &str| {
            v.pop()
                .ok_or_else(|| Error::not_found(format!("no snapshot {what}")))
        };
        if selector == "latest" {
            return pick(all, "in the repository");
        }
        if jiff::civil::Date::strptime("%Y-%m-%d", selector).is_ok() {
            return pick(
                all.into_iter()
                    .filter(|(_, s)| s.date == selector)
                    .collect(),
                &format!("of {selector}"),
            );
        }
        if selector.len() < 4
            || crate::id::unhex(&format!(
                "{selector}{}",
                if selector.len() % 2 == 1 { "0" } else { "" }
            ))
            .is_none()
        {
            return Err(Error::usage(format!(
                "{selector:?} is not a snapshot selector (use latest, a date YYYY-MM-DD, or 4+ hex digits of an id)"
            )));
        }
        let sel = selector.to_ascii_lowercase();
        let mut hits: Vec<_> = all
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&sel))
            .collect();
        match hits.len() {
            0 => Err(Error::not_found(format!("no snapshot with id {selector}"))),
            1 => Ok(hits.pop().expect("one")),
            n => Err(Error::usage(format!(
                "{selector} matches {n} snapshots; give more digits"
            ))),
        }
    }

    /// The newest snapshot taken at or before `t`.
    pub fn resolve_as_of(&self, t: jiff::Timestamp) -> Result<(Id, Snapshot)> {
        let mut best = None;
        for (id, s) in self.snapshots()? {
            let st: jiff::Timestamp = s.time.parse().map_err(|_| {
                Error::corrupt(format!(
                    "snapshot {} has an unreadable time {:?}",
                    id.short(),
                    s.time
                ))
            })?;
            if st <= t {
                best = Some((id, s));
            }
        }
        best.ok_or_else(|| Error::not_found(format!("no snapshot at or before {t}")))
    }
}
