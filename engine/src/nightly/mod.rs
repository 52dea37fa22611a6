//! The nightly job as the CronJob runs it: the checks before it starts (`preflight`), the night
//! itself in one call (`run`: backup, exports' retention, the daily archive, optionally snapshot
//! retention and gc), and the metrics every stage publishes on success and failure (`metrics`).

pub mod metrics;
pub mod preflight;
pub mod run;
