//! Downloading one torrent into a folder: storage, the resume check, the
//! peer driver and periodic resume saves, behind one handle.
//!
//! A [`Download`] runs alone (the tests do, with its own peer id, HTTP
//! client and read cache) or as a torrent of a [`crate::session::Session`],
//! which lends it those. [`Download::run`] ends with every task of the run
//! finished; [`Download::renew`] readies it for another run (after a pause).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rivulet_core::piece_io::{check_selected_pieces, too_long_files, FileSource, PieceCheck};
use rivulet_core::Metainfo;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

use crate::announce::Announcer;
use crate::connector::{self, Connector};
use crate::udp_socket::UdpSockets;

use crate::folder::{DataFolder, FolderError, FolderOptions};
use crate::resume::{ResumeData, ResumeError};
use crate::storage::{create_links, FileStorage, StorageError, DEFAULT_MAX_OPEN_FILES};
use crate::torrent::{Outcome, Parts, Settings, Shared, TorrentConfig, TorrentError};

/// Why a download could not start.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The data folder or its files cannot be created or written.
    #[error("cannot prepare the data folder: {0}")]
    Storage(StorageError),
    /// Existing data could not be read for checking.
    #[error("cannot check existing data: {0}")]
    Check(rivulet_core::piece_io::PieceReadError),
    /// The data folder cannot be used: not writable, in use by another
    /// process, or (for a seed) holding none of the data.
    #[error("{0}")]
    Folder(FolderError),
    /// Seeding a folder whose files are there but hold not one good piece:
    /// the wrong folder, or other data under the same names, which seeding
    /// would overwrite with what peers send.
    #[error("none of the data in {} matches {name}: 0 of {pieces} pieces are good (to fetch it, use `rivulet download`)", dir.display())]
    NoneMatches {
        /// The torrent's name.
        name: String,
        /// The data folder.
        dir: PathBuf,
        /// Pieces in the torrent.
        pieces: usize,
    },
    /// Seeding from a folder that cannot be written to, with pieces missing.
    #[error("the data folder {} is read-only and holds {have} of the {pieces} pieces of {name}: the missing pieces cannot be fetched there", dir.display())]
    ReadOnlyIncomplete {
        /// The torrent's name.
        name: String,
        /// The data folder.
        dir: PathBuf,
        /// Pieces present and good.
        have: usize,
        /// Pieces in the torrent.
        pieces: usize,
    },
    /// The startup check's task on the blocking pool failed (it panicked:
    /// a bug).
    #[error("internal error: the startup check task failed: {0}")]
    Internal(tokio::task::JoinError),
}

// By hand rather than `#[from]`, which would also make the inner error the
// `source` and print it twice in error chains.
impl From<StorageError> for DownloadError {
    fn from(e: StorageError) -> Self {
        DownloadError::Storage(e)
    }
}

impl From<FolderError> for DownloadError {
    fn from(e: FolderError) -> Self {
        DownloadError::Folder(e)
    }
}

impl From<rivulet_core::piece_io::PieceReadError> for DownloadError {
    fn from(e: rivulet_core::piece_io::PieceReadError) -> Self {
        DownloadError::Check(e)
    }
}

/// What the startup check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartReport {
    /// Pieces vouched for by resume data (not hashed again).
    pub trusted: usize,
    /// Pieces hashed because resume data could not vouch for them.
    pub checked: usize,
    /// Pieces found complete (trusted or checked).
    pub have: usize,
    /// Files that were longer than the torrent says, and what was done.
    pub too_long: Vec<TooLongFile>,
    /// BEP 47 symbolic links not made, one sentence each (see
    /// [`crate::storage::create_links`]).
    pub links_not_made: Vec<String>,
}

/// A file of the torrent that was longer on disk than the torrent says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLongFile {
    /// The file.
    pub path: PathBuf,
    /// Its length as found.
    pub length: u64,
    /// Its length in the torrent.
    pub expected: u64,
    /// What was done about it.
    pub action: LengthAction,
}

/// What [`Download::prepare`] did about a file longer than the torrent says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthAction {
    /// Truncated to the torrent's length: the torrent's paths are ours, and
    /// the extra bytes are no part of the torrent.
    Truncated,
    /// Left as it is: the path is a symbolic link, and its target may be a
    /// file outside the data folder, which is not ours to change.
    SymbolicLink,
    /// Left as it is: the data folder is read-only (seeding serves only the
    /// torrent's bytes of it).
    ReadOnly,
}

/// What to do once the download is complete.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SeedPolicy {
    /// Keep serving peers after completion (until stopped, or a limit below).
    pub seed: bool,
    /// Stop seeding once we uploaded this many times the torrent's size.
    pub ratio: Option<f64>,
    /// Stop seeding after this long.
    pub time: Option<Duration>,
}

impl SeedPolicy {
    /// Stop when complete.
    pub const NONE: SeedPolicy = SeedPolicy {
        seed: false,
        ratio: None,
        time: None,
    };
    /// Seed until stopped.
    pub const FOREVER: SeedPolicy = SeedPolicy {
        seed: true,
        ratio: None,
        time: None,
    };

    /// Whether seeding should end, having uploaded `uploaded` bytes of a
    /// torrent of `total` bytes and seeded for `seeded`.
    pub fn reached(&self, uploaded: u64, total: u64, seeded: Duration) -> bool {
        let ratio = self
            .ratio
            .is_some_and(|r| uploaded as f64 >= r * total.max(1) as f64);
        let time = self.time.is_some_and(|t| seeded >= t);
        ratio || time
    }
}

/// The tracker clients a session lends its torrents.
#[derive(Debug, Clone)]
pub(crate) struct TrackerClients {
    pub http: crate::announce::HttpClient,
    pub udp: Arc<UdpSockets>,
}

/// A running download.
#[derive(Debug)]
pub struct Download {
    /// State shared with the peer tasks (counters, outcome) of the current
    /// (or last) run.
    pub shared: Arc<Shared>,
    /// The data folder, its resume path, and the lock held while this runs.
    folder: DataFolder,
    peers: mpsc::UnboundedSender<SocketAddr>,
    /// The known peers; taken by a run, given back when it ends.
    connector: Option<Connector>,
    /// A run ended: [`Download::renew`] before the next.
    ran: bool,
    tiers: Vec<Vec<String>>,
    /// The session's tracker clients (outside a session, the announcer
    /// makes its own).
    clients: Option<TrackerClients>,
}

impl Download {
    /// Prepares a download of `metainfo` into `dir`: locks the torrent's data
    /// there ([`DataFolder::open`] with default options), then as
    /// [`Download::prepare_in`].
    pub async fn prepare(
        metainfo: &Metainfo,
        dir: &Path,
        config: TorrentConfig,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<(Self, StartReport), DownloadError> {
        let folder = DataFolder::open(metainfo, dir, &FolderOptions::default())?;
        Self::prepare_in(metainfo, folder, config, progress).await
    }

    /// Prepares a download of `metainfo` into the locked `folder`: checks
    /// what is already there (trusting resume data where the files are
    /// unchanged), then truncates files longer than the torrent says and
    /// creates the missing ones. A folder that cannot be written to (only
    /// opened so when seeding) must hold complete data, which is then served
    /// as it is. `progress` sees the bytes checked.
    pub async fn prepare_in(
        metainfo: &Metainfo,
        folder: DataFolder,
        config: TorrentConfig,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<(Self, StartReport), DownloadError> {
        Self::prepare_with(metainfo, folder, Settings::standalone(config), progress).await
    }

    /// As [`Download::prepare_in`], outside a session but with the given
    /// peer id, bind address and listening port.
    pub async fn prepare_with(
        metainfo: &Metainfo,
        folder: DataFolder,
        settings: Settings,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<(Self, StartReport), DownloadError> {
        Self::prepare_parts(
            metainfo,
            folder,
            Parts::standalone(settings),
            None,
            progress,
        )
        .await
    }

    /// The common part of every `prepare`: `parts` and `clients` come from
    /// the session, if any.
    pub(crate) async fn prepare_parts(
        metainfo: &Metainfo,
        folder: DataFolder,
        parts: Parts,
        clients: Option<TrackerClients>,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<(Self, StartReport), DownloadError> {
        let info = Arc::new(metainfo.info.clone());
        let info_hash = metainfo.info_hash;
        let dir = folder.dir.clone();
        let resume_paths: Vec<PathBuf> = std::iter::once(folder.resume_path.clone())
            .chain(folder.earlier_resume.clone())
            .collect();
        let (writable, seed) = (folder.writable, folder.seed);
        // Bytes of files not wanted go to the part file, beside the resume data.
        let part_path = folder.resume_path.with_extension("parts");
        let files_wanted = crate::torrent::normal_file_priorities(&info, &parts.file_priorities);
        let (have, report, storage) = {
            let info = Arc::clone(&info);
            tokio::task::spawn_blocking(move || -> Result<_, DownloadError> {
                // A damaged or foreign resume file is not fatal: recheck instead.
                let resume = resume_paths.iter().find_map(|path| {
                    ResumeData::load(path, info_hash, &info)
                        .inspect_err(
                            |e| tracing::warn!(error = %e, "resume data not used; rechecking"),
                        )
                        .ok()
                        .flatten()
                });
                // Where resume data vouches for a piece (its files are unchanged
                // since the record), believe it, complete or not; hash the rest.
                let known = resume
                    .map(|r| r.piece_states(&info, &dir))
                    .unwrap_or_else(|| vec![None; info.num_pieces()]);
                // A file not there may have bytes in the part file (it was
                // not wanted): pieces are checked from there.
                let files: Vec<FileSource> = info
                    .file_sources(&dir)
                    .into_iter()
                    .enumerate()
                    .map(|(i, source)| match source {
                        FileSource::Disk(path) if !path.exists() && part_path.exists() => {
                            FileSource::Part {
                                path: part_path.clone(),
                                offset: info.layout().file_start(i).unwrap_or(0),
                            }
                        }
                        source => source,
                    })
                    .collect();
                let checks = check_selected_pieces(
                    info.layout(),
                    &files,
                    &info.pieces,
                    &|p| known.get(p as usize).copied().flatten().is_none(),
                    &*progress,
                )?;
                let have: Vec<bool> = known
                    .iter()
                    .zip(&checks)
                    .map(|(k, c)| *k == Some(true) || *c == Some(PieceCheck::Good))
                    .collect();
                let pieces = info.num_pieces();
                let have_count = have.iter().filter(|h| **h).count();
                // Refusals come before anything in the folder is changed.
                if seed && have_count == 0 && pieces > 0 {
                    return Err(DownloadError::NoneMatches {
                        name: info.name.clone(),
                        dir,
                        pieces,
                    });
                }
                if !writable && have_count < pieces {
                    return Err(DownloadError::ReadOnlyIncomplete {
                        name: info.name.clone(),
                        dir,
                        have: have_count,
                        pieces,
                    });
                }
                // After the check, which reads only each file's first
                // `expected` bytes, so the extra bytes never changed its result.
                let too_long = trim_too_long(&info, &files, writable)?;
                let (storage, links_not_made) = if writable {
                    let storage = FileStorage::create_selected(
                        &info,
                        &dir,
                        DEFAULT_MAX_OPEN_FILES,
                        &|i| files_wanted.get(i).is_none_or(|p| *p > 0),
                        Some(part_path),
                    )?;
                    (storage, create_links(&info, &dir))
                } else {
                    let storage = FileStorage::open_read_only(&info, &dir, DEFAULT_MAX_OPEN_FILES);
                    (storage, Vec::new())
                };
                let report = StartReport {
                    trusted: known.iter().filter(|k| **k == Some(true)).count(),
                    checked: checks.iter().filter(|c| c.is_some()).count(),
                    have: have_count,
                    too_long,
                    links_not_made,
                };
                Ok((have, report, storage))
            })
            .await
            .map_err(DownloadError::Internal)??
        };
        let shared = Shared::build(info, info_hash, parts, Arc::new(storage), &have);
        let (peers, peers_rx) = mpsc::unbounded_channel();
        Ok((
            Download {
                shared,
                folder,
                peers,
                connector: Some(Connector::new(peers_rx)),
                ran: false,
                tiers: metainfo.tracker_tiers(),
                clients,
            },
            report,
        ))
    }

    /// Readies a download whose run ended for another run: a new
    /// [`Shared`] (see [`Shared::renew`]) with the pieces had, the same
    /// counters, and the peers known. Does nothing before the first run.
    pub fn renew(&mut self) {
        if self.ran {
            self.shared = self.shared.renew();
            self.ran = false;
        }
    }

    /// The data folder, with where resume data goes.
    pub fn folder(&self) -> &DataFolder {
        &self.folder
    }

    /// A channel to hand the download peers to connect to.
    pub fn peer_sender(&self) -> mpsc::UnboundedSender<SocketAddr> {
        self.peers.clone()
    }

    /// Runs until every piece is verified and written (and then, as `seed`
    /// says, keeps serving peers), or a fatal error, or `stop` resolves.
    /// Resume data is saved every few seconds while pieces arrive, and at the
    /// end. Returns [`Outcome::Complete`] when the data is complete at the end
    /// (stopped while seeding included), [`Outcome::Running`] when stopped
    /// before.
    pub async fn run(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
        seed: SeedPolicy,
    ) -> Outcome {
        if self.ran {
            return Outcome::Failed(Arc::new(TorrentError::AlreadyRan));
        }
        let Some(connector) = self.connector.take() else {
            return Outcome::Failed(Arc::new(TorrentError::AlreadyRan));
        };
        self.ran = true;
        *self
            .shared
            .pex_sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(self.peers.clone());
        let span = self.shared.span.clone();
        let (stop_announcing, announcing_stopped) = watch::channel(false);
        let port = self.shared.config.listen_port;
        let announcer = match (&self.clients, self.tiers.is_empty()) {
            (_, true) => None,
            (Some(c), false) => Some(Announcer::with_clients(
                Arc::clone(&self.shared),
                port,
                self.peers.clone(),
                c.http.clone(),
                Arc::clone(&c.udp),
            )),
            (None, false) => Some(Announcer::new(
                Arc::clone(&self.shared),
                port,
                self.peers.clone(),
            )),
        };
        // Every task of the run is on `shared.tasks`: the connector, the
        // tracker tiers, and through them the peers.
        let driver = self
            .shared
            .tasks
            .spawn(connector::run(Arc::clone(&self.shared), connector).instrument(span.clone()));
        self.shared.spawn_flusher();
        if let Some(a) = announcer {
            self.shared.tasks.spawn(
                a.run(self.tiers.clone(), announcing_stopped)
                    .instrument(span),
            );
        }
        let mut outcome = self.shared.outcome();
        // Once a second: the seeding limits; every 5 s: resume data, when
        // pieces were added.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // After a quiet spell, once at once, then every second again.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_save = Instant::now();
        let mut saved_pieces = self.shared.stats.pieces_done.load(Ordering::Relaxed);
        let mut seeding_since: Option<Instant> = None;
        tokio::pin!(stop);
        let result = loop {
            let now = outcome.borrow().clone();
            match now {
                Outcome::Failed(_) => break now,
                Outcome::Complete if !seed.seed => break now,
                Outcome::Complete => {
                    let since = *seeding_since.get_or_insert_with(Instant::now);
                    let uploaded = self.shared.stats.uploaded.load(Ordering::Relaxed);
                    if seed.reached(uploaded, self.shared.info.total_length(), since.elapsed()) {
                        break now;
                    }
                }
                // Running again after being done: more files are wanted.
                Outcome::Running => seeding_since = None,
            }
            // Quiet (no peer, rates down to zero, nothing to save, no
            // seeding time to count): no ticks until a peer joins. A
            // thousand idle torrents then cost no wake-ups.
            let joined = self.shared.peer_joined.notified();
            tokio::pin!(joined);
            joined.as_mut().enable();
            let busy = self.shared.stats.peers_connected.load(Ordering::Relaxed) > 0
                || self.shared.stats.rates() != (0.0, 0.0)
                || self.shared.stats.pieces_done.load(Ordering::Relaxed) != saved_pieces
                || (seed.time.is_some() && matches!(now, Outcome::Complete));
            tokio::select! {
                _ = outcome.changed() => {}
                _ = &mut stop => break outcome.borrow().clone(),
                () = &mut joined, if !busy => {}
                _ = tick.tick(), if busy => {
                    self.shared.stats.sample_rates(Instant::now());
                    let done = self.shared.stats.pieces_done.load(Ordering::Relaxed);
                    if done != saved_pieces && last_save.elapsed() >= Duration::from_secs(5) {
                        last_save = Instant::now();
                        saved_pieces = done;
                        if let Err(e) = self.save_resume().await {
                            self.shared.fail(TorrentError::resume(e));
                        }
                    }
                }
            }
        };
        // No new peers, then close the ones we have: the connector sees the
        // shutdown, tells every peer to disconnect, and returns the peers it
        // knows for the next run.
        self.shared.shut_down();
        match driver.await {
            Ok(connector) => self.connector = Some(connector),
            Err(e) => tracing::error!(error = %e, "the connector task failed"),
        }
        self.shared.disconnect_all();
        // Trackers hear `completed`/`stopped` while the data is flushed and
        // the resume data saved, within the announcer's bounded wait.
        let _ = stop_announcing.send(true);
        // Nothing may write to the files after the resume data records them.
        self.shared.quiesce().await;
        let saved = self.save_resume().await;
        // Peers end (at once, or after a short grace when still
        // connecting); then every task of the run has finished.
        self.shared.finish_tasks().await;
        // The chunks of a stopped torrent are of no more use to anyone.
        self.shared.cache.forget();
        self.shared.stats.reset_rates();
        match (result, saved) {
            // The first error is the one to report (a full disk also makes the
            // resume save fail).
            (Outcome::Failed(e), _) => Outcome::Failed(e),
            (_, Err(e)) => Outcome::Failed(Arc::new(TorrentError::resume(e))),
            (result, Ok(())) => result,
        }
    }

    /// Flushes data to disk, then records which pieces are complete.
    pub async fn save_resume(&self) -> Result<(), ResumeError> {
        // Snapshot first: every piece in it was written before the flush below.
        let have = self.shared.have_pieces();
        let shared = Arc::clone(&self.shared);
        let (dir, path) = (self.folder.dir.clone(), self.folder.resume_path.clone());
        tokio::task::spawn_blocking(move || {
            shared.storage.flush().map_err(ResumeError::Flush)?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|error| ResumeError::CreateFolder {
                    path: parent.to_owned(),
                    error,
                })?;
            }
            ResumeData::capture(shared.info_hash, &shared.info, &dir, have).save(&path)
        })
        .await
        .map_err(ResumeError::Task)?
    }
}

/// Truncates the torrent's files that are longer than the torrent says
/// (symbolic links and read-only folders excepted, see [`LengthAction`]),
/// and reports every such file.
fn trim_too_long(
    info: &rivulet_core::Info,
    files: &[rivulet_core::piece_io::FileSource],
    writable: bool,
) -> Result<Vec<TooLongFile>, StorageError> {
    let mut report = Vec::new();
    for t in too_long_files(info.layout(), files) {
        let io = |error| StorageError::Io {
            path: t.path.clone(),
            error,
        };
        let link = std::fs::symlink_metadata(&t.path)
            .map_err(io)?
            .file_type()
            .is_symlink();
        let action = if !writable {
            LengthAction::ReadOnly
        } else if link {
            LengthAction::SymbolicLink
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&t.path)
                .and_then(|f| f.set_len(t.expected))
                .map_err(io)?;
            LengthAction::Truncated
        };
        report.push(TooLongFile {
            path: t.path,
            length: t.length,
            expected: t.expected,
            action,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use rivulet_bencode::OwnedValue as V;
    use sha1::{Digest, Sha1};

    use super::*;

    /// A folder "t" of files a = "hello\n" and b = "abcd", one piece.
    fn torrent() -> Metainfo {
        let file = |len: i64, name: &str| {
            V::dict()
                .with("length", V::Int(len))
                .with("path", V::List(vec![V::str(name)]))
        };
        let hash: [u8; 20] = Sha1::digest(b"hello\nabcd").into();
        let info = V::dict()
            .with("name", "t".into())
            .with("piece length", V::Int(16384))
            .with("pieces", V::Bytes(hash.to_vec()))
            .with("files", V::List(vec![file(6, "a"), file(4, "b")]));
        Metainfo::from_bytes(&V::dict().with("info", info).to_bytes()).unwrap()
    }

    /// A file longer than the torrent says is truncated; one reached through
    /// a symbolic link is reported but not touched (its target is outside
    /// the data folder).
    #[tokio::test]
    async fn prepare_truncates_files_longer_than_the_torrent_says() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, outside) = (tmp.path().join("data"), tmp.path().join("outside"));
        std::fs::create_dir_all(dir.join("t")).unwrap();
        let mut long = b"hello\n".to_vec();
        long.resize(100, b'x');
        std::fs::write(dir.join("t/a"), long).unwrap();
        std::fs::write(&outside, b"abcdefgh").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("t/b")).unwrap();
        let m = torrent();
        let (_dl, report) = Download::prepare(&m, &dir, TorrentConfig::default(), Arc::new(|_| {}))
            .await
            .unwrap();
        assert_eq!(report.have, 1, "the torrent's bytes are all there");
        assert_eq!(
            report.too_long,
            [
                TooLongFile {
                    path: dir.join("t/a"),
                    length: 100,
                    expected: 6,
                    action: LengthAction::Truncated
                },
                TooLongFile {
                    path: dir.join("t/b"),
                    length: 8,
                    expected: 4,
                    action: LengthAction::SymbolicLink
                }
            ]
        );
        assert_eq!(std::fs::read(dir.join("t/a")).unwrap(), b"hello\n");
        assert_eq!(std::fs::read(&outside).unwrap(), b"abcdefgh");
    }

    #[test]
    fn seed_policy_limits() {
        let min = Duration::from_secs(60);
        assert!(!SeedPolicy::FOREVER.reached(u64::MAX, 1, Duration::MAX));
        let ratio = SeedPolicy {
            seed: true,
            ratio: Some(1.5),
            time: None,
        };
        assert!(!ratio.reached(149, 100, min));
        assert!(ratio.reached(150, 100, Duration::ZERO));
        // A ratio of 0 is met at once; an empty torrent does not divide by 0.
        let zero = SeedPolicy {
            ratio: Some(0.0),
            ..ratio
        };
        assert!(zero.reached(0, 0, Duration::ZERO));
        let time = SeedPolicy {
            seed: true,
            ratio: None,
            time: Some(min),
        };
        assert!(!time.reached(u64::MAX, 1, min - Duration::from_millis(1)));
        assert!(time.reached(0, 1, min));
        // Either limit ends seeding.
        let both = SeedPolicy {
            seed: true,
            ratio: Some(2.0),
            time: Some(min),
        };
        assert!(both.reached(200, 100, Duration::ZERO));
        assert!(both.reached(0, 100, min));
        assert!(!both.reached(199, 100, Duration::from_secs(59)));
    }
}
