//! `cairn preflight`: what a night needs, checked before it starts, one finding per check.
//!
//! A misconfigured night should fail in seconds with the reason named, not hours later or
//! silently: the share unreadable by the pod's uid, a bucket nobody made, a key that may not
//! write (or, for the nightly key, one that may delete), a clock the server disagrees with, a
//! full state volume, a Pushgateway nobody listens on, an offsite client without a session.
//! Each check is read-only apart from one fixed probe object per role and location
//! (`_preflight/<role>`, overwritten each time, so a key without delete leaves no litter) and a
//! temporary file in the state directory. The findings are data; the CLI prints and exits.
//!
//! Where things are: `finding.rs` the roles and findings; `source.rs` the share, sampled as the
//! backup reads it; `state_dir.rs` the state volume; `location.rs` a bucket, the repository and
//! the key's rights; `clock.rs` this machine's clock against the store's; `offsite_client.rs`
//! the offsite client and its session.

mod clock;
mod finding;
mod location;
mod offsite_client;
mod source;
mod state_dir;

pub use finding::{Finding, Role, Status};
pub use source::{DIRS_PER_FOLDER, FILES_PER_DIR, OPENS_PER_FOLDER};

use crate::config::{Config, StoreConfig};
use clock::clock;
use finding::finding;
use location::location;
use offsite_client::offsite;
use source::source_folders;
use state_dir::state_dir;

/// Runs every check `role` needs against `cfg`, in a fixed order; never stops early, so that one
/// run names everything that is wrong.
pub fn run(cfg: &Config, role: Role) -> Vec<Finding> {
    let mut out = Vec::new();
    if role == Role::Nightly {
        out.extend(source_folders(cfg));
    }
    if role != Role::Offsite {
        out.push(state_dir(&cfg.state.dir));
    }
    let mut clock_from = None;
    let locations: &[(&StoreConfig, &str)] = match role {
        Role::Offsite => &[(&cfg.exports, "exports")],
        _ => &[(&cfg.store, "store"), (&cfg.exports, "exports")],
    };
    for (loc, section) in locations {
        let store = location(&mut out, loc, section, role);
        if clock_from.is_none() {
            clock_from = store;
        }
    }
    let first = locations[0].0;
    out.push(clock(first, clock_from.as_deref()));
    if let Some(url) = &cfg.metrics.pushgateway {
        let sink = cfg.metrics.sink();
        out.push(
            match crate::nightly::metrics::probe(url, sink.auth.as_ref()) {
                Ok(()) => finding("pushgateway", Status::Ok, format!("{url} is ready")),
                // A night without metrics still backs up; the alerts on the Pushgateway's own
                // `up` say it is down, and the failed push is a warning in the run's log.
                Err(e) => finding(
                    "pushgateway",
                    Status::Warn,
                    format!("{e}: tonight's metrics will not arrive (metrics.pushgateway)"),
                ),
            },
        );
    }
    if role == Role::Offsite {
        out.extend(offsite(cfg));
    }
    out
}

/// Whether the findings let the night run: no failure.
pub fn passed(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.status != Status::Fail)
}

#[cfg(test)]
mod tests;
