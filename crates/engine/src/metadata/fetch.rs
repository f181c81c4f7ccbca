//! The sans-IO part of fetching a torrent's info dictionary from peers (BEP
//! 9): which peer is asked for which piece, putting the pieces together,
//! checking the result against the info-hash, and working out who sent bad
//! data.
//!
//! Peers advertise the metadata's size in their extended handshake. The
//! size asked for is the one most peers advertise (peers that advertise
//! another are kept aside, used only if that size turns out wrong), and
//! sizes over the bound are refused outright. Pieces are spread over the
//! peers, a few requests each, so that metadata of several pieces comes from
//! several peers at once.
//!
//! When the pieces put together do not hash to the info-hash, one of the
//! senders lied, but a hash cannot say which. The fetch then goes one peer
//! at a time: each in turn sends every piece; one whose whole metadata fails
//! is banned, and once a peer's metadata checks out, every earlier piece is
//! compared with it, so that each peer who sent a piece that differs is
//! banned too.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rivulet_core::InfoHash;
use rivulet_wire::{metadata_piece_count, metadata_piece_len, METADATA_PIECE_LEN};

/// Identifies one connection of a fetch.
pub type PeerKey = u64;

/// Requests in flight to one peer at a time.
const PER_PEER: usize = 4;

/// Why a peer was banned from a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanReason {
    /// The metadata it sent alone does not match the info-hash.
    WrongMetadata,
    /// A piece it sent differs from the metadata that matched.
    WrongPiece,
    /// A piece of another size than the metadata size it advertised, or
    /// than the piece's.
    WrongSize,
}

/// What a peer's extended handshake said of the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// Pieces will be asked of it.
    Useful,
    /// It does not offer metadata (no `ut_metadata` or no size), or a size
    /// over the bound: nothing to ask of it.
    Useless,
}

/// One piece of the metadata being fetched.
#[derive(Debug, Clone)]
enum Slot {
    Missing,
    Asked { peer: PeerKey, at: Instant },
    Have { data: Bytes, from: PeerKey },
}

#[derive(Debug, Default)]
struct Peer {
    /// The metadata size it advertised.
    size: usize,
    /// Pieces asked of it, not yet answered.
    asked: Vec<u32>,
    /// It rejected a request or let one time out: asked for no more.
    done: bool,
}

/// The state of one metadata fetch. See the module documentation.
#[derive(Debug)]
pub struct MetadataFetch {
    info_hash: InfoHash,
    max_size: usize,
    timeout: Duration,
    peers: HashMap<PeerKey, Peer>,
    banned: HashSet<PeerKey>,
    /// Bans not yet taken by [`MetadataFetch::take_bans`].
    new_bans: Vec<(PeerKey, BanReason)>,
    /// The size the pieces below belong to.
    size: Option<usize>,
    pieces: Vec<Slot>,
    /// After a failed check: the peer that now sends every piece alone.
    single: Option<PeerKey>,
    /// Pieces of failed attempts with their senders, to find the liars once
    /// some peer's metadata checks out.
    suspects: Vec<(u32, Bytes, PeerKey)>,
    /// Peers whose whole metadata was tried alone and failed, or that have
    /// been tried alone already.
    tried_alone: HashSet<PeerKey>,
    done: Option<Vec<u8>>,
}

impl MetadataFetch {
    /// A fetch of the metadata of `info_hash`, refusing sizes over
    /// `max_size`; a request unanswered after `timeout` is asked of another
    /// peer.
    pub fn new(info_hash: InfoHash, max_size: usize, timeout: Duration) -> Self {
        MetadataFetch {
            info_hash,
            max_size,
            timeout,
            peers: HashMap::new(),
            banned: HashSet::new(),
            new_bans: Vec::new(),
            size: None,
            pieces: Vec::new(),
            single: None,
            suspects: Vec::new(),
            tried_alone: HashSet::new(),
            done: None,
        }
    }

    /// A peer's extended handshake arrived, advertising `size` bytes of
    /// metadata (`None`: it offers none).
    pub fn add_peer(&mut self, key: PeerKey, size: Option<u64>) -> Joined {
        let Some(size) = size
            .and_then(|s| usize::try_from(s).ok())
            .filter(|&s| s > 0 && s <= self.max_size)
        else {
            return Joined::Useless;
        };
        if self.banned.contains(&key) || self.peers.contains_key(&key) {
            return Joined::Useless;
        }
        self.peers.insert(
            key,
            Peer {
                size,
                ..Peer::default()
            },
        );
        self.choose_size();
        Joined::Useful
    }

    /// The connection ended: what it was asked goes to others.
    pub fn remove_peer(&mut self, key: PeerKey) {
        if let Some(p) = self.peers.remove(&key) {
            for piece in p.asked {
                self.unask(piece, key);
            }
        }
        if self.single == Some(key) {
            self.single = None;
        }
        self.choose_size();
    }

    /// How many connected peers offer the metadata (and are not banned).
    pub fn useful_peers(&self) -> usize {
        self.peers.values().filter(|p| !p.done).count()
    }

    /// Pieces had and pieces in all, once a size is chosen.
    pub fn progress(&self) -> Option<(usize, usize)> {
        self.size.map(|_| {
            let have = self
                .pieces
                .iter()
                .filter(|s| matches!(s, Slot::Have { .. }))
                .count();
            (have, self.pieces.len())
        })
    }

    /// The metadata, once a set of pieces matched the info-hash.
    pub fn result(&self) -> Option<&[u8]> {
        self.done.as_deref()
    }

    /// Whether `key` may still be asked for pieces: it joined, and neither
    /// rejected a request nor let one time out.
    pub fn wants(&self, key: PeerKey) -> bool {
        self.done.is_none() && self.peers.get(&key).is_some_and(|p| !p.done)
    }

    /// Whether `key` was banned (it is to be disconnected and not tried
    /// again).
    pub fn is_banned(&self, key: PeerKey) -> bool {
        self.banned.contains(&key)
    }

    /// Bans made since the last call.
    pub fn take_bans(&mut self) -> Vec<(PeerKey, BanReason)> {
        std::mem::take(&mut self.new_bans)
    }

    /// Pieces to ask `key` for now (recorded as asked of it).
    pub fn requests(&mut self, key: PeerKey, now: Instant) -> Vec<u32> {
        if self.done.is_some() {
            return Vec::new();
        }
        let Some(size) = self.size else {
            return Vec::new();
        };
        if self.single.is_some_and(|s| s != key) {
            return Vec::new();
        }
        if self
            .peers
            .get(&key)
            .is_none_or(|p| p.done || p.size != size)
        {
            return Vec::new();
        }
        // Spread over the peers there are: each gets its share of the
        // pieces (at least one, at most PER_PEER at a time).
        let sharing = if self.single.is_some() {
            1
        } else {
            self.peers
                .values()
                .filter(|p| !p.done && p.size == size)
                .count()
                .max(1)
        };
        let cap = self.pieces.len().div_ceil(sharing).clamp(1, PER_PEER);
        let Some(peer) = self.peers.get_mut(&key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, slot) in self.pieces.iter_mut().enumerate() {
            if peer.asked.len() >= cap {
                break;
            }
            if matches!(slot, Slot::Missing) {
                let piece = u32::try_from(i).unwrap_or(u32::MAX);
                *slot = Slot::Asked { peer: key, at: now };
                peer.asked.push(piece);
                out.push(piece);
            }
        }
        out
    }

    /// The peer will not send a piece: what it was asked goes to others,
    /// and it is asked for nothing more.
    pub fn on_reject(&mut self, key: PeerKey) {
        if let Some(p) = self.peers.get_mut(&key) {
            p.done = true;
            let asked = std::mem::take(&mut p.asked);
            for q in asked {
                self.unask(q, key);
            }
        }
        if self.single == Some(key) {
            self.single = None;
            self.next_single();
        }
    }

    /// Requests unanswered for too long go to others; their peers are asked
    /// for nothing more.
    pub fn on_tick(&mut self, now: Instant) {
        let late: Vec<PeerKey> = self
            .pieces
            .iter()
            .filter_map(|s| match s {
                Slot::Asked { peer, at } if now.saturating_duration_since(*at) >= self.timeout => {
                    Some(*peer)
                }
                _ => None,
            })
            .collect();
        for key in late {
            self.on_reject(key);
        }
    }

    /// A piece arrived from `key`, in a message saying the metadata is
    /// `total_size` bytes. Returns whether the fetch is now complete.
    pub fn on_data(&mut self, key: PeerKey, piece: u32, total_size: u64, data: Bytes) -> bool {
        if self.done.is_some() || self.banned.contains(&key) {
            return self.done.is_some();
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return false;
        };
        let Some(pos) = peer.asked.iter().position(|&p| p == piece) else {
            // Not asked of it (or asked of another since): ignored.
            return false;
        };
        peer.asked.swap_remove(pos);
        let size = peer.size;
        let expected = metadata_piece_len(size as u64, piece);
        if total_size != size as u64 || expected != Some(data.len()) {
            self.unask(piece, key);
            self.ban(key, BanReason::WrongSize);
            return false;
        }
        if let Some(slot) = self.pieces.get_mut(piece as usize) {
            *slot = Slot::Have { data, from: key };
        }
        if self.pieces.iter().all(|s| matches!(s, Slot::Have { .. })) {
            self.check();
        }
        self.done.is_some()
    }

    /// Every piece is here: keeps the metadata if it matches, else starts
    /// over one peer at a time.
    fn check(&mut self) {
        let mut whole = Vec::with_capacity(self.size.unwrap_or(0));
        let mut senders = HashSet::new();
        for slot in &self.pieces {
            if let Slot::Have { data, from } = slot {
                whole.extend_from_slice(data);
                senders.insert(*from);
            }
        }
        if InfoHash::from_info_bytes(&whole) == self.info_hash {
            // Everyone who sent a piece of an earlier, failed attempt that
            // differs from the good one lied.
            let mut liars = HashSet::new();
            for (piece, data, from) in std::mem::take(&mut self.suspects) {
                let start = piece as usize * METADATA_PIECE_LEN;
                if whole.get(start..start + data.len()) != Some(&data[..]) {
                    liars.insert(from);
                }
            }
            for key in liars {
                self.ban(key, BanReason::WrongPiece);
            }
            self.done = Some(whole);
            return;
        }
        // Failed. Alone, the sender is a liar; together, anyone may be.
        let pieces = std::mem::take(&mut self.pieces);
        if senders.len() == 1 {
            if let Some(&key) = senders.iter().next() {
                self.ban(key, BanReason::WrongMetadata);
            }
        } else {
            for (i, slot) in pieces.into_iter().enumerate() {
                if let Slot::Have { data, from } = slot {
                    self.suspects
                        .push((u32::try_from(i).unwrap_or(u32::MAX), data, from));
                }
            }
        }
        self.single = None;
        self.reset_pieces();
        self.next_single();
    }

    /// After a failed check: the next peer to send everything alone.
    fn next_single(&mut self) {
        if self.single.is_some() {
            return;
        }
        if self.suspects.is_empty() && self.tried_alone.is_empty() {
            // No failure yet: all peers share the work.
            return;
        }
        let size = self.size;
        let next = self
            .peers
            .iter()
            .filter(|(k, p)| !p.done && Some(p.size) == size && !self.tried_alone.contains(*k))
            .map(|(k, _)| *k)
            .min();
        if let Some(key) = next {
            self.tried_alone.insert(key);
            self.single = Some(key);
            // Pieces others were asked for are dropped: only this peer's
            // count now.
            self.reset_pieces();
        }
    }

    fn ban(&mut self, key: PeerKey, reason: BanReason) {
        if !self.banned.insert(key) {
            return;
        }
        self.new_bans.push((key, reason));
        self.remove_peer(key);
        // A peer banned for its own whole metadata proves its size wrong if
        // nobody else advertises it.
        self.choose_size();
        self.next_single();
    }

    fn unask(&mut self, piece: u32, key: PeerKey) {
        if let Some(slot) = self.pieces.get_mut(piece as usize) {
            if matches!(slot, Slot::Asked { peer, .. } if *peer == key) {
                *slot = Slot::Missing;
            }
        }
    }

    /// Empties the pieces (each peer's requests forgotten with them).
    fn reset_pieces(&mut self) {
        let n = self.size.map_or(0, |s| {
            usize::try_from(metadata_piece_count(s as u64)).unwrap_or(0)
        });
        self.pieces = vec![Slot::Missing; n];
        for p in self.peers.values_mut() {
            p.asked.clear();
        }
    }

    /// The size most usable peers advertise. It changes only while no
    /// piece of the current size is had and no peer is sending alone, or
    /// when no usable peer advertises the current size any more: then the
    /// pieces start over.
    fn choose_size(&mut self) {
        let started =
            self.single.is_some() || self.pieces.iter().any(|s| matches!(s, Slot::Have { .. }));
        if started && self.keep_size() {
            return;
        }
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for p in self.peers.values().filter(|p| !p.done) {
            *counts.entry(p.size).or_default() += 1;
        }
        let Some(best) = counts
            .into_iter()
            .max_by_key(|&(s, n)| (n, std::cmp::Reverse(s)))
            .map(|(s, _)| s)
        else {
            // Nobody to ask: what was had is kept for whoever comes next.
            return;
        };
        if Some(best) == self.size {
            return;
        }
        self.size = Some(best);
        self.single = None;
        self.reset_pieces();
        self.next_single();
    }

    /// Whether the current size still has a usable peer (it is kept while
    /// it does, so that pieces already had are not thrown away when a peer
    /// with another size arrives).
    fn keep_size(&self) -> bool {
        self.size
            .is_some_and(|s| self.peers.values().any(|p| p.size == s && !p.done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn piece(meta: &[u8], p: u32) -> Bytes {
        let start = p as usize * METADATA_PIECE_LEN;
        let end = (start + METADATA_PIECE_LEN).min(meta.len());
        Bytes::copy_from_slice(&meta[start..end])
    }

    fn fetch_of(meta: &[u8]) -> MetadataFetch {
        MetadataFetch::new(
            InfoHash::from_info_bytes(meta),
            MAX,
            Duration::from_secs(10),
        )
    }

    const MAX: usize = 1 << 20;

    /// Serves every request of each peer until nothing more is asked:
    /// `liar` peers send each piece with its bytes flipped. Returns who
    /// sent pieces.
    fn run(
        f: &mut MetadataFetch,
        meta: &[u8],
        peers: &[PeerKey],
        liars: &[PeerKey],
    ) -> HashSet<PeerKey> {
        let now = Instant::now();
        let mut senders = HashSet::new();
        for _ in 0..100 {
            let mut asked = false;
            for &k in peers {
                for p in f.requests(k, now) {
                    asked = true;
                    let mut data = piece(meta, p).to_vec();
                    if liars.contains(&k) {
                        data.iter_mut().for_each(|b| *b ^= 0xff);
                    }
                    senders.insert(k);
                    f.on_data(k, p, meta.len() as u64, Bytes::from(data));
                }
            }
            if !asked {
                break;
            }
        }
        senders
    }

    #[test]
    fn pieces_are_spread_over_peers_and_checked() {
        let meta = metadata(10 * METADATA_PIECE_LEN + 100);
        let mut f = fetch_of(&meta);
        for k in 1..=3 {
            assert_eq!(f.add_peer(k, Some(meta.len() as u64)), Joined::Useful);
        }
        assert_eq!(f.progress(), Some((0, 11)));
        let senders = run(&mut f, &meta, &[1, 2, 3], &[]);
        assert_eq!(senders.len(), 3, "every peer sent some pieces");
        assert!(f.result() == Some(&meta[..]), "the metadata");
        assert!(f.take_bans().is_empty());
    }

    #[test]
    fn an_exact_multiple_of_16_kib_and_pieces_of_the_wrong_size() {
        let meta = metadata(2 * METADATA_PIECE_LEN);
        let mut f = fetch_of(&meta);
        f.add_peer(1, Some(meta.len() as u64));
        f.add_peer(2, Some(meta.len() as u64));
        let now = Instant::now();
        let asked = f.requests(1, now);
        assert_eq!(asked, vec![0], "one piece each for two peers");
        // One byte short: not the piece, whatever it holds.
        let short = Bytes::copy_from_slice(&meta[..METADATA_PIECE_LEN - 1]);
        assert!(!f.on_data(1, 0, meta.len() as u64, short));
        assert_eq!(f.take_bans(), vec![(1, BanReason::WrongSize)]);
        assert!(f.is_banned(1));
        run(&mut f, &meta, &[2], &[]);
        assert!(f.result() == Some(&meta[..]), "the metadata");
    }

    #[test]
    fn a_liar_among_honest_peers_is_found_and_banned() {
        for liar in [1, 2] {
            let meta = metadata(5 * METADATA_PIECE_LEN);
            let mut f = fetch_of(&meta);
            f.add_peer(1, Some(meta.len() as u64));
            f.add_peer(2, Some(meta.len() as u64));
            run(&mut f, &meta, &[1, 2], &[liar]);
            assert!(f.result() == Some(&meta[..]), "liar {liar}");
            let bans = f.take_bans();
            assert_eq!(bans.len(), 1, "{bans:?}");
            assert_eq!(bans[0].0, liar, "{bans:?}");
            assert!(!f.is_banned(3 - liar));
        }
    }

    #[test]
    fn a_lone_liar_is_banned_and_the_next_peer_serves() {
        let meta = metadata(METADATA_PIECE_LEN + 1);
        let mut f = fetch_of(&meta);
        f.add_peer(1, Some(meta.len() as u64));
        run(&mut f, &meta, &[1], &[1]);
        assert!(f.result().is_none());
        assert_eq!(f.take_bans(), vec![(1, BanReason::WrongMetadata)]);
        // Banned: it cannot come back under the same key.
        assert_eq!(f.add_peer(1, Some(meta.len() as u64)), Joined::Useless);
        f.add_peer(2, Some(meta.len() as u64));
        run(&mut f, &meta, &[2], &[]);
        assert!(f.result() == Some(&meta[..]), "the metadata");
    }

    #[test]
    fn the_size_most_peers_advertise_is_fetched() {
        let meta = metadata(3 * METADATA_PIECE_LEN);
        let mut f = fetch_of(&meta);
        // The first peer to arrive claims another size.
        f.add_peer(1, Some(50_000));
        f.add_peer(2, Some(meta.len() as u64));
        f.add_peer(3, Some(meta.len() as u64));
        assert!(
            f.requests(1, Instant::now()).is_empty(),
            "nothing asked of the odd one"
        );
        run(&mut f, &meta, &[1, 2, 3], &[]);
        assert!(f.result() == Some(&meta[..]), "the metadata");
    }

    #[test]
    fn a_wrong_size_is_left_once_its_peers_are_gone() {
        let meta = metadata(3 * METADATA_PIECE_LEN);
        let mut f = fetch_of(&meta);
        f.add_peer(1, Some(50_000));
        // Peer 1 lies about everything: its 50,000 bytes fail the check.
        let now = Instant::now();
        let fake = metadata(50_000);
        for _ in 0..10 {
            for p in f.requests(1, now) {
                f.on_data(1, p, 50_000, piece(&fake, p));
            }
        }
        assert_eq!(f.take_bans(), vec![(1, BanReason::WrongMetadata)]);
        f.add_peer(2, Some(meta.len() as u64));
        run(&mut f, &meta, &[2], &[]);
        assert!(f.result() == Some(&meta[..]), "the metadata");
    }

    #[test]
    fn sizes_over_the_bound_and_peers_without_metadata_are_useless() {
        let meta = metadata(100);
        let mut f = fetch_of(&meta);
        assert_eq!(f.add_peer(1, Some(MAX as u64 + 1)), Joined::Useless);
        assert_eq!(f.add_peer(2, None), Joined::Useless);
        assert_eq!(f.add_peer(3, Some(0)), Joined::Useless);
        assert_eq!(f.add_peer(4, Some(u64::MAX)), Joined::Useless);
        assert_eq!(f.progress(), None);
        assert_eq!(f.useful_peers(), 0);
    }

    #[test]
    fn a_peer_that_rejects_is_not_asked_again() {
        let meta = metadata(2 * METADATA_PIECE_LEN);
        let mut f = fetch_of(&meta);
        f.add_peer(1, Some(meta.len() as u64));
        f.add_peer(2, Some(meta.len() as u64));
        let now = Instant::now();
        assert_eq!(f.requests(1, now), vec![0]);
        f.on_reject(1);
        assert!(!f.wants(1));
        assert!(f.requests(1, now).is_empty());
        run(&mut f, &meta, &[1, 2], &[]);
        assert!(f.result() == Some(&meta[..]), "the metadata");
    }

    #[test]
    fn late_requests_go_to_others_and_unasked_data_is_ignored() {
        let meta = metadata(2 * METADATA_PIECE_LEN);
        let mut f = fetch_of(&meta);
        f.add_peer(1, Some(meta.len() as u64));
        let t0 = Instant::now();
        assert_eq!(f.requests(1, t0), vec![0, 1]);
        f.add_peer(2, Some(meta.len() as u64));
        assert!(f.requests(2, t0).is_empty(), "all asked of peer 1");
        // Data nobody asked peer 2 for counts for nothing.
        assert!(!f.on_data(2, 0, meta.len() as u64, piece(&meta, 0)));
        assert_eq!(f.progress(), Some((0, 2)));
        f.on_tick(t0 + Duration::from_secs(9));
        assert!(f.requests(2, t0).is_empty(), "not late yet");
        f.on_tick(t0 + Duration::from_secs(10));
        assert!(!f.wants(1));
        run(&mut f, &meta, &[2], &[]);
        assert!(f.result() == Some(&meta[..]), "the metadata");
    }
}
