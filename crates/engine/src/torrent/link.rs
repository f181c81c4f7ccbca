//! A registered peer connection's handle on its torrent: [`PeerLink`]
//! implements [`TorrentAccess`], the narrow interface of the peer core, on
//! the shared state. Each call takes the state lock once, briefly.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use rivulet_core::PeerId;
use rivulet_wire::{Bitfield, PexFlags, PexPeer};

use tokio::sync::mpsc;

use super::{PeerCommand, PeerCounters, RegisterRefusal, Shared};
use crate::peer::{Accepted, TorrentAccess};
use crate::picker::{Block, PeerKey, Received};

/// One registered connection's access to its torrent.
pub(crate) struct PeerLink {
    shared: Arc<Shared>,
    key: PeerKey,
    counters: Arc<PeerCounters>,
}

impl PeerLink {
    /// Registers a handshaken connection (see [`Shared::register`]): the link,
    /// and the channel on which the torrent sends it commands.
    pub(crate) fn register(
        shared: &Arc<Shared>,
        addr: SocketAddr,
        peer_id: PeerId,
        incoming: bool,
        mse: bool,
        utp: bool,
    ) -> Result<(PeerLink, mpsc::UnboundedReceiver<PeerCommand>), RegisterRefusal> {
        let (key, commands, counters) = shared.register(addr, peer_id, incoming)?;
        counters.mse.store(mse, Ordering::Relaxed);
        counters.utp.store(utp, Ordering::Relaxed);
        let link = PeerLink {
            shared: Arc::clone(shared),
            key,
            counters,
        };
        Ok((link, commands))
    }

    /// Payload bytes sent to and received from the peer so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.counters.up.load(Ordering::Relaxed),
            self.counters.down.load(Ordering::Relaxed),
        )
    }

    /// The connection ended: the torrent forgets it (its requests go back to
    /// the pool, its pieces stop counting, its upload slot is free).
    pub(crate) fn unregister(self, bits: &Bitfield, seed: bool) {
        self.shared.unregister(self.key, Some(bits), seed);
    }
}

impl TorrentAccess for PeerLink {
    fn piece_len(&self, piece: u32) -> u32 {
        self.shared.piece_len(piece)
    }

    fn have(&self, piece: u32) -> bool {
        self.shared.lock().have.get(piece as usize)
    }

    fn have_pieces(&self) -> Bitfield {
        self.shared.lock().have.clone()
    }

    fn is_complete(&self) -> bool {
        self.shared.is_complete()
    }

    fn is_done(&self) -> bool {
        self.shared.lock().picker.is_done()
    }

    fn next_wanted(&self, bits: &Bitfield, from: u32) -> Option<u32> {
        let state = self.shared.lock();
        state.picker.next_wanted(from, |p| bits.get(p as usize))
    }

    fn add_peer_pieces(&mut self, bits: &Bitfield, seed: bool) {
        if seed {
            self.counters.seed.store(true, Ordering::Relaxed);
        }
        let count = if seed { bits.len() } else { bits.count_ones() };
        self.counters
            .pieces
            .store(u32::try_from(count).unwrap_or(u32::MAX), Ordering::Relaxed);
        let mut state = self.shared.lock();
        if seed {
            state.picker.add_seed();
        } else {
            state.picker.add_peer_pieces(bits.ones().map(|p| p as u32));
        }
    }

    fn remove_peer_pieces(&mut self, bits: &Bitfield, seed: bool) {
        let mut state = self.shared.lock();
        if seed {
            state.picker.remove_seed();
        } else {
            state
                .picker
                .remove_peer_pieces(bits.ones().map(|p| p as u32));
        }
    }

    fn peer_has(&mut self, piece: u32) -> bool {
        self.counters.pieces.fetch_add(1, Ordering::Relaxed);
        let mut state = self.shared.lock();
        state.picker.peer_has(piece);
        !state.picker.have(piece)
    }

    fn pick(&mut self, allowed: &dyn Fn(u32) -> bool, want: usize) -> Vec<Block> {
        let mut state = self.shared.lock();
        let state = &mut *state;
        state.picker.pick(self.key, allowed, want, &mut state.rng)
    }

    fn requests_dropped(&mut self, blocks: &[Block]) {
        let mut state = self.shared.lock();
        for b in blocks {
            state.picker.on_request_dropped(*b, self.key);
        }
    }

    fn block_received(&mut self, block: Block, data: Bytes) -> Accepted {
        let len = u64::from(block.len);
        let mut state = self.shared.lock();
        match state.picker.on_block_received(block, self.key) {
            Received::New { cancel, .. } => {
                self.shared
                    .stats
                    .downloaded
                    .fetch_add(len, Ordering::Relaxed);
                self.counters.down.fetch_add(len, Ordering::Relaxed);
                for other in cancel {
                    if let Some(e) = state.peers.get(&other) {
                        let _ = e.tx.send(PeerCommand::Cancel(block));
                    }
                }
                drop(state);
                // To disk at once; the piece is hashed as its blocks land
                // (`disk`), so its completion needs no signal from here.
                self.shared.submit_block(block.piece, block.begin, data);
                Accepted::New
            }
            Received::Duplicate => {
                self.shared.stats.wasted.fetch_add(len, Ordering::Relaxed);
                Accepted::Duplicate
            }
            Received::Invalid => Accepted::Invalid,
        }
    }

    fn block_wasted(&mut self, len: u32) {
        self.shared
            .stats
            .wasted
            .fetch_add(u64::from(len), Ordering::Relaxed);
    }

    fn block_sent(&mut self, len: u32, first: bool) {
        let len = u64::from(len);
        self.shared.stats.uploaded.fetch_add(len, Ordering::Relaxed);
        self.counters.up.fetch_add(len, Ordering::Relaxed);
        if first {
            self.shared
                .stats
                .peers_served_total
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn peer_interested(&mut self, interested: bool) -> bool {
        self.counters
            .interested
            .store(interested, Ordering::Relaxed);
        if interested {
            self.shared.on_peer_interested(self.key)
        } else {
            self.shared.on_peer_not_interested(self.key)
        }
    }

    fn pex_enabled(&self) -> bool {
        self.shared.config.pex && !self.shared.info.private
    }

    fn listen_port(&self) -> Option<u16> {
        Some(self.shared.config.listen_port).filter(|&p| p != 0)
    }

    fn peer_listen_port(&mut self, port: u16) {
        self.counters.listen_port.store(port, Ordering::Relaxed);
    }

    fn pex_peers(&self) -> Vec<PexPeer> {
        let state = self.shared.lock();
        state
            .peers
            .iter()
            .filter(|(key, _)| **key != self.key)
            .filter_map(|(_, e)| {
                // A peer that connected to us is named where it listens,
                // if it said; one we connected to is reachable there.
                let (addr, mut flags) = if e.incoming {
                    let port = e.counters.listen_port.load(Ordering::Relaxed);
                    (SocketAddr::new(e.addr.ip(), port), PexFlags(0))
                } else {
                    (e.addr, PexFlags::REACHABLE)
                };
                if addr.port() == 0 {
                    return None;
                }
                if e.counters.seed.load(Ordering::Relaxed) {
                    flags = flags | PexFlags::SEED;
                }
                if e.counters.mse.load(Ordering::Relaxed) {
                    flags = flags | PexFlags::ENCRYPTION;
                }
                if e.counters.utp.load(Ordering::Relaxed) {
                    flags = flags | PexFlags::UTP;
                }
                Some(PexPeer { addr, flags })
            })
            .collect()
    }

    fn pex_learned(&mut self, peers: &[PexPeer]) {
        let sink = self
            .shared
            .pex_sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = sink.as_ref() {
            for p in peers {
                if p.flags.contains(PexFlags::UTP) {
                    // Reached over uTP first, as the peer that named it
                    // does.
                    self.shared.utp_hint(p.addr);
                }
                let _ = tx.send(p.addr);
            }
        }
    }

    fn dht_node(&mut self, addr: SocketAddr) {
        if let Some(dht) = &self.shared.config.dht {
            dht.add_node(addr);
        }
    }

    fn metadata(&self) -> Option<&[u8]> {
        // A torrent loaded from a .torrent file or fetched metadata alike:
        // both keep the exact bytes. (v2-only torrents have no v1 info-hash
        // to serve metadata under; they are not downloaded.)
        Some(self.shared.info.raw_bytes())
    }
}
