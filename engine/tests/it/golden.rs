//! Golden tests: the cut points and ids of the chunker over seeded input. A change here breaks
//! deduplication against every existing repository, so it must be a deliberate format change.

use cairn_engine::Id;
use cairn_engine::chunk::{Chunker, ChunkerParams};

use crate::common::seeded;

#[test]
fn chunk_cut_points_and_ids_are_pinned() {
    let data = seeded(24 << 20, 2026);
    let mut chunker = Chunker::new(&data[..], ChunkerParams::default());
    let mut lines = Vec::new();
    let mut offset = 0;
    while let Some(c) = chunker.next_chunk().unwrap() {
        lines.push(format!("{offset:>9} {:>8} {}", c.len(), Id::of(c).to_hex()));
        offset += c.len();
    }
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn text_cut_points_are_pinned() {
    // Prose-like text from a seeded word stream: cut points come from content, not from sizes.
    const WORDS: [&str; 16] = [
        "backup", "chunk", "the", "of", "notes", "photo", "archive", "and", "cairn", "night",
        "store", "a", "restore", "snapshot", "pack", "tree",
    ];
    let noise = seeded(3 << 20, 77);
    let mut data = Vec::with_capacity(12 << 20);
    for (i, b) in noise.iter().enumerate() {
        data.extend_from_slice(WORDS[(*b & 15) as usize].as_bytes());
        data.push(if i % 13 == 12 { b'\n' } else { b' ' });
    }
    let mut chunker = Chunker::new(&data[..], ChunkerParams::default());
    let mut lens = Vec::new();
    while let Some(c) = chunker.next_chunk().unwrap() {
        lens.push(format!("{} {}", c.len(), Id::of(c).short()));
    }
    assert!(lens.len() > 8, "prose must cut on content");
    insta::assert_snapshot!(lens.join("\n"));
}
