//! What the daemon keeps of each torrent across restarts, crash-safely.
//!
//! Under `STATE_DIR/torrents/`, one folder per torrent named by its v1
//! info-hash in lowercase hex:
//!
//! - `torrent`: the .torrent's bytes (for a magnet link, written once its
//!   metadata is fetched);
//! - `magnet`: the magnet link, while its metadata is not fetched yet;
//! - `settings.json`: the daemon's settings of the torrent ([`Settings`]).
//!
//! Resume data (which pieces are verified) is the engine's, beside the data
//! (`DIR/.rivulet/<info-hash>.resume`), saved by the session.
//!
//! Every file is replaced atomically (a temporary file in the same folder,
//! fsync, rename, fsync of the folder), and a new torrent's folder is made
//! complete under a temporary name, then renamed into place: after a crash
//! at any instant, each entry is either the old one or the new one, never
//! half of it. An entry that cannot be read (damaged by hand, or by a disk
//! fault) is moved to `STATE_DIR/set-aside/` with a warning; it never stops
//! the daemon from starting.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rivulet_core::{InfoHash, Magnet, Metainfo};
use serde::{Deserialize, Serialize};

/// The daemon's settings of one torrent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Where its data goes (the torrent's file or folder is created in it).
    pub download_dir: PathBuf,
    /// Paused by the user: not started until resumed.
    #[serde(default)]
    pub paused: bool,
    /// When it was added, in seconds since the Unix epoch.
    pub added: u64,
    /// Peers given when it was added.
    #[serde(default)]
    pub peers: Vec<std::net::SocketAddr>,
    /// Its own limit on bytes per second received (0: none).
    #[serde(default)]
    pub download_limit: u64,
    /// Its own limit on bytes per second sent (0: none).
    #[serde(default)]
    pub upload_limit: u64,
    /// Its own seeding goal: stop once uploaded this many times its size
    /// (`None`: the session's).
    #[serde(default)]
    pub seed_ratio: Option<f64>,
    /// Its own seeding goal: stop after seeding this many seconds
    /// (`None`: the session's).
    #[serde(default)]
    pub seed_time: Option<u64>,
    /// It reached a seeding goal and was stopped (until resumed).
    #[serde(default)]
    pub finished: bool,
    /// It seeds whatever the goals (its own and the session's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seed_forever: bool,
    /// Payload bytes received in earlier runs of the daemon.
    #[serde(default)]
    pub downloaded: u64,
    /// Payload bytes sent in earlier runs of the daemon.
    #[serde(default)]
    pub uploaded: u64,
    /// Seconds seeded in earlier runs of the daemon.
    #[serde(default)]
    pub seeded: u64,
    /// The priority of each file (0: not wanted, 1 to 7); empty: every
    /// file normal (4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_priorities: Vec<u8>,
    /// For a magnet link added with a choice of files, before its metadata
    /// is fetched: the indices of the files wanted (then turned into
    /// `file_priorities`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted_files: Option<Vec<usize>>,
}

/// Session settings changed through the API (`PATCH /session`), kept in
/// `STATE_DIR/session.json`: what is `None` was never changed there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// Bytes per second received by all torrents (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_limit: Option<u64>,
    /// Bytes per second sent by all torrents (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_limit: Option<u64>,
    /// Torrents downloading at once (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_downloads: Option<usize>,
    /// Peer connections open at once, all torrents together (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Seeding goal of every torrent without its own: stop once uploaded
    /// this many times its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_ratio: Option<f64>,
    /// Seeding goal of every torrent without its own: seconds of seeding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_time: Option<u64>,
}

impl SessionSettings {
    /// The session settings kept in `state_dir`, if any.
    ///
    /// # Errors
    ///
    /// When the file is there but cannot be read or is not valid.
    pub fn load(state_dir: &Path) -> io::Result<Option<SessionSettings>> {
        match fs::read(state_dir.join(SESSION)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{SESSION}: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Keeps these settings in `state_dir`, atomically.
    ///
    /// # Errors
    ///
    /// When they cannot be written.
    pub fn save(&self, state_dir: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        write_atomic(&state_dir.join(SESSION), &bytes)
    }
}

/// The session settings' file in the state folder.
pub const SESSION: &str = "session.json";

/// What a torrent was added from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A .torrent (given, or made from a magnet link's fetched metadata).
    Torrent(Box<Metainfo>, Vec<u8>),
    /// A magnet link whose metadata is not fetched yet.
    Magnet(Box<Magnet>),
}

/// One stored torrent.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its v1 info-hash.
    pub id: InfoHash,
    /// What it was added from.
    pub source: Source,
    /// Its settings.
    pub settings: Settings,
}

/// The daemon's torrent entries under a state folder.
#[derive(Debug, Clone)]
pub struct Store {
    state: PathBuf,
    torrents: PathBuf,
    set_aside: PathBuf,
}

const TORRENT: &str = "torrent";
const MAGNET: &str = "magnet";
const SETTINGS: &str = "settings.json";

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Store {
    /// The store under `state_dir`, its folders created if missing.
    ///
    /// # Errors
    ///
    /// When the folders cannot be created.
    pub fn open(state_dir: &Path) -> io::Result<Store> {
        let store = Store {
            state: state_dir.to_owned(),
            torrents: state_dir.join("torrents"),
            set_aside: state_dir.join("set-aside"),
        };
        fs::create_dir_all(&store.torrents)?;
        Ok(store)
    }

    fn dir(&self, id: &InfoHash) -> PathBuf {
        self.torrents.join(id.to_hex())
    }

    /// Reads every entry. Entries that cannot be read are set aside; the
    /// returned sentences say which and why, for the log.
    pub fn load_all(&self) -> (Vec<Entry>, Vec<String>) {
        let mut entries = Vec::new();
        let mut warnings = Vec::new();
        let list = match fs::read_dir(&self.torrents) {
            Ok(l) => l,
            Err(e) => {
                warnings.push(format!("cannot read {}: {e}", self.torrents.display()));
                return (entries, warnings);
            }
        };
        let mut names: Vec<_> = list.filter_map(Result::ok).map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let path = self.torrents.join(&name);
            let text = name.to_string_lossy();
            if text.starts_with('.') {
                // A new entry a crash left half made: it was never added.
                let _ = fs::remove_dir_all(&path);
                continue;
            }
            match read_entry(&path, &text) {
                Ok(entry) => entries.push(entry),
                Err(why) => {
                    let moved = self.set_aside(&path, &text);
                    warnings.push(format!("{}: {why}; {moved}", path.display()));
                }
            }
        }
        (entries, warnings)
    }

    fn set_aside(&self, path: &Path, name: &str) -> String {
        let to = self.set_aside.join(format!("{name}.{}", unix_now()));
        match fs::create_dir_all(&self.set_aside).and_then(|()| fs::rename(path, &to)) {
            Ok(()) => format!("set aside as {}", to.display()),
            Err(e) => format!("left in place ({e})"),
        }
    }

    /// The state folder.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// Whether an entry exists for `id`.
    pub fn contains(&self, id: &InfoHash) -> bool {
        self.dir(id).is_dir()
    }

    /// Stores a new entry, whole or not at all.
    ///
    /// # Errors
    ///
    /// When it cannot be written.
    pub fn create(&self, entry: &Entry) -> io::Result<()> {
        let tmp = tempfile::Builder::new()
            .prefix(".new-")
            .tempdir_in(&self.torrents)?;
        match &entry.source {
            Source::Torrent(_, bytes) => write_file(&tmp.path().join(TORRENT), bytes)?,
            Source::Magnet(m) => write_file(&tmp.path().join(MAGNET), m.to_string().as_bytes())?,
        }
        write_file(
            &tmp.path().join(SETTINGS),
            &settings_bytes(&entry.settings)?,
        )?;
        let dir = self.dir(&entry.id);
        fs::rename(tmp.keep(), &dir)?;
        sync_dir(&self.torrents)
    }

    /// Replaces an entry's settings.
    ///
    /// # Errors
    ///
    /// When they cannot be written.
    pub fn save_settings(&self, id: &InfoHash, settings: &Settings) -> io::Result<()> {
        write_atomic(&self.dir(id).join(SETTINGS), &settings_bytes(settings)?)
    }

    /// Keeps the .torrent made from a magnet link's fetched metadata: the
    /// entry no longer needs peers for it.
    ///
    /// # Errors
    ///
    /// When it cannot be written.
    pub fn save_torrent(&self, id: &InfoHash, bytes: &[u8]) -> io::Result<()> {
        let dir = self.dir(id);
        write_atomic(&dir.join(TORRENT), bytes)?;
        // The torrent file wins over the link when both are there, so a
        // crash before this removal loses nothing.
        match fs::remove_file(dir.join(MAGNET)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => sync_dir(&dir),
        }
    }

    /// Forgets an entry.
    ///
    /// # Errors
    ///
    /// When it cannot be removed.
    pub fn remove(&self, id: &InfoHash) -> io::Result<()> {
        // Renamed away first, so that a crash halfway through the removal
        // leaves a hidden folder (cleared at the next start), not a broken
        // entry.
        let dir = self.dir(id);
        let gone = self.torrents.join(format!(".gone-{}", id.to_hex()));
        match fs::rename(&dir, &gone) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        sync_dir(&self.torrents)?;
        fs::remove_dir_all(&gone)
    }
}

fn settings_bytes(s: &Settings) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(s).map_err(io::Error::other)
}

fn read_entry(dir: &Path, name: &str) -> Result<Entry, String> {
    let id = crate::parse_id(name).ok_or("not named by an info-hash")?;
    let settings = fs::read(dir.join(SETTINGS)).map_err(|e| format!("{SETTINGS}: {e}"))?;
    let settings: Settings =
        serde_json::from_slice(&settings).map_err(|e| format!("{SETTINGS}: {e}"))?;
    let source = match fs::read(dir.join(TORRENT)) {
        Ok(bytes) => {
            let m = Metainfo::from_bytes(&bytes).map_err(|e| format!("{TORRENT}: {e}"))?;
            if m.info_hash != id {
                return Err(format!(
                    "{TORRENT} is another torrent ({})",
                    m.info_hash.to_hex()
                ));
            }
            Source::Torrent(Box::new(m), bytes)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let text =
                fs::read_to_string(dir.join(MAGNET)).map_err(|e| format!("{MAGNET}: {e}"))?;
            let m = Magnet::parse(text.trim()).map_err(|e| format!("{MAGNET}: {e}"))?;
            if m.info_hash != id {
                return Err(format!(
                    "{MAGNET} is another torrent ({})",
                    m.info_hash.to_hex()
                ));
            }
            Source::Magnet(Box::new(m))
        }
        Err(e) => return Err(format!("{TORRENT}: {e}")),
    };
    Ok(Entry {
        id,
        source,
        settings,
    })
}

/// Writes a new file and makes it durable (not its folder's entry).
fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Replaces `path` with `bytes` atomically: a temporary file in the same
/// folder, fsync, rename over the old one, fsync of the folder.
///
/// # Errors
///
/// When any step fails; `path` is then as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn magnet(byte: u8) -> Magnet {
        let link = format!("magnet:?xt=urn:btih:{}&dn=x", hex::encode([byte; 20]));
        Magnet::parse(&link).unwrap()
    }

    fn entry(byte: u8) -> Entry {
        let m = magnet(byte);
        Entry {
            id: m.info_hash,
            source: Source::Magnet(Box::new(m)),
            settings: Settings {
                download_dir: PathBuf::from("/data"),
                paused: byte.is_multiple_of(2),
                added: 1_700_000_000 + u64::from(byte),
                peers: vec![std::net::SocketAddr::from(([127, 0, 0, byte], 6881))],
                download_limit: u64::from(byte) * 1000,
                upload_limit: 0,
                seed_ratio: Some(1.5),
                seed_time: None,
                finished: false,
                seed_forever: true,
                downloaded: 1 << 40,
                uploaded: 7,
                seeded: 3600,
                file_priorities: vec![0, 7, 4],
                wanted_files: Some(vec![1]),
            },
        }
    }

    #[test]
    fn entries_come_back_and_broken_ones_are_set_aside() {
        let state = tempfile::tempdir().unwrap();
        let store = Store::open(state.path()).unwrap();
        for b in 1..=3 {
            store.create(&entry(b)).unwrap();
        }
        // One damaged by hand, one not an entry at all, one half made.
        let damaged = store.dir(&entry(2).id).join(SETTINGS);
        fs::write(&damaged, b"{ not json").unwrap();
        fs::create_dir(store.torrents.join("junk")).unwrap();
        fs::create_dir(store.torrents.join(".new-abc")).unwrap();
        let (entries, warnings) = store.load_all();
        let ids: Vec<_> = entries.iter().map(|e| e.id).collect();
        assert_eq!(ids, [entry(1).id, entry(3).id]);
        assert_eq!(entries[0].settings, entry(1).settings);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("settings.json")));
        assert!(!store.torrents.join(".new-abc").exists());
        assert_eq!(
            fs::read_dir(state.path().join("set-aside"))
                .unwrap()
                .count(),
            2
        );
        // Nothing left to warn about the next time.
        assert!(store.load_all().1.is_empty());
    }

    #[test]
    fn settings_change_and_entries_go() {
        let state = tempfile::tempdir().unwrap();
        let store = Store::open(state.path()).unwrap();
        let mut e = entry(5);
        store.create(&e).unwrap();
        assert!(store.contains(&e.id));
        e.settings.paused = false;
        store.save_settings(&e.id, &e.settings).unwrap();
        assert_eq!(store.load_all().0[0].settings, e.settings);
        store.remove(&e.id).unwrap();
        assert!(!store.contains(&e.id));
        assert!(store.load_all().0.is_empty());
        // Removing what is gone is not an error.
        store.remove(&e.id).unwrap();
    }
}
