//! The first night in the real pod (issue 27): the pod's user (not root, no supplementary
//! groups) cannot read a share whose folders are 0750 and files 0640 of the services that write
//! them (uid and gid 3000). The night fails and publishes nothing; once the pod has the share's
//! group, the rerun of the same day publishes it. A night with one unreadable file publishes
//! with a warning, and its rerun after the fix replaces it without `--force`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use super::pod::{as_pod, assert_may_switch_users, pods_setup};
use super::{Setup, assert_exit, chown_to, stderr, stdout};

const DAY: &str = "2026-12-07";

fn share_owned_by_3000(root: &Path) {
    for entry in walk(root) {
        chown_to(&entry, 3000, 3000);
        let mode = if entry.is_dir() { 0o750 } else { 0o640 };
        fs::set_permissions(&entry, fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

fn report(s: &Setup) -> Value {
    serde_json::from_slice(
        &fs::read(
            s.dir
                .path()
                .join(format!("exports/_reports/{DAY}/run.json")),
        )
        .unwrap(),
    )
    .unwrap()
}

#[test]
#[ignore = "needs root to switch to the pod's user (CI runs scripts/test.sh as root)"]
fn a_share_the_pod_cannot_read_fails_the_night_and_the_rerun_after_the_fix_publishes_it() {
    assert_may_switch_users();
    let s = Setup::new();
    let root = s.dir.path();
    let metrics = pods_setup(&s);
    fs::write(
        s.src().join("notetaking/todo.md"),
        "- renew the domain\n".repeat(200),
    )
    .unwrap();
    fs::create_dir(s.src().join("images/2026")).unwrap();
    fs::write(
        s.src().join("images/2026/cat.jpg"),
        super::seeded(1 << 20, 27),
    )
    .unwrap();
    fs::write(s.src().join("backup/router.json"), "{\"ssid\": \"home\"}\n").unwrap();
    share_owned_by_3000(&s.src());
    fs::set_permissions(s.src(), fs::Permissions::from_mode(0o755)).unwrap();

    let out = as_pod(&s, "", &["init", "--exists-ok"]);
    assert_exit(&out, 0);

    // The night as shipped: nothing of the share can be read. It fails, publishes nothing.
    let out = as_pod(&s, "", &["run", "--date", DAY]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("source folders notetaking (Permission denied (os error 13)), images (Permission denied (os error 13)), backup (Permission denied (os error 13)) cannot be read"),
        "{}",
        stderr(&out)
    );
    assert!(
        !root.join(format!("exports/{DAY}")).exists(),
        "no archive for the day"
    );
    let r = report(&s);
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["failed_folders"][1]["folder"], "images", "{r}");
    assert_eq!(
        r["failed_folders"][1]["error"], "Permission denied (os error 13)",
        "{r}"
    );
    let prom = fs::read_to_string(metrics.join("cairn_backup.prom")).unwrap();
    assert!(prom.contains("cairn_backup_success 0"), "{prom}");
    assert!(
        prom.contains("cairn_backup_folder_failed{folder=\"images\"} 1"),
        "{prom}"
    );
    let list = as_pod(&s, "", &["exports", "list"]);
    assert_eq!(
        stdout(&list).lines().count(),
        1,
        "only the header: {}",
        stdout(&list)
    );

    // The operator gives the pod the share's group and reruns the Job the same day.
    let out = as_pod(&s, "3000", &["--json", "run", "--date", DAY]);
    assert_exit(&out, 0);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backup"]["summary"]["files"], 3, "{v}");
    assert!(v["export"]["size"].as_u64().unwrap() > 1 << 20, "{v}");
    let prom = fs::read_to_string(metrics.join("cairn_backup.prom")).unwrap();
    assert!(
        prom.contains("cairn_backup_folder_failed{folder=\"images\"} 0"),
        "{prom}"
    );
    let list = as_pod(&s, "3000", &["exports", "list"]);
    assert!(
        stdout(&list).contains(&format!("{DAY} complete")),
        "{}",
        stdout(&list)
    );

    // The next day: one file the group may not read. Published, with a warning naming it.
    let next = "2026-12-08";
    let secret = s.src().join("notetaking/diary.md");
    fs::write(&secret, "dear diary\n").unwrap();
    chown_to(&secret, 3000, 3000);
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let out = as_pod(&s, "3000", &["--json", "run", "--date", next]);
    assert_exit(&out, 3);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["backup"]["warnings"][0]["path"], "notetaking/diary.md",
        "{v}"
    );
    assert_eq!(v["backup"]["warnings"][0]["kind"], "unreadable", "{v}");
    let list = as_pod(&s, "3000", &["exports", "list"]);
    assert!(
        stdout(&list).contains(&format!("{next} warnings")),
        "{}",
        stdout(&list)
    );

    // Fixed, and rerun the same day: the day is replaced without --force, now whole.
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o640)).unwrap();
    let out = as_pod(&s, "3000", &["--json", "run", "--date", next]);
    assert_exit(&out, 0);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["export"]["written"], true, "{v}");
    assert_eq!(v["backup"]["summary"]["files"], 4, "{v}");
    let list = as_pod(&s, "3000", &["exports", "list"]);
    assert!(
        stdout(&list).contains(&format!("{next} complete")),
        "{}",
        stdout(&list)
    );

    // A top folder the pod may list but not enter fails the night too (nothing published).
    let third = "2026-12-05";
    fs::set_permissions(s.src().join("images"), fs::Permissions::from_mode(0o744)).unwrap();
    let out = as_pod(&s, "3000", &["run", "--date", third]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out)
            .contains("source folder images (Permission denied (os error 13)) cannot be read"),
        "{}",
        stderr(&out)
    );
    assert!(!root.join(format!("exports/{third}")).exists());
    fs::set_permissions(s.src().join("images"), fs::Permissions::from_mode(0o750)).unwrap();

    // A clean day is still refused without --force when its content changed, however often
    // the rerun is tried (a refused run's failed report is not the published night's).
    fs::write(
        s.src().join("images/2026/cat.jpg"),
        super::seeded(1 << 20, 28),
    )
    .unwrap();
    chown_to(&s.src().join("images/2026/cat.jpg"), 3000, 3000);
    for _ in 0..2 {
        let out = as_pod(&s, "3000", &["run", "--date", next]);
        assert_exit(&out, 1);
        assert!(
            stderr(&out).contains("refusing to replace it (use --force)"),
            "{}",
            stderr(&out)
        );
    }
}
