//! What follows a piece's hash check (`disk` hashes): a verified piece is
//! marked had and announced to every peer; a piece that fails goes back to
//! the picker, and the peers whose blocks were wrong are banned.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::{Outcome, PeerCommand, Shared, State};

/// A piece that failed its hash check: who sent which block, and that block's
/// SHA-1, so that once a good copy arrives the sender of each differing block
/// can be named (libtorrent's "smart ban").
pub(super) struct FailedPiece {
    /// (block index, sender, SHA-1 of what it sent).
    blocks: Vec<(usize, IpAddr, [u8; 20])>,
}

impl FailedPiece {
    /// The record of a bad copy whose blocks came from `senders` and had the
    /// digests `digests` (both by block index; a sender `None`: unknown).
    /// Blocks of unknown senders are left out: there is nobody to blame for
    /// them.
    fn new(senders: &[Option<IpAddr>], digests: &[[u8; 20]]) -> Self {
        let blocks = senders
            .iter()
            .zip(digests)
            .enumerate()
            .filter_map(|(i, (ip, digest))| Some((i, (*ip)?, *digest)))
            .collect();
        FailedPiece { blocks }
    }

    /// The senders of blocks that differ from the same block of a copy of
    /// the piece that passed its hash check (`good`: its block digests).
    fn culprits<'a>(&'a self, good: &'a [[u8; 20]]) -> impl Iterator<Item = IpAddr> + 'a {
        self.blocks
            .iter()
            .filter_map(move |(i, ip, digest)| (good.get(*i)? != digest).then_some(*ip))
    }
}

/// The address that sent every block of a piece, when one did (and all
/// senders are known).
fn sole_sender(senders: &[Option<IpAddr>]) -> Option<IpAddr> {
    let first = (*senders.first()?)?;
    senders.iter().all(|s| *s == Some(first)).then_some(first)
}

impl Shared {
    /// Whether `piece` failed its check before (smart ban then needs the
    /// block digests of the good copy).
    pub(super) fn failed_before(&self, piece: u32) -> bool {
        self.lock().failed.contains_key(&piece)
    }

    /// `piece` (`len` bytes) is written and its hash matched; `digests`, its
    /// block digests when it had failed before.
    pub(super) fn piece_verified(&self, piece: u32, len: u32, digests: Option<&[[u8; 20]]>) {
        let mut state = self.lock();
        state.picker.on_piece_verified(piece);
        self.stats.publish_wanted(&state.picker);
        state.have.set(piece as usize);
        self.stats.pieces_done.fetch_add(1, Ordering::Relaxed);
        self.stats
            .verified_bytes
            .fetch_add(u64::from(len), Ordering::Relaxed);
        // Smart ban: compare each block of earlier bad copies with the good one.
        if let (Some(failures), Some(good)) = (state.failed.remove(&piece), digests) {
            let culprits: HashSet<IpAddr> =
                failures.iter().flat_map(|f| f.culprits(good)).collect();
            for ip in culprits {
                self.ban(&mut state, ip);
            }
        }
        for entry in state.peers.values() {
            let _ = entry.tx.send(PeerCommand::Have(piece));
        }
        self.verified.notify_waiters();
        Self::prune_addrs(&mut state);
        if state.picker.is_done() {
            drop(state);
            self.finish(Outcome::Complete);
        }
    }

    /// `piece` (`len` bytes) failed its hash check; `digests`: the digests of
    /// its blocks as they were sent.
    pub(super) fn piece_failed(&self, piece: u32, len: u32, digests: &[[u8; 20]]) {
        self.stats.hash_failures.fetch_add(1, Ordering::Relaxed);
        self.stats
            .wasted
            .fetch_add(u64::from(len), Ordering::Relaxed);
        self.stats
            .downloaded
            .fetch_sub(u64::from(len), Ordering::Relaxed);
        let mut state = self.lock();
        let senders = state.picker.block_senders(piece);
        state.picker.on_piece_failed(piece);
        let blocks: Vec<Option<IpAddr>> = senders
            .iter()
            .map(|s| s.and_then(|k| state.addrs.get(&k).copied()))
            .collect();
        if let Some(ip) = sole_sender(&blocks) {
            // One sender for the whole piece: it alone sent bad data.
            self.ban(&mut state, ip);
        } else {
            // Several senders: remember who sent what, and name the culprit
            // once a good copy arrives (block by block). Nobody is punished
            // on suspicion: an honest peer shares pieces with liars too.
            let record = FailedPiece::new(&blocks, digests);
            state.failed.entry(piece).or_default().push(record);
        }
        Self::prune_addrs(&mut state);
    }

    fn ban(&self, state: &mut State, ip: IpAddr) {
        if state.banned.insert(ip) {
            self.stats.peers_banned.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%ip, "banned for sending bad data");
        }
        for entry in state.peers.values().filter(|e| e.addr.ip() == ip) {
            let _ = entry.tx.send(PeerCommand::Disconnect);
        }
    }
}

#[cfg(test)]
mod tests {
    use sha1::{Digest, Sha1};

    use super::*;
    use crate::picker::BLOCK_LEN;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, n]))
    }

    #[test]
    fn only_a_piece_all_from_one_known_sender_has_a_sole_sender() {
        assert_eq!(sole_sender(&[ip(1), ip(1), ip(1)]), ip(1));
        assert_eq!(sole_sender(&[ip(1), ip(2), ip(1)]), None);
        assert_eq!(sole_sender(&[ip(1), None, ip(1)]), None);
        assert_eq!(sole_sender(&[None, ip(1)]), None);
        assert_eq!(sole_sender(&[]), None);
    }

    fn digests(buf: &[u8]) -> Vec<[u8; 20]> {
        buf.chunks(BLOCK_LEN as usize)
            .map(|b| Sha1::digest(b).into())
            .collect()
    }

    /// Smart ban: of the senders of a bad copy, only those whose blocks
    /// differ from the good copy are named, the short last block included.
    #[test]
    fn culprits_are_the_senders_of_differing_blocks() {
        let len = 2 * BLOCK_LEN as usize + 100;
        let good: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut bad = good.clone();
        bad[BLOCK_LEN as usize + 5] ^= 1; // block 1, from 127.0.0.2
        bad[len - 1] ^= 1; // block 2, the short one, from 127.0.0.3
        let (good, bad) = (digests(&good), digests(&bad));
        let failed = FailedPiece::new(&[ip(1), ip(2), ip(3)], &bad);
        let culprits: HashSet<IpAddr> = failed.culprits(&good).collect();
        assert_eq!(culprits, HashSet::from([ip(2).unwrap(), ip(3).unwrap()]));
        // A sender nobody knows is not recorded, so never named.
        let failed = FailedPiece::new(&[ip(1), None, ip(3)], &bad);
        let culprits: HashSet<IpAddr> = failed.culprits(&good).collect();
        assert_eq!(culprits, HashSet::from([ip(3).unwrap()]));
        // A good copy against itself names nobody.
        assert_eq!(
            FailedPiece::new(&[ip(1), ip(2), ip(3)], &good)
                .culprits(&good)
                .count(),
            0
        );
    }
}
