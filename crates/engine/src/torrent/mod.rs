//! One torrent being downloaded: its settings ([`TorrentConfig`]), the state
//! its peer connections share ([`Shared`]) and how it ends ([`Outcome`],
//! [`TorrentError`]). Submodules add to [`Shared`]: `peers`, the peer
//! registry and upload slots (the interface a peer task uses to join, leave
//! and be choked); `verify`, piece verification and smart ban. The task
//! that keeps peers connected is [`crate::connector`], counters for
//! displays are [`crate::stats`]. Dependencies flow one way: `peer` and
//! `connector` use this module, which uses neither.
//!
//! Settings: [`TorrentConfig`] is what is chosen per torrent; [`Settings`]
//! adds what a torrent takes from its session (peer id, bind address,
//! listening port). A [`Shared`] serves one run of a torrent: stopping it
//! (pause, removal, the end of a download) retires it, and a later run
//! starts from [`Shared::renew`], with the same data, counters and cache.
//!
//! Tasks: every task of a run (peers, piece verification, the tracker
//! tiers) is spawned on the run's `TaskTracker` (`Shared::tasks`) and
//! watches its `CancellationToken`, so a stopped run leaves no task behind.
//!
//! Concurrency: the state lives behind one `std::sync::Mutex`, held only for
//! short bookkeeping (picking blocks, recording a received block), never across
//! an `.await` or while hashing or doing disk I/O. Hashing and writing a
//! complete piece run on tokio's blocking pool. Peer tasks talk to each other
//! only through the state and their command channels (`have`, `cancel`).
//!
//! Piece life: picked → each block written as it arrives and hashed as the
//! run of blocks from the piece's start grows (`disk`, off the reactor) →
//! all hashed → marked had (or, on a hash failure, fetched again; its
//! senders lose trust).

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::net::IpAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rivulet_core::{Info, InfoHash, PeerId};
use rivulet_wire::Bitfield;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::TorrentCache;
use crate::choker::Choker;
use crate::connlimit::ConnectionLimit;
use crate::picker::{piece_priorities, PeerKey, PiecePicker, MAX_PRIORITY, NORMAL_PRIORITY};
use crate::resume::ResumeError;
use crate::stats::Stats;
use crate::storage::{Storage, StorageError};

mod disk;
#[cfg(test)]
pub(crate) use disk::HOLD_AHEAD;
mod link;
mod peers;
mod verify;

pub(crate) use link::PeerLink;
pub use peers::PeerCommand;
pub(crate) use peers::{PeerCounters, PeerEntry, RegisterRefusal};
use verify::FailedPiece;

/// How long a peer task may go on once its torrent stops: a connected
/// peer ends at once (it is told to disconnect); one still connecting or
/// handshaking is dropped after this.
pub const PEER_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The session has no peer connection left (`SessionConfig::max_connections`
/// are all open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session has no peer connection left")]
pub(crate) struct NoConnectionLeft;

/// Settings of one torrent (those of the whole session, such as the peer
/// id, are in `SessionConfig`).
#[derive(Debug, Clone)]
pub struct TorrentConfig {
    /// Most peer connections at once.
    pub max_peers: usize,
    /// Timeout for a TCP connect.
    pub connect_timeout: Duration,
    /// Timeout for the peer's handshake after connecting.
    pub handshake_timeout: Duration,
    /// A peer with requests outstanding that sends nothing for this long has
    /// its requests given to others.
    pub request_timeout: Duration,
    /// Most pieces in progress at once, unless that is less than
    /// `min_bytes_in_progress`. Each piece in progress is a place where a
    /// stopped download leaves partial data to fetch again.
    pub max_pieces_in_progress: usize,
    /// With small pieces, as many pieces in progress as make this many
    /// bytes, whatever `max_pieces_in_progress` says: 16 pieces of 16 KiB
    /// would be 16 blocks in flight for all peers together. 100,000 pieces
    /// of 16 KiB from one libtorrent seeder took 0.79x the time with 1 MiB
    /// (64 pieces) than with 16 pieces; 4 MiB was faster still but took 33
    /// MiB of memory instead of 24 (more data in flight).
    pub min_bytes_in_progress: u64,
    /// Regular upload slots (plus one optimistic unchoke).
    pub upload_slots: usize,
    /// Exchange peers with peers (BEP 11 `ut_pex`); never for a private
    /// torrent, whatever this says.
    pub pex: bool,
}

impl Default for TorrentConfig {
    fn default() -> Self {
        TorrentConfig {
            max_peers: 50,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(20),
            max_pieces_in_progress: 16,
            min_bytes_in_progress: 1024 * 1024,
            upload_slots: crate::choker::DEFAULT_SLOTS,
            pex: true,
        }
    }
}

/// What a torrent runs with: its own [`TorrentConfig`] (reached through
/// `Deref`: `settings.max_peers`) and what it takes from its session.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our peer id (the session's).
    pub peer_id: PeerId,
    /// The local address for outgoing connections and tracker requests (and
    /// the one the listener binds to); `None`: any.
    pub bind: Option<IpAddr>,
    /// The port we tell trackers we listen on.
    pub listen_port: u16,
    /// The session's DHT node, for a torrent that may use it (not private):
    /// peers learn its port (BEP 5 `PORT`) and it learns theirs.
    pub dht: Option<crate::dht::DhtHandle>,
    /// Whether connections are encrypted (the session's policy).
    pub encryption: crate::encryption::Encryption,
    /// The session's uTP endpoint, for peers TCP does not reach.
    pub utp: Option<crate::utp::UtpSocket>,
    /// Try uTP before TCP for every peer.
    pub utp_first: bool,
    /// The rate limits its connections pay into (the torrent's and the
    /// session's), shared by every run.
    pub limits: crate::ratelimit::Limits,
    /// The torrent's own settings.
    pub torrent: TorrentConfig,
}

impl Settings {
    /// `torrent` outside a session: a fresh peer id, any address, port 6881.
    pub fn standalone(torrent: TorrentConfig) -> Self {
        Settings {
            peer_id: PeerId::generate(),
            bind: None,
            listen_port: 6881,
            dht: None,
            encryption: crate::encryption::Encryption::default(),
            utp: None,
            utp_first: false,
            limits: crate::ratelimit::Limits::default(),
            torrent,
        }
    }
}

impl Deref for Settings {
    type Target = TorrentConfig;

    fn deref(&self) -> &TorrentConfig {
        &self.torrent
    }
}

/// Bytes of the read cache of a torrent outside a session.
pub const STANDALONE_READ_CACHE: usize = 8 * 1024 * 1024;

/// What a torrent's [`Shared`] takes from outside it: settings, its view
/// of the read cache, the session's connection limit and the counters
/// (kept from one run to the next).
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    pub settings: Settings,
    pub cache: TorrentCache,
    pub connections: Option<Arc<ConnectionLimit>>,
    pub stats: Arc<Stats>,
    /// The priority of each file (0: not wanted); empty: every file normal.
    pub file_priorities: Vec<u8>,
}

impl Parts {
    /// The parts of a torrent outside a session: its own read cache, no
    /// connection limit beyond its own, fresh counters.
    pub(crate) fn standalone(settings: Settings) -> Self {
        Parts {
            settings,
            cache: TorrentCache::private(STANDALONE_READ_CACHE),
            connections: None,
            stats: Arc::default(),
            file_priorities: Vec::new(),
        }
    }
}

pub(crate) struct State {
    pub picker: PiecePicker,
    pub have: Bitfield,
    pub peers: HashMap<PeerKey, PeerEntry>,
    /// Address of every connection made, kept after it closes so that bad
    /// blocks it left behind can still be blamed on the right peer.
    pub addrs: HashMap<PeerKey, IpAddr>,
    next_key: PeerKey,
    pub banned: HashSet<IpAddr>,
    failed: HashMap<u32, Vec<FailedPiece>>,
    pub rng: StdRng,
    choker: Choker,
    /// Peers we unchoked (regular and optimistic slots).
    pub unchoked: HashSet<PeerKey>,
    last_rechoke: Instant,
}

impl State {
    /// Time since the choker last looked at the peers' rates.
    pub(crate) fn since_rechoke(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_rechoke)
    }

    /// The state of a torrent with no peers yet.
    fn new(picker: PiecePicker, have: Bitfield, rng: StdRng, upload_slots: usize) -> State {
        State {
            picker,
            have,
            peers: HashMap::new(),
            addrs: HashMap::new(),
            next_key: 0,
            banned: HashSet::new(),
            failed: HashMap::new(),
            rng,
            choker: Choker::new(upload_slots),
            unchoked: HashSet::new(),
            last_rechoke: Instant::now(),
        }
    }
}

/// The picker for `info` with the pieces in `have` already had, and as many
/// pieces in progress at once as the configuration and memory allow.
fn new_picker(info: &Info, config: &Settings, have: &[bool], rng: &mut StdRng) -> PiecePicker {
    let piece_length = u32::try_from(info.piece_length).unwrap_or(u32::MAX);
    let mut picker = PiecePicker::new(
        piece_length,
        info.total_length(),
        |p| have.get(p as usize).copied().unwrap_or(false),
        rng,
    );
    // Blocks go to disk as they arrive (`disk`): pieces in progress cost no
    // memory, whatever their size. Small pieces: enough of them for
    // `min_bytes_in_progress`.
    let by_bytes = usize::try_from(config.min_bytes_in_progress / u64::from(piece_length.max(1)))
        .unwrap_or(usize::MAX);
    picker.set_max_in_progress(config.max_pieces_in_progress.max(by_bytes));
    picker
}

/// One priority per file of `info`: `given`'s (capped at
/// [`MAX_PRIORITY`]), [`NORMAL_PRIORITY`] for files it has no entry for.
pub(crate) fn normal_file_priorities(info: &Info, given: &[u8]) -> Vec<u8> {
    (0..info.files.len())
        .map(|i| {
            given
                .get(i)
                .copied()
                .unwrap_or(NORMAL_PRIORITY)
                .min(MAX_PRIORITY)
        })
        .collect()
}

/// The priority of each piece of `info` for file priorities `files`.
fn piece_priorities_of(info: &Info, files: &[u8]) -> Vec<u8> {
    piece_priorities(info.layout(), files, |i| {
        info.files.get(i).is_some_and(|f| f.is_stored())
    })
}

/// What a completed download, or a failed one, ended with.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Still running.
    Running,
    /// Every piece verified and written.
    Complete,
    /// Stopped on an error that retrying cannot fix (disk full, unwritable
    /// file). Shared, since every subscriber of [`Shared::outcome`] sees it.
    Failed(Arc<TorrentError>),
}

// By hand: errors (I/O errors among them) have no equality. A failure
// equals itself, wherever the watch channel handed it; two failures, even
// with the same message, are not the same event.
impl PartialEq for Outcome {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Outcome::Running, Outcome::Running) | (Outcome::Complete, Outcome::Complete) => true,
            (Outcome::Failed(a), Outcome::Failed(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Outcome {}

/// Why a torrent stopped: an error that retrying cannot fix. Built where the
/// failure happens; the program shows its message as it is.
#[derive(Debug, thiserror::Error)]
pub enum TorrentError {
    /// The disk (or file system) holding the data or the resume file is full.
    #[error("disk full: {}: {error}", path.display())]
    DiskFull {
        /// The file being written.
        path: PathBuf,
        /// What the system answered (in the message, not a `source`, which
        /// would print it twice in error chains).
        error: std::io::Error,
    },
    /// A verified piece, or data flushed before a resume save, could not be
    /// written for another reason (permission denied, I/O error, ...).
    #[error("cannot write data: {0}")]
    Write(StorageError),
    /// Data we have could not be read back to serve a peer: a file was
    /// deleted, truncated or became unreadable since the check.
    #[error("cannot read data to serve peers: {0}")]
    Read(StorageError),
    /// Resume data could not be saved.
    #[error("{0}")]
    Resume(ResumeError),
    /// The task that writes and hashes received blocks failed (it panicked:
    /// a bug).
    #[error("internal error: the disk task failed: {0}")]
    DiskTask(tokio::task::JoinError),
    /// Blocks written a moment ago could not be read back to hash them.
    #[error("cannot read back data just written: {0}")]
    ReadBack(StorageError),
    /// [`crate::download::Download::run`] was called a second time.
    #[error("this download already ran")]
    AlreadyRan,
}

impl TorrentError {
    /// A failed write of piece data: [`TorrentError::DiskFull`] when the disk
    /// is full, else [`TorrentError::Write`].
    pub fn write(error: StorageError) -> Self {
        match error {
            StorageError::Io { path, error } if error.kind() == ErrorKind::StorageFull => {
                TorrentError::DiskFull { path, error }
            }
            other => TorrentError::Write(other),
        }
    }

    /// A failed resume save: [`TorrentError::DiskFull`] when the disk is
    /// full (writing the resume file or flushing the data before it),
    /// [`TorrentError::Write`] for another failure to flush the data, else
    /// [`TorrentError::Resume`].
    pub fn resume(error: ResumeError) -> Self {
        match error {
            ResumeError::Flush(e) => TorrentError::write(e),
            ResumeError::Write { path, error } | ResumeError::CreateFolder { path, error }
                if error.kind() == ErrorKind::StorageFull =>
            {
                TorrentError::DiskFull { path, error }
            }
            other => TorrentError::Resume(other),
        }
    }
}

/// State shared by the torrent's tasks.
pub struct Shared {
    /// The torrent's info dictionary.
    pub info: Arc<Info>,
    /// Its info-hash.
    pub info_hash: InfoHash,
    /// Settings.
    pub config: Settings,
    /// Where the data goes.
    pub storage: Arc<dyn Storage>,
    /// Counters (shared with the torrent's later runs).
    pub stats: Arc<Stats>,
    /// The priority of each file (0: not wanted), one per file.
    files: Mutex<Vec<u8>>,
    pub(crate) state: Mutex<State>,
    outcome: watch::Sender<Outcome>,
    /// Set when the download is stopping: complete pieces are no longer
    /// verified or written, so that the final resume data describes files that
    /// nothing writes to any more.
    closing: AtomicBool,
    /// Blocks queued to be written and hashed, and a wake-up for whoever
    /// waits for them to finish.
    in_flight: AtomicUsize,
    idle: Notify,
    /// Bytes of blocks in the disk queue, and a wake-up for peers waiting
    /// for it to drain.
    queued: AtomicUsize,
    drained: Notify,
    /// A piece was verified (wakes the flusher, `disk`).
    verified: Notify,
    /// A peer joined (wakes the run's once-a-second work, which sleeps
    /// while no peer is connected and nothing moves).
    pub(crate) peer_joined: Notify,
    /// Announces asked for now, counted (every tracker tier watches it).
    pub(crate) reannounce: tokio::sync::watch::Sender<u64>,
    /// The queues of the run's disk workers (`disk`), started with the
    /// first block; `None` before, and once closed.
    disk: Mutex<Option<Vec<std::sync::mpsc::Sender<disk::Job>>>>,
    /// Where peers learnt through PEX go: the connector's channel, set by
    /// the run (none outside one).
    pub(crate) pex_sink: Mutex<Option<tokio::sync::mpsc::UnboundedSender<std::net::SocketAddr>>>,
    /// Peers that PEX says take uTP (flag 0x04): tried over uTP first. At
    /// most [`MAX_UTP_HINTS`].
    utp_hints: Mutex<std::collections::HashSet<std::net::SocketAddr>>,
    /// Chunks of pieces recently read for peers: this torrent's view of the
    /// session's cache.
    pub(crate) cache: TorrentCache,
    /// Connections the whole session may still open (none: no limit beyond
    /// `max_peers`); each peer task holds a permit.
    pub(crate) connections: Option<Arc<ConnectionLimit>>,
    /// Every task of this run: peers, verifications, tracker tiers.
    pub(crate) tasks: TaskTracker,
    /// Cancelled when the run stops: tasks still going end (peers after
    /// [`PEER_CLOSE_GRACE`]).
    pub(crate) cancel: CancellationToken,
    /// Set when the torrent is shutting down: the connector and the listener
    /// stop taking peers.
    shutdown: watch::Sender<bool>,
    /// The tracing span of the torrent's tasks (peers are spans inside it).
    pub span: tracing::Span,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("info_hash", &self.info_hash)
            .finish()
    }
}

/// Most peers [`Shared`] remembers as taking uTP (as many as the connector
/// knows).
pub const MAX_UTP_HINTS: usize = 2000;

impl Shared {
    /// PEX says the peer at `addr` takes uTP.
    pub(crate) fn utp_hint(&self, addr: std::net::SocketAddr) {
        let mut hints = self.utp_hints.lock().unwrap_or_else(|e| e.into_inner());
        if hints.len() < MAX_UTP_HINTS {
            hints.insert(addr);
        }
    }

    /// The peer at `addr` did not answer over uTP after all.
    pub(crate) fn utp_unhint(&self, addr: std::net::SocketAddr) {
        self.utp_hints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&addr);
    }

    /// Whether PEX said the peer at `addr` takes uTP.
    pub(crate) fn utp_hinted(&self, addr: std::net::SocketAddr) -> bool {
        self.utp_hints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&addr)
    }

    /// Shared state for `info` outside a session (its own peer id and read
    /// cache, see [`Settings::standalone`]), with `have` the pieces already
    /// verified (resume data or a recheck).
    pub fn new(
        info: Arc<Info>,
        info_hash: InfoHash,
        config: TorrentConfig,
        storage: Arc<dyn Storage>,
        have: &[bool],
    ) -> Arc<Self> {
        let parts = Parts::standalone(Settings::standalone(config));
        Shared::build(info, info_hash, parts, storage, have)
    }

    /// A fresh run of the same torrent: same data, settings, cache and
    /// counters; the pieces had now; new peer registry, tasks and outcome.
    pub fn renew(&self) -> Arc<Self> {
        let parts = Parts {
            settings: self.config.clone(),
            cache: self.cache.clone(),
            connections: self.connections.clone(),
            stats: Arc::clone(&self.stats),
            file_priorities: self.file_priorities(),
        };
        // Counters of peers describe the run that ended (all its peers are
        // gone); the totals go on.
        self.stats.peers_known.store(0, Ordering::Relaxed);
        let have = self.have_pieces();
        Shared::build(
            Arc::clone(&self.info),
            self.info_hash,
            parts,
            Arc::clone(&self.storage),
            &have,
        )
    }

    pub(crate) fn build(
        info: Arc<Info>,
        info_hash: InfoHash,
        parts: Parts,
        storage: Arc<dyn Storage>,
        have: &[bool],
    ) -> Arc<Self> {
        let Parts {
            settings: config,
            cache,
            connections,
            stats,
            file_priorities,
        } = parts;
        let mut rng = StdRng::from_entropy();
        let span =
            tracing::info_span!("torrent", name = %info.name, hash = %&info_hash.to_hex()[..8]);
        let mut picker = new_picker(&info, &config, have, &mut rng);
        let files = normal_file_priorities(&info, &file_priorities);
        if files.iter().any(|p| *p != NORMAL_PRIORITY) {
            picker.set_priorities(&piece_priorities_of(&info, &files));
        }
        let verified: u64 = (0..info.num_pieces() as u32)
            .filter(|p| picker.have(*p))
            .map(|p| u64::from(picker.piece_len(p)))
            .sum();
        stats.verified_bytes.store(verified, Ordering::Relaxed);
        stats
            .pieces_done
            .store(u64::from(picker.have_count()), Ordering::Relaxed);
        stats.publish_wanted(&picker);
        let (outcome, _) = watch::channel(if picker.is_done() {
            Outcome::Complete
        } else {
            Outcome::Running
        });
        let mut bits = Bitfield::new(info.num_pieces());
        for (i, h) in have.iter().enumerate() {
            if *h {
                bits.set(i);
            }
        }
        Arc::new(Shared {
            info,
            info_hash,
            storage,
            stats,
            files: Mutex::new(files),
            state: Mutex::new(State::new(picker, bits, rng, config.upload_slots)),
            cache,
            connections,
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            config,
            outcome,
            closing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            queued: AtomicUsize::new(0),
            drained: Notify::new(),
            verified: Notify::new(),
            peer_joined: Notify::new(),
            reannounce: tokio::sync::watch::Sender::new(0),
            disk: Mutex::new(None),
            pex_sink: Mutex::new(None),
            utp_hints: Mutex::default(),
            shutdown: watch::channel(false).0,
            span,
        })
    }

    /// Stops verifying and writing pieces, and waits for those already being
    /// written. After this, the files change no more.
    pub async fn quiesce(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.close_disk();
        self.settled().await;
    }

    /// Waits until no block is waiting to be written and hashed; returns
    /// whether it had to wait (tests that run peers in memory use it to know
    /// they are quiet).
    pub(crate) async fn settled(&self) -> bool {
        let mut waited = false;
        loop {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return waited;
            }
            waited = true;
            idle.await;
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the state is still the best
        // information there is, so carry on with it rather than poisoning every task.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How the download stands.
    pub fn outcome(&self) -> watch::Receiver<Outcome> {
        self.outcome.subscribe()
    }

    /// The pieces verified so far.
    pub fn have_pieces(&self) -> Vec<bool> {
        let state = self.lock();
        (0..self.info.num_pieces())
            .map(|p| state.have.get(p))
            .collect()
    }

    /// Whether this address is banned.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.lock().banned.contains(&ip)
    }

    /// Asks the connector and the listener to stop taking peers.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Whether [`Shared::shut_down`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Watches [`Shared::shut_down`]: turns `true` when it is called.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// The length of piece `piece` in bytes (the last one may be short).
    pub fn piece_len(&self, piece: u32) -> u32 {
        let info = &self.info;
        let start = u64::from(piece) * info.piece_length;
        let len = info
            .total_length()
            .saturating_sub(start)
            .min(info.piece_length);
        u32::try_from(len).unwrap_or(u32::MAX)
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.lock().picker.is_complete()
    }

    /// Whether every wanted piece is verified (see
    /// [`Shared::set_file_priorities`]).
    pub fn is_done(&self) -> bool {
        self.lock().picker.is_done()
    }

    /// The priority of each file (0: not wanted).
    pub fn file_priorities(&self) -> Vec<u8> {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets the priority of each file (0: not wanted, up to
    /// [`MAX_PRIORITY`]; missing entries are normal): files newly wanted
    /// that were kept in the part file are created first (blocking I/O:
    /// call from a blocking thread), then the picker starts the pieces of
    /// wanted files only, highest priority first, and peers decide again
    /// whether they are interested. A download done before and wanting
    /// more runs again; one that now has every wanted piece is done.
    pub fn set_file_priorities(&self, priorities: &[u8]) -> Result<(), StorageError> {
        let files = normal_file_priorities(&self.info, priorities);
        for (i, p) in files.iter().enumerate() {
            if *p > 0 && self.storage.in_part_file(i) {
                self.storage.want_file(i)?;
            }
        }
        let pieces = piece_priorities_of(&self.info, &files);
        *self.files.lock().unwrap_or_else(|e| e.into_inner()) = files;
        let mut state = self.lock();
        state.picker.set_priorities(&pieces);
        self.stats.publish_wanted(&state.picker);
        let done = state.picker.is_done();
        for entry in state.peers.values() {
            let _ = entry.tx.send(PeerCommand::WantedChanged);
        }
        drop(state);
        if done {
            self.finish(Outcome::Complete);
        } else {
            self.outcome.send_if_modified(|o| {
                if *o == Outcome::Complete {
                    *o = Outcome::Running;
                    true
                } else {
                    false
                }
            });
        }
        Ok(())
    }

    /// Runs a peer connection (`fut`) as a task of this run, holding
    /// `permit` (a session connection) until it ends. When the run stops,
    /// the task gets [`PEER_CLOSE_GRACE`] to end by itself (a connected
    /// peer is told to disconnect and does at once), then is dropped.
    pub(crate) fn spawn_peer<F>(&self, fut: F, permit: Option<OwnedSemaphorePermit>)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if self.cancel.is_cancelled() {
            // The run has ended (an incoming connection routed just before
            // its end): the connection is dropped, never started.
            return;
        }
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            let _permit = permit;
            tokio::pin!(fut);
            tokio::select! {
                () = &mut fut => {}
                () = cancel.cancelled() => {
                    let _ = tokio::time::timeout(PEER_CLOSE_GRACE, fut).await;
                }
            }
        });
    }

    /// A session connection for a new peer: `Ok(None)` outside a session
    /// (no limit but `max_peers`).
    pub(crate) fn connection_permit(
        &self,
    ) -> Result<Option<OwnedSemaphorePermit>, NoConnectionLeft> {
        match &self.connections {
            None => Ok(None),
            Some(s) => s.try_acquire().map(Some).ok_or(NoConnectionLeft),
        }
    }

    /// Connections the session may still open (`usize::MAX` outside one).
    pub(crate) fn connections_left(&self) -> usize {
        self.connections.as_ref().map_or(usize::MAX, |s| s.left())
    }

    /// Ends the run's tasks: cancels them, then waits until every one has
    /// finished (peers within [`PEER_CLOSE_GRACE`]; the caller bounds the
    /// tracker tiers' farewell).
    pub(crate) async fn finish_tasks(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn finish(&self, outcome: Outcome) {
        self.outcome.send_if_modified(|o| {
            if *o == Outcome::Running {
                *o = outcome;
                true
            } else {
                false
            }
        });
    }

    /// Stops the download, or the seeding after it, with an error (the
    /// first one: later ones are often its consequences).
    pub fn fail(&self, error: TorrentError) {
        self.outcome.send_if_modified(|o| {
            if matches!(o, Outcome::Failed(_)) {
                false
            } else {
                *o = Outcome::Failed(Arc::new(error));
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the program prints when a torrent stops: a full disk says so
    /// wherever it happened, other failures say what was being done, and
    /// the cause is in the message only (no `source` to print it twice).
    #[test]
    fn torrent_errors_say_what_failed() {
        let full = || std::io::Error::from_raw_os_error(28);
        let denied = || std::io::Error::from(ErrorKind::PermissionDenied);
        let io = |path: &str, error| StorageError::Io {
            path: PathBuf::from(path),
            error,
        };
        let cases = [
            (
                TorrentError::write(io("/d/t/a", full())),
                format!("disk full: /d/t/a: {}", full()),
            ),
            (
                TorrentError::write(io("/d/t/a", denied())),
                format!("cannot write data: /d/t/a: {}", denied()),
            ),
            (
                TorrentError::resume(ResumeError::Flush(io("/d/t/b", full()))),
                format!("disk full: /d/t/b: {}", full()),
            ),
            (
                TorrentError::resume(ResumeError::Flush(io("/d/t/b", denied()))),
                format!("cannot write data: /d/t/b: {}", denied()),
            ),
            (
                TorrentError::resume(ResumeError::Write {
                    path: PathBuf::from("/d/.rivulet/h.resume"),
                    error: full(),
                }),
                format!("disk full: /d/.rivulet/h.resume: {}", full()),
            ),
            (
                TorrentError::resume(ResumeError::Write {
                    path: PathBuf::from("/d/.rivulet/h.resume"),
                    error: denied(),
                }),
                format!(
                    "cannot write resume file /d/.rivulet/h.resume: {}",
                    denied()
                ),
            ),
            (
                TorrentError::resume(ResumeError::CreateFolder {
                    path: PathBuf::from("/d/.rivulet"),
                    error: denied(),
                }),
                format!(
                    "cannot create the folder /d/.rivulet for resume data: {}",
                    denied()
                ),
            ),
            (
                TorrentError::Read(io("/d/t/a", std::io::Error::from(ErrorKind::NotFound))),
                format!(
                    "cannot read data to serve peers: /d/t/a: {}",
                    std::io::Error::from(ErrorKind::NotFound)
                ),
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
            assert!(std::error::Error::source(&error).is_none(), "{error}");
        }
        assert!(full().to_string().contains("No space left on device"));
    }

    #[test]
    fn a_failure_equals_only_itself() {
        let failed = Outcome::Failed(Arc::new(TorrentError::AlreadyRan));
        assert_eq!(failed, failed.clone());
        assert_ne!(failed, Outcome::Failed(Arc::new(TorrentError::AlreadyRan)));
        assert_ne!(failed, Outcome::Running);
        assert_eq!(Outcome::Complete, Outcome::Complete);
        assert_ne!(Outcome::Complete, Outcome::Running);
    }

    /// A torrent of one 4-byte file.
    fn tiny_info() -> Info {
        use rivulet_bencode::OwnedValue as V;
        let info = V::dict()
            .with("name", "t".into())
            .with("piece length", V::Int(16384))
            .with("pieces", V::Bytes(vec![0; 20]))
            .with("length", V::Int(4));
        rivulet_core::Metainfo::from_bytes(&V::dict().with("info", info).to_bytes())
            .unwrap()
            .info
    }

    /// The first failure is the one reported: later ones (a resume save
    /// after a full disk) are usually its consequences.
    #[test]
    fn the_first_failure_stays() {
        let storage = Arc::new(crate::storage::MemoryStorage::new(16384, 4));
        let shared = Shared::new(
            Arc::new(tiny_info()),
            InfoHash([0; 20]),
            TorrentConfig::default(),
            storage,
            &[false],
        );
        let outcome = shared.outcome();
        shared.fail(TorrentError::AlreadyRan);
        shared.fail(TorrentError::Read(StorageError::OutOfRange {
            piece: 0,
            begin: 0,
            len: 0,
        }));
        let now = outcome.borrow().clone();
        match now {
            Outcome::Failed(e) => assert!(matches!(*e, TorrentError::AlreadyRan), "{e}"),
            other => panic!("not failed: {other:?}"),
        }
    }
}
