//! Hundreds of DHT nodes over a virtual network with a virtual clock: packet
//! latency, packet loss, nodes that die, a flooding address. Everything is
//! seeded, so every run is the same run.
//!
//! Run with `--nocapture` to see lookup latencies and messages per lookup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rivulet_core::InfoHash;
use rivulet_dht::krpc::{self, Body, Message, Query};
use rivulet_dht::{Config, Event, LookupDone, LookupId, Node, NodeId, NodeStatus, K};

/// One simulated host.
struct Host {
    node: Node,
    addr: SocketAddr,
    /// The IPv6 address of a dual-stack host.
    addr6: Option<SocketAddr>,
    alive: bool,
}

/// A packet on the wire.
type Packet = (Instant, u64, SocketAddr, SocketAddr, Vec<u8>);

struct Sim {
    now: Instant,
    hosts: Vec<Host>,
    by_addr: HashMap<SocketAddr, usize>,
    wire: BinaryHeap<Reverse<Packet>>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    seq: u64,
    rng: StdRng,
    loss: f64,
    latency_ms: (u64, u64),
    /// Events per host, in order.
    events: Vec<Vec<Event>>,
    /// Packets to addresses that are not hosts (test endpoints).
    taps: HashMap<SocketAddr, Vec<(SocketAddr, Vec<u8>)>>,
    packets: u64,
}

fn v4(i: usize) -> SocketAddr {
    // 127.0.x.y: loopback, exempt from BEP 42, like every test address.
    SocketAddr::from(([127, 0, (i / 250) as u8, (i % 250 + 2) as u8], 6881))
}

fn sim_config() -> Config {
    Config {
        ipv6: false,
        ..Config::default()
    }
}

impl Sim {
    fn new(seed: u64, loss: f64) -> Self {
        Sim {
            now: Instant::now(),
            hosts: Vec::new(),
            by_addr: HashMap::new(),
            wire: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            loss,
            latency_ms: (10, 80),
            events: Vec::new(),
            taps: HashMap::new(),
            packets: 0,
        }
    }

    fn add_host(&mut self, node: Node, addr: SocketAddr) -> usize {
        self.add_dual_host(node, addr, None)
    }

    fn add_dual_host(&mut self, node: Node, addr: SocketAddr, addr6: Option<SocketAddr>) -> usize {
        let i = self.hosts.len();
        self.hosts.push(Host {
            node,
            addr,
            addr6,
            alive: true,
        });
        self.by_addr.insert(addr, i);
        if let Some(a) = addr6 {
            self.by_addr.insert(a, i);
        }
        self.events.push(Vec::new());
        self.drain(i);
        i
    }

    /// Puts a packet on the wire (or loses it).
    fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        self.packets += 1;
        if self.rng.gen_bool(self.loss) {
            return;
        }
        let (lo, hi) = self.latency_ms;
        let at = self.now + Duration::from_millis(self.rng.gen_range(lo..=hi));
        self.seq += 1;
        self.wire.push(Reverse((at, self.seq, from, to, bytes)));
    }

    /// Collects what host `i` wants to send and its events, and its next wake-up.
    fn drain(&mut self, i: usize) {
        let (from4, from6) = (self.hosts[i].addr, self.hosts[i].addr6);
        while let Some((to, bytes)) = self.hosts[i].node.poll_transmit() {
            // Sent through the socket of the destination's family.
            let from = if to.is_ipv6() {
                from6.expect("an IPv6 packet from an IPv4-only host")
            } else {
                from4
            };
            assert!(bytes.len() <= krpc::MAX_PACKET_LEN);
            self.send(from, to, bytes);
        }
        while let Some(ev) = self.hosts[i].node.poll_event() {
            self.events[i].push(ev);
        }
        if let Some(t) = self.hosts[i].node.next_timeout() {
            self.timers.push(Reverse((t.max(self.now), i)));
        }
    }

    /// Runs the network until `end`.
    fn run_until(&mut self, end: Instant) {
        loop {
            let next_packet = self.wire.peek().map(|Reverse(p)| p.0);
            let next_timer = self.timers.peek().map(|Reverse(t)| t.0);
            let next = match (next_packet, next_timer) {
                (Some(p), Some(t)) => p.min(t),
                (Some(p), None) => p,
                (None, Some(t)) => t,
                (None, None) => break,
            };
            if next > end {
                break;
            }
            self.now = next;
            if next_packet == Some(next) {
                let Reverse((_, _, from, to, bytes)) = self.wire.pop().unwrap();
                match self.by_addr.get(&to) {
                    Some(&i) if self.hosts[i].alive => {
                        let now = self.now;
                        self.hosts[i].node.handle_packet(now, from, &bytes);
                        self.drain(i);
                    }
                    Some(_) => {}
                    None => self.taps.entry(to).or_default().push((from, bytes)),
                }
            } else {
                let Reverse((_, i)) = self.timers.pop().unwrap();
                let due = self.hosts[i]
                    .node
                    .next_timeout()
                    .is_some_and(|t| t <= self.now);
                if self.hosts[i].alive && due {
                    let now = self.now;
                    self.hosts[i].node.on_timeout(now);
                    self.drain(i);
                }
            }
        }
        self.now = end;
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }

    /// Runs until host `i` reports the end of lookup `id`, at most 5 virtual
    /// minutes.
    fn wait_lookup(&mut self, i: usize, id: LookupId) -> LookupDone {
        let give_up = self.now + Duration::from_secs(300);
        loop {
            let found = self.events[i].iter().find_map(|e| match e {
                Event::LookupDone(d) if d.id == id => Some(d.clone()),
                _ => None,
            });
            if let Some(d) = found {
                return d;
            }
            assert!(self.now < give_up, "lookup {id:?} of host {i} did not end");
            let step = self.now + Duration::from_millis(100);
            self.run_until(step);
        }
    }

    /// A network of `n` nodes: host 0 is the router everyone bootstraps
    /// from; the others join one after another.
    fn network(seed: u64, n: usize, loss: f64, config: Config) -> Self {
        let mut sim = Sim::new(seed, loss);
        let t0 = sim.now;
        let router = v4(0);
        sim.add_host(Node::new(config.clone(), t0, seed * 100_000), router);
        for i in 1..n {
            let now = sim.now;
            let mut node = Node::new(config.clone(), now, seed * 100_000 + i as u64);
            node.bootstrap(now, &[router]).unwrap();
            sim.add_host(node, v4(i));
            sim.run_for(Duration::from_millis(100));
        }
        // Let bootstraps finish and tables settle.
        sim.run_for(Duration::from_secs(60));
        sim
    }

    /// The `k` live nodes closest to `target` (the router excluded: it is
    /// never entered in routing tables, so no lookup can find it).
    fn true_closest(&self, target: &NodeId, k: usize, except: usize) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(i, h)| *i != 0 && *i != except && h.alive)
            .map(|(_, h)| h.node.id())
            .collect();
        ids.sort_by_cached_key(|id| id.distance(target));
        ids.truncate(k);
        ids
    }

    fn kill(&mut self, i: usize) {
        self.hosts[i].alive = false;
    }
}

struct Figures {
    latencies: Vec<Duration>,
    messages: Vec<u32>,
}

impl Figures {
    fn new() -> Self {
        Figures {
            latencies: Vec::new(),
            messages: Vec::new(),
        }
    }

    fn add(&mut self, d: &LookupDone) {
        self.latencies.push(d.elapsed);
        self.messages.push(d.queries);
    }

    fn report(&mut self, what: &str) {
        self.latencies.sort();
        self.messages.sort();
        let n = self.latencies.len();
        let mean_ms =
            self.latencies.iter().map(Duration::as_millis).sum::<u128>() / n.max(1) as u128;
        let mean_msgs = self.messages.iter().map(|m| u64::from(*m)).sum::<u64>() / n.max(1) as u64;
        println!(
            "{what}: {n} lookups, latency median {} ms, mean {mean_ms} ms, max {} ms; \
             messages per lookup median {}, mean {mean_msgs}, max {}",
            self.latencies[n / 2].as_millis(),
            self.latencies[n - 1].as_millis(),
            self.messages[n / 2],
            self.messages[n - 1],
        );
    }
}

/// Runs `count` find_node lookups of random targets from random hosts and
/// returns the mean number of true K closest nodes found, and the worst.
fn check_convergence(sim: &mut Sim, count: usize, what: &str) -> (f64, usize) {
    let mut figures = Figures::new();
    let mut total = 0;
    let mut worst = K;
    for _ in 0..count {
        let live: Vec<usize> = (1..sim.hosts.len())
            .filter(|i| sim.hosts[*i].alive)
            .collect();
        let i = *live.choose(&mut sim.rng).unwrap();
        let target = NodeId(sim.rng.gen());
        let now = sim.now;
        let id = sim.hosts[i].node.find_node(now, target).unwrap();
        sim.drain(i);
        let done = sim.wait_lookup(i, id);
        figures.add(&done);
        let truth: HashSet<NodeId> = sim.true_closest(&target, K, i).into_iter().collect();
        let found = done
            .closest
            .iter()
            .filter(|n| truth.contains(&n.id))
            .count();
        total += found;
        worst = worst.min(found);
    }
    figures.report(what);
    let mean = total as f64 / count as f64;
    println!("{what}: mean {mean:.2} of the true {K} closest found, worst {worst}");
    (mean, worst)
}

#[test]
fn lookups_converge_to_the_true_closest_nodes() {
    let mut sim = Sim::network(1, 400, 0.10, sim_config());
    let sizes: Vec<usize> = sim
        .hosts
        .iter()
        .skip(1)
        .map(|h| h.node.table(false).len())
        .collect();
    let mean_size = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    println!(
        "400 nodes, 10% loss: routing tables hold {mean_size:.1} nodes on average (min {}), {} packets so far",
        sizes.iter().min().unwrap(),
        sim.packets
    );
    assert!(mean_size > 20.0);
    assert!(
        sizes.iter().all(|s| *s >= K),
        "a node has a nearly empty table"
    );
    let (mean, worst) = check_convergence(&mut sim, 40, "find_node, 400 nodes, 10% loss");
    assert!(mean >= 7.5, "lookups miss close nodes: mean {mean}");
    assert!(worst >= 6, "a lookup found only {worst} of the {K} closest");
    // The same network without loss: no query waits for a timeout.
    sim.loss = 0.0;
    let (mean, worst) = check_convergence(&mut sim, 20, "find_node, 400 nodes, no loss");
    assert!(
        mean >= 7.9 && worst >= 7,
        "lookups miss close nodes without loss"
    );
}

#[test]
fn an_announce_is_found_from_the_far_side_of_the_id_space() {
    let mut sim = Sim::network(2, 300, 0.10, sim_config());
    let info_hash = InfoHash(sim.rng.gen());
    // The announcer, and the host farthest from it in id space as the searcher.
    let a = 17;
    let a_id = sim.hosts[a].node.id();
    let b = (1..sim.hosts.len())
        .max_by_key(|i| sim.hosts[*i].node.id().distance(&a_id))
        .unwrap();
    assert!(sim.hosts[b].node.id().common_prefix_len(&a_id) == 0);

    let now = sim.now;
    let id = sim.hosts[a]
        .node
        .announce(now, info_hash, Some(7000))
        .unwrap();
    sim.drain(a);
    let done = sim.wait_lookup(a, id);
    println!(
        "announce: {} ms, {} queries, acknowledged by {} nodes",
        done.elapsed.as_millis(),
        done.queries,
        done.announced
    );
    assert!(
        done.announced >= 5,
        "only {} nodes took the announce",
        done.announced
    );
    let stored: usize = sim.hosts.iter().map(|h| h.node.stored_peers()).sum();
    assert_eq!(stored, done.announced);

    let now = sim.now;
    let id = sim.hosts[b].node.get_peers(now, info_hash).unwrap();
    sim.drain(b);
    let done = sim.wait_lookup(b, id);
    let peers: Vec<SocketAddr> = sim.events[b]
        .iter()
        .filter_map(|e| match e {
            Event::Peers {
                id: i,
                info_hash: h,
                peers,
            } if *i == id && *h == info_hash => Some(peers.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let want = SocketAddr::new(sim.hosts[a].addr.ip(), 7000);
    println!(
        "get_peers from the far side: {} ms, {} queries, peers {peers:?}",
        done.elapsed.as_millis(),
        done.queries
    );
    assert_eq!(peers, vec![want]);
    assert_eq!(done.peers, 1);

    // An announce with implied_port stores the source port of the DHT socket.
    let now = sim.now;
    let other = InfoHash(sim.rng.gen());
    let id = sim.hosts[a].node.announce(now, other, None).unwrap();
    sim.drain(a);
    sim.wait_lookup(a, id);
    let now = sim.now;
    let id = sim.hosts[b].node.get_peers(now, other).unwrap();
    sim.drain(b);
    sim.wait_lookup(b, id);
    assert!(sim.events[b].iter().any(|e| matches!(e,
        Event::Peers { info_hash: h, peers, .. } if *h == other && peers == &vec![sim.hosts[a].addr])));
}

#[test]
fn dead_nodes_are_replaced_in_routing_tables() {
    let mut sim = Sim::network(3, 200, 0.05, sim_config());
    let n = sim.hosts.len();
    // A third of the nodes (never the router) leave without a word.
    let mut order: Vec<usize> = (1..n).collect();
    order.shuffle(&mut sim.rng);
    for &i in order.iter().take(n / 3) {
        sim.kill(i);
    }
    let dead: HashSet<SocketAddr> = sim
        .hosts
        .iter()
        .filter(|h| !h.alive)
        .map(|h| h.addr)
        .collect();
    // Share of table entries that point at dead nodes: all of them, and
    // those the table still trusts (not bad).
    let dead_share = |sim: &Sim| {
        let (mut all, mut stale, mut trusted) = (0usize, 0usize, 0usize);
        for h in sim.hosts.iter().skip(1).filter(|h| h.alive) {
            let t = h.node.table(false);
            for e in t.entries() {
                all += 1;
                if dead.contains(&e.info.addr) {
                    stale += 1;
                    trusted += usize::from(t.status(e, sim.now) != NodeStatus::Bad);
                }
            }
        }
        (stale as f64 / all as f64, trusted as f64 / all as f64, all)
    };
    let (before, _, size_before) = dead_share(&sim);
    println!(
        "after a third of the nodes died: {:.1}% of {size_before} table entries dead",
        before * 100.0
    );
    assert!(before > 0.2);

    // Life goes on: a lookup somewhere every few seconds, bucket refreshes
    // and pings of questionable nodes.
    for minute in 1..=20 {
        let end = sim.now + Duration::from_secs(60);
        while sim.now < end {
            let live: Vec<usize> = (1..n).filter(|i| sim.hosts[*i].alive).collect();
            let i = *live.choose(&mut sim.rng).unwrap();
            let now = sim.now;
            let target = NodeId(sim.rng.gen());
            let _ = sim.hosts[i].node.find_node(now, target);
            sim.drain(i);
            sim.run_for(Duration::from_secs(5));
        }
        if minute % 5 == 0 {
            let (all, trusted, size) = dead_share(&sim);
            println!(
                "{minute} min later: {:.1}% of {size} entries dead, {:.1}% dead and not known bad",
                all * 100.0,
                trusted * 100.0
            );
        }
    }
    // A dead entry can only be replaced by a live node of its bucket's range
    // that the table does not hold yet.
    let mut replaceable = 0;
    for h in sim.hosts.iter().skip(1).filter(|h| h.alive) {
        let t = h.node.table(false);
        let own = t.own_id();
        let last = t.buckets().len() - 1;
        let in_bucket = |i: usize, id: &NodeId| {
            let cpl = own.common_prefix_len(id);
            if i == last {
                cpl >= i
            } else {
                cpl == i
            }
        };
        for (i, b) in t.buckets().iter().enumerate() {
            let dead_here = b
                .nodes
                .iter()
                .filter(|e| dead.contains(&e.info.addr))
                .count();
            let spare = sim
                .hosts
                .iter()
                .skip(1)
                .filter(|o| o.alive && o.addr != h.addr)
                .filter(|o| in_bucket(i, &o.node.id()) && t.get(&o.node.id()).is_none())
                .count();
            replaceable += dead_here.min(spare);
        }
    }
    let (after, trusted, size_after) = dead_share(&sim);
    println!("dead entries that a live node could have replaced: {replaceable}");
    // Dead entries are all known bad, and the only ones left are those no
    // live node could take the place of (buckets near each node's own id
    // in a network this small): every bad node that could be replaced was.
    assert!(
        trusted < 0.01,
        "{:.1}% of entries dead and trusted",
        trusted * 100.0
    );
    assert!(
        (replaceable as f64) < size_after as f64 * 0.005,
        "{replaceable} dead entries could have been replaced"
    );
    assert!(
        after < before / 2.0,
        "{:.1}% of entries still dead",
        after * 100.0
    );
    assert!(
        size_after as f64 > size_before as f64 * 0.6,
        "tables shrank too much"
    );
    let (mean, _) = check_convergence(&mut sim, 20, "find_node after the die-off");
    assert!(mean >= 7.0);
}

fn v6(i: usize) -> SocketAddr {
    // Unique-local addresses: exempt from BEP 42 like loopback.
    SocketAddr::new(format!("fd00::{:x}", i + 2).parse().unwrap(), 6881)
}

#[test]
fn dual_stack_nodes_fill_their_ipv6_tables_through_ipv4_bep32() {
    let config = Config::default();
    let mut sim = Sim::new(6, 0.05);
    let t0 = sim.now;
    let n = 80;
    for i in 0..n {
        let now = sim.now;
        let mut node = Node::new(config.clone(), now, 600_000 + i as u64);
        // The first ten nodes know the router's two addresses, the others
        // only its IPv4 one: they learn IPv6 nodes from the `nodes6` of
        // IPv4 answers (they ask with `want` n4 and n6).
        if (1..=10).contains(&i) {
            node.bootstrap(now, &[v4(0), v6(0)]).unwrap();
        } else if i > 10 {
            node.bootstrap(now, &[v4(0)]).unwrap();
        }
        sim.add_dual_host(node, v4(i), Some(v6(i)));
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(Duration::from_secs(60));
    let v6_sizes: Vec<usize> = sim
        .hosts
        .iter()
        .skip(1)
        .map(|h| h.node.table(true).len())
        .collect();
    let v4_sizes: Vec<usize> = sim
        .hosts
        .iter()
        .skip(1)
        .map(|h| h.node.table(false).len())
        .collect();
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
    println!(
        "dual stack, {n} nodes after {} s: IPv4 tables {:.1} nodes, IPv6 tables {:.1} nodes (min {})",
        sim.now.duration_since(t0).as_secs(),
        mean(&v4_sizes),
        mean(&v6_sizes),
        v6_sizes.iter().min().unwrap()
    );
    assert!(
        v6_sizes.iter().skip(10).all(|s| *s >= K),
        "IPv6 tables stayed empty"
    );
    assert!(sim.hosts.iter().skip(1).all(|h| h
        .node
        .table(true)
        .entries()
        .all(|e| e.info.addr.is_ipv6())));

    // An announce in both families is found in both.
    let info_hash = InfoHash(sim.rng.gen());
    let (a, b) = (7, 70);
    let now = sim.now;
    let id = sim.hosts[a]
        .node
        .announce(now, info_hash, Some(7000))
        .unwrap();
    sim.drain(a);
    let done = sim.wait_lookup(a, id);
    assert!(done.announced >= 10, "announced to {}", done.announced);
    assert_eq!(done.closest.iter().filter(|n| n.addr.is_ipv6()).count(), K);
    let now = sim.now;
    let id = sim.hosts[b].node.get_peers(now, info_hash).unwrap();
    sim.drain(b);
    sim.wait_lookup(b, id);
    let mut peers: Vec<SocketAddr> = sim.events[b]
        .iter()
        .filter_map(|e| match e {
            Event::Peers { id: i, peers, .. } if *i == id => Some(peers.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    peers.sort();
    let want = vec![
        SocketAddr::new(v4(a).ip(), 7000),
        SocketAddr::new(v6(a).ip(), 7000),
    ];
    assert_eq!(peers, want);
}

fn ping_from(from_id: NodeId, tid: u32) -> Vec<u8> {
    krpc::encode(&Message {
        transaction_id: tid.to_be_bytes().to_vec(),
        version: None,
        ip: None,
        read_only: false,
        body: Body::Query(Query::Ping { id: from_id }),
    })
}

#[test]
fn a_flooding_address_is_ignored_while_others_are_answered() {
    let mut sim = Sim::network(4, 100, 0.0, sim_config());
    let victim = 5;
    let victim_addr = sim.hosts[victim].addr;
    let flooder: SocketAddr = "127.9.0.1:6881".parse().unwrap();
    let calm: SocketAddr = "127.9.0.2:6881".parse().unwrap();
    let limit = sim_config().incoming_burst_per_ip as usize;
    // 400 pings in 2 s from the flooder, one every 200 ms from a calm node.
    for k in 0..400u32 {
        sim.send(flooder, victim_addr, ping_from(NodeId([1; 20]), k));
        if k % 40 == 0 {
            sim.send(calm, victim_addr, ping_from(NodeId([2; 20]), k));
        }
        sim.run_for(Duration::from_millis(5));
    }
    sim.run_for(Duration::from_secs(1));
    // Answers only: the victim also pings the calm node, to see whether it
    // belongs in its table.
    let answered = |sim: &Sim, who: &SocketAddr| {
        sim.taps.get(who).map_or(0, |got| {
            got.iter()
                .filter(|(_, p)| matches!(krpc::decode(p).map(|m| m.body), Ok(Body::Response(_))))
                .count()
        })
    };
    println!(
        "flood: {} of 400 pings answered; calm node: {} of 10",
        answered(&sim, &flooder),
        answered(&sim, &calm)
    );
    // The burst, and what the rate refilled while it was spent (50 pings
    // in 250 ms at 5 per second).
    let flood_answers = answered(&sim, &flooder);
    assert!(
        (limit..=limit + 2).contains(&flood_answers),
        "{flood_answers}"
    );
    assert_eq!(answered(&sim, &calm), 10);
    assert_eq!(
        sim.hosts[victim].node.stats().queries_rate_limited,
        400 - flood_answers as u64
    );
    // Other nodes still get answers from the victim: a lookup through it works.
    let now = sim.now;
    let target = sim.hosts[victim].node.id();
    let id = sim.hosts[9].node.find_node(now, target).unwrap();
    sim.drain(9);
    let done = sim.wait_lookup(9, id);
    assert!(done.closest.iter().any(|n| n.addr == victim_addr));
    // The block ends after its time (5 min).
    sim.run_for(Duration::from_secs(301));
    sim.send(flooder, victim_addr, ping_from(NodeId([1; 20]), 999));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(answered(&sim, &flooder), flood_answers + 1);
}

#[test]
fn a_saved_table_round_trips_and_serves_at_once() {
    let mut sim = Sim::network(5, 150, 0.05, sim_config());
    let i = 33;
    let saved = sim.hosts[i].node.save();
    let now = sim.now;
    let restored = Node::restore(sim_config(), &saved, now, 77).unwrap();
    let entries = |n: &Node| {
        let mut v: Vec<_> = n.table(false).entries().map(|e| e.info).collect();
        v.sort();
        v
    };
    let original = &sim.hosts[i].node;
    assert_eq!(restored.id(), original.id());
    assert!(original.table(false).len() > 20);
    assert_eq!(entries(&restored), entries(original));
    assert_eq!(restored.save(), saved);
    println!(
        "saved state: {} bytes for {} nodes",
        saved.len(),
        original.table(false).len()
    );

    // The restored node replaces the old one and finds nodes without any router.
    sim.hosts[i].node = restored;
    sim.events[i].clear();
    let target = NodeId(sim.rng.gen());
    let now = sim.now;
    let id = sim.hosts[i].node.find_node(now, target).unwrap();
    sim.drain(i);
    let done = sim.wait_lookup(i, id);
    let truth: HashSet<NodeId> = sim.true_closest(&target, K, i).into_iter().collect();
    let found = done
        .closest
        .iter()
        .filter(|n| truth.contains(&n.id))
        .count();
    assert!(found >= 7, "restored node found {found} of the {K} closest");

    // Damaged saved state is an error, not a panic.
    for bad in [
        &saved[..saved.len() / 2],
        b"",
        b"de",
        b"d2:id3:abce",
        b"d2:id20:aaaaaaaaaaaaaaaaaaaa5:nodes5:abcdee",
        b"li1ee",
    ] {
        assert!(Node::restore(sim_config(), bad, now, 1).is_err());
    }
}
