//! `cairn init` against an S3 server without the configured bucket: made where the key may, named
//! with the `mc mb` command where it may not.

use std::fs;
use std::process::Command;

use super::{Setup, s3_endpoint, s3_region, stderr};

/// `cairn init` against a server without the configured bucket: a key that may not create it
/// fails in one line naming the bucket and the `mc mb` command, having written nothing; a key
/// that may (CreateBucket) makes it, and a second init finds it.
#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn init_creates_a_missing_bucket_where_the_key_may_and_names_mc_mb_where_not() {
    let endpoint = s3_endpoint();
    let s = Setup::new();
    let bucket = format!("init-{}", jiff::Timestamp::now().as_nanosecond());
    let region = s3_region();
    fs::write(
        &s.config,
        format!(
            "[source]\nroot = \"{root}/src\"\n\
             [store]\nkind = \"s3\"\nendpoint = \"{endpoint}\"\nregion = \"{region}\"\nbucket = \"{bucket}\"\nprefix = \"store\"\npath_style = true\n\
             [exports]\nkind = \"s3\"\nendpoint = \"{endpoint}\"\nregion = \"{region}\"\nbucket = \"{bucket}\"\nprefix = \"exports\"\npath_style = true\n\
             [state]\ndir = \"{root}/state\"\n",
            root = s.dir.path().display()
        ),
    )
    .unwrap();
    let exists = || {
        Command::new("aws")
            .args([
                "s3api",
                "head-bucket",
                "--bucket",
                &bucket,
                "--endpoint-url",
                &endpoint,
            ])
            .args(["--region", &region])
            .env_remove("AWS_CA_BUNDLE")
            .output()
            .unwrap()
            .status
            .success()
    };
    let out = s.run(&["init"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("bucket {bucket} does not exist"))
            && err.contains(&format!("mc mb ALIAS/{bucket}"))
            && err.contains("may not create it"),
        "{err}"
    );
    assert!(!exists(), "the refused init made the bucket");
    let creator = |args: &[&str]| {
        s.cmd(args)
            .env(
                "AWS_ACCESS_KEY_ID",
                std::env::var("CAIRN_S3_TEST_CREATE_KEY_ID").unwrap(),
            )
            .env(
                "AWS_SECRET_ACCESS_KEY",
                std::env::var("CAIRN_S3_TEST_CREATE_SECRET").unwrap(),
            )
            .output()
            .unwrap()
    };
    let out = creator(&["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("created bucket {bucket}")), "{said}");
    let out = creator(&["init", "--exists-ok"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("created bucket"));
}
