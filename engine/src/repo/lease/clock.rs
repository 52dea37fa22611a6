//! The time as leases see it: the store's clock (every holder compares expiries on one clock,
//! whatever its own machine says), read through a [`LeaseClock`] so that tests can move it
//! instead of sleeping through a time to live.

use std::sync::Mutex;
use std::time::Duration;

use crate::error::Result;
use crate::store::Store;

/// Where leases read the time and how they wait: the store's clock and real sleeps
/// ([`StoreClock`]), or in tests a [`SimulatedClock`] that moves only when told or when a lease
/// waits on it, so that expiry, takeover and patience are tested without sleeping.
pub trait LeaseClock: Send + Sync + std::fmt::Debug {
    /// Now, by `store`'s clock.
    fn now(&self, store: &dyn Store) -> Result<jiff::Timestamp>;
    /// Waits `d` before a lease tries again.
    fn sleep(&self, d: Duration);
    /// Time since an arbitrary start that never jumps: how long a contender has waited is
    /// measured on it, not on a store's clock, which may step.
    fn monotonic(&self) -> Duration;
}

/// This process's monotonic time.
fn process_monotonic() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// The store's clock (see [`Store::clock`]), optionally read as if it ran `ahead`, and real
/// sleeps.
#[derive(Debug, Default)]
pub struct StoreClock {
    ahead: Duration,
}

impl LeaseClock for StoreClock {
    fn now(&self, store: &dyn Store) -> Result<jiff::Timestamp> {
        store_now_ahead(store, self.ahead)
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
    fn monotonic(&self) -> Duration {
        process_monotonic()
    }
}

/// A clock for tests: the store's, plus however far the test (or a lease's own waits) moved it.
#[derive(Debug, Default)]
pub struct SimulatedClock {
    ahead: Mutex<Duration>,
}

impl SimulatedClock {
    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut a = self.ahead.lock().expect("poisoned");
        *a = a.saturating_add(d);
    }

    /// How far it has been moved in all.
    pub fn moved(&self) -> Duration {
        *self.ahead.lock().expect("poisoned")
    }
}

impl LeaseClock for SimulatedClock {
    fn now(&self, store: &dyn Store) -> Result<jiff::Timestamp> {
        store_now_ahead(store, self.moved())
    }
    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
    fn monotonic(&self) -> Duration {
        process_monotonic() + self.moved()
    }
}

static PROCESS_CLOCK: std::sync::OnceLock<StoreClock> = std::sync::OnceLock::new();

/// The clock of every lease that brings none of its own: the store's.
pub(super) fn process_clock() -> &'static StoreClock {
    PROCESS_CLOCK.get_or_init(StoreClock::default)
}

/// Makes this process read every store's clock `ahead` of what it says, before any lease is
/// taken (`false` if too late). For end-to-end tests of the CLI only (its debug builds read
/// `CAIRN_TEST_CLOCK_AHEAD_SECS`): a second process can find a first one's lease lapsed without
/// a test sleeping through its time to live.
pub fn set_process_clock_ahead(ahead: Duration) -> bool {
    PROCESS_CLOCK.set(StoreClock { ahead }).is_ok()
}

/// The current time on the store's clock ([`Store::clock`]), or this machine's where the store
/// keeps none (as this process reads it: see [`set_process_clock_ahead`]).
pub fn store_now(store: &dyn Store) -> Result<jiff::Timestamp> {
    process_clock().now(store)
}

/// The store's own clock (or this machine's where the store has none), read `ahead`.
fn store_now_ahead(store: &dyn Store, ahead: Duration) -> Result<jiff::Timestamp> {
    let now = store.clock()?.unwrap_or_else(jiff::Timestamp::now);
    Ok(now.checked_add(ahead).unwrap_or(jiff::Timestamp::MAX))
}
