//! Parsing speed of a large torrent: 20,000 pieces and 1,000 files.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rivulet_bencode::OwnedValue as V;
use rivulet_core::Metainfo;

fn big_torrent() -> Vec<u8> {
    let piece_length: i64 = 1 << 20;
    let files: Vec<V> = (0..1000)
        .map(|i| {
            V::dict()
                .with(
                    "length",
                    V::Int(20 * piece_length + 12_345 - 12_345 * (i % 2)),
                )
                .with(
                    "path",
                    V::List(vec![
                        format!("dir{}", i / 100).as_str().into(),
                        format!("file-{i}.bin").as_str().into(),
                    ]),
                )
        })
        .collect();
    let total: i64 = (0..1000)
        .map(|i| 20 * piece_length + 12_345 - 12_345 * (i % 2))
        .sum();
    let pieces = (total + piece_length - 1) / piece_length;
    let hashes: Vec<u8> = (0..pieces * 20).map(|i| (i * 7 % 251) as u8).collect();
    V::dict()
        .with("announce", "http://127.0.0.1:6969/announce".into())
        .with(
            "info",
            V::dict()
                .with("name", "big".into())
                .with("piece length", V::Int(piece_length))
                .with("pieces", V::Bytes(hashes))
                .with("files", V::List(files)),
        )
        .to_bytes()
}

fn bench(c: &mut Criterion) {
    let bytes = big_torrent();
    let m = Metainfo::from_bytes(&bytes).unwrap_or_else(|e| panic!("bench torrent: {e}"));
    assert!(m.info.num_pieces() >= 10_000);
    let mut g = c.benchmark_group(format!(
        "torrent {} pieces {} files",
        m.info.num_pieces(),
        m.info.files.len()
    ));
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("bencode decode", |b| {
        b.iter(|| rivulet_bencode::decode(std::hint::black_box(&bytes)).map(|v| v.raw().len()))
    });
    g.bench_function("metainfo parse + info-hash", |b| {
        b.iter(|| Metainfo::from_bytes(std::hint::black_box(&bytes)).map(|m| m.info_hash))
    });
    g.bench_function("all piece spans", |b| {
        let layout = m.info.layout();
        b.iter(|| {
            (0..layout.num_pieces())
                .filter_map(|p| layout.piece_spans(p))
                .map(|s| s.count())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
