//! One fake BitTorrent peer for every test: a [`FakePeer`] that listens
//! and runs each accepted connection by a behaviour of the test's, or a
//! [`Conn`] that connects out ([`Conn::connect`]); both speak the wire
//! protocol through `rivulet_wire` (`Handshake`, `Message`,
//! `MessageDecoder`) over tokio.
//!
//! A connection handshakes with the reserved bits, info-hash and peer id the
//! test chooses, sends any message, serves the blocks of a [`Fixture`]
//! (honestly, corruptly, slowly, not at all, or as a policy closure says, see
//! [`Conn::seed`] and [`Act`]) and records everything in an [`EventLog`]:
//! the other side's handshake, each message it sent, each message and block
//! sent to it, each rule it broke, and when it closed the connection. Tests
//! wait on that log ([`EventLog::wait`]) under timeouts that only fail the
//! test; no sleep is used as synchronisation.
//!
//! [`blocking`] runs the same peer on a runtime of its own, for tests that
//! are not async (the CLI's interop tests).

pub mod blocking;
mod conn;
mod log;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rivulet_core::PeerId;
use rivulet_wire::Reserved;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub use conn::{answered, check_piece, encode, tcp_from, Act, Conn};
pub use log::{
    accepts, cancels, eof, got, position, requests, served, show, summary, tail, Event, EventLog,
};

use crate::addr::next_loopback;
use crate::fixture::Fixture;

/// How long [`FakePeer::wait`] and [`Conn`]'s waits give something that
/// should happen at once, unless told otherwise ([`Conn::connect_within`]).
pub const PROMPT: Duration = Duration::from_secs(5);

/// How long [`tcp_from`] may take to connect on loopback (generous: a
/// loaded machine must not fail a test here).
pub const CONNECT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// A listening fake peer

/// A fake peer: a listener on its own loopback address and the connections
/// it accepted, each run by the test's behaviour. Dropping it closes the
/// listener and every connection.
pub struct FakePeer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw and did.
    pub log: EventLog,
    task: JoinHandle<()>,
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePeer {
    /// A fake peer on a fresh loopback address ([`next_loopback`]) serving
    /// `fx`: each accepted connection is given to `behaviour`.
    pub async fn start<F, Fut>(fx: &Arc<Fixture>, behaviour: F) -> FakePeer
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        FakePeer::start_on(next_loopback(), fx, behaviour).await
    }

    /// [`FakePeer::start`] on `ip`. Each connection has a peer id of its
    /// own (`-FK0001-`, the IP, the connection's number).
    pub async fn start_on<F, Fut>(ip: Ipv4Addr, fx: &Arc<Fixture>, behaviour: F) -> FakePeer
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = EventLog::new();
        let (fx, conn_log) = (Arc::clone(fx), log.clone());
        let task = tokio::spawn(async move {
            // Dropped with the task, which aborts every connection.
            let mut conns = JoinSet::new();
            for id in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conn_log.record(Event::Accepted(id));
                let mut peer_id = *b"-FK0001-000000000000";
                peer_id[8..12].copy_from_slice(&ip.octets());
                peer_id[12..20].copy_from_slice(&(id as u64).to_be_bytes());
                let conn = Conn::new(
                    id,
                    stream,
                    conn_log.clone(),
                    Some(Arc::clone(&fx)),
                    PeerId(peer_id),
                );
                conns.spawn(behaviour(conn));
            }
        });
        FakePeer { addr, log, task }
    }

    /// An honest seeder: every piece, serves every request.
    pub async fn honest(fx: &Arc<Fixture>) -> FakePeer {
        let all = vec![true; fx.num_pieces()];
        FakePeer::start(fx, move |c| {
            c.seed(all.clone(), Reserved::NONE, |_, _| vec![Act::Serve])
        })
        .await
    }

    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        match self.addr.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => unreachable!("bound to an IPv4 address"),
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> Vec<Event> {
        self.log.events()
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        accepts(&self.log())
    }

    /// Waits until the log satisfies `pred`; fails the test after
    /// [`PROMPT`].
    pub async fn wait(&self, what: &str, pred: impl Fn(&[Event]) -> bool) {
        let who = format!("fake peer {}", self.addr);
        self.log.wait(PROMPT, &who, what, pred).await;
    }

    /// Asserts the other side never broke the rules this fake peer checks.
    pub fn assert_no_violation(&self) {
        let bad: Vec<_> = self
            .log()
            .into_iter()
            .filter(|e| matches!(e, Event::Violation(..)))
            .collect();
        assert!(bad.is_empty(), "fake peer {}: {bad:?}", self.addr);
    }
}

#[cfg(test)]
mod tests {
    use rivulet_wire::{Handshake, Message};
    use tokio::time::Instant;

    use super::*;
    use crate::fixture::{all, bitfield, PIECES};

    /// The two halves of the kit against each other: a leecher `Conn`
    /// fetches every block from an honest `FakePeer`, both logs say so, and
    /// the seeder sees the leecher hang up.
    #[tokio::test]
    async fn a_leecher_fetches_everything_from_an_honest_seeder() {
        let fx = Fixture::single(1);
        let seeder = FakePeer::honest(&fx).await;
        let ours = Handshake::new(fx.info_hash(), PeerId(*b"-LE0001-000000000001"));
        let mut l = Conn::connect(next_loopback(), seeder.addr, ours)
            .await
            .unwrap();
        assert_eq!(l.hello().info_hash, fx.info_hash());
        let m = l
            .expect("bitfield", |m| matches!(m, Message::Bitfield(_)))
            .await;
        assert_eq!(m, bitfield(&all()));
        l.unchoked().await;
        let bytes = l.fetch(&fx, &fx.all_blocks(), 8).await;
        assert_eq!(bytes, fx.data.len() as u64);
        drop(l);
        seeder.wait("the leecher hangs up", |l| eof(l, 0)).await;
        let log = seeder.log();
        assert_eq!(served(&log).len(), fx.all_blocks().len());
        assert_eq!(requests(&log).len(), fx.all_blocks().len());
        assert_eq!(accepts(&log), 1);
        seeder.assert_no_violation();
    }

    /// A policy that rejects, pauses, corrupts and closes: the leecher sees
    /// each, and the seeder logs a request for a piece it never announced
    /// as a violation.
    #[tokio::test]
    async fn policies_and_violations_are_logged() {
        let fx = Fixture::single(2);
        let mut have = all();
        have[PIECES - 1] = false;
        let seeder = FakePeer::start(&fx, move |c| {
            c.seed(have.clone(), Reserved::FAST, |n, _| match n {
                0 => vec![Act::Reject],
                1 => vec![Act::Pause(Duration::from_millis(200)), Act::Corrupt],
                _ => vec![Act::Close],
            })
        })
        .await;
        let ours = Handshake {
            reserved: Reserved::FAST,
            ..Handshake::new(fx.info_hash(), PeerId(*b"-LE0001-000000000002"))
        };
        let mut l = Conn::connect(next_loopback(), seeder.addr, ours)
            .await
            .unwrap();
        l.unchoked().await;
        let (a, b) = (fx.blocks_of(0)[0], fx.blocks_of(0)[1]);
        let missing = fx.blocks_of(PIECES as u32 - 1)[0];
        let started = Instant::now();
        l.send_all([a, missing, b].map(Message::Request)).await;
        l.expect("a reject", |m| *m == Message::RejectRequest(a))
            .await;
        let m = l.expect("a block", |m| answered(m).is_some()).await;
        assert!(started.elapsed() >= Duration::from_millis(200), "no pause");
        let Message::Piece { data, .. } = m else {
            unreachable!()
        };
        assert_ne!(&data[..], fx.block(&b).unwrap(), "not corrupt");
        l.send(Message::Request(fx.blocks_of(1)[0])).await;
        l.closed("the seeder closes").await;
        let log = seeder.log();
        assert_eq!(served(&log), vec![b]);
        assert!(log.iter().any(|e| matches!(
            e,
            Event::Violation(0, what) if what.contains("not announced")
        )));
    }

    /// The blocking facade: a leecher driven from a plain thread, against a
    /// fake seeder on the kit's runtime.
    #[test]
    fn a_blocking_leecher_sees_blocks_and_the_close() {
        let fx = Fixture::single(3);
        let seeder = blocking::block_on(FakePeer::start(&fx, |c| {
            c.seed(all(), Reserved::FAST, |_, _| vec![Act::Serve])
        }));
        let peer = blocking::BlockingPeer::leecher(next_loopback(), seeder.addr, fx.info_hash());
        let st = peer.wait_for("bitfield", PROMPT, |s| s.has_piece(PIECES as u32 - 1));
        assert!(st.reserved[7] & 0x04 != 0, "fast bit: {st:?}");
        peer.interested();
        peer.wait_unchoked(PROMPT);
        let r = fx.blocks_of(2)[1];
        peer.send(Message::Request(r)).unwrap();
        let st = peer.wait_for("the block", PROMPT, |s| s.pieces == 1);
        assert_eq!(st.blocks, vec![(r.piece, r.offset, r.length)]);
        let since = std::time::Instant::now();
        drop(seeder);
        let (_, st) = peer.wait_closed(since, PROMPT);
        assert!(st.closed.is_some());
        let log = peer.log();
        assert!(log
            .iter()
            .any(|e| matches!(e, Event::Sent(0, Message::HaveNone))));
    }
}
