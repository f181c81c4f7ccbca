//! The torrent's peer registry and upload slots: what a peer connection
//! needs from its torrent to join it ([`Shared::register`], a command
//! channel and [`PeerCounters`]), to leave it, and to be choked or unchoked
//! (immediately into a free slot, or by [`Shared::rechoke`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rivulet_core::PeerId;
use rivulet_wire::Bitfield;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Shared, State};
use crate::choker;
use crate::picker::PeerKey;

/// Commands from the torrent to one peer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerCommand {
    /// We completed this piece: tell the peer.
    Have(u32),
    /// Another peer delivered this block first: cancel our request.
    Cancel(crate::picker::Block),
    /// Close the connection (banned, or the download is over).
    Disconnect,
    /// The choker took this peer's upload slot.
    Choke,
    /// The choker gave this peer an upload slot.
    Unchoke,
    /// Which pieces we want changed (file priorities): decide again
    /// whether we are interested.
    WantedChanged,
}

/// What a peer connection publishes for the choker, without taking the lock.
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    /// Payload bytes received from the peer (blocks we needed).
    pub down: AtomicU64,
    /// Payload bytes sent to the peer.
    pub up: AtomicU64,
    /// The peer is interested in what we have.
    pub interested: AtomicBool,
    /// The peer has every piece (for PEX flags).
    pub seed: AtomicBool,
    /// Pieces the peer said it has (bitfield, then `have`s), for its
    /// progress.
    pub pieces: std::sync::atomic::AtomicU32,
    /// The port the peer listens on, from its extended handshake (`p`); 0:
    /// not said. What PEX tells others of a peer that connected to us.
    pub listen_port: std::sync::atomic::AtomicU16,
    /// The connection went through the MSE handshake: the peer speaks it
    /// (PEX's "prefers encryption" flag).
    pub mse: AtomicBool,
    /// The connection runs over uTP (PEX's uTP flag).
    pub utp: AtomicBool,
}

/// A registered peer connection, as the torrent sees it: where its task
/// takes commands, and what it publishes for the choker.
pub(crate) struct PeerEntry {
    pub addr: SocketAddr,
    pub peer_id: PeerId,
    pub incoming: bool,
    pub tx: mpsc::UnboundedSender<PeerCommand>,
    pub counters: Arc<PeerCounters>,
    pub connected_at: Instant,
    /// `counters` at the last rechoke, for the rates over the interval.
    last_down: u64,
    last_up: u64,
    /// Bytes per second each way over the last whole rechoke interval.
    pub rates: (f64, f64),
}

impl PeerEntry {
    /// Bytes per second each way: over the time since the last rechoke
    /// (`since`) once that is long enough to mean something, else over the
    /// last whole interval.
    pub(crate) fn rates_now(&self, since: Duration) -> (f64, f64) {
        let secs = since.as_secs_f64();
        if secs < 2.0 {
            return self.rates;
        }
        let down = self.counters.down.load(Ordering::Relaxed);
        let up = self.counters.up.load(Ordering::Relaxed);
        (
            down.saturating_sub(self.last_down) as f64 / secs,
            up.saturating_sub(self.last_up) as f64 / secs,
        )
    }
    /// What the choker needs to know of this peer: whether it is
    /// interested, and its rate over the `elapsed` seconds since the last
    /// rechoke (what it gave us while we download, what we sent it while we
    /// seed). Takes the counters' values as the start of the next interval.
    fn rechoke_candidate(
        &mut self,
        key: PeerKey,
        seeding: bool,
        elapsed: f64,
        now: Instant,
    ) -> choker::Candidate {
        let down = self.counters.down.load(Ordering::Relaxed);
        let up = self.counters.up.load(Ordering::Relaxed);
        let (d, u) = (
            down.saturating_sub(self.last_down),
            up.saturating_sub(self.last_up),
        );
        let bytes = if seeding { u } else { d };
        self.rates = (d as f64 / elapsed, u as f64 / elapsed);
        self.last_down = down;
        self.last_up = up;
        choker::Candidate {
            key,
            interested: self.counters.interested.load(Ordering::Relaxed),
            rate: bytes as f64 / elapsed,
            new: now.duration_since(self.connected_at) < Duration::from_secs(60),
        }
    }
}

impl State {
    /// Makes `unchoke` the set of unchoked peers, telling each peer whose
    /// status changes.
    fn set_unchoked(&mut self, unchoke: HashSet<PeerKey>) {
        for key in self.unchoked.difference(&unchoke) {
            if let Some(e) = self.peers.get(key) {
                let _ = e.tx.send(PeerCommand::Choke);
            }
        }
        for key in unchoke.difference(&self.unchoked) {
            if let Some(e) = self.peers.get(key) {
                let _ = e.tx.send(PeerCommand::Unchoke);
            }
        }
        self.unchoked = unchoke;
    }
}

/// Whether a new connection to a peer we are already connected to replaces
/// the old one. Two peers that connect to each other at once end up with
/// two connections; both sides must keep the same one, or each drops the one
/// the other kept: the one opened by the lower peer id survives (as in
/// libtorrent). A second connection in the same direction is refused: the
/// first may still be working.
fn keep_new_connection(ours: &PeerId, theirs: &PeerId, old_incoming: bool, incoming: bool) -> bool {
    if old_incoming == incoming {
        return false;
    }
    let (ours, theirs) = (ours.as_bytes(), theirs.as_bytes());
    // Keep the connection the lower peer id opened.
    if incoming {
        theirs < ours
    } else {
        ours < theirs
    }
}

/// Why a handshaken connection was not taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegisterRefusal {
    /// Already connected to this peer id.
    Duplicate,
    /// The peer's address is banned.
    Banned,
    /// No room for another incoming connection.
    Full,
    /// The torrent is shutting down.
    Closing,
}

impl Shared {
    /// Takes on a handshaken connection: it gets a key and a command channel,
    /// unless it duplicates a connection we have, its address is banned, or
    /// (for an incoming one) the torrent has no room.
    pub(crate) fn register(
        &self,
        addr: SocketAddr,
        peer_id: PeerId,
        incoming: bool,
    ) -> Result<
        (
            PeerKey,
            mpsc::UnboundedReceiver<PeerCommand>,
            Arc<PeerCounters>,
        ),
        RegisterRefusal,
    > {
        if self.is_shutting_down() {
            return Err(RegisterRefusal::Closing);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.lock();
        if state.banned.contains(&addr.ip()) {
            return Err(RegisterRefusal::Banned);
        }
        if let Some((&old_key, old)) = state.peers.iter().find(|(_, p)| p.peer_id == peer_id) {
            if !keep_new_connection(&self.config.peer_id, &peer_id, old.incoming, incoming) {
                return Err(RegisterRefusal::Duplicate);
            }
            tracing::debug!(addr = %old.addr, "crossing connections: closing ours in favour of the one the lower peer id opened");
            let _ = old.tx.send(PeerCommand::Disconnect);
            // Its slot is free now, whatever its task does before it exits.
            state.unchoked.remove(&old_key);
        }
        if incoming && state.peers.len() >= self.config.max_peers {
            return Err(RegisterRefusal::Full);
        }
        let key = state.next_key;
        state.next_key = state.next_key.wrapping_add(1);
        let counters = Arc::new(PeerCounters::default());
        state.peers.insert(
            key,
            PeerEntry {
                addr,
                peer_id,
                incoming,
                tx,
                counters: Arc::clone(&counters),
                connected_at: Instant::now(),
                last_down: 0,
                last_up: 0,
                rates: (0.0, 0.0),
            },
        );
        state.addrs.insert(key, addr.ip());
        self.stats.peers_connected.fetch_add(1, Ordering::Relaxed);
        if incoming {
            self.stats.peers_incoming.fetch_add(1, Ordering::Relaxed);
        }
        self.peer_joined.notify_waiters();
        Ok((key, rx, counters))
    }

    /// Forgets a peer: its requests go back to the pool, its pieces no longer
    /// count towards availability, and its upload slot is free.
    pub(crate) fn unregister(&self, key: PeerKey, bits: Option<&Bitfield>, seed: bool) {
        let mut state = self.lock();
        if let Some(entry) = state.peers.remove(&key) {
            self.stats.peers_connected.fetch_sub(1, Ordering::Relaxed);
            if entry.incoming {
                self.stats.peers_incoming.fetch_sub(1, Ordering::Relaxed);
            }
        }
        state.unchoked.remove(&key);
        self.count_serving(&state);
        Self::prune_addrs(&mut state);
        state.picker.on_peer_requests_dropped(key);
        if seed {
            state.picker.remove_seed();
        } else if let Some(bits) = bits {
            state
                .picker
                .remove_peer_pieces(bits.ones().map(|p| p as u32));
        }
    }

    /// Forgets the addresses of closed connections that no block in progress
    /// came from (nothing left to blame them for), so that a long session
    /// does not keep one entry per connection it ever had.
    pub(super) fn prune_addrs(state: &mut State) {
        if state.addrs.len() <= state.peers.len() {
            return;
        }
        let senders = state.picker.all_senders();
        let peers = &state.peers;
        state
            .addrs
            .retain(|k, _| peers.contains_key(k) || senders.contains(k));
    }

    fn count_serving(&self, state: &State) {
        let serving = state
            .unchoked
            .iter()
            .filter_map(|k| state.peers.get(k))
            .filter(|e| e.counters.interested.load(Ordering::Relaxed))
            .count();
        self.stats.peers_serving.store(serving, Ordering::Relaxed);
    }

    /// A peer said it is interested: if a regular upload slot is free, it gets
    /// it now rather than at the next rechoke (up to 10 s away). Returns
    /// whether the peer is unchoked.
    pub(crate) fn on_peer_interested(&self, key: PeerKey) -> bool {
        let mut state = self.lock();
        let unchoked = if state.unchoked.contains(&key) {
            true
        } else if state.unchoked.len() < self.config.upload_slots {
            state.unchoked.insert(key);
            true
        } else {
            false
        };
        self.count_serving(&state);
        unchoked
    }

    /// A peer lost interest: its slot goes to someone who wants it. Returns
    /// whether it was unchoked (and must now be choked).
    pub(crate) fn on_peer_not_interested(&self, key: PeerKey) -> bool {
        let mut state = self.lock();
        let was = state.unchoked.remove(&key);
        self.count_serving(&state);
        was
    }

    /// Re-evaluates who gets the upload slots (BEP 3 choking): the best rates
    /// over the last interval (the rate a peer gives us while we download, the
    /// rate we reach to it while we seed) plus one optimistic unchoke, and
    /// tells the peers whose status changes.
    pub fn rechoke(&self) {
        let mut state = self.lock();
        let state = &mut *state;
        let now = Instant::now();
        let elapsed = now
            .duration_since(state.last_rechoke)
            .as_secs_f64()
            .max(0.001);
        state.last_rechoke = now;
        // Nothing left to download: peers are ranked by what we send them.
        let seeding = state.picker.is_done();
        let candidates: Vec<choker::Candidate> = state
            .peers
            .iter_mut()
            .map(|(key, e)| e.rechoke_candidate(*key, seeding, elapsed, now))
            .collect();
        let unchoke: HashSet<PeerKey> = state
            .choker
            .rechoke(&candidates, &mut state.rng)
            .into_iter()
            .collect();
        state.set_unchoked(unchoke);
        self.count_serving(state);
    }

    /// Asks every peer connection to close.
    pub fn disconnect_all(&self) {
        let state = self.lock();
        for entry in state.peers.values() {
            let _ = entry.tx.send(PeerCommand::Disconnect);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_crossing_connections_both_sides_keep_the_one_the_lower_id_opened() {
        let low = PeerId([1; 20]);
        let high = PeerId([2; 20]);
        // We are `low`: keep our outgoing connection, refuse their incoming one.
        assert!(keep_new_connection(&low, &high, true, false));
        assert!(!keep_new_connection(&low, &high, false, true));
        // They are `low`: keep their incoming connection, drop ours.
        assert!(keep_new_connection(&high, &low, false, true));
        assert!(!keep_new_connection(&high, &low, true, false));
        // The same direction twice: the first one stays, whoever is lower.
        for (ours, theirs) in [(&low, &high), (&high, &low)] {
            for incoming in [false, true] {
                assert!(!keep_new_connection(ours, theirs, incoming, incoming));
            }
        }
    }
}
