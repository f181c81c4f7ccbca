//! Decoding speed of the message stream: 16 KiB `piece` messages (the
//! download hot path) and small control messages.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rivulet_wire::{BlockRequest, Message, MessageDecoder};

/// 1,024 piece messages with 16 KiB blocks: 16 MiB of stream.
fn piece_stream() -> BytesMut {
    let block = Bytes::from(vec![0x5a; 16384]);
    let mut buf = BytesMut::new();
    for i in 0..1024u32 {
        Message::Piece {
            piece: i / 64,
            offset: (i % 64) * 16384,
            data: block.clone(),
        }
        .encode(&mut buf);
    }
    buf
}

/// 10,000 small messages, the mix a busy connection sees besides blocks.
fn small_stream() -> (BytesMut, usize) {
    let mut buf = BytesMut::new();
    let mut n = 0;
    for i in 0..10_000u32 {
        let r = BlockRequest {
            piece: i,
            offset: 16384 * (i % 16),
            length: 16384,
        };
        let m = match i % 8 {
            0 => Message::Have { piece: i },
            1 | 2 => Message::Request(r),
            3 => Message::Cancel(r),
            4 => Message::RejectRequest(r),
            5 => Message::Unchoke,
            6 => Message::AllowedFast { piece: i },
            _ => Message::KeepAlive,
        };
        m.encode(&mut buf);
        n += 1;
    }
    (buf, n)
}

fn decode_all(buf: &mut BytesMut) -> usize {
    let mut dec = MessageDecoder::new();
    let mut n = 0;
    while let Ok(Some(m)) = dec.decode(buf) {
        black_box(&m);
        n += 1;
    }
    n
}

fn bench(c: &mut Criterion) {
    let pieces = piece_stream();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(pieces.len() as u64));

    // The whole stream already in memory: the cost of the decoder alone
    // (blocks are split off the buffer, not copied).
    g.bench_function("piece_16k_in_buffer", |b| {
        b.iter_batched(
            || pieces.clone(),
            |mut buf| {
                assert_eq!(decode_all(&mut buf), 1024);
                buf
            },
            BatchSize::LargeInput,
        );
    });

    // As the engine would see it: 64 KiB reads appended to one receive buffer,
    // decoding after each read, blocks dropped after use. Includes the copy
    // from the "socket" into the buffer.
    g.bench_function("piece_16k_64k_reads", |b| {
        let mut buf = BytesMut::with_capacity(256 * 1024);
        b.iter(|| {
            let mut dec = MessageDecoder::new();
            let mut n = 0;
            for read in pieces.chunks(64 * 1024) {
                buf.reserve(read.len());
                buf.extend_from_slice(read);
                while let Ok(Some(m)) = dec.decode(&mut buf) {
                    black_box(&m);
                    n += 1;
                }
            }
            assert_eq!(n, 1024);
        });
    });

    let (small, n) = small_stream();
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("small_messages", |b| {
        b.iter_batched(
            || small.clone(),
            |mut buf| {
                assert_eq!(decode_all(&mut buf), n);
                buf
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(n as u64));
    let msgs: Vec<Message> = {
        let mut buf = small.clone();
        let mut dec = MessageDecoder::new();
        std::iter::from_fn(|| dec.decode(&mut buf).ok().flatten()).collect()
    };
    g.bench_function("small_messages", |b| {
        let mut buf = BytesMut::with_capacity(small.len());
        b.iter(|| {
            buf.clear();
            for m in &msgs {
                m.encode(&mut buf);
            }
            black_box(&buf);
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
