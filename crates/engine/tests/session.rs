//! Sessions: torrents added, paused, resumed and removed through their
//! handles; one session downloading from another; shutdown. Trackers are
//! the test kit's fake UDP tracker, which reports each announce on a
//! channel: tests wait for the announces themselves, never for time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rivulet_engine::download::SeedPolicy;
use rivulet_engine::folder::{DataFolder, FolderOptions};
use rivulet_engine::session::{AddError, AddOptions, Session, SessionConfig, TorrentState};
use rivulet_engine::torrent::Outcome;
use rivulet_testkit::fixture::{within, Fixture};
use rivulet_testkit::next_loopback;
use rivulet_testkit::tracker::{reporting_udp, FakeUdp, UdpAnnounce};
use tokio::sync::mpsc::UnboundedReceiver;

/// Time a test may wait for something that should happen at once.
const PROMPT: Duration = Duration::from_secs(10);
/// Time a small download may take.
const DOWNLOAD: Duration = Duration::from_secs(60);

const STARTED: u32 = 2;
const STOPPED: u32 = 3;

fn session_on(ip: std::net::Ipv4Addr) -> Session {
    Session::new(SessionConfig {
        listen_port: Some(0),
        bind: Some(IpAddr::V4(ip)),
        ..SessionConfig::default()
    })
    .unwrap()
}

fn seeding() -> AddOptions {
    AddOptions {
        seed: SeedPolicy::FOREVER,
        ..AddOptions::default()
    }
}

/// The next announce with `event`, skipping others.
async fn next_event(rx: &mut UnboundedReceiver<UdpAnnounce>, event: u32) -> UdpAnnounce {
    within(PROMPT, "an announce", async {
        loop {
            let a = rx.recv().await.unwrap();
            if a.event == event {
                return a;
            }
        }
    })
    .await
}

/// Pause closes the torrent down (trackers hear `stopped`, resume data is
/// saved), resume starts it again (`started`), remove takes it out of the
/// session and unlocks its data folder.
#[tokio::test]
async fn pause_resume_and_remove() {
    let (handler, mut heard) = reporting_udp(vec![]);
    let tracker = FakeUdp::start(handler).await;
    let fx = Fixture::announced(7, 16 * 1024, 100_000, Some(&tracker.url()));
    let dir = tempfile::tempdir().unwrap();
    fx.write_to(dir.path());
    let session = session_on(next_loopback());
    let (t, report) = session
        .add(&fx.metainfo, dir.path(), seeding(), Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(report.have, fx.num_pieces());
    let hash = fx.info_hash();
    assert_eq!(next_event(&mut heard, STARTED).await.info_hash, hash.0);
    assert_eq!(t.snapshot().state, TorrentState::Seeding);

    within(PROMPT, "the pause", t.pause()).await;
    // `stopped` went out before the pause returned.
    let stopped = heard.try_recv().unwrap();
    assert_eq!((stopped.info_hash, stopped.event), (hash.0, STOPPED));
    let snap = t.snapshot();
    assert_eq!(snap.state, TorrentState::Paused);
    assert_eq!(snap.peers_connected, 0);
    assert_eq!(snap.have_bytes, 100_000);
    assert!(t.resume_path().exists(), "resume data saved");

    t.resume();
    next_event(&mut heard, STARTED).await;
    assert_eq!(t.snapshot().state, TorrentState::Seeding);

    within(PROMPT, "the removal", t.remove()).await;
    assert_eq!(heard.try_recv().unwrap().event, STOPPED);
    assert_eq!(t.snapshot().state, TorrentState::Removed);
    assert!(session.torrents().is_empty());
    // The data folder is no longer locked by the session.
    DataFolder::open(&fx.metainfo, dir.path(), &FolderOptions::default()).unwrap();
    session.shutdown().await;
}

/// A torrent added paused is checked but starts only when resumed.
#[tokio::test]
async fn added_paused_starts_on_resume() {
    let (handler, mut heard) = reporting_udp(vec![]);
    let tracker = FakeUdp::start(handler).await;
    let fx = Fixture::announced(8, 16 * 1024, 50_000, Some(&tracker.url()));
    let dir = tempfile::tempdir().unwrap();
    let session = session_on(next_loopback());
    let options = AddOptions {
        paused: true,
        ..seeding()
    };
    let (t, _) = session
        .add(&fx.metainfo, dir.path(), options, Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(t.snapshot().state, TorrentState::Paused);
    // A pause of a paused torrent returns at once.
    within(PROMPT, "a pause", t.pause()).await;
    t.resume();
    next_event(&mut heard, STARTED).await;
    assert_eq!(t.snapshot().state, TorrentState::Downloading);
    session.shutdown().await;
    assert_eq!(
        next_event(&mut heard, STOPPED).await.info_hash,
        fx.info_hash().0
    );
}

/// One session seeds, another downloads from it (the seeder's listener
/// routes the connection to the torrent) and finishes.
#[tokio::test]
async fn a_session_downloads_from_another() {
    let fx = Fixture::single(9);
    let (seed_ip, leech_ip) = (next_loopback(), next_loopback());
    let seed_dir = tempfile::tempdir().unwrap();
    fx.write_to(seed_dir.path());
    let seeder = session_on(seed_ip);
    let (s, _) = seeder
        .add(&fx.metainfo, seed_dir.path(), seeding(), Arc::new(|_| {}))
        .await
        .unwrap();
    let leecher = session_on(leech_ip);
    let dir = tempfile::tempdir().unwrap();
    let options = AddOptions {
        peers: vec![SocketAddr::new(IpAddr::V4(seed_ip), seeder.port())],
        seed: SeedPolicy::NONE,
        ..AddOptions::default()
    };
    let (l, report) = leecher
        .add(&fx.metainfo, dir.path(), options, Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(report.have, 0);
    within(DOWNLOAD, "the download", l.stopped()).await;
    assert_eq!(l.outcome(), Outcome::Complete);
    let snap = l.snapshot();
    assert_eq!(snap.state, TorrentState::Finished);
    assert_eq!(snap.have_bytes, fx.data.len() as u64);
    assert_eq!(snap.pieces_have, fx.num_pieces() as u64);
    fx.assert_files(dir.path());
    assert_eq!(s.snapshot().uploaded, fx.data.len() as u64);
    leecher.shutdown().await;
    seeder.shutdown().await;
    assert_eq!(s.snapshot().state, TorrentState::Removed);
}

/// A peer that never answers (TCP refused, then a uTP SYN without reply)
/// is still being connected to when the download completes: the run ends
/// at once all the same, without waiting out the attempt.
#[tokio::test]
async fn a_peer_still_connecting_does_not_hold_the_end_of_a_download() {
    let fx = Fixture::single(10);
    let (seed_ip, leech_ip, dead_ip) = (next_loopback(), next_loopback(), next_loopback());
    let seed_dir = tempfile::tempdir().unwrap();
    fx.write_to(seed_dir.path());
    let seeder = session_on(seed_ip);
    seeder
        .add(&fx.metainfo, seed_dir.path(), seeding(), Arc::new(|_| {}))
        .await
        .unwrap();
    let leecher = session_on(leech_ip);
    let dir = tempfile::tempdir().unwrap();
    let options = AddOptions {
        peers: vec![
            SocketAddr::new(IpAddr::V4(dead_ip), 9),
            SocketAddr::new(IpAddr::V4(seed_ip), seeder.port()),
        ],
        seed: SeedPolicy::NONE,
        ..AddOptions::default()
    };
    let (l, _) = leecher
        .add(&fx.metainfo, dir.path(), options, Arc::new(|_| {}))
        .await
        .unwrap();
    within(DOWNLOAD, "the download", l.completed()).await;
    let complete = std::time::Instant::now();
    within(PROMPT, "the end of the run", l.stopped()).await;
    let took = complete.elapsed();
    // The grace a connected peer gets to close is a second; an attempt
    // still connecting gets none.
    assert!(
        took < Duration::from_millis(700),
        "the run ended {took:?} after completion"
    );
    assert_eq!(l.outcome(), Outcome::Complete);
    fx.assert_files(dir.path());
    leecher.shutdown().await;
    seeder.shutdown().await;
}

/// A session holds a torrent once.
#[tokio::test]
async fn the_same_torrent_twice_is_refused() {
    let fx = Fixture::single(10);
    let session = session_on(next_loopback());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    session
        .add(&fx.metainfo, a.path(), seeding(), Arc::new(|_| {}))
        .await
        .unwrap();
    let again = session
        .add(&fx.metainfo, b.path(), seeding(), Arc::new(|_| {}))
        .await;
    assert!(matches!(again, Err(AddError::Duplicate(h)) if h == fx.info_hash()));
    session.shutdown().await;
    let late = session
        .add(&fx.metainfo, b.path(), seeding(), Arc::new(|_| {}))
        .await;
    assert!(matches!(late, Err(AddError::ShuttingDown)));
}

/// Shutdown stops every torrent: each tracker hears `stopped`, every
/// handle reads removed.
#[tokio::test]
async fn shutdown_stops_every_torrent() {
    let (handler, mut heard) = reporting_udp(vec![]);
    let tracker = FakeUdp::start(handler).await;
    let session = session_on(next_loopback());
    let mut handles = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..3 {
        let fx = Fixture::announced(20 + i, 16 * 1024, 30_000, Some(&tracker.url()));
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = session
            .add(&fx.metainfo, dir.path(), seeding(), Arc::new(|_| {}))
            .await
            .unwrap();
        handles.push(t);
        dirs.push(dir);
    }
    for _ in 0..3 {
        next_event(&mut heard, STARTED).await;
    }
    within(PROMPT, "the shutdown", session.shutdown()).await;
    let mut stopped = 0;
    while let Ok(a) = heard.try_recv() {
        stopped += usize::from(a.event == STOPPED);
    }
    assert_eq!(stopped, 3);
    for t in &handles {
        assert_eq!(t.snapshot().state, TorrentState::Removed);
    }
}

/// `max_connections` bounds peer connections across all torrents: with one
/// allowed and taken by a peer of one torrent, a peer of another torrent is
/// closed before its handshake is answered.
#[tokio::test]
async fn the_session_connection_limit_spans_torrents() {
    use rivulet_core::PeerId;
    use rivulet_wire::Handshake;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let ip = next_loopback();
    let session = Session::new(SessionConfig {
        listen_port: Some(0),
        bind: Some(IpAddr::V4(ip)),
        max_connections: 1,
        ..SessionConfig::default()
    })
    .unwrap();
    let (x, y) = (Fixture::single(30), Fixture::single(31));
    let (dx, dy) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (fx, dir) in [(&x, &dx), (&y, &dy)] {
        fx.write_to(dir.path());
        session
            .add(&fx.metainfo, dir.path(), seeding(), Arc::new(|_| {}))
            .await
            .unwrap();
    }
    let addr = SocketAddr::new(IpAddr::V4(ip), session.port());
    let peer = |fx: &Fixture| Handshake::new(fx.info_hash(), PeerId::generate()).to_bytes();

    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    first.write_all(&peer(&x)).await.unwrap();
    let mut answer = [0u8; 68];
    within(
        PROMPT,
        "the first peer's handshake",
        first.read_exact(&mut answer),
    )
    .await
    .unwrap();
    assert_eq!(&answer[28..48], &x.info_hash().0);

    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    second.write_all(&peer(&y)).await.unwrap();
    let mut buf = [0u8; 68];
    let n = within(PROMPT, "the second peer's end", second.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a handshake");
    drop(first);
    session.shutdown().await;
}
