//! [`TorrentHandle`]: how a program drives one torrent of a session, and
//! [`TorrentSnapshot`], what it reads of it.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use rivulet_core::InfoHash;
use tokio::sync::watch;

use crate::cache::TorrentKey;
use crate::download::Download;
use crate::stats::{PeerFailure, Stats, TrackerStatus};
use crate::storage::StorageError;
use crate::torrent::{Outcome, Shared, TorrentError};

/// Sets `shared`'s file priorities on a blocking thread (a file newly
/// wanted may have bytes to move out of the part file).
pub(super) async fn apply_file_priorities(
    shared: Arc<Shared>,
    priorities: Vec<u8>,
) -> Result<(), StorageError> {
    match tokio::task::spawn_blocking(move || shared.set_file_priorities(&priorities)).await {
        Ok(result) => result,
        Err(e) => Err(StorageError::Io {
            path: PathBuf::new(),
            error: std::io::Error::other(e.to_string()),
        }),
    }
}

/// Where a torrent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorrentState {
    /// Running, with pieces missing.
    Downloading,
    /// Running with every piece: serving peers.
    Seeding,
    /// Paused: no peers, no announces; resume data saved.
    Paused,
    /// Stopped by itself: complete, and seeding was not asked for or
    /// reached its limit.
    Finished,
    /// Stopped on an error (see [`TorrentSnapshot::error`]).
    Failed,
    /// Removed from the session.
    Removed,
}

/// What the driver asks of a torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Control {
    Run,
    Pause,
    Remove,
}

/// What the driver reports: whether a run is going on, and how the last
/// one ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    Paused,
    Finished,
    Failed,
    Removed,
}

/// A torrent's state as a display reads it, at one moment.
#[derive(Debug, Clone)]
pub struct TorrentSnapshot {
    /// The torrent's info-hash.
    pub info_hash: InfoHash,
    /// Its name.
    pub name: String,
    /// Where it stands.
    pub state: TorrentState,
    /// Bytes in the torrent.
    pub total_bytes: u64,
    /// Bytes of verified pieces.
    pub have_bytes: u64,
    /// Bytes of the pieces wanted (all of them unless files are skipped).
    pub wanted_bytes: u64,
    /// Bytes of the pieces wanted not yet verified (0: done).
    pub wanted_left: u64,
    /// Pieces in the torrent.
    pub pieces: usize,
    /// Verified pieces.
    pub pieces_have: u64,
    /// Payload bytes received that we needed (since the torrent was added).
    pub downloaded: u64,
    /// Payload bytes sent (since the torrent was added).
    pub uploaded: u64,
    /// Bytes per second received that we needed, over the last few
    /// seconds ([`crate::stats::RATE_WINDOW`]); 0 when not running.
    pub down_rate: f64,
    /// Bytes per second sent, likewise.
    pub up_rate: f64,
    /// Payload bytes received that we did not need.
    pub wasted: u64,
    /// Pieces that failed their hash check.
    pub hash_failures: u64,
    /// Peers connected now.
    pub peers_connected: usize,
    /// Peers known (from trackers and the caller), connected or not.
    pub peers_known: usize,
    /// Peers connected now that connected to us.
    pub peers_incoming: usize,
    /// Peers connected now that have every piece.
    pub peers_seeds: usize,
    /// Peers being served now (unchoked and interested).
    pub peers_serving: usize,
    /// Connections that received at least one block from us.
    pub peers_served_total: usize,
    /// Peers banned for sending bad data.
    pub peers_banned: usize,
    /// Outgoing connections that failed before their handshake.
    pub connect_failures: u64,
    /// The last of those.
    pub last_peer_failure: Option<PeerFailure>,
    /// Each tracker announced to, with its last outcome, by URL.
    pub trackers: Vec<(String, TrackerStatus)>,
    /// Why the torrent stopped, when it failed.
    pub error: Option<Arc<TorrentError>>,
}

/// One connected peer of a torrent, as a display reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSnapshot {
    /// Its address.
    pub addr: std::net::SocketAddr,
    /// The client and version its peer id names, when it follows a known
    /// convention (text from the peer: sanitize before display).
    pub client: Option<String>,
    /// It connected to us.
    pub incoming: bool,
    /// The connection began with the MSE/PE handshake (RC4 or plaintext
    /// after it, as chosen).
    pub mse: bool,
    /// The connection runs over uTP.
    pub utp: bool,
    /// It has every piece.
    pub seed: bool,
    /// Payload bytes received from it that we needed.
    pub downloaded: u64,
    /// Payload bytes sent to it.
    pub uploaded: u64,
    /// Bytes per second received from it, over the last ten seconds or so.
    pub down_rate: f64,
    /// Bytes per second sent to it, likewise.
    pub up_rate: f64,
    /// The share of the torrent's pieces it has, 0.0 to 1.0.
    pub progress: f64,
    /// How long it has been connected.
    pub connected_for: std::time::Duration,
}

/// A torrent of a [`crate::session::Session`]. Cheap to clone; every clone
/// drives the same torrent.
#[derive(Debug, Clone)]
pub struct TorrentHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    key: TorrentKey,
    info_hash: InfoHash,
    name: String,
    resume_path: PathBuf,
    writable: bool,
    peers: tokio::sync::mpsc::UnboundedSender<std::net::SocketAddr>,
    total_bytes: u64,
    pieces: usize,
    /// BEP 27: peers only from its trackers (no DHT, PEX or LSD).
    private: bool,
    /// The torrent's counters (the same from run to run).
    stats: Arc<Stats>,
    /// The torrent's own rate limits (its runs pay into them).
    limits: crate::ratelimit::LimitPair,
    /// Which pieces were verified when the last run ended (or when the
    /// torrent was checked), for when no run goes on.
    last_have: Mutex<Vec<bool>>,
    /// The shared state of the current run, while one goes on (a handle
    /// kept after a removal holds no storage, files or peers).
    shared: Mutex<Option<Arc<Shared>>>,
    control: watch::Sender<Control>,
    phase: watch::Sender<Phase>,
    /// How the last run ended (`Running` before the first ends).
    outcome: Mutex<Outcome>,
    /// Set once the data is complete (every wanted piece).
    complete: watch::Sender<bool>,
    /// The priority of each file (0: not wanted); each run starts with it.
    files: Mutex<Vec<u8>>,
}

impl TorrentHandle {
    pub(super) fn new(key: TorrentKey, download: &Download, paused: bool) -> Self {
        let shared = &download.shared;
        let complete = shared.is_complete();
        TorrentHandle {
            inner: Arc::new(Inner {
                key,
                info_hash: shared.info_hash,
                name: shared.info.name.clone(),
                resume_path: download.folder().resume_path().to_owned(),
                writable: download.folder().is_writable(),
                peers: download.peer_sender(),
                total_bytes: shared.info.total_length(),
                pieces: shared.info.num_pieces(),
                private: shared.info.private,
                stats: Arc::clone(&shared.stats),
                limits: shared.config.limits.torrent.clone(),
                last_have: Mutex::new(have_of(shared)),
                shared: Mutex::new(None),
                control: watch::Sender::new(if paused { Control::Pause } else { Control::Run }),
                // Not paused: its driver is about to start it.
                phase: watch::Sender::new(if paused {
                    Phase::Paused
                } else {
                    Phase::Running
                }),
                // What a torrent stopped before its first run ended with.
                outcome: Mutex::new(if complete {
                    Outcome::Complete
                } else {
                    Outcome::Running
                }),
                complete: watch::Sender::new(complete),
                files: Mutex::new(shared.file_priorities()),
            }),
        }
    }

    /// The torrent's key in its session.
    pub(super) fn key(&self) -> TorrentKey {
        self.inner.key
    }

    /// Its info-hash.
    pub fn info_hash(&self) -> InfoHash {
        self.inner.info_hash
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Where its resume data goes.
    pub fn resume_path(&self) -> &std::path::Path {
        &self.inner.resume_path
    }

    /// Whether its data folder can be written to (a read-only one is only
    /// served).
    pub fn is_writable(&self) -> bool {
        self.inner.writable
    }

    /// Whether it is private (BEP 27: peers from its trackers only).
    pub fn is_private(&self) -> bool {
        self.inner.private
    }

    /// Whether a run of it goes on (not paused, finished or removed).
    pub fn is_running(&self) -> bool {
        self.inner
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Hands the torrent peers to connect to.
    pub fn add_peers(&self, peers: impl IntoIterator<Item = std::net::SocketAddr>) {
        for p in peers {
            let _ = self.inner.peers.send(p);
        }
    }

    /// Pauses the torrent and waits until it is: peers closed, pieces being
    /// written finished, resume data saved, `stopped` sent to trackers. A
    /// torrent that already stopped stays as it is.
    pub async fn pause(&self) {
        self.inner.control.send_if_modified(|c| {
            if *c == Control::Run {
                *c = Control::Pause;
                true
            } else {
                false
            }
        });
        let mut phase = self.inner.phase.subscribe();
        let _ = phase.wait_for(|p| *p != Phase::Running).await;
    }

    /// Starts the torrent again after a pause, or after it finished or
    /// failed (a failure is tried again). Returns at once.
    pub fn resume(&self) {
        self.inner.control.send_if_modified(|c| {
            if *c == Control::Pause {
                *c = Control::Run;
                true
            } else {
                false
            }
        });
    }

    /// Removes the torrent from its session, as a pause stops it, and waits
    /// until it is gone (its tasks ended, its data folder unlocked). Its
    /// data stays on disk.
    pub async fn remove(&self) {
        self.inner.control.send_replace(Control::Remove);
        let mut phase = self.inner.phase.subscribe();
        let _ = phase.wait_for(|p| *p == Phase::Removed).await;
    }

    /// Resolves once the data is complete (at once if it is).
    pub async fn completed(&self) {
        let mut complete = self.inner.complete.subscribe();
        let _ = complete.wait_for(|c| *c).await;
    }

    /// Resolves once the torrent stopped by itself (finished or failed) or
    /// was removed; not on a pause.
    pub async fn stopped(&self) {
        let mut phase = self.inner.phase.subscribe();
        let _ = phase
            .wait_for(|p| matches!(p, Phase::Finished | Phase::Failed | Phase::Removed))
            .await;
    }

    /// How the torrent's last run ended: [`Outcome::Running`] while none
    /// ended, or when it was stopped (paused, removed, shut down) with pieces
    /// missing; [`Outcome::Complete`] when its data was complete at the end;
    /// [`Outcome::Failed`] on an error.
    pub fn outcome(&self) -> Outcome {
        self.inner
            .outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The torrent's state now.
    pub fn snapshot(&self) -> TorrentSnapshot {
        let stats = &self.inner.stats;
        let phase = *self.inner.phase.borrow();
        let error = self.error();
        let pieces_have = stats.pieces_done.load(Ordering::Relaxed);
        let state = self.state_of(phase, error.is_some());
        let running = phase == Phase::Running;
        // Peer counts of a run that ended are zero, whatever its last
        // counters said.
        let live = |n: usize| if running { n } else { 0 };
        let (down_rate, up_rate) = stats.rates();
        let seeds = self.shared().map_or(0, |shared| {
            shared
                .lock()
                .peers
                .values()
                .filter(|p| p.counters.seed.load(Ordering::Relaxed))
                .count()
        });
        TorrentSnapshot {
            info_hash: self.inner.info_hash,
            name: self.inner.name.clone(),
            state,
            total_bytes: self.inner.total_bytes,
            have_bytes: stats.verified_bytes.load(Ordering::Relaxed),
            wanted_bytes: stats.wanted_bytes.load(Ordering::Relaxed),
            wanted_left: stats.wanted_left.load(Ordering::Relaxed),
            pieces: self.inner.pieces,
            pieces_have,
            downloaded: stats.downloaded.load(Ordering::Relaxed),
            uploaded: stats.uploaded.load(Ordering::Relaxed),
            down_rate: if running { down_rate } else { 0.0 },
            up_rate: if running { up_rate } else { 0.0 },
            wasted: stats.wasted.load(Ordering::Relaxed),
            hash_failures: stats.hash_failures.load(Ordering::Relaxed),
            peers_connected: live(stats.peers_connected.load(Ordering::Relaxed)),
            peers_known: live(stats.peers_known.load(Ordering::Relaxed)),
            peers_incoming: live(stats.peers_incoming.load(Ordering::Relaxed)),
            peers_seeds: live(seeds),
            peers_serving: live(stats.peers_serving.load(Ordering::Relaxed)),
            peers_served_total: stats.peers_served_total.load(Ordering::Relaxed),
            peers_banned: stats.peers_banned.load(Ordering::Relaxed),
            connect_failures: stats.connect_failures.load(Ordering::Relaxed),
            last_peer_failure: stats.last_connect_failure(),
            trackers: stats.trackers(),
            error,
        }
    }

    /// Every tracker's last announce, with its tier and when, by tier.
    pub fn tracker_reports(&self) -> Vec<crate::stats::TrackerReport> {
        self.inner.stats.tracker_reports()
    }

    /// The peers connected now, by address (none when not running).
    pub fn peers(&self) -> Vec<PeerSnapshot> {
        let Some(shared) = self.shared() else {
            return Vec::new();
        };
        let now = tokio::time::Instant::now();
        let pieces = self.inner.pieces.max(1) as f64;
        let state = shared.lock();
        let since = state.since_rechoke(now);
        let mut peers: Vec<PeerSnapshot> = state
            .peers
            .values()
            .map(|p| {
                let (down_rate, up_rate) = p.rates_now(since);
                PeerSnapshot {
                    down_rate,
                    up_rate,
                    progress: (f64::from(p.counters.pieces.load(Ordering::Relaxed)) / pieces)
                        .clamp(0.0, 1.0),
                    addr: p.addr,
                    client: p.peer_id.client().map(|c| c.to_string()),
                    incoming: p.incoming,
                    mse: p.counters.mse.load(Ordering::Relaxed),
                    utp: p.counters.utp.load(Ordering::Relaxed),
                    seed: p.counters.seed.load(Ordering::Relaxed),
                    downloaded: p.counters.down.load(Ordering::Relaxed),
                    uploaded: p.counters.up.load(Ordering::Relaxed),
                    connected_for: now.saturating_duration_since(p.connected_at),
                }
            })
            .collect();
        drop(state);
        peers.sort_by_key(|p| p.addr);
        peers
    }

    /// Where the torrent stands, without the rest of a
    /// [`TorrentHandle::snapshot`] (cheap: for a loop over many torrents).
    pub fn state(&self) -> TorrentState {
        let phase = *self.inner.phase.borrow();
        let failed = phase == Phase::Running && self.error().is_some();
        self.state_of(phase, failed)
    }

    /// Whether every piece of the files wanted is verified (every piece,
    /// unless files are skipped): nothing is left to download.
    pub fn is_done(&self) -> bool {
        self.inner.stats.wanted_left.load(Ordering::Relaxed) == 0
    }

    /// Bytes of verified pieces, and of the whole torrent.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.inner.stats.verified_bytes.load(Ordering::Relaxed),
            self.inner.total_bytes,
        )
    }

    /// Payload bytes received that we needed and sent, since the torrent
    /// was added.
    pub fn transferred(&self) -> (u64, u64) {
        (
            self.inner.stats.downloaded.load(Ordering::Relaxed),
            self.inner.stats.uploaded.load(Ordering::Relaxed),
        )
    }

    fn error(&self) -> Option<Arc<TorrentError>> {
        let current = match self.shared() {
            Some(shared) => shared.outcome().borrow().clone(),
            None => self.outcome(),
        };
        match current {
            Outcome::Failed(e) => Some(e),
            _ => None,
        }
    }

    fn state_of(&self, phase: Phase, failed: bool) -> TorrentState {
        let pieces_have = self.inner.stats.pieces_done.load(Ordering::Relaxed);
        match phase {
            Phase::Running if failed => TorrentState::Failed,
            Phase::Running
                if pieces_have == self.inner.pieces as u64
                    || self.inner.stats.wanted_left.load(Ordering::Relaxed) == 0 =>
            {
                // Done: every piece, or every piece of the files wanted.
                TorrentState::Seeding
            }
            Phase::Running => TorrentState::Downloading,
            Phase::Paused => TorrentState::Paused,
            Phase::Finished => TorrentState::Finished,
            Phase::Failed => TorrentState::Failed,
            Phase::Removed => TorrentState::Removed,
        }
    }

    /// Which pieces are verified, by index.
    pub fn have_pieces(&self) -> Vec<bool> {
        match self.shared() {
            Some(shared) => have_of(&shared),
            None => self
                .inner
                .last_have
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    /// How many connected peers have each piece (seeds included); empty
    /// when not running.
    pub fn availability(&self) -> Vec<u32> {
        let Some(shared) = self.shared() else {
            return Vec::new();
        };
        let state = shared.lock();
        (0..state.picker.num_pieces())
            .map(|p| state.picker.availability(p))
            .collect()
    }

    /// Announces to the torrent's trackers now (every tier), rather than at
    /// the end of their intervals; nothing when it is not running.
    pub fn reannounce(&self) {
        if let Some(shared) = self.shared() {
            shared.reannounce.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Changes the torrent's own limits on bytes per second received and
    /// sent (0: no limit), at once; the session's limits apply too.
    pub fn set_rate_limits(&self, download: u64, upload: u64) {
        self.inner.limits.set(download, upload);
    }

    /// The torrent's own limits on bytes per second received and sent (0:
    /// no limit).
    pub fn rate_limits(&self) -> (u64, u64) {
        (self.inner.limits.down.rate(), self.inner.limits.up.rate())
    }

    /// The priority of each file, in the torrent's order (0: not wanted).
    pub fn file_priorities(&self) -> Vec<u8> {
        self.inner
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets the priority of each file (see
    /// [`super::AddOptions::file_priorities`]), at once if the torrent
    /// runs, else from its next start. A file newly wanted whose bytes were
    /// kept in the part file is created and they move in before this
    /// returns. A torrent done before that now wants more downloads again.
    pub async fn set_file_priorities(&self, priorities: Vec<u8>) -> Result<(), StorageError> {
        *self
            .inner
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = priorities.clone();
        // The driver applies them at each start, after publishing the
        // run's state: a run that starts meanwhile gets them either way.
        let Some(shared) = self.shared() else {
            return Ok(());
        };
        apply_file_priorities(shared, priorities).await
    }

    // What the driver uses.

    fn shared(&self) -> Option<Arc<Shared>> {
        self.inner
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current run's shared state (`None`: no run goes on; the pieces
    /// the run ends with are kept for [`TorrentHandle::have_pieces`]).
    pub(super) fn set_shared(&self, shared: Option<&Arc<Shared>>) {
        let ending = self.shared();
        if let (None, Some(ending)) = (shared, ending) {
            *self
                .inner
                .last_have
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = have_of(&ending);
        }
        *self
            .inner
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = shared.cloned();
    }

    pub(super) fn control(&self) -> watch::Receiver<Control> {
        self.inner.control.subscribe()
    }

    /// After a run ended by itself: the torrent waits for a resume.
    pub(super) fn hold(&self) {
        self.inner.control.send_if_modified(|c| {
            if *c == Control::Run {
                *c = Control::Pause;
                true
            } else {
                false
            }
        });
    }

    /// Before waiting for a resume: a torrent paused before its first run
    /// started is paused, not running.
    pub(super) fn settle(&self) {
        self.inner.phase.send_if_modified(|p| {
            let running = *p == Phase::Running;
            if running {
                *p = Phase::Paused;
            }
            running
        });
    }

    pub(super) fn set_phase(&self, phase: Phase) {
        self.inner.phase.send_replace(phase);
    }

    pub(super) fn set_outcome(&self, outcome: Outcome) {
        *self
            .inner
            .outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = outcome;
    }

    pub(super) fn set_complete(&self) {
        self.inner.complete.send_replace(true);
    }
}

/// Which pieces of a run are verified.
fn have_of(shared: &Shared) -> Vec<bool> {
    let state = shared.lock();
    (0..state.picker.num_pieces())
        .map(|p| state.picker.have(p))
        .collect()
}
