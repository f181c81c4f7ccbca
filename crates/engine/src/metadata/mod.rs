//! Magnet links: fetching a torrent's info dictionary from peers (BEP 9),
//! and building a .torrent from it.
//!
//! [`Session::fetch_metadata`](crate::session::Session::fetch_metadata)
//! finds peers through the link's trackers (announced to, each in its own
//! task, with the session's clients) and its `x.pe` addresses, connects to
//! a bounded number of them at once, and asks those that offer the metadata
//! for its 16 KiB pieces through [`fetch::MetadataFetch`], which spreads the
//! pieces over them, bounds the size ([`MAX_METADATA_SIZE`]), checks the
//! result against the info-hash and bans peers that sent bad pieces. The
//! fetch connections close once the metadata is had; the download that
//! follows connects again, as for a .torrent file.
//!
//! Serving metadata to others is the peer core's part (`peer::state`): a
//! torrent whose info we have advertises `ut_metadata` and its size.

mod conn;
pub mod fetch;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::Rng;
use rivulet_bencode::OwnedValue;
use rivulet_core::{InfoHash, PeerId};
use rivulet_tracker::{AnnounceRequest, Event, PeerAddr};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::announce::{announce_once, AnnounceTimeouts, HttpClient};
use crate::udp_socket::UdpSockets;
use fetch::MetadataFetch;

/// Largest metadata fetched: real torrents' info dictionaries stay far
/// below (a 2 TiB torrent of 1 MiB pieces has 40 MiB of piece hashes, but
/// takes 2 MiB pieces long before that).
pub const MAX_METADATA_SIZE: usize = 32 * 1024 * 1024;

/// Our id for `ut_metadata` in the extended handshake (what peers send
/// their `ut_metadata` messages to us with).
pub const UT_METADATA_ID: u8 = 3;

/// Connections a fetch keeps open at once.
const MAX_FETCH_CONNECTIONS: usize = 16;
/// Attempts to connect to one peer before it is given up.
const MAX_ATTEMPTS: u32 = 3;
/// Wait between the first two DHT lookups of a fetch; it doubles up to
/// [`DHT_AGAIN_MAX`].
const DHT_AGAIN_FIRST: Duration = Duration::from_secs(5);
/// Longest wait between two DHT lookups of a fetch.
const DHT_AGAIN_MAX: Duration = Duration::from_secs(60);
/// Wait before connecting again to a peer whose connection ended.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Where a fetch finds peers and how long it waits for them.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Tracker URLs (the link's `tr`), each announced to.
    pub trackers: Vec<String>,
    /// Peers to connect to (the link's `x.pe`, `--peer`).
    pub peers: Vec<SocketAddr>,
    /// Size the link gives (`xl`), told to trackers as what is left.
    pub size_hint: Option<u64>,
    /// Time to connect to a peer.
    pub connect_timeout: Duration,
    /// Time for a peer's handshakes.
    pub handshake_timeout: Duration,
    /// A piece asked for and not received in this time is asked of another
    /// peer.
    pub request_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            trackers: Vec::new(),
            peers: Vec::new(),
            size_hint: None,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// How a fetch is going, for a display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchProgress {
    /// Peers known (from trackers and the link).
    pub known: usize,
    /// Connections open.
    pub connected: usize,
    /// Connected peers that offer the metadata.
    pub offering: usize,
    /// Metadata pieces had and in all, once the size is known.
    pub pieces: Option<(usize, usize)>,
    /// Peers banned for sending bad metadata.
    pub banned: usize,
}

/// Why metadata could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The link names no tracker and no peer: there is nowhere to look.
    #[error("the magnet link names no tracker (tr) and no peer (x.pe), and DHT is off: nowhere to find peers")]
    NoSources,
    /// The session shut down first.
    #[error("the session is shutting down")]
    ShuttingDown,
}

/// What the fetch's tasks share.
pub(crate) struct Ctx {
    info_hash: InfoHash,
    peer_id: PeerId,
    bind: Option<IpAddr>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    encryption: crate::encryption::Encryption,
    utp: Option<crate::utp::UtpSocket>,
    state: Mutex<MetadataFetch>,
    /// Wakes connections: pieces to hand out, or a ban.
    wake: Notify,
    /// Cancelled when the metadata is had (or the fetch is abandoned).
    done: CancellationToken,
    connected: AtomicUsize,
}

impl Ctx {
    fn state(&self) -> MutexGuard<'_, MetadataFetch> {
        // The fetch state is updated in single steps: usable after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a session lends a fetch.
pub(crate) struct FetchEnv {
    pub peer_id: PeerId,
    pub bind: Option<IpAddr>,
    pub port: u16,
    pub http: HttpClient,
    pub udp: Arc<UdpSockets>,
    /// Cancelled when the session shuts down.
    pub cancel: CancellationToken,
    /// The session's DHT node, a source of peers too.
    pub dht: Option<crate::dht::DhtHandle>,
    /// The session's encryption policy.
    pub encryption: crate::encryption::Encryption,
    /// The session's uTP endpoint.
    pub utp: Option<crate::utp::UtpSocket>,
}

/// How a task of the connection set ended.
enum Ended {
    /// A connection, with its outcome (whether the peer offered metadata).
    Conn(SocketAddr, Result<bool, crate::peer::PeerError>),
    /// The wait before connecting to this peer again.
    Retry(SocketAddr),
}

/// A known peer of the fetch.
#[derive(Debug, Default)]
struct Known {
    attempts: u32,
}

/// Takes the fetch's new bans: each banned peer's address is logged and
/// its IP is never connected to again by this fetch.
fn note_bans(ctx: &Ctx, by_key: &HashMap<u64, SocketAddr>, banned: &mut HashSet<IpAddr>) {
    for (key, reason) in ctx.state().take_bans() {
        if let Some(addr) = by_key.get(&key) {
            tracing::warn!(%addr, ?reason, "peer sent bad metadata: banned");
            banned.insert(addr.ip());
        }
    }
}

/// Fetches the metadata of `info_hash`: see the module documentation.
/// Runs until it has it (or the session shuts down); `progress` is called
/// about once a second and at each change of the connected peers.
pub(crate) async fn fetch(
    env: FetchEnv,
    info_hash: InfoHash,
    options: FetchOptions,
    progress: &(dyn Fn(&FetchProgress) + Send + Sync),
) -> Result<Vec<u8>, MetadataError> {
    if options.trackers.is_empty() && options.peers.is_empty() && env.dht.is_none() {
        return Err(MetadataError::NoSources);
    }
    let ctx = Arc::new(Ctx {
        info_hash,
        peer_id: env.peer_id,
        bind: env.bind,
        connect_timeout: options.connect_timeout,
        handshake_timeout: options.handshake_timeout,
        encryption: env.encryption,
        utp: env.utp.clone(),
        state: Mutex::new(MetadataFetch::new(
            info_hash,
            MAX_METADATA_SIZE,
            options.request_timeout,
        )),
        wake: Notify::new(),
        done: CancellationToken::new(),
        connected: AtomicUsize::new(0),
    });
    let tasks = TaskTracker::new();
    let (peers_tx, mut peers_rx) = mpsc::unbounded_channel();
    for addr in &options.peers {
        let _ = peers_tx.send(*addr);
    }
    for url in &options.trackers {
        tasks.spawn(ctx.done.clone().run_until_cancelled_owned(announce_loop(
            url.clone(),
            env.http.clone(),
            Arc::clone(&env.udp),
            AnnounceRequest {
                info_hash,
                peer_id: env.peer_id,
                port: env.port,
                uploaded: 0,
                downloaded: 0,
                // Unknown until the metadata comes: what the link says, else
                // anything but 0 (which would make us a seed to the tracker).
                left: options.size_hint.unwrap_or(16 * 1024).max(1),
                event: Event::Started,
                numwant: Some(200),
                key: rand::thread_rng().gen(),
                tracker_id: None,
                compact: true,
                crypto: crate::encryption::tracker_crypto(env.encryption),
            },
            peers_tx.clone(),
        )));
    }
    if let Some(dht) = env.dht.clone() {
        let peers = peers_tx.clone();
        tasks.spawn(ctx.done.clone().run_until_cancelled_owned(async move {
            // A lookup takes seconds; asked again while the fetch goes on,
            // since peers come and go (soon at first: a node that just
            // joined the DHT, or a seeder that just announced).
            let mut wait = DHT_AGAIN_FIRST;
            loop {
                let mut found = dht.lookup(info_hash, None);
                while let Some(f) = found.recv().await {
                    if let crate::dht::Found::Peer(p) = f {
                        let _ = peers.send(p);
                    }
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(DHT_AGAIN_MAX);
            }
        }));
    }
    drop(peers_tx);

    let mut known: HashMap<SocketAddr, Known> = HashMap::new();
    let mut queue: VecDeque<SocketAddr> = VecDeque::new();
    let mut by_key: HashMap<u64, SocketAddr> = HashMap::new();
    let mut next_key = 0u64;
    let mut running = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut banned = HashSet::new();
    let mut sources_open = true;
    let result = loop {
        if let Some(bytes) = ctx.state().result() {
            break Ok(bytes.to_vec());
        }
        note_bans(&ctx, &by_key, &mut banned);
        while running.len() < MAX_FETCH_CONNECTIONS {
            let Some(addr) = queue.pop_front() else {
                break;
            };
            next_key += 1;
            by_key.insert(next_key, addr);
            let (ctx, key) = (Arc::clone(&ctx), next_key);
            running.spawn(async move { Ended::Conn(addr, conn::run(ctx, key, addr).await) });
        }
        tokio::select! {
            () = env.cancel.cancelled() => break Err(MetadataError::ShuttingDown),
            () = ctx.done.cancelled() => {}
            addr = peers_rx.recv(), if sources_open => match addr {
                Some(addr) => {
                    if !banned.contains(&addr.ip()) && !known.contains_key(&addr) {
                        known.insert(addr, Known::default());
                        queue.push_back(addr);
                    }
                }
                // No tracker (only the given peers), and every one read.
                None => sources_open = false,
            },
            Some(ended) = running.join_next() => match ended {
                Ok(Ended::Retry(addr)) => queue.push_back(addr),
                Ok(Ended::Conn(addr, outcome)) => {
                    if let Err(e) = &outcome {
                        tracing::debug!(%addr, error = %e, "metadata connection ended");
                    }
                    let k = known.entry(addr).or_default();
                    k.attempts += 1;
                    // A peer that failed may have been busy: it is tried
                    // again a little later, a few times. Banned ones never.
                    if k.attempts < MAX_ATTEMPTS && !banned.contains(&addr.ip()) {
                        let done = ctx.done.clone();
                        running.spawn(async move {
                            tokio::select! {
                                () = tokio::time::sleep(RETRY_AFTER) => {}
                                () = done.cancelled() => {}
                            }
                            Ended::Retry(addr)
                        });
                    }
                }
                // A connection task panicked (a bug): that peer is dropped.
                Err(_) => {}
            },
            _ = tick.tick() => {
                ctx.state().on_tick(tokio::time::Instant::now().into_std());
                ctx.wake.notify_waiters();
            }
        }
        let state = ctx.state();
        if state.result().is_some() {
            // Done: the loop ends next, and its connections are closing.
            continue;
        }
        progress(&FetchProgress {
            known: known.len(),
            connected: ctx.connected.load(Ordering::Relaxed),
            offering: state.useful_peers(),
            pieces: state.progress(),
            banned: banned.len(),
        });
    };
    ctx.done.cancel();
    tasks.close();
    tasks.wait().await;
    while running.join_next().await.is_some() {}
    // Bans made by the last check (pieces that differ from the good
    // metadata).
    note_bans(&ctx, &by_key, &mut banned);
    result
}

/// Announces to one tracker until cancelled: peers learnt go to `peers`.
async fn announce_loop(
    url: String,
    http: HttpClient,
    udp: Arc<UdpSockets>,
    mut req: AnnounceRequest,
    peers: mpsc::UnboundedSender<SocketAddr>,
) {
    let timeouts = AnnounceTimeouts::default();
    let mut wait = Duration::from_secs(15);
    loop {
        match announce_once(&http, &udp, &timeouts, &url, req.clone()).await {
            Ok(resp) => {
                for p in &resp.peers {
                    if let PeerAddr::Ip(addr) = p.addr {
                        let _ = peers.send(addr);
                    }
                }
                req.event = Event::None;
                // Asked again sooner than a download would: until the
                // metadata comes, new peers are all that matters.
                wait = resp
                    .interval
                    .clamp(Duration::from_secs(30), Duration::from_secs(300));
            }
            Err(e) => {
                tracing::warn!(tracker = %url, error = %e, "announce for metadata failed");
                wait = (wait * 2).min(Duration::from_secs(300));
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// A .torrent holding `info` (the info dictionary's bytes, kept exactly as
/// fetched, since they make the info-hash) and the trackers, one tier each.
pub fn torrent_bytes(info: &[u8], trackers: &[String]) -> Vec<u8> {
    // The outer dictionary is written by hand around the info bytes: encoding
    // a decoded copy could change them (keys out of order in the original).
    let mut out = b"d".to_vec();
    if let Some(first) = trackers.first() {
        out.extend_from_slice(b"8:announce");
        out.extend_from_slice(&OwnedValue::from(first.as_str()).to_bytes());
        let tiers = trackers
            .iter()
            .map(|t| OwnedValue::List(vec![OwnedValue::from(t.as_str())]))
            .collect();
        out.extend_from_slice(b"13:announce-list");
        out.extend_from_slice(&OwnedValue::List(tiers).to_bytes());
    }
    out.extend_from_slice(b"4:info");
    out.extend_from_slice(info);
    out.push(b'e');
    out
}
