//! Leases in a store: mutual exclusion between writers that share nothing but the store.
//!
//! Two pods (or a lost state volume and a manual job) can write the same day of the exports
//! location at once, each with its own state directory, so a `flock` on the state volume does
//! not see the other. Object stores offer no rename and some (Garage) ignore conditional writes,
//! so the lease uses only `put`, `list`, `get` and `delete`:
//!
//! 1. the contender writes its own object `<prefix><nonce>.json` (holder, pid, start, expiry);
//! 2. it lists `<prefix>`; if no *other* live lease is listed, it holds the lease;
//! 3. otherwise it deletes its object, waits a random moment and tries again, a few times,
//!    then gives up with an error of kind `Locked` that names the holder.
//!
//! Safety needs only that a listing shows every object whose `put` returned before the listing
//! started (the [`Store::list`] contract): if A and B both went ahead, A listed before B's put
//! returned and B listed after it, hence after A's put returned — so B saw A. Both may back off
//! at once; the random wait makes a retry win. A lease expires (its holder died) after its TTL;
//! while held it is refreshed every third of the TTL, and [`Lease::confirm`] checks that it was
//! not taken over (its object gone, replaced or ended, or its last successful write lapsed)
//! before the holder does something irrevocable. A lease of this host whose
//! process is gone is taken over at once, so a killed run does not block its own rerun.
//!
//! Every time a lease writes or judges is read off the store's clock ([`Store::clock`]: the S3
//! server's `Date`, a local file system's times), not this machine's: a pod whose clock runs
//! two hours ahead would otherwise judge every other holder's lease lapsed and take it over.

mod clock;

use clock::process_clock;
pub use clock::{LeaseClock, SimulatedClock, StoreClock, set_process_clock_ahead, store_now};

use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::store::Store;

/// How many times a contender tries before it reports the holder.
const ATTEMPTS: u32 = 5;
/// The bounds of a contender's waits between tries (the shared backoff: from 40–80 ms, doubling,
/// up to 5–10 s).
const CONTENTION_WAIT: Duration = Duration::from_millis(80);
const MAX_CONTENTION_WAIT: Duration = Duration::from_secs(10);
/// The largest object read as a lease.
const MAX_OBJECT: u64 = 64 * 1024;
/// How long `cairn backup`, `run`, `export` and `restore` wait for exclusive leases of the
/// repository (gc deleting) to end before they give up — or longer, until it lapses, for one
/// whose holder stopped refreshing it (a gc killed while deleting).
pub const EXCLUSIVE_PATIENCE: Duration = Duration::from_secs(10 * 60);
/// The longest time-to-live a lease may be taken for.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// How far another machine's clock may run ahead before its leases are not believed.
const CLOCK_SLACK: Duration = Duration::from_secs(600);

/// The content of one lease object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// What the lease is for (`publishing 2026-11-29`).
    pub purpose: String,
    /// Host name (the pod name in Kubernetes).
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// The kernel's boot id and the process's pid namespace: two processes with one host name
    /// (pods with `hostNetwork`) but different namespaces or machines never judge each other's
    /// pids. Empty in leases of older writers.
    #[serde(default)]
    pub machine: String,
    /// Random id of this holder; also the object's name.
    pub nonce: String,
    /// When it was first taken (RFC 3339).
    pub started: String,
    /// When it lapses unless refreshed (RFC 3339).
    pub expires: String,
    /// How it shares; leases of older writers have none and are exclusive.
    #[serde(default)]
    pub mode: LeaseMode,
}

/// How a lease shares its prefix with others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseMode {
    /// Reads, or writes that others may run beside (restore, export, forget, gc's marking and
    /// repacking): conflicts only with an exclusive lease.
    Shared,
    /// The one backup of a repository at a time (`cairn backup`, `cairn run`): conflicts with
    /// another writer and with an exclusive lease.
    Writer,
    /// Alone (gc's deleting phase, a day's export): conflicts with every other lease.
    #[default]
    Exclusive,
}

impl LeaseMode {
    /// Whether a lease of this mode and a live one of `other` cannot be held at once.
    pub fn conflicts(self, other: LeaseMode) -> bool {
        use LeaseMode::*;
        !matches!(
            (self, other),
            (Shared, Shared) | (Shared, Writer) | (Writer, Shared)
        )
    }

    /// The mode's name as written in lease objects.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseMode::Shared => "shared",
            LeaseMode::Writer => "writer",
            LeaseMode::Exclusive => "exclusive",
        }
    }
}

/// The store a lease lives in: borrowed for a lease scoped to a call, shared for one that is
/// held beside the repository it guards (the run holds it from opening the store to the end).
#[derive(Clone)]
pub enum LeaseStore<'s> {
    /// Borrowed for the lease's life.
    Borrowed(&'s dyn Store),
    /// Shared with the repository.
    Owned(Arc<dyn Store>),
    /// Either of the above, with its own clock (a test's simulated one) instead of the
    /// process's.
    Clocked(Box<LeaseStore<'s>>, Arc<dyn LeaseClock>),
}

impl std::fmt::Debug for LeaseStore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseStore")
    }
}

impl LeaseStore<'_> {
    fn get(&self) -> &dyn Store {
        match self {
            LeaseStore::Borrowed(s) => *s,
            LeaseStore::Owned(s) => s.as_ref(),
            LeaseStore::Clocked(s, _) => s.get(),
        }
    }

    fn clock(&self) -> &dyn LeaseClock {
        match self {
            LeaseStore::Clocked(_, c) => c.as_ref(),
            _ => process_clock(),
        }
    }

    /// Now, as this lease's clock reads the store's.
    fn now(&self) -> Result<jiff::Timestamp> {
        self.clock().now(self.get())
    }
}

impl LeaseInfo {
    /// Lapsed, or not credible: an expiry further ahead than any holder sets it (a pod whose
    /// clock runs far ahead, a crafted object) would otherwise hold the lease for good.
    fn expired(&self, now: jiff::Timestamp) -> bool {
        self.expires
            .parse::<jiff::Timestamp>()
            .map_or(true, |t| t <= now || t > now + MAX_TTL + CLOCK_SLACK)
    }

    /// Whether the lease still stands in anyone's way: not lapsed and its holder not gone.
    fn live(&self, now: jiff::Timestamp) -> bool {
        !self.expired(now) && !self.orphaned()
    }

    /// A lease of a process of this machine and pid namespace that no longer exists.
    fn orphaned(&self) -> bool {
        !self.machine.is_empty()
            && self.machine == machine()
            && self.host == hostname()
            && self.pid != std::process::id()
            && !process_alive(self.pid)
    }

    fn describe(&self) -> String {
        format!(
            "{} pid {} since {} (lease until {})",
            self.host, self.pid, self.started, self.expires
        )
    }
}

/// Where in [`acquire`] a [`LeaseHook`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeasePoint {
    /// The contender's own object is written and it has not listed yet.
    Written,
}

/// Called at fixed points of taking a lease; lets tests interleave two contenders exactly.
pub type LeaseHook<'h> = &'h (dyn Fn(LeasePoint) + Sync);

/// A held lease. Dropping it (or [`Lease::release`]) deletes its object.
#[derive(Debug)]
pub struct Lease<'s> {
    store: LeaseStore<'s>,
    key: String,
    info: Mutex<LeaseInfo>,
    /// The expiry of the last write of the object that succeeded: past it, the lease may have
    /// been taken over even if the object is still there.
    written_until: Mutex<jiff::Timestamp>,
    ttl: Duration,
    /// Set when the holder is done: the refresher stops.
    stopped: (Mutex<bool>, Condvar),
    deleted: bool,
    /// Set when a refresh may have put back an object another holder had already taken over
    /// (it landed after the lease lapsed): `confirm` fails from then on.
    lost: std::sync::atomic::AtomicBool,
}

/// This machine's name: `HOSTNAME` (set in every Kubernetes pod), else the kernel's.
pub fn hostname() -> String {
    if let Ok(h) = std::env::var("HOSTNAME")
        && !h.is_empty()
    {
        return h;
    }
    let mut s = String::new();
    let _ =
        std::fs::File::open("/proc/sys/kernel/hostname").and_then(|mut f| f.read_to_string(&mut s));
    let s = s.trim();
    if s.is_empty() {
        "unknown".into()
    } else {
        s.to_string()
    }
}

/// This kernel's boot id and this process's pid namespace, e.g.
/// `3f1c…:pid:[4026531836]`; empty if either cannot be read (then no lease is ever judged
/// orphaned by its pid).
pub fn machine() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if boot.trim().is_empty() || ns.is_empty() {
        return String::new();
    }
    format!("{}:{ns}", boot.trim())
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; no signal is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn nonce() -> Result<String> {
    crate::id::random_hex(16)
}

/// The leases currently listed under `prefix`, with their keys. An object that is not a lease
/// (unreadable, vanished since the listing) is left out: it cannot name a live holder.
fn listed(store: &dyn Store, prefix: &str) -> Result<Vec<(String, LeaseInfo)>> {
    let mut out = Vec::new();
    for o in store.list(prefix)? {
        // A lease is a few hundred bytes: anything large is not one, and is not read.
        if o.size > MAX_OBJECT {
            tracing::warn!(key = %o.key, size = o.size, "ignoring an object that is too large to be a lease");
            continue;
        }
        match store.get(&o.key) {
            Ok(bytes) => match serde_json::from_slice::<LeaseInfo>(&bytes) {
                Ok(info) => out.push((o.key, info)),
                Err(e) => {
                    tracing::warn!(key = %o.key, error = %e, "ignoring an object that is not a lease")
                }
            },
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The live leases below `prefix` (any depth) with their keys: not expired and not of a dead
/// process of this machine.
pub fn live(store: &dyn Store, prefix: &str) -> Result<Vec<(String, LeaseInfo)>> {
    let listed = listed(store, prefix)?;
    let now = store_now(store)?;
    Ok(listed.into_iter().filter(|(_, l)| l.live(now)).collect())
}

/// [`live`], judged by this machine's clock: for a caller that must write nothing (a dry run),
/// where reading a local store's clock would create a file.
pub fn live_by_this_clock(store: &dyn Store, prefix: &str) -> Result<Vec<(String, LeaseInfo)>> {
    let now = jiff::Timestamp::now();
    Ok(listed(store, prefix)?
        .into_iter()
        .filter(|(_, l)| l.live(now))
        .collect())
}

/// Takes the lease `prefix` (a store prefix ending in `/`, one per thing guarded) for `purpose`.
///
/// Fails with kind `Locked`, naming the holder, when another live lease stays in the way.
pub fn acquire<'s>(
    store: &'s dyn Store,
    prefix: &str,
    purpose: &str,
    ttl: Duration,
    hook: Option<LeaseHook<'_>>,
) -> Result<Lease<'s>> {
    acquire_as(
        LeaseStore::Borrowed(store),
        prefix,
        purpose,
        ttl,
        LeaseMode::Exclusive,
        &[],
        Duration::ZERO,
        hook,
    )
}

/// The live leases below `prefix` that conflict with one of `mode`, other than `own` and those
/// it stands `beside`; leases whose holders are gone or that expired are retired on the way.
fn conflicting(
    store: &dyn Store,
    prefix: &str,
    (own, beside): (&str, &[&str]),
    mode: LeaseMode,
    now: jiff::Timestamp,
) -> Result<Vec<LeaseInfo>> {
    let mut others = Vec::new();
    for (k, other) in listed(store, prefix)? {
        if k == own || beside.contains(&k.as_str()) {
            continue;
        }
        if !other.live(now) {
            if !other.expired(now) {
                tracing::warn!(key = %k, holder = %other.describe(), purpose = %other.purpose,
                    "taking over a lease whose holder is gone");
            } else if other.expires != jiff::Timestamp::UNIX_EPOCH.to_string() {
                // (A lease ended by a key that may not delete is rewritten to expire at the
                // epoch: that one was released, not abandoned.)
                tracing::warn!(key = %k, holder = %other.describe(), purpose = %other.purpose,
                    "taking over an expired lease (its holder stopped refreshing it)");
            }
            retire(store, &k, &other);
        } else if mode.conflicts(other.mode) {
            others.push(other);
        }
    }
    Ok(others)
}

/// Takes a lease of `mode` below `prefix`: it stands beside live leases it does not conflict
/// with, and beside the leases in `beside` (keys of leases the same holder already has: gc holds
/// a shared lease, and inside `cairn run` the run's writer lease, while it takes the exclusive
/// one for deleting).
///
/// A contender that is not exclusive and finds only exclusive leases in its way keeps trying for
/// up to `patience`. Fails with kind `Locked`, naming the holder, when a conflicting live lease
/// stays in the way.
#[allow(clippy::too_many_arguments)]
pub fn acquire_as<'s>(
    store: LeaseStore<'s>,
    prefix: &str,
    purpose: &str,
    ttl: Duration,
    mode: LeaseMode,
    beside: &[&str],
    patience: Duration,
    hook: Option<LeaseHook<'_>>,
) -> Result<Lease<'s>> {
    assert!(ttl <= MAX_TTL, "lease TTLs are at most {MAX_TTL:?}");
    let store_ref = store.clone();
    let store_ref = store_ref.get();
    let nonce = nonce()?;
    let key = format!("{prefix}{nonce}.json");
    let started = store.now()?;
    let mut info = LeaseInfo {
        purpose: purpose.to_string(),
        host: hostname(),
        pid: std::process::id(),
        machine: machine(),
        nonce,
        started: started.to_string(),
        expires: String::new(),
        mode,
    };
    let mut holder;
    let began = store.clock().monotonic();
    let mut attempt = 0u32;
    // The expiry each conflicting exclusive lease had when first seen: one that never moves
    // is not being refreshed, and is waited out past the patience (its holder is gone).
    let mut first_seen: std::collections::HashMap<String, String> = Default::default();
    loop {
        let now = store.now()?;
        info.expires = (now + ttl).to_string();
        store_ref.put(&key, &serde_json::to_vec(&info).expect("leases serialize"))?;
        if let Some(h) = hook {
            h(LeasePoint::Written);
        }
        let now = store.now()?;
        let elapsed = store.clock().monotonic().saturating_sub(began);
        let others = conflicting(store_ref, prefix, (&key, beside), mode, now)?;
        if others.is_empty() {
            let written_until = info.expires.parse().expect("written above");
            return Ok(Lease {
                store,
                written_until: Mutex::new(written_until),
                key,
                info: Mutex::new(info),
                ttl,
                stopped: (Mutex::new(false), Condvar::new()),
                deleted: false,
                lost: Default::default(),
            });
        }
        retire(store_ref, &key, &info);
        // Garbage collection deletes under an exclusive lease for a short while: a backup or
        // restore waits it out (up to `patience`) rather than fail the night.
        let only_deleting =
            mode != LeaseMode::Exclusive && others.iter().all(|o| o.mode == LeaseMode::Exclusive);
        // Until when a holder that stopped refreshing is waited for: the latest expiry among
        // the blocking leases, if none of them moved since first seen.
        let stalled_until = if only_deleting && patience > Duration::ZERO {
            let mut until = Some(now);
            for o in &others {
                let seen = first_seen
                    .entry(o.nonce.clone())
                    .or_insert_with(|| o.expires.clone());
                match o.expires.parse::<jiff::Timestamp>() {
                    Ok(t) if *seen == o.expires => until = until.map(|u| u.max(t)),
                    _ => until = None,
                }
            }
            until
        } else {
            None
        };
        holder = others.into_iter().next();
        attempt += 1;
        let waiting_out =
            stalled_until.is_some_and(|u| u >= now && elapsed < patience + MAX_TTL + CLOCK_SLACK);
        if attempt >= ATTEMPTS && !(only_deleting && elapsed < patience) && !waiting_out {
            break;
        }
        if attempt == ATTEMPTS {
            tracing::info!(holder = %holder.as_ref().map(LeaseInfo::describe).unwrap_or_default(),
                "waiting for an exclusive lease of the store to end");
        }
        // Random, growing waits (the shared backoff, at most 5 s): two contenders that saw each
        // other rarely meet again.
        store.clock().sleep(crate::backoff::backoff(
            CONTENTION_WAIT,
            MAX_CONTENTION_WAIT,
            attempt,
        ));
    }
    let holder = holder.expect("set when an attempt fails");
    Err(Error::new(
        ErrorKind::Locked,
        format!(
            "{purpose}: held by {} for {} ({} lease)",
            holder.describe(),
            holder.purpose,
            holder.mode.as_str()
        ),
    ))
}

/// Makes the lease at `key` lapse: deletes it, or, where the key may not delete (the nightly key
/// of docs/OPERATIONS.md has no `s3:DeleteObject`), puts it back as expired. A failure of both
/// only costs a wait until its expiry, so it is logged, never raised.
fn retire(store: &dyn Store, key: &str, info: &LeaseInfo) {
    let Err(e) = store.delete(key) else {
        return;
    };
    let expired = LeaseInfo {
        expires: jiff::Timestamp::UNIX_EPOCH.to_string(),
        ..info.clone()
    };
    if let Err(e2) = store.put(
        key,
        &serde_json::to_vec(&expired).expect("leases serialize"),
    ) {
        tracing::warn!(key, error = %e, error2 = %e2, "could not end a lease; it lapses at its expiry");
    }
}

impl Lease<'_> {
    /// The lease object's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The holder's record.
    pub fn info(&self) -> LeaseInfo {
        self.info.lock().expect("poisoned").clone()
    }

    /// Runs `work` while a scoped thread keeps the lease alive (rewriting its object every
    /// third of the TTL); the refreshing stops when `work` returns or panics. Holds follow each
    /// other; they do not nest.
    pub fn hold<T>(&self, work: impl FnOnce() -> T) -> T {
        struct Stop<'a, 'b>(&'a Lease<'b>);
        impl Drop for Stop<'_, '_> {
            fn drop(&mut self) {
                self.0.stop();
            }
        }
        // Each hold refreshes anew: a lease held for one stage and then for the next (the run
        // holds it for the catalog sync, then for the night) must not lapse in the second.
        *self.stopped.0.lock().expect("poisoned") = false;
        std::thread::scope(|s| {
            s.spawn(|| self.keep_alive());
            let _stop = Stop(self);
            work()
        })
    }

    fn keep_alive(&self) {
        let (lock, cv) = &self.stopped;
        let mut done = lock.lock().expect("poisoned");
        while !*done {
            let (d, timeout) = cv.wait_timeout(done, self.ttl / 3).expect("poisoned");
            done = d;
            if *done || !timeout.timed_out() {
                continue;
            }
            // A lease object someone else removed or ended (they judged it expired) is not put
            // back: the lease is lost, and `confirm` says so before the next irrevocable step.
            match self.still_mine() {
                Ok(()) => {}
                // The store did not answer (a server restarting): nothing says the lease is
                // gone, so the next round tries again; `confirm` fails meanwhile if it lapses.
                Err(why @ UNREADABLE) => {
                    tracing::warn!(key = %self.key, why, "could not check the lease; trying again at the next refresh");
                    continue;
                }
                Err(why) => {
                    tracing::warn!(key = %self.key, why, "not refreshing the lease");
                    return;
                }
            }
            let until = *self.written_until.lock().expect("poisoned");
            let expires = match self.store.now() {
                // Lapsed already: another holder may have taken it over since the check above,
                // and a write now could put it back under them.
                Ok(now) if now >= until => {
                    tracing::warn!(key = %self.key, "the lease lapsed before it could be refreshed; it is lost");
                    self.lost.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                Ok(now) => now + self.ttl,
                Err(e) => {
                    tracing::warn!(key = %self.key, error = %e, "could not refresh a lease (the store's clock cannot be read)");
                    continue;
                }
            };
            let bytes = {
                let mut info = self.info.lock().expect("poisoned");
                info.expires = expires.to_string();
                serde_json::to_vec(&*info).expect("leases serialize")
            };
            match self.store.get().put(&self.key, &bytes) {
                // A write that landed after the lease lapsed (retried for a while) may have put
                // back an object a contender had retired: the lease counts as lost.
                Ok(()) if self.store.now().is_ok_and(|now| now < until) => {
                    *self.written_until.lock().expect("poisoned") = expires
                }
                Ok(()) => {
                    tracing::warn!(key = %self.key, "a lease refresh landed after the lease lapsed; it is lost");
                    self.lost.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                Err(e) => tracing::warn!(key = %self.key, error = %e, "could not refresh a lease"),
            }
        }
    }

    /// Whether the lease object is still this holder's: there, of this nonce, not ended.
    fn still_mine(&self) -> std::result::Result<(), &'static str> {
        match self.store.get().get(&self.key) {
            Err(e) if e.kind() == ErrorKind::NotFound => Err("the lease was taken away"),
            Err(_) => Err(UNREADABLE),
            Ok(bytes) => match serde_json::from_slice::<LeaseInfo>(&bytes) {
                Ok(l) if l.nonce != self.info().nonce => Err("the lease object was replaced"),
                // Ended by someone whose key may not delete: rewritten to expire at the epoch.
                Ok(l) if l.expires == jiff::Timestamp::UNIX_EPOCH.to_string() => {
                    Err("the lease was ended by another holder")
                }
                Ok(_) => Ok(()),
                Err(_) => Err("the lease object was replaced"),
            },
        }
    }

    /// Checks that the lease is still this holder's: its object is there and its own, and the
    /// last write that succeeded has not lapsed. Call it right before an irrevocable step.
    ///
    /// Other objects under the prefix are not judged: a contender puts its own object before it
    /// lists, and backs off on seeing this one, so a live lease of another is only ever a
    /// contender on its way out — unless this one lapsed, which the expiry check catches, or was
    /// taken over, which removes or ends its object.
    pub fn confirm(&self) -> Result<()> {
        let purpose = self.info().purpose;
        if self.lost.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Locked,
                format!("{purpose}: the lease lapsed before it was refreshed"),
            ));
        }
        let until = *self.written_until.lock().expect("poisoned");
        if until <= self.store.now()? {
            return Err(Error::new(
                ErrorKind::Locked,
                format!("{purpose}: the lease expired (it was not refreshed in time)"),
            ));
        }
        self.still_mine()
            .map_err(|why| Error::new(ErrorKind::Locked, format!("{purpose}: {why}")))
    }

    /// Ends the lease: deletes its object, or, with a key that may not delete, rewrites it as
    /// expired.
    pub fn release(mut self) {
        self.stop();
        self.deleted = true;
        retire(self.store.get(), &self.key, &self.info());
    }

    fn stop(&self) {
        let (lock, cv) = &self.stopped;
        *lock.lock().expect("poisoned") = true;
        cv.notify_all();
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.stop();
        if !self.deleted {
            retire(self.store.get(), &self.key, &self.info());
        }
    }
}

/// Why [`Lease::still_mine`] could not tell: the store did not answer.
const UNREADABLE: &str = "the lease object cannot be read";

/// The store prefix of the repository's leases (see [`LeaseMode`]).
pub const REPOSITORY: &str = "_leases/repository/";

/// Takes a lease of the repository whose store is `store`, for `purpose`, waiting up to
/// `patience` for a gc's deleting phase to end.
pub fn repository(
    store: Arc<dyn Store>,
    mode: LeaseMode,
    purpose: &str,
    ttl: Duration,
    patience: Duration,
) -> Result<Lease<'static>> {
    acquire_as(
        LeaseStore::Owned(store),
        REPOSITORY,
        purpose,
        ttl,
        mode,
        &[],
        patience,
        None,
    )
}
