//! The offsite client: configured, runnable, with a writable scratch directory and a session
//! that can list the remote.

use super::finding::{Finding, Status, finding};
use crate::config::Config;

/// The offsite client: configured, runnable, and with a session that can list the remote.
pub(super) fn offsite(cfg: &Config) -> Vec<Finding> {
    let o = &cfg.offsite;
    let up = match o.uploader() {
        Ok(u) => u,
        Err(e) => return vec![finding("offsite client", Status::Fail, e.to_string())],
    };
    let mut out = Vec::new();
    let scratch = o.scratch_dir.as_path();
    let probe = std::fs::create_dir_all(scratch).and_then(|()| tempfile::tempfile_in(scratch));
    out.push(match probe {
        Ok(_) => finding(
            "offsite scratch",
            Status::Ok,
            format!("{} is writable", scratch.display()),
        ),
        Err(e) => finding(
            "offsite scratch",
            Status::Fail,
            format!(
                "{} is not writable ({e}) (offsite.scratch_dir)",
                scratch.display()
            ),
        ),
    });
    let timeout = std::time::Duration::from_secs(o.timeout_secs.min(120));
    out.push(match up.days(timeout) {
        Ok(days) => finding(
            "offsite session",
            Status::Ok,
            format!("{}: listed, {} days there", up.describe(), days.len()),
        ),
        Err(e) => finding(
            "offsite session",
            Status::Fail,
            crate::offsite::process::redact(&format!(
                "{}: cannot list the remote: {e}",
                up.describe()
            )),
        ),
    });
    out
}
