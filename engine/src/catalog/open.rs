//! Opening the catalog: plainly ([`Catalog::open`]), read-only beside a writer
//! ([`Catalog::open_reader`]), or matched to a repository ([`Catalog::open_for`]: a catalog of
//! another schema or repository is wiped and rebuilt, and the schema version and repository id
//! are written only once the rebuild is done). [`Catalog::rebuild`] starts from nothing.

use std::path::Path;

use rocksdb::{DB, WriteBatch};

use crate::catalog::db::{CFS, Catalog, SCHEMA_VERSION, db_options, descriptors};
use crate::catalog::sync::SyncReport;
use crate::catalog::tree_cache::TreeCache;
use crate::error::{Error, Result};
use crate::repo::Repository;

impl Catalog {
    /// Opens (creating if needed) the catalog in `<state_dir>/catalog`, without syncing it.
    pub fn open(state_dir: &Path) -> Result<Catalog> {
        let path = state_dir.join("catalog");
        std::fs::create_dir_all(state_dir).map_err(|e| {
            Error::io(
                format!("creating state directory {}", state_dir.display()),
                e,
            )
        })?;
        // Column families a newer cairn added are opened too (RocksDB refuses to open a database
        // without all of them), so that going back to an older binary keeps working.
        let mut names: Vec<String> = CFS.iter().map(|n| n.to_string()).collect();
        if let Ok(existing) = DB::list_cf(&db_options(), &path) {
            for n in existing {
                if n != "default" && !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        let db = DB::open_cf_descriptors(&db_options(), &path, descriptors(&names))
            .map_err(|e| Error::from(e).context(format!("opening catalog {}", path.display())))?;
        Catalog::over(db, path)
    }

    /// Opens an existing catalog of `repo` for reading only, without the state lock and without
    /// matching it to the store: what `ls`, `diff`, `find` and `snapshots` need, so that they run
    /// beside a nightly job that holds the catalog (RocksDB lets readers open a database that a
    /// writer holds) and cost no listing of the store. `None` when there is no catalog, or one of
    /// another schema or repository: the caller then opens it the usual way. What it shows is
    /// what the last backup or run on this state volume knew.
    pub fn open_reader(state_dir: &Path, repo: &Repository) -> Result<Option<Catalog>> {
        let path = state_dir.join("catalog");
        if !path.join("CURRENT").exists() {
            return Ok(None);
        }
        let names = match DB::list_cf(&db_options(), &path) {
            Ok(n) => n,
            Err(_) => return Ok(None),
        };
        if CFS.iter().any(|c| !names.iter().any(|n| n == c)) {
            return Ok(None);
        }
        let db =
            DB::open_cf_descriptors_read_only(&db_options(), &path, descriptors(&names), false)
                .map_err(|e| {
                    Error::from(e).context(format!("opening catalog {}", path.display()))
                })?;
        let mut cat = Catalog::over(db, path)?;
        let fits = cat.meta("schema_version")?.as_deref() == Some(SCHEMA_VERSION.as_bytes())
            && cat.meta("repo_id")?.as_deref() == Some(repo.config().id.as_bytes());
        cat.tree_cache = (!repo.reads_locally()).then(|| TreeCache::at(state_dir));
        Ok(fits.then_some(cat))
    }

    /// Opens the catalog and makes it match `repo`: rebuilt from the store if it is new, of an
    /// older schema, or of another repository; otherwise brought up to date with the store's
    /// packs and snapshots.
    pub fn open_for(state_dir: &Path, repo: &Repository) -> Result<(Catalog, SyncReport)> {
        let mut cat = Catalog::open(state_dir)?;
        let fits = cat.meta("schema_version")?.as_deref() == Some(SCHEMA_VERSION.as_bytes())
            && cat.meta("repo_id")?.as_deref() == Some(repo.config().id.as_bytes());
        let mut report = SyncReport::default();
        if !fits {
            tracing::info!(path = %cat.path.display(), "catalog is new or belongs to another repository: rebuilding it from the store");
            cat = cat.wipe()?;
            report.rebuilt = true;
        }
        cat.sync(repo, &mut report)?;
        tracing::debug!(
            rebuilt = report.rebuilt,
            packs_added = report.packs_added,
            packs_removed = report.packs_removed.len(),
            packs_unreadable = report.packs_unreadable.len(),
            snapshots_added = report.snapshots_added,
            blobs_damaged = report.blobs_damaged,
            "catalog matched to the store"
        );
        if !repo.reads_locally() {
            let cache = TreeCache::at(state_dir);
            let packs = cat.pack_sizes()?;
            // The cache only saves requests: a folder that cannot be cleaned stops nothing.
            match cache.retain(|id| packs.contains_key(id)) {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::debug!(removed, "cached tree packs the store no longer has removed")
                }
                Err(e) => tracing::warn!(error = %e, "could not clean the tree-pack cache"),
            }
            cat.tree_cache = Some(cache);
        }
        if !fits {
            // Written last: a rebuild that dies midway is redone next time.
            let mut b = WriteBatch::default();
            b.put_cf(cat.cf("meta"), "schema_version", SCHEMA_VERSION);
            b.put_cf(cat.cf("meta"), "repo_id", &repo.config().id);
            cat.db.write(b)?;
        }
        Ok((cat, report))
    }

    /// Throws everything away and rebuilds from the store (`cairn catalog rebuild`).
    pub fn rebuild(state_dir: &Path, repo: &Repository) -> Result<(Catalog, SyncReport)> {
        Catalog::open(state_dir)?.wipe()?;
        Catalog::open_for(state_dir, repo)
    }

    fn wipe(self) -> Result<Catalog> {
        let path = self.path.clone();
        drop(self.db);
        DB::destroy(&db_options(), &path)?;
        Catalog::open(path.parent().expect("catalog lives in the state dir"))
    }
}
