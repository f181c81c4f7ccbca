//! The peer connection logic (`peer/`, driven through `Download` and
//! `torrent::run`) against fake peers run in-process on loopback addresses:
//! the test kit's `FakePeer` (`rivulet_testkit::peer`), listeners speaking
//! the wire protocol with `rivulet_wire`.
//!
//! Each test builds a small torrent in memory (20 pieces of 32 KiB, the last
//! one short, real SHA-1 hashes of deterministic data), downloads it into a
//! temporary folder, and asserts on the outcome, the files, the `Stats`
//! counters and what each fake peer received from rivulet: every fake peer
//! logs the handshake, every message, what it served and when rivulet closed
//! the connection. The fixture is `rivulet_testkit::fixture`,
//! shared with `serving.rs`.
//!
//! No sleep is used as synchronisation: tests wait on the events themselves
//! (a fake peer's log, the download's outcome), under timeouts that only fail
//! the test. The two tests that assert durations (a prompt hang-up, two
//! request timeouts) run on tokio's paused clock and measure virtual time
//! (`tokio::time::Instant`), so a loaded machine cannot fail them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rivulet_core::InfoHash;
use rivulet_engine::download::{Download, SeedPolicy, StartReport};
use rivulet_engine::torrent::{Outcome, Shared, TorrentConfig};
use rivulet_wire::{BlockRequest, Message, Reserved};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use rivulet_testkit::fixture::{all, bitfield, within, Fixture, BLOCK, PIECES, PIECE_LEN, TOTAL};
use rivulet_testkit::peer::{
    accepts, cancels, eof, position, requests, served, summary, Act, Event as Ev, FakePeer,
};

/// Time a whole download may take.
const DOWNLOAD: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The download

fn config() -> TorrentConfig {
    TorrentConfig {
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
        ..TorrentConfig::default()
    }
}

/// A download running in its own task.
struct Running {
    shared: Arc<Shared>,
    peers: mpsc::UnboundedSender<SocketAddr>,
    report: StartReport,
    task: JoinHandle<(Download, Outcome)>,
    _stop: oneshot::Sender<()>,
}

/// A download outside a session that speaks plaintext only, as the
/// scripted peers here do (with encryption preferred, each would first see
/// an MSE handshake it cannot answer, and a second connection).
async fn prepare_plaintext(
    metainfo: &rivulet_core::Metainfo,
    dir: &Path,
    config: TorrentConfig,
) -> Result<
    (Download, rivulet_engine::download::StartReport),
    rivulet_engine::download::DownloadError,
> {
    let folder = rivulet_engine::folder::DataFolder::open(
        metainfo,
        dir,
        &rivulet_engine::folder::FolderOptions::default(),
    )?;
    let settings = rivulet_engine::torrent::Settings {
        encryption: rivulet_engine::encryption::Encryption::Off,
        ..rivulet_engine::torrent::Settings::standalone(config)
    };
    Download::prepare_with(metainfo, folder, settings, Arc::new(|_| {})).await
}

impl Running {
    async fn start(fx: &Fixture, dir: &Path, config: TorrentConfig) -> Running {
        let (mut dl, report) = prepare_plaintext(&fx.metainfo, dir, config).await.unwrap();
        let shared = Arc::clone(&dl.shared);
        let peers = dl.peer_sender();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let outcome = dl
                .run(
                    async {
                        if stopped.await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    },
                    SeedPolicy::NONE,
                )
                .await;
            (dl, outcome)
        });
        Running {
            shared,
            peers,
            report,
            task,
            _stop: stop,
        }
    }

    fn add(&self, peer: &FakePeer) {
        self.peers.send(peer.addr).unwrap();
    }

    fn outcome(&self) -> Outcome {
        self.shared.outcome().borrow().clone()
    }

    /// Waits for the download to end; fails the test after `DOWNLOAD`.
    async fn finish(self) -> Outcome {
        let (_, outcome) = within(DOWNLOAD, "the download", self.task).await.unwrap();
        outcome
    }
}

fn stat(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// Tests

/// One honest seeder: the download completes with the right bytes in the
/// right files; rivulet asks for every block exactly once, each a real
/// block (16 KiB, or the short end of a piece) of a piece the peer
/// announced, only once unchoked.
#[tokio::test]
async fn downloads_from_one_honest_seeder() {
    let fx = Fixture::build(
        1,
        &[
            (&["a", "one.bin"], 100_000),
            (&["two.bin"], TOTAL - 100_001),
            (&["three.bin"], 1),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let seeder = FakePeer::honest(&fx).await;
    let dl = Running::start(&fx, dir.path(), config()).await;
    assert_eq!(dl.report.have, 0);
    dl.add(&seeder);
    let shared = Arc::clone(&dl.shared);
    assert_eq!(dl.finish().await, Outcome::Complete);

    fx.assert_files(dir.path());
    seeder.assert_no_violation();
    let log = seeder.log();
    // The handshake is rivulet's, for this torrent, with the fast and
    // extension protocol bits.
    let hello = log.iter().find_map(|e| match e {
        Ev::Hello(_, h) => Some(*h),
        _ => None,
    });
    let hello = hello.expect("rivulet's handshake");
    assert_eq!(hello.info_hash, fx.info_hash());
    assert!(hello.reserved.contains(Reserved::FAST));
    assert!(hello.reserved.contains(Reserved::EXTENSION_PROTOCOL));
    // Each block asked for once, on one connection.
    assert_eq!(accepts(&log), 1);
    let mut asked: Vec<BlockRequest> = requests(&log).into_iter().map(|(_, r)| r).collect();
    asked.sort();
    let mut blocks = fx.all_blocks();
    blocks.sort();
    assert_eq!(asked, blocks, "every block requested exactly once");
    assert!(asked.iter().any(|r| r.length == 3_616), "short last block");
    assert!(cancels(&log).is_empty());

    let stats = &shared.stats;
    assert_eq!(stat(&stats.downloaded), TOTAL as u64);
    assert_eq!(stat(&stats.verified_bytes), TOTAL as u64);
    assert_eq!(stat(&stats.pieces_done), PIECES as u64);
    assert_eq!(stat(&stats.wasted), 0);
    assert_eq!(stat(&stats.hash_failures), 0);
    assert_eq!(stats.peers_banned.load(Ordering::Relaxed), 0);
    assert_eq!(shared.have_pieces(), all());
}

/// Two peers with half the pieces each (even and odd); piece 1 is in
/// neither bitfield, and the even peer announces it with a `have` after its
/// first block. Rivulet never asks a peer for a piece before the peer
/// announced it, gets every piece from whoever has it, and piece 1 from the
/// `have`.
#[tokio::test]
async fn requests_only_pieces_the_peer_announced() {
    let fx = Fixture::single(2);
    let dir = tempfile::tempdir().unwrap();
    let even: Vec<bool> = (0..PIECES).map(|p| p % 2 == 0).collect();
    let odd: Vec<bool> = (0..PIECES).map(|p| p % 2 == 1 && p != 1).collect();
    let e = even.clone();
    let even_peer = FakePeer::start(&fx, move |c| {
        c.seed(e.clone(), Reserved::NONE, |n, _| match n {
            0 => vec![Act::Serve, Act::Send(Message::Have { piece: 1 })],
            _ => vec![Act::Serve],
        })
    })
    .await;
    let o = odd.clone();
    let odd_peer = FakePeer::start(&fx, move |c| {
        c.seed(o.clone(), Reserved::NONE, |_, _| vec![Act::Serve])
    })
    .await;
    let dl = Running::start(&fx, dir.path(), config()).await;
    dl.add(&even_peer);
    dl.add(&odd_peer);
    assert_eq!(dl.finish().await, Outcome::Complete);
    fx.assert_files(dir.path());

    // The fakes flag any request for a piece they did not announce (yet).
    even_peer.assert_no_violation();
    odd_peer.assert_no_violation();
    let (e_log, o_log) = (even_peer.log(), odd_peer.log());
    assert!(requests(&e_log)
        .iter()
        .all(|(_, r)| even[r.piece as usize] || r.piece == 1));
    assert!(requests(&o_log).iter().all(|(_, r)| odd[r.piece as usize]));
    // Piece 1 was asked of the even peer only after its `have`.
    let have_at = position(&e_log, |e| {
        matches!(e, Ev::Sent(_, Message::Have { piece: 1 }))
    })
    .unwrap();
    let first_ask = position(
        &e_log,
        |e| matches!(e, Ev::Got(_, Message::Request(r)) if r.piece == 1),
    )
    .unwrap();
    assert!(have_at < first_ask);
    // Every block came from one of them, both delivered, piece 1 from the
    // even peer.
    let mut got: Vec<BlockRequest> = served(&e_log).into_iter().chain(served(&o_log)).collect();
    got.sort();
    got.dedup();
    let mut blocks = fx.all_blocks();
    blocks.sort();
    assert_eq!(got, blocks);
    assert!(served(&o_log).iter().any(|r| r.piece % 2 == 1));
    assert!(served(&e_log).iter().any(|r| r.piece == 1));
}

/// A seeder that serves three blocks, then chokes in the middle of a piece
/// and ignores what it was asked; a second seeder has only the first half
/// of the pieces. Rivulet drops the choked requests, asks the choked peer
/// nothing more until it unchokes, then finishes the second half from it.
#[tokio::test]
async fn choke_mid_piece_stops_requests_until_unchoke() {
    let fx = Fixture::single(3);
    let dir = tempfile::tempdir().unwrap();
    let (unchoke_tx, unchoke_rx) = watch::channel(false);
    let choker = FakePeer::start(&fx, move |mut c| {
        let mut unchoke = unchoke_rx.clone();
        async move {
            if !c.handshake(Reserved::FAST).await {
                return;
            }
            c.send(bitfield(&all())).await;
            let mut unchoked = false;
            let mut served = 0;
            // Serve three blocks.
            while served < 3 {
                match c.recv().await {
                    None => return,
                    Some(Message::Interested) if !unchoked => {
                        c.send(Message::Unchoke).await;
                        unchoked = true;
                    }
                    Some(Message::Request(r)) => {
                        if c.check_request(&r, &all(), !unchoked) {
                            c.send_block(r, false).await;
                            served += 1;
                        }
                    }
                    Some(_) => {}
                }
            }
            // Choke, then a request of our own: rivulet (fast extension)
            // rejects it after handling the choke, so whatever it sends
            // after that reject, it sent knowing it is choked.
            c.send(Message::Choke).await;
            let ping = BlockRequest {
                piece: 0,
                offset: 0,
                length: BLOCK,
            };
            c.send(Message::Request(ping)).await;
            loop {
                tokio::select! {
                    m = c.recv() => if m.is_none() { return },
                    _ = unchoke.wait_for(|u| *u) => break,
                }
            }
            c.send(Message::Unchoke).await;
            c.serve(all(), true, |_, _| vec![Act::Serve]).await;
        }
    })
    .await;
    let first_half: Vec<bool> = (0..PIECES).map(|p| p < PIECES / 2).collect();
    let fh = first_half.clone();
    let half = FakePeer::start(&fx, move |c| {
        c.seed(fh.clone(), Reserved::NONE, |_, _| vec![Act::Serve])
    })
    .await;

    let dl = Running::start(&fx, dir.path(), config()).await;
    dl.add(&choker);
    let is_reject = |e: &Ev| matches!(e, Ev::Got(_, Message::RejectRequest(_)));
    choker
        .wait("rivulet rejects our request after the choke", |l| {
            l.iter().any(is_reject)
        })
        .await;
    // Only now the second peer: it serves what it has while the first is
    // choked.
    dl.add(&half);
    half.wait("the half seeder serves 4 blocks", |l| served(l).len() >= 4)
        .await;
    assert_eq!(dl.outcome(), Outcome::Running);
    let choked_log = choker.log();
    unchoke_tx.send(true).unwrap();
    assert_eq!(dl.finish().await, Outcome::Complete);
    fx.assert_files(dir.path());
    choker.assert_no_violation();
    half.assert_no_violation();

    // The choke came in the middle of a piece.
    let first = served(&choked_log);
    assert_eq!(first.len(), 3);
    assert!(
        first
            .iter()
            .any(|r| first.iter().filter(|s| s.piece == r.piece).count()
                < fx.blocks_of(r.piece).len()),
        "choked mid-piece: {first:?}"
    );
    // Nothing asked between the reject (choke handled) and the unchoke.
    let log = choker.log();
    let reject_at = position(&log, is_reject).unwrap();
    let unchoke_at = reject_at
        + position(&log[reject_at..], |e| {
            matches!(e, Ev::Sent(_, Message::Unchoke))
        })
        .unwrap();
    let while_choked: Vec<_> = requests(&log[reject_at..unchoke_at]);
    assert!(
        while_choked.is_empty(),
        "requests while choked: {while_choked:?}"
    );
    // After the unchoke it is asked again, and serves the second half.
    let after = requests(&log[unchoke_at..]);
    assert!(!after.is_empty());
    assert!(served(&log[unchoke_at..])
        .iter()
        .any(|r| !first_half[r.piece as usize]));
    // The half seeder was never asked for the second half.
    assert!(requests(&half.log())
        .iter()
        .all(|(_, r)| first_half[r.piece as usize]));
}

/// A fast-extension peer rejects every request for some pieces, which
/// another peer alone has: the rejected blocks come from that peer, and the
/// download completes. (End-game would rescue the blocks here even if
/// rejects were ignored; `rejected_request_frees_its_slot` checks that a
/// reject frees the request.)
#[tokio::test]
async fn rejected_requests_go_to_another_peer() {
    let fx = Fixture::single(4);
    let dir = tempfile::tempdir().unwrap();
    let rejected = |p: u32| p.is_multiple_of(4);
    let rejecter = FakePeer::start(&fx, move |c| {
        c.seed(all(), Reserved::FAST, move |_, r| {
            if rejected(r.piece) {
                vec![Act::Reject]
            } else {
                vec![Act::Serve]
            }
        })
    })
    .await;
    let only: Vec<bool> = (0..PIECES as u32).map(rejected).collect();
    let other = FakePeer::start(&fx, move |c| {
        c.seed(only.clone(), Reserved::NONE, |_, _| vec![Act::Serve])
    })
    .await;
    let dl = Running::start(&fx, dir.path(), config()).await;
    dl.add(&rejecter);
    rejecter
        .wait("a request rejected", |l| {
            l.iter()
                .any(|e| matches!(e, Ev::Sent(_, Message::RejectRequest(_))))
        })
        .await;
    dl.add(&other);
    let shared = Arc::clone(&dl.shared);
    assert_eq!(dl.finish().await, Outcome::Complete);
    fx.assert_files(dir.path());
    rejecter.assert_no_violation();
    other.assert_no_violation();

    let (r_log, o_log) = (rejecter.log(), other.log());
    let rejects: Vec<BlockRequest> = r_log
        .iter()
        .filter_map(|e| match e {
            Ev::Sent(_, Message::RejectRequest(r)) => Some(*r),
            _ => None,
        })
        .collect();
    let from_other: HashSet<BlockRequest> = served(&o_log).into_iter().collect();
    for r in &rejects {
        assert!(
            from_other.contains(r),
            "rejected {r:?} never fetched elsewhere"
        );
    }
    assert_eq!(stat(&shared.stats.wasted), 0);
    assert_eq!(stat(&shared.stats.downloaded), TOTAL as u64);
}

/// A fast-extension peer, the only one, that allows 4 requests in flight
/// (`reqq` in its extended handshake) and rejects the first request for
/// each block: a reject frees the request's slot in the pipeline and its
/// block is asked for again (a sole source must be retried), so the
/// download completes; rivulet never has more than 4 requests in flight.
#[tokio::test]
async fn rejected_request_frees_its_slot() {
    let fx = Fixture::single(15);
    let dir = tempfile::tempdir().unwrap();
    let peer = FakePeer::start(&fx, |mut c| async move {
        if !c
            .handshake(Reserved::FAST | Reserved::EXTENSION_PROTOCOL)
            .await
        {
            return;
        }
        c.send(bitfield(&all())).await;
        let hs = rivulet_wire::ExtendedHandshake {
            reqq: Some(4),
            ..Default::default()
        };
        c.send(hs.to_message()).await;
        let mut rejected = HashSet::new();
        c.serve(all(), false, move |_, r| {
            if rejected.insert(*r) {
                vec![Act::Reject]
            } else {
                vec![Act::Serve]
            }
        })
        .await;
    })
    .await;
    let dl = Running::start(&fx, dir.path(), config()).await;
    dl.add(&peer);
    let shared = Arc::clone(&dl.shared);
    assert_eq!(dl.finish().await, Outcome::Complete);
    fx.assert_files(dir.path());
    peer.assert_no_violation();

    let log = peer.log();
    let rejects = log
        .iter()
        .filter(|e| matches!(e, Ev::Sent(_, Message::RejectRequest(_))))
        .count();
    assert_eq!(rejects, fx.all_blocks().len());
    assert_eq!(accepts(&log), 1);
    // Requests in flight as the peer sees them: never more than it allows
    // (rivulet's own count is never lower).
    let mut in_flight = 0i32;
    let mut most = 0;
    for e in &log {
        match e {
            Ev::Got(_, Message::Request(_)) => in_flight += 1,
            Ev::Got(_, Message::Cancel(_))
            | Ev::Served(..)
            | Ev::Sent(_, Message::RejectRequest(_)) => in_flight -= 1,
            _ => {}
        }
        most = most.max(in_flight);
    }
    assert!(most <= 4, "{most} requests in flight, reqq is 4");
    assert_eq!(stat(&shared.stats.wasted), 0);
    assert_eq!(stat(&shared.stats.downloaded), TOTAL as u64);
}

/// A peer sends a block nobody asked for (before any request), and one of
/// the wrong length at a requested offset: both are counted as wasted,
/// neither is written (no piece fails its hash), the connection stays up and
/// the download completes.
#[tokio::test]
async fn unrequested_blocks_are_wasted_not_written() {
    let fx = Fixture::single(5);
    let dir = tempfile::tempdir().unwrap();
    let peer = FakePeer::start(&fx, |mut c| async move {
        if !c.handshake(Reserved::NONE).await {
            return;
        }
        c.send(bitfield(&all())).await;
        c.send(Message::Unchoke).await;
        c.send(Message::Piece {
            piece: 0,
            offset: 0,
            data: Bytes::from(vec![0xee; BLOCK as usize]),
        })
        .await;
        c.serve(all(), true, |n, r| match n {
            0 => vec![
                Act::Send(Message::Piece {
                    piece: r.piece,
                    offset: r.offset,
                    data: Bytes::from(vec![0xee; 1000]),
                }),
                Act::Serve,
            ],
            _ => vec![Act::Serve],
        })
        .await;
    })
    .await;
    let dl = Running::start(&fx, dir.path(), config()).await;
    dl.add(&peer);
    let shared = Arc::clone(&dl.shared);
    assert_eq!(dl.finish().await, Outcome::Complete);
    fx.assert_files(dir.path());
    peer.assert_no_violation();

    let stats = &shared.stats;
    assert_eq!(stat(&stats.wasted), u64::from(BLOCK) + 1000);
    assert_eq!(stat(&stats.hash_failures), 0);
    assert_eq!(stat(&stats.downloaded), TOTAL as u64);
    assert_eq!(accepts(&peer.log()), 1, "the connection stayed up");
}

/// Some clients (aria2 1.36) send a bitfield again late in the session, or a
/// have-all after their bitfield: it replaces what rivulet knew of their
/// pieces, and the connection goes on to complete the download.
#[tokio::test]
async fn late_bitfield_replaces_what_the_peer_has() {
    let fx = Fixture::single(6);
    for late in [bitfield(&all()), Message::HaveAll] {
        let dir = tempfile::tempdir().unwrap();
        let reserved = if matches!(late, Message::HaveAll) {
            Reserved::FAST
        } else {
            Reserved::NONE
        };
        let peer = FakePeer::start(&fx, move |c| {
            let late = late.clone();
            c.seed(all(), reserved, move |n, _| match n {
                2 => vec![Act::Serve, Act::Send(late.clone())],
                _ => vec![Act::Serve],
            })
        })
        .await;
        let dl = Running::start(&fx, dir.path(), config()).await;
        dl.add(&peer);
        assert_eq!(dl.finish().await, Outcome::Complete);
        fx.assert_files(dir.path());
        let log = peer.log();
        assert_eq!(accepts(&log), 1, "one connection throughout");
        assert!(
            log.iter()
                .filter(|e| matches!(
                    e,
                    Ev::Sent(_, Message::Bitfield(_)) | Ev::Sent(_, Message::HaveAll)
                ))
                .count()
                >= 2,
            "{:#?}",
            summary(&log)
        );
        peer.assert_no_violation();
    }
}

/// A message length of 0xFFFFFFFF right after the handshake gets the peer
/// dropped at once (the decoder does not wait for 4 GiB), and so does a
/// handshake for another torrent; an honest peer then completes the
/// download.
#[tokio::test(start_paused = true)]
async fn protocol_garbage_disconnects() {
    let fx = Fixture::single(7);
    let dir = tempfile::tempdir().unwrap();
    let garbage = FakePeer::start(&fx, |mut c| async move {
        if !c.handshake(Reserved::NONE).await {
            return;
        }
        c.write(&[0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0, 0]).await;
        c.drain().await;
    })
    .await;
    let stranger = FakePeer::start(&fx, |mut c| async move {
        if !c.handshake_as(Reserved::FAST, InfoHash([0x55; 20])).await {
            return;
        }
        c.drain().await;
    })
    .await;
    let good = FakePeer::honest(&fx).await;
    let dl = Running::start(&fx, dir.path(), config()).await;
    let started = Instant::now();
    dl.add(&garbage);
    dl.add(&stranger);
    garbage.wait("rivulet hangs up", |l| eof(l, 0)).await;
    stranger.wait("rivulet hangs up", |l| eof(l, 0)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "hung up only after {:?}",
        started.elapsed()
    );
    // The stranger heard nothing after the handshakes.
    let log = stranger.log();
    assert!(
        !log.iter().any(|e| matches!(e, Ev::Got(..))),
        "{:#?}",
        summary(&log)
    );
    assert!(requests(&garbage.log()).is_empty());
    dl.add(&good);
    assert_eq!(dl.finish().await, Outcome::Complete);
    fx.assert_files(dir.path());
    good.assert_no_violation();
    garbage.assert_no_violation();
}

/// A peer that sends only corrupt data is the sole sender of a piece that
/// fails its hash: its IP is banned at once, never connected again (not
/// even on another port), and an honest peer completes the download.
#[tokio::test]
async fn corrupt_sole_sender_is_banned() {
    let fx = Fixture::single(8);
    let dir = tempfile::tempdir().unwrap();
    let liar = FakePeer::start(&fx, |c| {
        c.seed(all(), Reserved::NONE, |_, _| vec![Act::Corrupt])
    })
    .await;
    let liar_again = FakePeer::start_on(liar.ip(), &fx, |c| {
        c.seed(all(), Reserved::NONE, |_, _| vec![Act::Corrupt])
    })
    .await;
    let good = FakePeer::honest(&fx).await;
    let dl = Running::start(&fx, dir.path(), config()).await;
    dl.add(&liar);
    liar.wait("rivulet hangs up on the liar", |l| eof(l, 0))
        .await;
    let stats = &dl.shared.stats;
    assert_eq!(stats.peers_banned.load(Ordering::Relaxed), 1);
    assert!(stat(&stats.hash_failures) >= 1);
    assert!(dl.shared.is_banned(IpAddr::V4(liar.ip())));
    // The same IP on another port, and the honest peer.
    dl.add(&liar_again);
    dl.add(&good);
    let shared = Arc::clone(&dl.shared);
    assert_eq!(dl.finish().await, Outcome::Complete);
    fx.assert_files(dir.path());
    assert_eq!(accepts(&liar.log()), 1, "the liar was connected again");
    assert_eq!(accepts(&liar_again.log()), 0, "a banned IP was connected");
    assert_eq!(shared.stats.peers_banned.load(Ordering::Relaxed), 1);
    assert!(!shared.is_banned(IpAddr::V4(good.ip())));
    assert!(stat(&shared.stats.wasted) >= u64::from(PIECE_LEN));
    assert!(liar
        .log()
        .iter()
        .all(|e| !matches!(e, Ev::Served(_, _, true))));
    good.assert_no_violation();
    liar.assert_no_violation();
}

/// A peer that unchokes and never answers: with a 300 ms request timeout,
/// rivulet takes its requests back and asks again after the first timeout,
/// and drops the peer after the second; the blocks it was asked for then
/// come from another peer.
#[tokio::test(start_paused = true)]
async fn stalled_peer_is_dropped_after_two_timeouts() {
    let fx = Fixture::single(9);
    let dir = tempfile::tempdir().unwrap();
    let stalled = FakePeer::start(&fx, |c| c.seed(all(), Reserved::NONE, |_, _| vec![])).await;
    let good = FakePeer::honest(&fx).await;
    let dl = Running::start(
        &fx,
        dir.path(),
        TorrentConfig {
            request_timeout: Duration::from_millis(300),
            // 16 pieces of two blocks in progress at most: after its first
            // timeout the peer can only be asked for those blocks again.
            max_pieces_in_progress: 16,
            min_bytes_in_progress: 0,
            ..config()
        },
    )
    .await;
    // Alone at first, so that nobody else can take its blocks.
    dl.add(&stalled);
    stalled.wait("requests", |l| !requests(l).is_empty()).await;
    let asked_at = Instant::now();
    stalled.wait("rivulet hangs up", |l| eof(l, 0)).await;
    let dropped_after = asked_at.elapsed();
    assert!(
        dropped_after >= Duration::from_millis(600),
        "dropped after {dropped_after:?}, less than two timeouts"
    );
    assert_eq!(dl.outcome(), Outcome::Running);
    let log = stalled.log();
    // One timeout survived: the blocks were asked for again on the same
    // connection before the hang-up.
    let asked: Vec<BlockRequest> = requests(&log)
        .into_iter()
        .filter(|(c, _)| *c == 0)
        .map(|(_, r)| r)
        .collect();
    let distinct: HashSet<_> = asked.iter().copied().collect();
    assert!(
        asked.len() > distinct.len(),
        "nothing asked again after the first timeout: {asked:?}"
    );

    dl.add(&good);
    let shared = Arc::clone(&dl.shared);
    assert_eq!(dl.finish().await, Outcome::Complete);
    fx.assert_files(dir.path());
    // What the stalled peer was asked for came from the other one.
    let from_good: HashSet<BlockRequest> = served(&good.log()).into_iter().collect();
    assert!(distinct.iter().all(|r| from_good.contains(r)));
    assert_eq!(stat(&shared.stats.wasted), 0);
    good.assert_no_violation();
    stalled.assert_no_violation();
}

/// End-game with two seeders, one of which serves two blocks and then sits
/// on its requests: once nothing is left unstarted, the fast seeder gets
/// duplicate requests for them, and each block it delivers is cancelled at
/// the slow one.
#[tokio::test]
async fn end_game_cancels_at_the_slower_peer() {
    let fx = Fixture::single(10);
    let dir = tempfile::tempdir().unwrap();
    // The slow seeder serves only as many blocks as the test allows
    // (`allowance`), and drops cancelled requests from its queue.
    let (allowance_tx, allowance) = watch::channel(2usize);
    let slow = FakePeer::start(&fx, move |mut c| {
        let mut allowance = allowance.clone();
        async move {
            if !c.handshake(Reserved::NONE).await {
                return;
            }
            c.send(bitfield(&all())).await;
            let mut unchoked = false;
            let mut queue = VecDeque::new();
            let mut served = 0;
            loop {
                while served < *allowance.borrow() {
                    let Some(r) = queue.pop_front() else { break };
                    c.send_block(r, false).await;
                    served += 1;
                }
                tokio::select! {
                    m = c.recv() => match m {
                        None => return,
                        Some(Message::Interested) if !unchoked => {
                            c.send(Message::Unchoke).await;
                            unchoked = true;
                        }
                        Some(Message::Request(r)) => {
                            if c.check_request(&r, &all(), !unchoked) {
                                queue.push_back(r);
                            }
                        }
                        Some(Message::Cancel(r)) => queue.retain(|q| *q != r),
                        Some(_) => {}
                    },
                    _ = allowance.changed() => {}
                }
            }
        }
    })
    .await;
    let fast = FakePeer::honest(&fx).await;
    let dl = Running::start(
        &fx,
        dir.path(),
        TorrentConfig {
            // No limit on pieces in progress: end-game, not the slots,
            // decides who gets the slow peer's blocks.
            max_pieces_in_progress: PIECES,
            ..config()
        },
    )
    .await;
    dl.add(&slow);
    slow.wait("two blocks served", |l| served(l).len() == 2)
        .await;
    dl.add(&fast);
    let shared = Arc::clone(&dl.shared);
    assert_eq!(dl.finish().await, Outcome::Complete);
    fx.assert_files(dir.path());
    slow.assert_no_violation();
    fast.assert_no_violation();

    let s_log = slow.log();
    let slow_asked: HashSet<BlockRequest> = requests(&s_log).into_iter().map(|(_, r)| r).collect();
    let slow_served: HashSet<BlockRequest> = served(&s_log).into_iter().collect();
    let pending: HashSet<BlockRequest> = slow_asked.difference(&slow_served).copied().collect();
    assert!(!pending.is_empty());
    // Cancels may still be on their way to the slow peer.
    slow.wait("a cancel for every block it still held", |l| {
        cancels(l).len() >= pending.len()
    })
    .await;
    let (s_log, f_log) = (slow.log(), fast.log());
    let fast_served: HashSet<BlockRequest> = served(&f_log).into_iter().collect();
    // Duplicate requests: blocks asked of both.
    let duplicates: HashSet<BlockRequest> = requests(&f_log)
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| slow_asked.contains(r))
        .collect();
    assert!(!duplicates.is_empty(), "no end-game duplicates");
    // Every block the slow peer still held was cancelled there, and only
    // blocks the fast one delivered.
    let cancelled: HashSet<BlockRequest> = cancels(&s_log).into_iter().collect();
    assert_eq!(cancelled, pending, "cancels at the slow peer");
    assert!(cancelled.iter().all(|r| fast_served.contains(r)));
    assert!(cancels(&f_log).is_empty());
    // Letting the slow peer go now sends nothing: it honoured the cancels.
    allowance_tx.send(usize::MAX).unwrap();
    assert_eq!(stat(&shared.stats.wasted), 0);
    assert_eq!(stat(&shared.stats.downloaded), TOTAL as u64);
}

/// A download stopped halfway leaves resume data under `DIR/.rivulet/`; the
/// next start trusts it (nothing hashed, the files being unchanged) and
/// fetches only the rest.
#[tokio::test]
async fn resumes_after_stop() {
    let fx = Fixture::single(11);
    let dir = tempfile::tempdir().unwrap();
    // Serves ten blocks (five whole pieces: rivulet asks for a piece's blocks
    // in a row), then nothing more.
    let first = FakePeer::start(&fx, |c| {
        c.seed(all(), Reserved::NONE, |n, _| match n {
            0..=9 => vec![Act::Serve],
            _ => vec![Act::Hang],
        })
    })
    .await;
    let (mut dl, report) = prepare_plaintext(&fx.metainfo, dir.path(), config())
        .await
        .unwrap();
    assert_eq!(report.have, 0);
    dl.peer_sender().send(first.addr).unwrap();
    // Stop once ten blocks are out and rivulet announced the pieces they
    // complete (so they were verified and written).
    let mut log = first.log.subscribe();
    let stop = async move {
        let _ = log
            .wait_for(|l| {
                let done: HashSet<u32> = served(l).iter().map(|r| r.piece).collect();
                let haves = l
                    .iter()
                    .filter(|e| matches!(e, Ev::Got(_, Message::Have { .. })))
                    .count();
                served(l).len() == 10 && haves == done.len()
            })
            .await;
    };
    let outcome = within(
        DOWNLOAD,
        "the stopped download",
        dl.run(stop, SeedPolicy::NONE),
    )
    .await;
    assert_eq!(outcome, Outcome::Running);
    let had = dl.shared.have_pieces();
    let had_count = had.iter().filter(|h| **h).count();
    assert_eq!(had_count, 5);
    let resume = dir
        .path()
        .join(".rivulet")
        .join(format!("{}.resume", fx.info_hash().to_hex()));
    assert!(resume.is_file(), "no resume file at {}", resume.display());
    drop(dl);

    let second = FakePeer::honest(&fx).await;
    let dl = Running::start(&fx, dir.path(), config()).await;
    assert_eq!(
        dl.report,
        StartReport {
            trusted: 5,
            checked: 0,
            have: 5,
            too_long: vec![],
            links_not_made: vec![],
        }
    );
    assert_eq!(dl.shared.have_pieces(), had);
    dl.add(&second);
    let shared = Arc::clone(&dl.shared);
    assert_eq!(dl.finish().await, Outcome::Complete);
    fx.assert_files(dir.path());
    second.assert_no_violation();
    first.assert_no_violation();
    // Only the missing pieces were asked for.
    let asked = requests(&second.log());
    assert!(asked.iter().all(|(_, r)| !had[r.piece as usize]));
    let rest: u64 = (0..PIECES as u32)
        .filter(|p| !had[*p as usize])
        .map(|p| u64::from(fx.piece_len(p)))
        .sum();
    assert_eq!(stat(&shared.stats.downloaded), rest);
}

// ---------------------------------------------------------------------------
// Engine bugs these fakes found (all fixed; the tests keep them fixed).

/// When `Download::run` returns because `stop` resolved, the peer
/// connections must close. (They once did not: `run` aborted the connector
/// task before it could send `Disconnect`, so peer tasks lived on and kept
/// downloading, while `Shared::quiesce` made every completed piece be
/// dropped and fetched again: an endless download at full speed.)
#[tokio::test]
async fn stop_closes_peer_connections() {
    let fx = Fixture::single(12);
    let dir = tempfile::tempdir().unwrap();
    let seeder = FakePeer::honest(&fx).await;
    let (mut dl, _) = prepare_plaintext(&fx.metainfo, dir.path(), config())
        .await
        .unwrap();
    dl.peer_sender().send(seeder.addr).unwrap();
    let mut log = seeder.log.subscribe();
    let stop = async move {
        let _ = log.wait_for(|l| served(l).len() >= 6).await;
    };
    let outcome = within(
        DOWNLOAD,
        "the stopped download",
        dl.run(stop, SeedPolicy::NONE),
    )
    .await;
    assert_eq!(outcome, Outcome::Running);
    seeder
        .wait("rivulet hangs up after the stop", |l| eof(l, 0))
        .await;
}

/// When the download completes, the peer connections must close.
/// `Download::run` aborts the connector, which is what sends `Disconnect`
/// to every peer once the outcome changes; on a multi-threaded runtime the
/// abort often wins, and the connections stay open until the peer task's
/// own 60 s "useless peer" timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completion_closes_peer_connections() {
    for seed in 0..10 {
        let fx = Fixture::single(100 + seed);
        let dir = tempfile::tempdir().unwrap();
        let seeder = FakePeer::honest(&fx).await;
        let dl = Running::start(&fx, dir.path(), config()).await;
        dl.add(&seeder);
        assert_eq!(dl.finish().await, Outcome::Complete);
        seeder
            .wait("rivulet hangs up after completing", |l| eof(l, 0))
            .await;
    }
}

/// A fast-extension peer that unchokes and rejects every request must not
/// keep the download from others. It does: after a reject, `fill_pipeline`
/// (run right after the message) picks the freed blocks again for the same
/// peer, which rejects them again, hundreds of thousands of times a
/// second. With every piece slot (`max_pieces_in_progress`) held this way
/// and pieces left unstarted (so no end-game), the other peer never sees a
/// free block, until the rejecting peer is dropped after two request
/// timeouts (40 s by default).
#[tokio::test]
async fn rejecting_peer_does_not_starve_the_download() {
    let fx = Fixture::single(13);
    let dir = tempfile::tempdir().unwrap();
    let rejecter = FakePeer::start(&fx, |c| {
        c.seed(all(), Reserved::FAST, |_, _| vec![Act::Reject])
    })
    .await;
    let good = FakePeer::honest(&fx).await;
    let dl = Running::start(&fx, dir.path(), config()).await;
    dl.add(&rejecter);
    rejecter
        .wait("a reject", |l| {
            l.iter()
                .any(|e| matches!(e, Ev::Sent(_, Message::RejectRequest(_))))
        })
        .await;
    dl.add(&good);
    assert_eq!(dl.finish().await, Outcome::Complete);
    fx.assert_files(dir.path());
}

/// After a request timeout, the stalled peer's blocks should go to a peer
/// that can serve them ("Snubbed: give its requests to others, ask again
/// later", says `on_tick`). They do not: `fill_pipeline` runs right after
/// the tick and asks the stalled peer for the same blocks again, before any
/// other peer can pick them, so they stay stuck until the second timeout
/// drops the peer (40 s by default) whenever the peer holds every piece
/// slot.
#[tokio::test]
async fn timed_out_blocks_go_to_an_idle_peer() {
    let fx = Fixture::single(14);
    let dir = tempfile::tempdir().unwrap();
    let stalled = FakePeer::start(&fx, |c| c.seed(all(), Reserved::NONE, |_, _| vec![])).await;
    let good = FakePeer::honest(&fx).await;
    let dl = Running::start(
        &fx,
        dir.path(),
        TorrentConfig {
            request_timeout: Duration::from_millis(300),
            // The stalled peer holds every piece slot: no end-game either.
            max_pieces_in_progress: 4,
            ..config()
        },
    )
    .await;
    dl.add(&stalled);
    stalled.wait("requests", |l| !requests(l).is_empty()).await;
    // The good peer arrives idle: nothing free, no slot for a new piece.
    dl.add(&good);
    let shared = Arc::clone(&dl.shared);
    assert_eq!(dl.finish().await, Outcome::Complete);
    let asked: Vec<BlockRequest> = requests(&stalled.log())
        .into_iter()
        .filter(|(c, _)| *c == 0)
        .map(|(_, r)| r)
        .collect();
    let distinct: HashSet<_> = asked.iter().copied().collect();
    assert_eq!(
        asked.len(),
        distinct.len(),
        "the stalled peer was asked again for blocks it had timed out on"
    );
    assert_eq!(stat(&shared.stats.wasted), 0);
}
