//! Seeding: the listener (`listener.rs`), the serving half of the peer core (`peer/`) and
//! the choking in `torrent.rs`, with rivulet as the seeder and fake leechers
//! run in-process on 127.0.0.x speaking the wire protocol with
//! `rivulet_wire`.
//!
//! Each test writes a torrent built in memory (`rivulet_testkit::fixture`: real SHA-1
//! hashes of deterministic data) into a temporary folder, lets
//! `Download::prepare` find it complete (or, on purpose, not), puts a
//! `Listener` on its own loopback address in front of it and runs it with
//! `SeedPolicy::FOREVER`. Fake leechers (the test kit's `Conn`,
//! `rivulet_testkit::peer`) connect from their own addresses,
//! handshake for the torrent and assert on what a peer observes: the
//! messages rivulet sends, the bytes of every block, when it hangs up; and on
//! the `Stats` counters.
//!
//! No sleep is used as synchronisation: tests wait for the messages
//! themselves (or the end of the connection, or a download's outcome), under
//! timeouts that only fail the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rivulet_core::{InfoHash, PeerId};
use rivulet_engine::cache::CHUNK_LEN;
use rivulet_engine::download::{Download, SeedPolicy, StartReport};
use rivulet_engine::encryption::Encryption;
use rivulet_engine::folder::{DataFolder, FolderOptions};
use rivulet_engine::listener::{Listener, MAX_PENDING_HANDSHAKES};
use rivulet_engine::peer::SERVE_QUEUE;
use rivulet_engine::torrent::{Outcome, Settings, Shared, TorrentConfig};
use rivulet_testkit::next_loopback;
use rivulet_wire::mse::{
    CryptoSet, Established, MseHandshake, PrivateKey, Progress, PublicKey, Rc4Stream, KEY_LEN,
};
use rivulet_wire::{
    allowed_fast_set, Bitfield, BlockRequest, ExtendedHandshake, Handshake, Message, Reserved,
};
use sha1::Digest;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Barrier};
use tokio::task::{JoinHandle, JoinSet};

use rivulet_testkit::fixture::{within, Fixture, BLOCK, PIECES};
use rivulet_testkit::peer::{answered, check_piece, encode, show, tail, tcp_from, Conn};

/// Time a test may wait for something that should happen at once.
const PROMPT: Duration = Duration::from_secs(10);
/// Time a whole transfer may take.
const DOWNLOAD: Duration = Duration::from_secs(60);
/// Allowed-fast pieces rivulet offers (BEP 6's usual k).
const ALLOWED_FAST: usize = 10;

/// The fast and extension protocol bits, as a modern client sends them.
fn modern() -> Reserved {
    let mut r = Reserved::FAST;
    r.insert(Reserved::EXTENSION_PROTOCOL);
    r
}

/// A torrent with pieces of two read-cache chunks (512 KiB): 5 full pieces
/// and a last one of 300,001 bytes, whose second chunk is short and whose
/// last block is 5,089 bytes.
fn big(seed: u64) -> Arc<Fixture> {
    let piece = 2 * CHUNK_LEN;
    Fixture::sized(seed, piece, 5 * piece as usize + 300_001)
}

fn stat(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn count(a: &AtomicUsize) -> usize {
    a.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// Addresses

fn fresh_peer_id(ip: Ipv4Addr) -> PeerId {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut id = *b"-LE0001-000000000000";
    id[8..12].copy_from_slice(&ip.octets());
    id[12..20].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    PeerId(id)
}

// ---------------------------------------------------------------------------
// Rivulet

/// What to put in the folder before `Download::prepare` checks it.
enum Data<'a> {
    /// Nothing: a fresh download.
    None,
    /// The torrent's files, with these pieces corrupted (one byte flipped;
    /// the last piece of the file is truncated instead).
    Complete { damaged: &'a [u32] },
}

/// A rivulet: a `Download` with a `Listener` on its own 127.0.0.x, run with
/// `SeedPolicy::FOREVER` in a task until stopped (or dropped).
struct Node {
    /// The listening address.
    addr: SocketAddr,
    shared: Arc<Shared>,
    dl_peers: tokio::sync::mpsc::UnboundedSender<SocketAddr>,
    report: StartReport,
    dir: TempDir,
    task: JoinHandle<Outcome>,
    stop: Option<oneshot::Sender<()>>,
    _listener: Listener,
}

impl Node {
    async fn start(fx: &Fixture, data: Data<'_>, tweak: impl FnOnce(&mut TorrentConfig)) -> Node {
        Node::start_with(fx, data, Encryption::default(), tweak).await
    }

    /// As [`Node::start`], with the encryption policy given (both ways).
    async fn start_with(
        fx: &Fixture,
        data: Data<'_>,
        encryption: Encryption,
        tweak: impl FnOnce(&mut TorrentConfig),
    ) -> Node {
        let dir = tempfile::tempdir().unwrap();
        if let Data::Complete { damaged } = data {
            fx.write_to(dir.path());
            damage(fx, dir.path(), damaged);
        }
        let ip = next_loopback();
        let listener = Listener::bind(Some(IpAddr::V4(ip)), 0, encryption).unwrap();
        let mut config = TorrentConfig {
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
            ..TorrentConfig::default()
        };
        tweak(&mut config);
        let settings = Settings {
            bind: Some(IpAddr::V4(ip)),
            listen_port: listener.port(),
            encryption,
            ..Settings::standalone(config)
        };
        let folder = DataFolder::open(&fx.metainfo, dir.path(), &FolderOptions::default()).unwrap();
        let (mut dl, report) =
            Download::prepare_with(&fx.metainfo, folder, settings, Arc::new(|_| {}))
                .await
                .unwrap();
        listener.add(&dl.shared);
        let shared = Arc::clone(&dl.shared);
        let dl_peers = dl.peer_sender();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            dl.run(
                async {
                    // Sent or dropped: either way, stop.
                    let _ = stopped.await;
                },
                SeedPolicy::FOREVER,
            )
            .await
        });
        Node {
            addr: SocketAddr::new(IpAddr::V4(ip), listener.port()),
            shared,
            dl_peers,
            report,
            dir,
            task,
            stop: Some(stop),
            _listener: listener,
        }
    }

    /// A rivulet with every piece of `fx`.
    async fn seeder(fx: &Fixture, tweak: impl FnOnce(&mut TorrentConfig)) -> Node {
        let node = Node::start(fx, Data::Complete { damaged: &[] }, tweak).await;
        assert_eq!(node.report.have, fx.num_pieces(), "the seeder's data");
        assert_eq!(node.outcome(), Outcome::Complete);
        node
    }

    fn outcome(&self) -> Outcome {
        self.shared.outcome().borrow().clone()
    }

    /// Waits until the download is complete.
    async fn completed(&self, what: &str) {
        let mut rx = self.shared.outcome();
        let done = within(DOWNLOAD, what, rx.wait_for(|o| *o != Outcome::Running))
            .await
            .unwrap()
            .clone();
        assert_eq!(done, Outcome::Complete, "{what}");
    }

    /// Stops the download and returns how it ended.
    async fn stop(self) -> Outcome {
        self.stop_keeping_files().await.0
    }

    /// Stops the download; returns how it ended and its folder.
    async fn stop_keeping_files(mut self) -> (Outcome, TempDir) {
        drop(self.stop.take());
        let outcome = within(PROMPT, "the download to stop", &mut self.task)
            .await
            .unwrap();
        (outcome, self.dir)
    }
}

/// Corrupts `pieces` of the single file in `dir`: a flipped byte in the
/// middle of each, except the torrent's last piece, which loses its end.
fn damage(fx: &Fixture, dir: &std::path::Path, pieces: &[u32]) {
    if pieces.is_empty() {
        return;
    }
    assert_eq!(fx.metainfo.info.files.len(), 1);
    let path = dir.join(fx.metainfo.info.files[0].relative_path());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = fx.num_pieces() as u32 - 1;
    for &p in pieces {
        if p != last {
            let at = p as usize * fx.piece_length as usize + fx.piece_len(p) as usize / 2;
            bytes[at] ^= 0xff;
        }
    }
    if pieces.contains(&last) {
        bytes.truncate(bytes.len() - 100);
    }
    std::fs::write(&path, bytes).unwrap();
}

// ---------------------------------------------------------------------------
// Fake leechers: the test kit's `Conn`, connected out to a rivulet.

/// Reads until the peer hangs up; returns what it sent meanwhile.
async fn read_to_close(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    within(PROMPT, what, async {
        // A reset is a close too.
        let _ = stream.read_to_end(&mut got).await;
    })
    .await;
    got
}

/// A fake leecher connected from a fresh address with a fresh peer id,
/// past the handshakes.
async fn leecher(node: &Node, reserved: Reserved, fx: &Fixture) -> Conn {
    let ip = next_loopback();
    leecher_as(node, ip, fresh_peer_id(ip), reserved, fx.info_hash())
        .await
        .unwrap_or_else(|| panic!("rivulet hung up during the handshake"))
}

/// A fake leecher connected from `ip`, that sent its handshake and read
/// rivulet's; `None` if rivulet hangs up first.
async fn leecher_as(
    node: &Node,
    ip: Ipv4Addr,
    peer_id: PeerId,
    reserved: Reserved,
    info_hash: InfoHash,
) -> Option<Conn> {
    let ours = Handshake {
        reserved,
        info_hash,
        peer_id,
    };
    Conn::connect_within(PROMPT, ip, node.addr, ours).await
}

// ---------------------------------------------------------------------------
// Tests

/// A modern leecher (fast + extension protocol) gets rivulet's extended
/// handshake advertising `reqq` 500 and a have-all, is unchoked as soon as
/// it is interested, and with 64 requests in flight gets every block of
/// every piece with the right bytes, plus odd requests (one straddling two
/// read-cache chunks, one byte at the very end, an unaligned one). The
/// counters say what was served, to one peer.
#[tokio::test]
async fn serves_every_block_to_a_leecher() {
    let fx = big(1);
    let seeder = Node::seeder(&fx, |_| {}).await;
    let mut l = leecher(&seeder, modern(), &fx).await;
    assert!(
        l.hello().reserved.contains(Reserved::FAST),
        "rivulet's bits"
    );
    assert!(
        l.hello().reserved.contains(Reserved::EXTENSION_PROTOCOL),
        "rivulet's bits"
    );

    let ext = l
        .expect("extended handshake", |m| {
            matches!(m, Message::Extended { id: 0, .. })
        })
        .await;
    let Message::Extended { payload, .. } = ext else {
        unreachable!()
    };
    let hs = ExtendedHandshake::decode(&payload).unwrap();
    assert_eq!(SERVE_QUEUE, 500);
    assert_eq!(hs.reqq, Some(500), "reqq in {hs:?}");
    l.expect("have-all", |m| *m == Message::HaveAll).await;
    l.unchoked().await;

    let last = fx.num_pieces() as u32 - 1;
    let last_len = fx.piece_len(last);
    let mut blocks = fx.all_blocks();
    blocks.extend([
        // Across the boundary of the two chunks of piece 1.
        BlockRequest {
            piece: 1,
            offset: CHUNK_LEN - 100,
            length: BLOCK,
        },
        // The torrent's last byte.
        BlockRequest {
            piece: last,
            offset: last_len - 1,
            length: 1,
        },
        // Unaligned, inside the short last chunk.
        BlockRequest {
            piece: last,
            offset: CHUNK_LEN + 1000,
            length: 5000,
        },
    ]);
    let started = Instant::now();
    let bytes = within(DOWNLOAD, "fetching every block", l.fetch(&fx, &blocks, 64)).await;
    let expected: u64 = blocks.iter().map(|b| u64::from(b.length)).sum();
    assert_eq!(bytes, expected);
    eprintln!(
        "served {} blocks ({bytes} bytes) in {:?}",
        blocks.len(),
        started.elapsed()
    );

    let stats = &seeder.shared.stats;
    assert_eq!(stat(&stats.uploaded), bytes, "uploaded");
    assert_eq!(count(&stats.peers_served_total), 1, "peers served");
    assert_eq!(count(&stats.peers_incoming), 1, "incoming peers");
    assert_eq!(count(&stats.peers_serving), 1, "peers being served");
    assert!(
        !l.got()
            .iter()
            .any(|m| matches!(m, Message::Choke | Message::RejectRequest(_))),
        "{:?}",
        tail(&l.got())
    );
    assert_eq!(seeder.stop().await, Outcome::Complete);
}

/// Requests that are not inside one piece of the torrent, or not of a
/// length peers use, make rivulet hang up without sending anything for them
/// (nor for a valid request sent right after): each on a fresh connection,
/// unchoked first.
#[tokio::test]
async fn out_of_range_requests_close_the_connection() {
    let fx = Fixture::single(2);
    let seeder = Node::seeder(&fx, |_| {}).await;
    let last = PIECES as u32 - 1;
    let r = |piece, offset, length| BlockRequest {
        piece,
        offset,
        length,
    };
    let cases = [
        (
            "past the end of a full piece",
            r(0, fx.piece_len(0) - BLOCK + 1, BLOCK),
        ),
        (
            "past the end of the short last piece",
            r(last, BLOCK, BLOCK),
        ),
        (
            "one byte past the last piece",
            r(last, fx.piece_len(last) - 10, 11),
        ),
        ("offset overflowing u32", r(1, u32::MAX - 10, BLOCK)),
        ("length 0", r(0, 0, 0)),
        ("length 32 KiB", r(0, 0, 2 * BLOCK)),
        ("length 16 KiB + 1", r(0, 0, BLOCK + 1)),
        ("piece index past the end", r(PIECES as u32, 0, BLOCK)),
        ("piece index u32::MAX", r(u32::MAX, 0, BLOCK)),
    ];
    for (what, bad) in cases {
        let mut l = leecher(&seeder, modern(), &fx).await;
        l.unchoked().await;
        let good = fx.blocks_of(0)[0];
        l.send_all([Message::Request(bad), Message::Request(good)])
            .await;
        let after = l.closed(what).await;
        let pieces: Vec<String> = after
            .iter()
            .filter(|m| answered(m).is_some())
            .map(show)
            .collect();
        assert!(pieces.is_empty(), "{what}: rivulet sent {pieces:?}");
    }
    assert_eq!(stat(&seeder.shared.stats.uploaded), 0);
    assert_eq!(count(&seeder.shared.stats.peers_connected), 0);
    // Still serving.
    let mut l = leecher(&seeder, modern(), &fx).await;
    l.unchoked().await;
    within(PROMPT, "a block after the bad requests", async {
        l.fetch(&fx, &fx.blocks_of(last), 2).await
    })
    .await;
    assert_eq!(seeder.stop().await, Outcome::Complete);
}

/// A leecher that sends 3,000 valid requests at once (far past the 500
/// rivulet queues) is dropped, while a well-behaved leecher on another
/// address, which keeps as many requests in flight as rivulet's `reqq`
/// (500), downloads everything correctly meanwhile and stays connected.
#[tokio::test]
async fn request_flood_is_dropped_while_others_are_served() {
    let fx = Fixture::single(3);
    let seeder = Node::seeder(&fx, |_| {}).await;

    let good = {
        let mut good = leecher(&seeder, modern(), &fx).await;
        let fx = Arc::clone(&fx);
        tokio::spawn(async move {
            good.unchoked().await;
            // Every block, then 16 KiB at offsets 150..175 of every piece.
            let mut blocks = fx.all_blocks();
            blocks.extend((3000..3500u32).map(|i| BlockRequest {
                piece: i % PIECES as u32,
                offset: i / PIECES as u32,
                length: BLOCK,
            }));
            let bytes = good.fetch(&fx, &blocks, SERVE_QUEUE).await;
            (good, bytes, blocks)
        })
    };

    let mut flooder = leecher(&seeder, modern(), &fx).await;
    flooder.unchoked().await;
    // 3,000 distinct valid requests: 16 KiB at offsets 0..150 of every piece.
    let flood: Vec<BlockRequest> = (0..3000u32)
        .map(|i| BlockRequest {
            piece: i % PIECES as u32,
            offset: i / PIECES as u32,
            length: BLOCK,
        })
        .collect();
    assert!(flood.iter().all(|r| fx.range(r).is_some()));
    let (mut writer, reader) = flooder.split();
    // Rivulet may hang up while this is being written.
    let _ = writer
        .write_all(&encode(flood.iter().map(|r| Message::Request(*r))))
        .await;
    let got = within(PROMPT, "rivulet to drop the flooder", reader)
        .await
        .unwrap();
    let served: Vec<BlockRequest> = got
        .iter()
        .filter(|m| answered(m).is_some())
        .map(|m| check_piece(&fx, m))
        .collect();
    assert!(
        served.len() < flood.len(),
        "the flooder got all {} blocks",
        served.len()
    );
    eprintln!(
        "the flooder got {} blocks before it was dropped",
        served.len()
    );

    let (mut good, bytes, blocks) = within(DOWNLOAD, "the good leecher's download", good)
        .await
        .unwrap();
    assert_eq!(
        bytes,
        blocks.iter().map(|r| u64::from(r.length)).sum::<u64>()
    );
    // Not dropped with the flooder.
    let again = fx.blocks_of(0);
    within(
        PROMPT,
        "a block after the flood",
        good.fetch(&fx, &again, 2),
    )
    .await;
    assert_eq!(count(&seeder.shared.stats.peers_connected), 1);
    assert_eq!(seeder.stop().await, Outcome::Complete);
}

/// With one upload slot, the first interested leecher is unchoked and the
/// second is not. The second (fast extension, have-none) is offered the
/// BEP 6 allowed-fast set for its address; its request for another piece is
/// rejected and never served, its request for an allowed-fast piece is
/// served while it stays choked.
#[tokio::test]
async fn choked_leecher_gets_rejects_and_allowed_fast_pieces() {
    let fx = Fixture::single(4);
    let seeder = Node::seeder(&fx, |c| c.upload_slots = 1).await;

    let mut first = leecher(&seeder, modern(), &fx).await;
    first.unchoked().await;

    let mut second = leecher(&seeder, modern(), &fx).await;
    let set = allowed_fast_set(
        IpAddr::V4(second.ip()),
        fx.info_hash().as_bytes(),
        PIECES as u32,
        ALLOWED_FAST,
    );
    assert_eq!(set.len(), ALLOWED_FAST);
    let denied_piece = (0..PIECES as u32).find(|p| !set.contains(p)).unwrap();
    let denied = fx.blocks_of(denied_piece)[0];
    second
        .send_all([
            Message::HaveNone,
            Message::Interested,
            Message::Request(denied),
        ])
        .await;
    second
        .expect("reject of a request while choked", |m| {
            *m == Message::RejectRequest(denied)
        })
        .await;
    let mut offered: Vec<u32> = second
        .got()
        .iter()
        .filter_map(|m| match m {
            Message::AllowedFast { piece } => Some(*piece),
            _ => None,
        })
        .collect();
    offered.sort_unstable();
    let mut want = set.clone();
    want.sort_unstable();
    assert_eq!(offered, want, "allowed-fast pieces offered");

    // An allowed-fast piece is served, choked or not.
    let allowed = *fx.blocks_of(set[0]).last().unwrap();
    second.send(Message::Request(allowed)).await;
    let m = second
        .expect("an allowed-fast block while choked", |m| {
            matches!(m, Message::Piece { .. })
        })
        .await;
    assert_eq!(check_piece(&fx, &m), allowed);
    assert!(
        !second
            .got()
            .iter()
            .any(|m| *m == Message::Unchoke || answered(m) == Some(denied)),
        "the second leecher was unchoked or served {denied:?}: {:?}",
        tail(&second.got())
    );

    // The first one is still served.
    within(
        PROMPT,
        "a block for the unchoked leecher",
        first.fetch(&fx, &fx.blocks_of(denied_piece), 2),
    )
    .await;
    assert_eq!(count(&seeder.shared.stats.peers_serving), 1);
    assert_eq!(seeder.stop().await, Outcome::Complete);
}

/// A rivulet missing some pieces (found damaged by the startup check)
/// announces only what it has, offers only those as allowed-fast, and
/// rejects requests for the rest while serving the others.
#[tokio::test]
async fn pieces_we_lack_are_not_announced_and_rejected() {
    let fx = Fixture::single(5);
    // The allowed-fast set is the same across 127.0.0.0/24: damage one piece
    // of it, one outside it, and the (short) last piece.
    let set = allowed_fast_set(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        fx.info_hash().as_bytes(),
        PIECES as u32,
        ALLOWED_FAST,
    );
    let last = PIECES as u32 - 1;
    let in_set = *set.iter().find(|p| **p != last).unwrap();
    let outside = (0..last).find(|p| !set.contains(p)).unwrap();
    let missing = [in_set, outside, last];
    let seeder = Node::start(&fx, Data::Complete { damaged: &missing }, |_| {}).await;
    assert_eq!(
        seeder.report.have,
        PIECES - missing.len(),
        "{:?}",
        seeder.report
    );
    assert_eq!(seeder.outcome(), Outcome::Running);

    let mut l = leecher(&seeder, modern(), &fx).await;
    let m = l
        .expect("the seeder's bitfield", |m| {
            matches!(m, Message::Bitfield(_) | Message::HaveAll)
        })
        .await;
    let Message::Bitfield(bytes) = m else {
        panic!("have-all from a partial seeder")
    };
    let bits = Bitfield::from_bytes(&bytes, PIECES).unwrap();
    for p in 0..PIECES {
        assert_eq!(
            bits.get(p),
            !missing.contains(&(p as u32)),
            "piece {p} in the bitfield"
        );
    }

    l.send(Message::HaveNone).await;
    l.unchoked().await;
    // Offered before the unchoke (sent on have-none, which came first).
    let mut offered: Vec<u32> = l
        .got()
        .iter()
        .filter_map(|m| match m {
            Message::AllowedFast { piece } => Some(*piece),
            _ => None,
        })
        .collect();
    offered.sort_unstable();
    let mut want: Vec<u32> = allowed_fast_set(
        IpAddr::V4(l.ip()),
        fx.info_hash().as_bytes(),
        PIECES as u32,
        ALLOWED_FAST,
    )
    .into_iter()
    .filter(|p| !missing.contains(p))
    .collect();
    want.sort_unstable();
    assert!(want.len() < ALLOWED_FAST, "a damaged piece is in the set");
    assert_eq!(offered, want, "allowed-fast pieces offered");

    for p in missing {
        let r = fx.blocks_of(p)[0];
        l.send(Message::Request(r)).await;
        l.expect("reject of a piece we lack", |m| {
            *m == Message::RejectRequest(r)
        })
        .await;
    }
    let have = (0..PIECES as u32).find(|p| !missing.contains(p)).unwrap();
    let good = fx.blocks_of(have)[0];
    within(PROMPT, "a piece we have", l.fetch(&fx, &[good], 1)).await;
    assert!(
        !l.got()
            .iter()
            .any(|m| answered(m).is_some_and(|r| missing.contains(&r.piece))),
        "{:?}",
        tail(&l.got())
    );
    assert_eq!(seeder.stop().await, Outcome::Running);
}

/// Every request gets exactly one answer, the block or (after a cancel,
/// fast extension) a reject, never both and never neither: over every
/// block of the torrent with half of them cancelled, in batches of 24
/// (which straddle read-cache chunks); in even batches each cancel follows
/// its request at once, in odd ones the cancels go out once the batch's
/// first block arrived (some of the others are on their way by then, some
/// wait for their chunk to be read).
#[tokio::test]
async fn every_request_gets_one_answer_despite_cancels() {
    let fx = big(6);
    let seeder = Node::seeder(&fx, |_| {}).await;
    let mut l = leecher(&seeder, modern(), &fx).await;
    l.unchoked().await;

    let blocks = fx.all_blocks();
    // Odd ones: the first of each (even-sized) batch is never cancelled.
    let cancelled: HashSet<BlockRequest> = blocks.iter().skip(1).step_by(2).copied().collect();
    // Blocks and rejects per request.
    let mut answers: HashMap<BlockRequest, (usize, usize)> = HashMap::new();
    let mut tally = |m: &Message| match m {
        Message::Piece { .. } => answers.entry(check_piece(&fx, m)).or_default().0 += 1,
        Message::RejectRequest(r) => answers.entry(*r).or_default().1 += 1,
        Message::Choke => panic!("choked"),
        _ => {}
    };
    within(DOWNLOAD, "the requests and cancels", async {
        for (i, batch) in blocks.chunks(24).enumerate() {
            if i % 2 == 0 {
                l.send_all(batch.iter().flat_map(|r| {
                    let cancel = cancelled.contains(r).then_some(Message::Cancel(*r));
                    std::iter::once(Message::Request(*r)).chain(cancel)
                }))
                .await;
            } else {
                l.send_all(batch.iter().map(|r| Message::Request(*r))).await;
                loop {
                    let m = l.recv().await.expect("rivulet hung up");
                    tally(&m);
                    if answered(&m) == Some(batch[0]) {
                        break;
                    }
                }
                l.send_all(
                    batch
                        .iter()
                        .filter(|r| cancelled.contains(r))
                        .map(|r| Message::Cancel(*r)),
                )
                .await;
            }
        }
    })
    .await;
    // A request nothing else matches, answered after everything above.
    let sentinel = BlockRequest {
        piece: 0,
        offset: 1,
        length: 10,
    };
    l.send(Message::Request(sentinel)).await;
    within(DOWNLOAD, "every answer", async {
        loop {
            let m = l.recv().await.expect("rivulet hung up");
            if answered(&m) == Some(sentinel) {
                return;
            }
            tally(&m);
        }
    })
    .await;

    let (mut served, mut rejected) = (0, 0);
    for r in &blocks {
        let (p, j) = answers.remove(r).unwrap_or_default();
        assert_eq!(p + j, 1, "{r:?}: {p} blocks and {j} rejects");
        if cancelled.contains(r) {
            served += p;
            rejected += j;
        } else {
            assert_eq!(p, 1, "{r:?} not cancelled, yet rejected");
        }
    }
    assert!(answers.is_empty(), "answers to nothing asked: {answers:?}");
    eprintln!(
        "{} requests, {} cancelled: {served} served anyway, {rejected} rejected",
        blocks.len(),
        cancelled.len()
    );
    // Both ways of answering a cancelled request were seen.
    assert!(
        served > 0 && rejected > 0,
        "{served} served, {rejected} rejected"
    );
    let bytes: u64 = l
        .got()
        .iter()
        .filter_map(answered)
        .map(|r| u64::from(r.length))
        .sum();
    assert_eq!(stat(&seeder.shared.stats.uploaded), bytes);
    assert_eq!(seeder.stop().await, Outcome::Complete);
}

/// The listener hangs up on a handshake for a torrent it does not serve and
/// on garbage, without a word; a second connection with the peer id of a
/// connected peer is refused after the handshake while the first keeps
/// being served.
#[tokio::test]
async fn listener_refuses_strangers_and_duplicates() {
    let fx = Fixture::single(7);
    let seeder = Node::seeder(&fx, |_| {}).await;

    let ip = next_loopback();
    let other = Handshake {
        reserved: modern(),
        info_hash: InfoHash([0x5a; 20]),
        peer_id: fresh_peer_id(ip),
    }
    .to_bytes()
    .to_vec();
    let mut stream = tcp_from(ip, seeder.addr).await;
    stream.write_all(&other).await.unwrap();
    let got = read_to_close(&mut stream, "hang-up on an unknown info-hash").await;
    assert!(got.is_empty(), "rivulet answered an unknown info-hash");

    // Anything but the plaintext handshake may be an encryption handshake,
    // so garbage gets at most an MSE key and pad back, and a hang-up as
    // soon as no sync point can follow (628 bytes).
    let long = |start: &[u8]| {
        let mut g = start.to_vec();
        g.resize(700, 0xff);
        g
    };
    let garbage = [
        long(&[]),
        // The right length byte, then not the protocol string.
        long(b"\x13BitTorrent protocoX\0\0\0\0\0\0\0\0"),
        long(b"GET /announce HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    for g in garbage {
        let mut stream = tcp_from(next_loopback(), seeder.addr).await;
        stream.write_all(&g).await.unwrap();
        let got = read_to_close(&mut stream, "hang-up on garbage").await;
        assert!(
            got.len() <= 96 + 512,
            "rivulet answered garbage with {} bytes",
            got.len()
        );
    }

    let ip = next_loopback();
    let id = fresh_peer_id(ip);
    let mut first = leecher_as(&seeder, ip, id, modern(), fx.info_hash())
        .await
        .unwrap();
    first.unchoked().await;
    let twin = leecher_as(&seeder, next_loopback(), id, modern(), fx.info_hash()).await;
    if let Some(mut twin) = twin {
        let after = twin.closed("hang-up on a duplicate peer id").await;
        assert!(after.is_empty(), "the duplicate got {:?}", tail(&after));
    }
    within(
        PROMPT,
        "the first connection, after the duplicate",
        first.fetch(&fx, &fx.all_blocks(), 8),
    )
    .await;
    assert_eq!(count(&seeder.shared.stats.peers_connected), 1);
    assert_eq!(seeder.stop().await, Outcome::Complete);
}

/// `Listener::bind` on a port that is taken listens on the next one.
#[tokio::test]
async fn listener_takes_the_next_port() {
    let ip = next_loopback();
    let taken = loop {
        let l = std::net::TcpListener::bind((ip, 0)).unwrap();
        if l.local_addr().unwrap().port() < u16::MAX {
            break l;
        }
    };
    let p = taken.local_addr().unwrap().port();
    let listener = Listener::bind(Some(IpAddr::V4(ip)), p, Encryption::Off).unwrap();
    assert_eq!(listener.port(), p + 1);
    assert_eq!(
        listener.local_addrs(),
        [SocketAddr::new(IpAddr::V4(ip), p + 1)]
    );
    // It accepts there.
    let _ = tcp_from(next_loopback(), SocketAddr::new(IpAddr::V4(ip), p + 1)).await;
    drop(taken);
}

/// A swarm of three rivulets, each with its own listener and address: a
/// seeder and two leechers that know the seeder and each other. Both
/// leechers end with the seeder's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rivulet_swarm_of_one_seeder_and_two_leechers() {
    let fx = Fixture::sized(8, 64 * 1024, 48 * 64 * 1024 - 1000);
    let seeder = Node::seeder(&fx, |_| {}).await;
    let a = Node::start(&fx, Data::None, |_| {}).await;
    let b = Node::start(&fx, Data::None, |_| {}).await;
    assert_eq!(a.report.have, 0);
    for (node, other) in [(&a, &b), (&b, &a)] {
        node.dl_peers.send(seeder.addr).unwrap();
        node.dl_peers.send(other.addr).unwrap();
    }
    let started = Instant::now();
    tokio::join!(a.completed("leecher a"), b.completed("leecher b"));
    let took = started.elapsed();
    let up = |n: &Node| stat(&n.shared.stats.uploaded);
    let (sa, ua, ub) = (up(&seeder), up(&a), up(&b));
    eprintln!(
        "swarm: done in {took:?}; uploaded: seeder {sa}, a {ua}, b {ub} (of {} each)",
        fx.data.len()
    );
    let total = fx.data.len() as u64;
    for n in [&a, &b] {
        assert_eq!(stat(&n.shared.stats.downloaded), total);
        assert_eq!(stat(&n.shared.stats.hash_failures), 0);
    }
    // Every byte either leecher downloaded, someone uploaded.
    assert!(sa + ua + ub >= 2 * total);
    for n in [a, b] {
        let (outcome, dir) = n.stop_keeping_files().await;
        assert_eq!(outcome, Outcome::Complete);
        fx.assert_files(dir.path());
    }
    assert_eq!(seeder.stop().await, Outcome::Complete);
}

/// A TCP relay on its own address to `to`, for one pair of rivulets that
/// connect to each other through two of these. On its first connection,
/// bytes from the client go through at once, but the upstream's answer is
/// held until the upstream has sent more than its 68-byte handshake (so it
/// has registered the connection: its first message comes after that) and
/// `barrier` is passed, which the other relay of the pair passes at the same
/// point of its own first connection; `closed` counts first connections
/// that ended. Later connections (reconnections) are relayed plainly.
async fn crossing_relay(
    to: SocketAddr,
    barrier: Arc<Barrier>,
    closed: Arc<watch::Sender<usize>>,
) -> (SocketAddr, JoinHandle<()>) {
    let ip = next_loopback();
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        // Dropped with the task, which aborts every connection.
        let mut conns = JoinSet::new();
        let mut first = true;
        while let Ok((client, _)) = listener.accept().await {
            let gate = first.then(|| (Arc::clone(&barrier), Arc::clone(&closed)));
            first = false;
            conns.spawn(async move {
                let upstream = tcp_from(ip, to).await;
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = upstream.into_split();
                let forward = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut uw).await;
                    let _ = uw.shutdown().await;
                });
                let mut held = Vec::new();
                if let Some((barrier, _)) = &gate {
                    let mut buf = [0u8; 4096];
                    while held.len() <= 68 {
                        match ur.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => held.extend_from_slice(&buf[..n]),
                        }
                    }
                    barrier.wait().await;
                }
                if cw.write_all(&held).await.is_ok() {
                    let _ = tokio::io::copy(&mut ur, &mut cw).await;
                }
                let _ = cw.shutdown().await;
                let _ = forward.await;
                if let Some((_, closed)) = gate {
                    closed.send_modify(|n| *n += 1);
                }
            });
        }
    });
    (addr, task)
}

/// Two rivulets that learn each other's address at the same time connect
/// to each other at once. When each registers the other's incoming
/// connection before its own outgoing one completes its handshake (forced
/// here by relays that hold back each answer for a moment, as latency
/// would), one of the two connections must survive: each rivulet has half
/// of the pieces, and both complete before both connections have closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_connections_between_two_rivulets_keep_one() {
    let fx = Fixture::single(9);
    let first: Vec<u32> = (0..10).collect();
    let second: Vec<u32> = (10..PIECES as u32).collect();
    let a = Node::start(&fx, Data::Complete { damaged: &second }, |_| {}).await;
    let b = Node::start(&fx, Data::Complete { damaged: &first }, |_| {}).await;
    assert_eq!((a.report.have, b.report.have), (10, 10));
    let barrier = Arc::new(Barrier::new(2));
    let closed = Arc::new(watch::channel(0usize).0);
    let (to_b, _relay_b) = crossing_relay(b.addr, Arc::clone(&barrier), Arc::clone(&closed)).await;
    let (to_a, _relay_a) = crossing_relay(a.addr, barrier, Arc::clone(&closed)).await;
    a.dl_peers.send(to_b).unwrap();
    b.dl_peers.send(to_a).unwrap();
    let mut closed_rx = closed.subscribe();
    within(DOWNLOAD, "completion or both connections closed", async {
        tokio::select! {
            _ = async { tokio::join!(a.completed("a"), b.completed("b")) } => {}
            _ = closed_rx.wait_for(|n| *n == 2) => {}
        }
    })
    .await;
    let have = |n: &Node| stat(&n.shared.stats.pieces_done);
    assert!(
        a.shared.is_complete() && b.shared.is_complete(),
        "both crossing connections closed with a at {} pieces, b at {}",
        have(&a),
        have(&b)
    );
    for n in [a, b] {
        let (outcome, dir) = n.stop_keeping_files().await;
        assert_eq!(outcome, Outcome::Complete);
        fx.assert_files(dir.path());
    }
}

/// Without a bind address the listener takes IPv4 and IPv6 on one port, and
/// a peer reaches the torrent over either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_on_every_address_serves_ipv4_and_ipv6() {
    let fx = Fixture::single(31);
    let node = Node::seeder(&fx, |_| {}).await;
    let all = Listener::bind(None, 0, Encryption::Off).unwrap();
    all.add(&node.shared);
    let port = all.port();
    assert!(all.local_addrs().iter().all(|a| a.port() == port));
    assert!(all.local_addrs().iter().any(SocketAddr::is_ipv4));
    let v6 = all.local_addrs().iter().any(SocketAddr::is_ipv6);
    let mut targets = vec![SocketAddr::from(([127, 0, 0, 1], port))];
    if v6 {
        targets.push(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)));
    } else {
        eprintln!("no IPv6 on this machine: only IPv4 checked");
    }
    for (i, to) in targets.into_iter().enumerate() {
        let mut stream = TcpStream::connect(to).await.unwrap();
        let ours = Handshake {
            reserved: modern(),
            info_hash: fx.info_hash(),
            peer_id: fresh_peer_id(Ipv4Addr::new(127, 1, 0, i as u8)),
        };
        stream.write_all(&ours.to_bytes()).await.unwrap();
        let mut rbuf = BytesMut::new();
        let hello = within(PROMPT, "rivulet's handshake", async {
            loop {
                if let Some(h) = Handshake::decode(&mut rbuf).unwrap() {
                    return h;
                }
                assert_ne!(
                    stream.read_buf(&mut rbuf).await.unwrap(),
                    0,
                    "closed by {to}"
                );
            }
        })
        .await;
        assert_eq!(hello.info_hash, fx.info_hash(), "over {to}");
    }
    drop(all);
    node.stop().await;
}

/// A message of any kind with fields anywhere near (and beyond) the valid
/// ranges of a torrent of `pieces` pieces.
fn random_message(rng: &mut rand::rngs::StdRng, pieces: u32) -> Message {
    use rand::Rng;
    let piece = match rng.gen_range(0..10) {
        0 => u32::MAX,
        1 => pieces + rng.gen_range(0..3),
        _ => rng.gen_range(0..pieces),
    };
    let offset = match rng.gen_range(0..6) {
        0 => rng.gen(),
        1 => rng.gen_range(0..4 * CHUNK_LEN),
        _ => rng.gen_range(0..16u32) * BLOCK,
    };
    let length = *[0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 1 << 20, u32::MAX]
        .get(rng.gen_range(0..7))
        .unwrap();
    let r = BlockRequest {
        piece,
        offset,
        length,
    };
    fn bytes(rng: &mut rand::rngs::StdRng, max: usize) -> bytes::Bytes {
        let len = rng.gen_range(0..max);
        (0..len)
            .map(|_| rng.gen::<u8>())
            .collect::<Vec<u8>>()
            .into()
    }
    match rng.gen_range(0..19) {
        0 => Message::KeepAlive,
        1 => Message::Choke,
        2 => Message::Unchoke,
        3 => Message::Interested,
        4 => Message::NotInterested,
        5 => Message::Have { piece },
        6 => Message::Bitfield(bytes(rng, 2 * pieces as usize / 8 + 2)),
        7..=9 => Message::Request(r),
        10 => Message::Piece {
            piece,
            offset,
            data: bytes(rng, 2 * BLOCK as usize),
        },
        11 => Message::Cancel(r),
        12 => Message::Port(0),
        13 => Message::HaveAll,
        14 => Message::HaveNone,
        15 => Message::SuggestPiece { piece },
        16 => Message::RejectRequest(r),
        17 => Message::AllowedFast { piece },
        _ => Message::Extended {
            id: rng.gen_range(0..4),
            payload: bytes(rng, 300),
        },
    }
}

/// Peers that send random well-framed messages (every kind, fields in and
/// out of range), or random bytes after a good handshake, never bring the
/// seeder down: each is served, ignored or disconnected, and afterwards the
/// seeder still has its data and serves an honest leecher every block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_peers_never_bring_the_seeder_down() {
    use rand::{Rng, SeedableRng};
    // A panic in a peer task would only end that task: count the panics on
    // tokio's threads ("tokio-rt-worker", "tokio-runtime-worker" in older
    // versions). Checked by injecting one into the peer loop.
    static TASK_PANICS: AtomicUsize = AtomicUsize::new(0);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("tokio-r"))
        {
            TASK_PANICS.fetch_add(1, Ordering::SeqCst);
        }
        default_hook(info);
    }));
    let fx = big(41);
    let seeder = Node::seeder(&fx, |_| {}).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(41);
    let pieces = fx.num_pieces() as u32;
    for round in 0..80 {
        let l = leecher(&seeder, modern(), &fx).await;
        let (mut writer, reader) = l.split();
        let garbage = if round % 5 == 4 {
            let n = rng.gen_range(1..5000);
            (0..n).map(|_| rng.gen::<u8>()).collect::<Vec<u8>>()
        } else {
            let msgs: Vec<Message> = (0..rng.gen_range(1..300))
                .map(|_| random_message(&mut rng, pieces))
                .collect();
            encode(msgs).to_vec()
        };
        // Errors ignored: rivulet may hang up before reading it all.
        let _ = writer.write_all(&garbage).await;
        // Our end of the stream: rivulet hangs up once it has read it all.
        let _ = writer.shutdown().await;
        within(PROMPT, "rivulet hangs up on a finished peer", reader)
            .await
            .unwrap();
        assert_eq!(seeder.outcome(), Outcome::Complete, "after round {round}");
    }
    let mut honest = leecher(&seeder, modern(), &fx).await;
    honest.unchoked().await;
    let blocks = fx.all_blocks();
    let bytes = within(
        DOWNLOAD,
        "an honest leecher",
        honest.fetch(&fx, &blocks, 64),
    )
    .await;
    assert_eq!(bytes, fx.metainfo.info.total_length());
    assert_eq!(seeder.stop().await, Outcome::Complete);
    assert_eq!(TASK_PANICS.load(Ordering::SeqCst), 0, "tasks panicked");
}

/// At most `MAX_PENDING_HANDSHAKES` connections may be waiting to send their
/// handshake: one more is closed at once (long before the handshake
/// timeout), and the slot is free again when a silent one leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_bounds_pending_handshakes() {
    let fx = Fixture::single(51);
    let node = Node::seeder(&fx, |_| {}).await;
    let ip = next_loopback();
    let mut silent = Vec::new();
    for _ in 0..MAX_PENDING_HANDSHAKES {
        silent.push(tcp_from(ip, node.addr).await);
    }
    // Accepted in order: the listener took the first ones before this one.
    let mut extra = tcp_from(ip, node.addr).await;
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
        .await
        .expect("the connection over the bound is closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(silent);
    within(PROMPT, "a handshake once the silent peers left", async {
        loop {
            let peer_ip = next_loopback();
            if leecher_as(
                &node,
                peer_ip,
                fresh_peer_id(peer_ip),
                modern(),
                fx.info_hash(),
            )
            .await
            .is_some()
            {
                break;
            }
        }
    })
    .await;
    node.stop().await;
}

/// A torrent takes at most `max_peers` connections: one more gets rivulet's
/// handshake and is then closed without a session; once a peer leaves, a
/// newcomer is taken on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_connections_are_bounded_by_max_peers() {
    let fx = Fixture::single(52);
    let node = Node::seeder(&fx, |c| c.max_peers = 2).await;
    let is_have_all = |m: &Message| *m == Message::HaveAll;
    let mut a = leecher(&node, modern(), &fx).await;
    a.expect("a session for the first peer", is_have_all).await;
    let mut b = leecher(&node, modern(), &fx).await;
    b.expect("a session for the second peer", is_have_all).await;
    let mut c = leecher(&node, modern(), &fx).await;
    let got = c.closed("the third peer is closed").await;
    assert!(!got.iter().any(is_have_all), "{:?}", tail(&got));
    assert_eq!(count(&node.shared.stats.peers_connected), 2);
    drop(a);
    within(PROMPT, "a session once a peer left", async {
        loop {
            let mut d = leecher(&node, modern(), &fx).await;
            while let Some(m) = d.recv().await {
                if is_have_all(&m) {
                    return;
                }
            }
        }
    })
    .await;
    drop(b);
    node.stop().await;
}

/// The rechoke (every 10 s) runs on its own: with one regular upload slot,
/// the first interested leecher takes it at once, and the second is
/// unchoked by the rechoke as the optimistic unchoke.
///
/// On tokio's paused clock: the runtime jumps to the next timer whenever it
/// is idle, so the 10 s wait for the rechoke takes no real time.
#[tokio::test(start_paused = true)]
async fn rechoke_gives_a_waiting_peer_the_optimistic_slot() {
    let fx = Fixture::single(53);
    let node = Node::seeder(&fx, |c| c.upload_slots = 1).await;
    let mut first = leecher(&node, modern(), &fx).await;
    first.unchoked().await;
    let mut second = leecher(&node, modern(), &fx).await;
    second.send(Message::Interested).await;
    let started = tokio::time::Instant::now();
    // Longer than `expect`'s own limit: the first rechoke is up to 10 s away.
    let unchoked = tokio::time::timeout(rivulet_engine::choker::RECHOKE_INTERVAL + PROMPT, async {
        while let Some(m) = second.recv().await {
            if m == Message::Unchoke {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        unchoked,
        Ok(true),
        "the second leecher is unchoked at the first rechoke; got {:?}",
        tail(&second.got())
    );
    eprintln!("second leecher unchoked after {:?}", started.elapsed());
    assert_eq!(count(&node.shared.stats.peers_serving), 2);
    // The first one kept its slot (nothing else wanted it).
    assert!(!first.got().contains(&Message::Choke));
    node.stop().await;
}

// ---------------------------------------------------------------------------
// Encryption (MSE/PE)

/// Runs the initiator's side of an MSE handshake over `stream` for
/// `info_hash`, offering `provide`; returns how it ended, or `None` when
/// the peer hung up first.
async fn mse_initiate(
    stream: &mut TcpStream,
    info_hash: InfoHash,
    provide: CryptoSet,
    payload: &[u8],
) -> Option<(Box<Established>, BytesMut)> {
    let mut hs = MseHandshake::initiate(info_hash, provide, payload, &mut rand::thread_rng());
    let mut buf = BytesMut::new();
    loop {
        let progress = hs.receive(&mut buf);
        let out = hs.take_outgoing();
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return None;
        }
        match progress {
            Ok(Progress::Done(done)) => return Some((done, buf)),
            Ok(Progress::Pending) => {}
            Err(e) => panic!("rivulet broke the MSE handshake: {e}"),
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Two rivulets that require encryption trade a torrent over RC4, and a
/// peer that does not speak MSE gets nothing from either of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rivulets_that_require_encryption_trade_over_rc4_and_refuse_plaintext() {
    let fx = Fixture::sized(9, 64 * 1024, 24 * 64 * 1024 - 77);
    let seeder = Node::start_with(
        &fx,
        Data::Complete { damaged: &[] },
        Encryption::Require,
        |_| {},
    )
    .await;
    let leecher = Node::start_with(&fx, Data::None, Encryption::Require, |_| {}).await;
    leecher.dl_peers.send(seeder.addr).unwrap();
    leecher.completed("the encrypted download").await;
    let (_, dir) = leecher.stop_keeping_files().await;
    assert!(
        fx.read_back(dir.path()) == fx.data,
        "the encrypted download's bytes"
    );

    // A plaintext peer: hung up on, nothing said.
    let ip = next_loopback();
    let mut plain = tcp_from(ip, seeder.addr).await;
    let hs = Handshake {
        reserved: modern(),
        info_hash: fx.info_hash(),
        peer_id: fresh_peer_id(ip),
    };
    plain.write_all(&hs.to_bytes()).await.unwrap();
    let got = read_to_close(&mut plain, "hang-up on a plaintext peer").await;
    assert!(got.is_empty(), "a plaintext peer got {} bytes", got.len());

    // An MSE peer that offers only plaintext after the handshake: refused.
    let mut weak = tcp_from(next_loopback(), seeder.addr).await;
    let mut hs = MseHandshake::initiate(
        fx.info_hash(),
        CryptoSet::PLAINTEXT,
        b"",
        &mut rand::thread_rng(),
    );
    weak.write_all(&hs.take_outgoing()).await.unwrap();
    let mut buf = BytesMut::new();
    let ended = within(PROMPT, "the weak offer refused", async {
        loop {
            match weak.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            match hs.receive(&mut buf) {
                Ok(Progress::Pending) => weak.write_all(&hs.take_outgoing()).await.ok()?,
                other => return Some(format!("{other:?}")),
            };
        }
    })
    .await;
    assert_eq!(ended, None, "rivulet accepted a plaintext offer");
    assert_eq!(seeder.stop().await, Outcome::Complete);
}

/// Hostile MSE peers are cut off within the limits (at once for a torrent
/// we do not have or a pad past the bound, garbage is in
/// `listener_refuses_strangers_and_duplicates`; at the handshake deadline
/// for a slow drip) while an honest encrypted peer is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mse_peers_are_cut_off_while_others_are_served() {
    let fx = Fixture::sized(10, 64 * 1024, 16 * 64 * 1024);
    let seeder = Node::seeder(&fx, |_| {}).await;

    // A slow drip: one byte a second, started first, still dripping while
    // the others run.
    let mut drip = tcp_from(next_loopback(), seeder.addr).await;
    let drip_started = Instant::now();
    let dripping = tokio::spawn(async move {
        let mut sent = 0usize;
        loop {
            if drip.write_all(&[0x42]).await.is_err() {
                return (sent, drip_started.elapsed());
            }
            sent += 1;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                r = drip.read_u8() => if r.is_err() {
                    return (sent, drip_started.elapsed());
                }
            }
        }
    });

    // A stream key for a torrent the seeder does not have.
    let mut stranger = tcp_from(next_loopback(), seeder.addr).await;
    let other = InfoHash([0x5a; 20]);
    let started = Instant::now();
    let got = within(
        PROMPT,
        "a stranger's MSE handshake",
        mse_initiate(&mut stranger, other, CryptoSet::ALL, b"hs"),
    )
    .await;
    assert!(
        got.is_none(),
        "rivulet finished an MSE handshake for a torrent it does not have"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut off late: {:?}",
        started.elapsed()
    );

    // A PadC longer than the protocol allows (600 bytes, at most 512),
    // sent by a peer that knows the key: cut off once the length is read.
    let mut padder = tcp_from(next_loopback(), seeder.addr).await;
    let xa = PrivateKey::random(&mut rand::thread_rng());
    padder.write_all(&xa.public_key().0).await.unwrap();
    let mut yb = [0u8; KEY_LEN];
    within(PROMPT, "the seeder's key", padder.read_exact(&mut yb))
        .await
        .unwrap();
    let secret = xa.shared_secret(&PublicKey(yb)).unwrap();
    let sha1 = |parts: &[&[u8]]| -> [u8; 20] {
        let mut h = sha1::Sha1::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    };
    let ih = fx.info_hash();
    let mut step3 = sha1(&[b"req1", &secret.0]).to_vec();
    let (req2, req3) = (sha1(&[b"req2", ih.as_bytes()]), sha1(&[b"req3", &secret.0]));
    step3.extend(req2.iter().zip(req3).map(|(a, b)| a ^ b));
    let mut enc = vec![0u8; 8];
    enc.extend_from_slice(&CryptoSet::ALL.0.to_be_bytes());
    enc.extend_from_slice(&600u16.to_be_bytes());
    Rc4Stream::from_key(&sha1(&[b"keyA", &secret.0, ih.as_bytes()])).apply(&mut enc);
    step3.extend(enc);
    let started = Instant::now();
    padder.write_all(&step3).await.unwrap();
    let rest = read_to_close(&mut padder, "hang-up on an oversized pad").await;
    assert!(
        rest.len() <= 512,
        "answered an oversized pad with {} bytes",
        rest.len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut off late: {:?}",
        started.elapsed()
    );

    // An honest encrypted peer, meanwhile: a rivulet that requires it.
    let leecher = Node::start_with(&fx, Data::None, Encryption::Require, |_| {}).await;
    leecher.dl_peers.send(seeder.addr).unwrap();
    leecher.completed("the honest encrypted peer").await;

    // The drip is cut off at the handshake deadline (10 s), not later.
    let (sent, after) = within(Duration::from_secs(20), "the drip cut off", dripping)
        .await
        .unwrap();
    assert!(sent < 96, "the drip got as far as {sent} bytes");
    assert!(
        after >= Duration::from_secs(9) && after < Duration::from_secs(15),
        "the drip was cut off after {after:?}"
    );
    assert_eq!(seeder.stop().await, Outcome::Complete);
}
