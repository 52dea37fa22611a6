//! The repository: a store plus its layout and its config object.
//!
//! Layout (keys below the store's prefix): `config`, `packs/<2 hex>/<pack id>`,
//! `snapshots/<snapshot id>`. The config object is written once by `init` and names the
//! repository (a random id the catalog is tied to) and the chunker parameters.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::format::chunk::ChunkerParams;
use crate::format::pack::{self, FOOTER_LEN, PackEntry};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::index::BlobLocation;
use crate::store::Store;

/// Current repository format version.
pub const REPO_VERSION: u32 = 1;
const CONFIG_KEY: &str = "config";
/// Prefix of pack objects.
pub const PACKS: &str = "packs/";
/// Prefix of snapshot objects.
pub const SNAPSHOTS: &str = "snapshots/";

/// The `config` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Format version; a reader must refuse a version it does not know.
    pub version: u32,
    /// Random 32-byte id in hex; the catalog belongs to exactly one repository.
    pub id: String,
    /// Chunking parameters; fixed for the life of the repository.
    pub chunker: ChunkerParams,
    /// Packs are closed once they reach this many bytes.
    pub pack_size: u64,
    /// When `init` ran (RFC 3339).
    pub created: String,
}

/// The pack sizes a repository may have: FORMAT.md's 4 to 64 MiB. A backup holds a pack's
/// frames in memory up to this size, so the bound is what keeps a damaged or hand-edited
/// `config` from making it allocate without limit (or close a pack after every blob at 0).
pub const PACK_SIZES: std::ops::RangeInclusive<u64> = (4 << 20)..=(64 << 20);

impl RepoConfig {
    /// Refuses values outside what this cairn (and FORMAT.md) allows, in one line naming the
    /// field and its range. The version is checked before, as it decides what the rest means.
    fn validate(&self) -> Result<()> {
        let bad = |what: String| {
            Error::corrupt(format!(
                "the repository config (store object `{CONFIG_KEY}`): {what}"
            ))
        };
        if self.id.len() != 64
            || !self
                .id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad(format!(
                "id {:?} is not 64 lower-case hex digits",
                self.id.chars().take(80).collect::<String>()
            )));
        }
        if !PACK_SIZES.contains(&self.pack_size) {
            return Err(bad(format!(
                "pack_size {} is outside {}..={} (4 to 64 MiB)",
                self.pack_size,
                PACK_SIZES.start(),
                PACK_SIZES.end()
            )));
        }
        if self.chunker.validate().is_err() {
            use fastcdc::v2020 as f;
            let c = &self.chunker;
            return Err(bad(format!(
                "chunker min {}, avg {}, max {} must satisfy {}..={} for min, {}..={} and a power of two for avg, {}..={} for max, and min <= avg <= max",
                c.min,
                c.avg,
                c.max,
                f::MINIMUM_MIN,
                f::MINIMUM_MAX,
                f::AVERAGE_MIN,
                f::AVERAGE_MAX,
                f::MAXIMUM_MIN,
                f::MAXIMUM_MAX
            )));
        }
        Ok(())
    }
}

/// An open repository.
#[derive(Debug, Clone)]
pub struct Repository {
    store: Arc<dyn Store>,
    config: RepoConfig,
}

/// The store key of a snapshot.
fn snapshot_key(id: &Id) -> String {
    format!("{SNAPSHOTS}{id}")
}

/// The store key of a pack.
pub fn pack_key(id: &Id) -> String {
    let hex = id.to_hex();
    format!("{PACKS}{}/{hex}", &hex[..2])
}

/// The pack id in a pack key, if it is one.
pub fn pack_id_of_key(key: &str) -> Option<Id> {
    let name = key.strip_prefix(PACKS)?.rsplit('/').next()?;
    Id::from_hex(name).ok().filter(|id| pack_key(id) == key)
}

impl Repository {
    /// Creates a repository in an empty store. Refuses (kind `Conflict`) if one exists there.
    pub fn init(
        store: Arc<dyn Store>,
        chunker: ChunkerParams,
        pack_size: u64,
    ) -> Result<Repository> {
        chunker.validate()?;
        if !PACK_SIZES.contains(&pack_size) {
            return Err(Error::config(format!(
                "pack size {pack_size} is outside {}..={} (4 to 64 MiB)",
                PACK_SIZES.start(),
                PACK_SIZES.end()
            )));
        }
        match store.get(CONFIG_KEY) {
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    "a repository already exists in this store",
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.context("checking for an existing repository")),
        }
        let config = RepoConfig {
            version: REPO_VERSION,
            // 32 random bytes from the kernel, in hex.
            id: crate::id::random_hex(32)?,
            chunker,
            pack_size,
            created: jiff::Timestamp::now().to_string(),
        };
        let bytes = serde_json::to_vec_pretty(&config).expect("config serializes");
        store.put(CONFIG_KEY, &bytes)?;
        Ok(Repository { store, config })
    }

    /// Opens the repository in `store`.
    pub fn open(store: Arc<dyn Store>) -> Result<Repository> {
        let bytes = store.get(CONFIG_KEY).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::not_found("no repository in the store (run `cairn init` first)")
            } else {
                e.context("reading the repository config")
            }
        })?;
        let config: RepoConfig = serde_json::from_slice(&bytes).map_err(|e| {
            Error::corrupt("the repository config is not valid JSON").with_source(e)
        })?;
        if config.version != REPO_VERSION {
            // Intact, of another format: not damage (a newer cairn wrote it).
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "repository format version {} is not supported (this cairn reads {REPO_VERSION})",
                    config.version
                ),
            ));
        }
        config.validate()?;
        Ok(Repository { store, config })
    }

    /// The repository config.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Every pack in the store with its size.
    pub fn list_packs(&self) -> Result<Vec<(Id, u64)>> {
        let mut out = Vec::new();
        for obj in self.store.list(PACKS)? {
            match pack_id_of_key(&obj.key) {
                Some(id) => out.push((id, obj.size)),
                None => {
                    tracing::warn!(key = %obj.key, "ignoring an object in packs/ that is not named like a pack")
                }
            }
        }
        Ok(out)
    }

    /// Reads a pack's index from its tail: one ranged read, two for unusually large indexes.
    pub fn read_pack_index(&self, id: &Id, size: u64) -> Result<Vec<PackEntry>> {
        let key = pack_key(id);
        if size < FOOTER_LEN as u64 {
            return Err(Error::corrupt(format!(
                "pack {key} is too short to hold an index"
            )));
        }
        let guess = size.min(64 * 1024);
        let mut tail = self.store.get_range(&key, size - guess, guess)?;
        let need = pack::trailer_len(&tail[tail.len() - FOOTER_LEN..])
            .map_err(|e| e.context(&key))? as u64;
        if need > size {
            return Err(Error::corrupt(format!(
                "pack {key}: index longer than the pack"
            )));
        }
        if need > guess {
            tail = self.store.get_range(&key, size - need, need)?;
        }
        pack::parse_trailer(&tail, size).map_err(|e| e.context(&key))
    }

    /// Refuses a location that claims more bytes than a blob of `kind` may hold in this
    /// repository (a chunk: the chunker's maximum; a tree: the format's limit), before anything
    /// is allocated or copied for it. Catalogs written before these bounds were checked may
    /// hold such a location.
    pub fn check_location(&self, kind: pack::BlobKind, id: &Id, loc: &BlobLocation) -> Result<()> {
        let max = match kind {
            pack::BlobKind::Data => self.config.chunker.max as usize,
            pack::BlobKind::Tree => crate::format::tree::MAX_TREE_LEN,
        };
        // A frame is never much larger than its plaintext (zstd's bound); a location that says
        // otherwise is damaged, and must not make a reader allocate or wait for it.
        let frame_max = zstd::zstd_safe::compress_bound(loc.raw_length as usize) + 64;
        if loc.length as usize > frame_max {
            return Err(Error::corrupt(format!(
                "{} blob {} claims a frame of {} bytes for {} bytes of content (pack {})",
                kind.name(),
                id.short(),
                loc.length,
                loc.raw_length,
                loc.pack.short()
            )));
        }
        if loc.raw_length as usize > max {
            return Err(Error::corrupt(format!(
                "{} blob {} claims {} bytes, more than the {max} it may hold (pack {})",
                kind.name(),
                id.short(),
                loc.raw_length,
                loc.pack.short()
            )));
        }
        Ok(())
    }

    /// Whether packs are local files (a local directory store) rather than objects read by
    /// requests: readers plan their reads by pack when they are not ([`crate::store::fetch`]).
    pub fn reads_locally(&self) -> bool {
        self.store.local_file(CONFIG_KEY).is_some()
    }

    /// Reads one blob of `kind` and checks it against its id.
    pub fn read_blob(&self, kind: pack::BlobKind, id: &Id, loc: &BlobLocation) -> Result<Vec<u8>> {
        self.check_location(kind, id, loc)?;
        let key = pack_key(&loc.pack);
        let frame = self
            .store
            .get_range(&key, u64::from(loc.offset), u64::from(loc.length))?;
        self.open_frame(kind, id, loc, &frame)
            .map_err(|e| e.context(format!("in pack {key}")))
    }

    /// The blob in `frame`, the bytes at `loc` however they were read (one range, a planned
    /// read of many, a cached pack), checked against the location's bounds and the blob's id.
    pub fn open_frame(
        &self,
        kind: pack::BlobKind,
        id: &Id,
        loc: &BlobLocation,
        frame: &[u8],
    ) -> Result<Vec<u8>> {
        self.check_location(kind, id, loc)?;
        let entry = PackEntry {
            kind,
            id: *id,
            offset: loc.offset,
            length: loc.length,
            raw_length: loc.raw_length,
        };
        pack::open_blob(&entry, frame)
    }

    /// Writes a snapshot: the commit point of a backup.
    pub fn put_snapshot(&self, snap: &Snapshot) -> Result<Id> {
        let (id, bytes) = snap.encode();
        self.store.put(&snapshot_key(&id), &bytes)?;
        Ok(id)
    }

    /// Ids of every snapshot in the store.
    pub fn list_snapshot_ids(&self) -> Result<Vec<Id>> {
        let mut out = Vec::new();
        for obj in self.store.list(SNAPSHOTS)? {
            match obj.key.strip_prefix(SNAPSHOTS).map(Id::from_hex) {
                Some(Ok(id)) => out.push(id),
                _ => {
                    tracing::warn!(key = %obj.key, "ignoring an object in snapshots/ that is not named like a snapshot")
                }
            }
        }
        Ok(out)
    }

    /// Deletes a snapshot object (retention). Its packs stay: only a garbage collection may
    /// delete them, once nothing refers to them.
    pub fn delete_snapshot(&self, id: &Id) -> Result<()> {
        self.store.delete(&snapshot_key(id))
    }

    /// Loads and checks one snapshot.
    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let bytes = self.store.get(&snapshot_key(id))?;
        Snapshot::decode(id, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    /// A repository whose `config` object has `field` replaced by `value`.
    fn with_config(field: &str, value: serde_json::Value) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        Repository::init(store.clone(), ChunkerParams::default(), 16 << 20).unwrap();
        let mut config: serde_json::Value =
            serde_json::from_slice(&store.get(CONFIG_KEY).unwrap()).unwrap();
        config[field] = value;
        store
            .put(CONFIG_KEY, &serde_json::to_vec(&config).unwrap())
            .unwrap();
        store
    }

    /// A damaged or hand-edited config object is refused on open, in one line naming the object
    /// and the allowed range, before a backup sizes a buffer by it.
    #[test]
    fn out_of_range_config_values_are_refused_on_open() {
        for pack_size in [0u64, 1, (4 << 20) - 1, (64 << 20) + 1, 5 << 30, u64::MAX] {
            let store = with_config("pack_size", pack_size.into());
            let e = Repository::open(store).unwrap_err();
            let msg = e.to_string();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{pack_size}: {msg}");
            assert!(
                msg.contains("repository config")
                    && msg.contains(&format!("pack_size {pack_size}"))
                    && msg.contains("4194304..=67108864")
                    && !msg.contains('\n'),
                "{msg}"
            );
        }
        for ok in [4u64 << 20, 64 << 20] {
            Repository::open(with_config("pack_size", ok.into())).unwrap();
        }
        let chunker = serde_json::json!({ "min": 1024, "avg": 1000, "max": 1 << 30 });
        let msg = Repository::open(with_config("chunker", chunker))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("repository config")
                && msg.contains("chunker")
                && msg.contains("16777216"),
            "{msg}"
        );
        for id in ["", "abc", "é"] {
            let msg = Repository::open(with_config("id", id.into()))
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("repository config") && msg.contains("id"),
                "{msg}"
            );
        }
        let e = Repository::init(
            Arc::new(MemoryStore::new()),
            ChunkerParams::default(),
            1 << 40,
        )
        .unwrap_err();
        assert!(e.to_string().contains("4194304..=67108864"), "{e}");
    }
}
