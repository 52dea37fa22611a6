//! Content identifiers. Chunks, trees, packs and snapshots are all named by the BLAKE3 hash of
//! their bytes, so equal content gets an equal name and a name can always be re-checked.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A 32-byte BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// The id of `data`.
    pub fn of(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The first 8 hex characters, as shown to people.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Id> {
        let bad = || Error::usage(format!("not a 64-digit hex id: {s:?}"));
        let digits = s.as_bytes();
        if digits.len() != 64 {
            return Err(bad());
        }
        // Straight into the array: trees name every chunk in hex, and a notes tree's walk
        // decoded ids through a vector each.
        let mut arr = [0u8; 32];
        for (b, pair) in arr.iter_mut().zip(digits.chunks_exact(2)) {
            *b = hex_val(pair[0]).ok_or_else(bad)? << 4 | hex_val(pair[1]).ok_or_else(bad)?;
        }
        Ok(Id(arr))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads an id from exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Id> {
        let arr: [u8; 32] = b
            .try_into()
            .map_err(|_| Error::corrupt(format!("id of {} bytes, want 32", b.len())))?;
        Ok(Id(arr))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = Error;
    fn from_str(s: &str) -> Result<Id> {
        Id::from_hex(s)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Id, D::Error> {
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 64-digit hex id")
            }
            // Borrowed or not, the digits are read in place: no string is made per id.
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Id, E> {
                Id::from_hex(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Hex)
    }
}

/// `N` random bytes from the kernel: the engine's one random source (repository ids, lease
/// nonces and waits, temporary and probe names).
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    fill_random(&mut b)?;
    Ok(b)
}

/// `len` random bytes from the kernel, in hex (`2 * len` characters).
pub(crate) fn random_hex(len: usize) -> Result<String> {
    let mut b = vec![0u8; len];
    fill_random(&mut b)?;
    Ok(hex(&b))
}

/// Fills `buf` from the kernel's random source (`getrandom(2)`).
fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::io("reading random bytes from the kernel", e.into()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Decodes hex (either case); `None` on odd length or a non-hex digit.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| Some(hex_val(p[0])? << 4 | hex_val(p[1])?))
        .collect()
}

/// The value of one hex digit (either case).
fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = Id::of(b"cairn");
        assert_eq!(Id::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(id.short().len(), 8);
        assert!(Id::from_hex("abc").is_err());
        assert!(Id::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn random_bytes_differ_and_random_hex_has_its_length() {
        let a = random_bytes::<16>().unwrap();
        let b = random_bytes::<16>().unwrap();
        assert_ne!(a, b);
        let h = random_hex(8).unwrap();
        assert_eq!(h.len(), 16);
        assert!(unhex(&h).is_some());
    }
}
