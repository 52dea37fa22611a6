//! What `cairn offsite status` shows: every day found in the exports or in the offsite statuses,
//! with where it stands in each. Reads only.

use serde::Serialize;

use super::status::{self, DayOffsite};
use crate::error::Result;
use crate::store::Store;

/// One day as `cairn offsite status` shows it: in the exports, and on the remote as last checked.
#[derive(Debug, Clone, Serialize)]
pub struct DayView {
    /// The day.
    pub date: String,
    /// Complete in the exports location (manifest present).
    pub in_exports: bool,
    /// Archive size in the exports.
    pub archive_size: Option<u64>,
    /// The day in the exports: `complete`, `warnings`, `failed folders`, `partial`, or `gone`
    /// (only the offsite status is left).
    pub exports_state: String,
    /// The offsite status, if any was written.
    pub offsite: Option<DayOffsite>,
}

/// Every day found in the exports or in the offsite statuses, oldest first.
pub fn overview(exports: &dyn Store) -> Result<Vec<DayView>> {
    let mut statuses = status::load_all(exports)?;
    let mut out: Vec<DayView> = crate::export::list_days_with_status(exports)?
        .into_iter()
        .map(|d| DayView {
            offsite: statuses.remove(&d.date),
            in_exports: d.complete,
            archive_size: d.archive_size,
            exports_state: d.state().to_string(),
            date: d.date,
        })
        .collect();
    out.extend(statuses.into_values().map(|s| DayView {
        date: s.date.clone(),
        in_exports: false,
        archive_size: None,
        exports_state: "gone".to_string(),
        offsite: Some(s),
    }));
    out.sort_by(|a, b| a.date.cmp(&b.date));
    Ok(out)
}
