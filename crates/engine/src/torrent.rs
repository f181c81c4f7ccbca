//! One torrent being downloaded: the state its peer connections share and
//! piece verification. The task that keeps peers connected is in
//! [`crate::connector`].
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
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rivulet_core::{Info, InfoHash, PeerId};
use rivulet_wire::Bitfield;
use sha1::{Digest, Sha1};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::cache::ReadCache;
use crate::choker::{self, Choker};
use crate::picker::{PeerKey, PiecePicker, BLOCK_LEN};
use crate::resume::ResumeError;
use crate::stats::Stats;
use crate::storage::{Storage, StorageError};

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

/// Commands to one peer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerCommand {
    /// We completed this piece: tell the peer.
    Have(u32),
    /// Another peer delivered this block first: cancel our request.
    Cancel(crate::picker::Block),
    /// Close the connection (banned, or the download is over).
    Disconnect,
    /// The choker took this peer's upload slot.
    Choke,
    /// The choker gave this peer an upload slot.
    Unchoke,
}

/// What a peer connection publishes for the choker, without taking the lock.
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    /// Payload bytes received from the peer (blocks we needed).
    pub down: AtomicU64,
    /// Payload bytes sent to the peer.
    pub up: AtomicU64,
    /// The peer is interested in what we have.
    pub interested: AtomicBool,
}

pub(crate) struct PeerEntry {
    pub addr: SocketAddr,
    pub peer_id: PeerId,
    pub incoming: bool,
    pub tx: mpsc::UnboundedSender<PeerCommand>,
    pub counters: Arc<PeerCounters>,
    pub connected_at: Instant,
    /// `counters` at the last rechoke, for the rates over the interval.
    last_down: u64,
    last_up: u64,
}

/// Why a handshaken connection was not taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegisterRefusal {
    /// Already connected to this peer id.
    Duplicate,
    /// The peer's address is banned.
    Banned,
    /// No room for another incoming connection.
    Full,
    /// The torrent is shutting down.
    Closing,
}

/// A piece that failed its hash check: who sent which block, and that block's
/// SHA-1, so that once a good copy arrives the sender of each differing block
/// can be named (libtorrent's "smart ban").
struct FailedPiece {
    /// (block index, sender, SHA-1 of what it sent).
    blocks: Vec<(usize, IpAddr, [u8; 20])>,
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
    /// The tracker client could not be set up (its HTTP client; announce
    /// errors are reported as text by [`crate::announce`]).
    #[error("{0}")]
    Trackers(String),
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
        let piece_length = u32::try_from(info.piece_length).unwrap_or(u32::MAX);
        let mut picker = PiecePicker::new(
            piece_length,
            info.total_length(),
            |p| have.get(p as usize).copied().unwrap_or(false),
            &mut rng,
        );
        // Pieces in progress are held whole in memory until verified: with
        // large pieces, fewer of them at once, so that at most
        // `MAX_BUFFERED_BYTES` are buffered (but always two, to keep peers busy).
        let by_memory = usize::try_from(MAX_BUFFERED_BYTES / info.piece_length.max(1))
            .unwrap_or(usize::MAX)
            .max(2);
        picker.set_max_in_progress(config.max_pieces_in_progress.min(by_memory));
        let mut bits = Bitfield::new(info.num_pieces());
        for (i, h) in have.iter().enumerate() {
            if *h {
                bits.set(i);
            }
        }
        let verified: u64 = (0..info.num_pieces() as u32)
            .filter(|p| picker.have(*p))
            .map(|p| u64::from(picker.piece_len(p)))
            .sum();
        let complete = picker.is_complete();
        let stats = Stats::default();
        stats.verified_bytes.store(verified, Ordering::Relaxed);
        stats
            .pieces_done
            .store(u64::from(picker.have_count()), Ordering::Relaxed);
        let (outcome, _) = watch::channel(if complete {
            Outcome::Complete
        } else {
            Outcome::Running
        });
        Arc::new(Shared {
            info,
            info_hash,
            storage,
            stats,
            state: Mutex::new(State {
                picker,
                have: bits,
                buffers: HashMap::new(),
                peers: HashMap::new(),
                addrs: HashMap::new(),
                next_key: 0,
                banned: HashSet::new(),
                failed: HashMap::new(),
                rng,
                choker: Choker::new(config.upload_slots),
                unchoked: HashSet::new(),
                last_rechoke: Instant::now(),
            }),
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

    /// Takes on a handshaken connection: it gets a key and a command channel,
    /// unless it duplicates a connection we have, its address is banned, or
    /// (for an incoming one) the torrent has no room.
    pub(crate) fn register(
        &self,
        addr: SocketAddr,
        peer_id: PeerId,
        incoming: bool,
    ) -> Result<
        (
            PeerKey,
            mpsc::UnboundedReceiver<PeerCommand>,
            Arc<PeerCounters>,
        ),
        RegisterRefusal,
    > {
        if self.is_shutting_down() {
            return Err(RegisterRefusal::Closing);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.lock();
        if state.banned.contains(&addr.ip()) {
            return Err(RegisterRefusal::Banned);
        }
        // Two peers that connect to each other at once end up with two
        // connections. Both sides must keep the same one, or each drops the
        // one the other kept: the one opened by the lower peer id survives
        // (as in libtorrent). A second connection in the same direction is
        // refused; the first may still be working.
        if let Some((&old_key, old)) = state.peers.iter().find(|(_, p)| p.peer_id == peer_id) {
            let ours = self.config.peer_id.as_bytes();
            let theirs = peer_id.as_bytes();
            let new_preferred = if incoming {
                theirs < ours
            } else {
                ours < theirs
            };
            if old.incoming == incoming || !new_preferred {
                return Err(RegisterRefusal::Duplicate);
            }
            tracing::debug!(addr = %old.addr, "crossing connections: closing ours in favour of the one the lower peer id opened");
            let _ = old.tx.send(PeerCommand::Disconnect);
            // Its slot is free now, whatever its task does before it exits.
            state.unchoked.remove(&old_key);
        }
        if incoming && state.peers.len() >= self.config.max_peers {
            return Err(RegisterRefusal::Full);
        }
        let key = state.next_key;
        state.next_key = state.next_key.wrapping_add(1);
        let counters = Arc::new(PeerCounters::default());
        state.peers.insert(
            key,
            PeerEntry {
                addr,
                peer_id,
                incoming,
                tx,
                counters: Arc::clone(&counters),
                connected_at: Instant::now(),
                last_down: 0,
                last_up: 0,
            },
        );
        state.addrs.insert(key, addr.ip());
        self.stats.peers_connected.fetch_add(1, Ordering::Relaxed);
        if incoming {
            self.stats.peers_incoming.fetch_add(1, Ordering::Relaxed);
        }
        Ok((key, rx, counters))
    }

    /// Forgets a peer: its requests go back to the pool, its pieces no longer
    /// count towards availability, and its upload slot is free.
    pub(crate) fn unregister(&self, key: PeerKey, bits: Option<&Bitfield>, seed: bool) {
        let mut state = self.lock();
        if let Some(entry) = state.peers.remove(&key) {
            self.stats.peers_connected.fetch_sub(1, Ordering::Relaxed);
            if entry.incoming {
                self.stats.peers_incoming.fetch_sub(1, Ordering::Relaxed);
            }
        }
        state.unchoked.remove(&key);
        self.count_serving(&state);
        Self::prune_addrs(&mut state);
        state.picker.on_peer_requests_dropped(key);
        if seed {
            state.picker.remove_seed();
        } else if let Some(bits) = bits {
            state
                .picker
                .remove_peer_pieces(bits.ones().map(|p| p as u32));
        }
    }

    /// Forgets the addresses of closed connections that no block in progress
    /// came from (nothing left to blame them for), so that a long session
    /// does not keep one entry per connection it ever had.
    fn prune_addrs(state: &mut State) {
        if state.addrs.len() <= state.peers.len() {
            return;
        }
        let senders = state.picker.all_senders();
        let peers = &state.peers;
        state
            .addrs
            .retain(|k, _| peers.contains_key(k) || senders.contains(k));
    }

    fn count_serving(&self, state: &State) {
        let serving = state
            .unchoked
            .iter()
            .filter_map(|k| state.peers.get(k))
            .filter(|e| e.counters.interested.load(Ordering::Relaxed))
            .count();
        self.stats.peers_serving.store(serving, Ordering::Relaxed);
    }

    /// A peer said it is interested: if a regular upload slot is free, it gets
    /// it now rather than at the next rechoke (up to 10 s away). Returns
    /// whether the peer is unchoked.
    pub(crate) fn on_peer_interested(&self, key: PeerKey) -> bool {
        let mut state = self.lock();
        let unchoked = if state.unchoked.contains(&key) {
            true
        } else if state.unchoked.len() < self.config.upload_slots {
            state.unchoked.insert(key);
            true
        } else {
            false
        };
        self.count_serving(&state);
        unchoked
    }

    /// A peer lost interest: its slot goes to someone who wants it. Returns
    /// whether it was unchoked (and must now be choked).
    pub(crate) fn on_peer_not_interested(&self, key: PeerKey) -> bool {
        let mut state = self.lock();
        let was = state.unchoked.remove(&key);
        self.count_serving(&state);
        was
    }

    /// Re-evaluates who gets the upload slots (BEP 3 choking): the best rates
    /// over the last interval (the rate a peer gives us while we download, the
    /// rate we reach to it while we seed) plus one optimistic unchoke, and
    /// tells the peers whose status changes.
    pub fn rechoke(&self) {
        let mut state = self.lock();
        let state = &mut *state;
        let now = Instant::now();
        let elapsed = now
            .duration_since(state.last_rechoke)
            .as_secs_f64()
            .max(0.001);
        state.last_rechoke = now;
        let seeding = state.picker.is_complete();
        let candidates: Vec<choker::Candidate> = state
            .peers
            .iter_mut()
            .map(|(key, e)| {
                let down = e.counters.down.load(Ordering::Relaxed);
                let up = e.counters.up.load(Ordering::Relaxed);
                let bytes = if seeding {
                    up.saturating_sub(e.last_up)
                } else {
                    down.saturating_sub(e.last_down)
                };
                e.last_down = down;
                e.last_up = up;
                choker::Candidate {
                    key: *key,
                    interested: e.counters.interested.load(Ordering::Relaxed),
                    rate: bytes as f64 / elapsed,
                    new: now.duration_since(e.connected_at) < Duration::from_secs(60),
                }
            })
            .collect();
        let unchoke: HashSet<PeerKey> = state
            .choker
            .rechoke(&candidates, &mut state.rng)
            .into_iter()
            .collect();
        for key in state.unchoked.difference(&unchoke) {
            if let Some(e) = state.peers.get(key) {
                let _ = e.tx.send(PeerCommand::Choke);
            }
        }
        for key in unchoke.difference(&state.unchoked) {
            if let Some(e) = state.peers.get(key) {
                let _ = e.tx.send(PeerCommand::Unchoke);
            }
        }
        state.unchoked = unchoke;
        self.count_serving(state);
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

    /// Asks every peer connection to close.
    pub fn disconnect_all(&self) {
        let state = self.lock();
        for entry in state.peers.values() {
            let _ = entry.tx.send(PeerCommand::Disconnect);
        }
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

    /// Copies a received block into its piece buffer. Returns the buffer when
    /// the piece is complete (the caller then verifies it).
    pub(crate) fn store_block(state: &mut State, piece: u32, begin: u32, data: &[u8]) {
        let len = state.picker.piece_len(piece) as usize;
        let buf = state.buffers.entry(piece).or_insert_with(|| vec![0; len]);
        if let Some(dest) = buf.get_mut(begin as usize..begin as usize + data.len()) {
            dest.copy_from_slice(data);
        }
    }

    /// Hashes a complete piece on the blocking pool, writes it if good, and
    /// records the result.
    pub(crate) fn verify_piece(self: &Arc<Self>, piece: u32, buf: Vec<u8>) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.closing.load(Ordering::SeqCst) {
            // Stopping: the piece is dropped (and fetched again next time).
            self.lock().picker.on_piece_failed(piece);
            self.piece_done();
            return;
        }
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let expected = shared.info.pieces.get(piece as usize).copied();
            let storage = Arc::clone(&shared.storage);
            let result = tokio::task::spawn_blocking(move || {
                let ok = expected.is_some_and(|e| Sha1::digest(&buf).as_slice() == e);
                let written = if ok {
                    storage.write(piece, 0, &buf)
                } else {
                    Ok(())
                };
                (ok, written, buf)
            })
            .await;
            match result {
                Ok((true, Ok(()), buf)) => shared.piece_verified(piece, &buf),
                Ok((true, Err(e), _)) => shared.fail(TorrentError::write(e)),
                Ok((false, _, buf)) => shared.piece_failed(piece, &buf),
                Err(e) => shared.fail(TorrentError::VerifyTask(e)),
            }
            shared.piece_done();
        });
    }

    fn piece_done(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn piece_verified(&self, piece: u32, buf: &[u8]) {
        let mut state = self.lock();
        state.picker.on_piece_verified(piece);
        state.have.set(piece as usize);
        self.stats.pieces_done.fetch_add(1, Ordering::Relaxed);
        self.stats
            .verified_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        // Smart ban: compare each block of earlier bad copies with the good one.
        if let Some(failures) = state.failed.remove(&piece) {
            let mut culprits = HashSet::new();
            for failure in failures {
                for (i, ip, hash) in &failure.blocks {
                    let start = i * BLOCK_LEN as usize;
                    let good = buf.get(start..(start + BLOCK_LEN as usize).min(buf.len()));
                    if good.is_some_and(|g| Sha1::digest(g).as_slice() != hash) {
                        culprits.insert(*ip);
                    }
                }
            }
            for ip in culprits {
                self.ban(&mut state, ip);
            }
        }
        for entry in state.peers.values() {
            let _ = entry.tx.send(PeerCommand::Have(piece));
        }
        Self::prune_addrs(&mut state);
        if state.picker.is_complete() {
            drop(state);
            self.finish(Outcome::Complete);
        }
    }

    fn piece_failed(&self, piece: u32, buf: &[u8]) {
        self.stats.hash_failures.fetch_add(1, Ordering::Relaxed);
        self.stats
            .wasted
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.stats
            .downloaded
            .fetch_sub(buf.len() as u64, Ordering::Relaxed);
        let mut state = self.lock();
        let senders = state.picker.block_senders(piece);
        state.picker.on_piece_failed(piece);
        let blocks: Vec<Option<IpAddr>> = senders
            .iter()
            .map(|s| s.and_then(|k| state.addrs.get(&k).copied()))
            .collect();
        let distinct: HashSet<IpAddr> = blocks.iter().flatten().copied().collect();
        let all_known = blocks.iter().all(Option::is_some);
        if distinct.len() == 1 && all_known {
            // One sender for the whole piece: it alone sent bad data.
            if let Some(ip) = distinct.into_iter().next() {
                self.ban(&mut state, ip);
            }
        } else {
            // Several senders: remember who sent what, and name the culprit
            // once a good copy arrives (block by block). Nobody is punished
            // on suspicion: an honest peer shares pieces with liars too.
            let record = FailedPiece {
                blocks: blocks
                    .iter()
                    .enumerate()
                    .filter_map(|(i, ip)| {
                        let start = i * BLOCK_LEN as usize;
                        let block = buf.get(start..(start + BLOCK_LEN as usize).min(buf.len()))?;
                        Some((i, (*ip)?, Sha1::digest(block).into()))
                    })
                    .collect(),
            };
            state.failed.entry(piece).or_default().push(record);
        }
        Self::prune_addrs(&mut state);
    }

    fn ban(&self, state: &mut State, ip: IpAddr) {
        if state.banned.insert(ip) {
            self.stats.peers_banned.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%ip, "banned for sending bad data");
        }
        for entry in state.peers.values().filter(|e| e.addr.ip() == ip) {
            let _ = entry.tx.send(PeerCommand::Disconnect);
        }
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
        shared.fail(TorrentError::Trackers("second".into()));
        let now = outcome.borrow().clone();
        match now {
            Outcome::Failed(e) => assert!(matches!(*e, TorrentError::AlreadyRan), "{e}"),
            other => panic!("not failed: {other:?}"),
        }
    }
}
