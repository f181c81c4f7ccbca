//! Resume data: which pieces were complete, and the state of each file when
//! that was recorded, so that a restart can skip rechecking what is unchanged.
//!
//! The file is bencode (`{"rivulet-resume": 1, "info-hash": ..., "pieces":
//! bitfield, "files": [[size, mtime_s, mtime_ns], ...]}`), written atomically:
//! a temporary file in the same folder, fsync, rename over the old one, fsync
//! of the folder. A crash at any instant leaves either the old file or the new
//! one, never a mix.
//!
//! Trust is per file: a piece counts as complete on restart only if its bit is
//! set and every file it touches still has the recorded size and mtime. Any
//! write after the record (say, a crash between writing a piece and saving
//! resume data) changes the file's mtime, so its pieces are rechecked instead of
//! trusted. The caller must make the data durable (fsync) *before* saving.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rivulet_bencode::{self as bencode, OwnedValue as V, Value};
use rivulet_core::{Info, InfoHash};

use crate::storage::StorageError;

/// Why resume data could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The resume file exists but could not be read.
    #[error("cannot read resume file {}: {error}", path.display())]
    Read {
        /// The resume file.
        path: PathBuf,
        /// The underlying error (shown in the message, so not also a `source`,
        /// which would print it twice in error chains).
        error: io::Error,
    },
    /// The resume file could not be written (its temporary file created,
    /// written, synced or renamed into place, or the folder synced).
    #[error("cannot write resume file {}: {error}", path.display())]
    Write {
        /// The resume file.
        path: PathBuf,
        /// The underlying error (in the message, not a `source`).
        error: io::Error,
    },
    /// The folder that holds resume files could not be created.
    #[error("cannot create the folder {} for resume data: {error}", path.display())]
    CreateFolder {
        /// The folder.
        path: PathBuf,
        /// The underlying error (in the message, not a `source`).
        error: io::Error,
    },
    /// The torrent's data could not be flushed to disk, so resume data
    /// could not vouch for it and was not saved.
    #[error("cannot flush data to disk before saving resume data: {0}")]
    Flush(StorageError),
    /// The blocking task that saves resume data failed (it panicked: a bug).
    #[error("internal error: the resume save task failed: {0}")]
    Task(tokio::task::JoinError),
    /// The resume file is damaged or from another torrent; it is ignored and
    /// everything is rechecked.
    #[error("resume file {} is unusable: {why}", path.display())]
    Invalid {
        /// The resume file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// A file's identity as recorded: size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time: seconds since the epoch.
    pub mtime_s: i64,
    /// Modification time: nanoseconds within the second.
    pub mtime_ns: u32,
}

impl FileStamp {
    /// The stamp of the file at `path` now, or `None` if it does not exist.
    pub fn of(path: &Path) -> Option<FileStamp> {
        let meta = fs::metadata(path).ok()?;
        let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
        Some(FileStamp {
            size: meta.len(),
            mtime_s: i64::try_from(mtime.as_secs()).ok()?,
            mtime_ns: mtime.subsec_nanos(),
        })
    }
}

/// Complete pieces and file stamps of one torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeData {
    /// The torrent this belongs to.
    pub info_hash: InfoHash,
    /// One flag per piece: complete and verified.
    pub have: Vec<bool>,
    /// One stamp per file of the torrent (`None` for padding files and files
    /// that did not exist).
    pub files: Vec<Option<FileStamp>>,
}

impl ResumeData {
    /// Records `have` together with the current stamps of the torrent's files
    /// under `dir`. Call after the data was flushed to disk.
    pub fn capture(info_hash: InfoHash, info: &Info, dir: &Path, have: Vec<bool>) -> Self {
        let files = info
            .files
            .iter()
            .map(|f| {
                if !f.is_stored() {
                    None
                } else {
                    FileStamp::of(&dir.join(f.relative_path()))
                }
            })
            .collect();
        ResumeData {
            info_hash,
            have,
            files,
        }
    }

    /// What the resume data can vouch for, per piece: `Some(have)` when every
    /// file the piece touches is unchanged since the record (so the recorded
    /// state still holds, complete or not), `None` when the piece must be
    /// hashed to know.
    pub fn piece_states(&self, info: &Info, dir: &Path) -> Vec<Option<bool>> {
        let layout = info.layout();
        let unchanged: Vec<bool> = info
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                !f.is_stored()
                    || (self.files.get(i).copied().flatten().is_some()
                        && self.files.get(i).copied().flatten()
                            == FileStamp::of(&dir.join(f.relative_path())))
            })
            .collect();
        (0..info.num_pieces())
            .map(|p| {
                let vouched = layout.piece_spans(p as u64).is_some_and(|mut spans| {
                    spans.all(|s| unchanged.get(s.file).copied().unwrap_or(false))
                });
                vouched.then(|| self.have.get(p).copied().unwrap_or(false))
            })
            .collect()
    }

    /// Which pieces can be trusted as complete without hashing: the bit is set
    /// and every file the piece touches is unchanged since the record.
    pub fn trusted_pieces(&self, info: &Info, dir: &Path) -> Vec<bool> {
        self.piece_states(info, dir)
            .into_iter()
            .map(|s| s == Some(true))
            .collect()
    }

    /// The bencoded form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bits = vec![0u8; self.have.len().div_ceil(8)];
        for (i, h) in self.have.iter().enumerate() {
            if *h {
                if let Some(b) = bits.get_mut(i / 8) {
                    *b |= 0x80 >> (i % 8);
                }
            }
        }
        let files = self
            .files
            .iter()
            .map(|f| match f {
                Some(s) => V::List(vec![
                    V::Int(s.size as i64),
                    V::Int(s.mtime_s),
                    V::Int(i64::from(s.mtime_ns)),
                ]),
                None => V::List(vec![]),
            })
            .collect();
        V::dict()
            .with("rivulet-resume", V::Int(1))
            .with("info-hash", V::Bytes(self.info_hash.0.to_vec()))
            .with("num-pieces", V::Int(self.have.len() as i64))
            .with("pieces", V::Bytes(bits))
            .with("files", V::List(files))
            .to_bytes()
    }

    /// Parses resume data for a torrent of `num_pieces` pieces and `num_files`
    /// files; anything inconsistent is an error (and the data is not used).
    pub fn from_bytes(bytes: &[u8], num_pieces: usize, num_files: usize) -> Result<Self, String> {
        let root = bencode::decode(bytes).map_err(|e| e.to_string())?;
        if root.get(b"rivulet-resume").and_then(Value::as_int) != Some(1) {
            return Err("not a rivulet resume file (version 1)".into());
        }
        let hash: [u8; 20] = root
            .get(b"info-hash")
            .and_then(Value::as_bytes)
            .and_then(|b| b.try_into().ok())
            .ok_or("missing info-hash")?;
        let n = root.get(b"num-pieces").and_then(Value::as_int);
        if n != Some(num_pieces as i64) {
            return Err(format!(
                "made for {n:?} pieces, the torrent has {num_pieces}"
            ));
        }
        let bits = root
            .get(b"pieces")
            .and_then(Value::as_bytes)
            .filter(|b| b.len() == num_pieces.div_ceil(8))
            .ok_or("piece bitfield missing or of the wrong length")?;
        let have = (0..num_pieces)
            .map(|i| bits.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0))
            .collect();
        let files = root
            .get(b"files")
            .and_then(Value::as_list)
            .filter(|l| l.len() == num_files)
            .ok_or("file list missing or of the wrong length")?
            .iter()
            .map(|f| match f.as_list()? {
                [size, s, ns] => Some(FileStamp {
                    size: u64::try_from(size.as_int()?).ok()?,
                    mtime_s: s.as_int()?,
                    mtime_ns: u32::try_from(ns.as_int()?).ok()?,
                }),
                _ => None,
            })
            .collect();
        Ok(ResumeData {
            info_hash: InfoHash(hash),
            have,
            files,
        })
    }

    /// Writes the resume file atomically (temp file, fsync, rename, fsync folder).
    pub fn save(&self, path: &Path) -> Result<(), ResumeError> {
        let io = |error| ResumeError::Write {
            path: path.to_owned(),
            error,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        tmp.write_all(&self.to_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        // The rename itself is durable only once the folder is synced.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(())
    }

    /// Loads the resume file for this torrent: `Ok(None)` if there is none,
    /// an error if it is unreadable, damaged or belongs to another torrent.
    pub fn load(
        path: &Path,
        info_hash: InfoHash,
        info: &Info,
    ) -> Result<Option<Self>, ResumeError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(ResumeError::Read {
                    path: path.to_owned(),
                    error,
                })
            }
        };
        let invalid = |why: String| ResumeError::Invalid {
            path: path.to_owned(),
            why,
        };
        let data =
            Self::from_bytes(&bytes, info.num_pieces(), info.files.len()).map_err(invalid)?;
        if data.info_hash != info_hash {
            return Err(invalid(format!("it belongs to torrent {}", data.info_hash)));
        }
        Ok(Some(data))
    }
}

#[cfg(test)]
mod tests {
    use rivulet_core::Metainfo;

    use super::*;

    fn torrent() -> Metainfo {
        let file = |len: i64, name: &str| {
            V::dict()
                .with("length", V::Int(len))
                .with("path", V::List(vec![V::str(name)]))
        };
        let info = V::dict()
            .with("name", "t".into())
            .with("piece length", V::Int(16384))
            .with("pieces", V::Bytes(vec![0; 60]))
            .with(
                "files",
                V::List(vec![
                    file(16384, "a"),
                    file(16384 + 100, "b"),
                    file(10, "c"),
                ]),
            );
        Metainfo::from_bytes(&V::dict().with("info", info).to_bytes()).unwrap()
    }

    #[test]
    fn round_trip_and_trust_follows_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let m = torrent();
        let t = dir.path().join("t");
        fs::create_dir_all(&t).unwrap();
        for (name, len) in [("a", 16384), ("b", 16484), ("c", 10)] {
            fs::write(t.join(name), vec![1u8; len]).unwrap();
        }
        let data = ResumeData::capture(m.info_hash, &m.info, dir.path(), vec![true, true, true]);
        let path = dir.path().join("t.resume");
        data.save(&path).unwrap();
        let loaded = ResumeData::load(&path, m.info_hash, &m.info)
            .unwrap()
            .unwrap();
        assert_eq!(loaded, data);
        assert_eq!(
            loaded.trusted_pieces(&m.info, dir.path()),
            vec![true, true, true]
        );

        // Touch file c (piece 2 spans b and c): only piece 2 loses trust.
        let f = fs::OpenOptions::new()
            .write(true)
            .open(t.join("c"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            loaded.trusted_pieces(&m.info, dir.path()),
            vec![true, true, false]
        );
        // Remove a: piece 0 too.
        fs::remove_file(t.join("a")).unwrap();
        assert_eq!(
            loaded.trusted_pieces(&m.info, dir.path()),
            vec![false, true, false]
        );
    }

    #[test]
    fn bad_resume_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let m = torrent();
        let path = dir.path().join("r");
        assert!(ResumeData::load(&path, m.info_hash, &m.info)
            .unwrap()
            .is_none());
        fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            ResumeData::load(&path, m.info_hash, &m.info),
            Err(ResumeError::Invalid { .. })
        ));
        let other = ResumeData {
            info_hash: InfoHash([9; 20]),
            have: vec![true; 3],
            files: vec![None; 3],
        };
        other.save(&path).unwrap();
        let e = ResumeData::load(&path, m.info_hash, &m.info).unwrap_err();
        assert!(e.to_string().contains("belongs to torrent"), "{e}");
        let short = ResumeData {
            info_hash: m.info_hash,
            have: vec![true; 2],
            files: vec![None; 3],
        };
        fs::write(&path, short.to_bytes()).unwrap();
        assert!(ResumeData::load(&path, m.info_hash, &m.info).is_err());
        // Every truncation of a valid file is refused, never a panic.
        let good = ResumeData::capture(m.info_hash, &m.info, dir.path(), vec![true; 3]).to_bytes();
        for cut in 0..good.len() {
            assert!(ResumeData::from_bytes(&good[..cut], 3, 3).is_err());
        }
    }

    #[test]
    fn missing_files_are_never_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let m = torrent();
        let data = ResumeData::capture(m.info_hash, &m.info, dir.path(), vec![true; 3]);
        assert!(data.files.iter().all(Option::is_none));
        assert_eq!(data.trusted_pieces(&m.info, dir.path()), vec![false; 3]);
    }
}
