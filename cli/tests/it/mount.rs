//! `cairn mount` with real FUSE (scripts/test.sh runs these; without /dev/fuse and fusermount3
//! they fail, never skip): a mounted snapshot is the source to `diff -r`, `stat` (modes,
//! nanosecond times, link counts, owners), `readlink` and `dd` at random offsets of a 100 MiB
//! file; a day's archive reads one note from S3 by a sliver of its bytes; reads stay right
//! beside a backup and a gc; `find` over 200,000 files keeps the mount small; a busy mount
//! point is refused in one line; SIGTERM unmounts cleanly.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

const DAY: &str = "2026-12-01";

/// A running `cairn mount`, unmounted when dropped (a failed test leaves no mount behind).
struct Mounted {
    child: Option<Child>,
    at: PathBuf,
}

impl Mounted {
    /// Starts `cmd` (a `cairn mount` of `at`) and waits until `at/probe` exists.
    fn start(mut cmd: Command, at: &Path, probe: &str) -> Mounted {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut m = Mounted {
            child: Some(child),
            at: at.to_path_buf(),
        };
        let t = Instant::now();
        while !at.join(probe).exists() {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                let mut said = String::new();
                std::io::Read::read_to_string(
                    m.child.as_mut().unwrap().stderr.as_mut().unwrap(),
                    &mut said,
                )
                .unwrap();
                m.child = None;
                panic!("cairn mount ended ({status}) before mounting: {said}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "not mounted after 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    /// Peak RSS of the mount process so far, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().unwrap().id();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    }

    /// SIGTERM: the mount must unmount and exit 0; returns what it said on stderr.
    fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        // SAFETY: signals our own child.
        unsafe { libc_kill(child.id() as i32, 15) };
        let out = wait_with_timeout(&mut child, Duration::from_secs(30));
        assert_eq!(
            out.0.code(),
            Some(0),
            "cairn mount after SIGTERM: {}",
            out.1
        );
        assert!(!mounted(&self.at), "still mounted after SIGTERM");
        out.1
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signals our own child.
            unsafe { libc_kill(c.id() as i32, 15) };
            let _ = wait_with_timeout(&mut c, Duration::from_secs(10));
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.at)
                .status();
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn wait_with_timeout(child: &mut Child, d: Duration) -> (std::process::ExitStatus, String) {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut said = String::new();
            if let Some(e) = child.stderr.as_mut() {
                let _ = std::io::Read::read_to_string(e, &mut said);
            }
            return (st, said);
        }
        if t.elapsed() > d {
            let _ = child.kill();
            panic!("cairn mount did not end within {d:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mounted(at: &Path) -> bool {
    let at = fs::canonicalize(at).unwrap_or(at.to_path_buf());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(at.to_str().unwrap()))
}

/// FUSE must be here: scripts/test.sh installs fuse3, and CI runs as root with /dev/fuse.
fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "no /dev/fuse: the mount tests need FUSE"
    );
    assert!(
        Command::new("fusermount3").arg("-V").output().is_ok(),
        "no fusermount3 (Debian's fuse3): the mount tests need it"
    );
}

/// The awkward test tree, the CLI's way: odd names, deep and empty folders, symlinks (dangling,
/// absolute, escaping), a hardlink pair, set-uid, private and sticky modes, times before 1970,
/// after 2100 and to the nanosecond, and a 100 MiB file of random bytes.
fn awkward(src: &Path) {
    let w = |p: &str, data: &[u8]| {
        let p = src.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    };
    w("notetaking/plain.txt", b"hello, notes\n");
    w("notetaking/empty.txt", b"");
    fs::create_dir_all(src.join("notetaking/empty-dir")).unwrap();
    w("notetaking/café ☕ notes.md", "unicode ✓".as_bytes());
    w(
        &format!("notetaking/{}.md", "L".repeat(252)),
        b"a 255-byte name",
    );
    let deep = (0..20)
        .map(|i| format!("level-{i:02}-{}", "x".repeat(40)))
        .collect::<Vec<_>>()
        .join("/");
    w(&format!("notetaking/deep/{deep}/leaf.txt"), b"deep leaf");
    w(
        "notetaking/text.md",
        &b"# Notes\nsome words that compress well.\n".repeat(40_000),
    );
    w("images/photo.jpg", &seeded(3 << 20, 1));
    w("images/album/big.raw", &seeded(100 << 20, 2));
    symlink("does/not/exist", src.join("backup/dangling")).unwrap();
    symlink("/etc/passwd", src.join("backup/absolute")).unwrap();
    symlink("../../../../etc", src.join("backup/escaping")).unwrap();
    w("backup/hard-a", b"one inode, two names");
    fs::create_dir_all(src.join("backup/sub")).unwrap();
    fs::hard_link(src.join("backup/hard-a"), src.join("backup/sub/hard-b")).unwrap();
    w("backup/modes/setuid", b"#!/bin/sh\n");
    fs::set_permissions(
        src.join("backup/modes/setuid"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    w("backup/modes/private", b"secret");
    fs::set_permissions(
        src.join("backup/modes/private"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::create_dir_all(src.join("backup/modes/sticky")).unwrap();
    fs::set_permissions(
        src.join("backup/modes/sticky"),
        fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    w("backup/times/old", b"1960");
    set_mtime(&src.join("backup/times/old"), -315_619_200, 0);
    w("backup/times/future", b"2200");
    set_mtime(&src.join("backup/times/future"), 7_258_118_400, 999_999_999);
    w("backup/times/nanos", b"ns");
    set_mtime(&src.join("backup/times/nanos"), 1_700_000_000, 123_456_789);
    set_mtime(&src.join("backup/dangling"), 1_600_000_000, 42);
    set_mtime(&src.join("backup/times"), 1_234_567_890, 5);
}

/// `stat` of every path below `root`, as `stat -c` prints mode, links, owner and the time to
/// the nanosecond, by relative path.
fn stats(root: &Path) -> Vec<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . -mindepth 1 -print0 | sort -z | xargs -0 stat -c '%n %F %a %h %u:%g %.9Y %s'")
        .arg("sh")
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        // A folder's size is the file system's business; everything else must match.
        .map(|l| {
            if l.contains(" directory ") {
                l.rsplit_once(' ').unwrap().0.to_string()
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// Reads `len` bytes at `off` of `f` with `dd`, as a user checking a file would.
fn dd(f: &Path, off: u64, len: u64) -> Vec<u8> {
    let out = Command::new("dd")
        .arg(format!("if={}", f.display()))
        .args([
            "bs=65536".to_string(),
            format!("skip={off}"),
            format!("count={len}"),
            "iflag=skip_bytes,count_bytes".into(),
            "status=none".into(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    out.stdout
}

fn mount_cmd(s: &Setup, at: &Path, extra: &[&str]) -> Command {
    let mut args = vec!["mount", at.to_str().unwrap()];
    args.extend_from_slice(extra);
    s.cmd(&args)
}

/// The awkward tree backed up and exported by one night in `s`, mounted and checked.
fn night_mounted(s: &Setup) -> (PathBuf, Mounted) {
    awkward(&s.src());
    assert_exit(&s.run(&["init"]), 0);
    assert_exit(&s.run(&["run", "--date", DAY]), 0);
    let mp = s.dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let m = Mounted::start(mount_cmd(s, &mp, &[]), &mp, "snapshots");
    check_mounted_tree(&s.src(), &mp);
    (mp, m)
}

/// What a mounted snapshot and day must show of the awkward tree at `src`.
fn check_mounted_tree(src: &Path, mp: &Path) {
    let snap = mp.join("snapshots").join(DAY);
    for folder in ["notetaking", "images", "backup"] {
        same_tree(&snap.join(folder), &src.join(folder));
        assert_eq!(
            stats(&snap.join(folder)),
            stats(&src.join(folder)),
            "stat of {folder}"
        );
    }
    assert_eq!(
        fs::read_link(snap.join("backup/escaping")).unwrap(),
        Path::new("../../../../etc")
    );
    assert_eq!(
        fs::read_link(mp.join("latest")).unwrap(),
        Path::new(&format!("snapshots/{DAY}"))
    );
    let big = snap.join("images/album/big.raw");
    let want = fs::read(src.join("images/album/big.raw")).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = x % (100 << 20);
        let len = 1 + (x >> 40) % (3 << 20);
        let end = (off + len).min(100 << 20) as usize;
        assert!(
            dd(&big, off, len) == want[off as usize..end],
            "dd at {off}+{len}"
        );
    }
    let day = mp.join("archives").join(DAY);
    for folder in ["notetaking", "images", "backup"] {
        same_tree(&day.join(folder), &src.join(folder));
    }
}

#[test]
#[ignore = "needs FUSE (/dev/fuse, fusermount3)"]
fn a_mounted_snapshot_and_day_are_the_source() {
    require_fuse();
    let s = Setup::new();
    let (mp, m) = night_mounted(&s);
    // A mount point that is not empty, or holds cairn's own state, is refused in one line.
    let full = s.dir.path().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("x"), b"x").unwrap();
    for (at, why) in [(full.as_path(), "not empty"), (s.dir.path(), "state.dir")] {
        let out = s.run(&["mount", at.to_str().unwrap()]);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(why), "{err}");
    }
    // A second mount on the same point is refused in one line naming it.
    let busy = s.run(&["mount", mp.to_str().unwrap()]);
    assert_ne!(busy.status.code(), Some(0));
    let err = stderr(&busy);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("busy") && err.contains(mp.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
    m.stop();
    assert_eq!(
        fs::read_dir(&mp).unwrap().count(),
        0,
        "the mount point is empty again"
    );
}

/// The S3 store and exports on the test server: the same tree through the mount, and one note
/// of the day's archive read by fewer than 1% of the archive's bytes (the mount's own count of
/// its requests, logged at exit).
#[test]
#[ignore = "needs FUSE and the S3 test server"]
fn on_s3_a_note_of_a_day_costs_a_sliver_of_its_archive() {
    require_fuse();
    let endpoint = s3_endpoint();
    let s = Setup::new();
    let prefix = s3_prefix("mount");
    fs::write(&s.config, s3_config(&s, &endpoint, &prefix, "")).unwrap();
    let (mp, m) = night_mounted(&s);
    m.stop();

    // Only the archives: no repository is opened.
    let (code, days) = s.json(&["exports", "list"]);
    assert_eq!(code, 0);
    let archive_size = days[0]["archive_size"].as_u64().unwrap();
    let mut cmd = mount_cmd(&s, &mp, &["--archives-only"]);
    cmd.env("CAIRN_LOG", "cairn_engine=debug");
    let m = Mounted::start(cmd, &mp, "archives");
    assert!(!mp.join("snapshots").exists());
    let note = fs::read(mp.join("archives").join(DAY).join("notetaking/plain.txt")).unwrap();
    assert_eq!(note, b"hello, notes\n");
    let said = m.stop();
    let exports_bucket = std::env::var("CAIRN_S3_TEST_EXPORTS_BUCKET").unwrap();
    let read: u64 = said
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "S3 requests made" && v["bucket"] == exports_bucket.as_str())
        .map(|v| v["bytes_read"].as_u64().unwrap())
        .sum();
    assert!(read > 0, "no count of the exports' requests logged: {said}");
    assert!(
        read * 100 < archive_size,
        "read {read} bytes of a {archive_size}-byte archive for one note"
    );
    eprintln!("one note of the day: {read} bytes read of a {archive_size}-byte archive");
}

/// A mounted snapshot read beside a backup and a gc that repacks and deletes the packs its
/// file was in (grace 0): a file opened before the gc reads on, equal to the source, a fresh
/// open too, and the new snapshot appears in `snapshots/` without a remount.
#[test]
#[ignore = "needs FUSE (/dev/fuse, fusermount3)"]
fn a_mount_reads_right_beside_a_backup_and_a_gc() {
    use std::io::{Read, Seek, SeekFrom};
    require_fuse();
    let s = Setup::new();
    let src = s.src();
    let kept = seeded(6 << 20, 11);
    fs::write(src.join("images/kept.raw"), &kept).unwrap();
    fs::write(src.join("images/gone.raw"), seeded(20 << 20, 12)).unwrap();
    assert_exit(&s.run(&["init"]), 0);
    assert_exit(&s.run(&["backup", "--date", "2026-12-01"]), 0);
    fs::remove_file(src.join("images/gone.raw")).unwrap();
    fs::write(src.join("notetaking/new.md"), b"the second night").unwrap();
    assert_exit(&s.run(&["backup", "--date", "2026-12-02"]), 0);

    let mp = s.dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mut cmd = mount_cmd(&s, &mp, &["--no-archives"]);
    cmd.env("CAIRN_LOG", "cairn_engine=info");
    let m = Mounted::start(cmd, &mp, "snapshots");
    let path = mp.join("snapshots/2026-12-02/images/kept.raw");
    let mut open = fs::File::open(&path).unwrap();
    let mut head = vec![0; 1 << 20];
    open.read_exact(&mut head).unwrap();
    assert!(head == kept[..1 << 20]);

    // Beside the mount: a third night, the first forgotten, and a gc that repacks at once.
    fs::write(src.join("notetaking/third.md"), b"the third night").unwrap();
    fs::write(
        src.join("notetaking/unread.md"),
        b"never read through the mount",
    )
    .unwrap();
    assert_exit(&s.run(&["backup", "--date", "2026-12-03"]), 0);
    assert_exit(&s.run(&["forget", "2026-12-01"]), 0);
    let gc = s.run(&[
        "--json",
        "gc",
        "--set",
        "gc.grace=0h",
        "--set",
        "gc.unsafe_short_grace=true",
        "--set",
        "gc.repack_dead_percent=30",
    ]);
    assert_exit(&gc, 0);
    let report: Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert!(
        report["packs_deleted"].as_u64().unwrap_or(0) > 0,
        "the gc deleted no pack, so the test proves nothing: {report}"
    );

    // The rest of the file through the handle opened before the gc, then a fresh open.
    open.seek(SeekFrom::Start(3 << 20)).unwrap();
    let mut tail = Vec::new();
    open.read_to_end(&mut tail).unwrap();
    assert!(tail == kept[3 << 20..], "read on after the gc");
    assert!(
        fs::read(&path).unwrap() == kept,
        "a fresh open after the gc"
    );
    assert_eq!(
        fs::read(mp.join("snapshots/2026-12-02/notetaking/new.md")).unwrap(),
        b"the second night"
    );
    // The new night appears without a remount (the catalog is looked at again).
    let t = Instant::now();
    while !mp.join("snapshots/2026-12-03").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the third night never appeared"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        fs::read(mp.join("latest/notetaking/third.md")).unwrap(),
        b"the third night"
    );
    drop(open);
    m.stop();
}

/// `find` over 200,000 tiny files through the mount: every name is found and the mount's
/// peak RSS stays bounded (the kernel's forgotten nodes leave its table), printed for
/// docs/BENCHMARKS.md.
#[test]
#[ignore = "needs FUSE (/dev/fuse, fusermount3)"]
fn find_over_200000_files_keeps_the_mount_small() {
    require_fuse();
    let s = Setup::new();
    let root = s.src().join("notetaking");
    for d in 0..200 {
        let dir = root.join(format!("d{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            fs::write(dir.join(format!("n{f:04}.md")), format!("{d}/{f}\n")).unwrap();
        }
    }
    assert_exit(&s.run(&["init"]), 0);
    assert_exit(&s.run(&["backup", "--date", DAY]), 0);
    let mp = s.dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let m = Mounted::start(mount_cmd(&s, &mp, &["--no-archives"]), &mp, "snapshots");
    let t = Instant::now();
    let out = Command::new("find")
        .arg(mp.join("snapshots").join(DAY))
        // `-size` makes find stat every file: a lookup of each through the mount.
        .args(["-type", "f", "-size", "-100c"])
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 200_000);
    let peak = m.peak_rss_kib();
    eprintln!(
        "find over 200,000 files: {:.1} s, mount peak RSS {} MiB",
        took.as_secs_f64(),
        peak / 1024
    );
    assert!(
        peak < 256 * 1024,
        "the mount's peak RSS was {} MiB",
        peak / 1024
    );
    // A file deep in the walk reads back.
    assert_eq!(
        fs::read(
            mp.join("snapshots")
                .join(DAY)
                .join("notetaking/d199/n0999.md")
        )
        .unwrap(),
        b"199/999\n"
    );
    m.stop();
}
