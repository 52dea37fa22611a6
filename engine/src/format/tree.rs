//! Trees: one content-addressed blob per directory, listing its entries with their metadata.
//!
//! A tree is canonical JSON (entries sorted bytewise by name, fields in a fixed order), so the
//! same directory always serializes to the same bytes and an unchanged directory costs nothing
//! to store. Names and symlink targets are raw bytes: a name that is valid UTF-8 is a JSON
//! string, any other is `{"b64": "..."}`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::id::Id;

/// Bytes that are usually, but not always, UTF-8 (file names, symlink targets).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RawBytes(pub Vec<u8>);

impl std::fmt::Debug for RawBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl RawBytes {
    /// For display: invalid UTF-8 is replaced, never hidden silently in logic.
    pub fn lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RawRepr {
    Text(String),
    Bytes { b64: String },
}

impl Serialize for RawBytes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(t) => RawRepr::Text(t.to_string()),
            Err(_) => RawRepr::Bytes {
                b64: B64.encode(&self.0),
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<RawBytes, D::Error> {
        Ok(RawBytes(match RawRepr::deserialize(d)? {
            RawRepr::Text(t) => t.into_bytes(),
            RawRepr::Bytes { b64 } => B64.decode(b64).map_err(serde::de::Error::custom)?,
        }))
    }
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file; its content is `chunks`.
    File,
    /// A directory; its listing is the tree `tree`.
    Dir,
    /// A symbolic link; its target is `target`, stored and never followed.
    Symlink,
    /// A named pipe; recorded, never read.
    Fifo,
    /// A Unix socket; recorded, never read.
    Socket,
    /// A character device; `rdev` holds its number.
    Chardev,
    /// A block device; `rdev` holds its number.
    Blockdev,
}

/// What a person reads: "directory", "symbolic link", … (the serialized names are the format's).
impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EntryKind::File => "file",
            EntryKind::Dir => "directory",
            EntryKind::Symlink => "symbolic link",
            EntryKind::Fifo => "named pipe",
            EntryKind::Socket => "socket",
            EntryKind::Chardev => "character device",
            EntryKind::Blockdev => "block device",
        })
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The name's raw bytes; never empty, never contains `/` or NUL, never `.` or `..`.
    pub name: RawBytes,
    /// File, directory, symlink, ...
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time: seconds since the epoch (may be negative).
    pub mtime: i64,
    /// Modification time: nanoseconds within the second.
    pub mtime_ns: u32,
    /// Content length for files.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Content, in order, for files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<Id>,
    /// The listing, for directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<Id>,
    /// The target, for symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RawBytes>,
    /// For files with more than one link: an identity shared by all names of the same inode
    /// within one top-level folder of one snapshot (the inode number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardlink: Option<u64>,
    /// Device number, for device nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
}

impl Entry {
    /// The modification time in nanoseconds since the epoch.
    pub fn mtime_nanos(&self) -> i128 {
        i128::from(self.mtime) * 1_000_000_000 + i128::from(self.mtime_ns)
    }
}

/// A directory listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Entries sorted bytewise by name, names unique.
    pub entries: Vec<Entry>,
}

/// The largest tree blob, in bytes: readers refuse a longer one before allocating for it (the
/// format's limit; a directory of about 300,000 entries). Backup leaves out, with a warning, a
/// directory whose listing would be longer.
pub const MAX_TREE_LEN: usize = 64 << 20;

/// The longest path a snapshot may hold, in bytes, names joined by `/` below the source root:
/// Linux's PATH_MAX. It also bounds how deep trees nest (at most 2,048 levels), so that no walk
/// goes deeper than that whatever a crafted repository holds.
pub const MAX_PATH_LEN: usize = 4096;

/// A path for a one-line message: whole when short, else its start and end around `…`.
pub fn shorten(path: &[u8]) -> String {
    const HEAD: usize = 60;
    const TAIL: usize = 30;
    if path.len() <= HEAD + TAIL + 10 {
        return String::from_utf8_lossy(path).into_owned();
    }
    format!(
        "{}…{}",
        String::from_utf8_lossy(&path[..HEAD]),
        String::from_utf8_lossy(&path[path.len() - TAIL..])
    )
}

/// Refuses (kind `Corrupt`) a snapshot path longer than [`MAX_PATH_LEN`], naming it shortened.
pub fn check_path_len(path: &[u8]) -> Result<()> {
    check_path_len_of(path, path.len())
}

/// Like [`check_path_len`] for a path of `len` raw bytes shown as `shown` (a lossy rendering,
/// whose length may differ).
pub fn check_path_len_of(shown: &[u8], len: usize) -> Result<()> {
    if len > MAX_PATH_LEN {
        return Err(Error::corrupt(format!(
            "path {} ({len} bytes) is longer than the {MAX_PATH_LEN} bytes a snapshot path may hold",
            shorten(shown)
        )));
    }
    Ok(())
}

/// Whether `name` may appear in a tree: restoring it can only ever create a direct child.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

impl Tree {
    /// Sorts the entries into canonical order.
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.name.0.cmp(&b.name.0));
    }

    /// Canonical bytes and their id.
    pub fn encode(&self) -> (Id, Vec<u8>) {
        let bytes = serde_json::to_vec(self).expect("trees always serialize");
        (Id::of(&bytes), bytes)
    }

    /// Parses and validates a tree blob: names must be valid, unique and sorted.
    pub fn decode(bytes: &[u8]) -> Result<Tree> {
        if bytes.len() > MAX_TREE_LEN {
            return Err(Error::corrupt(format!(
                "tree blob of {} bytes is longer than the {MAX_TREE_LEN} a tree may hold",
                bytes.len()
            )));
        }
        let tree: Tree = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt("tree blob is not valid JSON").with_source(e))?;
        for pair in tree.entries.windows(2) {
            if pair[0].name >= pair[1].name {
                return Err(Error::corrupt(format!(
                    "tree entries out of order or duplicated at {:?}",
                    pair[1].name.lossy()
                )));
            }
        }
        if let Some(bad) = tree.entries.iter().find(|e| !valid_name(&e.name.0)) {
            return Err(Error::corrupt(format!(
                "tree holds an unsafe name {:?}",
                bad.name
            )));
        }
        // Only a directory has a listing, and every directory has one: every walk then decides
        // alike what is below an entry (`read::walk::subtree`).
        if let Some(bad) = tree
            .entries
            .iter()
            .find(|e| (e.kind == EntryKind::Dir) != e.tree.is_some())
        {
            return Err(Error::corrupt(format!(
                "tree entry {:?} is a {} {} a listing",
                bad.name,
                bad.kind,
                if bad.tree.is_some() {
                    "with"
                } else {
                    "without"
                }
            )));
        }
        if let Some(bad) = tree.entries.iter().find(|e| e.mtime_ns >= 1_000_000_000) {
            return Err(Error::corrupt(format!(
                "tree entry {:?} has {} nanoseconds in its second",
                bad.name, bad.mtime_ns
            )));
        }
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &[u8]) -> Entry {
        Entry {
            name: RawBytes(name.to_vec()),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 1,
            gid: 2,
            mtime: -5,
            mtime_ns: 7,
            size: 3,
            chunks: vec![Id::of(b"abc")],
            tree: None,
            target: None,
            hardlink: None,
            rdev: None,
        }
    }

    #[test]
    fn raw_names_round_trip() {
        let mut t = Tree {
            entries: vec![entry(b"z\xff\xfe"), entry("é".as_bytes()), entry(b"a")],
        };
        t.sort();
        let (id, bytes) = t.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#"{"b64":"ev/+"}"#), "{text}");
        let back = Tree::decode(&bytes).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.encode().0, id);
    }

    #[test]
    fn unsafe_or_unsorted_trees_are_rejected() {
        for bad in [&b"../x"[..], b"..", b"a/b", b"", b"nul\0"] {
            let t = Tree {
                entries: vec![entry(bad)],
            };
            assert!(Tree::decode(&t.encode().1).is_err(), "{bad:?}");
        }
        let t = Tree {
            entries: vec![entry(b"b"), entry(b"a")],
        };
        assert!(Tree::decode(&t.encode().1).is_err());
        let mut late = entry(b"a");
        late.mtime_ns = 1_000_000_000;
        let t = Tree {
            entries: vec![late],
        };
        assert!(Tree::decode(&t.encode().1).is_err(), "a second of 10^9 ns");
    }
}
