//! The narrow interface through which a peer connection reaches its torrent
//! ([`TorrentAccess`]): what a [`super::PeerState`] may ask and tell, and
//! nothing else. The engine implements it on the torrent's shared state
//! (`crate::torrent::link`); tests and fuzz targets implement it in memory.

use std::net::SocketAddr;

use bytes::Bytes;
use rivulet_wire::{Bitfield, PexPeer};

use crate::picker::Block;

/// What the torrent made of a block a peer sent us, which we had asked the
/// peer for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A block we needed: it is stored (and its piece verified once
    /// complete), and other peers asked for it get a cancel.
    New,
    /// We already had it (end-game duplicate): dropped and counted as waste.
    Duplicate,
    /// Not a block of any piece in progress, or of the wrong size: the peer
    /// misbehaves.
    Invalid,
}

/// What a peer connection may see and do of its torrent. Every call is
/// short: an implementation may take a lock for each, never across calls.
pub trait TorrentAccess {
    /// The length of piece `piece` in bytes (`piece` is below the piece count
    /// the connection was given).
    fn piece_len(&self, piece: u32) -> u32;
    /// Whether we have piece `piece` (verified and written).
    fn have(&self, piece: u32) -> bool;
    /// Every piece we have, to announce to a new peer.
    fn have_pieces(&self) -> Bitfield;
    /// Whether we have every piece.
    fn is_complete(&self) -> bool;
    /// Whether we have every piece we want (selective download: pieces of
    /// files not wanted may be missing).
    fn is_done(&self) -> bool {
        self.is_complete()
    }
    /// Whether a peer with pieces `bits` (every piece, when `seed`) has a
    /// piece we still want.
    fn is_interesting(&self, bits: &Bitfield, seed: bool) -> bool {
        if seed {
            !self.is_done()
        } else {
            self.next_wanted(bits, 0).is_some()
        }
    }
    /// The first piece at or after `from` (wrapping round) that a peer with
    /// pieces `bits` has and we still want.
    fn next_wanted(&self, bits: &Bitfield, from: u32) -> Option<u32>;
    /// The peer's pieces now count towards availability.
    fn add_peer_pieces(&mut self, bits: &Bitfield, seed: bool);
    /// The peer's pieces no longer count towards availability.
    fn remove_peer_pieces(&mut self, bits: &Bitfield, seed: bool);
    /// The peer got piece `piece`; returns whether we lack it.
    fn peer_has(&mut self, piece: u32) -> bool;
    /// Up to `want` blocks to request from this peer, among pieces for which
    /// `allowed` is true; they are recorded as requested from it.
    fn pick(&mut self, allowed: &dyn Fn(u32) -> bool, want: usize) -> Vec<Block>;
    /// Requests to this peer that will not be answered (choke, reject,
    /// timeout, or picked but not sent): the blocks go back to the pool.
    fn requests_dropped(&mut self, blocks: &[Block]);
    /// A block we asked this peer for arrived (`data`: its bytes, shared
    /// with the receive buffer, never copied).
    fn block_received(&mut self, block: Block, data: Bytes) -> Accepted;
    /// Bytes of a block nobody asked for (or cancelled): counted as waste.
    fn block_wasted(&mut self, len: u32);
    /// A block was queued for the peer (`first`: the first one ever on this
    /// connection).
    fn block_sent(&mut self, len: u32, first: bool);
    /// The peer became interested (or not): returns whether it holds an
    /// upload slot now (and so must be unchoked, or, when it lost interest,
    /// choked).
    fn peer_interested(&mut self, interested: bool) -> bool;
    /// The torrent's info dictionary as its info-hash covers it, to serve
    /// to peers that came from a magnet link (BEP 9); `None`: not served
    /// (what implementations without one, in tests, give).
    fn metadata(&self) -> Option<&[u8]> {
        None
    }
    /// Whether peers are exchanged with peers (BEP 11): not for a private
    /// torrent, nor when turned off.
    fn pex_enabled(&self) -> bool {
        false
    }
    /// The port we listen on, told to peers (`p`) so that they can pass us
    /// on through PEX.
    fn listen_port(&self) -> Option<u16> {
        None
    }
    /// The peer said which port it listens on.
    fn peer_listen_port(&mut self, _port: u16) {}
    /// The other peers we are connected to that PEX may name: their
    /// addresses (where they listen) and flags.
    fn pex_peers(&self) -> Vec<PexPeer> {
        Vec::new()
    }
    /// Peers the peer told us of through PEX (already bounded), for the
    /// connector, with their flags (uTP, encryption, ...).
    fn pex_learned(&mut self, _peers: &[rivulet_wire::PexPeer]) {}
    /// The peer's DHT node (BEP 5 `PORT`), for our DHT node to ping.
    fn dht_node(&mut self, _addr: SocketAddr) {}
}
