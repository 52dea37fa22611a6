//! The configuration's unit tests: overrides in order, refused values named, secrets unprinted.

use super::*;

#[test]
fn overrides_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[source]\nroot = \"/a\"\n[store]\npath = \"/s\"\n").unwrap();
    let env = vec![
        ("CAIRN_SOURCE_ROOT".to_string(), "/b".to_string()),
        ("CAIRN_SOURCE_FOLDERS".to_string(), "x, y".to_string()),
        ("CAIRN_BACKUP_COMPRESSION".to_string(), "5".to_string()),
        ("CAIRN_STORE_PATH_STYLE".to_string(), "false".to_string()),
        ("CAIRN_CONFIG".to_string(), "ignored".to_string()),
        (
            "CAIRN_S3_TEST_BUCKET".to_string(),
            "not configuration".to_string(),
        ),
        ("CAIRN_TIMEZONE".to_string(), "Europe/Berlin".to_string()),
    ];
    let cfg = Config::load(Some(&file), &env, &["source.root=/c".into()]).unwrap();
    assert_eq!(cfg.source.root, PathBuf::from("/c"));
    assert_eq!(cfg.source.folders, vec!["x", "y"]);
    assert_eq!(cfg.backup.compression, 5);
    assert!(!cfg.store.path_style);
    assert_eq!(cfg.store.path, Some(PathBuf::from("/s")));
    assert_eq!(cfg.timezone, "Europe/Berlin");
}

/// An offsite remote of `/` (or of a section alone) is a configuration error, never a panic,
/// whatever the uploader (every command loads the configuration).
#[test]
fn a_root_offsite_remote_is_refused_in_one_line() {
    for (uploader, remote) in [
        ("rclone", "/"),
        ("proton-drive", "/"),
        ("proton-drive", "/my-files"),
        ("proton-drive", "/my-files/../x"),
    ] {
        let e = Config::load(
            None,
            &[],
            &[
                format!("offsite.uploader={uploader}"),
                format!("offsite.remote={remote}"),
            ],
        )
        .unwrap_err();
        assert_eq!(
            e.kind(),
            crate::error::ErrorKind::Config,
            "{uploader} {remote}: {e}"
        );
    }
    Config::load(
        None,
        &[],
        &[
            "offsite.uploader=proton-drive".into(),
            "offsite.remote=/my-files/Backups/x".into(),
        ],
    )
    .unwrap();
}

#[test]
fn bad_input_is_named() {
    let e = Config::load(None, &[("CAIRN_STORE_COLOUR".into(), "red".into())], &[]).unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
    let e = Config::load(None, &[], &["backup.compression=99".into()]).unwrap_err();
    assert!(e.to_string().contains("compression"), "{e}");
    let e = Config::load(None, &[], &["source.folders=../etc".into()]).unwrap_err();
    assert!(e.to_string().contains("../etc"), "{e}");
    let e = Config::load(None, &[], &["source.folders=notes,images,notes".into()]).unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let e = Config::load(None, &[], &["timezone=Mars/Olympus".into()]).unwrap_err();
    assert!(e.to_string().contains("Mars"), "{e}");
    let e = Config::load(None, &[], &["log.progress_interval_s=100000".into()]).unwrap_err();
    assert!(e.to_string().contains("progress_interval_s"), "{e}");
    // CAIRN_LOG is the log filter, not configuration; CAIRN_LOG_* are `[log]` keys.
    let env = [
        ("CAIRN_LOG".to_string(), "debug".to_string()),
        ("CAIRN_LOG_PROGRESS_INTERVAL_S".to_string(), "5".to_string()),
    ];
    assert_eq!(
        Config::load(None, &env, &[])
            .unwrap()
            .log
            .progress_interval_s,
        5
    );
}

/// Credentials in the Pushgateway URL are refused, whatever the rest of the URL, in a
/// message that does not repeat them.
#[test]
fn credentials_in_the_pushgateway_url_are_refused_unprinted() {
    let pw = "Zq9-url-secret";
    for url in [
        format!("http://cairn:{pw}@gw:9091"),
        format!("http://cairn:{pw}@gw:9091/prefix"),
        format!("https://cairn:{pw}@gw"),
        format!("cairn:{pw}@gw:9091"),
        format!("http://{pw}@gw"),
    ] {
        let set = format!("metrics.pushgateway={url}");
        let e = Config::load(None, &[], &[set]).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.kind(), crate::error::ErrorKind::Config, "{url}: {msg}");
        assert!(msg.contains("metrics.pushgateway"), "{msg}");
        assert!(!msg.contains(pw), "{url}: {msg}");
    }
    // An `@` in the path is no credential.
    Config::load(
        None,
        &[],
        &["metrics.pushgateway=http://gw:9091/a@b".into()],
    )
    .unwrap();
    // A typo in the section must not echo the value either.
    let set = format!("metric.pushgateway=http://cairn:{pw}@gw:9091");
    let msg = Config::load(None, &[], &[set]).unwrap_err().to_string();
    assert!(
        msg.contains("metric.pushgateway") && !msg.contains(pw),
        "{msg}"
    );
}

/// The Pushgateway's password comes from `CAIRN_PUSHGATEWAY_PASSWORD_FILE` (or the variable)
/// with `metrics.pushgateway_user`, reaches the sink, and shows in no `Debug` or serialized
/// configuration; in the file or a `--set` it is an unknown key.
#[test]
fn the_pushgateway_password_comes_from_a_secret() {
    let pw = "Zq9-file-secret";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{pw}\n")).unwrap();
    let env = vec![(
        "CAIRN_PUSHGATEWAY_PASSWORD_FILE".to_string(),
        file.display().to_string(),
    )];
    let sets = [
        "metrics.pushgateway=http://gw:9091".to_string(),
        "metrics.pushgateway_user=cairn".to_string(),
    ];
    let cfg = Config::load(None, &env, &sets).unwrap();
    let auth = cfg.metrics.sink().auth.unwrap();
    assert_eq!((auth.user.as_str(), auth.password.expose()), ("cairn", pw));
    assert!(!format!("{cfg:?} {:?}", cfg.metrics.sink()).contains(pw));
    assert!(!serde_json::to_string(&cfg).unwrap().contains(pw));
    // The variable wins over the file, as with the S3 keys.
    let both = [
        env[0].clone(),
        (
            "CAIRN_PUSHGATEWAY_PASSWORD".to_string(),
            "other".to_string(),
        ),
    ];
    let cfg = Config::load(None, &both, &sets).unwrap();
    assert_eq!(cfg.metrics.sink().auth.unwrap().password.expose(), "other");

    for (env, sets, named) in [
        (vec![], sets.to_vec(), "CAIRN_PUSHGATEWAY_PASSWORD_FILE"),
        (env.clone(), vec![], "metrics.pushgateway_user is not"),
        (
            vec![],
            vec![format!("metrics.pushgateway_password={pw}")],
            "pushgateway_password",
        ),
        (
            env.clone(),
            vec!["metrics.pushgateway_user=a:b".to_string()],
            "without ':'",
        ),
    ] {
        let msg = Config::load(None, &env, &sets).unwrap_err().to_string();
        assert!(msg.contains(named) && !msg.contains(pw), "{msg}");
    }
    let missing = vec![(
        "CAIRN_PUSHGATEWAY_PASSWORD_FILE".to_string(),
        "/nonexistent/password".to_string(),
    )];
    let msg = Config::load(None, &missing, &sets).unwrap_err().to_string();
    assert!(msg.contains("/nonexistent/password"), "{msg}");
}

/// The retry policy of each store is configurable, with per-backend defaults, and checked.
#[test]
fn retry_policy_is_configured_per_store() {
    let cfg = Config::load(
        None,
        &[],
        &[
            "store.retry_attempts=9".into(),
            "store.retry_base_ms=50".into(),
            "exports.kind=s3".into(),
            "exports.bucket=b".into(),
        ],
    )
    .unwrap();
    assert_eq!(
        cfg.store.retry_policy(),
        RetryPolicy {
            attempts: 9,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(5),
            budget: Duration::from_secs(30),
        }
    );
    assert_eq!(
        cfg.exports.retry_policy(),
        RetryPolicy {
            attempts: u32::MAX,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
            budget: Duration::from_secs(300),
        }
    );
    for (bad, named) in [
        ("store.retry_attempts=0", "store.retry_attempts"),
        ("exports.retry_attempts=1001", "exports.retry_attempts"),
        (
            "exports.retry_budget_secs=3601",
            "exports.retry_budget_secs",
        ),
        ("store.retry_base_ms=0", "store.retry_base_ms"),
        ("store.retry_base_ms=6000", "store.retry_base_ms"),
        ("exports.retry_max_ms=300001", "exports.retry_base_ms"),
    ] {
        let e = Config::load(None, &[], &[bad.into()]).unwrap_err();
        assert!(e.to_string().contains(named), "{bad}: {e}");
    }
}
