//! The piece picker over a whole download, for torrents of 10,000, 50,000
//! and 100,000 pieces of 16 KiB (one block each): every piece picked by one
//! of 8 peers that each have 90% of the pieces, received and verified. The
//! time per piece should not grow with the number of pieces.
#![allow(missing_docs)] // criterion_group! generates undocumented items
#![allow(clippy::indexing_slicing)] // indices below the piece count it made

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rivulet_engine::picker::{PiecePicker, Received};

const PIECE: u32 = 16 * 1024;
const PEERS: u32 = 8;

/// The peers' pieces: each lacks a random tenth.
fn swarm(n: u32, rng: &mut StdRng) -> Vec<Vec<bool>> {
    (0..PEERS)
        .map(|_| (0..n).map(|_| rng.gen_range(0..10) != 0).collect())
        .collect()
}

/// Downloads everything: peers take turns asking for 16 blocks at a time;
/// every block arrives and its piece is verified.
fn download(n: u32, peers: &[Vec<bool>], rng: &mut StdRng) -> u32 {
    let mut picker = PiecePicker::new(PIECE, u64::from(n) * u64::from(PIECE), |_| false, rng);
    picker.set_max_in_progress(64);
    for bits in peers {
        picker.add_peer_pieces((0..n).filter(|p| bits[*p as usize]));
    }
    let mut rounds = 0;
    while !picker.is_complete() {
        rounds += 1;
        for (key, bits) in peers.iter().enumerate() {
            let blocks = picker.pick(key as u32, |p| bits[p as usize], 16, rng);
            for b in blocks {
                if let Received::New {
                    piece_complete: true,
                    ..
                } = picker.on_block_received(b, key as u32)
                {
                    picker.on_piece_verified(b.piece);
                }
            }
        }
        assert!(rounds < 10 * n, "no progress");
    }
    picker.have_count()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("picker_download");
    g.sample_size(10);
    for n in [10_000u32, 50_000, 100_000] {
        let mut rng = StdRng::seed_from_u64(1);
        let peers = swarm(n, &mut rng);
        // One element per piece: criterion reports the time per piece.
        g.throughput(Throughput::Elements(u64::from(n)));
        g.bench_function(format!("{n}_pieces"), |b| {
            b.iter_batched(
                || StdRng::seed_from_u64(2),
                |mut rng| assert_eq!(download(n, &peers, &mut rng), n),
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
