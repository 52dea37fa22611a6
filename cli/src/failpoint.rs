//! Failpoints for the CLI's own tests: `CAIRN_FAILPOINT=pack-stored:3` makes a debug build kill
//! itself with SIGKILL the third time a backup reaches that point, so that a test of a killed run
//! hits exactly the moment it names instead of guessing it with sleeps; `…:stop` stops it with
//! SIGSTOP instead, so that a test can act while it holds its leases. Release builds, the ones
//! deployed, ignore the variable: the failpoint exists only with debug assertions.

use cairn_engine::backup::Hook;

/// The backup hook that `CAIRN_FAILPOINT` asks for, if any (debug builds only).
#[cfg(debug_assertions)]
pub fn backup_hook() -> Option<Hook> {
    use std::sync::atomic::{AtomicU64, Ordering};

    use cairn_engine::backup::HookPoint;

    let spec = std::env::var("CAIRN_FAILPOINT").ok()?;
    let (spec, signal) = match spec.strip_suffix(":stop") {
        // `…:stop` stops the process instead (SIGSTOP): it stays alive, holding its leases,
        // until a test sends SIGCONT or kills it.
        Some(s) => (s.to_string(), libc::SIGSTOP),
        None => (spec, libc::SIGKILL),
    };
    let (name, nth) = spec.split_once(':').unwrap_or((&spec, "1"));
    if name.starts_with("gc-") || EXPORT_POINTS.contains(&name) {
        return None;
    }
    let point = HookPoint::ALL
        .into_iter()
        .find(|p| p.name() == name)
        .unwrap_or_else(|| panic!("CAIRN_FAILPOINT: unknown point {name:?}"));
    let nth: u64 = nth
        .parse()
        .unwrap_or_else(|_| panic!("CAIRN_FAILPOINT: {nth:?} is not a count"));
    let seen = AtomicU64::new(0);
    Some(Hook(std::sync::Arc::new(move |p, _| {
        if p == point && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth {
            // SAFETY: kill(2) on our own pid; SIGKILL runs no handler and no destructor, which
            // is the point.
            unsafe {
                libc::kill(libc::getpid(), signal);
            }
        }
    })))
}

/// Release builds have no failpoints.
#[cfg(not(debug_assertions))]
pub fn backup_hook() -> Option<Hook> {
    None
}

/// The gc hook that `CAIRN_FAILPOINT=gc-condemned` (a [`cairn_engine::gc::GcPoint`] name, with
/// an optional `:N`) asks for: SIGKILL at that point (debug builds only).
#[cfg(debug_assertions)]
pub fn gc_hook() -> Option<cairn_engine::gc::GcHook> {
    use std::sync::atomic::{AtomicU64, Ordering};

    use cairn_engine::gc::GcPoint;

    let spec = std::env::var("CAIRN_FAILPOINT").ok()?;
    let (name, nth) = spec.split_once(':').unwrap_or((&spec, "1"));
    let point = GcPoint::ALL.into_iter().find(|p| p.name() == name)?;
    let nth: u64 = nth
        .parse()
        .unwrap_or_else(|_| panic!("CAIRN_FAILPOINT: {nth:?} is not a count"));
    let seen = AtomicU64::new(0);
    Some(cairn_engine::gc::GcHook(std::sync::Arc::new(move |p| {
        if p == point && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth {
            // SAFETY: kill(2) on our own pid, as in `backup_hook`.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    })))
}

/// Release builds have no failpoints.
#[cfg(not(debug_assertions))]
pub fn gc_hook() -> Option<cairn_engine::gc::GcHook> {
    None
}

/// The names of the export's points, in [`cairn_engine::export::ExportPoint`]'s order.
#[cfg(debug_assertions)]
const EXPORT_POINTS: [&str; 5] = [
    "lease-written",
    "leased",
    "archive-built",
    "archive-written",
    "before-manifest",
];

/// The export hook that `CAIRN_FAILPOINT=archive-built` (an [`ExportPoint`] name in kebab case,
/// with an optional `:N` and `:stop`) asks for: SIGKILL, or SIGSTOP, at that point (debug
/// builds only).
///
/// [`ExportPoint`]: cairn_engine::export::ExportPoint
#[cfg(debug_assertions)]
pub fn export_hook() -> Option<cairn_engine::export::ExportHook> {
    use std::sync::atomic::{AtomicU64, Ordering};

    use cairn_engine::export::ExportPoint;

    let spec = std::env::var("CAIRN_FAILPOINT").ok()?;
    let (spec, signal) = match spec.strip_suffix(":stop") {
        Some(s) => (s.to_string(), libc::SIGSTOP),
        None => (spec, libc::SIGKILL),
    };
    let (name, nth) = spec.split_once(':').unwrap_or((&spec, "1"));
    let at = EXPORT_POINTS.iter().position(|n| *n == name)?;
    let point = [
        ExportPoint::LeaseWritten,
        ExportPoint::Leased,
        ExportPoint::ArchiveBuilt,
        ExportPoint::ArchiveWritten,
        ExportPoint::BeforeManifest,
    ][at];
    let nth: u64 = nth
        .parse()
        .unwrap_or_else(|_| panic!("CAIRN_FAILPOINT: {nth:?} is not a count"));
    let seen = AtomicU64::new(0);
    Some(cairn_engine::export::ExportHook(std::sync::Arc::new(
        move |p| {
            if p == point && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth {
                // SAFETY: kill(2) on our own pid, as in `backup_hook`.
                unsafe {
                    libc::kill(libc::getpid(), signal);
                }
            }
        },
    )))
}

/// Release builds have no failpoints.
#[cfg(not(debug_assertions))]
pub fn export_hook() -> Option<cairn_engine::export::ExportHook> {
    None
}
