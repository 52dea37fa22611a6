//! Shared inputs for cairn's benchmarks: seeded data that looks like what a share holds.

#[path = "../../engine/tests/it/seeded.rs"]
#[allow(dead_code)]
mod seeded;

/// Pseudo-random bytes (xorshift), incompressible like photos: the tests' own generator.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    seeded::seeded(len, seed)
}

/// Prose-like text from a seeded word stream, compressible like notes.
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "backup", "chunk", "the", "of", "notes", "photo", "archive", "and", "cairn", "night",
        "store", "a", "restore", "snapshot", "pack", "tree",
    ];
    let mut out = Vec::with_capacity(len + 16);
    for (i, b) in noise(len / 4, seed).iter().enumerate() {
        if out.len() >= len {
            break;
        }
        out.extend_from_slice(WORDS[(*b & 15) as usize].as_bytes());
        out.push(if i % 13 == 12 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}
