//! The peers other nodes announced to us (`announce_peer`), served back in
//! `get_peers` answers. Bounded per info-hash and in total; entries expire.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;

use crate::id::NodeId;

/// The knobs of the store, from [`crate::Config`].
#[derive(Debug, Clone, Copy)]
pub struct StoreParams {
    /// How long an announce is kept (BEP 5 leaves it open; 30 minutes is what
    /// clients use, and they re-announce more often than that).
    pub ttl: Duration,
    /// Most peers kept per info-hash; a new one pushes out the oldest.
    pub max_per_info_hash: usize,
    /// Most peers kept in all; beyond it new info-hashes are refused.
    pub max_total: usize,
}

#[derive(Debug, Clone, Copy)]
struct Stored {
    addr: SocketAddr,
    expires: Instant,
}

/// Announced peers by info-hash.
#[derive(Debug, Clone)]
pub struct PeerStore {
    params: StoreParams,
    // A BTreeMap, not a HashMap: iteration order must not depend on a
    // per-process random seed, so that simulations replay exactly.
    peers: BTreeMap<NodeId, Vec<Stored>>,
    total: usize,
}

impl PeerStore {
    /// An empty store.
    pub fn new(params: StoreParams) -> Self {
        PeerStore {
            params,
            peers: BTreeMap::new(),
            total: 0,
        }
    }

    /// Peers held, in all.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no peer is held.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Info-hashes with peers.
    pub fn info_hashes(&self) -> usize {
        self.peers.len()
    }

    /// Records an announce. Returns false when the store is full.
    pub fn insert(&mut self, now: Instant, info_hash: NodeId, addr: SocketAddr) -> bool {
        let expires = now + self.params.ttl;
        if let Some(list) = self.peers.get_mut(&info_hash) {
            if let Some(p) = list.iter_mut().find(|p| p.addr == addr) {
                p.expires = expires;
                return true;
            }
        }
        if self.total >= self.params.max_total {
            self.expire(now);
        }
        let full = self.total >= self.params.max_total;
        let list = self.peers.entry(info_hash).or_default();
        if list.len() >= self.params.max_per_info_hash || (full && !list.is_empty()) {
            // Make room in this torrent's list: the entry that expires first goes.
            if let Some((i, _)) = list.iter().enumerate().min_by_key(|(_, p)| p.expires) {
                list.swap_remove(i);
                self.total -= 1;
            }
        } else if full {
            if list.is_empty() {
                self.peers.remove(&info_hash);
            }
            return false;
        }
        list.push(Stored { addr, expires });
        self.total += 1;
        true
    }

    /// Up to `max` live peers of `info_hash` of the given family, chosen at
    /// random when there are more.
    pub fn get<R: Rng + ?Sized>(
        &self,
        now: Instant,
        info_hash: &NodeId,
        v6: bool,
        max: usize,
        rng: &mut R,
    ) -> Vec<SocketAddr> {
        let Some(list) = self.peers.get(info_hash) else {
            return Vec::new();
        };
        let mut live: Vec<SocketAddr> = list
            .iter()
            .filter(|p| p.expires > now && p.addr.is_ipv6() == v6)
            .map(|p| p.addr)
            .collect();
        if live.len() > max {
            live.shuffle(rng);
            live.truncate(max);
        }
        live
    }

    /// Drops expired entries.
    pub fn expire(&mut self, now: Instant) {
        let mut total = 0;
        self.peers.retain(|_, list| {
            list.retain(|p| p.expires > now);
            total += list.len();
            !list.is_empty()
        });
        self.total = total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn addr(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], n))
    }

    #[test]
    fn bounded_and_expiring() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let mut s = PeerStore::new(StoreParams {
            ttl: Duration::from_secs(1800),
            max_per_info_hash: 3,
            max_total: 5,
        });
        let a = NodeId([1; 20]);
        let b = NodeId([2; 20]);
        for n in 1..=4 {
            assert!(s.insert(t0 + Duration::from_secs(n.into()), a, addr(n)));
        }
        // Per-hash bound: the oldest went.
        assert_eq!(s.len(), 3);
        let got = s.get(t0 + Duration::from_secs(5), &a, false, 10, &mut rng);
        assert!(!got.contains(&addr(1)) && got.len() == 3);
        assert!(s.insert(t0, b, addr(10)));
        assert!(s.insert(t0, b, addr(11)));
        // Total bound: a third info-hash is refused, known ones rotate.
        assert!(!s.insert(t0, NodeId([3; 20]), addr(12)));
        assert_eq!(s.info_hashes(), 2);
        assert!(s.insert(t0, b, addr(13)));
        assert_eq!(s.len(), 5);
        // Sampling and families.
        assert_eq!(s.get(t0, &a, false, 2, &mut rng).len(), 2);
        assert!(s.get(t0, &a, true, 10, &mut rng).is_empty());
        // Expiry after 30 minutes.
        let later = t0 + Duration::from_secs(1800 + 10);
        assert!(s.get(later, &a, false, 10, &mut rng).is_empty());
        s.expire(later);
        assert!(s.is_empty());
        assert_eq!(s.info_hashes(), 0);
    }
}
