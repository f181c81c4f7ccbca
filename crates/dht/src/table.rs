//! The routing table (BEP 5): buckets of at most [`K`] nodes covering the id
//! space, finer near our own id. Only the bucket that holds our own id splits,
//! so the table knows many nodes close to us and a few everywhere else, and
//! holds at most 160 buckets.
//!
//! Only nodes that answered one of our queries enter the table (a node that
//! merely queried us, or that another node named, is pinged first). That keeps
//! spoofed source addresses and nodes behind a NAT out.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::id::{Distance, NodeId};
use crate::krpc::NodeInfo;

/// Nodes per bucket, and the number of closest nodes a lookup converges on.
pub const K: usize = 8;

/// Most buckets: one per bit of the id.
const MAX_BUCKETS: usize = 160;

/// BEP 5's three states of a node in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Answered one of our queries recently, or queried us recently after
    /// having answered before.
    Good,
    /// Not heard from for a while (or restored from a saved table and not
    /// confirmed yet): pinged before it is replaced.
    Questionable,
    /// Failed to answer several queries in a row.
    Bad,
}

/// The knobs of a table, from [`crate::Config`].
#[derive(Debug, Clone, Copy)]
pub struct TableParams {
    /// How long a response (or a query after a response) keeps a node good.
    pub good_for: Duration,
    /// Failed queries in a row after which a node is bad.
    pub max_failures: u32,
    /// Size of each bucket's replacement cache.
    pub replacements: usize,
    /// How long before a questionable node is pinged again.
    pub ping_interval: Duration,
}

/// One node in the table.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its id and address.
    pub info: NodeInfo,
    /// When it last answered one of our queries (this session).
    pub last_response: Option<Instant>,
    /// When it last queried us.
    pub last_query: Option<Instant>,
    /// When we last pinged it to check on it.
    pub pinged_at: Option<Instant>,
    /// Queries in a row it failed to answer.
    pub failures: u32,
}

impl Entry {
    fn new(info: NodeInfo, responded: Option<Instant>) -> Self {
        Entry {
            info,
            last_response: responded,
            last_query: None,
            pinged_at: None,
            failures: 0,
        }
    }

    /// Its BEP 5 state at `now`.
    pub fn status(&self, now: Instant, p: &TableParams) -> NodeStatus {
        if self.failures >= p.max_failures {
            return NodeStatus::Bad;
        }
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < p.good_for);
        if self.failures == 0
            && (recent(self.last_response)
                || (self.last_response.is_some() && recent(self.last_query)))
        {
            NodeStatus::Good
        } else {
            NodeStatus::Questionable
        }
    }

    /// When it was last heard from, for choosing whom to ping first.
    fn last_seen(&self) -> Option<Instant> {
        self.last_response.max(self.last_query)
    }
}

/// A bucket: up to [`K`] nodes and a small cache of nodes waiting for a slot.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// The nodes, at most [`K`].
    pub nodes: Vec<Entry>,
    /// Nodes that answered us while the bucket was full, newest last.
    pub replacements: Vec<Entry>,
    /// When a node was last added or answered (BEP 5's "changed").
    pub last_changed: Instant,
    /// When the bucket was last refreshed (or created).
    pub last_refresh: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Bucket {
            nodes: Vec::new(),
            replacements: Vec::new(),
            last_changed: now,
            last_refresh: now,
        }
    }
}

/// What [`RoutingTable::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new node took a free slot.
    Added,
    /// The node was there; its state was refreshed.
    Updated,
    /// The node took the slot of a bad one.
    Replaced(NodeInfo),
    /// The bucket is full of good or questionable nodes; the node waits in
    /// the replacement cache.
    Cached,
    /// Not entered (our own id, or its id or address is held by another good
    /// entry).
    Refused,
}

/// One address family's routing table.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    own: NodeId,
    buckets: Vec<Bucket>,
    params: TableParams,
}

impl RoutingTable {
    /// An empty table around `own`.
    pub fn new(own: NodeId, params: TableParams, now: Instant) -> Self {
        RoutingTable {
            own,
            buckets: vec![Bucket::new(now)],
            params,
        }
    }

    /// An empty table with the same parameters around another id.
    pub fn clone_empty(&self, own: NodeId, now: Instant) -> Self {
        RoutingTable::new(own, self.params, now)
    }

    /// Our id, around which the table is built.
    pub fn own_id(&self) -> NodeId {
        self.own
    }

    /// The buckets, farthest from our id first.
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// Number of nodes in the table (replacement caches not counted).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    /// Whether the table holds no node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every node in the table.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    /// Status of an entry.
    pub fn status(&self, e: &Entry, now: Instant) -> NodeStatus {
        e.status(now, &self.params)
    }

    /// Counts of good, questionable and bad nodes.
    pub fn census(&self, now: Instant) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for e in self.entries() {
            match e.status(now, &self.params) {
                NodeStatus::Good => c.0 += 1,
                NodeStatus::Questionable => c.1 += 1,
                NodeStatus::Bad => c.2 += 1,
            }
        }
        c
    }

    fn bucket_index(&self, id: &NodeId) -> usize {
        self.own
            .common_prefix_len(id)
            .min(self.buckets.len().saturating_sub(1))
    }

    /// The entry for `id`, if present.
    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        let b = self.buckets.get(self.bucket_index(id))?;
        b.nodes.iter().find(|e| e.info.id == *id)
    }

    fn get_mut(&mut self, id: &NodeId) -> Option<&mut Entry> {
        let i = self.bucket_index(id);
        let b = self.buckets.get_mut(i)?;
        b.nodes.iter_mut().find(|e| e.info.id == *id)
    }

    /// Whether a node with this id would get a place now (free slot, a
    /// bucket that can split, or a bad or questionable node to replace): worth
    /// pinging a node that queried us to see if it answers.
    pub fn wants(&self, id: &NodeId, now: Instant) -> bool {
        if *id == self.own || self.get(id).is_some() {
            return false;
        }
        let i = self.bucket_index(id);
        let Some(b) = self.buckets.get(i) else {
            return false;
        };
        b.nodes.len() < K
            || (i + 1 == self.buckets.len() && self.buckets.len() < MAX_BUCKETS)
            || b.nodes
                .iter()
                .any(|e| e.status(now, &self.params) != NodeStatus::Good)
    }

    /// A node answered one of our queries (`responded` = `Some(now)`), or is
    /// restored from a saved table (`None`: questionable until it answers).
    pub fn insert(&mut self, info: NodeInfo, responded: Option<Instant>, now: Instant) -> Inserted {
        if info.id == self.own {
            return Inserted::Refused;
        }
        let params = self.params;
        // Same id: refresh it, or move it if the old address stopped answering.
        if let Some(e) = self.get_mut(&info.id) {
            if e.info.addr != info.addr {
                if e.status(now, &params) == NodeStatus::Good {
                    return Inserted::Refused;
                }
                e.info.addr = info.addr;
            }
            if responded.is_some() {
                e.last_response = responded;
                e.failures = 0;
            }
            let i = self.bucket_index(&info.id);
            if let (Some(b), Some(_)) = (self.buckets.get_mut(i), responded) {
                b.last_changed = now;
            }
            return Inserted::Updated;
        }
        // Same address under another id: one address, one entry.
        if let Some((bi, ni)) = self.find_addr(&info) {
            let good = self
                .buckets
                .get(bi)
                .and_then(|b| b.nodes.get(ni))
                .is_some_and(|e| e.status(now, &params) == NodeStatus::Good);
            if good {
                return Inserted::Refused;
            }
            if let Some(b) = self.buckets.get_mut(bi) {
                b.nodes.remove(ni);
            }
        }
        loop {
            let i = self.bucket_index(&info.id);
            let can_split = i + 1 == self.buckets.len() && self.buckets.len() < MAX_BUCKETS;
            let Some(b) = self.buckets.get_mut(i) else {
                return Inserted::Refused;
            };
            if b.nodes.len() < K {
                b.nodes.push(Entry::new(info, responded));
                b.last_changed = now;
                return Inserted::Added;
            }
            if let Some(bad) = b
                .nodes
                .iter_mut()
                .find(|e| e.status(now, &params) == NodeStatus::Bad)
            {
                let old = bad.info;
                *bad = Entry::new(info, responded);
                b.last_changed = now;
                return Inserted::Replaced(old);
            }
            if can_split {
                self.split_last(now);
                continue;
            }
            // Full: wait in the replacement cache (newest last; the oldest
            // falls out). Pings of the questionable nodes decide whether a
            // slot frees up.
            b.replacements
                .retain(|e| e.info.id != info.id && e.info.addr != info.addr);
            if responded.is_some() && params.replacements > 0 {
                if b.replacements.len() >= params.replacements {
                    b.replacements.remove(0);
                }
                b.replacements.push(Entry::new(info, responded));
            }
            return Inserted::Cached;
        }
    }

    fn find_addr(&self, info: &NodeInfo) -> Option<(usize, usize)> {
        self.buckets.iter().enumerate().find_map(|(bi, b)| {
            b.nodes
                .iter()
                .position(|e| e.info.addr == info.addr && e.info.id != info.id)
                .map(|ni| (bi, ni))
        })
    }

    fn split_last(&mut self, now: Instant) {
        let last = self.buckets.len().saturating_sub(1);
        let own = self.own;
        let Some(b) = self.buckets.get_mut(last) else {
            return;
        };
        let mut far = Bucket::new(b.last_changed);
        let mut near = Bucket::new(now);
        for e in b.nodes.drain(..) {
            if own.common_prefix_len(&e.info.id) > last {
                near.nodes.push(e);
            } else {
                far.nodes.push(e);
            }
        }
        for e in b.replacements.drain(..) {
            if own.common_prefix_len(&e.info.id) > last {
                near.replacements.push(e);
            } else {
                far.replacements.push(e);
            }
        }
        // Nodes in the new near bucket leave room in the far one: fill it
        // from its cache.
        while far.nodes.len() < K {
            let Some(e) = far.replacements.pop() else {
                break;
            };
            far.nodes.push(e);
        }
        *b = far;
        self.buckets.push(near);
    }

    /// The node at `addr` answered a query of ours.
    pub fn note_response(&mut self, id: &NodeId, now: Instant) {
        if let Some(e) = self.get_mut(id) {
            e.last_response = Some(now);
            e.failures = 0;
        }
    }

    /// The node queried us. Returns whether it is in the table (at that
    /// address).
    pub fn note_query(&mut self, info: &NodeInfo, now: Instant) -> bool {
        match self.get_mut(&info.id) {
            Some(e) if e.info.addr == info.addr => {
                e.last_query = Some(now);
                true
            }
            _ => false,
        }
    }

    /// A query to the node timed out. A node that turns bad gives its slot
    /// to the newest node of the replacement cache.
    pub fn note_failure(&mut self, info: &NodeInfo, now: Instant) {
        let params = self.params;
        let i = self.bucket_index(&info.id);
        let Some(b) = self.buckets.get_mut(i) else {
            return;
        };
        let Some(pos) = b
            .nodes
            .iter()
            .position(|e| e.info.id == info.id && e.info.addr == info.addr)
        else {
            // Failed replacements are dropped from the cache.
            b.replacements.retain(|e| e.info.addr != info.addr);
            return;
        };
        let Some(e) = b.nodes.get_mut(pos) else {
            return;
        };
        e.failures = e.failures.saturating_add(1);
        if e.status(now, &params) == NodeStatus::Bad {
            if let Some(r) = b.replacements.pop() {
                if let Some(slot) = b.nodes.get_mut(pos) {
                    *slot = r;
                    b.last_changed = now;
                }
            }
        }
    }

    /// Up to `n` nodes closest to `target`, bad ones left out, closest first.
    pub fn closest(&self, target: &NodeId, n: usize, now: Instant) -> Vec<NodeInfo> {
        let mut all: Vec<(Distance, NodeInfo)> = self
            .entries()
            .filter(|e| e.status(now, &self.params) != NodeStatus::Bad)
            .map(|e| (e.info.id.distance(target), e.info))
            .collect();
        if all.len() > n && n > 0 {
            all.select_nth_unstable_by_key(n - 1, |(d, _)| *d);
            all.truncate(n);
        }
        all.sort_unstable_by_key(|(d, _)| *d);
        all.into_iter().take(n).map(|(_, i)| i).collect()
    }

    /// Targets for refreshing the buckets nothing changed in for `interval`:
    /// a random id in each such bucket's range. A bucket holding a bad node
    /// and no replacement for it is refreshed sooner (every third of the
    /// interval), to find one. Marks them refreshed, so each is refreshed
    /// once per interval.
    pub fn refresh_targets<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        interval: Duration,
        rng: &mut R,
    ) -> Vec<NodeId> {
        let count = self.buckets.len();
        let own = self.own;
        let params = self.params;
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            let since = |t: Instant| now.saturating_duration_since(t);
            let stale = since(b.last_changed) >= interval && since(b.last_refresh) >= interval;
            let wants_replacement = b.replacements.is_empty()
                && b.nodes
                    .iter()
                    .any(|e| e.status(now, &params) == NodeStatus::Bad)
                && since(b.last_refresh) >= interval / 3;
            if stale || wants_replacement {
                b.last_refresh = now;
                out.push(own.random_in_range(i, i + 1 == count, rng));
            }
        }
        out
    }

    /// A random id in the range of each bucket that is not full, the
    /// bucket holding our own id left out. Looked up after a bootstrap, so
    /// that the far buckets fill at once rather than at their first refresh.
    pub fn sparse_targets<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> Vec<NodeId> {
        let last = self.buckets.len().saturating_sub(1);
        let own = self.own;
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate().take(last) {
            if b.nodes.len() < K {
                b.last_refresh = now;
                out.push(own.random_in_range(i, false, rng));
            }
        }
        out
    }

    /// Questionable nodes due a ping (not pinged for `ping_interval`),
    /// those not heard from longest first, at most `max`; marks them pinged.
    /// Buckets with nodes waiting in their replacement cache go first, since
    /// a failed ping there frees a slot.
    pub fn ping_candidates(&mut self, now: Instant, max: usize) -> Vec<NodeInfo> {
        let params = self.params;
        let mut due: Vec<(bool, Option<Instant>, NodeInfo)> = Vec::new();
        for b in &self.buckets {
            let waiting = !b.replacements.is_empty();
            for e in &b.nodes {
                let questionable = e.status(now, &params) == NodeStatus::Questionable;
                let due_again = e
                    .pinged_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= params.ping_interval);
                if questionable && due_again {
                    due.push((!waiting, e.last_seen(), e.info));
                }
            }
        }
        due.sort_by_key(|(not_waiting, seen, _)| (*not_waiting, *seen));
        due.truncate(max);
        let picked: Vec<NodeInfo> = due.into_iter().map(|(_, _, i)| i).collect();
        for info in &picked {
            if let Some(e) = self.get_mut(&info.id) {
                e.pinged_at = Some(now);
            }
        }
        picked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn params() -> TableParams {
        TableParams {
            good_for: Duration::from_secs(15 * 60),
            max_failures: 2,
            replacements: 4,
            ping_interval: Duration::from_secs(60),
        }
    }

    fn info(id: NodeId, n: u32) -> NodeInfo {
        NodeInfo {
            id,
            addr: std::net::SocketAddr::from(([127, 1, (n >> 8) as u8, n as u8], 6881)),
        }
    }

    #[test]
    fn only_our_bucket_splits_and_far_buckets_cache() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(3);
        let own = NodeId::random(&mut rng);
        let mut t = RoutingTable::new(own, params(), now);
        for n in 0..2000 {
            t.insert(info(NodeId::random(&mut rng), n), Some(now), now);
        }
        // Buckets hold at most K, every bucket but the last has nodes
        // with exactly its prefix length.
        let count = t.buckets().len();
        assert!(count > 5 && count < 20, "{count} buckets");
        for (i, b) in t.buckets().iter().enumerate() {
            assert!(b.nodes.len() <= K);
            for e in &b.nodes {
                let cpl = own.common_prefix_len(&e.info.id);
                if i + 1 < count {
                    assert_eq!(cpl, i);
                } else {
                    assert!(cpl >= i);
                }
            }
        }
        // The far half of the id space: full, with replacements waiting.
        assert_eq!(t.buckets()[0].nodes.len(), K);
        assert_eq!(t.buckets()[0].replacements.len(), 4);
        // closest() is sorted and right.
        let target = NodeId::random(&mut rng);
        let c = t.closest(&target, K, now);
        assert_eq!(c.len(), K);
        for w in c.windows(2) {
            assert!(w[0].id.distance(&target) <= w[1].id.distance(&target));
        }
    }

    #[test]
    fn good_questionable_bad_and_replacement() {
        let t0 = Instant::now();
        let own = NodeId([0; 20]);
        let mut t = RoutingTable::new(own, params(), t0);
        // Fill bucket 0 (ids starting with bit 1) with 8 nodes, and another
        // node to split off the near half.
        let far = |n: u8| {
            let mut id = [0u8; 20];
            id[0] = 0x80 | n;
            NodeId(id)
        };
        for n in 0..8 {
            assert_eq!(
                t.insert(info(far(n), n.into()), Some(t0), t0),
                Inserted::Added
            );
        }
        let mut near = [0u8; 20];
        near[19] = 1;
        t.insert(info(NodeId(near), 100), Some(t0), t0);
        assert_eq!(t.buckets().len(), 2);
        assert_eq!(t.census(t0), (9, 0, 0));
        // Full bucket: the newcomer waits.
        assert_eq!(t.insert(info(far(9), 9), Some(t0), t0), Inserted::Cached);
        assert!(t.get(&far(9)).is_none());
        // 15 minutes of silence make nodes questionable, due a ping.
        let t1 = t0 + Duration::from_secs(15 * 60);
        assert_eq!(t.census(t1), (0, 9, 0));
        let pings = t.ping_candidates(t1, 3);
        assert_eq!(pings.len(), 3);
        assert!(
            pings.iter().all(|p| p.id.0[0] & 0x80 != 0),
            "bucket with waiting nodes first"
        );
        // A query from a node that has answered before keeps it good.
        assert!(t.note_query(&info(far(0), 0), t1));
        assert_eq!(t.status(t.get(&far(0)).unwrap(), t1), NodeStatus::Good);
        // Two failures make a node bad, and the waiting node takes its place.
        let victim = info(far(3), 3);
        t.note_failure(&victim, t1);
        assert!(t.get(&far(3)).is_some());
        t.note_failure(&victim, t1);
        assert!(t.get(&far(3)).is_none());
        assert!(t.get(&far(9)).is_some());
        // A response resets failures.
        t.note_failure(&info(far(4), 4), t1);
        t.note_response(&far(4), t1);
        assert_eq!(t.get(&far(4)).unwrap().failures, 0);
    }

    #[test]
    fn address_and_id_conflicts() {
        let t0 = Instant::now();
        let mut t = RoutingTable::new(NodeId([0; 20]), params(), t0);
        let a = info(NodeId([1; 20]), 1);
        assert_eq!(t.insert(a, Some(t0), t0), Inserted::Added);
        // Same id, other address, while the first is good: refused.
        let moved = NodeInfo {
            id: a.id,
            addr: info(a.id, 2).addr,
        };
        assert_eq!(t.insert(moved, Some(t0), t0), Inserted::Refused);
        // Other id at the same address: refused while good.
        let other = NodeInfo {
            id: NodeId([2; 20]),
            addr: a.addr,
        };
        assert_eq!(t.insert(other, Some(t0), t0), Inserted::Refused);
        // Our own id never enters.
        assert_eq!(
            t.insert(info(NodeId([0; 20]), 3), Some(t0), t0),
            Inserted::Refused
        );
        // After it went bad, another id at the address takes over.
        t.note_failure(&a, t0);
        t.note_failure(&a, t0);
        assert_eq!(t.insert(other, Some(t0), t0), Inserted::Added);
        assert!(t.get(&a.id).is_none());
    }

    #[test]
    fn stale_buckets_are_refreshed_once_per_interval() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(4);
        let own = NodeId::random(&mut rng);
        let mut t = RoutingTable::new(own, params(), t0);
        for n in 0..200 {
            t.insert(info(NodeId::random(&mut rng), n), Some(t0), t0);
        }
        let interval = Duration::from_secs(900);
        assert!(t
            .refresh_targets(t0 + Duration::from_secs(60), interval, &mut rng)
            .is_empty());
        let t1 = t0 + interval;
        let targets = t.refresh_targets(t1, interval, &mut rng);
        assert_eq!(targets.len(), t.buckets().len());
        let last = t.buckets().len() - 1;
        for (i, target) in targets.iter().enumerate() {
            let cpl = own.common_prefix_len(target);
            if i < last {
                assert_eq!(cpl, i);
            } else {
                assert!(cpl >= i);
            }
        }
        assert!(t.refresh_targets(t1, interval, &mut rng).is_empty());
    }
}
