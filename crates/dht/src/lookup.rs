//! One iterative lookup in one address family (Kademlia's node lookup, as
//! BEP 5 uses it for `find_node` and `get_peers`): keep the candidates
//! sorted by distance to the target, keep `alpha` queries in flight to the
//! closest ones not asked yet, and stop when the [`K`] closest that did not
//! fail have all answered.
//!
//! A query that has not been answered after the short timeout is *slow*: it
//! no longer counts against `alpha` and gives its place among the K closest
//! to the next candidate, so the lookup moves on (the node sends the query
//! once more). After twice the short timeout it is *stalled*: the lookup may
//! end without it. If its answer arrives later it is still used. After the
//! long timeout it has *failed*.

use std::net::SocketAddr;

use crate::id::{Distance, NodeId};
use crate::krpc::NodeInfo;
use crate::table::K;

/// Most candidates a lookup remembers; farther ones are dropped. Hostile
/// answers can only fill this list, never grow it.
pub const MAX_CANDIDATES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Fresh,
    Slow,
    Stalled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    New,
    InFlight(Wait),
    Responded,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    info: NodeInfo,
    dist: Distance,
    state: State,
    token: Option<Vec<u8>>,
}

/// A lookup in one family.
#[derive(Debug, Clone)]
pub struct Lookup {
    target: NodeId,
    v6: bool,
    own: NodeId,
    alpha: usize,
    candidates: Vec<Candidate>,
    /// Queries to routers (addresses without a known id) not answered yet.
    routers_in_flight: usize,
    done: bool,
}

impl Lookup {
    /// A lookup of `target` among nodes of one family (`v6`), from `own`'s
    /// point of view (our own id is never a candidate).
    pub fn new(target: NodeId, v6: bool, own: NodeId, alpha: usize) -> Self {
        Lookup {
            target,
            v6,
            own,
            alpha: alpha.max(1),
            candidates: Vec::new(),
            routers_in_flight: 0,
            done: false,
        }
    }

    /// Whether this lookup's nodes are IPv6.
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// The target.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// Adds a node someone named (or that our table knows). Nodes of the
    /// other family, with port 0, or with our own id are ignored; so are
    /// duplicates by id or address.
    pub fn add(&mut self, info: NodeInfo) {
        if self.done
            || info.addr.is_ipv6() != self.v6
            || info.addr.port() == 0
            || info.addr.ip().is_unspecified()
            || info.addr.ip().is_multicast()
            || info.id == self.own
        {
            return;
        }
        if self
            .candidates
            .iter()
            .any(|c| c.info.id == info.id || c.info.addr == info.addr)
        {
            return;
        }
        let dist = info.id.distance(&self.target);
        let pos = self.candidates.partition_point(|c| c.dist < dist);
        if pos >= MAX_CANDIDATES {
            return;
        }
        self.candidates.insert(
            pos,
            Candidate {
                info,
                dist,
                state: State::New,
                token: None,
            },
        );
        self.candidates.truncate(MAX_CANDIDATES);
    }

    /// A query to a router went out; the lookup waits for it before giving up.
    pub fn router_sent(&mut self) {
        self.routers_in_flight += 1;
    }

    /// A router answered or timed out.
    pub fn router_done(&mut self) {
        self.routers_in_flight = self.routers_in_flight.saturating_sub(1);
    }

    fn find(&mut self, id: &NodeId, addr: SocketAddr) -> Option<&mut Candidate> {
        self.candidates
            .iter_mut()
            .find(|c| c.info.id == *id && c.info.addr == addr)
    }

    /// The node answered; `token` is its announce token, if any.
    pub fn on_response(&mut self, info: &NodeInfo, token: Option<Vec<u8>>) {
        if let Some(c) = self.find(&info.id, info.addr) {
            c.state = State::Responded;
            c.token = token;
        }
    }

    /// The query to the node passed the short timeout.
    pub fn on_slow(&mut self, info: &NodeInfo) {
        if let Some(c) = self.find(&info.id, info.addr) {
            if c.state == State::InFlight(Wait::Fresh) {
                c.state = State::InFlight(Wait::Slow);
            }
        }
    }

    /// The query to the node passed twice the short timeout: the lookup no
    /// longer waits for it.
    pub fn on_stalled(&mut self, info: &NodeInfo) {
        if let Some(c) = self.find(&info.id, info.addr) {
            if matches!(c.state, State::InFlight(_)) {
                c.state = State::InFlight(Wait::Stalled);
            }
        }
    }

    /// The query to the node failed (long timeout, error, wrong id).
    pub fn on_failed(&mut self, info: &NodeInfo) {
        if let Some(c) = self.find(&info.id, info.addr) {
            c.state = State::Failed;
        }
    }

    /// A query to the node could not be sent (our own queue was full): try
    /// it again later.
    pub fn on_not_sent(&mut self, info: &NodeInfo) {
        if let Some(c) = self.find(&info.id, info.addr) {
            if matches!(c.state, State::InFlight(_)) {
                c.state = State::New;
            }
        }
    }

    /// The nodes to query now (at most `room`), marked in flight. Ends the
    /// lookup when it has converged, or when it is exhausted and no lookup
    /// of the other family (`others_running`), which may still name nodes of
    /// this one (BEP 32), is running.
    pub fn step(&mut self, room: usize, others_running: bool) -> Vec<NodeInfo> {
        if self.done {
            return Vec::new();
        }
        let mut fast = self.routers_in_flight
            + self
                .candidates
                .iter()
                .filter(|c| c.state == State::InFlight(Wait::Fresh))
                .count();
        let mut out = Vec::new();
        // Walk the K closest candidates that have not failed or stalled; a
        // slow query gives its place to the next candidate.
        let mut limit = K;
        let mut seen = 0;
        let mut pending_in_window = false;
        for c in self.candidates.iter_mut() {
            if seen >= limit {
                break;
            }
            match c.state {
                State::Failed | State::InFlight(Wait::Stalled) => continue,
                State::Responded => {}
                State::InFlight(wait) => {
                    pending_in_window = true;
                    if wait == Wait::Slow {
                        limit += 1;
                    }
                }
                State::New => {
                    pending_in_window = true;
                    if fast < self.alpha && out.len() < room {
                        c.state = State::InFlight(Wait::Fresh);
                        fast += 1;
                        out.push(c.info);
                    }
                }
            }
            seen += 1;
        }
        let waiting = self.routers_in_flight > 0
            || self.candidates.iter().any(|c| {
                matches!(
                    c.state,
                    State::InFlight(Wait::Fresh) | State::InFlight(Wait::Slow)
                )
            });
        // Converged: the K closest live nodes all answered. Exhausted:
        // nothing left to ask and nothing to wait for.
        let converged = !pending_in_window && seen >= K;
        let exhausted = !pending_in_window && !waiting && !others_running;
        if out.is_empty() && (converged || exhausted) {
            self.done = true;
        }
        out
    }

    /// Whether the lookup is over.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The closest nodes that answered, closest first, with their tokens.
    pub fn closest_responded(&self, n: usize) -> Vec<(NodeInfo, Option<&[u8]>)> {
        self.candidates
            .iter()
            .filter(|c| c.state == State::Responded)
            .take(n)
            .map(|c| (c.info, c.token.as_deref()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(first: u8, n: u8) -> NodeInfo {
        let mut id = [0u8; 20];
        id[0] = first;
        id[19] = n;
        NodeInfo {
            id: NodeId(id),
            addr: SocketAddr::from(([127, 0, first, n], 6881)),
        }
    }

    #[test]
    fn alpha_in_flight_and_slow_queries_free_a_slot() {
        let mut l = Lookup::new(NodeId([0; 20]), false, NodeId([0xff; 20]), 3);
        for i in 1..=20 {
            l.add(node(i, i));
        }
        let first = l.step(100, false);
        assert_eq!(first.len(), 3);
        assert_eq!(first[0], node(1, 1));
        assert!(l.step(100, false).is_empty(), "alpha reached");
        l.on_slow(&first[0]);
        let next = l.step(100, false);
        assert_eq!(next, vec![node(4, 4)]);
        // A slow answer still counts.
        l.on_response(&first[0], Some(vec![1]));
        assert_eq!(l.closest_responded(1)[0].1, Some(&[1u8][..]));
        // Failed queries free their slot too.
        l.on_failed(&first[1]);
        assert_eq!(l.step(100, false).len(), 1);
    }

    #[test]
    fn converges_on_the_k_closest_and_ignores_junk() {
        let own = NodeId([0xff; 20]);
        let mut l = Lookup::new(NodeId([0; 20]), false, own, 3);
        // Our own id, port 0, another family: ignored.
        l.add(NodeInfo {
            id: own,
            addr: node(1, 1).addr,
        });
        l.add(NodeInfo {
            id: node(2, 2).id,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        });
        l.add(NodeInfo {
            id: node(3, 3).id,
            addr: "[::1]:1".parse().unwrap(),
        });
        assert!(l.step(10, false).is_empty());
        assert!(l.is_done(), "nothing to ask: exhausted");

        let mut l = Lookup::new(NodeId([0; 20]), false, own, 3);
        for i in 10..40 {
            l.add(node(i, i));
        }
        let mut rounds = 0;
        while !l.is_done() {
            for n in l.step(100, false) {
                l.on_response(&n, None);
            }
            rounds += 1;
            assert!(rounds < 20);
        }
        let got: Vec<_> = l.closest_responded(K).into_iter().map(|(n, _)| n).collect();
        let want: Vec<_> = (10..18).map(|i| node(i, i)).collect();
        assert_eq!(got, want);
        // Bounded candidate list.
        let mut l = Lookup::new(NodeId([0; 20]), false, own, 3);
        for i in 0..=255u8 {
            for j in 0..2u8 {
                l.add(node(i, j));
            }
        }
        assert_eq!(l.candidates.len(), MAX_CANDIDATES);
    }
}
