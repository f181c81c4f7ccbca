//! The connector: the task that keeps a torrent's outgoing connections up.
//!
//! It owns the peer addresses the torrent knows of (named by trackers or
//! `--peer`), starts a peer task ([`crate::peer`]) for each one that is due
//! while fewer than `max_peers` connections are open (counting those peers
//! opened to us), retries a peer with exponential backoff after a session
//! that failed or exchanged nothing, and forgets a peer that keeps failing.
//! It also drives the periodic rechoke ([`Shared::rechoke`]), and when the
//! torrent shuts down or fails it asks every connection to close.
//!
//! Peer tasks are tasks of the torrent's run (`Shared::spawn_peer`), each
//! holding one of the session's connections; the connector returns its
//! `Connector` state when it ends, so that the torrent's next run (after a
//! pause) knows the same peers.
//!
//! Dependencies flow one way: the connector uses [`crate::peer`] and
//! [`crate::torrent`]; neither knows about the connector.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

use crate::choker;
use crate::encryption::Hints;
use crate::peer::Exit;
use crate::torrent::{Outcome, Settings, Shared};

/// Failed or useless sessions in a row (some 40 minutes of backoff) after
/// which the connector forgets a peer.
const FORGET_AFTER_FAILURES: u32 = 16;

/// Doublings after which the wait before trying a failing peer again stops
/// growing: 2^8 s, about four minutes.
const MAX_BACKOFF_DOUBLINGS: u32 = 8;

/// Most peer addresses the connector keeps (about 100 KiB of state).
const MAX_KNOWN: usize = 2000;

/// The most addresses remembered as our own (a peer that lies about its
/// peer id cannot make the set grow without bound).
const MAX_OWN: usize = 16;

/// How often the connector looks for peers that became due, besides when
/// something happens (a new address, a connection ending).
const CONNECT_TICK: Duration = Duration::from_secs(1);

/// What the connector keeps from one run of a torrent to the next: the
/// peers it knows, and where new ones arrive.
#[derive(Debug)]
pub(crate) struct Connector {
    candidates: Candidates,
    new_peers: mpsc::UnboundedReceiver<SocketAddr>,
}

impl Connector {
    /// A connector that knows no peer yet; new ones arrive on `new_peers`.
    pub(crate) fn new(new_peers: mpsc::UnboundedReceiver<SocketAddr>) -> Self {
        Connector {
            candidates: Candidates::default(),
            new_peers,
        }
    }
}

/// Keeps up to `max_peers` connections open to the known peers (counting
/// those that connected to us), reconnecting with exponential backoff, and
/// rechokes every [`choker::RECHOKE_INTERVAL`], until the torrent shuts down
/// or fails. New peers arrive on the connector's channel (from `--peer`,
/// trackers, ...). Returns the connector, every peer due again at once.
pub(crate) async fn run(shared: Arc<Shared>, connector: Connector) -> Connector {
    let Connector {
        mut candidates,
        mut new_peers,
    } = connector;
    candidates.restart();
    // Each peer task reports here when it ends, and whether data moved.
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel::<(SocketAddr, Exit, Hints)>();
    let mut outcome = shared.outcome();
    let mut shutdown = shared.shutdown_signal();
    let mut tick = tokio::time::interval(CONNECT_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rechoke = tokio::time::interval_at(
        Instant::now() + choker::RECHOKE_INTERVAL,
        choker::RECHOKE_INTERVAL,
    );
    rechoke.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let own_addr = own_addr(&shared.config);
    let mut peers_open = true;
    while !must_stop(&outcome, &shutdown) {
        connect_due(&shared, &mut candidates, &exit_tx);
        // No tick while every known peer is connected (or none is known),
        // and no rechoke without peers: an idle torrent costs no wake-ups.
        // New peers and ended connections wake the loop all the same.
        // A peer that connects to us wakes it too (registered before the
        // count is read, so that none is missed), for the rechokes.
        let joined = shared.peer_joined.notified();
        tokio::pin!(joined);
        joined.as_mut().enable();
        let waiting = candidates.len() > candidates.connected();
        let peers = shared.stats.peers_connected.load(Ordering::Relaxed) > 0;
        tokio::select! {
            _ = outcome.changed() => {}
            _ = shutdown.changed() => {}
            () = &mut joined, if !peers => {}
            _ = tick.tick(), if waiting => {}
            _ = rechoke.tick(), if peers => shared.rechoke(),
            Some((addr, exit, hints)) = exit_rx.recv() => {
                if exit.ourselves {
                    candidates.ourselves(addr);
                } else {
                    candidates.on_transport(addr, &exit, hints);
                    candidates.on_exit(addr, exit.useful, Instant::now());
                }
            }
            addr = new_peers.recv(), if peers_open => match addr {
                Some(addr) if Some(addr) != own_addr => candidates.add(addr),
                Some(_) => {}
                None => peers_open = false,
            },
        }
    }
    // Tell every connection to close.
    shared.disconnect_all();
    Connector {
        candidates,
        new_peers,
    }
}

/// Whether the torrent failed or is shutting down. A complete torrent goes
/// on: it seeds.
fn must_stop(outcome: &watch::Receiver<Outcome>, shutdown: &watch::Receiver<bool>) -> bool {
    matches!(*outcome.borrow(), Outcome::Failed(_)) || *shutdown.borrow()
}

/// Starts a peer task for each known peer that is due, while there is room,
/// and publishes how many peers are known.
fn connect_due(
    shared: &Arc<Shared>,
    candidates: &mut Candidates,
    exit_tx: &mpsc::UnboundedSender<(SocketAddr, Exit, Hints)>,
) {
    let incoming = shared.stats.peers_incoming.load(Ordering::Relaxed);
    let room = shared
        .config
        .max_peers
        .saturating_sub(candidates.connected() + incoming)
        .min(shared.connections_left());
    for (addr, hints) in candidates.take_due(Instant::now(), room, |ip| shared.is_banned(ip)) {
        // Another torrent of the session may have taken the last
        // connection since `room` was counted: try again later.
        let Ok(permit) = shared.connection_permit() else {
            candidates.on_exit(addr, true, Instant::now());
            continue;
        };
        tracing::debug!(%addr, "connecting");
        let (peer_shared, exit_tx) = (Arc::clone(shared), exit_tx.clone());
        let span = tracing::debug_span!(parent: &shared.span, "peer", %addr);
        shared.spawn_peer(
            async move {
                let exit = crate::peer::connect_and_run(peer_shared, addr, hints).await;
                let _ = exit_tx.send((addr, exit, hints));
            }
            .instrument(span),
            permit,
        );
    }
    shared
        .stats
        .peers_known
        .store(candidates.len(), Ordering::Relaxed);
}

/// Our own listening address as trackers would report it, when bound to one
/// address (so that we do not connect to ourselves).
fn own_addr(config: &Settings) -> Option<SocketAddr> {
    config
        .bind
        .map(|ip| SocketAddr::new(ip, config.listen_port))
}

/// How long to wait before trying a peer again after `failures` failed or
/// useless sessions in a row: 1 s, doubling, at most
/// [`MAX_BACKOFF_DOUBLINGS`] times.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.min(MAX_BACKOFF_DOUBLINGS))
}

/// A peer we know of and when to try it again.
#[derive(Debug, Default)]
struct Candidate {
    /// A peer task runs for it now.
    connected: bool,
    /// Failed or useless sessions in a row.
    failures: u32,
    /// Not before this (none: at once).
    next_attempt: Option<Instant>,
    /// How to try it first (what the last attempts showed).
    hints: Hints,
}

/// The peers the connector knows of, by address. Plain data (the time is
/// passed in), so that the backoff rules can be tested without sockets.
#[derive(Debug, Default)]
struct Candidates {
    known: HashMap<SocketAddr, Candidate>,
    /// Addresses found to be our own: trackers name us among the peers
    /// (every announce, and PEX or the DHT may too), and each attempt would
    /// cost a connection and a handshake with ourselves. A handful at most
    /// (one per address we are reached at).
    own: HashSet<SocketAddr>,
}

impl Candidates {
    /// Learns of a peer; one already known keeps its state. Past
    /// [`MAX_KNOWN`] peers, new ones are ignored: trackers, PEX and the DHT
    /// together cannot make the list grow without bound.
    fn add(&mut self, addr: SocketAddr) {
        if self.own.contains(&addr)
            || (self.known.len() >= MAX_KNOWN && !self.known.contains_key(&addr))
        {
            return;
        }
        self.known.entry(addr).or_default();
    }

    /// A new run of the torrent: no task runs for any peer, and every one
    /// is due at once.
    fn restart(&mut self) {
        for c in self.known.values_mut() {
            *c = Candidate {
                hints: c.hints,
                ..Candidate::default()
            };
        }
    }

    /// What a session that ended says of the peer's encryption: one that
    /// refused the MSE handshake is reached in plaintext first from then
    /// on, so that it does not cost a failed connection each time; and
    /// when such a plaintext session comes to nothing, the next attempt
    /// tries MSE again (the peer may have come to require it).
    ///
    /// Likewise a peer whose TCP connection closed before its handshake is
    /// tried over uTP first (libtorrent with TCP off takes TCP connections
    /// and closes them), until a uTP-first attempt comes to nothing.
    fn on_transport(&mut self, addr: SocketAddr, exit: &Exit, tried: Hints) {
        if let Some(c) = self.known.get_mut(&addr) {
            if exit.plaintext_only {
                c.hints.plaintext_first = true;
            } else if tried.plaintext_first && !exit.useful {
                c.hints.plaintext_first = false;
            }
            if exit.tcp_unusable {
                c.hints.utp_first = true;
            } else if tried.utp_first && !exit.useful {
                c.hints.utp_first = false;
            }
        }
    }

    /// Peers known.
    fn len(&self) -> usize {
        self.known.len()
    }

    /// Peers with a task running.
    fn connected(&self) -> usize {
        self.known.values().filter(|c| c.connected).count()
    }

    /// Up to `room` peers that are due at `now`, not connected and not
    /// `banned`, now marked connected: the caller starts their tasks. Each
    /// with whether to connect in plaintext first.
    fn take_due(
        &mut self,
        now: Instant,
        room: usize,
        banned: impl Fn(IpAddr) -> bool,
    ) -> Vec<(SocketAddr, Hints)> {
        let mut due = Vec::new();
        for (addr, c) in &mut self.known {
            if due.len() >= room {
                break;
            }
            if c.connected || c.next_attempt.is_some_and(|t| t > now) || banned(addr.ip()) {
                continue;
            }
            c.connected = true;
            due.push((*addr, c.hints));
        }
        due
    }

    /// [`Candidates::take_due`], the addresses only.
    #[cfg(test)]
    fn take_due_addrs(
        &mut self,
        now: Instant,
        room: usize,
        banned: impl Fn(IpAddr) -> bool,
    ) -> Vec<SocketAddr> {
        self.take_due(now, room, banned)
            .into_iter()
            .map(|(a, _)| a)
            .collect()
    }

    /// `addr` turned out to be our own: forgotten, and never added again.
    fn ourselves(&mut self, addr: SocketAddr) {
        self.known.remove(&addr);
        if self.own.len() < MAX_OWN {
            self.own.insert(addr);
        }
    }

    /// A peer's task ended at `now`; `useful` if data moved either way.
    fn on_exit(&mut self, addr: SocketAddr, useful: bool, now: Instant) {
        let Some(c) = self.known.get_mut(&addr) else {
            return;
        };
        c.connected = false;
        // A session that exchanged data resets the backoff.
        c.failures = if useful { 0 } else { c.failures + 1 };
        c.next_attempt = Some(now + backoff(c.failures));
        if c.failures >= FORGET_AFTER_FAILURES {
            // Gone, or nothing to trade for a long while: forget it, so that
            // a long session does not keep every address trackers ever
            // named. A tracker that names it again brings it back.
            self.known.remove(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 6881))
    }

    #[test]
    fn backoff_doubles_up_to_about_four_minutes() {
        let secs: Vec<u64> = (0..12).map(|f| backoff(f).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 256, 256, 256]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(256));
    }

    #[test]
    fn the_known_peers_are_bounded() {
        let mut c = Candidates::default();
        for i in 0..MAX_KNOWN + 100 {
            c.add(SocketAddr::from((
                [10, 0, (i / 256) as u8, (i % 256) as u8],
                6881,
            )));
        }
        assert_eq!(c.len(), MAX_KNOWN);
        // One already known is still taken (its state kept).
        c.add(SocketAddr::from(([10, 0, 0, 0], 6881)));
        assert_eq!(c.len(), MAX_KNOWN);
    }

    #[test]
    fn only_due_unbanned_peers_are_taken_within_the_room() {
        let now = Instant::now();
        let mut c = Candidates::default();
        for n in 1..=5 {
            c.add(addr(n));
        }
        // 2 failed a moment ago; 3 is banned.
        c.take_due_addrs(now, 0, |_| false);
        assert_eq!(c.connected(), 0, "no room, nobody taken");
        c.known.get_mut(&addr(2)).unwrap().connected = true;
        c.on_exit(addr(2), false, now);
        let banned = addr(3).ip();
        let first = c.take_due_addrs(now, 2, |ip| ip == banned);
        assert_eq!(first.len(), 2);
        assert!(first
            .iter()
            .all(|a| [addr(1), addr(4), addr(5)].contains(a)));
        assert_eq!(c.connected(), 2);
        // The rest: one more of 1, 4, 5; 2 not yet due; 3 still banned.
        let second = c.take_due_addrs(now, 10, |ip| ip == banned);
        assert_eq!(second.len(), 1);
        assert!(!first.contains(&second[0]));
        // Once its backoff has passed, 2 is due again.
        let later = now + backoff(1);
        assert_eq!(c.take_due_addrs(later, 10, |ip| ip == banned), [addr(2)]);
        assert_eq!(c.connected(), 4);
        // Adding a known peer again changes nothing.
        c.add(addr(2));
        assert_eq!((c.len(), c.connected()), (5, 4));
    }

    #[test]
    fn failures_back_off_and_a_useful_session_resets_them() {
        let t0 = Instant::now();
        let mut c = Candidates::default();
        c.add(addr(1));
        let mut now = t0;
        for failures in 1..=3 {
            assert_eq!(c.take_due_addrs(now, 1, |_| false), [addr(1)]);
            c.on_exit(addr(1), false, now);
            let next = now + backoff(failures);
            assert!(c
                .take_due_addrs(next - Duration::from_millis(1), 1, |_| false)
                .is_empty());
            now = next;
        }
        assert_eq!(c.take_due_addrs(now, 1, |_| false), [addr(1)]);
        c.on_exit(addr(1), true, now);
        assert_eq!(c.known[&addr(1)].failures, 0);
        assert_eq!(c.known[&addr(1)].next_attempt, Some(now + backoff(0)));
    }

    #[test]
    fn a_peer_failing_again_and_again_is_forgotten_until_named_again() {
        let mut now = Instant::now();
        let mut c = Candidates::default();
        c.add(addr(1));
        for _ in 0..FORGET_AFTER_FAILURES {
            assert_eq!(c.take_due_addrs(now, 1, |_| false), [addr(1)]);
            c.on_exit(addr(1), false, now);
            now += backoff(u32::MAX);
        }
        assert_eq!(c.len(), 0);
        // A task that ends for a peer no longer known changes nothing.
        c.on_exit(addr(1), false, now);
        assert_eq!(c.len(), 0);
        c.add(addr(1));
        assert_eq!(c.take_due_addrs(now, 1, |_| false), [addr(1)]);
    }

    #[test]
    fn a_peer_that_refused_encryption_is_tried_in_plaintext_from_then_on() {
        let now = Instant::now();
        let mut c = Candidates::default();
        c.add(addr(1));
        c.add(addr(2));
        let mut first = c.take_due(now, 10, |_| false);
        first.sort();
        let (plain, mse) = (
            Hints {
                plaintext_first: true,
                utp_first: false,
            },
            Hints::default(),
        );
        assert_eq!(first, [(addr(1), mse), (addr(2), mse)]);
        let refused = Exit {
            useful: true,
            plaintext_only: true,
            ..Exit::default()
        };
        c.on_transport(addr(1), &refused, mse);
        c.on_exit(addr(1), true, now);
        c.on_exit(addr(2), true, now);
        let later = now + backoff(0);
        let mut second = c.take_due(later, 10, |_| false);
        second.sort();
        assert_eq!(second, [(addr(1), plain), (addr(2), mse)]);
        // Kept across a pause of the torrent.
        c.restart();
        let mut third = c.take_due(later, 10, |_| false);
        third.sort();
        assert_eq!(third, [(addr(1), plain), (addr(2), mse)]);
        // A plaintext session that moved data keeps it so; one that came
        // to nothing sends the next attempt back to MSE.
        let useful = Exit {
            useful: true,
            ..Exit::default()
        };
        c.on_transport(addr(1), &useful, plain);
        c.on_exit(addr(1), true, later);
        let again = later + backoff(0);
        assert_eq!(
            c.take_due(again, 1, |ip| ip != addr(1).ip()),
            [(addr(1), plain)]
        );
        c.on_transport(addr(1), &Exit::default(), plain);
        c.on_exit(addr(1), false, again);
        let last = again + backoff(1);
        assert_eq!(
            c.take_due(last, 1, |ip| ip != addr(1).ip()),
            [(addr(1), mse)]
        );
        // A TCP connection closed before the handshake: uTP first, until
        // a uTP-first attempt comes to nothing.
        let utp = Hints {
            plaintext_first: false,
            utp_first: true,
        };
        let closed = Exit {
            tcp_unusable: true,
            ..Exit::default()
        };
        c.on_transport(addr(1), &closed, mse);
        c.on_exit(addr(1), false, last);
        let t = last + backoff(2);
        assert_eq!(c.take_due(t, 1, |ip| ip != addr(1).ip()), [(addr(1), utp)]);
        c.on_transport(addr(1), &Exit::default(), utp);
        c.on_exit(addr(1), false, t);
        let t = t + backoff(3);
        assert_eq!(c.take_due(t, 1, |ip| ip != addr(1).ip()), [(addr(1), mse)]);
    }

    #[test]
    fn an_address_found_to_be_our_own_is_never_tried_again() {
        let now = Instant::now();
        let mut c = Candidates::default();
        c.add(addr(1));
        c.add(addr(2));
        assert_eq!(c.take_due_addrs(now, 10, |_| false).len(), 2);
        c.ourselves(addr(1));
        c.on_exit(addr(2), false, now);
        // Named again by the next announce: still not tried, however long
        // after.
        c.add(addr(1));
        let much_later = now + Duration::from_secs(3600);
        assert_eq!(c.take_due_addrs(much_later, 10, |_| false), [addr(2)]);
        assert_eq!(c.len(), 1);
        // Another peer on the same address, at another port, is a peer.
        let other = SocketAddr::new(addr(1).ip(), 7000);
        c.add(other);
        assert_eq!(c.take_due_addrs(much_later, 10, |_| false), [other]);
    }

    #[test]
    fn our_own_address_is_known_only_when_bound() {
        let mut config = Settings {
            dht: None,
            listen_port: 7000,
            ..Settings::standalone(crate::torrent::TorrentConfig::default())
        };
        assert_eq!(own_addr(&config), None);
        config.bind = Some(addr(9).ip());
        assert_eq!(own_addr(&config), Some(SocketAddr::new(addr(9).ip(), 7000)));
    }
}
