//! One torrent being downloaded: its settings ([`TorrentConfig`]), the state
//! its peer connections share ([`Shared`]) and how it ends ([`Outcome`],
//! [`TorrentError`]). Submodules add to [`Shared`]: `peers`, the peer
//! registry and upload slots (the interface a peer task uses to join, leave
//! and be choked); `verify`, piece verification and smart ban. The task
//! that keeps peers connected is [`crate::connector`], counters for
//! displays are [`crate::stats`]. Dependencies flow one way: `peer` and
//! `connector` use this module, which uses neither.
//!
//! Concurrency: the state lives behind one `std::sync::Mutex`, held only for
//! short bookkeeping (picking blocks, recording a received block), never across
//! an `.await` or while hashing or doing disk I/O. Hashing and writing a
//! complete piece run on tokio's blocking pool. Peer tasks talk to each other
//! only through the state and their command channels (`have`, `cancel`).
//!
//! Piece life: picked (buffer allocated) → blocks copied into the buffer →
//! complete → SHA-1 off the reactor → written → marked had (or, on a hash
//! failure, dropped and fetched again; its senders lose trust).

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rivulet_core::{Info, InfoHash, PeerId};
use rivulet_wire::Bitfield;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::cache::ReadCache;
use crate::choker::Choker;
use crate::picker::{PeerKey, PiecePicker};
use crate::resume::ResumeError;
use crate::stats::Stats;
use crate::storage::{Storage, StorageError};

mod link;
mod peers;
mod verify;

pub(crate) use link::PeerLink;
pub use peers::PeerCommand;
pub(crate) use peers::{PeerCounters, PeerEntry, RegisterRefusal};
use verify::FailedPiece;

/// Largest piece length a download accepts. Pieces are assembled in
/// memory until their hash is checked, so a torrent with huge pieces (its
/// format allows up to 1 GiB) would need that much per piece in progress;
/// such torrents are refused with a clear error until blocks are written as
/// they arrive.
pub const MAX_DOWNLOAD_PIECE_LENGTH: u64 = 64 * 1024 * 1024;

/// Most bytes of pieces in progress held in memory at once.
pub const MAX_BUFFERED_BYTES: u64 = 256 * 1024 * 1024;

/// Settings of a download.
#[derive(Debug, Clone)]
pub struct TorrentConfig {
    /// Most peer connections at once.
    pub max_peers: usize,
    /// Our peer id.
    pub peer_id: PeerId,
    /// Timeout for a TCP connect.
    pub connect_timeout: Duration,
    /// Timeout for the peer's handshake after connecting.
    pub handshake_timeout: Duration,
    /// A peer with requests outstanding that sends nothing for this long has
    /// its requests given to others.
    pub request_timeout: Duration,
    /// Most pieces in progress at once (bounds download buffer memory).
    pub max_pieces_in_progress: usize,
    /// The port we tell trackers we listen on.
    pub listen_port: u16,
    /// The local address for outgoing connections and tracker requests (and
    /// the one the listener binds to); `None`: any.
    pub bind: Option<IpAddr>,
    /// Regular upload slots (plus one optimistic unchoke).
    pub upload_slots: usize,
    /// Bytes of piece data kept in the read cache for serving.
    pub read_cache_bytes: usize,
}

impl Default for TorrentConfig {
    fn default() -> Self {
        TorrentConfig {
            max_peers: 50,
            peer_id: PeerId::generate(),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(20),
            max_pieces_in_progress: 16,
            listen_port: 6881,
            bind: None,
            upload_slots: crate::choker::DEFAULT_SLOTS,
            read_cache_bytes: 8 * 1024 * 1024,
        }
    }
}

pub(crate) struct State {
    pub picker: PiecePicker,
    pub have: Bitfield,
    /// Buffers of pieces in progress, allocated when a piece is first picked.
    pub buffers: HashMap<u32, Vec<u8>>,
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
    /// The state of a torrent with no peers yet.
    fn new(picker: PiecePicker, have: Bitfield, rng: StdRng, upload_slots: usize) -> State {
        State {
            picker,
            have,
            buffers: HashMap::new(),
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
fn new_picker(info: &Info, config: &TorrentConfig, have: &[bool], rng: &mut StdRng) -> PiecePicker {
    let piece_length = u32::try_from(info.piece_length).unwrap_or(u32::MAX);
    let mut picker = PiecePicker::new(
        piece_length,
        info.total_length(),
        |p| have.get(p as usize).copied().unwrap_or(false),
        rng,
    );
    // Pieces in progress are held whole in memory until verified: with
    // large pieces, fewer of them at once, so that at most
    // `MAX_BUFFERED_BYTES` are buffered (but always two, to keep peers busy).
    let by_memory = usize::try_from(MAX_BUFFERED_BYTES / info.piece_length.max(1))
        .unwrap_or(usize::MAX)
        .max(2);
    picker.set_max_in_progress(config.max_pieces_in_progress.min(by_memory));
    picker
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
    /// The tracker client could not be set up (its HTTP client).
    #[error("{0}")]
    Trackers(crate::announce::ClientError),
    /// A piece verification task on the blocking pool failed (it panicked:
    /// a bug).
    #[error("internal error: the piece verification task failed: {0}")]
    VerifyTask(tokio::task::JoinError),
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
    pub config: TorrentConfig,
    /// Where the data goes.
    pub storage: Arc<dyn Storage>,
    /// Counters.
    pub stats: Stats,
    pub(crate) state: Mutex<State>,
    outcome: watch::Sender<Outcome>,
    /// Set when the download is stopping: complete pieces are no longer
    /// verified or written, so that the final resume data describes files that
    /// nothing writes to any more.
    closing: AtomicBool,
    /// Pieces being hashed and written right now, and a wake-up for whoever
    /// waits for them to finish.
    in_flight: AtomicUsize,
    idle: Notify,
    /// Chunks of pieces recently read for peers.
    pub(crate) cache: Mutex<ReadCache>,
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

impl Shared {
    /// Shared state for `info`, with `have` the pieces already verified
    /// (resume data or a recheck).
    pub fn new(
        info: Arc<Info>,
        info_hash: InfoHash,
        config: TorrentConfig,
        storage: Arc<dyn Storage>,
        have: &[bool],
    ) -> Arc<Self> {
        let mut rng = StdRng::from_entropy();
        let span =
            tracing::info_span!("torrent", name = %info.name, hash = %&info_hash.to_hex()[..8]);
        let picker = new_picker(&info, &config, have, &mut rng);
        let stats = Stats::default();
        let verified: u64 = (0..info.num_pieces() as u32)
            .filter(|p| picker.have(*p))
            .map(|p| u64::from(picker.piece_len(p)))
            .sum();
        stats.verified_bytes.store(verified, Ordering::Relaxed);
        stats
            .pieces_done
            .store(u64::from(picker.have_count()), Ordering::Relaxed);
        let (outcome, _) = watch::channel(if picker.is_complete() {
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
            state: Mutex::new(State::new(picker, bits, rng, config.upload_slots)),
            cache: Mutex::new(ReadCache::new(config.read_cache_bytes)),
            config,
            outcome,
            closing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            shutdown: watch::channel(false).0,
            span,
        })
    }

    /// Stops verifying and writing pieces, and waits for those already being
    /// written. After this, the files change no more.
    pub async fn quiesce(&self) {
        self.closing.store(true, Ordering::SeqCst);
        loop {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Waits until no piece is being verified; returns whether it had to
    /// wait (tests that run peers in memory use it to know they are quiet).
    #[cfg(test)]
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
