//! One walker (issue 30): a crafted snapshot gets the same decision from every command that
//! walks trees — ls, find, diff, check, export, restore and gc. Three crafts: a `tree` on an
//! entry that is not a directory, a chain of directories deeper than a path may reach, and a
//! tree that names itself (a "cycle" of tree ids, stored under an id its bytes do not hash to).
//! Each command runs on a fresh copy of the crafted repository, so no command's healing (a
//! damaged copy noted in the catalog) colours another's decision.

use cairn_engine::check::{self, ReadData};
use cairn_engine::codec;
use cairn_engine::export::{self, ExportOptions};
use cairn_engine::gc::{self, GcOptions};
use cairn_engine::pack::{BlobKind, PackBuilder};
use cairn_engine::restore::{self, Overwrite, RestoreOptions};
use cairn_engine::snapshot::Snapshot;
use cairn_engine::store::LocalStore;
use cairn_engine::tree::{EntryKind, Tree};
use cairn_engine::{ErrorKind, Id, query, read};

use crate::bounds::{add_tree, crafted_snapshot, deep_chain};
use crate::common::*;

#[derive(Debug, Clone, Copy)]
enum Craft {
    TreeOnAFile,
    DeepChain,
    SelfNamingTree,
}

/// A fresh repository holding the craft as its one snapshot, and the empty tree's id (stored
/// too, so that `diff` has something to compare with).
fn crafted(craft: Craft) -> (Env, Snapshot, Id) {
    let (env, snap) = match craft {
        Craft::DeepChain => {
            let (env, _, snap) = deep_chain(3000);
            (env, snap)
        }
        Craft::TreeOnAFile => {
            let env = Env::new();
            let mut pb = PackBuilder::default();
            let empty = add_tree(&mut pb, &Tree::default());
            let mut file = dir_entry(b"x", empty);
            file.kind = EntryKind::File;
            let f = add_tree(
                &mut pb,
                &Tree {
                    entries: vec![file],
                },
            );
            let root = add_tree(
                &mut pb,
                &Tree {
                    entries: vec![dir_entry(b"f", f)],
                },
            );
            let (_, snap) = crafted_snapshot(&env, vec![pb], "f", root);
            (env, snap)
        }
        Craft::SelfNamingTree => {
            let env = Env::new();
            let mut pb = PackBuilder::default();
            let claimed = Id::of(b"a tree that lists itself");
            let (_, bytes) = Tree {
                entries: vec![dir_entry(b"loop", claimed)],
            }
            .encode();
            pb.add(
                BlobKind::Tree,
                claimed,
                &codec::encode(&bytes, 3).unwrap(),
                bytes.len(),
            );
            let root = add_tree(
                &mut pb,
                &Tree {
                    entries: vec![dir_entry(b"c", claimed)],
                },
            );
            let (_, snap) = crafted_snapshot(&env, vec![pb], "c", root);
            (env, snap)
        }
    };
    // The empty tree, in a pack of its own (the deep chain holds one already; a second copy
    // is harmless).
    let mut pb = PackBuilder::default();
    let empty = add_tree(&mut pb, &Tree::default());
    let (pid, bytes, _) = pb.finish();
    env.repo
        .store()
        .put(&cairn_engine::repo::pack_key(&pid), &bytes)
        .unwrap();
    (env, snap, empty)
}

/// What one command decided on the craft: the kind of the error it stopped with, or for
/// `check` (which reports instead of stopping) `Corrupt` when it reported a damaged tree.
fn decision(craft: Craft, command: &str) -> Result<ErrorKind, String> {
    let (env, snap, empty) = crafted(craft);
    let cat = env.catalog();
    let outcome: cairn_engine::Result<()> = match command {
        "ls" => read::walk_tree(&env.repo, &cat, &snap.root, &mut |_, _| Ok(())),
        "find" => query::find(&env.repo, &cat, "*").map(drop),
        "diff" => query::diff(&env.repo, &cat, &empty, &snap.root).map(drop),
        "check" => {
            drop(cat);
            let (cat, sync) =
                cairn_engine::catalog::Catalog::open_for(&env.state, &env.repo).unwrap();
            let report = check::check(&env.repo, &cat, &sync, ReadData::All, false).unwrap();
            // A tree that fails to decode, or a blob that fails its id: damage either way,
            // reported by path rather than stopping the check.
            let damaged = report
                .problems
                .iter()
                .filter(|p| matches!(p.kind.as_str(), "corrupt_tree" | "corrupt_blob"))
                .count();
            return match (damaged, report.problems.len()) {
                (0, _) => Err(format!(
                    "check reported no damaged tree: {:?}",
                    report.problems
                )),
                (d, n) if d < n => Err(format!(
                    "check reported more than damage: {:?}",
                    report.problems
                )),
                _ => Ok(ErrorKind::Corrupt),
            };
        }
        "export" => {
            let sid = env.repo.put_snapshot(&snap).unwrap();
            let exports = LocalStore::open(env.dir.path().join("exports")).unwrap();
            let opts = ExportOptions {
                date: "2026-11-29".into(),
                level: 3,
                force: false,
                hook: None,
            };
            let r = export::export(&env.repo, &cat, &exports, (&sid, &snap), &opts).map(drop);
            assert!(
                !env.dir.path().join("exports/2026-11-29").exists()
                    || std::fs::read_dir(env.dir.path().join("exports/2026-11-29"))
                        .unwrap()
                        .all(|e| !e
                            .unwrap()
                            .file_name()
                            .to_string_lossy()
                            .ends_with(".tar.zst")),
                "{craft:?}: a refused export published an archive"
            );
            r
        }
        "restore" => {
            let target = env.dir.path().join("target");
            let r = restore::restore(
                &env.repo,
                &cat,
                &snap,
                &RestoreOptions {
                    target: target.clone(),
                    paths: vec![],
                    overwrite: Overwrite::Never,
                    verify: false,
                },
            )
            .map(drop);
            let written = std::fs::read_dir(&target).map_or(0, |d| d.count());
            assert_eq!(
                written, 0,
                "{craft:?}: a refused restore wrote {written} entries"
            );
            r
        }
        "gc" => {
            let packs = env.repo.list_packs().unwrap().len();
            let r = gc::gc(
                &env.repo,
                &cat,
                &GcOptions {
                    grace: std::time::Duration::ZERO,
                    repack_dead_percent: 20,
                    now: None,
                    assume_forgotten: Default::default(),
                    lease_ttl: std::time::Duration::from_secs(60),
                    dry_run: false,
                    hook: None,
                    held: None,
                },
            )
            .map(drop);
            assert_eq!(
                env.repo.list_packs().unwrap().len(),
                packs,
                "{craft:?}: a gc that refused the snapshot deleted packs"
            );
            r
        }
        other => unreachable!("{other}"),
    };
    match outcome {
        Ok(()) => Err(format!("{command} accepted the craft")),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.contains('\n'),
                "{command} on {craft:?}: not one line: {msg}"
            );
            Ok(e.kind())
        }
    }
}

#[test]
fn every_command_that_walks_decides_alike_on_crafted_trees() {
    let commands = ["ls", "find", "diff", "check", "export", "restore", "gc"];
    for craft in [Craft::TreeOnAFile, Craft::DeepChain, Craft::SelfNamingTree] {
        let decisions: Vec<(&str, Result<ErrorKind, String>)> =
            commands.iter().map(|c| (*c, decision(craft, c))).collect();
        for (command, d) in &decisions {
            assert_eq!(
                d,
                &Ok(ErrorKind::Corrupt),
                "{craft:?}: {command} decided otherwise than refusing a corrupt tree; all: {decisions:?}"
            );
        }
    }
}
