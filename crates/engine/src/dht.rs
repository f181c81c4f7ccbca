//! The session's DHT node: a thin tokio driver around the sans-IO
//! [`rivulet_dht::Node`].
//!
//! One task owns the node. It uses the session's UDP port
//! (`udp_port`, the listen port's number, as other clients
//! expect): one socket for IPv4 and, when the session is not bound to an
//! IPv4 address, one for IPv6 (its own routing table, BEP 32), shared with
//! uTP, whose task reads them and hands this one the datagrams that are
//! not uTP. It feeds the node every datagram and the time, sends what the
//! node asks, wakes it when it wants, and hands the peers its lookups find
//! to whoever asked ([`DhtHandle::lookup`]).
//!
//! At start it restores the node id and the good nodes saved by the last
//! run (a state file, written atomically: temp file, fsync, rename), and
//! bootstraps from the configured routers (host names resolved here, each
//! within a few seconds). The state is saved again every 10 minutes and at
//! shutdown.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use rivulet_core::InfoHash;
use rivulet_dht::{Event, LookupId, Node};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::udp_port::PortSockets;

/// How long resolving one router's host name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most nodes taken from one torrent's `nodes`.
const MAX_TORRENT_NODES: usize = 16;
/// How often the node's state is written to its file.
const SAVE_EVERY: Duration = Duration::from_secs(600);
/// Lookups running at once for callers; more wait their turn in the queue
/// of commands (each is short: seconds).
const MAX_LOOKUPS: usize = 32;

/// How the session runs its DHT node.
#[derive(Debug, Clone, Default)]
pub struct DhtConfig {
    /// Routers to bootstrap from, `host:port` (their names resolved at
    /// start). Empty: only the saved nodes, if any.
    pub bootstrap: Vec<String>,
    /// Where the node id and good nodes are kept between runs (none: not
    /// kept).
    pub state_file: Option<PathBuf>,
    /// Only nodes on loopback or private addresses are contacted (a closed
    /// test network): the nodes a torrent names elsewhere are ignored.
    pub local_only: bool,
}

/// What the DHT node is doing, for displays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DhtStatus {
    /// Nodes in the IPv4 routing table.
    pub nodes_v4: usize,
    /// Nodes in the IPv6 routing table.
    pub nodes_v6: usize,
    /// Lookups running.
    pub lookups: usize,
    /// Peers others announced to this node, kept for `get_peers`.
    pub stored_peers: usize,
}

/// What a lookup reports to its caller ([`DhtHandle::lookup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A peer of the torrent.
    Peer(SocketAddr),
    /// The lookup ended: how many nodes took our announce (0 for a plain
    /// lookup, or one that found no node to announce to).
    Done {
        /// Nodes that acknowledged our `announce_peer`.
        announced: usize,
    },
}

pub(crate) enum Command {
    /// Nodes a torrent names (BEP 5 `nodes`): pinged, entering the table
    /// if they answer.
    AddNodes(Vec<(String, u16)>),
    /// A node a peer named (BEP 5 `PORT`): pinged.
    AddNode(SocketAddr),
    Lookup {
        info_hash: InfoHash,
        announce: Option<u16>,
        peers: mpsc::UnboundedSender<Found>,
    },
    Status(oneshot::Sender<DhtStatus>),
}

/// The session's handle on its DHT task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DhtHandle {
    commands: mpsc::UnboundedSender<Command>,
    port: u16,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Lookup { info_hash, .. } => write!(f, "Lookup({})", info_hash.to_hex()),
            Command::Status(_) => write!(f, "Status"),
            Command::AddNodes(n) => write!(f, "AddNodes({})", n.len()),
            Command::AddNode(a) => write!(f, "AddNode({a})"),
        }
    }
}

impl DhtHandle {
    /// A handle whose commands go to the returned channel, for tests of
    /// what peers tell the DHT.
    #[cfg(test)]
    pub(crate) fn for_tests(port: u16) -> (DhtHandle, mpsc::UnboundedReceiver<Command>) {
        let (commands, rx) = mpsc::unbounded_channel();
        (DhtHandle { commands, port }, rx)
    }

    /// Looks up the peers of `info_hash` (and announces us on `announce`,
    /// our TCP port, when given): each peer found goes to the returned
    /// channel, then [`Found::Done`]; the channel closes when the lookup
    /// ends (at once, without `Done`, when it could not start: no node
    /// known yet).
    pub fn lookup(
        &self,
        info_hash: InfoHash,
        announce: Option<u16>,
    ) -> mpsc::UnboundedReceiver<Found> {
        let (peers, rx) = mpsc::unbounded_channel();
        let _ = self.commands.send(Command::Lookup {
            info_hash,
            announce,
            peers,
        });
        rx
    }

    /// Tells the node of the DHT nodes a torrent names (BEP 5 `nodes`; at
    /// most 16, host names resolved in the background).
    pub fn add_nodes(&self, nodes: &[(String, u16)]) {
        if !nodes.is_empty() {
            let nodes = nodes.iter().take(MAX_TORRENT_NODES).cloned().collect();
            let _ = self.commands.send(Command::AddNodes(nodes));
        }
    }

    /// Tells the node of a peer's DHT node (its address and the port of
    /// its `PORT` message).
    pub fn add_node(&self, addr: SocketAddr) {
        let _ = self.commands.send(Command::AddNode(addr));
    }

    /// The node's state now (`None` once it stopped).
    pub async fn status(&self) -> Option<DhtStatus> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Status(tx)).ok()?;
        rx.await.ok()
    }

    /// The UDP port the node listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Starts the DHT task on the session's UDP port (`sockets`; it sends
/// through them and receives the datagrams the port's task hands it on
/// `datagrams`); it ends when `cancel` is cancelled, after saving its
/// state. Returns its handle and the task. Must be called within a tokio
/// runtime.
pub(crate) fn start(
    config: DhtConfig,
    sockets: PortSockets,
    datagrams: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    cancel: CancellationToken,
) -> (DhtHandle, JoinHandle<()>) {
    let port = sockets.port;
    let node_config = rivulet_dht::Config {
        port,
        ipv4: sockets.v4.is_some(),
        ipv6: sockets.v6.is_some(),
        bootstrap: Vec::new(),
        ..rivulet_dht::Config::default()
    };
    let (commands, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(config, node_config, sockets, datagrams, rx, cancel));
    (DhtHandle { commands, port }, task)
}

/// The node, restored from its state file when there is a good one.
fn load(config: &DhtConfig, node_config: rivulet_dht::Config, now: std::time::Instant) -> Node {
    let seed: u64 = rand::random();
    if let Some(path) = &config.state_file {
        match std::fs::read(path) {
            Ok(bytes) => match Node::restore(node_config.clone(), &bytes, now, seed) {
                Ok(node) => return node,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "DHT state unreadable: starting afresh");
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the DHT state")
            }
        }
    }
    Node::new(node_config, now, seed)
}

/// Writes the node's state to its file, atomically.
fn save(config: &DhtConfig, node: &Node) {
    let Some(path) = &config.state_file else {
        return;
    };
    let bytes = node.save();
    let write = || -> std::io::Result<()> {
        let folder = path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(folder)?;
        let mut tmp = tempfile::NamedTempFile::new_in(folder)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), error = %e, "cannot save the DHT state");
    }
}

/// Resolves the routers, bounded in time; names that do not resolve are
/// skipped (logged).
async fn resolve(routers: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for r in routers {
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(r.as_str())).await {
            Ok(Ok(addrs)) => out.extend(addrs),
            Ok(Err(e)) => tracing::info!(router = %r, error = %e, "DHT router does not resolve"),
            Err(_) => tracing::info!(router = %r, "DHT router: name lookup timed out"),
        }
    }
    out
}

async fn run(
    config: DhtConfig,
    node_config: rivulet_dht::Config,
    sockets: PortSockets,
    mut datagrams: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    cancel: CancellationToken,
) {
    let mut node = load(&config, node_config, Instant::now().into_std());
    let routers = tokio::select! {
        r = resolve(&config.bootstrap) => r,
        () = cancel.cancelled() => return,
    };
    let routers: Vec<SocketAddr> = routers
        .into_iter()
        .filter(|a| sockets.for_addr(*a).is_some())
        .collect();
    if let Err(e) = node.bootstrap(Instant::now().into_std(), &routers) {
        tracing::debug!(error = %e, "DHT bootstrap not started");
    }
    let mut lookups: std::collections::HashMap<LookupId, mpsc::UnboundedSender<Found>> =
        std::collections::HashMap::new();
    // Lookups asked for while MAX_LOOKUPS run.
    let mut waiting: std::collections::VecDeque<Command> = std::collections::VecDeque::new();
    let mut save_tick = tokio::time::interval_at(Instant::now() + SAVE_EVERY, SAVE_EVERY);
    let (resolved_tx, mut resolved_rx) = mpsc::unbounded_channel::<Vec<SocketAddr>>();
    loop {
        // What the node wants sent, and what it found.
        while let Some((to, packet)) = node.poll_transmit() {
            // A full socket buffer drops the datagram, like the network.
            sockets.send(to, &packet);
        }
        while let Some(event) = node.poll_event() {
            match event {
                Event::Peers { id, peers, .. } => {
                    if let Some(tx) = lookups.get(&id) {
                        for p in peers {
                            let _ = tx.send(Found::Peer(p));
                        }
                    }
                }
                Event::LookupDone(done) => {
                    tracing::debug!(kind = ?done.kind, elapsed = ?done.elapsed, queries = done.queries, peers = done.peers, announced = done.announced, "DHT lookup done");
                    if let Some(tx) = lookups.remove(&done.id) {
                        let _ = tx.send(Found::Done {
                            announced: done.announced,
                        });
                    }
                }
                Event::ExternalAddress { ip, id_changed } => {
                    tracing::debug!(%ip, id_changed, "DHT: our external address");
                }
            }
        }
        while lookups.len() < MAX_LOOKUPS {
            let Some(cmd) = waiting.pop_front() else {
                break;
            };
            start_lookup(&mut node, &mut lookups, cmd);
        }
        let wake = node
            .next_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
        tokio::select! {
            () = cancel.cancelled() => break,
            Some((from, packet)) = datagrams.recv() => {
                node.handle_packet(Instant::now().into_std(), from, &packet);
            }
            cmd = commands.recv() => match cmd {
                Some(Command::AddNodes(nodes)) => {
                    // Resolved off the loop; the addresses come back as a
                    // command of their own.
                    let tx = resolved_tx.clone();
                    tokio::spawn(async move {
                        let names: Vec<String> = nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                        let _ = tx.send(resolve(&names).await);
                    });
                }
                Some(Command::AddNode(addr)) => {
                    if addr.port() != 0 && (!config.local_only || is_local(addr.ip())) {
                        node.add_node(Instant::now().into_std(), addr);
                    }
                }
                Some(Command::Status(tx)) => {
                    let _ = tx.send(DhtStatus {
                        nodes_v4: node.table(false).len(),
                        nodes_v6: node.table(true).len(),
                        lookups: node.running_lookups(),
                        stored_peers: node.stored_peers(),
                    });
                }
                Some(cmd) if lookups.len() < MAX_LOOKUPS => start_lookup(&mut node, &mut lookups, cmd),
                Some(cmd) => waiting.push_back(cmd),
                // Every handle is gone: the session ended.
                None => break,
            },
            Some(addrs) = resolved_rx.recv() => {
                let now = Instant::now().into_std();
                for a in addrs {
                    if is_local(a.ip()) || !config.local_only {
                        node.add_node(now, a);
                    }
                }
            }
            () = tokio::time::sleep_until(wake) => node.on_timeout(Instant::now().into_std()),
            _ = save_tick.tick() => save(&config, &node),
        }
    }
    save(&config, &node);
}

/// Whether `ip` is on loopback or a local network: IPv4 loopback, private
/// and link-local; IPv6 `::1`, unique local (fc00::/7) and link-local
/// (fe80::/10). What closed-network mode allows.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            ip.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

fn start_lookup(
    node: &mut Node,
    lookups: &mut std::collections::HashMap<LookupId, mpsc::UnboundedSender<Found>>,
    cmd: Command,
) {
    let Command::Lookup {
        info_hash,
        announce,
        peers,
    } = cmd
    else {
        return;
    };
    let now = Instant::now().into_std();
    let started = match announce {
        Some(port) => node.announce(now, info_hash, Some(port)),
        None => node.get_peers(now, info_hash),
    };
    match started {
        Ok(id) => {
            lookups.insert(id, peers);
        }
        // No node to ask yet (the table is empty): the channel closes at
        // once, and the caller asks again later.
        Err(e) => tracing::debug!(error = %e, "DHT lookup not started"),
    }
}
