//! Piece verification and smart ban: a complete piece is hashed and written
//! on the blocking pool, then marked had and announced to every peer; a
//! piece that fails its hash goes back to the picker, and the peers whose
//! blocks were wrong are banned.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sha1::{Digest, Sha1};

use super::{Outcome, PeerCommand, Shared, State, TorrentError};
use crate::picker::BLOCK_LEN;

/// A piece that failed its hash check: who sent which block, and that block's
/// SHA-1, so that once a good copy arrives the sender of each differing block
/// can be named (libtorrent's "smart ban").
pub(super) struct FailedPiece {
    /// (block index, sender, SHA-1 of what it sent).
    blocks: Vec<(usize, IpAddr, [u8; 20])>,
}

impl FailedPiece {
    /// The record of the bad copy `buf`, whose blocks came from `senders`
    /// (by block index; `None`: unknown). Blocks of unknown senders are left
    /// out: there is nobody to blame for them.
    fn new(senders: &[Option<IpAddr>], buf: &[u8]) -> Self {
        let blocks = senders
            .iter()
            .enumerate()
            .filter_map(|(i, ip)| Some((i, (*ip)?, Sha1::digest(block(buf, i)?).into())))
            .collect();
        FailedPiece { blocks }
    }

    /// The senders of blocks that differ from the same block of `good`, a
    /// copy of the piece that passed its hash check.
    fn culprits<'a>(&'a self, good: &'a [u8]) -> impl Iterator<Item = IpAddr> + 'a {
        self.blocks.iter().filter_map(move |(i, ip, hash)| {
            let good = block(good, *i)?;
            (Sha1::digest(good).as_slice() != hash).then_some(*ip)
        })
    }
}

/// Block `i` of a piece's bytes (the last one may be shorter).
fn block(buf: &[u8], i: usize) -> Option<&[u8]> {
    let start = i.checked_mul(BLOCK_LEN as usize)?;
    buf.get(start..start.saturating_add(BLOCK_LEN as usize).min(buf.len()))
}

/// The address that sent every block of a piece, when one did (and all
/// senders are known).
fn sole_sender(senders: &[Option<IpAddr>]) -> Option<IpAddr> {
    let first = (*senders.first()?)?;
    senders.iter().all(|s| *s == Some(first)).then_some(first)
}

impl Shared {
    /// Copies a received block into its piece buffer, allocating the buffer
    /// with the piece's first block.
    pub(crate) fn store_block(state: &mut State, piece: u32, begin: u32, data: &[u8]) {
        let len = state.picker.piece_len(piece) as usize;
        let buf = state.buffers.entry(piece).or_insert_with(|| vec![0; len]);
        if let Some(dest) = buf.get_mut(begin as usize..begin as usize + data.len()) {
            dest.copy_from_slice(data);
        }
    }

    /// Hashes a complete piece on the blocking pool, writes it if good, and
    /// records the result.
    pub(crate) fn verify_piece(self: &Arc<Self>, piece: u32, buf: Vec<u8>) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.closing.load(Ordering::SeqCst) {
            // Stopping: the piece is dropped (and fetched again next time).
            self.lock().picker.on_piece_failed(piece);
            self.piece_done();
            return;
        }
        let shared = Arc::clone(self);
        // A task of the run: finishing the run waits for it.
        self.tasks.spawn(async move {
            let expected = shared.info.pieces.get(piece as usize).copied();
            let storage = Arc::clone(&shared.storage);
            let result = tokio::task::spawn_blocking(move || {
                let ok = expected.is_some_and(|e| Sha1::digest(&buf).as_slice() == e);
                let written = if ok {
                    storage.write(piece, 0, &buf)
                } else {
                    Ok(())
                };
                (ok, written, buf)
            })
            .await;
            match result {
                Ok((true, Ok(()), buf)) => shared.piece_verified(piece, &buf),
                Ok((true, Err(e), _)) => shared.fail(TorrentError::write(e)),
                Ok((false, _, buf)) => shared.piece_failed(piece, &buf),
                Err(e) => shared.fail(TorrentError::VerifyTask(e)),
            }
            shared.piece_done();
        });
    }

    fn piece_done(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn piece_verified(&self, piece: u32, buf: &[u8]) {
        let mut state = self.lock();
        state.picker.on_piece_verified(piece);
        state.have.set(piece as usize);
        self.stats.pieces_done.fetch_add(1, Ordering::Relaxed);
        self.stats
            .verified_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        // Smart ban: compare each block of earlier bad copies with the good one.
        if let Some(failures) = state.failed.remove(&piece) {
            let culprits: HashSet<IpAddr> = failures.iter().flat_map(|f| f.culprits(buf)).collect();
            for ip in culprits {
                self.ban(&mut state, ip);
            }
        }
        for entry in state.peers.values() {
            let _ = entry.tx.send(PeerCommand::Have(piece));
        }
        Self::prune_addrs(&mut state);
        if state.picker.is_complete() {
            drop(state);
            self.finish(Outcome::Complete);
        }
    }

    fn piece_failed(&self, piece: u32, buf: &[u8]) {
        self.stats.hash_failures.fetch_add(1, Ordering::Relaxed);
        self.stats
            .wasted
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.stats
            .downloaded
            .fetch_sub(buf.len() as u64, Ordering::Relaxed);
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
            let record = FailedPiece::new(&blocks, buf);
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
    use super::*;

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

    /// Smart ban: of the senders of a bad copy, only those whose blocks
    /// differ from the good copy are named, the short last block included.
    #[test]
    fn culprits_are_the_senders_of_differing_blocks() {
        let len = 2 * BLOCK_LEN as usize + 100;
        let good: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut bad = good.clone();
        bad[BLOCK_LEN as usize + 5] ^= 1; // block 1, from 127.0.0.2
        bad[len - 1] ^= 1; // block 2, the short one, from 127.0.0.3
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
