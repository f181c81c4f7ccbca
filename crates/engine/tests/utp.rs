//! uTP on a session's UDP port, seen from a raw uTP peer (the
//! `rivulet-utp` endpoint over its own UDP socket): a connection for a
//! torrent the session has gets the BitTorrent handshake back; one for a
//! torrent it does not have is reset at once (so that libtorrent tries TCP
//! instead of waiting). (The DHT on the same port: `tests/dht.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivulet_core::{InfoHash, PeerId};
use rivulet_engine::download::SeedPolicy;
use rivulet_engine::session::{AddOptions, Session, SessionConfig};
use rivulet_testkit::fixture::{within, Fixture};
use rivulet_testkit::next_loopback;
use rivulet_utp::{CloseReason, Config, ConnEvent, ConnId, Endpoint, Event};
use rivulet_wire::Handshake;
use tokio::net::UdpSocket;

const PROMPT: Duration = Duration::from_secs(10);

/// A uTP peer on its own address, driven by hand.
struct RawPeer {
    socket: UdpSocket,
    ep: Endpoint,
    buf: Vec<u8>,
}

impl RawPeer {
    async fn new() -> RawPeer {
        let socket = UdpSocket::bind((next_loopback(), 0)).await.unwrap();
        RawPeer {
            socket,
            ep: Endpoint::new(Config::default(), Instant::now(), 7),
            buf: Vec::new(),
        }
    }

    /// Sends what the endpoint has, then waits for a datagram or its next
    /// timer; returns the events that came of it.
    async fn turn(&mut self) -> Vec<Event> {
        while let Some(to) = self.ep.poll_transmit(Instant::now(), &mut self.buf) {
            self.socket.send_to(&self.buf, to).await.unwrap();
        }
        let wait = self
            .ep
            .next_timeout()
            .map_or(Duration::from_millis(100), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .min(Duration::from_millis(100));
        let mut d = vec![0u8; 65536];
        if let Ok(Ok((n, from))) = tokio::time::timeout(wait, self.socket.recv_from(&mut d)).await {
            self.ep.handle_datagram(Instant::now(), from, &d[..n]);
        }
        self.ep.on_timeout(Instant::now());
        std::iter::from_fn(|| self.ep.poll_event()).collect()
    }

    /// Turns until `want` says an event is the one.
    async fn until(&mut self, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        within(PROMPT, what, async {
            loop {
                for e in self.turn().await {
                    if want(&e) {
                        return e;
                    }
                }
            }
        })
        .await
    }

    async fn connect(&mut self, to: SocketAddr) -> ConnId {
        let conn = self.ep.connect(Instant::now(), to).unwrap();
        self.until(
            "the uTP connection",
            |e| matches!(e, Event::Conn { conn: c, event: ConnEvent::Connected } if *c == conn),
        )
        .await;
        conn
    }
}

async fn seeding_session(fx: &Fixture, dir: &std::path::Path) -> Session {
    let session = Session::new(SessionConfig {
        listen_port: Some(0),
        bind: Some(IpAddr::V4(next_loopback())),
        ..SessionConfig::default()
    })
    .unwrap();
    fx.write_to(dir);
    let options = AddOptions {
        seed: SeedPolicy::FOREVER,
        ..AddOptions::default()
    };
    session
        .add(&fx.metainfo, dir, options, Arc::new(|_| {}))
        .await
        .unwrap();
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utp_peers_are_answered_or_reset_at_once() {
    let fx = Fixture::single(31);
    let dir = tempfile::tempdir().unwrap();
    let session = seeding_session(&fx, dir.path()).await;
    let addr = session.local_addrs()[0];

    // A torrent the session has: its handshake comes back over uTP.
    let mut peer = RawPeer::new().await;
    let conn = peer.connect(addr).await;
    let ours = Handshake::new(fx.info_hash(), PeerId([b'u'; 20]));
    assert_eq!(peer.ep.write(conn, &ours.to_bytes()).unwrap(), 68);
    let mut got = Vec::new();
    within(PROMPT, "the handshake back", async {
        while got.len() < 68 {
            peer.turn().await;
            let mut b = [0u8; 4096];
            let n = peer.ep.read(conn, &mut b).unwrap_or(0);
            got.extend_from_slice(&b[..n]);
        }
    })
    .await;
    let theirs = Handshake::decode(&mut bytes::BytesMut::from(&got[..]))
        .unwrap()
        .unwrap();
    assert_eq!(theirs.info_hash, fx.info_hash());

    // A torrent it does not have: reset, promptly.
    let mut stranger = RawPeer::new().await;
    let conn = stranger.connect(addr).await;
    let other = Handshake::new(InfoHash([0x5a; 20]), PeerId([b's'; 20]));
    stranger.ep.write(conn, &other.to_bytes()).unwrap();
    let started = Instant::now();
    let ended = stranger
        .until(
            "the stranger's connection to end",
            |e| matches!(e, Event::Conn { conn: c, event: ConnEvent::Closed(_) } if *c == conn),
        )
        .await;
    assert_eq!(
        ended,
        Event::Conn {
            conn,
            event: ConnEvent::Closed(CloseReason::ResetByPeer)
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "reset after {:?}",
        started.elapsed()
    );
    session.shutdown().await;
}
