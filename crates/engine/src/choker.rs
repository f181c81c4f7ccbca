//! The choker (BEP 3): which peers we upload to.
//!
//! Pure logic, called by the engine every [`RECHOKE_INTERVAL`]:
//! - **Regular slots** (4 by default) go to the interested peers with the best
//!   rate: the rate they give us while we download (tit-for-tat), or the rate we
//!   reach to them while we seed (so the fastest takers finish first and share).
//! - **One optimistic slot** goes to a random interested peer that did not earn
//!   a regular slot, rotated every third call (every 30 s), so new peers get a
//!   chance to prove themselves. Peers that connected recently are three times
//!   as likely to be picked, as in libtorrent and mainline, since they have
//!   nothing to offer yet.
//!
//! Peers that are not interested are never unchoked: it costs a slot and
//! gives nothing.

use std::time::Duration;

use rand::Rng;

use crate::picker::PeerKey;

/// How often the engine calls [`Choker::rechoke`].
pub const RECHOKE_INTERVAL: Duration = Duration::from_secs(10);
/// The optimistic unchoke moves every this many rechokes (30 s).
pub const OPTIMISTIC_EVERY: u32 = 3;
/// Regular unchoke slots by default.
pub const DEFAULT_SLOTS: usize = 4;

/// What the choker needs to know about one connected peer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The peer.
    pub key: PeerKey,
    /// It wants data from us.
    pub interested: bool,
    /// Bytes per second it sent us (while we download) or we sent it (while
    /// we seed), over the last interval.
    pub rate: f64,
    /// Connected within the last few minutes: favoured for the optimistic slot.
    pub new: bool,
}

/// Chooses the peers to unchoke.
#[derive(Debug, Clone)]
pub struct Choker {
    slots: usize,
    optimistic: Option<PeerKey>,
    calls: u32,
}

impl Default for Choker {
    fn default() -> Self {
        Choker::new(DEFAULT_SLOTS)
    }
}

impl Choker {
    /// A choker with `slots` regular unchoke slots (plus one optimistic).
    pub fn new(slots: usize) -> Self {
        Choker {
            slots,
            optimistic: None,
            calls: 0,
        }
    }

    /// The current optimistic unchoke, if any.
    pub fn optimistic(&self) -> Option<PeerKey> {
        self.optimistic
    }

    /// Decides who is unchoked from now until the next call: returns the keys
    /// to unchoke (every other peer is choked). Peers are ranked by `rate`,
    /// ties broken by `rng`.
    pub fn rechoke(&mut self, peers: &[Candidate], rng: &mut impl Rng) -> Vec<PeerKey> {
        let mut interested: Vec<(f64, u32, PeerKey)> = peers
            .iter()
            .filter(|p| p.interested)
            .map(|p| (p.rate, rng.gen::<u32>(), p.key))
            .collect();
        // Best rate first; the random key breaks ties without favouring
        // whoever connected first.
        interested.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
        let mut unchoke: Vec<PeerKey> = interested
            .iter()
            .take(self.slots)
            .map(|(_, _, k)| *k)
            .collect();

        let rotate = self.calls.is_multiple_of(OPTIMISTIC_EVERY);
        self.calls = self.calls.wrapping_add(1);
        let still_valid = self
            .optimistic
            .filter(|o| !unchoke.contains(o) && peers.iter().any(|p| p.key == *o && p.interested));
        self.optimistic = if rotate || still_valid.is_none() {
            // Weighted draw among interested peers left choked.
            let pool: Vec<&Candidate> = peers
                .iter()
                .filter(|p| p.interested && !unchoke.contains(&p.key))
                .collect();
            let weight = |p: &Candidate| if p.new { 3u32 } else { 1 };
            let total: u32 = pool.iter().map(|p| weight(p)).sum();
            if total == 0 {
                None
            } else {
                let mut pick = rng.gen_range(0..total);
                pool.iter()
                    .find(|p| {
                        let w = weight(p);
                        if pick < w {
                            true
                        } else {
                            pick -= w;
                            false
                        }
                    })
                    .map(|p| p.key)
            }
        } else {
            still_valid
        };
        if let Some(o) = self.optimistic {
            unchoke.push(o);
        }
        unchoke
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn peer(key: PeerKey, interested: bool, rate: f64) -> Candidate {
        Candidate {
            key,
            interested,
            rate,
            new: false,
        }
    }

    #[test]
    fn best_four_interested_plus_one_optimistic() {
        let mut c = Choker::default();
        let mut rng = StdRng::seed_from_u64(1);
        let peers: Vec<Candidate> = (0..10)
            .map(|k| peer(k, k != 9, f64::from(k) * 100.0))
            .collect();
        let un = c.rechoke(&peers, &mut rng);
        assert_eq!(un.len(), 5);
        // 9 is fastest but not interested: 8, 7, 6, 5 get the regular slots.
        assert_eq!(&un[..4], &[8, 7, 6, 5]);
        let o = c.optimistic().unwrap();
        assert!(o < 5, "optimistic {o} must be a choked interested peer");
        assert!(!un.contains(&9));
    }

    #[test]
    fn optimistic_rotates_every_third_call_and_reaches_everyone() {
        let mut c = Choker::default();
        let mut rng = StdRng::seed_from_u64(2);
        let peers: Vec<Candidate> = (0..12).map(|k| peer(k, true, f64::from(k))).collect();
        let mut seen: HashMap<PeerKey, u32> = HashMap::new();
        let mut previous = None;
        for call in 0..300u32 {
            c.rechoke(&peers, &mut rng);
            let o = c.optimistic().unwrap();
            if !call.is_multiple_of(OPTIMISTIC_EVERY) {
                assert_eq!(Some(o), previous, "moved between rotations at call {call}");
            }
            previous = Some(o);
            *seen.entry(o).or_default() += 1;
        }
        // Everyone outside the top four got the optimistic slot at some point.
        for k in 0..8 {
            assert!(
                seen.contains_key(&k),
                "peer {k} never optimistically unchoked"
            );
        }
        assert!((8..12).all(|k| !seen.contains_key(&k)));
    }

    #[test]
    fn optimistic_replaced_when_it_loses_interest() {
        let mut c = Choker::default();
        let mut rng = StdRng::seed_from_u64(3);
        let mut peers: Vec<Candidate> = (0..6).map(|k| peer(k, true, f64::from(k))).collect();
        c.rechoke(&peers, &mut rng);
        let o = c.optimistic().unwrap();
        peers[o as usize].interested = false;
        let un = c.rechoke(&peers, &mut rng);
        assert!(!un.contains(&o));
        assert_ne!(c.optimistic(), Some(o));
    }

    #[test]
    fn new_peers_are_favoured_for_the_optimistic_slot() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut peers: Vec<Candidate> = (0..8)
            .map(|k| peer(k, true, 1000.0 - f64::from(k)))
            .collect();
        peers[7].new = true; // choked (slowest), new
        let mut new_picks = 0;
        for _ in 0..3000 {
            let mut c = Choker::default();
            c.rechoke(&peers, &mut rng);
            if c.optimistic() == Some(7) {
                new_picks += 1;
            }
        }
        // Pool of 4 choked peers with weights 1,1,1,3: expected 3/6 = 50%.
        assert!((1200..1800).contains(&new_picks), "{new_picks}");
    }

    #[test]
    fn few_peers() {
        let mut c = Choker::default();
        let mut rng = StdRng::seed_from_u64(5);
        assert!(c.rechoke(&[], &mut rng).is_empty());
        let un = c.rechoke(&[peer(1, true, 0.0), peer(2, false, 5.0)], &mut rng);
        assert_eq!(un, vec![1]);
        assert_eq!(c.optimistic(), None);
    }
}
