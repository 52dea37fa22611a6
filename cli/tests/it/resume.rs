//! A first night longer than the CronJob's `activeDeadlineSeconds`: the kubelet kills the pod
//! (SIGKILL once the grace is over) between packs (the uploads in flight then are lost), and the
//! next night resumes. What the killed night made durable in the store is found again and not
//! uploaded a second time.

use std::fs;

use super::{Setup, killed_at, s3_config, s3_endpoint, s3_prefix, s3_test_store, seeded};
use cairn_engine::store::Store;

/// The bytes of every pack in the store.
fn pack_bytes(store: &dyn Store) -> u64 {
    store.list("packs/").unwrap().iter().map(|o| o.size).sum()
}

/// Night one is killed after its sixth pack is stored; night two after all its packs are stored
/// (just before the snapshot is written, the last moment a deadline can take); night three
/// completes, on a new state volume (the worst case: a lost PVC, so the killed nights' packs are
/// known only from the store's listing and their trailers, not from the catalog they were
/// recorded in). Night two uploads no more than night one left to do, night three less than a
/// tenth of what the killed nights uploaded, and the store ends holding each byte once.
#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn a_night_killed_at_its_deadline_is_resumed_without_uploading_its_packs_again() {
    let endpoint = s3_endpoint();
    let s = Setup::new();
    let prefix = s3_prefix("resume");
    let bucket = std::env::var("CAIRN_S3_TEST_BUCKET").unwrap();
    let mut cfg = s3_config(&s, &endpoint, &prefix, "");
    cfg.push_str("[backup]\npack_size_mib = 4\n");
    fs::write(&s.config, cfg).unwrap();
    // 48 MiB that does not compress: about a dozen 4 MiB packs.
    let data: u64 = 24 * (2 << 20);
    for i in 0..24 {
        fs::write(
            s.src().join(format!("images/{i:02}.raw")),
            seeded(2 << 20, 500 + i),
        )
        .unwrap();
    }
    fs::write(s.src().join("notetaking/todo.md"), "- first night\n").unwrap();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    let store = s3_test_store(&endpoint, &bucket, &format!("{prefix}/store"));

    killed_at(&s, &["-q", "run"], "pack-stored:6");
    let first = pack_bytes(&store);
    assert!(
        first >= 6 * (3 << 20) && first < data,
        "night one stored {first} bytes of packs before it was killed"
    );

    killed_at(&s, &["-q", "run"], "before-commit:1");
    let second = pack_bytes(&store) - first;
    assert!(
        second <= (data - first) + (data - first) / 10 + (1 << 20),
        "night two uploaded {second} bytes; night one had left {} to do",
        data - first
    );

    let fresh = format!("state.dir={}/state-new", s.dir.path().display());
    let (code, v) = s.json(&["--set", &fresh, "run"]);
    assert_eq!(code, 0, "{v}");
    let third = pack_bytes(&store) - first - second;
    assert!(
        third * 10 < first + second,
        "the resumed night uploaded {third} bytes, the killed nights {}",
        first + second
    );
    // Nothing stored twice across the three nights (frames and trailers cost a little).
    let total = first + second + third;
    eprintln!(
        "packs stored: night one {first}, night two {second}, night three {third} bytes, for {data} bytes of data"
    );
    assert!(
        total < data + data / 20,
        "{total} bytes of packs for {data} bytes of data"
    );
    assert_eq!(v["backup"]["summary"]["files"], 25, "{v}");
    // What night three's packer wrote, whether or not a pack came out byte-identical to one
    // already there (the store's growth alone would not show such a re-upload).
    let written = v["backup"]["summary"]["stored_bytes"].as_u64().unwrap();
    assert!(
        written * 10 < first + second,
        "the resumed night wrote {written} bytes of packs, the killed nights {}",
        first + second
    );
}
