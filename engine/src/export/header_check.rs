//! The tar header blocks before a file's content, read as the streaming readers (the tar crate,
//! GNU tar) read them: a ustar header whose checksum holds, and the one pax header or GNU long
//! name whose data ends right before it. What two of those readers would read differently is
//! refused, so that a file found by the seek table is the file every other reader finds.

/// The largest size and owner id the ustar fields hold (11 and 7 octal digits); cairn writes
/// these and a pax record for anything larger.
pub(super) const USTAR_SIZE_MAX: u64 = 0o77777777777;
pub(super) const USTAR_ID_MAX: u64 = 0o7777777;

/// How far before a file's ustar header its extension header is looked for: the largest pax
/// header or GNU long name the streaming readers accept ([`MAX_META_ENTRY`] of data), with its
/// header block. A smaller window would let a larger extension header, which they read,
/// go unseen.
///
/// [`MAX_META_ENTRY`]: crate::tar::guard::MAX_META_ENTRY
pub(super) const EXTENSION_WINDOW: u64 =
    (crate::tar::guard::MAX_META_ENTRY.div_ceil(512) + 1) * 512;

/// The fields of a ustar header block that reading a file needs.
pub(super) struct Ustar {
    /// The name field up to its first NUL, after the prefix field and a `/` when it has one.
    pub(super) name: Vec<u8>,
    pub(super) mode: u64,
    pub(super) size: u64,
    pub(super) uid: u64,
    pub(super) gid: u64,
    kind: u8,
}

/// An octal field as tar writes it, or base-256 when its first byte's high bit is set.
fn number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let tail = &field[field.len().saturating_sub(8)..];
        return Some(tail.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)));
    }
    let s = std::str::from_utf8(field.split(|b| *b == 0).next().unwrap_or_default()).ok()?;
    let s = s.trim_matches(' ');
    if s.is_empty() {
        Some(0)
    } else {
        u64::from_str_radix(s, 8).ok()
    }
}

/// Whether a header block's checksum field is the sum of its bytes, the field counted as spaces.
fn checksum_holds(h: &[u8]) -> bool {
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    number(&h[148..156]) == Some(sum)
}

fn until_nul(field: &[u8]) -> &[u8] {
    field.split(|b| *b == 0).next().unwrap_or_default()
}

impl Ustar {
    /// A header block whose checksum holds; refused otherwise.
    pub(super) fn parse(h: &[u8]) -> std::result::Result<Ustar, &'static str> {
        if !checksum_holds(h) {
            return Err("its checksum does not match");
        }
        let mut name = until_nul(&h[..100]).to_vec();
        let prefix = until_nul(&h[345..500]);
        if &h[257..263] == b"ustar\0" && !prefix.is_empty() {
            name = [prefix, b"/", &name].concat();
        }
        Ok(Ustar {
            name,
            mode: number(&h[100..108]).ok_or("an unreadable mode")?,
            size: number(&h[124..136]).ok_or("an unreadable size")?,
            uid: number(&h[108..116]).ok_or("an unreadable uid")?,
            gid: number(&h[116..124]).ok_or("an unreadable gid")?,
            kind: h[156],
        })
        .and_then(|u| {
            if matches!(u.kind, b'0' | 0) {
                Ok(u)
            } else {
                Err("not a regular file")
            }
        })
    }
}

/// What an extension header before a file's ustar header says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Extension {
    pub(super) path: Option<Vec<u8>>,
    pub(super) size: Option<u64>,
    pub(super) uid: Option<u64>,
    pub(super) gid: Option<u64>,
}

impl Extension {
    /// The extension header that ends exactly where `before` ends (which is where the ustar
    /// header starts): a block that is a valid tar header of a pax header (`x`) or a GNU long
    /// name (`L`) whose data fills the blocks up to the end. Every block is looked at, not only
    /// the nearest header: a crafted pax header may hold a header-like block in its records.
    /// Two such headers (one inside the other's data, or one right before the other, which the
    /// tar crate and GNU tar combine differently) are refused, as is a long name with a NUL
    /// inside (GNU tar cuts it there, the tar crate does not).
    pub(super) fn nearest(before: &[u8]) -> std::result::Result<Extension, &'static str> {
        let Some((at, size)) = extension_ending_at(before, before.len())? else {
            return Ok(Extension::default());
        };
        if extension_ending_at(before, at)?.is_some() {
            return Err("two extension headers before it");
        }
        let h = &before[at..at + 512];
        let data = &before[at + 512..at + 512 + size];
        if h[156] == b'L' {
            // The tar crate drops one final NUL, GNU tar reads up to the first: the same name
            // only when no other NUL is left.
            let name = data.strip_suffix(b"\0").unwrap_or(data);
            if name.contains(&0) {
                return Err("a GNU long name with a NUL inside");
            }
            return Ok(Extension {
                path: Some(name.to_vec()),
                ..Extension::default()
            });
        }
        pax_records(data)
    }
}

/// Where the one pax header or GNU long name whose data ends exactly at `end` of `before`
/// starts, and its data's size; `None` when there is none, refused when there are two.
fn extension_ending_at(
    before: &[u8],
    end: usize,
) -> std::result::Result<Option<(usize, usize)>, &'static str> {
    let mut found = None;
    for k in 0..end / 512 {
        let at = end - 512 * (k + 1);
        let h = &before[at..at + 512];
        let magic = &h[257..263] == b"ustar\0" || &h[257..263] == b"ustar ";
        if !magic || !matches!(h[156], b'x' | b'L') || !checksum_holds(h) {
            continue;
        }
        let size = number(&h[124..136]).ok_or("an unreadable extension header")?;
        if size.div_ceil(512) != k as u64 {
            continue;
        }
        // The data fits the blocks before `end`, so the size is below `end`.
        if found.replace((at, size as usize)).is_some() {
            return Err("two extension headers before it");
        }
    }
    Ok(found)
}

/// The records of a pax header, read by their length as POSIX defines them (a value may hold a
/// newline), which must take the data exactly. A key given twice is refused: the tar crate
/// takes the first, GNU tar the last.
fn pax_records(mut data: &[u8]) -> std::result::Result<Extension, &'static str> {
    let mut ext = Extension::default();
    let mut keys: Vec<&[u8]> = Vec::new();
    let num = |v: &[u8]| -> std::result::Result<u64, &'static str> {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("an unreadable pax record")
    };
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|b| *b == b' ')
            .ok_or("a damaged pax record")?;
        let len = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > sp + 1 && *l <= data.len() && data[*l - 1] == b'\n')
            .ok_or("a damaged pax record")?;
        let kv = &data[sp + 1..len - 1];
        let eq = kv
            .iter()
            .position(|b| *b == b'=')
            .ok_or("a damaged pax record")?;
        let (key, value) = (&kv[..eq], &kv[eq + 1..]);
        if keys.contains(&key) {
            return Err("a pax record given twice");
        }
        keys.push(key);
        match key {
            b"path" => ext.path = Some(value.to_vec()),
            b"size" => ext.size = Some(num(value)?),
            b"uid" => ext.uid = Some(num(value)?),
            b"gid" => ext.gid = Some(num(value)?),
            _ => {}
        }
        data = &data[len..];
    }
    Ok(ext)
}
