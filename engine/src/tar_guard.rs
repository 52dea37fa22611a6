//! A reader in front of the `tar` crate that refuses oversized metadata entries.
//!
//! The `tar` crate reads a GNU long name (`L`), long link (`K`) or pax header (`x`, `g`) whole
//! into memory before the caller sees the entry, and its size field allows gigabytes: a few
//! kilobytes of zstd can make a restore allocate all the memory there is. This wrapper follows
//! the tar stream block by block as it passes (it never buffers more than one header block and
//! one pax header) and fails with `InvalidData` when such an entry is larger than
//! [`MAX_META_ENTRY`]. It tracks pax `size` records, which override the size of the next entry
//! (files of 8 GiB and more). Where it cannot follow the stream with certainty (a header block
//! whose checksum is wrong, old GNU sparse extension blocks), it stops checking and passes the
//! rest through unchanged: the `tar` crate reports such streams itself, and a valid archive is
//! never refused for being unusual.

use std::io::{self, Read};

/// The largest long-name, long-link or pax header entry accepted: a path is at most 4096
/// bytes, and a pax header of a few records fits many times over.
pub const MAX_META_ENTRY: u64 = 64 * 1024;

/// See the module documentation.
#[derive(Debug)]
pub struct TarGuard<R> {
    inner: R,
    /// Bytes of the current header block gathered so far.
    header: Vec<u8>,
    /// Bytes of entry data (and padding) until the next header block.
    skip: u64,
    /// The data of a pax header being gathered, to find its `size` record.
    pax: Option<Vec<u8>>,
    /// Size from the last pax header, for the entry that follows it.
    pax_size: Option<u64>,
    /// Lost track of the stream: pass everything through.
    off: bool,
}

impl<R: Read> TarGuard<R> {
    /// Guards the tar stream `inner`.
    pub fn new(inner: R) -> Self {
        TarGuard {
            inner,
            header: Vec::with_capacity(512),
            skip: 0,
            pax: None,
            pax_size: None,
            off: false,
        }
    }

    /// Follows `bytes`, which were just read from the stream.
    fn follow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() && !self.off {
            if self.skip > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                if let Some(pax) = &mut self.pax {
                    pax.extend_from_slice(&bytes[..n]);
                }
                self.skip -= n as u64;
                bytes = &bytes[n..];
                if self.skip == 0
                    && let Some(pax) = self.pax.take()
                {
                    self.pax_size = pax_size(&pax);
                }
                continue;
            }
            let n = (512 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == 512 {
                let header = std::mem::take(&mut self.header);
                self.header.reserve(512);
                self.next_entry(&header)?;
            }
        }
        Ok(())
    }

    /// Reads one header block and sets up what follows it.
    fn next_entry(&mut self, h: &[u8]) -> io::Result<()> {
        if h.iter().all(|b| *b == 0) {
            return Ok(()); // end-of-archive blocks
        }
        if !checksum_ok(h) {
            self.off = true;
            return Ok(());
        }
        let kind = h[156];
        let field = parse_size(&h[124..136]);
        // GNU sparse headers may be followed by extension blocks this reader does not follow.
        if kind == b'S' && h[482] != 0 {
            self.off = true;
            return Ok(());
        }
        // As the `tar` crate does: a pax size applies to the next entry that is not itself an
        // extension header, whatever its type.
        let extension = matches!(kind, b'x' | b'g' | b'L' | b'K');
        let size = match (extension, self.pax_size) {
            (true, _) => field,
            (false, Some(pax)) => {
                self.pax_size = None;
                Some(pax)
            }
            (false, None) => field,
        };
        let Some(size) = size else {
            self.off = true;
            return Ok(());
        };
        if extension {
            if size > MAX_META_ENTRY {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a tar {} entry of {size} bytes is larger than the {MAX_META_ENTRY} bytes allowed",
                        match kind {
                            b'L' => "long-name",
                            b'K' => "long-link",
                            _ => "pax header",
                        }
                    ),
                ));
            }
            if kind == b'x' {
                self.pax = Some(Vec::with_capacity(size as usize));
            }
        }
        // The `tar` crate skips `size` bytes after every header, whatever its type.
        self.skip = size.div_ceil(512) * 512;
        if self.skip == 0
            && let Some(pax) = self.pax.take()
        {
            self.pax_size = pax_size(&pax);
        }
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.follow(&out[..n])?;
        Ok(n)
    }
}

fn checksum_ok(h: &[u8]) -> bool {
    let Some(stored) = parse_octal(&h[148..156]) else {
        return false;
    };
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(*b)
            }
        })
        .sum();
    sum == stored
}

fn parse_octal(f: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(f).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// A size field: octal text, or base-256 when the high bit of the first byte is set.
fn parse_size(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(f[0] & 0x7f);
        for b in &f[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    parse_octal(f)
}

/// The `size` record of a pax header, if it has one.
fn pax_size(data: &[u8]) -> Option<u64> {
    let mut rest = data;
    let mut found = None;
    while !rest.is_empty() {
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp || len > rest.len() {
            return found;
        }
        let record = &rest[sp + 1..len];
        if let Some(v) = record.strip_prefix(b"size=") {
            let v = v.strip_suffix(b"\n").unwrap_or(v);
            found = std::str::from_utf8(v).ok()?.parse().ok();
        }
        rest = &rest[len..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(long: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let data = b"hello";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "short.txt", &data[..]).unwrap();
        let path = format!("d/{}", "n".repeat(long));
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, &data[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn through(bytes: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
        let mut g = TarGuard::new(bytes);
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = g.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn ordinary_archives_pass_unchanged_and_long_names_are_refused() {
        for chunk in [1, 7, 512, 4096] {
            let ok = archive(300);
            assert_eq!(through(&ok, chunk).unwrap(), ok);
            let bad = archive(200_000);
            let err = through(&bad, chunk).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            assert!(err.to_string().contains("long-name"), "{err}");
        }
    }

    #[test]
    fn pax_sizes_are_followed() {
        let records = b"30 size=9663676416\n";
        assert_eq!(pax_size(records), None, "a record whose length is wrong");
        let mut rec = Vec::new();
        let body = "size=9663676416\n";
        let len = body.len() + 3;
        rec.extend_from_slice(format!("{len} {body}").as_bytes());
        assert_eq!(pax_size(&rec), Some(9_663_676_416));
    }
}
