//! BEP 12 tracker tiers: the order in which to try a torrent's trackers.
//!
//! A torrent's `announce-list` is a list of tiers, each a list of tracker URLs.
//! BEP 12 says: shuffle each tier once, when the torrent is loaded; try the
//! trackers of the first tier in order, moving to the next one when a tracker
//! fails; when one answers, move it to the front of its tier; go on to the next
//! tier only when every tracker of a tier failed. [`TrackerList`] keeps that
//! order and, per announce *round*, which trackers failed or answered; it is pure
//! data (no clock, no I/O) and the engine does the announcing.
//!
//! # Policy: which trackers get an announce
//!
//! Clients differ on how strictly they follow BEP 12. libtorrent exposes two
//! settings, `announce_to_all_trackers` and `announce_to_all_tiers`, both
//! **false** by default (strict BEP 12: one working tracker in all); qBittorrent
//! overrides `announce_to_all_tiers` to true, and uTorrent behaves that way
//! too. rivulet mirrors the two settings in [`AnnouncePolicy`] and by default
//! **announces to the first working tracker of every tier**
//! (`announce_to_all_tiers = true`, `announce_to_all_trackers = false`):
//!
//! * Most public torrents list unrelated trackers one per tier (mktorrent and
//!   most tools do that with several `-a`), so strict BEP 12 would use a
//!   single tracker and see a fraction of the swarm. One tracker per tier
//!   finds the peers that each independent tracker knows, which is where
//!   download speed comes from at start-up.
//! * Trackers *within* a tier are, by BEP 12's intent, mirrors of each other:
//!   announcing to all of them (`announce_to_all_trackers`) mostly doubles
//!   tracker load for the same peers, so failover is the default there.
//! * Private torrents have one tracker (or one tier); every policy behaves the
//!   same on them.
//!
//! The strict BEP 12 behaviour is one setting away
//! (`AnnouncePolicy { announce_to_all_tiers: false, .. }`).

use rand::seq::SliceRandom;
use rand::Rng;

use crate::http::MAX_URL_LEN;

/// Most trackers kept from one torrent; the rest of a huge `announce-list` is
/// dropped (in tier order).
pub const MAX_TRACKERS: usize = 200;

/// Which trackers of a [`TrackerList`] to announce to. See the
/// [module documentation](self) for the reasoning behind the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnnouncePolicy {
    /// Announce to every tier (its first working tracker, or all its trackers
    /// with `announce_to_all_trackers`), not only to the first tier that works.
    /// Default: true.
    pub announce_to_all_tiers: bool,
    /// Announce to every tracker of a tier in parallel instead of trying them
    /// one after the other. Default: false.
    pub announce_to_all_trackers: bool,
}

impl Default for AnnouncePolicy {
    fn default() -> Self {
        AnnouncePolicy {
            announce_to_all_tiers: true,
            announce_to_all_trackers: false,
        }
    }
}

impl AnnouncePolicy {
    /// Strict BEP 12 (libtorrent's defaults): the first tracker that answers,
    /// tiers tried in order.
    pub const BEP12: AnnouncePolicy = AnnouncePolicy {
        announce_to_all_tiers: false,
        announce_to_all_trackers: false,
    };
}

/// What happened to a tracker in the current announce round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackerState {
    /// Not tried yet in this round (or tried and not answered yet).
    Untried,
    /// Failed in this round.
    Failed,
    /// Answered in this round.
    Succeeded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    url: String,
    state: TrackerState,
    consecutive_failures: u32,
}

/// A torrent's trackers in BEP 12 tier order, with per-round outcomes.
///
/// ```
/// use rand::SeedableRng;
/// use rivulet_tracker::{AnnouncePolicy, TrackerList};
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
/// let tiers = vec![vec!["http://a/announce".to_string()], vec!["udp://b:1".to_string()]];
/// let mut list = TrackerList::new(tiers, &mut rng);
/// // Default policy: one tracker from each tier.
/// assert_eq!(list.targets(AnnouncePolicy::default()), ["http://a/announce", "udp://b:1"]);
/// // Strict BEP 12: the second tier only once the first has failed.
/// assert_eq!(list.targets(AnnouncePolicy::BEP12), ["http://a/announce"]);
/// list.mark_failure("http://a/announce");
/// assert_eq!(list.targets(AnnouncePolicy::BEP12), ["udp://b:1"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackerList {
    tiers: Vec<Vec<Entry>>,
}

impl TrackerList {
    /// Builds the list from `announce-list` tiers (or `vec![vec![announce]]`),
    /// shuffling each tier with `rng` as BEP 12 requires. Blank URLs, URLs
    /// longer than [`MAX_URL_LEN`], repeats (the first occurrence stays) and
    /// empty tiers are dropped, and at most [`MAX_TRACKERS`] are kept.
    pub fn new<R: Rng + ?Sized>(tiers: Vec<Vec<String>>, rng: &mut R) -> Self {
        let mut seen = std::collections::HashSet::new();
        let mut kept = 0usize;
        let mut out = Vec::new();
        for tier in tiers {
            let mut entries: Vec<Entry> = Vec::new();
            for url in tier {
                let url = url.trim();
                if url.is_empty() || url.len() > MAX_URL_LEN || kept >= MAX_TRACKERS {
                    continue;
                }
                if !seen.insert(url.to_owned()) {
                    continue;
                }
                kept += 1;
                entries.push(Entry {
                    url: url.to_owned(),
                    state: TrackerState::Untried,
                    consecutive_failures: 0,
                });
            }
            if !entries.is_empty() {
                entries.shuffle(rng);
                out.push(entries);
            }
        }
        TrackerList { tiers: out }
    }

    /// Splits the list into one list per tier, in tier order, each keeping
    /// its tier's current order and round states.
    ///
    /// For drivers that run each tier on its own schedule (rivulet announces
    /// to every tier, each from its own task, so a dead tier never holds up
    /// another): every part still gets [`new`](Self::new)'s shuffling,
    /// dropping and [`MAX_TRACKERS`] cap, and fail-over and promotion within
    /// its tier.
    pub fn into_tiers(self) -> Vec<TrackerList> {
        self.tiers
            .into_iter()
            .map(|tier| TrackerList { tiers: vec![tier] })
            .collect()
    }

    /// Number of trackers.
    pub fn len(&self) -> usize {
        self.tiers.iter().map(Vec::len).sum()
    }

    /// Whether there is no tracker at all.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// Number of (non-empty) tiers.
    pub fn tier_count(&self) -> usize {
        self.tiers.len()
    }

    /// Every tracker as `(tier index, url)`, tiers in order, each tier in its
    /// current order.
    pub fn order(&self) -> impl Iterator<Item = (usize, &str)> + '_ {
        self.tiers
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.iter().map(move |e| (i, e.url.as_str())))
    }

    fn find(&self, url: &str) -> Option<(usize, usize)> {
        self.tiers
            .iter()
            .enumerate()
            .find_map(|(t, tier)| tier.iter().position(|e| e.url == url).map(|p| (t, p)))
    }

    fn entry(&self, url: &str) -> Option<&Entry> {
        let (t, p) = self.find(url)?;
        self.tiers.get(t)?.get(p)
    }

    /// The tracker's state in the current round, `None` if it is not listed.
    pub fn state(&self, url: &str) -> Option<TrackerState> {
        self.entry(url).map(|e| e.state)
    }

    /// How many times in a row the tracker failed (for back-off), `None` if it
    /// is not listed.
    pub fn consecutive_failures(&self, url: &str) -> Option<u32> {
        self.entry(url).map(|e| e.consecutive_failures)
    }

    /// Records an answer from `url`: it moves to the front of its tier (BEP 12)
    /// and counts as succeeded for this round. Returns whether it is listed.
    pub fn mark_success(&mut self, url: &str) -> bool {
        let Some((t, p)) = self.find(url) else {
            return false;
        };
        let Some(tier) = self.tiers.get_mut(t) else {
            return false;
        };
        if p < tier.len() {
            let mut e = tier.remove(p);
            e.state = TrackerState::Succeeded;
            e.consecutive_failures = 0;
            tier.insert(0, e);
        }
        true
    }

    /// Records a failure of `url` (no answer, error, refusal). The order does
    /// not change; the tracker counts as failed for this round. Returns whether
    /// it is listed.
    pub fn mark_failure(&mut self, url: &str) -> bool {
        let Some((t, p)) = self.find(url) else {
            return false;
        };
        let Some(e) = self.tiers.get_mut(t).and_then(|tier| tier.get_mut(p)) else {
            return false;
        };
        e.state = TrackerState::Failed;
        e.consecutive_failures = e.consecutive_failures.saturating_add(1);
        true
    }

    /// Starts a new announce round (the next regular announce): every tracker
    /// becomes [`TrackerState::Untried`]; order and failure counts stay.
    pub fn new_round(&mut self) {
        for e in self.tiers.iter_mut().flatten() {
            e.state = TrackerState::Untried;
        }
    }

    /// The trackers to announce to now, under `policy`, given this round's
    /// outcomes so far. Idempotent: trackers already contacted but not yet
    /// marked are returned again, so the caller skips those in flight. Empty
    /// when the round is done (a tracker answered where needed, or all failed).
    ///
    /// * All tiers: from each tier without a success, its first untried tracker
    ///   (or all its untried trackers with `announce_to_all_trackers`).
    /// * Not all tiers: the same, for the first tier that has no success and is
    ///   not exhausted; nothing once any tier has had a success.
    pub fn targets(&self, policy: AnnouncePolicy) -> Vec<&str> {
        let mut out = Vec::new();
        for tier in &self.tiers {
            if tier.iter().any(|e| e.state == TrackerState::Succeeded) {
                if policy.announce_to_all_tiers {
                    continue;
                }
                return out;
            }
            let mut untried = tier.iter().filter(|e| e.state == TrackerState::Untried);
            if policy.announce_to_all_trackers {
                out.extend(untried.map(|e| e.url.as_str()));
            } else if let Some(e) = untried.next() {
                out.push(e.url.as_str());
            }
            if !policy.announce_to_all_tiers && !out.is_empty() {
                return out;
            }
        }
        out
    }
}
