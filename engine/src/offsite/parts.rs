//! A day's three files — the archive, its `.sha256` and its manifest — as the exports hold them,
//! and the check of the remote's listing of the day against them. Read once per day by the plan,
//! they serve both the check of a day marked uploaded and every attempt of an upload.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::status::Check;
use super::uploader::{RemoteFile, Wanted};
use crate::error::{Error, ErrorKind, Result};
use crate::export::DayKeys;
use crate::store::{ObjectReader, Store};

/// The same failure again, for a second use of one result (its message and kind): a day's files
/// are read once, and a failure to read them is reported by the check and by each attempt.
pub(super) fn again(e: &Error) -> Error {
    Error::new(e.kind(), e.to_string())
}

/// The SHA-256 a day's `.sha256` object names, checked to be 64 hex digits.
fn expected_sha256(exports: &dyn Store, keys: &DayKeys) -> Result<(String, Vec<u8>)> {
    let bytes = exports.get(&keys.sha256)?;
    let hex = String::from_utf8_lossy(&bytes)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::corrupt(format!("{} holds no SHA-256", keys.sha256)));
    }
    Ok((hex, bytes))
}

/// Reads through, hashing what passes.
pub(super) struct Hashing<R> {
    pub(super) inner: R,
    pub(super) hash: Sha256,
    pub(super) len: u64,
}

impl<R> Hashing<R> {
    /// `inner`, nothing read yet.
    pub(super) fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

pub(super) fn sha256_hex(data: &[u8]) -> String {
    crate::id::hex(&Sha256::digest(data))
}

/// One file of a day to put on the remote.
#[derive(Debug, Clone)]
pub(super) struct Part {
    pub(super) name: String,
    /// The key in the exports location.
    pub(super) key: String,
    pub(super) size: u64,
    /// Known ahead for the archive (its `.sha256`) and the `.sha256` itself; the manifest,
    /// which grows with the number of files, is streamed and hashed only if the remote lists a
    /// hash to compare with.
    pub(super) sha256: Option<String>,
    /// The `.sha256` object, held in memory (under 1 KiB).
    pub(super) bytes: Option<Vec<u8>>,
}

/// The three files of a day as they should be on the remote: name, key, size.
pub(super) fn parts_of(exports: &dyn Store, keys: &DayKeys) -> Result<Vec<Part>> {
    let (sha, sha_bytes) = expected_sha256(exports, keys)?;
    let listed = exports.list(&format!("{}/", keys.date))?;
    let size_of = |k: &str| {
        listed
            .iter()
            .find(|o| o.key == k)
            .map(|o| o.size)
            .ok_or_else(|| Error::not_found(format!("{k} is not in the exports")))
    };
    let name_of = |k: &str| k.rsplit('/').next().expect("DATE/NAME").to_string();
    Ok(vec![
        Part {
            name: name_of(&keys.archive),
            key: keys.archive.clone(),
            size: size_of(&keys.archive)?,
            sha256: Some(sha),
            bytes: None,
        },
        Part {
            name: name_of(&keys.sha256),
            key: keys.sha256.clone(),
            size: sha_bytes.len() as u64,
            sha256: Some(sha256_hex(&sha_bytes)),
            bytes: Some(sha_bytes),
        },
        Part {
            name: name_of(&keys.manifest),
            key: keys.manifest.clone(),
            size: size_of(&keys.manifest)?,
            sha256: None,
            bytes: None,
        },
    ])
}

/// The files of a day as a listing asks for them.
pub(super) fn wanted(parts: &[Part]) -> Vec<Wanted<'_>> {
    parts
        .iter()
        .map(|p| Wanted {
            name: &p.name,
            size: Some(p.size),
        })
        .collect()
}

/// Whether the remote's listing of a day holds each part under its exact name and size (other
/// names, a client's temporary files among them, do not count), and the same SHA-256 where the
/// remote gives one; `Ok` says whether every file's hash was compared or sizes only. `Err` says
/// what differs.
pub(super) fn check_listed(
    exports: &dyn Store,
    date: &str,
    parts: &[Part],
    listed: &[RemoteFile],
) -> Result<Check> {
    let mut check = Check::Sha256;
    for p in parts {
        let Some(r) = listed.iter().find(|r| r.name == p.name) else {
            return Err(Error::new(
                ErrorKind::Io,
                format!("{date}/{} is not on the remote", p.name),
            ));
        };
        if r.size != p.size {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{date}/{} is {} bytes on the remote, {} in the exports",
                    p.name, r.size, p.size
                ),
            ));
        }
        if r.sha256.is_none() {
            check = Check::Size;
        }
        if let Some(h) = &r.sha256 {
            let ours = match &p.sha256 {
                Some(s) => s.clone(),
                None => {
                    let mut h = Hashing::new(ObjectReader::open(exports, &p.key)?);
                    std::io::copy(&mut h, &mut std::io::sink())
                        .map_err(|e| Error::io(format!("reading {}", p.key), e))?;
                    crate::id::hex(&h.hash.finalize())
                }
            };
            if *h != ours {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("{date}/{} has another SHA-256 on the remote", p.name),
                ));
            }
        }
    }
    Ok(check)
}
