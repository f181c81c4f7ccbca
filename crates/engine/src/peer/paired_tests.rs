//! Peer cores paired in memory, with a virtual clock: no socket, no sleep.
//!
//! A [`Node`] is a torrent's real shared state (`Shared`: picker, choker,
//! verification, smart ban) over in-memory storage. A [`Net`] holds
//! connections between nodes; each side of a connection is a [`PeerState`]
//! with its `PeerLink`, exactly as the tokio driver would run it, or a
//! scripted peer whose messages the test writes by hand. Bytes move between
//! the sides through pipes that may be rate-limited, and time moves only
//! when the test advances it (to the cores' next wake-up, or by a step).
//! Piece verification still runs on tokio's blocking pool; the net waits for
//! it ([`Shared::settled`]) before it calls itself quiet.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rivulet_core::PeerId;
use rivulet_testkit::fixture::{Fixture, BLOCK};
use rivulet_wire::{BlockRequest, Limits, Message, MessageDecoder};
use tokio::sync::mpsc;

use super::{Flow, PeerError, PeerParams, PeerState};
use crate::storage::{MemoryStorage, Storage};
use crate::torrent::{PeerCommand, PeerLink, Shared, TorrentConfig};

/// A torrent on one (virtual) host.
struct Node {
    shared: Arc<Shared>,
    storage: Arc<MemoryStorage>,
    ip: IpAddr,
    id: PeerId,
}

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

impl Node {
    /// A node holding `data` (the fixture's, or a corrupted copy), with the
    /// pieces `have` marks as verified.
    fn with(fx: &Fixture, n: u8, data: Vec<u8>, have: &[bool], config: TorrentConfig) -> Node {
        let storage = Arc::new(MemoryStorage::with_data(u64::from(fx.piece_length), data));
        let shared = Shared::new(
            Arc::new(fx.metainfo.info.clone()),
            fx.info_hash(),
            config,
            Arc::clone(&storage) as Arc<dyn Storage>,
            have,
        );
        let id = shared.config.peer_id;
        Node {
            shared,
            storage,
            ip: ip(n),
            id,
        }
    }

    fn seeder(fx: &Fixture, n: u8) -> Node {
        Node::with(
            fx,
            n,
            fx.data.clone(),
            &vec![true; fx.num_pieces()],
            TorrentConfig::default(),
        )
    }

    fn leecher(fx: &Fixture, n: u8) -> Node {
        Node::leecher_with(fx, n, TorrentConfig::default())
    }

    /// A leecher with exactly 16 pieces in progress at most (none added
    /// for small pieces): with the fixture's pieces of two blocks, its 32
    /// first requests to a peer are every block it may ask for, so what it
    /// asks next shows what it does with those.
    fn capped_leecher(fx: &Fixture, n: u8) -> Node {
        let config = TorrentConfig {
            max_pieces_in_progress: 16,
            min_bytes_in_progress: 0,
            ..TorrentConfig::default()
        };
        Node::leecher_with(fx, n, config)
    }

    fn leecher_with(fx: &Fixture, n: u8, config: TorrentConfig) -> Node {
        Node::with(
            fx,
            n,
            vec![0; fx.data.len()],
            &vec![false; fx.num_pieces()],
            config,
        )
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, 6881)
    }

    fn is_complete(&self) -> bool {
        self.shared.is_complete()
    }

    fn stat(&self, f: impl Fn(&crate::stats::Stats) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(&self.shared.stats).load(Ordering::Relaxed)
    }
}

/// One side of a connection run by a peer core, as the driver runs it.
struct End {
    core: PeerState,
    link: Option<PeerLink>,
    commands: mpsc::UnboundedReceiver<PeerCommand>,
    storage: Arc<MemoryStorage>,
    /// Bytes received, not yet a whole message.
    inbox: BytesMut,
}

/// A peer the test plays by hand: what it received, decoded.
struct Script {
    decoder: MessageDecoder,
    inbox: BytesMut,
    got: Vec<Message>,
}

enum Side {
    Core(Box<End>),
    Script(Script),
}

/// Bytes on their way from one side to the other.
#[derive(Default)]
struct Pipe {
    queue: BytesMut,
    /// Bytes per second; `None`: everything arrives at once.
    rate: Option<u64>,
    credit: u64,
}

/// A connection between two sides, and how it ended (per side).
struct Conn {
    sides: [Side; 2],
    pipes: [Pipe; 2],
    /// Every message each side sent, decoded.
    sent: [Vec<Message>; 2],
    decoders: [MessageDecoder; 2],
    ended: Option<[Option<Result<(), String>>; 2]>,
}

impl Conn {
    fn core(&mut self, side: usize) -> &mut End {
        match &mut self.sides[side] {
            Side::Core(e) => e,
            Side::Script(_) => panic!("side {side} is scripted"),
        }
    }

    fn script(&mut self, side: usize) -> &mut Script {
        match &mut self.sides[side] {
            Side::Script(s) => s,
            Side::Core(_) => panic!("side {side} is a core"),
        }
    }

    /// Ends the connection: each core side leaves its torrent, as the driver
    /// does; `why` is the result of the side that ended it.
    fn close(&mut self, side: usize, why: Result<(), PeerError>) {
        if self.ended.is_some() {
            return;
        }
        let mut ended = [None, None];
        ended[side] = Some(why.map_err(|e| e.to_string()));
        ended[1 - side] = Some(Ok(()));
        for s in &mut self.sides {
            if let Side::Core(e) = s {
                if let Some(link) = e.link.take() {
                    link.unregister(e.core.peer_pieces(), e.core.is_seed());
                }
            }
        }
        self.ended = Some(ended);
    }

    fn is_open(&self) -> bool {
        self.ended.is_none()
    }

    /// How side `side` ended (`Ok` also when the other side ended it).
    fn result(&self, side: usize) -> Option<Result<(), String>> {
        self.ended.as_ref().and_then(|e| e[side].clone())
    }
}

/// Connections in memory and the virtual clock.
struct Net {
    now: Instant,
    conns: Vec<Conn>,
}

/// The parameters of a connection to a node's torrent.
fn params(node: &Node, remote: IpAddr, fast: bool) -> PeerParams {
    PeerParams {
        ip: remote,
        info_hash: *node.shared.info_hash.as_bytes(),
        piece_count: Some(node.shared.info.num_pieces()),
        fast,
        extended: true,
        dht_port: None,
        request_timeout: node.shared.config.request_timeout,
    }
}

impl Net {
    fn new() -> Net {
        Net {
            now: Instant::now(),
            conns: Vec::new(),
        }
    }

    fn end(&self, node: &Node, remote: &Node, incoming: bool, p: PeerParams) -> Side {
        let (mut link, commands) = PeerLink::register(
            &node.shared,
            remote.addr(),
            remote.id,
            incoming,
            false,
            false,
        )
        .unwrap();
        let mut core = PeerState::new(p, self.now);
        core.start(&mut link);
        Side::Core(Box::new(End {
            core,
            link: Some(link),
            commands,
            storage: Arc::clone(&node.storage),
            inbox: BytesMut::new(),
        }))
    }

    /// `a` connects to `b`; both run cores. Returns the connection's index
    /// (side 0 is `a`).
    fn connect(&mut self, a: &Node, b: &Node, fast: bool) -> usize {
        let sa = self.end(a, b, false, params(a, b.ip, fast));
        let sb = self.end(b, a, true, params(b, a.ip, fast));
        self.add([sa, sb])
    }

    /// A scripted peer (side 1) at `remote` connects to `node` (side 0).
    fn connect_script(&mut self, node: &Node, remote: &Node, fast: bool) -> usize {
        let s = self.end(node, remote, true, params(node, remote.ip, fast));
        let script = Side::Script(Script {
            decoder: MessageDecoder::with_limits(Limits::default()),
            inbox: BytesMut::new(),
            got: Vec::new(),
        });
        self.add([s, script])
    }

    fn add(&mut self, sides: [Side; 2]) -> usize {
        self.conns.push(Conn {
            sides,
            pipes: [Pipe::default(), Pipe::default()],
            sent: [Vec::new(), Vec::new()],
            decoders: [
                MessageDecoder::with_limits(Limits::default()),
                MessageDecoder::with_limits(Limits::default()),
            ],
            ended: None,
        });
        self.conns.len() - 1
    }

    /// Connects `a` to `b` with parameters of the test's choosing.
    fn connect_with(&mut self, a: &Node, b: &Node, pa: PeerParams, pb: PeerParams) -> usize {
        let sa = self.end(a, b, false, pa);
        let sb = self.end(b, a, true, pb);
        self.add([sa, sb])
    }

    /// The torrent of side `side` of connection `c` sends it `cmd`.
    fn command(&mut self, c: usize, side: usize, cmd: PeerCommand) {
        let conn = &mut self.conns[c];
        let e = conn.core(side);
        let link = e.link.as_mut().expect("open");
        match e.core.command(cmd, link) {
            Ok(Flow::Continue) => {}
            Ok(Flow::Close) => conn.close(side, Ok(())),
            Err(err) => conn.close(side, Err(err)),
        }
    }

    /// What the scripted side of connection `c` received.
    fn got(&mut self, c: usize) -> Vec<Message> {
        self.conns[c].script(1).got.clone()
    }

    /// The scripted side of connection `c` sends `msg`.
    fn send(&mut self, c: usize, msg: Message) {
        let conn = &mut self.conns[c];
        let side = match conn.sides {
            [_, Side::Script(_)] => 1,
            _ => 0,
        };
        msg.encode(&mut conn.pipes[side].queue);
        conn.sent[side].push(msg);
    }

    /// One pass over every connection: commands, pipelines, serving, and
    /// bytes moved as far as the pipes allow. Returns whether anything
    /// happened.
    fn pump(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for conn in &mut self.conns {
            if !conn.is_open() {
                continue;
            }
            for i in 0..2 {
                if let Side::Core(e) = &mut conn.sides[i] {
                    let Some(link) = e.link.as_mut() else {
                        continue;
                    };
                    let mut close = None;
                    while let Ok(cmd) = e.commands.try_recv() {
                        moved = true;
                        match e.core.command(cmd, link) {
                            Ok(Flow::Continue) => {}
                            Ok(Flow::Close) => close = Some(Ok(())),
                            Err(err) => close = Some(Err(err)),
                        }
                        if close.is_some() {
                            break;
                        }
                    }
                    if let Some(why) = close {
                        conn.close(i, why);
                        break;
                    }
                    e.core.fill_pipeline(now, link);
                    // Reads are instant here: from the node's storage.
                    while let Some(b) = e.core.next_read() {
                        let mut buf = vec![0; b.len as usize];
                        e.storage.read(b.piece, b.begin, &mut buf).unwrap();
                        e.core.block_read(b, &Bytes::from(buf), link);
                    }
                    let out = e.core.take_transmit(now);
                    if !out.is_empty() {
                        let mut copy = BytesMut::from(&out[..]);
                        while let Ok(Some(m)) = conn.decoders[i].decode(&mut copy) {
                            conn.sent[i].push(m);
                        }
                        conn.pipes[i].queue.extend_from_slice(&out);
                    }
                }
                // Deliver what the pipe lets through to the other side.
                let pipe = &mut conn.pipes[i];
                let n = match pipe.rate {
                    None => pipe.queue.len(),
                    Some(_) => pipe.queue.len().min(pipe.credit as usize),
                };
                if n == 0 {
                    continue;
                }
                moved = true;
                if pipe.rate.is_some() {
                    pipe.credit -= n as u64;
                }
                let bytes = pipe.queue.split_to(n);
                match &mut conn.sides[1 - i] {
                    Side::Core(e) => {
                        let Some(link) = e.link.as_mut() else {
                            continue;
                        };
                        // Partial messages wait in the inbox, as in the
                        // driver's read buffer.
                        e.inbox.extend_from_slice(&bytes);
                        if let Err(err) = e.core.receive(&mut e.inbox, now, link) {
                            conn.close(1 - i, Err(err));
                            break;
                        }
                    }
                    Side::Script(s) => {
                        s.inbox.extend_from_slice(&bytes);
                        while let Ok(Some(m)) = s.decoder.decode(&mut s.inbox) {
                            s.got.push(m);
                        }
                    }
                }
            }
        }
        moved
    }

    /// Runs until nothing moves and no piece is being verified.
    async fn settle(&mut self, nodes: &[&Node]) {
        for _ in 0..100_000 {
            let moved = self.pump();
            let mut verified = false;
            for n in nodes {
                verified |= n.shared.settled().await;
            }
            if !moved && !verified {
                return;
            }
        }
        panic!("the net never settles");
    }

    /// Moves the clock by `dt`: pipes earn their rate's worth, cores whose
    /// wake-up is due run their timers, then everything settles.
    async fn advance(&mut self, dt: Duration, nodes: &[&Node]) {
        self.now += dt;
        let now = self.now;
        for conn in &mut self.conns {
            for pipe in &mut conn.pipes {
                if let Some(rate) = pipe.rate {
                    pipe.credit += (rate as f64 * dt.as_secs_f64()) as u64;
                }
            }
            if !conn.is_open() {
                continue;
            }
            for i in 0..2 {
                if let Side::Core(e) = &mut conn.sides[i] {
                    if let Some(link) = e.link.as_mut() {
                        if now >= e.core.next_timeout() {
                            if let Err(err) = e.core.on_timeout(now, link) {
                                conn.close(i, Err(err));
                                break;
                            }
                        }
                    }
                }
            }
        }
        self.settle(nodes).await;
    }

    /// Advances to the earliest wake-up of any core.
    async fn next(&mut self, nodes: &[&Node]) {
        let wake = self
            .conns
            .iter()
            .filter(|c| c.is_open())
            .flat_map(|c| c.sides.iter())
            .filter_map(|s| match s {
                Side::Core(e) => Some(e.core.next_timeout()),
                Side::Script(_) => None,
            })
            .min()
            .expect("no core to wake");
        let dt = wake.saturating_duration_since(self.now);
        self.advance(dt, nodes).await;
    }
}

fn fixture() -> Arc<Fixture> {
    Fixture::single(7)
}

fn requests(msgs: &[Message]) -> Vec<BlockRequest> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Request(r) => Some(*r),
            _ => None,
        })
        .collect()
}

fn count(msgs: &[Message], pred: impl Fn(&Message) -> bool) -> usize {
    msgs.iter().filter(|m| pred(m)).count()
}

// ---------------------------------------------------------------------------

/// The plain case: a leecher gets every piece from a seeder, verified,
/// in no virtual time at all.
#[tokio::test]
async fn a_leecher_downloads_everything_from_a_seeder() {
    let fx = fixture();
    let (leecher, seeder) = (Node::leecher(&fx, 2), Node::seeder(&fx, 3));
    let mut net = Net::new();
    let c = net.connect(&leecher, &seeder, true);
    net.settle(&[&leecher, &seeder]).await;
    assert!(leecher.is_complete());
    assert_eq!(leecher.storage.contents(), fx.data);
    assert_eq!(leecher.stat(|s| &s.downloaded), fx.data.len() as u64);
    assert_eq!(seeder.stat(|s| &s.uploaded), fx.data.len() as u64);
    assert_eq!(leecher.stat(|s| &s.wasted), 0);
    // Each block asked for once; then, both seeds, the connection closed
    // cleanly.
    let asked = requests(&net.conns[c].sent[0]);
    assert_eq!(asked.len(), fx.all_blocks().len());
    assert_eq!(net.conns[c].result(0), Some(Ok(())));
    assert_eq!(net.conns[c].result(1), Some(Ok(())));
}

/// Choking (BEP 3): a choke voids the leecher's requests, which go back to
/// the pool for other peers; nothing is asked while choked; an unchoke
/// starts the pipeline again.
#[tokio::test]
async fn a_choke_voids_requests_until_the_unchoke() {
    let fx = fixture();
    let (leecher, seeder, other) = (
        Node::leecher(&fx, 2),
        Node::seeder(&fx, 3),
        Node::seeder(&fx, 4),
    );
    let nodes = [&leecher, &seeder, &other];
    let mut net = Net::new();
    let c = net.connect(&leecher, &seeder, false);
    // Slow enough that the download is under way for a while.
    net.conns[c].pipes[1].rate = Some(64 * 1024);
    net.advance(Duration::from_millis(100), &nodes).await;
    // A free upload slot: unchoked at once, and the pipeline is full.
    assert!(!net.conns[c].core(1).core.am_choking());
    assert!(net.conns[c].core(0).core.outstanding().count() >= 4);
    net.advance(Duration::from_millis(500), &nodes).await;
    assert!(!leecher.is_complete());

    net.command(c, 1, PeerCommand::Choke);
    // The choke waits behind the blocks already on their way.
    for _ in 0..100 {
        if net.conns[c].core(0).core.peer_choking() {
            break;
        }
        net.advance(Duration::from_millis(100), &nodes).await;
    }
    assert!(net.conns[c].core(0).core.peer_choking());
    assert_eq!(net.conns[c].core(0).core.outstanding().count(), 0);
    let asked_before = requests(&net.conns[c].sent[0]).len();
    net.advance(Duration::from_secs(3), &nodes).await;
    assert_eq!(
        requests(&net.conns[c].sent[0]).len(),
        asked_before,
        "asked while choked"
    );
    assert!(!leecher.is_complete());

    // The voided requests are free for another peer, which finishes the job.
    let d = net.connect(&leecher, &other, false);
    net.settle(&nodes).await;
    assert!(leecher.is_complete());
    assert_eq!(leecher.storage.contents(), fx.data);
    assert!(!requests(&net.conns[d].sent[0]).is_empty());
}

/// An unchoke after a choke starts the requests again.
#[tokio::test]
async fn an_unchoke_restarts_the_pipeline() {
    let fx = fixture();
    let (leecher, seeder) = (Node::leecher(&fx, 2), Node::seeder(&fx, 3));
    let nodes = [&leecher, &seeder];
    let mut net = Net::new();
    let c = net.connect(&leecher, &seeder, true);
    net.conns[c].pipes[1].rate = Some(64 * 1024);
    net.advance(Duration::from_millis(100), &nodes).await;
    net.command(c, 1, PeerCommand::Choke);
    while !net.conns[c].core(0).core.peer_choking() {
        net.advance(Duration::from_millis(100), &nodes).await;
    }
    let asked = requests(&net.conns[c].sent[0]).len();
    net.command(c, 1, PeerCommand::Unchoke);
    net.conns[c].pipes[1].rate = None;
    net.settle(&nodes).await;
    assert!(requests(&net.conns[c].sent[0]).len() > asked);
    assert!(leecher.is_complete());
    assert_eq!(leecher.storage.contents(), fx.data);
}

/// The request pipeline holds about two seconds of the peer's rate: four
/// times the rate, four times the requests in flight.
#[tokio::test]
async fn the_pipeline_follows_the_peers_rate() {
    let fx = Fixture::sized(9, 256 * 1024, 8 * 1024 * 1024);
    let mut targets = Vec::new();
    for rate in [128 * 1024, 512 * 1024] {
        let (leecher, seeder) = (Node::leecher(&fx, 2), Node::seeder(&fx, 3));
        let nodes = [&leecher, &seeder];
        let mut net = Net::new();
        let c = net.connect(&leecher, &seeder, true);
        net.conns[c].pipes[1].rate = Some(rate);
        net.settle(&nodes).await;
        // Before the rate is known: 32 requests.
        assert_eq!(net.conns[c].core(0).core.queue_target(), 32);
        for _ in 0..60 {
            net.advance(Duration::from_millis(100), &nodes).await;
        }
        let core = &net.conns[c].core(0).core;
        let expected = (2 * rate / u64::from(BLOCK)) as usize;
        let target = core.queue_target();
        assert!(
            target * 4 >= expected * 3 && target * 4 <= expected * 5,
            "rate {rate}: target {target}, expected about {expected}"
        );
        assert_eq!(core.outstanding().count(), target);
        targets.push(target);
    }
    assert!(targets[1] >= 3 * targets[0], "{targets:?}");
}

/// Serving side: requests the seeder cannot take are rejected (fast
/// extension), a cancelled request is answered with a reject instead of the
/// block, and requests outside a piece close the connection.
#[tokio::test]
async fn rejects_and_cancels_when_serving() {
    let fx = fixture();
    let mut have = vec![false; fx.num_pieces()];
    have[..10].fill(true);
    let seeder = Node::with(&fx, 3, fx.data.clone(), &have, TorrentConfig::default());
    let peer = Node::leecher(&fx, 5);
    let nodes = [&seeder];
    let mut net = Net::new();
    let c = net.connect_script(&seeder, &peer, true);
    let r = |piece, offset| BlockRequest {
        piece,
        offset,
        length: BLOCK,
    };
    net.send(c, Message::HaveNone);
    net.send(c, Message::Interested);
    net.settle(&nodes).await;
    assert!(net.got(c).contains(&Message::Unchoke));
    // A piece it lacks: rejected. A piece it has: served.
    net.send(c, Message::Request(r(15, 0)));
    net.send(c, Message::Request(r(1, 0)));
    // Asked and cancelled at once: a reject, not the block.
    net.send(c, Message::Request(r(2, 0)));
    net.send(c, Message::Cancel(r(2, 0)));
    net.settle(&nodes).await;
    let got = net.got(c);
    assert!(got.contains(&Message::RejectRequest(r(15, 0))));
    assert!(got.contains(&Message::RejectRequest(r(2, 0))));
    let pieces: Vec<(u32, u32)> = got
        .iter()
        .filter_map(|m| match m {
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                assert_eq!(&data[..], fx.block(&r(*piece, *offset)).unwrap());
                Some((*piece, *offset))
            }
            _ => None,
        })
        .collect();
    assert_eq!(pieces, vec![(1, 0)]);
    // A block that runs past its piece: dropped as misbehaving.
    net.send(
        c,
        Message::Request(BlockRequest {
            piece: 1,
            offset: 30 * 1024,
            length: BLOCK,
        }),
    );
    net.settle(&nodes).await;
    let why = net.conns[c].result(0).unwrap().unwrap_err();
    assert!(why.contains("outside its piece"), "{why}");
}

/// Downloading side: a rejected request leaves the pipeline and is not
/// asked of the same peer again at once; a reject for something never asked
/// is ignored.
#[tokio::test]
async fn a_rejected_request_is_not_asked_again_at_once() {
    let fx = fixture();
    let (leecher, peer) = (Node::capped_leecher(&fx, 2), Node::seeder(&fx, 5));
    let nodes = [&leecher];
    let mut net = Net::new();
    let c = net.connect_script(&leecher, &peer, true);
    net.send(c, Message::HaveAll);
    net.send(c, Message::Unchoke);
    net.settle(&nodes).await;
    let asked = requests(&net.got(c));
    assert_eq!(asked.len(), 32);
    let first = asked[0];
    net.send(c, Message::RejectRequest(first));
    net.send(
        c,
        Message::RejectRequest(BlockRequest {
            piece: 0,
            offset: 0,
            length: 1,
        }),
    );
    net.settle(&nodes).await;
    let core = &net.conns[c].core(0).core;
    assert!(!core
        .outstanding()
        .any(|b| b.piece == first.piece && b.begin == first.offset));
    let again = requests(&net.got(c));
    assert_eq!(
        again.iter().filter(|r| **r == first).count(),
        1,
        "asked again"
    );
    // A second later, with nobody else to ask, it is asked again.
    net.advance(Duration::from_secs(1), &nodes).await;
    let later = requests(&net.got(c));
    assert_eq!(later.iter().filter(|r| **r == first).count(), 2);
    assert!(net.conns[c].is_open());
}

/// End-game: the last blocks are asked of every peer, and whoever is late
/// gets a cancel.
#[tokio::test]
async fn end_game_cancels_at_the_slower_peer() {
    let fx = fixture();
    let (leecher, fast, slow) = (
        Node::leecher(&fx, 2),
        Node::seeder(&fx, 3),
        Node::seeder(&fx, 4),
    );
    let nodes = [&leecher, &fast, &slow];
    let mut net = Net::new();
    let s = net.connect(&leecher, &slow, true);
    net.conns[s].pipes[1].rate = Some(16 * 1024);
    let f = net.connect(&leecher, &fast, true);
    net.conns[f].pipes[1].rate = Some(256 * 1024);
    for _ in 0..100 {
        if leecher.is_complete() {
            break;
        }
        net.advance(Duration::from_millis(100), &nodes).await;
    }
    assert!(leecher.is_complete());
    assert_eq!(leecher.storage.contents(), fx.data);
    let cancels = count(&net.conns[s].sent[0], |m| matches!(m, Message::Cancel(_)));
    assert!(cancels > 0, "no cancel to the slow peer");
    // Every cancel names a block that was asked of it.
    let asked = requests(&net.conns[s].sent[0]);
    for m in &net.conns[s].sent[0] {
        if let Message::Cancel(r) = m {
            assert!(asked.contains(r));
        }
    }
}

/// BEP 6: a peer with no pieces gets a set of allowed-fast pieces and may
/// fetch exactly those while it stays choked.
#[tokio::test]
async fn allowed_fast_pieces_are_served_while_choked() {
    let fx = fixture();
    let config = TorrentConfig {
        upload_slots: 0,
        ..TorrentConfig::default()
    };
    let seeder = Node::with(
        &fx,
        3,
        fx.data.clone(),
        &vec![true; fx.num_pieces()],
        config,
    );
    let leecher = Node::leecher(&fx, 2);
    let nodes = [&leecher, &seeder];
    let mut net = Net::new();
    let c = net.connect(&leecher, &seeder, true);
    net.settle(&nodes).await;
    let offered: Vec<u32> = net.conns[c].sent[1]
        .iter()
        .filter_map(|m| match m {
            Message::AllowedFast { piece } => Some(*piece),
            _ => None,
        })
        .collect();
    assert_eq!(offered.len(), 10);
    assert_eq!(
        count(&net.conns[c].sent[1], |m| matches!(m, Message::Unchoke)),
        0
    );
    for r in requests(&net.conns[c].sent[0]) {
        assert!(offered.contains(&r.piece), "asked for {r:?} while choked");
    }
    let have: Vec<u32> = (0..fx.num_pieces() as u32)
        .filter(|p| leecher.shared.have_pieces()[*p as usize])
        .collect();
    let mut expected = offered.clone();
    expected.sort_unstable();
    assert_eq!(have, expected);
}

/// A peer that keeps asking for what we will not give (here, while choked)
/// is dropped after 1,000 such requests; they are forgiven at 50 a second.
#[tokio::test]
async fn a_request_flood_is_cut_off() {
    let fx = fixture();
    let r = BlockRequest {
        piece: 0,
        offset: 0,
        length: BLOCK,
    };
    for pause in [false, true] {
        let (seeder, peer) = (Node::seeder(&fx, 3), Node::leecher(&fx, 5));
        let nodes = [&seeder];
        let mut net = Net::new();
        let c = net.connect_script(&seeder, &peer, true);
        // (No have-none: with it, allowed-fast pieces could be asked for.)
        for _ in 0..1000 {
            net.send(c, Message::Request(r));
        }
        net.settle(&nodes).await;
        assert!(net.conns[c].is_open());
        assert_eq!(
            count(&net.got(c), |m| matches!(m, Message::RejectRequest(_))),
            1000
        );
        if pause {
            // One second later, 50 of them are forgiven.
            net.next(&nodes).await;
            for _ in 0..50 {
                net.send(c, Message::Request(r));
            }
            net.settle(&nodes).await;
            assert!(net.conns[c].is_open());
        }
        net.send(c, Message::Request(r));
        net.settle(&nodes).await;
        let why = net.conns[c].result(0).unwrap().unwrap_err();
        assert!(why.contains("request flood"), "{why}");
    }
}

/// Smart ban with several senders: a piece made of one peer's bad block and
/// another peer's good one fails; nobody is banned on suspicion; once a good
/// copy is verified, the sender of the differing block is banned and
/// disconnected, the honest peer is not.
#[tokio::test]
async fn smart_ban_names_the_sender_of_the_bad_block() {
    let fx = fixture();
    let (leecher, liar, honest) = (
        Node::leecher(&fx, 2),
        Node::seeder(&fx, 4),
        Node::seeder(&fx, 3),
    );
    let nodes = [&leecher, &honest];
    let mut net = Net::new();
    let l = net.connect_script(&leecher, &liar, true);
    net.send(l, Message::HaveAll);
    net.send(l, Message::Unchoke);
    net.settle(&nodes).await;
    // The liar answers its first request with bad data, then chokes.
    let first = requests(&net.got(l))[0];
    let mut bad = fx.block(&first).unwrap().to_vec();
    bad[100] ^= 0xff;
    net.send(
        l,
        Message::Piece {
            piece: first.piece,
            offset: first.offset,
            data: Bytes::from(bad),
        },
    );
    net.send(l, Message::Choke);
    net.settle(&nodes).await;
    assert!(!leecher.shared.is_banned(liar.ip));
    // The honest peer sends the rest, the other half of that piece included.
    let h = net.connect(&leecher, &honest, true);
    net.settle(&nodes).await;
    assert!(leecher.is_complete());
    assert_eq!(leecher.storage.contents(), fx.data);
    assert_eq!(leecher.stat(|s| &s.hash_failures), 1);
    assert!(leecher.shared.is_banned(liar.ip));
    assert!(!leecher.shared.is_banned(honest.ip));
    // The banned peer was told to go; the honest one stayed to the end.
    assert_eq!(net.conns[l].result(0), Some(Ok(())));
    assert!(!net.conns[l].is_open());
    assert!(net.conns[h].result(0) != Some(Err(String::new())));
    // The failed piece was fetched twice: once mixed, once from the honest peer.
    let again = requests(&net.conns[h].sent[0])
        .iter()
        .filter(|r| r.piece == first.piece)
        .count();
    assert!(again >= 3, "piece {} asked {again} times", first.piece);
}

/// Request timeouts run on the core's clock: a peer that sends nothing has
/// its requests given back after 20 s, then gets one request at a time;
/// after a second timeout it is dropped (at 62 s of virtual time).
#[tokio::test]
async fn a_stalled_peer_is_snubbed_then_dropped() {
    let fx = fixture();
    let (leecher, peer) = (Node::capped_leecher(&fx, 2), Node::seeder(&fx, 5));
    let nodes = [&leecher];
    let mut net = Net::new();
    let start = net.now;
    let c = net.connect_script(&leecher, &peer, true);
    net.send(c, Message::HaveAll);
    net.send(c, Message::Unchoke);
    net.settle(&nodes).await;
    assert_eq!(requests(&net.got(c)).len(), 32);
    let (mut snubbed_at, mut probation) = (None, None);
    while net.conns[c].is_open() {
        net.next(&nodes).await;
        if snubbed_at.is_none() && net.conns[c].core(0).core.queue_target() == 1 {
            snubbed_at = Some(net.now - start);
            // Its 32 requests went back to the pool, not to be asked of it
            // again for a request timeout.
            assert_eq!(net.conns[c].core(0).core.outstanding().count(), 0);
        }
        if net.conns[c].is_open() && net.conns[c].core(0).core.outstanding().count() == 1 {
            probation.get_or_insert(net.now - start);
        }
        assert!(net.now - start < Duration::from_secs(120), "never dropped");
    }
    assert_eq!(snubbed_at, Some(Duration::from_secs(21)));
    // One request at a time once those blocks may be asked again; its
    // time to answer starts then.
    assert_eq!(probation, Some(Duration::from_secs(41)));
    assert_eq!(requests(&net.got(c)).len(), 33);
    assert_eq!(net.now - start, Duration::from_secs(62));
    let why = net.conns[c].result(0).unwrap().unwrap_err();
    assert!(why.contains("stalled"), "{why}");
}

/// Neither side wants anything: the connection is let go after a minute.
#[tokio::test]
async fn an_idle_connection_is_let_go() {
    let fx = fixture();
    let (a, b) = (Node::leecher(&fx, 2), Node::leecher(&fx, 3));
    let nodes = [&a, &b];
    let mut net = Net::new();
    let start = net.now;
    let c = net.connect(&a, &b, true);
    net.settle(&nodes).await;
    while net.conns[c].is_open() {
        net.next(&nodes).await;
    }
    assert_eq!(net.now - start, Duration::from_secs(62));
    let why = net.conns[c].result(0).unwrap().unwrap_err();
    assert!(why.contains("nothing to exchange"), "{why}");
}

/// Two seeds have nothing to say to each other.
#[tokio::test]
async fn two_seeds_part_at_once() {
    let fx = fixture();
    let (a, b) = (Node::seeder(&fx, 2), Node::seeder(&fx, 3));
    let mut net = Net::new();
    let c = net.connect(&a, &b, true);
    net.settle(&[&a, &b]).await;
    assert!(!net.conns[c].is_open());
    let ended = [net.conns[c].result(0), net.conns[c].result(1)];
    assert!(
        ended
            .iter()
            .any(|r| matches!(r, Some(Err(e)) if e.contains("both sides are seeds"))),
        "{ended:?}"
    );
}

/// A connection may start before the torrent's info is known (a magnet
/// link): the peer's pieces are kept aside, nothing is asked or announced,
/// and once the info arrives the download runs as usual.
#[tokio::test]
async fn a_connection_can_start_before_the_info_is_known() {
    let fx = fixture();
    let (leecher, seeder) = (Node::leecher(&fx, 2), Node::seeder(&fx, 3));
    let nodes = [&leecher, &seeder];
    let mut net = Net::new();
    let mut early = params(&leecher, seeder.ip, true);
    early.piece_count = None;
    let c = net.connect_with(&leecher, &seeder, early, params(&seeder, leecher.ip, true));
    net.settle(&nodes).await;
    let sent = &net.conns[c].sent[0];
    assert!(requests(sent).is_empty());
    assert_eq!(count(sent, |m| matches!(m, Message::Interested)), 0);
    assert_eq!(
        count(sent, |m| matches!(
            m,
            Message::Bitfield(_) | Message::HaveNone | Message::HaveAll
        )),
        0
    );
    assert!(!leecher.is_complete());
    let n = fx.num_pieces();
    {
        let e = net.conns[c].core(0);
        let link = e.link.as_mut().unwrap();
        e.core.set_piece_count(n, link).unwrap();
        assert!(e.core.is_seed());
        assert!(e.core.am_interested());
    }
    net.settle(&nodes).await;
    assert!(leecher.is_complete());
    assert_eq!(leecher.storage.contents(), fx.data);
}

/// Pieces of 16 blocks from three seeders at different speeds: the blocks
/// of a piece arrive out of order, are written as they come and hashed once
/// the run from the piece's start reaches them; every piece verifies.
#[tokio::test]
async fn pieces_shared_by_several_peers_verify() {
    let fx = Fixture::sized(11, 256 * 1024, 3 * 1024 * 1024 + 5000);
    let leecher = Node::leecher(&fx, 2);
    let seeders = [
        Node::seeder(&fx, 3),
        Node::seeder(&fx, 4),
        Node::seeder(&fx, 5),
    ];
    let nodes = [&leecher, &seeders[0], &seeders[1], &seeders[2]];
    let mut net = Net::new();
    for (i, s) in seeders.iter().enumerate() {
        let c = net.connect(&leecher, s, true);
        net.conns[c].pipes[1].rate = Some(256 * 1024 * (i as u64 + 1));
    }
    for _ in 0..200 {
        if leecher.is_complete() {
            break;
        }
        net.advance(Duration::from_millis(100), &nodes).await;
    }
    assert!(leecher.is_complete());
    assert_eq!(leecher.storage.contents(), fx.data);
    assert_eq!(leecher.stat(|s| &s.hash_failures), 0);
    // Every seeder sent some of it.
    for c in 0..3 {
        assert!(
            count(&net.conns[c].sent[1], |m| matches!(
                m,
                Message::Piece { .. }
            )) > 0,
            "seeder {c} sent nothing"
        );
    }
}

/// The `piece` message that answers request `r` with the fixture's data.
fn piece_message(fx: &Fixture, r: BlockRequest) -> Message {
    Message::Piece {
        piece: r.piece,
        offset: r.offset,
        data: Bytes::copy_from_slice(fx.block(&r).unwrap()),
    }
}

/// A peer that sends every block of a piece before the piece's first one:
/// the blocks wait, in memory while they fit in `HOLD_AHEAD` and on disk
/// past that, until the first arrives; then the piece is hashed from both
/// and verifies. Pieces of 2 MiB, so that each holds more blocks than the
/// memory allowance.
#[tokio::test]
async fn blocks_sent_far_out_of_order_verify() {
    let fx = Fixture::sized(12, 2 * 1024 * 1024, 4 * 1024 * 1024 + 5000);
    assert!(fx.piece_length as usize > crate::torrent::HOLD_AHEAD);
    let (leecher, peer) = (Node::leecher(&fx, 2), Node::seeder(&fx, 5));
    let nodes = [&leecher];
    let mut net = Net::new();
    let c = net.connect_script(&leecher, &peer, true);
    net.send(c, Message::HaveAll);
    net.send(c, Message::Unchoke);
    let mut answered = 0;
    let mut firsts = Vec::new();
    for _ in 0..10_000 {
        net.settle(&nodes).await;
        if leecher.is_complete() {
            break;
        }
        let asked = requests(&net.got(c));
        let new = asked.get(answered..).unwrap_or_default().to_vec();
        answered = asked.len();
        let mut sent = 0;
        for r in new {
            if r.offset == 0 {
                firsts.push(r);
                continue;
            }
            net.send(c, piece_message(&fx, r));
            sent += 1;
        }
        if sent == 0 {
            // Nothing else asked: now the first blocks.
            assert!(!firsts.is_empty(), "the leecher stopped asking");
            for r in firsts.drain(..) {
                net.send(c, piece_message(&fx, r));
            }
        }
    }
    assert!(leecher.is_complete());
    assert_eq!(leecher.storage.contents(), fx.data);
    assert_eq!(leecher.stat(|s| &s.hash_failures), 0);
}

/// Interest follows what a partial peer has: interested while it has a
/// piece we lack, not interested once we have got those pieces elsewhere
/// (checked after every piece we get, from a hint, not by a scan).
#[tokio::test]
async fn interest_in_a_partial_peer_ends_when_we_have_its_pieces() {
    let fx = Fixture::sized(13, 32 * 1024, 40 * 32 * 1024);
    let (leecher, partial, seeder) = (
        Node::leecher(&fx, 2),
        Node::seeder(&fx, 4),
        Node::seeder(&fx, 3),
    );
    let nodes = [&leecher, &seeder];
    let mut net = Net::new();
    let p = net.connect_script(&leecher, &partial, true);
    // Pieces 3 and 7 only; it never unchokes.
    net.send(
        p,
        Message::Bitfield(Bytes::from_static(&[0b0001_0001, 0, 0, 0, 0])),
    );
    // Two more that have every other piece (and never unchoke either), so
    // that 3 and 7 are the rarest and come early, not last.
    for n in [5, 6] {
        let other = Node::seeder(&fx, n);
        let c = net.connect_script(&leecher, &other, true);
        net.send(
            c,
            Message::Bitfield(Bytes::from_static(&[0b1110_1110, 255, 255, 255, 255])),
        );
    }
    net.settle(&nodes).await;
    assert!(net.got(p).contains(&Message::Interested));
    // Everything comes from the seeder, a piece at a time.
    let s = net.connect(&leecher, &seeder, true);
    net.conns[s].pipes[1].rate = Some(64 * 1024);
    let has = |piece| leecher.shared.lock().picker.have(piece);
    let mut lost_at = None;
    for step in 0..1000 {
        if leecher.is_complete() {
            break;
        }
        net.advance(Duration::from_millis(100), &nodes).await;
        let lost = net.got(p).contains(&Message::NotInterested);
        // Not before both of its pieces are ours; at once after.
        assert_eq!(lost, has(3) && has(7), "step {step}");
        if lost && lost_at.is_none() {
            lost_at = Some(leecher.shared.lock().picker.have_count());
        }
    }
    assert!(leecher.is_complete());
    // Lost before the end (3 and 7, the rarest, are picked right after
    // the random start), not only when the download completed.
    assert!(lost_at.is_some_and(|n| n < 30), "{lost_at:?}");
}

/// BEP 9, serving: a torrent's core advertises `ut_metadata` with the info
/// dictionary's size, answers each request with that piece of the exact
/// bytes the info-hash covers, rejects a piece past the end, and stops
/// serving a peer that asks for more than twice the whole.
#[tokio::test]
async fn metadata_is_served_from_the_exact_info_bytes() {
    use rivulet_wire::{ExtendedHandshake, MetadataMessage, UT_METADATA};
    let fx = fixture();
    let seeder = Node::seeder(&fx, 3);
    let peer = Node::leecher(&fx, 5);
    let nodes = [&seeder];
    let mut net = Net::new();
    let c = net.connect_script(&seeder, &peer, true);
    net.settle(&nodes).await;
    let info = fx.metainfo.info_bytes.clone();
    assert_eq!(
        rivulet_core::InfoHash::from_info_bytes(&info),
        fx.info_hash()
    );
    let hs = net
        .got(c)
        .iter()
        .find_map(|m| match m {
            Message::Extended { id: 0, payload } => ExtendedHandshake::decode(payload).ok(),
            _ => None,
        })
        .expect("an extended handshake");
    assert_eq!(hs.metadata_size, Some(info.len() as u64));
    let their_id = hs.extension_id(UT_METADATA).expect("ut_metadata offered");
    // Our own id for ut_metadata: what the seeder must answer with.
    let mut ours = ExtendedHandshake::default();
    ours.m.insert(UT_METADATA.to_owned(), 7);
    net.send(c, ours.to_message());
    let pieces = info.len().div_ceil(16 * 1024) as u32;
    for piece in 0..=pieces {
        net.send(c, MetadataMessage::Request { piece }.to_message(their_id));
    }
    net.settle(&nodes).await;
    let answers: Vec<MetadataMessage> = net
        .got(c)
        .iter()
        .filter_map(|m| match m {
            Message::Extended { id: 7, payload } => MetadataMessage::decode(payload).ok(),
            _ => None,
        })
        .collect();
    let mut whole = Vec::new();
    for (i, a) in answers.iter().take(pieces as usize).enumerate() {
        match a {
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                assert_eq!(*piece, i as u32);
                assert_eq!(*total_size, info.len() as u64);
                whole.extend_from_slice(data);
            }
            other => panic!("piece {i}: {other:?}"),
        }
    }
    assert!(whole == info, "the pieces make the info dictionary");
    assert_eq!(
        answers.last(),
        Some(&MetadataMessage::Reject { piece: pieces }),
        "a piece past the end"
    );
    // Asking for the same pieces again and again: served twice over, then
    // rejected.
    for _ in 0..5 {
        for piece in 0..pieces {
            net.send(c, MetadataMessage::Request { piece }.to_message(their_id));
        }
    }
    net.settle(&nodes).await;
    let data = count(&net.got(c), |m| {
        matches!(m, Message::Extended { id: 7, payload }
            if matches!(MetadataMessage::decode(payload), Ok(MetadataMessage::Data { .. })))
    });
    assert_eq!(data, 2 * pieces as usize + 4);
}

/// The scripted peer's extended handshake: `ut_pex` as id 9 (unless
/// `pex` is false), listening on `port`.
fn pex_handshake(port: u16, pex: bool) -> Message {
    let mut hs = rivulet_wire::ExtendedHandshake {
        p: Some(port),
        ..rivulet_wire::ExtendedHandshake::default()
    };
    if pex {
        hs.m.insert(rivulet_wire::UT_PEX.to_owned(), 9);
    }
    hs.to_message()
}

/// The PEX messages scripted side `c` received.
fn pex_got(net: &mut Net, c: usize) -> Vec<rivulet_wire::PexMessage> {
    net.got(c)
        .iter()
        .filter_map(|m| match m {
            Message::Extended { id: 9, payload } => rivulet_wire::PexMessage::decode(payload).ok(),
            _ => None,
        })
        .collect()
}

/// BEP 11: each peer hears of the others it is not (where they listen, as
/// their extended handshakes said), soon after joining and then at most
/// once a minute, with those gone as dropped; the peers a peer names go to
/// the connector, at most one message a minute of them, never port 0.
#[tokio::test]
async fn peers_are_exchanged_at_most_once_a_minute() {
    let fx = fixture();
    let seeder = Node::seeder(&fx, 3);
    let (tx, mut learnt) = mpsc::unbounded_channel();
    *seeder.shared.pex_sink.lock().unwrap() = Some(tx);
    let others: Vec<Node> = (5..8).map(|n| Node::leecher(&fx, n)).collect();
    let nodes = [&seeder];
    let mut net = Net::new();
    let conns: Vec<usize> = others
        .iter()
        .map(|o| net.connect_script(&seeder, o, true))
        .collect();
    for (i, &c) in conns.iter().enumerate() {
        net.send(c, pex_handshake(7000 + i as u16, true));
        // Interested, so that the connections are not let go as idle.
        net.send(c, Message::HaveNone);
        net.send(c, Message::Interested);
    }
    net.settle(&nodes).await;
    // Our own handshake offers ut_pex.
    assert!(net.got(conns[0]).iter().any(|m| matches!(m,
        Message::Extended { id: 0, payload }
            if rivulet_wire::ExtendedHandshake::decode(payload).unwrap().extension_id(rivulet_wire::UT_PEX).is_some())));
    assert!(pex_got(&mut net, conns[0]).is_empty(), "not at once");
    net.advance(Duration::from_secs(6), &nodes).await;
    let first = pex_got(&mut net, conns[0]);
    assert_eq!(first.len(), 1);
    let mut added: Vec<SocketAddr> = first[0].added.iter().map(|p| p.addr).collect();
    added.sort();
    assert_eq!(
        added,
        vec![SocketAddr::new(ip(6), 7001), SocketAddr::new(ip(7), 7002)],
        "the others, where they listen; not the peer itself"
    );
    // The third peer leaves: told as dropped, a minute after the first.
    net.conns[conns[2]].close(1, Ok(()));
    net.advance(Duration::from_secs(30), &nodes).await;
    assert_eq!(pex_got(&mut net, conns[0]).len(), 1, "not before a minute");
    net.advance(Duration::from_secs(31), &nodes).await;
    let second = pex_got(&mut net, conns[0]);
    assert_eq!(second.len(), 2);
    assert!(second[1].added.is_empty());
    assert_eq!(second[1].dropped, vec![SocketAddr::new(ip(7), 7002)]);

    // What a peer tells us goes to the connector, without port 0.
    let theirs = |port: u16| rivulet_wire::PexMessage {
        added: vec![
            rivulet_wire::PexPeer {
                addr: SocketAddr::new(ip(20), port),
                flags: rivulet_wire::PexFlags::UTP,
            },
            rivulet_wire::PexPeer {
                addr: SocketAddr::new(ip(21), 0),
                flags: rivulet_wire::PexFlags(0),
            },
        ],
        dropped: vec![],
    };
    net.send(
        conns[1],
        theirs(9000).to_message(crate::peer::state::UT_PEX_ID),
    );
    net.settle(&nodes).await;
    assert_eq!(learnt.try_recv().ok(), Some(SocketAddr::new(ip(20), 9000)));
    assert!(learnt.try_recv().is_err(), "port 0 is no peer");
    // It takes uTP, PEX says: it will be tried over uTP first.
    assert!(seeder.shared.utp_hinted(SocketAddr::new(ip(20), 9000)));
    assert!(!seeder.shared.utp_hinted(SocketAddr::new(ip(6), 7001)));
    // Another message at once: ignored (one a minute).
    net.send(
        conns[1],
        theirs(9001).to_message(crate::peer::state::UT_PEX_ID),
    );
    net.settle(&nodes).await;
    assert!(
        learnt.try_recv().is_err(),
        "a second message within the minute"
    );
}

/// With PEX off (as for a private torrent), nothing is offered, sent or
/// taken.
#[tokio::test]
async fn no_pex_when_it_is_off() {
    let fx = fixture();
    let config = TorrentConfig {
        pex: false,
        ..TorrentConfig::default()
    };
    let seeder = Node::with(
        &fx,
        3,
        fx.data.clone(),
        &vec![true; fx.num_pieces()],
        config,
    );
    let (tx, mut learnt) = mpsc::unbounded_channel();
    *seeder.shared.pex_sink.lock().unwrap() = Some(tx);
    let others: Vec<Node> = (5..7).map(|n| Node::leecher(&fx, n)).collect();
    let nodes = [&seeder];
    let mut net = Net::new();
    let a = net.connect_script(&seeder, &others[0], true);
    let b = net.connect_script(&seeder, &others[1], true);
    net.send(a, pex_handshake(7000, true));
    net.send(b, pex_handshake(7001, true));
    let msg = rivulet_wire::PexMessage {
        added: vec![rivulet_wire::PexPeer {
            addr: SocketAddr::new(ip(20), 9000),
            flags: rivulet_wire::PexFlags(0),
        }],
        dropped: vec![],
    };
    net.send(a, msg.to_message(crate::peer::state::UT_PEX_ID));
    net.advance(Duration::from_secs(70), &nodes).await;
    assert!(pex_got(&mut net, a).is_empty());
    assert!(learnt.try_recv().is_err());
    assert!(!net.got(a).iter().any(|m| matches!(m,
        Message::Extended { id: 0, payload }
            if rivulet_wire::ExtendedHandshake::decode(payload).unwrap().extension_id(rivulet_wire::UT_PEX).is_some())));
}

/// BEP 5 `PORT`: a core that runs the DHT with a peer that does too sends
/// its node's port after the handshakes; a peer's `PORT` reaches our DHT
/// node as that peer's address and port (and port 0 is no node).
#[tokio::test]
async fn port_messages_go_both_ways() {
    let fx = fixture();
    let (dht, mut told) = crate::dht::DhtHandle::for_tests(7777);
    let settings = crate::torrent::Settings {
        dht: Some(dht),
        ..crate::torrent::Settings::standalone(TorrentConfig::default())
    };
    let storage = Arc::new(MemoryStorage::with_data(
        u64::from(fx.piece_length),
        fx.data.clone(),
    ));
    let shared = Shared::build(
        Arc::new(fx.metainfo.info.clone()),
        fx.info_hash(),
        crate::torrent::Parts::standalone(settings),
        Arc::clone(&storage) as Arc<dyn Storage>,
        &vec![true; fx.num_pieces()],
    );
    let seeder = Node {
        id: shared.config.peer_id,
        shared,
        storage,
        ip: ip(3),
    };
    let peer = Node::leecher(&fx, 5);
    let nodes = [&seeder];
    let mut net = Net::new();
    let mut p = params(&seeder, peer.ip, true);
    p.dht_port = Some(7777);
    let s = net.end(&seeder, &peer, true, p);
    let script = Side::Script(Script {
        decoder: MessageDecoder::with_limits(Limits::default()),
        inbox: BytesMut::new(),
        got: Vec::new(),
    });
    let c = net.add([s, script]);
    net.send(c, Message::Port(0));
    net.send(c, Message::Port(6882));
    net.settle(&nodes).await;
    assert!(net.got(c).contains(&Message::Port(7777)));
    match told.try_recv() {
        Ok(crate::dht::Command::AddNode(a)) => assert_eq!(a, SocketAddr::new(ip(5), 6882)),
        _ => panic!("the peer's DHT node did not reach ours"),
    }
    assert!(told.try_recv().is_err(), "port 0 is no node");
}
