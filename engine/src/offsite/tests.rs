//! The sync's unit tests, against an in-memory exports location and a directory as the remote:
//! what a night does with its days, and that its plan is what it then does.

use std::time::Duration;

use super::parts::sha256_hex;
use super::status::{self, Check, State};
use super::sync::sync_leased;
use super::{DayAction, SyncOptions, plan, sync, uploader};
use crate::error::{Error, ErrorKind};
use crate::export::DayKeys;
use crate::store::{Fault, FaultStore, MemoryStore, Op, Store};

/// A complete day in `exports`, as an export leaves it.
fn day(exports: &dyn Store, date: &str, archive: &[u8]) {
    let keys = DayKeys::new(date).unwrap();
    exports.put(&keys.archive, archive).unwrap();
    let line = format!("{}  {}\n", sha256_hex(archive), keys.archive_name());
    exports.put(&keys.sha256, line.as_bytes()).unwrap();
    exports.put(&keys.manifest, b"{\"version\": 1}\n").unwrap();
}

fn options(scratch: &std::path::Path) -> SyncOptions {
    SyncOptions {
        date: "2026-11-04".into(),
        timeout: Duration::from_secs(30),
        budget: Duration::from_secs(300),
        attempts: 1,
        retry_wait: Duration::ZERO,
        keep_daily: 0,
        scratch: scratch.to_path_buf(),
    }
}

/// A `.sha256` that cannot be read for a moment says nothing about the day: it stays
/// `uploaded`, with a warning, and is not uploaded again.
#[test]
fn a_transient_failure_reading_the_sha256_is_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let exports = FaultStore::new(MemoryStore::new());
    day(&exports, "2026-11-03", b"the archive of the day");
    let up = uploader::Directory {
        root: dir.path().join("remote"),
    };
    let opts = options(&dir.path().join("scratch"));
    let r = sync(&exports, &up, &opts).unwrap();
    assert_eq!(r.uploaded, ["2026-11-03"], "{r:?}");

    exports.inject(Some(Op::Get), ".sha256", Fault::FailOncePerKey);
    let r = sync(&exports, &up, &opts).unwrap();
    assert!(r.uploaded.is_empty(), "uploaded again: {r:?}");
    assert!(r.failed.is_empty(), "{r:?}");
    assert!(
        r.warnings.iter().any(|w| w.contains("2026-11-03")),
        "no warning: {r:?}"
    );
    let st = status::load_all(&exports).unwrap()["2026-11-03"].clone();
    assert_eq!(st.state, State::Uploaded, "{st:?}");
    assert_eq!(st.reason, None, "{st:?}");
    // The next night checks it as before.
    let r = sync(&exports, &up, &opts).unwrap();
    assert_eq!(r.up_to_date, ["2026-11-03"], "{r:?}");
}

/// A lease that cannot be confirmed before a status is written stops the sync there: no
/// status written, the days not done left pending, exit 4.
#[test]
fn a_lost_lease_stops_the_sync_before_its_first_status() {
    let dir = tempfile::tempdir().unwrap();
    let exports = MemoryStore::new();
    day(&exports, "2026-11-02", b"the second day");
    day(&exports, "2026-11-03", b"the third day");
    let up = uploader::Directory {
        root: dir.path().join("remote"),
    };
    let lost = || Err(Error::new(ErrorKind::Locked, "offsite sync: taken away"));
    let r = sync_leased(&exports, &up, &options(&dir.path().join("scratch")), &lost).unwrap();
    assert_eq!(r.exit_code, crate::error::exit::LOCKED, "{r:?}");
    assert_eq!(r.uploaded, ["2026-11-03"], "{r:?}");
    assert_eq!(r.pending, ["2026-11-02"], "{r:?}");
    assert!(r.warnings.iter().any(|w| w.contains("taken away")), "{r:?}");
    assert!(status::load_all(&exports).unwrap().is_empty());
}

/// The plan is what the sync then does: the days it uploads and those it finds up to date, and
/// the remote days `keep_daily` deletes; planning alone uploads, deletes and writes nothing.
#[test]
fn the_plan_is_what_the_sync_does() {
    let dir = tempfile::tempdir().unwrap();
    let exports = MemoryStore::new();
    for date in ["2026-11-01", "2026-11-02", "2026-11-03"] {
        day(&exports, date, format!("the archive of {date}").as_bytes());
    }
    let remote = dir.path().join("remote");
    let up = uploader::Directory {
        root: remote.clone(),
    };
    let mut opts = options(&dir.path().join("scratch"));
    let first = plan(&exports, &up, &opts).unwrap();
    assert_eq!(first.uploads(), ["2026-11-03", "2026-11-02", "2026-11-01"]);
    assert!(first.prune.is_none(), "{first:?}");
    let r = sync(&exports, &up, &opts).unwrap();
    assert_eq!(r.uploaded, first.uploads(), "{r:?}");

    // Two new days, and only the three newest kept on the remote.
    for date in ["2026-11-04", "2026-11-05"] {
        day(&exports, date, format!("the archive of {date}").as_bytes());
    }
    opts.keep_daily = 3;
    let statuses = status::load_all(&exports).unwrap();
    let p = plan(&exports, &up, &opts).unwrap();
    let actions: Vec<(&str, &DayAction)> = p
        .days
        .iter()
        .map(|d| (d.date.as_str(), &d.action))
        .collect();
    assert_eq!(
        actions,
        [
            ("2026-11-05", &DayAction::Upload { again: None }),
            ("2026-11-04", &DayAction::Upload { again: None }),
            (
                "2026-11-03",
                &DayAction::UpToDate {
                    check: Check::Sha256
                }
            ),
        ]
    );
    assert_eq!(p.deletions(), ["2026-11-01", "2026-11-02"], "{p:?}");
    assert!(p.pending().is_empty(), "{p:?}");
    // Planning wrote no status, uploaded nothing and deleted nothing.
    assert_eq!(status::load_all(&exports).unwrap(), statuses);
    assert!(!remote.join("2026-11-05").exists());
    assert!(remote.join("2026-11-01").exists());

    let r = sync(&exports, &up, &opts).unwrap();
    assert_eq!(r.uploaded, p.uploads(), "{r:?}");
    assert_eq!(r.up_to_date, p.up_to_date(), "{r:?}");
    assert_eq!(r.pending, p.pending(), "{r:?}");
    assert_eq!(r.deleted_remote, p.deletions(), "{r:?}");
    assert_eq!(r.exit_code, crate::error::exit::OK, "{r:?}");
}
