//! A session: what every torrent of one program shares, and the torrents.
//!
//! A [`Session`] owns the peer id, the [`Listener`] (incoming connections
//! are routed by info-hash to its torrents), one HTTP client and one set of
//! UDP sockets for every tracker request, the read cache (one byte budget
//! for all torrents, each torrent's chunks under its own key), the limit on
//! peer connections across all torrents, and any number of torrents.
//! Torrents are added with [`Session::add`] (or [`Session::add_in`], for a
//! data folder the caller already locked), which checks the data as
//! [`Download::prepare_in`] does, and are then driven through a
//! [`TorrentHandle`]: [`pause`](TorrentHandle::pause),
//! [`resume`](TorrentHandle::resume), [`remove`](TorrentHandle::remove),
//! and [`snapshot`](TorrentHandle::snapshot) for what a display shows.
//!
//! # Tasks
//!
//! Every task is tracked. The session's `TaskTracker` holds one driver task
//! per torrent (`driver`); the listener's holds its accept loops and pending
//! handshakes; the UDP sockets' hold their receive tasks. Each run of a
//! torrent (from start or resume to pause, removal, completion or shutdown)
//! has a tracker of its own, for its connector, peers, piece verifications
//! and tracker tiers; [`Download::run`] returns only once all of them have
//! ended. Nothing is detached, and nothing is aborted without being waited
//! for.
//!
//! # Shutdown order
//!
//! [`Session::shutdown`]: no more torrents are added; every torrent's run
//! stops as a pause does (no new peers; peers told to disconnect; pieces
//! being written finish; resume data saved; `stopped` sent to the trackers
//! within the announcer's bounded wait; the run's tasks finished), and its
//! driver ends; then the listener closes (its tasks finished), then the UDP
//! sockets.
//!
//! # Locks
//!
//! The session's torrent table is a leaf lock (held only to insert, remove
//! or copy handles). A torrent's state lock comes before nothing; the read
//! cache's lock is a leaf lock, never held with a torrent's state lock.

mod driver;
mod handle;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rivulet_core::{InfoHash, Metainfo, PeerId};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::announce::HttpClient;
use crate::cache::{ReadCache, TorrentCache, TorrentKey};
use crate::dht::{DhtConfig, DhtHandle};
use crate::download::{Download, DownloadError, SeedPolicy, StartReport, TrackerClients};
use crate::encryption::Encryption;
use crate::folder::{DataFolder, FolderOptions};
use crate::listener::{ListenError, Listener};
use crate::metadata::{FetchEnv, FetchOptions, FetchProgress, MetadataError};
use crate::torrent::{Parts, Settings, TorrentConfig};
use crate::udp_port::PortSockets;
use crate::udp_socket::UdpSockets;

pub use handle::{PeerSnapshot, TorrentHandle, TorrentSnapshot, TorrentState};

/// Settings of a whole session (those of one torrent are a
/// [`TorrentConfig`]).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our peer id, for every torrent.
    pub peer_id: PeerId,
    /// The port to listen on for peers (the next free one when taken, see
    /// [`Listener::bind`]; 0: any free port); `None`: no listener, and
    /// trackers are told port 6881 (a session that only connects out).
    pub listen_port: Option<u16>,
    /// The local address to listen on and to connect and announce from;
    /// `None`: every address.
    pub bind: Option<IpAddr>,
    /// Bytes of piece data kept in the read cache, for all torrents.
    pub read_cache_bytes: usize,
    /// Most peer connections at once across all torrents (each torrent also
    /// has its own `max_peers`).
    pub max_connections: usize,
    /// Run a DHT node (on the listen port's number, over UDP) for the
    /// torrents that are not private, and for magnet links; `None`: no DHT.
    pub dht: Option<DhtConfig>,
    /// Local service discovery (BEP 14, multicast on the local network) for
    /// the torrents that are not private; needs a listener.
    pub lsd: bool,
    /// Whether peer connections are encrypted, both ways.
    pub encryption: Encryption,
    /// uTP (BEP 29) on the UDP port of the listen port's number, beside
    /// TCP: incoming uTP connections are taken, and a peer that TCP does
    /// not reach is tried over uTP.
    pub utp: bool,
    /// Try uTP before TCP for every peer (as libtorrent does); by default
    /// TCP comes first, uTP for the peers TCP does not reach.
    pub utp_first: bool,
    /// Bytes per second received by all torrents together (0: no limit);
    /// changed with [`Session::set_rate_limits`].
    pub download_limit: u64,
    /// Bytes per second sent by all torrents together (0: no limit).
    pub upload_limit: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            peer_id: PeerId::generate(),
            listen_port: Some(6881),
            bind: None,
            read_cache_bytes: 8 * 1024 * 1024,
            max_connections: 500,
            dht: None,
            lsd: false,
            encryption: Encryption::default(),
            utp: true,
            utp_first: false,
            download_limit: 0,
            upload_limit: 0,
        }
    }
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The listener could not bind.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The DHT's UDP socket could not bind.
    #[error("cannot open the DHT's UDP socket: {0}")]
    Dht(std::io::Error),
}

/// Why a torrent could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// Its data folder, or the check of its data, failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// The session already has a torrent with this info-hash.
    #[error("the torrent {} is already in this session", .0.to_hex())]
    Duplicate(InfoHash),
    /// The session is shutting down.
    #[error("the session is shutting down")]
    ShuttingDown,
}

/// How to add a torrent.
#[derive(Debug, Clone, Default)]
pub struct AddOptions {
    /// The torrent's own settings.
    pub config: TorrentConfig,
    /// What to do once the data is complete.
    pub seed: SeedPolicy,
    /// Peers to connect to besides those trackers name (also after a
    /// resume).
    pub peers: Vec<SocketAddr>,
    /// Add it paused: checked, but not started until resumed.
    pub paused: bool,
    /// The priority of each file, in the torrent's order: 0 not wanted
    /// (not downloaded, and not created unless it shares a piece's bytes
    /// with a wanted file, which then go to a part file), 1 to
    /// [`crate::picker::MAX_PRIORITY`] wanted, higher first. Empty, or
    /// files past its end: [`crate::picker::NORMAL_PRIORITY`].
    pub file_priorities: Vec<u8>,
}

/// A session: shared resources and torrents. Cheap to clone; the session
/// shuts its torrents down (without waiting) when the last clone is dropped,
/// [`Session::shutdown`] does it and waits.
#[derive(Debug, Clone)]
pub struct Session {
    inner: Arc<Inner>,
    _guard: Arc<DropGuard>,
}

/// What the session's torrents share; their driver tasks hold it.
#[derive(Debug)]
struct Inner {
    config: SessionConfig,
    listener: Option<Listener>,
    /// The DHT node, its task, and what stops it (after the torrents, at
    /// shutdown).
    dht: Option<DhtHandle>,
    /// The session's uTP endpoint, for outgoing connections.
    utp: Option<crate::utp::UtpSocket>,
    /// The DHT's task and the UDP port's.
    udp_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    dht_cancel: CancellationToken,
    trackers: TrackerClients,
    /// The session's rate limits, shared by every torrent.
    limits: crate::ratelimit::LimitPair,
    cache: Arc<Mutex<ReadCache>>,
    connections: Arc<crate::connlimit::ConnectionLimit>,
    torrents: Mutex<HashMap<TorrentKey, TorrentHandle>>,
    next_key: AtomicU64,
    /// One driver task per torrent.
    tasks: TaskTracker,
    /// Cancelled at shutdown: every driver stops its torrent and ends.
    cancel: CancellationToken,
}

impl crate::lsd::Torrents for Inner {
    fn announced(&self) -> Vec<InfoHash> {
        self.torrents()
            .values()
            .filter(|t| !t.is_private() && t.is_running())
            .map(TorrentHandle::info_hash)
            .collect()
    }

    fn peer(&self, info_hash: InfoHash, addr: SocketAddr) {
        for t in self.torrents().values() {
            if t.info_hash() == info_hash && !t.is_private() {
                t.add_peers([addr]);
            }
        }
    }
}

impl Inner {
    fn torrents(&self) -> MutexGuard<'_, HashMap<TorrentKey, TorrentHandle>> {
        // Plain bookkeeping: a panic while holding it leaves nothing half done.
        self.torrents.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Session {
    /// Starts a session: binds the listener (when `config.listen_port` says
    /// so) and sets up the tracker clients (built when first used). Must be called within a tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`SessionError::Listen`] when no port can be listened on.
    pub fn new(config: SessionConfig) -> Result<Self, SessionError> {
        let listener = match config.listen_port {
            Some(port) => Some(Listener::bind(config.bind, port, config.encryption)?),
            None => None,
        };
        let trackers = TrackerClients {
            http: HttpClient::new(config.bind),
            udp: Arc::new(UdpSockets::new(config.bind)),
        };
        let cancel = CancellationToken::new();
        let dht_cancel = CancellationToken::new();
        // The UDP port (the listen port's number), for the DHT and uTP.
        let udp_wanted = config.dht.is_some() || (listener.is_some() && config.utp);
        let sockets = match udp_wanted {
            true => {
                let port = listener.as_ref().map_or(0, Listener::port);
                match PortSockets::bind(config.bind, port) {
                    Ok(s) => Some(s),
                    // The DHT cannot do without it; uTP alone is left out.
                    Err(e) if config.dht.is_some() => return Err(SessionError::Dht(e)),
                    Err(e) => {
                        tracing::warn!(error = %e, "no UDP port: uTP is off");
                        None
                    }
                }
            }
            false => None,
        };
        let mut tasks = Vec::new();
        let (mut dht, mut utp) = (None, None);
        if let Some(sockets) = sockets {
            let (dht_tx, dht_rx) = mpsc::channel(1024);
            if let Some(c) = &config.dht {
                let (h, t) =
                    crate::dht::start(c.clone(), sockets.clone(), dht_rx, dht_cancel.clone());
                dht = Some(h);
                tasks.push(t);
            }
            let listen = config.utp && listener.is_some();
            let (socket, incoming, t) = crate::utp::start(
                sockets,
                listen,
                config.dht.as_ref().map(|_| dht_tx),
                dht_cancel.clone(),
            );
            tasks.push(t);
            if let Some(l) = &listener {
                if listen {
                    l.accept_utp(incoming);
                }
            }
            utp = config.utp.then_some(socket);
        }
        let inner = Arc::new(Inner {
            listener,
            dht,
            utp,
            udp_tasks: Mutex::new(tasks),
            dht_cancel,
            trackers,
            limits: crate::ratelimit::LimitPair::new(config.download_limit, config.upload_limit),
            cache: Arc::new(Mutex::new(ReadCache::new(config.read_cache_bytes))),
            connections: Arc::new(crate::connlimit::ConnectionLimit::new(
                config.max_connections,
            )),
            torrents: Mutex::default(),
            next_key: AtomicU64::new(1),
            tasks: TaskTracker::new(),
            cancel: cancel.clone(),
            config,
        });
        if inner.config.lsd {
            if let Some(l) = &inner.listener {
                let bind = match inner.config.bind {
                    Some(IpAddr::V4(ip)) => Some(ip),
                    _ => None,
                };
                // Not with a session bound to IPv6 only: BEP 14 is IPv4 here.
                if !matches!(inner.config.bind, Some(IpAddr::V6(_))) {
                    inner.tasks.spawn(crate::lsd::run(
                        Arc::downgrade(&inner),
                        bind,
                        l.port(),
                        inner.cancel.clone(),
                    ));
                }
            }
        }
        Ok(Session {
            inner,
            _guard: Arc::new(cancel.drop_guard()),
        })
    }

    /// The session's settings.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// The port we listen on (and tell trackers); without a listener, 6881.
    pub fn port(&self) -> u16 {
        self.inner.listener.as_ref().map_or(6881, Listener::port)
    }

    /// The addresses listened on (none without a listener).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.inner
            .listener
            .as_ref()
            .map_or(&[], |l| l.local_addrs())
    }

    /// The torrents of the session.
    pub fn torrents(&self) -> Vec<TorrentHandle> {
        self.inner.torrents().values().cloned().collect()
    }

    /// Adds `metainfo` with its data in `dir` (locked with
    /// [`DataFolder::open`] and default options), as [`Session::add_in`].
    pub async fn add(
        &self,
        metainfo: &Metainfo,
        dir: &Path,
        options: AddOptions,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<(TorrentHandle, StartReport), AddError> {
        let folder = DataFolder::open(metainfo, dir, &FolderOptions::default())
            .map_err(DownloadError::from)?;
        self.add_in(metainfo, folder, options, progress).await
    }

    /// Adds `metainfo` with its data in the locked `folder`: checks the data
    /// as [`Download::prepare_in`] does (`progress` sees the bytes checked),
    /// then starts it (unless `options.paused`). Returns once the check is
    /// done.
    pub async fn add_in(
        &self,
        metainfo: &Metainfo,
        folder: DataFolder,
        options: AddOptions,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<(TorrentHandle, StartReport), AddError> {
        let inner = &self.inner;
        if inner.cancel.is_cancelled() {
            return Err(AddError::ShuttingDown);
        }
        if self
            .torrents()
            .iter()
            .any(|t| t.info_hash() == metainfo.info_hash)
        {
            return Err(AddError::Duplicate(metainfo.info_hash));
        }
        let key = inner.next_key.fetch_add(1, Ordering::Relaxed);
        let parts = Parts {
            settings: Settings {
                peer_id: inner.config.peer_id,
                bind: inner.config.bind,
                listen_port: self.port(),
                dht: inner.dht.clone().filter(|_| !metainfo.info.private),
                encryption: inner.config.encryption,
                utp: inner.utp.clone(),
                utp_first: inner.config.utp_first,
                limits: crate::ratelimit::Limits {
                    torrent: crate::ratelimit::LimitPair::default(),
                    session: Some(inner.limits.clone()),
                },
                torrent: options.config.clone(),
            },
            cache: TorrentCache::new(Arc::clone(&inner.cache), key),
            connections: Some(Arc::clone(&inner.connections)),
            stats: Arc::default(),
            file_priorities: options.file_priorities.clone(),
        };
        let (download, report) = Download::prepare_parts(
            metainfo,
            folder,
            parts,
            Some(inner.trackers.clone()),
            progress,
        )
        .await?;
        let handle = {
            let mut torrents = inner.torrents();
            // Checked again: another add of the same torrent may have
            // finished its check meanwhile.
            if torrents
                .values()
                .any(|t| t.info_hash() == metainfo.info_hash)
            {
                return Err(AddError::Duplicate(metainfo.info_hash));
            }
            if inner.cancel.is_cancelled() {
                return Err(AddError::ShuttingDown);
            }
            let handle = TorrentHandle::new(key, &download, options.paused);
            torrents.insert(key, handle.clone());
            handle
        };
        for addr in &options.peers {
            let _ = download.peer_sender().send(*addr);
        }
        // The DHT nodes the torrent names help the node join (BEP 5).
        if let (Some(dht), false) = (&inner.dht, metainfo.info.private) {
            dht.add_nodes(&metainfo.nodes);
        }
        inner.tasks.spawn(driver::drive(
            Arc::clone(inner),
            download,
            handle.clone(),
            options,
        ));
        Ok((handle, report))
    }

    /// Fetches the info dictionary of `info_hash` from peers (BEP 9), for a
    /// magnet link: peers come from `options`' trackers (announced to with
    /// the session's clients) and addresses; see [`crate::metadata`]. Returns
    /// the verified bytes (their SHA-1 is `info_hash`) once had; `progress`
    /// sees how it goes about once a second.
    ///
    /// # Errors
    ///
    /// [`MetadataError::NoSources`] when `options` names no tracker and no
    /// peer; [`MetadataError::ShuttingDown`] when the session shuts down
    /// first.
    pub async fn fetch_metadata(
        &self,
        info_hash: InfoHash,
        options: FetchOptions,
        progress: &(dyn Fn(&FetchProgress) + Send + Sync),
    ) -> Result<Vec<u8>, MetadataError> {
        let inner = &self.inner;
        if inner.cancel.is_cancelled() {
            return Err(MetadataError::ShuttingDown);
        }
        let env = FetchEnv {
            peer_id: inner.config.peer_id,
            bind: inner.config.bind,
            port: self.port(),
            http: inner.trackers.http.clone(),
            udp: Arc::clone(&inner.trackers.udp),
            cancel: inner.cancel.clone(),
            dht: inner.dht.clone(),
            encryption: inner.config.encryption,
            utp: inner.utp.clone(),
        };
        crate::metadata::fetch(env, info_hash, options, progress).await
    }

    /// Stops every torrent cleanly (peers closed, resume data saved,
    /// `stopped` sent to trackers within the bounded wait), then the
    /// listener and the UDP sockets, and returns once every task of the
    /// session has ended. Torrents cannot be added any more.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.cancel.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
        if let Some(l) = &inner.listener {
            l.close().await;
        }
        inner.trackers.udp.close().await;
        // Last: the DHT saves its state as it ends, and the UDP port's
        // task stops.
        inner.dht_cancel.cancel();
        let tasks = std::mem::take(
            &mut *inner
                .udp_tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Changes the limits on bytes per second received and sent by all
    /// torrents together (0: no limit), at once.
    pub fn set_rate_limits(&self, download: u64, upload: u64) {
        self.inner.limits.set(download, upload);
    }

    /// The limits on bytes per second received and sent by all torrents
    /// together (0: no limit).
    pub fn rate_limits(&self) -> (u64, u64) {
        (self.inner.limits.down.rate(), self.inner.limits.up.rate())
    }

    /// Changes the most peer connections open at once across all torrents
    /// (at least 1). Connections open above a lowered limit stay until
    /// they end; no new one opens meanwhile.
    pub fn set_max_connections(&self, max: usize) {
        self.inner.connections.set_max(max);
    }

    /// The most peer connections open at once across all torrents, and
    /// how many are open now.
    pub fn connections(&self) -> (usize, usize) {
        (
            self.inner.connections.max(),
            self.inner.connections.in_use(),
        )
    }

    /// The session's DHT node, if it runs one.
    pub fn dht(&self) -> Option<&DhtHandle> {
        self.inner.dht.as_ref()
    }
}
