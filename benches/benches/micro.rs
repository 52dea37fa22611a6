//! Micro-benchmarks of cairn's hot paths, each beside the single-core ceiling measured in the
//! same run (plain FastCDC, plain BLAKE3, memcpy), so the gap to the limit is visible.

use std::hint::black_box;

use cairn_benches::{noise, text};
use cairn_engine::Id;
use cairn_engine::chunk::{Chunker, ChunkerParams};
use cairn_engine::codec;
use cairn_engine::pack::{BlobKind, PackBuilder, parse_trailer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MIB: usize = 1 << 20;

fn chunking(c: &mut Criterion) {
    let data = noise(64 * MIB, 1);
    let p = ChunkerParams::default();
    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("ceiling: memcpy", |b| {
        let mut dst = vec![0u8; data.len()];
        b.iter(|| dst.copy_from_slice(black_box(&data)))
    });
    g.bench_function("ceiling: fastcdc v2020 in memory", |b| {
        b.iter(|| fastcdc::v2020::FastCDC::new(black_box(&data), p.min, p.avg, p.max).count())
    });
    g.bench_function("ceiling: blake3 of 1 MiB blocks", |b| {
        b.iter(|| {
            data.chunks(MIB)
                .map(|c| blake3::hash(c).as_bytes()[0])
                .fold(0u8, |a, x| a ^ x)
        })
    });
    g.bench_function("cairn: streaming chunker", |b| {
        b.iter(|| {
            let mut ch = Chunker::new(black_box(&data[..]), p);
            let mut n = 0;
            while let Some(c) = ch.next_chunk().unwrap() {
                n += c.len();
            }
            n
        })
    });
    g.bench_function("cairn: chunk + BLAKE3 id", |b| {
        b.iter(|| {
            let mut ch = Chunker::new(black_box(&data[..]), p);
            let mut x = 0u8;
            while let Some(c) = ch.next_chunk().unwrap() {
                x ^= Id::of(c).0[0];
            }
            x
        })
    });
    g.finish();
}

fn compression(c: &mut Criterion) {
    let prose = text(4 * MIB, 2);
    let photo = noise(4 * MIB, 3);
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(prose.len() as u64));
    g.sample_size(10);
    g.bench_function("encode text, zstd -3", |b| {
        b.iter(|| codec::encode(black_box(&prose), 3).unwrap())
    });
    g.bench_function("encode noise (probe → raw blocks)", |b| {
        b.iter(|| codec::encode(black_box(&photo), 3).unwrap())
    });
    let frame = codec::encode(&prose, 3).unwrap();
    g.bench_function("decode text", |b| {
        b.iter(|| codec::decode(black_box(&frame), prose.len()).unwrap())
    });
    g.bench_function("ceiling: zstd -3 bulk, no frame options", |b| {
        b.iter(|| zstd::bulk::compress(black_box(&prose), 3).unwrap().len())
    });
    g.bench_function("ceiling: raw-block frame (copy + XXH64)", |b| {
        b.iter(|| codec::raw_frame(black_box(&photo)).len())
    });
    g.finish();
}

fn packs(c: &mut Criterion) {
    let blobs: Vec<Vec<u8>> = (0..16).map(|i| noise(MIB, 10 + i)).collect();
    let frames: Vec<(Id, Vec<u8>, usize)> = blobs
        .iter()
        .map(|b| (Id::of(b), codec::encode(b, 3).unwrap(), b.len()))
        .collect();
    let mut g = c.benchmark_group("pack");
    g.throughput(Throughput::Bytes((16 * MIB) as u64));
    g.sample_size(20);
    g.bench_function("build a 16 MiB pack", |b| {
        b.iter(|| {
            let mut pb = PackBuilder::with_capacity(17 * MIB);
            for (id, f, n) in &frames {
                pb.add(BlobKind::Data, *id, f, *n);
            }
            pb.finish().0
        })
    });
    let mut pb = PackBuilder::default();
    for (id, f, n) in &frames {
        pb.add(BlobKind::Data, *id, f, *n);
    }
    let (_, bytes, _) = pb.finish();
    g.bench_function("parse a pack index", |b| {
        b.iter(|| parse_trailer(black_box(&bytes), bytes.len() as u64).unwrap())
    });
    g.finish();
}

fn catalog(c: &mut Criterion) {
    use cairn_engine::pack::PackEntry;
    use cairn_engine::repo::Repository;
    use cairn_engine::store::MemoryStore;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(
        Arc::new(MemoryStore::new()),
        ChunkerParams::default(),
        16 << 20,
    )
    .unwrap();
    let (cat, _) = cairn_engine::catalog::Catalog::open_for(dir.path(), &repo).unwrap();
    let ids: Vec<Id> = (0..200_000u32).map(|i| Id::of(&i.to_le_bytes())).collect();
    for (p, chunk) in ids.chunks(1000).enumerate() {
        let entries: Vec<PackEntry> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| PackEntry {
                kind: BlobKind::Data,
                id: *id,
                offset: i as u32 * 100,
                length: 100,
                raw_length: 100,
            })
            .collect();
        cat.add_pack(&Id::of(&(p as u64).to_le_bytes()), 100_000, &entries)
            .unwrap();
    }
    cat.flush().unwrap();
    let misses: Vec<Id> = (0..1000u32)
        .map(|i| Id::of(&(i + 1_000_000).to_le_bytes()))
        .collect();
    let mut g = c.benchmark_group("catalog");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000 lookups of known chunks (200k in catalog)", |b| {
        b.iter(|| {
            ids.iter()
                .step_by(200)
                .filter(|id| cat.contains(BlobKind::Data, id).unwrap())
                .count()
        })
    });
    g.bench_function("1000 lookups of new chunks (bloom filter)", |b| {
        b.iter(|| {
            misses
                .iter()
                .filter(|id| cat.contains(BlobKind::Data, id).unwrap())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, chunking, compression, packs, catalog);
criterion_main!(benches);
