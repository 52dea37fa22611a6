//! A reader in front of the `tar` crate that refuses oversized metadata entries.
//!
//! The `tar` crate reads a GNU long name (`L`), long link (`K`) or pax header (`x`) whole into
//! memory before the caller sees the entry, and its size field allows gigabytes: a few kilobytes
//! of zstd can make a restore allocate all the memory there is. This wrapper follows the tar
//! stream block by block as it passes (holding one header block and one pax header at most) and
//! fails with `InvalidData` when such an entry is larger than [`MAX_META_ENTRY`].
//!
//! To stay in step with the crate it parses every field exactly as `tar` 0.4 does (octal text cut
//! at the first NUL and trimmed, base-256 from the last 8 bytes, the checksum, pax records with
//! the first valid `size` winning, a pax header consumed by the next entry that is not itself a
//! long name, long link or pax header, GNU sparse extension blocks), and it refuses — never
//! passes unchecked — anything it cannot follow: an archive that two parsers could read two
//! ways is not worth restoring from. So a pax header's records must parse by their lengths to
//! the end of its data, and `path`, `linkpath` and `size` may each appear once (the crate takes
//! the first, GNU tar the last).
//!
//! One such way it can follow: a pax `path` or `linkpath` value with a newline (a long name
//! with a line break, which cairn archives hold when the share does). The crate splits records
//! at newlines and falls back to the truncated ustar name; a reader made with
//! [`TarGuard::with_names`] gets the names read by their record length instead, as POSIX and
//! GNU tar read them, in a [`NameSlot`] it consults for each entry. Without one such an archive
//! is refused, and so is any newline that would change what the crate reads as the size.

use std::io::{self, Read};

/// The largest long-name, long-link or pax header entry accepted: a path is at most 4096
/// bytes, and a pax header of a few records fits many times over.
pub const MAX_META_ENTRY: u64 = 64 * 1024;

/// What the next 512-byte block of the stream is, once the current entry's data is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// A header.
    Header,
    /// A GNU sparse extension block (more follow while its byte 504 is set).
    SparseExt,
    /// The archive ended (a zero block): the crate reads no further headers.
    End,
}

/// A path and link name with a newline, read from the pax header of the entry the tar crate
/// yields next, where the crate reads them wrong; `None` where the crate reads them right.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PaxNames {
    /// The `path` record, when its value holds a newline.
    pub path: Option<Vec<u8>>,
    /// The `linkpath` record, when its value holds a newline.
    pub linkpath: Option<Vec<u8>>,
}

/// Where a [`TarGuard`] leaves the [`PaxNames`] of the entry whose header it read last: the tar
/// crate reads an entry's header, through the guard, before it yields the entry.
pub type NameSlot = std::rc::Rc<std::cell::RefCell<PaxNames>>;

/// See the module documentation.
#[derive(Debug)]
pub struct TarGuard<R> {
    inner: R,
    /// Bytes of the current header or extension block gathered so far.
    block: Vec<u8>,
    next: Block,
    /// Bytes of entry data (and padding) until the next block.
    skip: u64,
    /// Bytes of entry data still to be gathered into `pax` (the rest of `skip` is padding).
    pax_left: u64,
    /// The data of a pax header being gathered.
    pax: Option<Vec<u8>>,
    /// A pax header waiting for its entry, with the size it sets, if any.
    pending: Option<Option<u64>>,
    /// The data of the sparse entry whose extension blocks are being read.
    sparse_size: u64,
    /// Where names with a newline go; without it they are refused.
    names: Option<NameSlot>,
    /// The names of the pax header waiting for its entry.
    pending_names: Option<PaxNames>,
}

fn refuse(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl<R: Read> TarGuard<R> {
    /// Guards the tar stream `inner`.
    pub fn new(inner: R) -> Self {
        TarGuard {
            inner,
            block: Vec::with_capacity(512),
            next: Block::Header,
            skip: 0,
            pax_left: 0,
            pax: None,
            pending: None,
            sparse_size: 0,
            names: None,
            pending_names: None,
        }
    }

    /// Guards `inner` and accepts pax names with a newline, which it leaves in the returned slot
    /// for each entry: the caller must take an entry's path and link name from there when set.
    pub fn with_names(inner: R) -> (Self, NameSlot) {
        let slot = NameSlot::default();
        let mut g = TarGuard::new(inner);
        g.names = Some(slot.clone());
        (g, slot)
    }

    /// Follows `bytes`, which were just read from the stream.
    fn follow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() && self.next != Block::End {
            if self.skip > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                if let Some(pax) = &mut self.pax {
                    let take = n.min(usize::try_from(self.pax_left).unwrap_or(usize::MAX));
                    pax.extend_from_slice(&bytes[..take]);
                    self.pax_left -= take as u64;
                }
                self.skip -= n as u64;
                bytes = &bytes[n..];
                if self.skip == 0 {
                    self.entry_done()?;
                }
                continue;
            }
            let n = (512 - self.block.len()).min(bytes.len());
            self.block.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.block.len() == 512 {
                let block = std::mem::replace(&mut self.block, Vec::with_capacity(512));
                match self.next {
                    Block::Header => self.header(&block)?,
                    Block::SparseExt => self.sparse_ext(&block)?,
                    Block::End => {}
                }
            }
        }
        Ok(())
    }

    /// The current entry's data has passed.
    fn entry_done(&mut self) -> io::Result<()> {
        if let Some(pax) = self.pax.take() {
            let mut names = PaxNames::default();
            // Read by length, as POSIX and GNU tar read them, the records must take the data
            // exactly: a record that is not `LEN key=value\n` (GNU tar stops there) or bytes
            // after the last one would let the crate, which splits at newlines, read other
            // records than the checks below see.
            let by_length = pax_records_by_length(&pax).ok_or_else(|| {
                refuse("a pax header whose records do not parse by their lengths to its end")
            })?;
            // The crate takes the first of a key, GNU tar the last: two readers, two names.
            for key in [&b"path"[..], b"linkpath", b"size"] {
                if by_length.iter().filter(|(k, _)| *k == key).count() > 1 {
                    return Err(refuse(format!(
                        "a pax header with two {} records",
                        String::from_utf8_lossy(key)
                    )));
                }
            }
            if by_length.iter().any(|(_, v)| v.contains(&b'\n')) {
                // The tar crate splits pax records at newlines, so it would drop this record
                // and use the truncated ustar name instead: a wrong path, silently, unless the
                // reader takes the names from here. Any other record it would misread is the
                // size's, which would put the crate out of step with the stream.
                let size = by_length
                    .iter()
                    .find(|(k, _)| *k == b"size")
                    .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
                let newline_in = |key: &[u8]| {
                    by_length
                        .iter()
                        .rev()
                        .find(|(k, _)| *k == key)
                        .filter(|(_, v)| v.contains(&b'\n'))
                        .map(|(_, v)| v.to_vec())
                };
                names.path = newline_in(b"path");
                names.linkpath = newline_in(b"linkpath");
                let only_names = by_length
                    .iter()
                    .all(|(k, v)| !v.contains(&b'\n') || *k == b"path" || *k == b"linkpath");
                if self.names.is_none() || !only_names || size != pax_size(&pax) {
                    return Err(refuse(
                        "a pax record's value holds a newline (a long path or link name with a \
                         line break), which this reader would misread; extract the archive with \
                         GNU tar",
                    ));
                }
            }
            self.pending = Some(pax_size(&pax));
            self.pending_names = Some(names);
        }
        Ok(())
    }

    /// Reads one header block and sets up what follows it.
    fn header(&mut self, h: &[u8]) -> io::Result<()> {
        if h.iter().all(|b| *b == 0) {
            self.next = Block::End;
            return Ok(());
        }
        let stored = octal(&h[148..156])
            .ok_or_else(|| refuse("a tar header's checksum field cannot be read"))?;
        let sum: u64 = h[..148]
            .iter()
            .chain(&h[156..])
            .map(|b| u64::from(*b))
            .sum::<u64>()
            + 8 * 32;
        if sum != stored {
            return Err(refuse("tar header checksum mismatch"));
        }
        let kind = h[156];
        let recognized = (&h[257..263] == b"ustar\0" && &h[263..265] == b"00")
            || (&h[257..263] == b"ustar " && &h[263..265] == b" \0");
        let field =
            size_field(&h[124..136]).ok_or_else(|| refuse("a tar header's size cannot be read"))?;
        // As the crate does: a pax header is consumed by the next entry that is not a
        // (recognized) long name, long link or pax header, and sets its size unless that entry
        // is itself an extension header.
        let absorbed = recognized && matches!(kind, b'L' | b'K' | b'x');
        let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
        let size = if absorbed {
            field
        } else {
            // The entry the crate yields next: the names of its pax header, if any.
            let names = self.pending_names.take().unwrap_or_default();
            if let Some(slot) = &self.names {
                *slot.borrow_mut() = names;
            }
            match self.pending.take() {
                Some(Some(pax)) if !extension => pax,
                _ => field,
            }
        };
        if absorbed {
            if size > MAX_META_ENTRY {
                return Err(refuse(format!(
                    "a tar {} entry of {size} bytes is larger than the {MAX_META_ENTRY} bytes allowed",
                    match kind {
                        b'L' => "long-name",
                        b'K' => "long-link",
                        _ => "pax header",
                    }
                )));
            }
            if kind == b'x' {
                if self.pending.is_some() || self.pax.is_some() {
                    return Err(refuse("two pax headers for one tar entry"));
                }
                self.pax = Some(Vec::with_capacity(size as usize));
                self.pax_left = size;
            }
        }
        self.skip = size
            .checked_add(511)
            .map(|s| s & !511)
            .ok_or_else(|| refuse("a tar entry's size overflows"))?;
        // GNU sparse: extension blocks come between the header and the data.
        if kind == b'S' && recognized && h[482] != 0 {
            self.sparse_size = self.skip;
            self.skip = 0;
            self.next = Block::SparseExt;
            return Ok(());
        }
        if self.skip == 0 {
            self.entry_done()?;
        }
        Ok(())
    }

    fn sparse_ext(&mut self, b: &[u8]) -> io::Result<()> {
        if b[504] == 0 {
            self.next = Block::Header;
            self.skip = self.sparse_size;
            if self.skip == 0 {
                self.entry_done()?;
            }
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

/// An octal field as the `tar` crate reads it: cut at the first NUL, trimmed, base 8.
fn octal(f: &[u8]) -> Option<u64> {
    let f = f.split(|b| *b == 0).next().unwrap_or_default();
    u64::from_str_radix(std::str::from_utf8(f).ok()?.trim(), 8).ok()
}

/// A size field as the `tar` crate reads it: base-256 from its last 8 bytes when the high bit
/// of the first byte is set, octal otherwise.
fn size_field(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        return Some(
            f[f.len() - 8..]
                .iter()
                .fold(0u64, |v, b| (v << 8) | u64::from(*b)),
        );
    }
    octal(f)
}

/// The records of a pax header read by their length prefix, as POSIX defines them (a value may
/// hold a newline; the record's own final newline is not part of it); `None` unless every
/// record parses and together they take the data exactly.
fn pax_records_by_length(data: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let rest = &data[at..];
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > sp + 1 && *l <= rest.len() && rest[*l - 1] == b'\n')?;
        let kv = &rest[sp + 1..len - 1];
        let eq = kv.iter().position(|b| *b == b'=')?;
        records.push((&kv[..eq], &kv[eq + 1..]));
        at += len;
    }
    Some(records)
}

/// The `size` a pax header sets, as the `tar` crate finds it: records split at newlines, the
/// first `size` record wins, and any malformed record before it ends the search.
fn pax_size(data: &[u8]) -> Option<u64> {
    for line in data.split(|b| *b == b'\n') {
        if line.is_empty() {
            return None;
        }
        let sp = line.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&line[..sp]).ok()?.parse().ok()?;
        if line.len() + 1 != len {
            return None;
        }
        let kv = &line[sp + 1..];
        let eq = kv.iter().position(|b| *b == b'=')?;
        if &kv[..eq] != b"size" {
            continue;
        }
        return std::str::from_utf8(&kv[eq + 1..]).ok()?.parse().ok();
    }
    None
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

    /// A long path with a line break: GNU tar reads its pax record by length, the tar crate
    /// splits it at the newline and would restore the file under its truncated ustar name. The
    /// guard refuses the archive instead, naming the way out.
    #[test]
    fn a_pax_value_with_a_newline_is_refused() {
        let e = crate::tar::header::tests::entry(0, 0);
        let path = [&b"notes/"[..], &[b'a'; 120], b"\nsecond line.md"].concat();
        let mut bytes = crate::tar::header::header(&path, &e, tar::EntryType::Regular, 0, None);
        bytes.resize(bytes.len() + 1024, 0);
        let err = through(&bytes, 512).unwrap_err();
        assert!(err.to_string().contains("GNU tar"), "{err}");
        let newline = |data: &[u8]| {
            pax_records_by_length(data)
                .unwrap()
                .iter()
                .any(|(_, v)| v.contains(&b'\n'))
        };
        assert!(newline(b"12 path=a\nb\n"));
        assert!(!newline(b"12 path=abc\n12 size=100\n"));
    }

    /// With a name slot, a long path with a line break is read by its record's length, as GNU
    /// tar reads it, where the crate alone reads the truncated ustar name; a newline in any other
    /// record (which could move the size the crate reads) is still refused.
    #[test]
    fn names_with_a_newline_come_from_the_slot() {
        let e = crate::tar::header::tests::entry(0, 0);
        let path = [&b"notes/"[..], &[b'a'; 120], b"\nsecond line.md"].concat();
        let mut bytes = crate::tar::header::header(&path, &e, tar::EntryType::Regular, 0, None);
        bytes.resize(bytes.len() + 1024, 0);
        let (g, names) = TarGuard::with_names(&bytes[..]);
        let mut a = tar::Archive::new(g);
        let mut entries = a.entries().unwrap();
        let item = entries.next().unwrap().unwrap();
        assert_eq!(names.borrow().path.as_deref(), Some(&path[..]));
        assert_ne!(
            &*item.path_bytes(),
            &path[..],
            "the crate alone misreads it"
        );
        drop(item);
        assert!(entries.next().is_none());

        let Err(err) = through_named(b"19 comment=one\ntwo\n") else {
            panic!("a newline in a comment record passed");
        };
        assert!(err.to_string().contains("newline"), "{err}");
    }

    #[test]
    fn pax_records_are_read_as_the_tar_crate_reads_them() {
        assert_eq!(
            pax_size(b"30 size=9663676416\n"),
            None,
            "a record whose length is wrong"
        );
        assert_eq!(pax_size(b"19 size=9663676416\n"), Some(9_663_676_416));
        assert_eq!(
            pax_size(b"11 size=12\n11 size=34\n"),
            Some(12),
            "the first one wins"
        );
        assert_eq!(pax_size(b"12 path=abc\n11 size=12\n"), Some(12));
        assert_eq!(octal(b"0000012\0zz "), Some(10), "cut at the first NUL");
        assert_eq!(octal(b"  12 \0"), Some(10));
        assert_eq!(octal(b"\0\0"), None, "empty is not a number");
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[1] = 0xff; // ignored: only the last 8 bytes count
        big[11] = 5;
        assert_eq!(size_field(&big), Some(5));
    }

    /// A pax header with `records` before an empty file `x.md`, read through a guard with a
    /// name slot (the way every cairn reader of archives reads them).
    fn through_named(records: &[u8]) -> io::Result<Vec<u8>> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_path("PaxHeader").unwrap();
        h.set_size(records.len() as u64);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend_from_slice(records);
        bytes.resize(bytes.len().next_multiple_of(512), 0);
        let mut f = tar::Header::new_ustar();
        f.set_path("x.md").unwrap();
        f.set_size(0);
        f.set_cksum();
        bytes.extend_from_slice(f.as_bytes());
        bytes.resize(bytes.len() + 1024, 0);
        let (mut g, _names) = TarGuard::with_names(&bytes[..]);
        let mut out = Vec::new();
        g.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Review 8, defect 3: the newline check did not require a record to end in `\n` where the
    /// by-length parse does, so a crafted record stopped that parse with no records and the
    /// archive passed, though GNU tar fails on it and the crate reads another path; records
    /// after the last that parses, and repeated `path`, `linkpath` or `size` records (the crate
    /// takes the first, GNU tar the last), passed too. Each is refused.
    #[test]
    fn pax_data_must_parse_by_length_to_its_end_without_repeats() {
        through_named(b"13 path=x.md\n").unwrap();
        for (what, records) in [
            ("a record cut short of its newline", &b"13 path=a\nbcd"[..]),
            ("bytes after the last record", b"10 path=a\nXX"),
            ("two path records", b"10 path=a\n10 path=b\n"),
            ("two linkpath records", b"14 linkpath=a\n14 linkpath=b\n"),
            ("two size records", b"10 size=0\n10 size=0\n"),
        ] {
            let Err(err) = through_named(records) else {
                panic!("{what}: passed");
            };
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
        }
    }

    /// Python's tarfile and GNU tar write pax headers padded to 512 bytes; a file of 8 GiB and
    /// more has its size only there.
    #[test]
    fn a_padded_pax_header_sets_the_next_size() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        let body = "size=1024\n";
        let rec = format!("{} {body}", body.len() + 3);
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_path("PaxHeader").unwrap();
        h.set_size(rec.len() as u64);
        h.set_cksum();
        b.append(&h, rec.as_bytes()).unwrap();
        // The file: its ustar size says 0, the pax header says 1024; its content looks like a
        // tar header of a huge long name, which must be passed over as data.
        let mut inner = tar::Header::new_gnu();
        inner.set_entry_type(tar::EntryType::GNULongName);
        inner.set_path("././@LongLink").unwrap();
        inner.set_size(100_000);
        inner.set_cksum();
        let mut content = inner.as_bytes().to_vec();
        content.resize(1024, 7);
        let mut f = tar::Header::new_ustar();
        f.set_path("big.bin").unwrap();
        f.set_size(0);
        f.set_cksum();
        let mut bytes = b.into_inner().unwrap();
        bytes.truncate(bytes.len() - 1024); // the builder's end-of-archive blocks
        bytes.extend_from_slice(f.as_bytes());
        bytes.extend_from_slice(&content);
        bytes.extend_from_slice(&[0u8; 1024]);
        assert_eq!(through(&bytes, 100).unwrap(), bytes);
        let mut a = tar::Archive::new(TarGuard::new(&bytes[..]));
        let sizes: Vec<u64> = a.entries().unwrap().map(|e| e.unwrap().size()).collect();
        assert_eq!(sizes, [1024]);
    }

    /// A header the guard cannot read stops the restore: it never passes the rest unchecked.
    #[test]
    fn an_unreadable_header_is_refused() {
        let mut bytes = archive(10);
        bytes[148] = b'z'; // the checksum field
        assert_eq!(
            through(&bytes, 512).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
