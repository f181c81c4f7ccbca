//! [`Node`]: the DHT node state machine. It ties the codec, the routing
//! tables, the lookups, the tokens, the peer store and the rate limits
//! together, and talks to the outside only through method calls: packets in,
//! packets out, timers, events.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rivulet_bencode::{decode_with, Limits, OwnedValue, Value};
use rivulet_core::InfoHash;

use crate::config::Config;
use crate::error::DhtError;
use crate::id::NodeId;
use crate::krpc::{
    self, compact_nodes, error_code, parse_compact_node, Body, DecodeError, ErrorBody, Message,
    NodeInfo, Query, Response, Want, COMPACT_NODE_V4_LEN, COMPACT_NODE_V6_LEN,
};
use crate::lookup::Lookup;
use crate::ratelimit::{IpLimiter, IpLimits, TokenBucket};
use crate::store::{PeerStore, StoreParams};
use crate::table::{Inserted, RoutingTable, TableParams, K};
use crate::token::Tokens;

mod client;
mod housekeeping;
mod persist;
mod server;

/// Our `v` (client version) in every message: "RV" and version 0.1.
pub const VERSION: &[u8; 4] = b"RV\x00\x01";

/// Most packets waiting in [`Node::poll_transmit`]'s queue; more are dropped
/// (a driver that does not drain it has bigger problems).
const MAX_TRANSMIT_QUEUE: usize = 4096;
/// Most events waiting in [`Node::poll_event`]'s queue.
const MAX_EVENT_QUEUE: usize = 4096;
/// Most peers a lookup remembers to report each only once.
const MAX_PEERS_PER_LOOKUP: usize = 2000;
/// Most routers remembered.
const MAX_ROUTERS: usize = 32;
/// Most unknown nodes pinged and remembered at once (so that a node that
/// queries us often is pinged once).
const MAX_RECENT_PINGS: usize = 1024;
/// Distinct responders whose `ip` field is counted before a decision.
const IP_VOTERS: usize = 16;
/// Votes for one address that decide our external address.
const IP_VOTES_NEEDED: u32 = 5;
/// Largest saved state accepted by [`Node::restore`].
const MAX_SAVED_LEN: usize = 256 * 1024;

/// Names one lookup started through the [`Node`] API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// What a lookup was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    /// [`Node::bootstrap`]: `find_node` of our own id.
    Bootstrap,
    /// [`Node::find_node`].
    FindNode,
    /// [`Node::get_peers`].
    GetPeers,
    /// [`Node::announce`]: `get_peers`, then `announce_peer` to the closest
    /// nodes that gave a token.
    Announce,
}

/// A finished lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupDone {
    /// Which lookup.
    pub id: LookupId,
    /// What it was for.
    pub kind: LookupKind,
    /// Its target (node id or info-hash).
    pub target: NodeId,
    /// From start to end.
    pub elapsed: Duration,
    /// Queries sent (announces included).
    pub queries: u32,
    /// Answers received.
    pub responses: u32,
    /// Queries that timed out.
    pub timeouts: u32,
    /// The closest nodes that answered, closest first: up to [`K`] per
    /// address family.
    pub closest: Vec<NodeInfo>,
    /// Distinct peers found (for `get_peers` and announces).
    pub peers: usize,
    /// Nodes that acknowledged our `announce_peer`.
    pub announced: usize,
}

/// What the node tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// New peers for a `get_peers` or announce lookup (each peer reported
    /// once per lookup).
    Peers {
        /// Which lookup.
        id: LookupId,
        /// The torrent.
        info_hash: InfoHash,
        /// The peers.
        peers: Vec<SocketAddr>,
    },
    /// A lookup ended.
    LookupDone(LookupDone),
    /// Other nodes agree that our address is this one (BEP 42 `ip`). When
    /// it is a public address our id did not fit, the node took a new id
    /// (`id_changed`) and moved its tables to it.
    ExternalAddress {
        /// The address.
        ip: IpAddr,
        /// Whether the node id changed.
        id_changed: bool,
    },
}

/// Counters, always on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Packets handed to [`Node::handle_packet`].
    pub packets_in: u64,
    /// Packets that were not KRPC.
    pub malformed: u64,
    /// Queries answered (with a response or an error).
    pub queries_answered: u64,
    /// Queries ignored by the per-IP rate limit.
    pub queries_rate_limited: u64,
    /// Queries we sent.
    pub queries_sent: u64,
    /// Queries sent a second time after the short timeout.
    pub retransmits: u64,
    /// Queries not sent because our queue was full.
    pub queries_dropped: u64,
    /// Answers to our queries.
    pub responses: u64,
    /// Errors in answer to our queries.
    pub errors: u64,
    /// Queries of ours that timed out.
    pub timeouts: u64,
    /// Answers that matched no query of ours (or came from elsewhere).
    pub unexpected: u64,
    /// Answers from a node whose id was not the one we knew.
    pub id_mismatch: u64,
    /// Nodes not entered in the table because their id did not fit their
    /// address (BEP 42, when enforced).
    pub bep42_refused: u64,
    /// `announce_peer` queries refused for a bad token.
    pub bad_tokens: u64,
    /// Outgoing packets or events dropped because their queue was full.
    pub queue_overflow: u64,
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    /// A lookup's query to a node (`expect` is its id) or a router.
    Lookup { search: LookupId },
    /// An `announce_peer` at the end of an announce.
    Announce { search: LookupId },
    /// Checking on a node of the table, or a node that might enter it.
    Ping,
}

#[derive(Debug)]
struct Transaction {
    addr: SocketAddr,
    expect: Option<NodeId>,
    purpose: Purpose,
    sent: Instant,
    /// 0: waiting; 1: slow (sent again); 2: stalled (lookups stop waiting).
    stage: u8,
    /// The query, kept for its one retransmission.
    packet: Vec<u8>,
}

#[derive(Debug)]
struct Pending {
    addr: SocketAddr,
    expect: Option<NodeId>,
    query: Query,
    purpose: Purpose,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Searching,
    Announcing { outstanding: usize },
}

#[derive(Debug)]
struct Search {
    kind: LookupKind,
    target: NodeId,
    started: Instant,
    /// Internal lookups (bucket refreshes) produce no event.
    internal: bool,
    lookups: Vec<Lookup>,
    phase: Phase,
    announce_port: u16,
    implied_port: bool,
    peers_seen: BTreeSet<SocketAddr>,
    queries: u32,
    responses: u32,
    timeouts: u32,
    announced: usize,
}

/// A Mainline DHT node (BEP 5, 32, 42), sans-IO.
///
/// The node never touches a socket or a clock. Its driver:
///
/// * passes every datagram from the DHT socket(s) to
///   [`handle_packet`](Self::handle_packet) with the time and the sender;
/// * calls [`on_timeout`](Self::on_timeout) once
///   [`next_timeout`](Self::next_timeout) has passed;
/// * starts work with [`bootstrap`](Self::bootstrap),
///   [`add_node`](Self::add_node), [`find_node`](Self::find_node),
///   [`get_peers`](Self::get_peers) and [`announce`](Self::announce);
///
/// and after each of those calls sends every packet
/// [`poll_transmit`](Self::poll_transmit) returns (through the socket of the
/// address's family), handles every [`poll_event`](Self::poll_event), and
/// sleeps until the new [`next_timeout`](Self::next_timeout).
///
/// With a seed and a virtual clock, a node is deterministic, which is how the
/// simulation tests run hundreds of them.
#[derive(Debug)]
pub struct Node {
    config: Config,
    id: NodeId,
    rng: StdRng,
    /// Index 0: IPv4, 1: IPv6.
    tables: [RoutingTable; 2],
    store: PeerStore,
    tokens: Tokens,
    out_limit: TokenBucket,
    in_limit: IpLimiter,
    transactions: BTreeMap<u32, Transaction>,
    queue: VecDeque<Pending>,
    searches: BTreeMap<LookupId, Search>,
    next_lookup: u64,
    routers: BTreeSet<SocketAddr>,
    recent_pings: BTreeMap<SocketAddr, Instant>,
    transmit: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    next_tick: Instant,
    last_bootstrap: Option<Instant>,
    /// Bootstraps in a row after which a table was still small.
    bootstrap_backoff: u32,
    external_ip: Option<IpAddr>,
    ip_votes: BTreeMap<IpAddr, u32>,
    ip_voters: BTreeSet<IpAddr>,
    stats: Stats,
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) as plain IPv4.
fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

impl Node {
    /// A node with a fresh id: derived from `config.external_ip` when that is
    /// known (BEP 42), random otherwise. `seed` seeds the node's random
    /// numbers (transaction ids, token secrets, ids).
    pub fn new(config: Config, now: Instant, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let id = match config.external_ip {
            Some(ip) => NodeId::bep42(ip, &mut rng),
            None => NodeId::random(&mut rng),
        };
        Self::build(config, id, now, rng)
    }

    /// A node with the given id.
    pub fn with_id(config: Config, id: NodeId, now: Instant, seed: u64) -> Self {
        Self::build(config, id, now, StdRng::seed_from_u64(seed))
    }

    fn build(config: Config, id: NodeId, now: Instant, mut rng: StdRng) -> Self {
        let table_params = TableParams {
            good_for: config.node_good_for,
            max_failures: config.max_failures.max(1),
            replacements: config.replacement_cache,
            ping_interval: config.ping_interval,
        };
        let tokens = Tokens::new(now, config.token_rotation, &mut rng);
        Node {
            tables: [
                RoutingTable::new(id, table_params, now),
                RoutingTable::new(id, table_params, now),
            ],
            store: PeerStore::new(StoreParams {
                ttl: config.peer_ttl,
                max_per_info_hash: config.max_peers_per_info_hash,
                max_total: config.max_stored_peers,
            }),
            tokens,
            out_limit: TokenBucket::new(now, config.query_rate, config.query_burst),
            in_limit: IpLimiter::new(IpLimits {
                per_second: config.incoming_rate_per_ip,
                burst: config.incoming_burst_per_ip,
                block_for: config.block_duration,
                max_tracked: config.max_tracked_ips,
            }),
            transactions: BTreeMap::new(),
            queue: VecDeque::new(),
            searches: BTreeMap::new(),
            next_lookup: 1,
            routers: BTreeSet::new(),
            recent_pings: BTreeMap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            next_tick: now + config.tick,
            last_bootstrap: None,
            bootstrap_backoff: 0,
            external_ip: config.external_ip,
            ip_votes: BTreeMap::new(),
            ip_voters: BTreeSet::new(),
            stats: Stats::default(),
            id,
            rng,
            config,
        }
    }

    /// Our node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The IPv4 (`v6 = false`) or IPv6 routing table.
    pub fn table(&self, v6: bool) -> &RoutingTable {
        let [v4t, v6t] = &self.tables;
        if v6 {
            v6t
        } else {
            v4t
        }
    }

    fn table_mut(&mut self, v6: bool) -> &mut RoutingTable {
        let [v4t, v6t] = &mut self.tables;
        if v6 {
            v6t
        } else {
            v4t
        }
    }

    /// Announced peers held for other nodes.
    pub fn stored_peers(&self) -> usize {
        self.store.len()
    }

    /// Lookups running (internal bucket refreshes included).
    pub fn running_lookups(&self) -> usize {
        self.searches.len()
    }

    /// Our external address, once known (from the config or from votes).
    pub fn external_ip(&self) -> Option<IpAddr> {
        self.external_ip
    }

    fn family_enabled(&self, v6: bool) -> bool {
        if v6 {
            self.config.ipv6
        } else {
            self.config.ipv4
        }
    }

    // ----- API: starting work -----

    /// Pings a node (a saved one, or one a peer named in a BEP 5 `PORT`
    /// message); it enters the routing table if it answers.
    pub fn add_node(&mut self, now: Instant, addr: SocketAddr) {
        let addr = normalize(addr);
        if self.family_enabled(addr.is_ipv6()) && addr.port() != 0 {
            self.enqueue(addr, None, self.ping_query(), Purpose::Ping);
        }
        self.flush(now);
    }

    /// Looks up our own id through the routing table and `routers`, which
    /// fills the table. Routers are remembered (for later re-bootstraps when
    /// the table runs empty) but never entered in the table.
    pub fn bootstrap(
        &mut self,
        now: Instant,
        routers: &[SocketAddr],
    ) -> Result<LookupId, DhtError> {
        for r in routers {
            if self.routers.len() < MAX_ROUTERS {
                self.routers.insert(normalize(*r));
            }
        }
        self.last_bootstrap = Some(now);
        let target = self.id;
        self.start(now, LookupKind::Bootstrap, target, false, 0, false)
    }

    /// Finds the nodes closest to `target`.
    pub fn find_node(&mut self, now: Instant, target: NodeId) -> Result<LookupId, DhtError> {
        self.start(now, LookupKind::FindNode, target, false, 0, false)
    }

    /// Finds peers of `info_hash`: [`Event::Peers`] as they arrive, then
    /// [`Event::LookupDone`].
    pub fn get_peers(&mut self, now: Instant, info_hash: InfoHash) -> Result<LookupId, DhtError> {
        self.start(now, LookupKind::GetPeers, info_hash.into(), false, 0, false)
    }

    /// Like [`get_peers`](Self::get_peers), then announces us as a peer of
    /// `info_hash` to the closest nodes that gave a token: on `port`, or with
    /// `implied_port` (the DHT socket's source port) when `port` is `None`.
    /// Re-announcing (every 15 to 30 minutes) is up to the caller.
    pub fn announce(
        &mut self,
        now: Instant,
        info_hash: InfoHash,
        port: Option<u16>,
    ) -> Result<LookupId, DhtError> {
        let (p, implied) = match port {
            Some(p) => (p, false),
            None => (self.config.port, true),
        };
        self.start(
            now,
            LookupKind::Announce,
            info_hash.into(),
            false,
            p,
            implied,
        )
    }

    fn start(
        &mut self,
        now: Instant,
        kind: LookupKind,
        target: NodeId,
        internal: bool,
        announce_port: u16,
        implied_port: bool,
    ) -> Result<LookupId, DhtError> {
        if !self.config.ipv4 && !self.config.ipv6 {
            return Err(DhtError::NoFamily);
        }
        if self.searches.len() >= self.config.max_lookups {
            return Err(DhtError::TooManyLookups {
                limit: self.config.max_lookups,
            });
        }
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        let mut search = Search {
            kind,
            target,
            started: now,
            internal,
            lookups: Vec::new(),
            phase: Phase::Searching,
            announce_port,
            implied_port,
            peers_seen: BTreeSet::new(),
            queries: 0,
            responses: 0,
            timeouts: 0,
            announced: 0,
        };
        let routers: Vec<SocketAddr> = self.routers.iter().copied().collect();
        for v6 in [false, true] {
            if !self.family_enabled(v6) {
                continue;
            }
            let mut l = Lookup::new(target, v6, self.id, self.config.alpha);
            let seeds = self.table(v6).closest(&target, K * 2, now);
            let few = seeds.len() < K;
            for n in seeds {
                l.add(n);
            }
            // Routers help when the table cannot: at bootstrap, or when it
            // is nearly empty.
            if kind == LookupKind::Bootstrap || few {
                for r in routers.iter().filter(|r| r.is_ipv6() == v6) {
                    if self.queue.len() < self.config.max_queued_queries {
                        let q = self.lookup_query(kind, target);
                        self.enqueue(*r, None, q, Purpose::Lookup { search: id });
                        l.router_sent();
                        search.queries += 1;
                    }
                }
            }
            search.lookups.push(l);
        }
        // Peers announced to us count too: in a small DHT the closest node
        // to an info-hash may be ourselves, and nobody else knows them.
        if matches!(kind, LookupKind::GetPeers | LookupKind::Announce) {
            let mut local = Vec::new();
            for v6 in [false, true] {
                for p in self
                    .store
                    .get(now, &target, v6, MAX_PEERS_PER_LOOKUP, &mut self.rng)
                {
                    if search.peers_seen.insert(p) {
                        local.push(p);
                    }
                }
            }
            if !local.is_empty() {
                self.push_event(Event::Peers {
                    id,
                    info_hash: InfoHash(target.0),
                    peers: local,
                });
            }
        }
        self.searches.insert(id, search);
        self.drive(now);
        self.flush(now);
        Ok(id)
    }

    // ----- API: driving -----

    /// The next packet to send, if any.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmit.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`on_timeout`](Self::on_timeout) should be called next.
    pub fn next_timeout(&self) -> Option<Instant> {
        let mut t = self.next_tick;
        for tx in self.transactions.values() {
            t = t.min(self.tx_deadline(tx));
        }
        if !self.queue.is_empty() {
            t = t.min(self.out_limit.next_token());
        }
        Some(t)
    }

    /// Lets time pass: timeouts of queries, queued queries the rate limit now
    /// allows, and housekeeping (bucket refreshes, pings of questionable
    /// nodes, expiry of stored peers).
    pub fn on_timeout(&mut self, now: Instant) {
        let mut dead = Vec::new();
        let mut changes = Vec::new();
        let (slow_after, timeout) = (self.config.query_slow_after, self.config.query_timeout);
        for (tid, tx) in self.transactions.iter_mut() {
            let age = now.saturating_duration_since(tx.sent);
            if age >= timeout {
                dead.push(*tid);
                continue;
            }
            if tx.stage == 0 && age >= slow_after {
                tx.stage = 1;
                changes.push((*tid, 1));
            }
            if tx.stage == 1 && age >= slow_after * 2 {
                tx.stage = 2;
                changes.push((*tid, 2));
            }
        }
        for (tid, stage) in changes {
            let Some(tx) = self.transactions.get_mut(&tid) else {
                continue;
            };
            if stage == 1 {
                // One retransmission: on a lossy path it saves the query at
                // the cost of a duplicate answer now and then.
                let packet = std::mem::take(&mut tx.packet);
                let addr = tx.addr;
                if !packet.is_empty() && self.out_limit.try_take(now) {
                    self.stats.retransmits += 1;
                    self.send(addr, packet);
                }
            }
            let Some(tx) = self.transactions.get(&tid) else {
                continue;
            };
            if let (Purpose::Lookup { search }, Some(id)) = (tx.purpose, tx.expect) {
                let info = NodeInfo { id, addr: tx.addr };
                if let Some(s) = self.searches.get_mut(&search) {
                    for l in &mut s.lookups {
                        if stage == 1 {
                            l.on_slow(&info);
                        } else {
                            l.on_stalled(&info);
                        }
                    }
                }
            }
        }
        for tid in dead {
            if let Some(tx) = self.transactions.remove(&tid) {
                self.stats.timeouts += 1;
                self.failed(now, tx);
            }
        }
        if now >= self.next_tick {
            self.next_tick = now + self.config.tick;
            self.tick(now);
        }
        self.drive(now);
        self.flush(now);
    }

    /// Handles one datagram from `from`.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, packet: &[u8]) {
        self.stats.packets_in += 1;
        let from = normalize(from);
        if !self.family_enabled(from.is_ipv6()) || from.port() == 0 {
            return;
        }
        match krpc::decode(packet) {
            Ok(m) => match m.body {
                Body::Query(ref q) => self.handle_query(now, from, &m, q),
                Body::Response(_) | Body::Error(_) => self.handle_reply(now, from, m),
            },
            Err(DecodeError::Invalid {
                transaction_id: Some(tid),
                query: true,
                ..
            }) => {
                self.stats.malformed += 1;
                if !self.config.read_only && self.in_limit.allow(now, from.ip()) {
                    let e = ErrorBody {
                        code: error_code::PROTOCOL,
                        message: b"invalid arguments".to_vec(),
                    };
                    self.reply(from, tid, Body::Error(e));
                }
            }
            Err(_) => self.stats.malformed += 1,
        }
        self.drive(now);
        self.flush(now);
    }
}
