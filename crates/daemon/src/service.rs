//! [`Daemon`]: one session, the torrents in it, and what is stored of them.
//!
//! A torrent goes through these statuses: a magnet link first fetches its
//! metadata (`fetching_metadata`); every torrent then has its data checked
//! (`checking`, the engine's [`Session::add`]) and runs as the session's
//! (`downloading`, `seeding`, `paused`), or stops on an error (`error`:
//! the data folder cannot be made, the check failed, ...; resuming tries
//! again). Every change of what is stored (added, paused, resumed, metadata
//! fetched, removed) is written to the [`Store`] before the call returns.
//!
//! Calls that change a torrent take its operation lock, so that a pause, a
//! resume and a removal of the same torrent happen one after the other.
//! The torrent table's lock is held only to look up, insert or remove, and
//! to look for clashing names; it comes before an item's locks, never
//! after.
//!
//! Two torrents may not put a file or folder of the same name in the same
//! download folder: the second add is refused (for a magnet link, once its
//! metadata shows the name).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rivulet_core::piece_io::{check_pieces, FileSource, PieceCheck};
use rivulet_core::{InfoHash, Magnet, Metainfo};
use rivulet_engine::download::SeedPolicy;
use rivulet_engine::metadata::{torrent_bytes, FetchOptions};
use rivulet_engine::picker::{MAX_PRIORITY, NORMAL_PRIORITY};
use rivulet_engine::session::{AddOptions, Session, TorrentHandle, TorrentState};
use rivulet_engine::stats::TrackerStatus;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{unix_now, Entry, SessionSettings, Settings, Source, Store};
use crate::view::{FileView, PeerView, SessionView, TorrentDetail, TorrentView, TrackerView};

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// No torrent has this id.
    #[error("no torrent {0}")]
    NotFound(String),
    /// The request is not something that can be added.
    #[error("{0}")]
    BadInput(String),
    /// The state folder could not be written.
    #[error("cannot save the daemon's state: {0}")]
    Store(#[from] io::Error),
    /// The daemon is shutting down.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// How to add a torrent.
#[derive(Debug, Clone, Default)]
pub struct AddRequest {
    /// Where its data goes; the daemon's download folder when `None`.
    pub download_dir: Option<PathBuf>,
    /// Add it paused.
    pub paused: bool,
    /// Peers to connect to besides those trackers, the DHT and PEX name
    /// (kept: used again after a restart).
    pub peers: Vec<std::net::SocketAddr>,
    /// Indices of the files to download; the others are skipped (not
    /// created, unless they share a piece with a wanted file, whose bytes
    /// then go to a part file). All when `None`.
    pub files: Option<Vec<usize>>,
}

/// A change to one file of a torrent.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileChange {
    /// The file's index in the torrent.
    pub index: usize,
    /// Download it (true: at its priority, normal if it had none) or skip
    /// it (false).
    pub wanted: Option<bool>,
    /// 1 (lowest) to 7 (highest), 4 normal: higher ones are fetched first.
    pub priority: Option<u8>,
}

/// What a `PATCH` of a torrent changes (what is `None` stays).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorrentChange {
    /// Pause (true) or resume (false).
    pub paused: Option<bool>,
    /// Its own limit on bytes per second received (0: none).
    pub download_limit: Option<u64>,
    /// Its own limit on bytes per second sent (0: none).
    pub upload_limit: Option<u64>,
    /// Its own seeding goal: stop once uploaded this many times its size.
    pub seed_ratio: Option<f64>,
    /// Its own seeding goal: seconds of seeding.
    pub seed_time: Option<u64>,
    /// Seed whatever the seeding goals, its own and the session's (true),
    /// or heed them again (false).
    pub seed_forever: Option<bool>,
    /// Files to download or skip, and their priorities.
    pub files: Option<Vec<FileChange>>,
    /// Move the data to this folder (absolute): copied, checked against
    /// the piece hashes, switched to, then removed from the old folder.
    pub download_dir: Option<PathBuf>,
}

/// Where a torrent stands in the daemon.
#[derive(Debug, Clone)]
enum Status {
    /// A magnet link whose metadata is being fetched (or waits for a
    /// resume to be, when paused).
    FetchingMetadata,
    /// Its data is being checked before it starts.
    Checking,
    /// In the session.
    Active(TorrentHandle),
    /// Stopped on an error.
    Failed(String),
}

/// One torrent of the daemon.
#[derive(Debug)]
struct Item {
    id: InfoHash,
    settings: Mutex<Settings>,
    status: Mutex<Status>,
    /// Once known (from the .torrent, or fetched).
    metainfo: Mutex<Option<Arc<Metainfo>>>,
    /// The magnet link, for a torrent added from one.
    magnet: Option<Box<Magnet>>,
    /// Bytes checked so far while `Checking`.
    checked: AtomicU64,
    /// Stops what runs for this torrent (fetch, check) when it is removed
    /// or paused.
    cancel: Mutex<CancellationToken>,
    /// Pause, resume and removal of this torrent one at a time.
    op: tokio::sync::Mutex<()>,
    /// Paused by the daemon's queue (not by the user): waits for its turn.
    queued: std::sync::atomic::AtomicBool,
    /// Its place among torrents added in the same second (the queue's
    /// order is by time added).
    seq: u64,
    /// Totals of earlier runs of the daemon (down, up, seconds seeded), as
    /// loaded: this run's counts are added to them.
    base: (u64, u64, u64),
    /// Since when it seeds, while it does.
    seeding_since: Mutex<Option<std::time::Instant>>,
    /// Seconds seeded in this run of the daemon, before `seeding_since`.
    seeded_here: AtomicU64,
    /// Its data is being moved to another folder (shown as `moving`; the
    /// status is `Checking` meanwhile).
    moving: std::sync::atomic::AtomicBool,
    /// Why the last move of its data failed (shown as its error until the
    /// next move).
    move_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Item {
    fn new(entry: Entry, seq: u64) -> Item {
        let base = (
            entry.settings.downloaded,
            entry.settings.uploaded,
            entry.settings.seeded,
        );
        let (metainfo, magnet, status) = match entry.source {
            Source::Torrent(m, _) => (Some(Arc::from(m)), None, Status::Checking),
            Source::Magnet(m) => (None, Some(m), Status::FetchingMetadata),
        };
        Item {
            id: entry.id,
            settings: Mutex::new(entry.settings),
            status: Mutex::new(status),
            metainfo: Mutex::new(metainfo),
            magnet,
            checked: AtomicU64::new(0),
            cancel: Mutex::new(CancellationToken::new()),
            op: tokio::sync::Mutex::new(()),
            queued: std::sync::atomic::AtomicBool::new(false),
            seq,
            base,
            seeding_since: Mutex::new(None),
            moving: std::sync::atomic::AtomicBool::new(false),
            move_error: Mutex::new(None),
            seeded_here: AtomicU64::new(0),
        }
    }

    fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    /// Bytes received and sent and seconds seeded, over every run of the
    /// daemon.
    fn totals(&self) -> (u64, u64, u64) {
        let (down, up) = match self.status() {
            Status::Active(h) => h.transferred(),
            _ => (0, 0),
        };
        let since = lock(&self.seeding_since).map_or(0, |t| t.elapsed().as_secs());
        (
            self.base.0 + down,
            self.base.1 + up,
            self.base.2 + self.seeded_here.load(Ordering::Relaxed) + since,
        )
    }

    fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    fn set_status(&self, s: Status) {
        *lock(&self.status) = s;
    }

    fn metainfo(&self) -> Option<Arc<Metainfo>> {
        lock(&self.metainfo).clone()
    }

    fn name(&self) -> String {
        if let Some(m) = self.metainfo() {
            return m.info.name.clone();
        }
        self.magnet
            .as_ref()
            .and_then(|m| m.display_name.clone())
            .unwrap_or_else(|| self.id.to_hex())
    }

    /// A fresh token for what starts now (the previous one cancelled).
    fn renew_cancel(&self) -> CancellationToken {
        let mut c = lock(&self.cancel);
        c.cancel();
        *c = CancellationToken::new();
        c.clone()
    }
}

/// The daemon: a session and its torrents, kept in a state folder.
#[derive(Debug, Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    session: Session,
    store: Store,
    download_dir: PathBuf,
    torrents: Mutex<BTreeMap<InfoHash, Arc<Item>>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// Most torrents downloading at once (0: no limit); the others wait,
    /// `queued`.
    max_active: AtomicUsize,
    /// The next [`Item::seq`].
    next_seq: AtomicU64,
    /// The session's seeding goals (ratio, seconds), for torrents without
    /// their own.
    goals: Mutex<(Option<f64>, Option<u64>)>,
}

/// How often the queue and the seeding goals are looked at (besides after
/// adds and resumes).
pub const QUEUE_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Every this many ticks, each torrent's totals (bytes each way, seconds
/// seeded) are saved, so that a crash loses at most a minute of them.
const SAVE_TICKS: u64 = 60;

/// How a daemon runs its torrents.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Where torrents download unless added with another folder.
    pub download_dir: PathBuf,
    /// Most torrents downloading at once (0: no limit).
    pub max_active_downloads: usize,
    /// Seeding goal of torrents without their own: stop once uploaded this
    /// many times the size.
    pub seed_ratio: Option<f64>,
    /// Seeding goal of torrents without their own: seconds of seeding.
    pub seed_time: Option<u64>,
}

impl Daemon {
    /// A daemon on `session`, with its torrents stored under `store` (each
    /// started again as it was) and new ones downloading into
    /// `download_dir` by default, at most `max_active_downloads` at once
    /// (0: no limit). Returns the warnings about stored torrents that could
    /// not be read (they were set aside).
    pub fn start(session: Session, store: Store, options: DaemonOptions) -> (Daemon, Vec<String>) {
        let (entries, warnings) = store.load_all();
        let daemon = Daemon {
            inner: Arc::new(Inner {
                session,
                store,
                download_dir: options.download_dir,
                torrents: Mutex::new(BTreeMap::new()),
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
                max_active: AtomicUsize::new(options.max_active_downloads),
                next_seq: AtomicU64::new(0),
                goals: Mutex::new((options.seed_ratio, options.seed_time)),
            }),
        };
        for entry in entries {
            daemon.insert_and_start(entry);
        }
        let d = daemon.clone();
        daemon.inner.tasks.spawn(async move {
            let mut ticks = 0u64;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(QUEUE_TICK) => {
                        d.schedule().await;
                        ticks += 1;
                        if ticks.is_multiple_of(SAVE_TICKS) {
                            d.save_totals();
                        }
                    }
                    () = d.inner.cancel.cancelled() => return,
                }
            }
        });
        (daemon, warnings)
    }

    /// Counts seeding time: starts or stops the clock.
    fn track_seeding(&self, item: &Item, seeding: bool) {
        let mut since = lock(&item.seeding_since);
        match (*since, seeding) {
            (None, true) => *since = Some(std::time::Instant::now()),
            (Some(t), false) => {
                item.seeded_here
                    .fetch_add(t.elapsed().as_secs(), Ordering::Relaxed);
                *since = None;
            }
            _ => {}
        }
    }

    /// Whether a seeding torrent of `size` bytes reached its goal (its own,
    /// or the session's).
    fn goal_reached(&self, item: &Item, settings: &Settings, size: u64) -> bool {
        if settings.seed_forever {
            return false;
        }
        let (ratio, time) = *lock(&self.inner.goals);
        let (ratio, time) = (settings.seed_ratio.or(ratio), settings.seed_time.or(time));
        if ratio.is_none() && time.is_none() {
            return false;
        }
        let (_, up, seeded) = item.totals();
        ratio.is_some_and(|r| size > 0 && up as f64 >= r * size as f64)
            || time.is_some_and(|t| seeded >= t)
    }

    /// Writes a torrent's settings with its totals so far.
    fn save(&self, item: &Item, settings: &Settings) -> io::Result<()> {
        let mut s = settings.clone();
        (s.downloaded, s.uploaded, s.seeded) = item.totals();
        self.inner.store.save_settings(&item.id, &s)
    }

    /// Saves every torrent's totals (bytes each way, seconds seeded).
    fn save_totals(&self) {
        let items: Vec<Arc<Item>> = lock(&self.inner.torrents).values().cloned().collect();
        for item in items {
            if let Err(e) = self.save(&item, &item.settings()) {
                tracing::warn!(id = %item.id.to_hex(), error = %e, "cannot save a torrent's totals");
            }
        }
    }

    /// Most torrents downloading at once (0: no limit).
    pub fn max_active_downloads(&self) -> usize {
        self.inner.max_active.load(Ordering::Relaxed)
    }

    /// Changes how many torrents download at once (0: no limit); the queue
    /// follows at once.
    pub async fn set_max_active_downloads(&self, n: usize) {
        self.inner.max_active.store(n, Ordering::Relaxed);
        self.schedule().await;
    }

    /// Lets the first torrents (in the order they were added) that are not
    /// complete and not paused by the user download, as many as allowed,
    /// and queues the others (paused by the daemon, not by the user);
    /// complete ones seed whatever the queue.
    async fn schedule(&self) {
        let max = self.max_active_downloads();
        let mut items: Vec<Arc<Item>> = lock(&self.inner.torrents).values().cloned().collect();
        items.sort_by_cached_key(|i| (lock(&i.settings).added, i.seq));
        let mut active = 0;
        for item in items {
            let Status::Active(h) = item.status() else {
                continue;
            };
            let settings = item.settings();
            if settings.paused {
                item.queued.store(false, Ordering::SeqCst);
                // Paused by the user: its seeding clock stops.
                self.track_seeding(&item, false);
                continue;
            }
            // The cheap accessors, not a whole snapshot: this runs every
            // second over every torrent.
            // Done: every piece of the files wanted (a torrent with files
            // skipped takes no download slot once those are in).
            let (state, (_, total)) = (h.state(), h.progress());
            let complete = h.is_done();
            let seeding = state == TorrentState::Seeding;
            self.track_seeding(&item, seeding);
            if complete && seeding && self.goal_reached(&item, &settings, total) {
                let _op = item.op.lock().await;
                let mut settings = item.settings();
                if settings.paused {
                    continue;
                }
                settings.paused = true;
                settings.finished = true;
                if let Err(e) = self.save(&item, &settings) {
                    tracing::warn!(id = %item.id.to_hex(), error = %e, "cannot save a finished torrent's settings");
                }
                *lock(&item.settings) = settings;
                h.pause().await;
                self.track_seeding(&item, false);
                continue;
            }
            if complete || max == 0 || active < max {
                if !complete {
                    active += 1;
                }
                if item.queued.swap(false, Ordering::SeqCst) {
                    h.resume();
                }
            } else if !item.queued.load(Ordering::SeqCst) {
                let _op = item.op.lock().await;
                if item.settings().paused {
                    continue;
                }
                item.queued.store(true, Ordering::SeqCst);
                h.pause().await;
            }
        }
    }

    /// The session the torrents run in.
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// The default download folder.
    pub fn download_dir(&self) -> &Path {
        &self.inner.download_dir
    }

    fn item(&self, id: &InfoHash) -> Result<Arc<Item>, DaemonError> {
        lock(&self.inner.torrents)
            .get(id)
            .cloned()
            .ok_or_else(|| DaemonError::NotFound(id.to_hex()))
    }

    fn insert_and_start(&self, entry: Entry) {
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let item = Arc::new(Item::new(entry, seq));
        lock(&self.inner.torrents).insert(item.id, Arc::clone(&item));
        self.launch(&item);
    }

    /// Starts what the torrent needs next: the metadata fetch (unless
    /// paused) or the check and the session's run (paused or not).
    fn launch(&self, item: &Arc<Item>) {
        let cancel = item.renew_cancel();
        let daemon = self.clone();
        let item = Arc::clone(item);
        self.inner.tasks.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = daemon.inner.cancel.cancelled() => {}
                () = daemon.bring_up(&item) => {}
            }
        });
    }

    async fn bring_up(&self, item: &Arc<Item>) {
        let metainfo = match item.metainfo() {
            Some(m) => m,
            None => {
                if item.settings().paused {
                    item.set_status(Status::FetchingMetadata);
                    return;
                }
                match self.fetch(item).await {
                    Ok(m) => {
                        let dir = item.settings().download_dir;
                        let clashes = clash(&lock(&self.inner.torrents), &item.id, &dir, &m);
                        if let Some(why) = clashes {
                            item.set_status(Status::Failed(why));
                            return;
                        }
                        m
                    }
                    Err(e) => {
                        item.set_status(Status::Failed(e));
                        return;
                    }
                }
            }
        };
        item.set_status(Status::Checking);
        // Files chosen with a magnet link, now that there is a file list.
        if let Some(wanted) = item.settings().wanted_files {
            let mut settings = item.settings();
            let files: Vec<usize> = wanted
                .into_iter()
                .filter(|i| *i < metainfo.info.files.len())
                .collect();
            settings.file_priorities =
                priorities_from_indices(metainfo.info.files.len(), &files).unwrap_or_default();
            settings.wanted_files = None;
            if let Err(e) = self.save(item, &settings) {
                tracing::warn!(error = %e, "cannot save the files chosen");
            }
            *lock(&item.settings) = settings;
        }
        let settings = item.settings();
        if let Err(e) = std::fs::create_dir_all(&settings.download_dir) {
            item.set_status(Status::Failed(format!(
                "cannot create {}: {e}",
                settings.download_dir.display()
            )));
            return;
        }
        // With a queue, a torrent starts paused and the queue lets it run
        // when its turn comes (at once, below, when there is room): one
        // beyond the limit never starts only to be stopped.
        let queue = self.max_active_downloads() > 0 && !settings.paused;
        item.queued.store(queue, Ordering::SeqCst);
        let options = AddOptions {
            seed: SeedPolicy::FOREVER,
            paused: settings.paused || queue,
            peers: settings
                .peers
                .iter()
                .chain(item.magnet.iter().flat_map(|m| m.peers.iter()))
                .copied()
                .collect(),
            file_priorities: settings.file_priorities.clone(),
            ..AddOptions::default()
        };
        let progress_item = Arc::clone(item);
        let added = self
            .inner
            .session
            .add(
                &metainfo,
                &settings.download_dir,
                options,
                Arc::new(move |done| progress_item.checked.store(done, Ordering::Relaxed)),
            )
            .await;
        match added {
            Ok((handle, _)) => {
                let removed = !lock(&self.inner.torrents).contains_key(&item.id);
                if removed {
                    handle.remove().await;
                } else {
                    // Paused while it was being checked: the pause found
                    // no run to stop.
                    if item.settings().paused && !settings.paused {
                        handle.pause().await;
                    }
                    let s = item.settings();
                    handle.set_rate_limits(s.download_limit, s.upload_limit);
                    item.set_status(Status::Active(handle));
                    if queue {
                        self.schedule().await;
                    }
                }
            }
            Err(e) => item.set_status(Status::Failed(e.to_string())),
        }
    }

    /// Fetches a magnet link's metadata and stores the .torrent made of it.
    async fn fetch(&self, item: &Arc<Item>) -> Result<Arc<Metainfo>, String> {
        item.set_status(Status::FetchingMetadata);
        let Some(magnet) = &item.magnet else {
            return Err("no metadata and no magnet link".into());
        };
        let options = FetchOptions {
            trackers: magnet.trackers.clone(),
            peers: magnet.peers.clone(),
            size_hint: magnet.exact_length,
            ..FetchOptions::default()
        };
        let info = self
            .inner
            .session
            .fetch_metadata(magnet.info_hash, options, &|_| {})
            .await
            .map_err(|e| e.to_string())?;
        let bytes = torrent_bytes(&info, &magnet.trackers);
        let m = Metainfo::from_bytes(&bytes).map_err(|e| {
            format!("the metadata peers sent matches the link's info-hash, but is not a valid torrent: {e}")
        })?;
        self.inner
            .store
            .save_torrent(&item.id, &bytes)
            .map_err(|e| format!("cannot save the fetched metadata: {e}"))?;
        let m = Arc::new(m);
        *lock(&item.metainfo) = Some(Arc::clone(&m));
        Ok(m)
    }

    /// Adds a .torrent. Returns the torrent and whether it is new (an
    /// existing one is returned unchanged).
    ///
    /// # Errors
    ///
    /// [`DaemonError::BadInput`] when `bytes` are not a valid torrent;
    /// [`DaemonError::Store`] when it cannot be stored.
    pub fn add_torrent(
        &self,
        bytes: Vec<u8>,
        req: AddRequest,
    ) -> Result<(TorrentView, bool), DaemonError> {
        let m = Metainfo::from_bytes(&bytes)
            .map_err(|e| DaemonError::BadInput(format!("not a valid torrent: {e}")))?;
        let id = m.info_hash;
        self.add_entry(id, Source::Torrent(Box::new(m), bytes), req)
    }

    /// Adds a magnet link, as [`Daemon::add_torrent`].
    ///
    /// # Errors
    ///
    /// [`DaemonError::BadInput`] when `link` is not a magnet link.
    pub fn add_magnet(
        &self,
        link: &str,
        req: AddRequest,
    ) -> Result<(TorrentView, bool), DaemonError> {
        let m = Magnet::parse(link.trim())
            .map_err(|e| DaemonError::BadInput(format!("invalid magnet link: {e}")))?;
        let id = m.info_hash;
        self.add_entry(id, Source::Magnet(Box::new(m)), req)
    }

    fn add_entry(
        &self,
        id: InfoHash,
        source: Source,
        req: AddRequest,
    ) -> Result<(TorrentView, bool), DaemonError> {
        if self.inner.cancel.is_cancelled() {
            return Err(DaemonError::ShuttingDown);
        }
        let download_dir = req
            .download_dir
            .unwrap_or_else(|| self.inner.download_dir.clone());
        if !download_dir.is_absolute() {
            return Err(DaemonError::BadInput(format!(
                "the download folder must be an absolute path, not {}",
                download_dir.display()
            )));
        }
        let (file_priorities, wanted_files) = match (&source, req.files) {
            (_, None) => (Vec::new(), None),
            (Source::Torrent(m, _), Some(files)) => {
                (priorities_from_indices(m.info.files.len(), &files)?, None)
            }
            (Source::Magnet(_), Some(files)) => (Vec::new(), Some(files)),
        };
        let entry = Entry {
            id,
            source,
            settings: Settings {
                download_dir,
                paused: req.paused,
                added: unix_now(),
                peers: req.peers,
                download_limit: 0,
                upload_limit: 0,
                seed_ratio: None,
                seed_time: None,
                finished: false,
                seed_forever: false,
                downloaded: 0,
                uploaded: 0,
                seeded: 0,
                file_priorities,
                wanted_files,
            },
        };
        // The table's lock is held across the store's write so that two
        // adds of the same torrent at once make one entry; a write is a few
        // milliseconds, and adds are rare.
        let item = {
            let mut torrents = lock(&self.inner.torrents);
            if let Some(existing) = torrents.get(&id) {
                let existing = Arc::clone(existing);
                drop(torrents);
                return Ok((self.view(&existing), false));
            }
            if let Source::Torrent(m, _) = &entry.source {
                if let Some(why) = clash(&torrents, &id, &entry.settings.download_dir, m) {
                    return Err(DaemonError::BadInput(why));
                }
            }
            self.inner.store.create(&entry)?;
            let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
            let item = Arc::new(Item::new(entry, seq));
            torrents.insert(id, Arc::clone(&item));
            item
        };
        self.launch(&item);
        Ok((self.view(&item), true))
    }

    /// Every torrent, in id order.
    pub fn list(&self) -> Vec<TorrentView> {
        let items: Vec<_> = lock(&self.inner.torrents).values().cloned().collect();
        items.iter().map(|i| self.view(i)).collect()
    }

    /// The ids of the torrents, in order.
    pub fn ids(&self) -> Vec<InfoHash> {
        lock(&self.inner.torrents).keys().copied().collect()
    }

    /// One torrent.
    ///
    /// # Errors
    ///
    /// [`DaemonError::NotFound`].
    pub fn get(&self, id: &InfoHash) -> Result<TorrentView, DaemonError> {
        Ok(self.view(self.item(id)?.as_ref()))
    }

    /// One torrent with its files and trackers.
    ///
    /// # Errors
    ///
    /// [`DaemonError::NotFound`].
    pub fn detail(&self, id: &InfoHash) -> Result<TorrentDetail, DaemonError> {
        let item = self.item(id)?;
        let torrent = self.view(&item);
        let handle = match item.status() {
            Status::Active(h) => Some(h),
            _ => None,
        };
        let have = handle
            .as_ref()
            .map(TorrentHandle::have_pieces)
            .unwrap_or_default();
        let settings = item.settings();
        let files = item.metainfo().map_or_else(Vec::new, |m| {
            file_views(&m, &have, &settings.file_priorities)
        });
        let mut d = TorrentDetail {
            torrent,
            download_limit: settings.download_limit,
            upload_limit: settings.upload_limit,
            seed_ratio: settings.seed_ratio,
            seed_time: settings.seed_time,
            seed_forever: settings.seed_forever,
            seeded: item.totals().2,
            pieces: item.metainfo().map_or(0, |m| m.info.num_pieces()),
            pieces_have: 0,
            files,
            trackers: Vec::new(),
            peer_list: Vec::new(),
            availability: handle
                .as_ref()
                .map(TorrentHandle::availability)
                .unwrap_or_default(),
            peers_known: 0,
            peers_incoming: 0,
            peers_banned: 0,
            hash_failures: 0,
        };
        if let Status::Active(h) = item.status() {
            let s = h.snapshot();
            d.pieces_have = s.pieces_have;
            d.peers_known = s.peers_known;
            d.peers_incoming = s.peers_incoming;
            d.peers_banned = s.peers_banned;
            d.hash_failures = s.hash_failures;
            d.peer_list = h
                .peers()
                .into_iter()
                .map(|p| PeerView {
                    address: p.addr.to_string(),
                    client: p.client,
                    incoming: p.incoming,
                    mse: p.mse,
                    utp: p.utp,
                    seed: p.seed,
                    downloaded: p.downloaded,
                    uploaded: p.uploaded,
                    down_rate: p.down_rate as u64,
                    up_rate: p.up_rate as u64,
                    progress: p.progress,
                    connected_secs: p.connected_for.as_secs(),
                })
                .collect();
            d.trackers = h
                .tracker_reports()
                .into_iter()
                .map(|r| {
                    let last_announce =
                        r.at.duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                    let (status, peers, error) = match r.status {
                        TrackerStatus::Working { peers } => ("working", Some(peers), None),
                        TrackerStatus::Failed(e) => ("failed", None, Some(e.to_string())),
                    };
                    TrackerView {
                        url: r.url,
                        tier: r.tier,
                        status: status.into(),
                        last_announce,
                        peers,
                        error,
                    }
                })
                .collect();
        }
        Ok(d)
    }

    fn view(&self, item: &Item) -> TorrentView {
        let settings = item.settings();
        let size = item.metainfo().map_or(0, |m| m.info.total_length());
        let mut v = TorrentView {
            id: item.id.to_hex(),
            name: item.name(),
            state: String::new(),
            progress: 0.0,
            size,
            size_wanted: size,
            have_wanted: 0,
            have: 0,
            downloaded: 0,
            uploaded: 0,
            down_rate: 0,
            up_rate: 0,
            peers: 0,
            seeds: 0,
            eta: None,
            ratio: 0.0,
            added: settings.added,
            download_dir: settings.download_dir.display().to_string(),
            error: None,
            finished: settings.finished,
        };
        (v.downloaded, v.uploaded, _) = item.totals();
        v.state = match item.status() {
            Status::FetchingMetadata if settings.paused => "paused".into(),
            Status::FetchingMetadata => "fetching_metadata".into(),
            Status::Checking if item.moving.load(Ordering::SeqCst) => "moving".into(),
            Status::Checking => {
                v.have = item.checked.load(Ordering::Relaxed);
                "checking".into()
            }
            Status::Failed(e) => {
                v.error = Some(e);
                "error".into()
            }
            Status::Active(h) => {
                let s = h.snapshot();
                v.have = s.have_bytes;
                v.down_rate = s.down_rate as u64;
                v.up_rate = s.up_rate as u64;
                v.peers = s.peers_connected;
                v.seeds = s.peers_seeds;
                v.size_wanted = s.wanted_bytes;
                v.have_wanted = s.wanted_bytes.saturating_sub(s.wanted_left);
                let missing = s.wanted_left;
                if missing > 0 && v.down_rate > 0 {
                    v.eta = Some(missing.div_ceil(v.down_rate));
                }
                let base = if v.downloaded > 0 {
                    v.downloaded
                } else if missing == 0 {
                    s.total_bytes
                } else {
                    0
                };
                if base > 0 {
                    v.ratio = v.uploaded as f64 / base as f64;
                }
                v.error = s.error.as_ref().map(|e| e.to_string());
                let queued = item.queued.load(Ordering::SeqCst) && !settings.paused;
                match s.state {
                    TorrentState::Paused if queued => "queued",
                    TorrentState::Downloading => "downloading",
                    TorrentState::Seeding => "seeding",
                    TorrentState::Paused | TorrentState::Finished | TorrentState::Removed => {
                        "paused"
                    }
                    TorrentState::Failed => "error",
                }
                .into()
            }
        };
        if v.error.is_none() {
            v.error = lock(&item.move_error).clone();
        }
        if v.size_wanted > 0 {
            v.progress = (v.have_wanted as f64 / v.size_wanted as f64).clamp(0.0, 1.0);
            if v.state == "checking" {
                // Checked bytes, not verified ones: no progress claimed.
                v.progress = 0.0;
                v.have = 0;
                v.have_wanted = 0;
            }
        }
        v
    }

    /// Pauses a torrent (kept paused across restarts) and waits until it is.
    ///
    /// # Errors
    ///
    /// [`DaemonError::NotFound`], or [`DaemonError::Store`].
    pub async fn pause(&self, id: &InfoHash) -> Result<TorrentView, DaemonError> {
        let item = self.item(id)?;
        let _op = item.op.lock().await;
        self.set_paused(&item, true)?;
        match item.status() {
            Status::Active(h) => h.pause().await,
            Status::FetchingMetadata => {
                // The fetch stops; a resume starts it again.
                item.renew_cancel();
            }
            Status::Checking | Status::Failed(_) => {}
        }
        Ok(self.view(&item))
    }

    /// Resumes a torrent; one that stopped on an error is tried again.
    ///
    /// # Errors
    ///
    /// [`DaemonError::NotFound`], or [`DaemonError::Store`].
    pub async fn resume(&self, id: &InfoHash) -> Result<TorrentView, DaemonError> {
        let item = self.item(id)?;
        let _op = item.op.lock().await;
        let was_paused = item.settings().paused;
        self.set_paused(&item, false)?;
        match item.status() {
            // With a queue, it waits for its turn like any other.
            Status::Active(_) if self.max_active_downloads() > 0 => {
                item.queued.store(true, Ordering::SeqCst);
                drop(_op);
                self.schedule().await;
            }
            Status::Active(h) => h.resume(),
            Status::Failed(_) => self.launch(&item),
            Status::FetchingMetadata if was_paused => self.launch(&item),
            Status::FetchingMetadata | Status::Checking => {}
        }
        Ok(self.view(&item))
    }

    /// Changes a torrent's settings: its rate limits (bytes per second, 0:
    /// none) and whether it is paused. Kept across restarts.
    ///
    /// # Errors
    ///
    /// [`DaemonError::NotFound`], or [`DaemonError::Store`].
    pub async fn change(
        &self,
        id: &InfoHash,
        change: TorrentChange,
    ) -> Result<TorrentDetail, DaemonError> {
        if let Some(paused) = change.paused {
            if paused {
                self.pause(id).await?;
            } else {
                self.resume(id).await?;
            }
        }
        let item = self.item(id)?;
        {
            let _op = item.op.lock().await;
            if let Some(dest) = &change.download_dir {
                self.start_move(&item, dest).await?;
            }
            let mut settings = item.settings();
            settings.download_limit = change.download_limit.unwrap_or(settings.download_limit);
            settings.upload_limit = change.upload_limit.unwrap_or(settings.upload_limit);
            settings.seed_ratio = change.seed_ratio.or(settings.seed_ratio);
            settings.seed_time = change.seed_time.or(settings.seed_time);
            settings.seed_forever = change.seed_forever.unwrap_or(settings.seed_forever);
            if let Some(files) = &change.files {
                let Some(m) = item.metainfo() else {
                    return Err(DaemonError::BadInput(
                        "the files are not known before the metadata is fetched: add the magnet link with `files` instead".into(),
                    ));
                };
                settings.file_priorities =
                    changed_priorities(m.info.files.len(), &settings.file_priorities, files)?;
            }
            self.save(&item, &settings)?;
            if let Status::Active(h) = item.status() {
                h.set_rate_limits(settings.download_limit, settings.upload_limit);
                if change.files.is_some() {
                    h.set_file_priorities(settings.file_priorities.clone())
                        .await
                        .map_err(|e| {
                            DaemonError::Store(io::Error::other(format!(
                                "cannot create the files now wanted: {e}"
                            )))
                        })?;
                }
            }
            *lock(&item.settings) = settings;
        }
        self.detail(id)
    }

    /// Starts moving `item`'s data to `dest` (the caller holds its
    /// operation lock): checks what can be checked at once (an absolute
    /// folder, no name clash there, nothing of the torrent's there yet),
    /// stops the torrent, then copies, verifies, switches and removes in a
    /// task. Until that is done the torrent is `moving`; if anything fails
    /// the copy is removed, the torrent goes on from where it was, and the
    /// error says why.
    async fn start_move(&self, item: &Arc<Item>, dest: &Path) -> Result<(), DaemonError> {
        if !dest.is_absolute() {
            return Err(DaemonError::BadInput(format!(
                "the download folder must be an absolute path, not {}",
                dest.display()
            )));
        }
        let from = item.settings().download_dir;
        if from == dest {
            return Ok(());
        }
        let Some(m) = item.metainfo() else {
            // No data yet: only where it will go changes.
            let mut settings = item.settings();
            settings.download_dir = dest.to_owned();
            self.save(item, &settings)?;
            *lock(&item.settings) = settings;
            return Ok(());
        };
        let handle = match item.status() {
            Status::Active(h) => h,
            Status::Failed(_) => {
                return Err(DaemonError::BadInput(
                    "the torrent stopped on an error: resume it before moving its data".into(),
                ))
            }
            _ => {
                return Err(DaemonError::BadInput(
                    "the torrent is being checked or moved: move it once that is done".into(),
                ))
            }
        };
        if let Some(why) = clash(&lock(&self.inner.torrents), &item.id, dest, &m) {
            return Err(DaemonError::BadInput(why));
        }
        if let Some(there) = m
            .info
            .files
            .iter()
            .filter(|f| f.is_stored())
            .map(|f| dest.join(f.relative_path()))
            .find(|p| p.exists())
        {
            return Err(DaemonError::BadInput(format!(
                "{} already exists: moving would overwrite it",
                there.display()
            )));
        }
        let had = handle.snapshot().pieces_have;
        *lock(&item.move_error) = None;
        item.renew_cancel();
        item.moving.store(true, Ordering::SeqCst);
        item.set_status(Status::Checking);
        // Stopped as a pause does: resume data saved, files closed, the
        // folder unlocked.
        handle.remove().await;
        let daemon = self.clone();
        let item = Arc::clone(item);
        let dest = dest.to_owned();
        self.inner.tasks.spawn(async move {
            let (m2, from2, dest2) = (Arc::clone(&m), from.clone(), dest.clone());
            let copied =
                tokio::task::spawn_blocking(move || copy_and_verify(&m2, &from2, &dest2, had))
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
            let _op = item.op.lock().await;
            item.moving.store(false, Ordering::SeqCst);
            match copied {
                Ok(()) => {
                    let mut settings = item.settings();
                    settings.download_dir = dest.clone();
                    if let Err(e) = daemon.save(&item, &settings) {
                        tracing::warn!(error = %e, "cannot save the new download folder");
                    }
                    *lock(&item.settings) = settings;
                    if let Err(e) = delete_data_of(&m, &from) {
                        tracing::warn!(error = %e, folder = %from.display(), "moved, but the old copy could not all be removed");
                    }
                    tracing::info!(from = %from.display(), to = %dest.display(), "data moved");
                }
                Err(e) => {
                    tracing::warn!(error = %e, to = %dest.display(), "moving failed; the data stays where it was");
                    if let Err(e) = delete_data_of(&m, &dest) {
                        tracing::warn!(error = %e, "cannot remove the partial copy");
                    }
                    *lock(&item.move_error) = Some(format!(
                        "moving to {} failed: {e}; the data stays in {}",
                        dest.display(),
                        from.display()
                    ));
                }
            }
            if !daemon.inner.cancel.is_cancelled()
                && lock(&daemon.inner.torrents).contains_key(&item.id)
            {
                daemon.launch(&item);
            }
        });
        Ok(())
    }

    /// Changes the session's settings (what is `None` stays), at once, and
    /// keeps them in the state folder (`session.json`) for the next start.
    ///
    /// # Errors
    ///
    /// [`DaemonError::Store`] when they cannot be kept (they apply all the
    /// same).
    pub async fn change_session(&self, change: SessionSettings) -> Result<(), DaemonError> {
        let (down, up) = self.inner.session.rate_limits();
        self.inner.session.set_rate_limits(
            change.download_limit.unwrap_or(down),
            change.upload_limit.unwrap_or(up),
        );
        if change.max_connections == Some(0) {
            return Err(DaemonError::BadInput(
                "max_connections must be at least 1".into(),
            ));
        }
        if let Some(n) = change.max_connections {
            self.inner.session.set_max_connections(n);
        }
        if let Some(n) = change.max_active_downloads {
            self.set_max_active_downloads(n).await;
        }
        {
            let mut goals = lock(&self.inner.goals);
            goals.0 = change.seed_ratio.or(goals.0);
            goals.1 = change.seed_time.or(goals.1);
        }
        let dir = self.inner.store.state_dir();
        let mut kept = SessionSettings::load(dir)
            .ok()
            .flatten()
            .unwrap_or_default();
        kept.download_limit = change.download_limit.or(kept.download_limit);
        kept.upload_limit = change.upload_limit.or(kept.upload_limit);
        kept.max_active_downloads = change.max_active_downloads.or(kept.max_active_downloads);
        kept.max_connections = change.max_connections.or(kept.max_connections);
        kept.seed_ratio = change.seed_ratio.or(kept.seed_ratio);
        kept.seed_time = change.seed_time.or(kept.seed_time);
        kept.save(dir)?;
        Ok(())
    }

    /// Checks the torrent's data again from scratch (its resume data
    /// forgotten), then runs it as before.
    ///
    /// # Errors
    ///
    /// [`DaemonError::NotFound`]; [`DaemonError::BadInput`] before the
    /// metadata is there; [`DaemonError::Store`] when the resume data cannot
    /// be removed.
    pub async fn recheck(&self, id: &InfoHash) -> Result<TorrentView, DaemonError> {
        let item = self.item(id)?;
        let _op = item.op.lock().await;
        let Some(m) = item.metainfo() else {
            return Err(DaemonError::BadInput(
                "the metadata is not fetched yet: there is nothing to check".into(),
            ));
        };
        item.renew_cancel();
        if let Status::Active(h) = item.status() {
            // Stopped as a pause does (resume data saved), then the resume
            // data goes, so that the check hashes every piece.
            h.remove().await;
        }
        let resume = item
            .settings()
            .download_dir
            .join(".rivulet")
            .join(format!("{}.resume", m.info_hash.to_hex()));
        match std::fs::remove_file(&resume) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        item.checked.store(0, Ordering::Relaxed);
        item.set_status(Status::Checking);
        self.launch(&item);
        Ok(self.view(&item))
    }

    /// Announces the torrent to its trackers now.
    ///
    /// # Errors
    ///
    /// [`DaemonError::NotFound`]; [`DaemonError::BadInput`] when it is not
    /// running (paused, checking, fetching its metadata, stopped on an
    /// error).
    pub fn reannounce(&self, id: &InfoHash) -> Result<TorrentView, DaemonError> {
        let item = self.item(id)?;
        match item.status() {
            Status::Active(h) if h.is_running() => h.reannounce(),
            _ => {
                return Err(DaemonError::BadInput(
                    "the torrent is not running: nothing to announce".into(),
                ))
            }
        }
        Ok(self.view(&item))
    }

    /// A token cancelled once the daemon begins to shut down (long
    /// requests, such as event streams, end then).
    pub fn stopping(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// Begins the shutdown: no more adds, event streams end. Then
    /// [`Daemon::shutdown`] stops the torrents.
    pub fn begin_shutdown(&self) {
        self.inner.cancel.cancel();
    }

    fn set_paused(&self, item: &Item, paused: bool) -> Result<(), DaemonError> {
        let mut settings = item.settings();
        if settings.paused != paused || (!paused && settings.finished) {
            settings.paused = paused;
            // A resume seeds again (until a goal is reached again).
            settings.finished &= paused;
            self.save(item, &settings)?;
            *lock(&item.settings) = settings;
        }
        Ok(())
    }

    /// Removes a torrent: stopped (resume data saved, `stopped` sent),
    /// forgotten by the state folder, and with `delete_data` its files
    /// deleted too.
    ///
    /// # Errors
    ///
    /// [`DaemonError::NotFound`]; [`DaemonError::Store`] when the entry or
    /// the data cannot be removed.
    pub async fn remove(&self, id: &InfoHash, delete_data: bool) -> Result<(), DaemonError> {
        let item = self.item(id)?;
        let _op = item.op.lock().await;
        if lock(&self.inner.torrents).remove(id).is_none() {
            // Removed by a call that held the lock before us.
            return Err(DaemonError::NotFound(id.to_hex()));
        }
        item.renew_cancel();
        if let Status::Active(h) = item.status() {
            h.remove().await;
        }
        self.inner.store.remove(id)?;
        if delete_data {
            if let Some(m) = item.metainfo() {
                delete_data_of(&m, &item.settings().download_dir)?;
            }
        }
        Ok(())
    }

    /// The whole session's figures.
    pub async fn session_view(&self) -> SessionView {
        let list = self.list();
        let dht_nodes = match self.inner.session.dht() {
            Some(d) => d.status().await.map(|s| s.nodes_v4 + s.nodes_v6),
            None => None,
        };
        let (download_limit, upload_limit) = self.inner.session.rate_limits();
        let (seed_ratio, seed_time) = *lock(&self.inner.goals);
        SessionView {
            version: env!("CARGO_PKG_VERSION").into(),
            seed_ratio,
            seed_time,
            download_limit,
            upload_limit,
            max_active_downloads: self.max_active_downloads(),
            max_connections: self.inner.session.connections().0,
            connections: self.inner.session.connections().1,
            torrents: list.len(),
            down_rate: list.iter().map(|t| t.down_rate).sum(),
            up_rate: list.iter().map(|t| t.up_rate).sum(),
            downloaded: list.iter().map(|t| t.downloaded).sum(),
            uploaded: list.iter().map(|t| t.uploaded).sum(),
            port: self.inner.session.port(),
            dht_nodes,
        }
    }

    /// Stops every torrent cleanly (resume data saved, `stopped` sent to
    /// trackers within the session's bounded wait) and waits for it.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.save_totals();
        self.inner.session.shutdown().await;
    }
}

/// Why torrent `id` (`m`) may not go into `dir`: another torrent of the
/// daemon puts a file or folder of the same name there (their data would
/// overwrite each other's). Takes the table's lock held; locks items (the
/// table's lock comes first).
fn clash(
    torrents: &BTreeMap<InfoHash, Arc<Item>>,
    id: &InfoHash,
    dir: &Path,
    m: &Metainfo,
) -> Option<String> {
    let top = |m: &Metainfo| m.info.files.first().and_then(|f| f.path.first()).cloned();
    let name = top(m)?;
    torrents.values().filter(|i| i.id != *id).find_map(|i| {
        let other = i.metainfo()?;
        (lock(&i.settings).download_dir == dir && top(&other).as_ref() == Some(&name)).then(|| {
            format!(
                "{} already holds {name:?} of torrent {}: add this one with another download folder",
                dir.display(),
                i.id.to_hex()
            )
        })
    })
}

/// Each file (padding left out) with the share of its bytes in pieces
/// `have` says are verified (none when `have` is empty).
/// `current` file priorities (of a torrent of `n` files; empty: all
/// normal) with `changes` made.
///
/// # Errors
///
/// [`DaemonError::BadInput`] for an index that is not a file's or a
/// priority outside 1 to 7.
fn changed_priorities(
    n: usize,
    current: &[u8],
    changes: &[FileChange],
) -> Result<Vec<u8>, DaemonError> {
    let mut out: Vec<u8> = (0..n)
        .map(|i| current.get(i).copied().unwrap_or(NORMAL_PRIORITY))
        .collect();
    for c in changes {
        let slot = out.get_mut(c.index).ok_or_else(|| {
            DaemonError::BadInput(format!(
                "no file {}: the torrent's files are numbered 0 to {}",
                c.index,
                n.saturating_sub(1)
            ))
        })?;
        if let Some(p) = c.priority {
            if !(1..=MAX_PRIORITY).contains(&p) {
                return Err(DaemonError::BadInput(format!(
                    "priority {p} of file {}: priorities go from 1 (lowest) to {MAX_PRIORITY} (highest)",
                    c.index
                )));
            }
        }
        match (c.wanted, c.priority) {
            (Some(false), _) => *slot = 0,
            (_, Some(p)) => *slot = p,
            (Some(true), None) if *slot == 0 => *slot = NORMAL_PRIORITY,
            _ => {}
        }
    }
    Ok(out)
}

/// File priorities (one per file of a torrent of `n` files) that download
/// the files `wanted` (at normal priority) and skip the others.
///
/// # Errors
///
/// [`DaemonError::BadInput`] for an index that is not a file's.
fn priorities_from_indices(n: usize, wanted: &[usize]) -> Result<Vec<u8>, DaemonError> {
    let mut out = vec![0u8; n];
    for i in wanted {
        *out.get_mut(*i).ok_or_else(|| {
            DaemonError::BadInput(format!(
                "no file {i}: the torrent's files are numbered 0 to {}",
                n.saturating_sub(1)
            ))
        })? = NORMAL_PRIORITY;
    }
    Ok(out)
}

fn file_views(m: &Metainfo, have: &[bool], priorities: &[u8]) -> Vec<FileView> {
    let plen = m.info.piece_length.max(1);
    let mut start = 0u64;
    let mut out = Vec::new();
    for (index, f) in m.info.files.iter().enumerate() {
        let priority = priorities.get(index).copied().unwrap_or(NORMAL_PRIORITY);
        let end = start + f.length;
        if !f.padding {
            let mut done = 0u64;
            if f.length > 0 {
                for p in start / plen..=(end - 1) / plen {
                    if have.get(p as usize).copied().unwrap_or(false) {
                        let (ps, pe) = (p * plen, (p + 1) * plen);
                        done += pe.min(end) - ps.max(start);
                    }
                }
            }
            out.push(FileView {
                index,
                wanted: priority > 0,
                priority,
                path: f.display_path(),
                size: f.length,
                progress: if f.length == 0 {
                    1.0
                } else {
                    done as f64 / f.length as f64
                },
            });
        }
        start = end;
    }
    out
}

/// Copies the torrent's files, its resume data and its part file from
/// `from` to `dest` (each file with its modification time, so that the
/// resume data still vouches for it), then checks the copy against the
/// piece hashes: at least `had` pieces must be good, as many as were
/// verified before the move.
fn copy_and_verify(m: &Metainfo, from: &Path, dest: &Path, had: u64) -> io::Result<()> {
    let hex = m.info_hash.to_hex();
    let meta = |dir: &Path, ext: &str| dir.join(".rivulet").join(format!("{hex}.{ext}"));
    let mut pairs: Vec<(PathBuf, PathBuf)> = m
        .info
        .files
        .iter()
        .filter(|f| f.is_stored())
        .map(|f| (from.join(f.relative_path()), dest.join(f.relative_path())))
        .collect();
    for ext in ["resume", "parts"] {
        pairs.push((meta(from, ext), meta(dest, ext)));
    }
    for (src, dst) in &pairs {
        let modified = match std::fs::metadata(src) {
            Ok(meta) => meta.modified()?,
            // A file not there (skipped, or never written): nothing to copy.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", src.display()))),
        };
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(src, dst)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dst.display())))?;
        std::fs::File::options()
            .write(true)
            .open(dst)?
            .set_times(std::fs::FileTimes::new().set_modified(modified))?;
    }
    // Check what was copied, the part file included.
    let part = meta(dest, "parts");
    let files: Vec<FileSource> = m
        .info
        .file_sources(dest)
        .into_iter()
        .enumerate()
        .map(|(i, source)| match source {
            FileSource::Disk(path) if !path.exists() => FileSource::Part {
                path: part.clone(),
                offset: m.info.layout().file_start(i).unwrap_or(0),
            },
            source => source,
        })
        .collect();
    let checks = check_pieces(m.info.layout(), &files, &m.info.pieces, &|_| {})
        .map_err(|e| io::Error::other(e.to_string()))?;
    let good = checks.iter().filter(|c| **c == PieceCheck::Good).count() as u64;
    if good < had {
        return Err(io::Error::other(format!(
            "the copy holds {good} good pieces where {had} were verified"
        )));
    }
    // Whatever lands on the disk from here on is the copy's.
    for (_, dst) in &pairs {
        if let Ok(f) = std::fs::File::open(dst) {
            f.sync_all()?;
        }
    }
    Ok(())
}

/// Deletes a torrent's files under `dir`, its resume files, and the folders
/// its files were in once empty (never `dir` itself, never anything that
/// is not the torrent's).
fn delete_data_of(m: &Metainfo, dir: &Path) -> io::Result<()> {
    let gone = |r: io::Result<()>| match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    let mut folders = Vec::new();
    for f in m.info.files.iter().filter(|f| !f.padding) {
        let path = dir.join(f.relative_path());
        gone(std::fs::remove_file(&path))?;
        let mut parent = path.parent();
        while let Some(p) = parent.filter(|p| p.starts_with(dir) && *p != dir) {
            folders.push(p.to_path_buf());
            parent = p.parent();
        }
    }
    // Deepest first; a folder holding something else stays.
    folders.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    folders.dedup();
    for p in folders {
        let _ = std::fs::remove_dir(p);
    }
    let meta = dir.join(".rivulet");
    let hex = m.info_hash.to_hex();
    for ext in ["resume", "lock", "torrent", "parts"] {
        gone(std::fs::remove_file(meta.join(format!("{hex}.{ext}"))))?;
    }
    if let Some(name) = m.info.files.first().and_then(|f| f.path.first()) {
        gone(std::fs::remove_file(
            rivulet_engine::folder::name_lock_path(dir, name),
        ))?;
    }
    let _ = std::fs::remove_dir(meta);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// Files of 10, 0 and 30 bytes in pieces of 16: piece 0 holds a and
    /// the start of c, pieces 1 and 2 the rest of c.
    fn metainfo() -> Metainfo {
        let mut b = b"d4:infod5:filesl".to_vec();
        for (len, name) in [(10, "a"), (0, "b"), (30, "c")] {
            b.extend_from_slice(format!("d6:lengthi{len}e4:pathl1:{name}ee").as_bytes());
        }
        b.extend_from_slice(b"e4:name1:t12:piece lengthi16e6:pieces60:");
        b.extend_from_slice(&[7u8; 60]);
        b.extend_from_slice(b"ee");
        Metainfo::from_bytes(&b).unwrap()
    }

    #[test]
    fn file_changes_apply_in_order_and_bad_ones_are_refused() {
        let change = |index, wanted, priority| FileChange {
            index,
            wanted,
            priority,
        };
        // Skip 0, raise 1, want 2 again at normal priority.
        let out = changed_priorities(
            3,
            &[4, 4, 0],
            &[
                change(0, Some(false), None),
                change(1, None, Some(7)),
                change(2, Some(true), None),
            ],
        )
        .unwrap();
        assert_eq!(out, vec![0, 7, 4]);
        // Wanting a file keeps its priority; empty means all normal.
        assert_eq!(
            changed_priorities(2, &[], &[change(1, Some(true), None)]).unwrap(),
            vec![4, 4]
        );
        assert_eq!(
            changed_priorities(2, &[1, 4], &[change(0, Some(true), None)]).unwrap(),
            vec![1, 4]
        );
        for bad in [
            change(2, Some(false), None),
            change(0, None, Some(0)),
            change(0, None, Some(8)),
        ] {
            assert!(matches!(
                changed_priorities(2, &[], &[bad]),
                Err(DaemonError::BadInput(_))
            ));
        }
        assert_eq!(priorities_from_indices(3, &[2, 0]).unwrap(), vec![4, 0, 4]);
        assert!(priorities_from_indices(3, &[3]).is_err());
    }

    #[test]
    fn file_progress_counts_the_bytes_in_verified_pieces() {
        let m = metainfo();
        let progress = |have: &[bool]| -> Vec<f64> {
            file_views(&m, have, &[])
                .iter()
                .map(|f| f.progress)
                .collect()
        };
        // Only piece 1 (bytes 16..32, all of c): 16 of c's 30 bytes.
        assert_eq!(progress(&[false, true, false]), [0.0, 1.0, 16.0 / 30.0]);
        // Piece 0 (a whole, 6 bytes of c) and piece 2 (c's last 8).
        assert_eq!(progress(&[true, false, true]), [1.0, 1.0, 14.0 / 30.0]);
        assert_eq!(progress(&[true, true, true]), [1.0, 1.0, 1.0]);
        assert_eq!(progress(&[]), [0.0, 1.0, 0.0]);
        let paths: Vec<String> = file_views(&m, &[], &[])
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(paths, ["t/a", "t/b", "t/c"]);
    }
}
