//! Where one torrent's data and its resume state live, and the lock that
//! keeps two rivulet processes off the same data.
//!
//! Resume data lives beside the data, in `DIR/.rivulet/<info-hash>.resume`,
//! so that it moves with the folder. A folder rivulet cannot write to (a
//! read-only mount, another user's files) can still be seeded when its data
//! is complete; its resume data then goes to a state folder the caller
//! names (the CLI uses `$XDG_STATE_HOME/rivulet/resume`), under a name made
//! of the info-hash and a hash of the data folder's canonical path, since
//! the same torrent may be seeded from two folders.
//!
//! The lock is an advisory exclusive lock (`flock`) on a `.lock` file beside
//! the resume file, held from [`DataFolder::open`] until the session ends:
//! the whole run, resume saves included. The lock file is never removed
//! (removing it would let a third process lock a new file while the second
//! still waits on the old one); it is empty.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rivulet_core::{InfoHash, Metainfo};
use sha1::{Digest, Sha1};

use crate::storage::StorageError;

/// ENOLCK ("no locks available") on Linux: what NFS without a lock daemon
/// answers. std has no `io::ErrorKind` for it (it is `Uncategorized`, which
/// cannot be matched), so the errno itself is compared.
const ENOLCK: i32 = 37;

/// Why a data folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// The folder or its lock or resume files cannot be created.
    #[error("cannot prepare the data folder: {0}")]
    Storage(StorageError),
    /// The data folder cannot be written to, and this session needs to
    /// (a download, or a seed without a state folder for its resume data).
    #[error("cannot write to the data folder {}: {error}", dir.display())]
    NotWritable {
        /// The data folder.
        dir: PathBuf,
        /// What writing there answered (shown in the message, so not also a
        /// `source`).
        error: std::io::Error,
    },
    /// Another process (a second `rivulet download` or `seed`) holds the
    /// lock on this torrent's data in this folder.
    #[error("{name} in {} is in use by another rivulet process (it holds the lock {})", dir.display(), lock.display())]
    InUse {
        /// The torrent's name.
        name: String,
        /// The data folder.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Another torrent whose top file or folder has the same name is using
    /// this folder (in this process or another): the two would write each
    /// other's data.
    #[error("{} in {} is in use by another torrent of the same name (it holds the lock {}): give this one another folder", name, dir.display(), lock.display())]
    NameInUse {
        /// The top file or folder name both torrents use.
        name: String,
        /// The data folder.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Seeding a folder that holds none of the torrent's files.
    #[error("none of the data of {name} is in {}", dir.display())]
    NoData {
        /// The torrent's name.
        name: String,
        /// The data folder.
        dir: PathBuf,
    },
}

/// How a session may use its data folder.
#[derive(Debug, Clone, Default)]
pub struct FolderOptions {
    /// Seed what the folder holds (`rivulet seed`): refuse a folder that
    /// holds none of the torrent's data, rather than create empty files and
    /// wait for peers to fill them, and accept a read-only folder when the
    /// data in it is complete.
    pub seed: bool,
    /// Where resume data and the lock go when the data folder cannot be
    /// written to (only with `seed`). `None`: a read-only data folder is an
    /// error.
    pub state_dir: Option<PathBuf>,
}

/// A torrent's data folder, locked for one session.
///
/// Dropping it releases the lock; [`crate::download::Download`] keeps it for
/// as long as it runs.
#[derive(Debug)]
pub struct DataFolder {
    pub(crate) dir: PathBuf,
    pub(crate) resume_path: PathBuf,
    /// Resume data to read when `resume_path` has none: the data folder's
    /// own, written while it was writable, when resume data now goes to the
    /// state folder.
    pub(crate) earlier_resume: Option<PathBuf>,
    pub(crate) writable: bool,
    pub(crate) seed: bool,
    /// Held for its lock, released on drop (`None` where the file system
    /// has no locks).
    lock: Option<File>,
    /// The lock on the torrent's top file or folder name in this folder,
    /// held likewise (`None` for seeding or a read-only folder: nothing is
    /// written then).
    _name_lock: Option<File>,
}

impl DataFolder {
    /// Locks `metainfo`'s data in `dir` for this process, after checking
    /// what `options` asks: with `seed`, that some of the data is there
    /// ([`FolderError::NoData`]; nothing is created then); for a folder
    /// that cannot be written to, that a state folder is given. Fails with
    /// [`FolderError::InUse`] when another process holds the lock.
    /// Blocking, but only a handful of file-system calls (no data is read).
    pub fn open(
        metainfo: &Metainfo,
        dir: &Path,
        options: &FolderOptions,
    ) -> Result<DataFolder, FolderError> {
        let info = &metainfo.info;
        if options.seed
            && !info
                .files
                .iter()
                .any(|f| f.is_stored() && dir.join(f.relative_path()).exists())
        {
            return Err(FolderError::NoData {
                name: info.name.clone(),
                dir: dir.to_owned(),
            });
        }
        let in_folder = resume_path(dir, &metainfo.info_hash);
        let lock_path = in_folder.with_extension("lock");
        let (resume_path, earlier_resume, writable, lock_path, lock) =
            match create_lock_file(&lock_path) {
                Ok(lock) => (in_folder, None, true, lock_path, lock),
                Err(e) if is_not_writable(&e) => {
                    let Some(state_dir) = options.state_dir.as_ref().filter(|_| options.seed)
                    else {
                        return Err(FolderError::NotWritable {
                            dir: dir.to_owned(),
                            error: e,
                        });
                    };
                    let resume = state_resume_path(state_dir, &metainfo.info_hash, dir)?;
                    let lock_path = resume.with_extension("lock");
                    let lock =
                        create_lock_file(&lock_path).map_err(|e| storage_error(&lock_path, e))?;
                    (resume, Some(in_folder), false, lock_path, lock)
                }
                Err(e) => return Err(storage_error(&lock_path, e)),
            };
        let lock = match lock.try_lock() {
            Ok(()) => Some(lock),
            Err(TryLockError::WouldBlock) => {
                return Err(FolderError::InUse {
                    name: info.name.clone(),
                    dir: dir.to_owned(),
                    lock: lock_path,
                })
            }
            // A file system without locks (some network ones: EOPNOTSUPP, or
            // ENOLCK): run unlocked rather than not at all; `is_locked` lets
            // the caller say so.
            Err(TryLockError::Error(e))
                if e.kind() == io::ErrorKind::Unsupported || e.raw_os_error() == Some(ENOLCK) =>
            {
                tracing::warn!(lock = %lock_path.display(), error = %e, "file locks are not supported here; running without one");
                None
            }
            Err(TryLockError::Error(e)) => return Err(storage_error(&lock_path, e)),
        };
        // Two torrents that would write the same files: the lock on the
        // info-hash cannot see that, this one can. Seeding only reads, and
        // two torrents of the same data (a v1 and a hybrid one, say) may
        // seed it at once.
        let name_lock = match (writable && !options.seed, lock.is_some()) {
            (true, true) => lock_name(metainfo, dir)?,
            _ => None,
        };
        Ok(DataFolder {
            dir: dir.to_owned(),
            resume_path,
            earlier_resume,
            writable,
            seed: options.seed,
            lock,
            _name_lock: name_lock,
        })
    }

    /// The data folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where resume data is saved.
    pub fn resume_path(&self) -> &Path {
        &self.resume_path
    }

    /// Whether this process holds the lock on the data; `false` only where
    /// the file system does not support locks.
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }

    /// Whether rivulet can write to the data folder. When it cannot, the
    /// data is seeded as it is and resume data goes to the state folder.
    pub fn is_writable(&self) -> bool {
        self.writable
    }
}

/// Path of the resume file for a torrent whose data is in `dir` (when `dir`
/// can be written to).
pub fn resume_path(dir: &Path, info_hash: &InfoHash) -> PathBuf {
    dir.join(".rivulet")
        .join(format!("{}.resume", info_hash.to_hex()))
}

/// Path of the resume file in `state_dir` for a torrent whose data is in
/// the read-only folder `dir`: `<info-hash>-<16 hex digits of the SHA-1 of
/// dir's canonical path>.resume`.
fn state_resume_path(
    state_dir: &Path,
    info_hash: &InfoHash,
    dir: &Path,
) -> Result<PathBuf, FolderError> {
    let canonical = dir.canonicalize().map_err(|e| storage_error(dir, e))?;
    let digest = Sha1::digest(canonical.as_os_str().as_bytes());
    let key: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(state_dir.join(format!("{}-{key}.resume", info_hash.to_hex())))
}

/// Path of the lock on the top file or folder name `name` in `dir`:
/// `.rivulet/name-<16 hex digits of the SHA-1 of the name>.lock`.
pub fn name_lock_path(dir: &Path, name: &str) -> PathBuf {
    let digest = Sha1::digest(name.as_bytes());
    let key: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    dir.join(".rivulet").join(format!("name-{key}.lock"))
}

/// Takes the lock on `metainfo`'s top file or folder name in `dir`.
fn lock_name(metainfo: &Metainfo, dir: &Path) -> Result<Option<File>, FolderError> {
    let Some(name) = metainfo.info.files.first().and_then(|f| f.path.first()) else {
        return Ok(None);
    };
    let path = name_lock_path(dir, name);
    let file = create_lock_file(&path).map_err(|e| storage_error(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Err(FolderError::NameInUse {
            name: name.clone(),
            dir: dir.to_owned(),
            lock: path,
        }),
        // The torrent's own lock worked, so this should too; if not, the
        // torrent runs as it did before this lock existed.
        Err(TryLockError::Error(e)) => {
            tracing::warn!(lock = %path.display(), error = %e, "cannot lock the torrent's name");
            Ok(None)
        }
    }
}

/// Opens (creating it and its folder if needed) the lock file at `path`.
fn create_lock_file(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Whether `e` says the folder cannot be written to (rather than, say,
/// that a file stands where a folder must go).
fn is_not_writable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied
    )
}

fn storage_error(path: &Path, error: io::Error) -> FolderError {
    FolderError::Storage(StorageError::Io {
        path: path.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use rivulet_bencode::OwnedValue as V;

    use super::*;

    fn torrent() -> Metainfo {
        let info = V::dict()
            .with("name", "f.bin".into())
            .with("piece length", V::Int(16384))
            .with("pieces", V::Bytes(vec![0; 20]))
            .with("length", V::Int(10));
        Metainfo::from_bytes(&V::dict().with("info", info).to_bytes()).unwrap()
    }

    #[test]
    fn a_second_session_on_the_same_data_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let m = torrent();
        let first = DataFolder::open(&m, dir.path(), &FolderOptions::default()).unwrap();
        assert!(first.is_writable());
        assert!(first.is_locked());
        assert_eq!(first.resume_path(), resume_path(dir.path(), &m.info_hash));
        let e = DataFolder::open(&m, dir.path(), &FolderOptions::default()).unwrap_err();
        assert!(matches!(e, FolderError::InUse { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("f.bin in {} is in use", dir.path().display())),
            "{e}"
        );
        // The same torrent in another folder is another lock.
        let other = tempfile::tempdir().unwrap();
        DataFolder::open(&m, other.path(), &FolderOptions::default()).unwrap();
        drop(first);
        DataFolder::open(&m, dir.path(), &FolderOptions::default()).unwrap();
    }

    #[test]
    fn two_torrents_of_the_same_name_never_share_a_folder_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let named = |name: &str, length: i64| {
            let info = V::dict()
                .with("name", name.into())
                .with("piece length", V::Int(16384))
                .with("pieces", V::Bytes(vec![0; 20]))
                .with("length", V::Int(length));
            Metainfo::from_bytes(&V::dict().with("info", info).to_bytes()).unwrap()
        };
        let (a, b) = (named("f.bin", 10), named("f.bin", 11));
        assert_ne!(a.info_hash, b.info_hash);
        let first = DataFolder::open(&a, dir.path(), &FolderOptions::default()).unwrap();
        let e = DataFolder::open(&b, dir.path(), &FolderOptions::default()).unwrap_err();
        assert!(matches!(e, FolderError::NameInUse { .. }), "{e}");
        assert!(
            e.to_string().contains("another torrent of the same name"),
            "{e}"
        );
        // Another name, or another folder, is free; and so is the name
        // once the first is done.
        DataFolder::open(&named("g.bin", 10), dir.path(), &FolderOptions::default()).unwrap();
        let other = tempfile::tempdir().unwrap();
        DataFolder::open(&b, other.path(), &FolderOptions::default()).unwrap();
        drop(first);
        DataFolder::open(&b, dir.path(), &FolderOptions::default()).unwrap();
    }

    #[test]
    fn seeding_a_folder_without_the_data_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let options = FolderOptions {
            seed: true,
            state_dir: None,
        };
        let e = DataFolder::open(&torrent(), dir.path(), &options).unwrap_err();
        assert!(matches!(e, FolderError::NoData { .. }), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        std::fs::write(dir.path().join("f.bin"), b"0123456789").unwrap();
        DataFolder::open(&torrent(), dir.path(), &options).unwrap();
    }

    #[test]
    fn state_folder_names_differ_by_data_folder() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let h = torrent().info_hash;
        let state = Path::new("/state");
        let pa = state_resume_path(state, &h, a.path()).unwrap();
        let pb = state_resume_path(state, &h, b.path()).unwrap();
        assert_ne!(pa, pb);
        assert_eq!(pa.parent(), Some(state));
        assert!(pa
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&h.to_hex()));
        // The same folder by another path is the same state.
        let via = a.path().join(".").join("x").join("..");
        std::fs::create_dir(a.path().join("x")).unwrap();
        assert_eq!(state_resume_path(state, &h, &via).unwrap(), pa);
    }
}
