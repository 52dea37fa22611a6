//! The backup pod's situation for the CLI's tests: a user that is not root (uid and gid
//! `POD_UID`), with only the supplementary groups given, over a setup whose store, state,
//! exports and metrics directories belong to it. Switching users needs root: the tests that use
//! this are `#[ignore]`d, and fail when run (`--include-ignored`) by a user that is not root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use super::{Setup, chown_to, libc_geteuid};

/// The pod's uid and gid (the image's user).
pub const POD_UID: u32 = 65532;

/// Fails the test unless this process may switch users (is root).
pub fn assert_may_switch_users() {
    assert!(
        unsafe { libc_geteuid() } == 0,
        "not root: setpriv cannot switch to the pod's user; run the ignored tests as root, as CI runs scripts/test.sh"
    );
}

/// Makes `s` the pod's: its directories writable by [`POD_UID`], metrics written as textfiles
/// into the returned directory.
pub fn pods_setup(s: &Setup) -> PathBuf {
    let root = s.dir.path();
    let metrics = root.join("metrics");
    let mut cfg = fs::read_to_string(&s.config).unwrap();
    cfg.push_str(&format!(
        "[metrics]\ntextfile_dir = \"{}\"\n",
        metrics.display()
    ));
    fs::write(&s.config, cfg).unwrap();
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["store", "state", "exports", "metrics"] {
        fs::create_dir_all(root.join(d)).unwrap();
        chown_to(&root.join(d), POD_UID, POD_UID);
    }
    metrics
}

/// `cairn ARGS` with `s`'s configuration as the pod: [`POD_UID`], with `groups` (a comma list,
/// or empty for none) as its supplementary groups.
pub fn as_pod(s: &Setup, groups: &str, args: &[&str]) -> Output {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={POD_UID}"))
        .arg(format!("--regid={POD_UID}"));
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        c.arg(format!("--groups={groups}"));
    }
    c.arg("--")
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&s.config)
        .env_remove("CAIRN_CONFIG")
        .args(args)
        .output()
        .unwrap()
}
