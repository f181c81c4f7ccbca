//! Creating a v1 .torrent from a file or a folder.

use std::path::{Path, PathBuf};

use rivulet_bencode::OwnedValue as V;

use crate::layout::FileLayout;
use crate::metainfo::MAX_PIECE_LENGTH;
use crate::piece_io::{hash_pieces, FileSource, PieceReadError};

/// Smallest piece length chosen automatically (16 KiB, one block).
pub const MIN_AUTO_PIECE_LENGTH: u64 = 16 * 1024;
/// Largest piece length chosen automatically (16 MiB).
pub const MAX_AUTO_PIECE_LENGTH: u64 = 16 * 1024 * 1024;
/// Automatic piece lengths aim at no more than this many pieces.
pub const TARGET_MAX_PIECES: u64 = 2000;

/// Why a torrent could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The source path could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error (shown in the message, so not also a `source`,
        /// which would print it twice in error chains).
        error: std::io::Error,
    },
    /// Walking the folder failed (a symlink loop, a permission error, ...).
    /// The error is shown in the message, so it is not also a `source`
    /// (error chains would print it twice).
    #[error("cannot scan folder: {0}")]
    Walk(walkdir::Error),
    /// A file or folder name that is not valid UTF-8 (torrents store UTF-8 names).
    #[error("file name is not valid UTF-8: {}", .0.display())]
    NotUtf8(PathBuf),
    /// Nothing to share: no files, or only empty ones.
    #[error("{} holds no data (no files, or only empty ones)", .0.display())]
    NoData(PathBuf),
    /// A piece length that is not a power of two of at least 16 KiB, or too big.
    #[error("piece length {0} must be a power of two from 16 KiB to 256 MiB")]
    BadPieceLength(u64),
    /// A file changed or vanished while it was being hashed. The error is
    /// shown in the message, so it is not also a `source`.
    #[error("{0} (did it change while hashing?)")]
    Read(PieceReadError),
}

impl From<walkdir::Error> for CreateError {
    fn from(e: walkdir::Error) -> Self {
        CreateError::Walk(e)
    }
}

impl From<PieceReadError> for CreateError {
    fn from(e: PieceReadError) -> Self {
        CreateError::Read(e)
    }
}

/// The files to put in a torrent, as found on disk.
#[derive(Debug, Clone)]
pub struct Source {
    /// Name of the torrent: the file's or folder's name.
    pub name: String,
    /// Whether the source is a folder (a multi-file torrent, even with one file).
    pub is_folder: bool,
    /// The files in torrent order: on-disk path, path inside the torrent
    /// (without the name), length.
    pub files: Vec<(PathBuf, Vec<String>, u64)>,
}

impl Source {
    /// Total size of all files.
    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|(_, _, len)| len).sum()
    }
}

/// Finds the files under `path`: the file itself, or every regular file under
/// the folder (symlinks followed, loops refused), sorted by path so that the
/// same folder always gives the same torrent.
pub fn scan(path: &Path) -> Result<Source, CreateError> {
    let io = |error| CreateError::Io {
        path: path.to_owned(),
        error,
    };
    let canonical = path.canonicalize().map_err(io)?;
    let meta = std::fs::metadata(&canonical).map_err(io)?;
    let name = utf8_name(&canonical)?;
    let mut files = Vec::new();
    if meta.is_file() {
        files.push((canonical.clone(), Vec::new(), meta.len()));
    } else {
        let walk = walkdir::WalkDir::new(&canonical)
            .follow_links(true)
            .sort_by_file_name();
        for entry in walk {
            let entry = entry?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(&canonical)
                .unwrap_or(entry.path());
            let components = rel
                .components()
                .map(|c| {
                    c.as_os_str()
                        .to_str()
                        .map(str::to_owned)
                        .ok_or_else(|| CreateError::NotUtf8(entry.path().to_owned()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let len = entry.metadata()?.len();
            files.push((entry.path().to_owned(), components, len));
        }
    }
    let source = Source {
        name,
        is_folder: !meta.is_file(),
        files,
    };
    if source.total_length() == 0 {
        return Err(CreateError::NoData(path.to_owned()));
    }
    Ok(source)
}

fn utf8_name(path: &Path) -> Result<String, CreateError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| CreateError::NotUtf8(path.to_owned()))
}

/// The piece length picked for `total` bytes: the smallest power of two from
/// 16 KiB to 16 MiB that keeps the count at or under 2,000 pieces (so between
/// 1,000 and 2,000 pieces unless the size is very small or very large).
pub fn auto_piece_length(total: u64) -> u64 {
    let mut pl = MIN_AUTO_PIECE_LENGTH;
    while pl < MAX_AUTO_PIECE_LENGTH && total.div_ceil(pl) > TARGET_MAX_PIECES {
        pl *= 2;
    }
    pl
}

/// What goes into a new torrent besides the files.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Tracker tiers; the first URL of the first tier also becomes `announce`.
    pub trackers: Vec<Vec<String>>,
    /// Web seeds (`url-list`).
    pub web_seeds: Vec<String>,
    /// Piece length; `None` picks one with [`auto_piece_length`].
    pub piece_length: Option<u64>,
    /// Set the BEP 27 private flag.
    pub private: bool,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date` (seconds since the Unix epoch); `None` omits it.
    pub creation_date: Option<i64>,
}

/// Hashes `source` and returns the .torrent's bytes. `progress` receives the
/// number of bytes hashed so far.
pub fn create(
    source: &Source,
    options: &CreateOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<u8>, CreateError> {
    let piece_length = match options.piece_length {
        None => auto_piece_length(source.total_length()),
        Some(pl) if pl.is_power_of_two() && (16 * 1024..=MAX_PIECE_LENGTH).contains(&pl) => pl,
        Some(pl) => return Err(CreateError::BadPieceLength(pl)),
    };
    let layout = FileLayout::new(piece_length, source.files.iter().map(|(_, _, len)| *len))
        // File sizes come from the file system and cannot sum past 2^64.
        .map_err(|_| CreateError::NoData(PathBuf::from(&source.name)))?;
    let disk: Vec<FileSource> = source
        .files
        .iter()
        .map(|(path, _, _)| FileSource::Disk(path.clone()))
        .collect();
    let hashes = hash_pieces(&layout, &disk, progress)?;

    let mut info = V::dict()
        .with("name", source.name.as_str().into())
        .with("piece length", V::Int(piece_length as i64))
        .with("pieces", V::Bytes(hashes.concat()));
    if source.is_folder {
        let files = source
            .files
            .iter()
            .map(|(_, path, len)| {
                V::dict()
                    .with("length", V::Int(*len as i64))
                    .with("path", V::List(path.iter().map(|c| V::str(c)).collect()))
            })
            .collect();
        info = info.with("files", V::List(files));
    } else {
        info = info.with("length", V::Int(source.total_length() as i64));
    }
    if options.private {
        info = info.with("private", V::Int(1));
    }

    let mut root = V::dict().with("info", info);
    let tiers: Vec<&Vec<String>> = options.trackers.iter().filter(|t| !t.is_empty()).collect();
    if let Some(first) = tiers.first().and_then(|t| t.first()) {
        root = root.with("announce", first.as_str().into());
    }
    if tiers.iter().map(|t| t.len()).sum::<usize>() > 1 {
        let list = tiers
            .iter()
            .map(|t| V::List(t.iter().map(|u| V::str(u)).collect()))
            .collect();
        root = root.with("announce-list", V::List(list));
    }
    match options.web_seeds.as_slice() {
        [] => {}
        [one] => root = root.with("url-list", one.as_str().into()),
        many => {
            root = root.with(
                "url-list",
                V::List(many.iter().map(|u| V::str(u)).collect()),
            )
        }
    }
    if let Some(c) = &options.comment {
        root = root.with("comment", c.as_str().into());
    }
    if let Some(c) = &options.created_by {
        root = root.with("created by", c.as_str().into());
    }
    if let Some(d) = options.creation_date {
        root = root.with("creation date", V::Int(d));
    }
    Ok(root.to_bytes())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use sha1::Digest;

    use super::*;
    use crate::piece_io::{check_pieces, PieceCheck};
    use crate::Metainfo;

    #[test]
    fn auto_piece_length_aims_at_1000_to_2000_pieces() {
        assert_eq!(auto_piece_length(1), 16 * 1024);
        assert_eq!(auto_piece_length(1 << 30), 1 << 20);
        for total in [100u64 << 20, 1 << 30, 7 << 30, 30 << 30] {
            let n = total.div_ceil(auto_piece_length(total));
            assert!((1000..=2000).contains(&n), "{total}: {n} pieces");
        }
        assert_eq!(auto_piece_length(1 << 50), MAX_AUTO_PIECE_LENGTH);
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("folder");
        fs::create_dir_all(root.join("sub/deeper")).unwrap();
        fs::write(root.join("b.bin"), vec![1u8; 40_000]).unwrap();
        fs::write(root.join("a.txt"), b"hello").unwrap();
        fs::write(root.join("empty"), b"").unwrap();
        fs::write(root.join("sub/deeper/c.dat"), vec![3u8; 20_000]).unwrap();
        fs::write(root.join("sub/é.txt"), b"accent").unwrap();
        dir
    }

    #[test]
    fn folder_round_trips_and_verifies() {
        let dir = tree();
        let root = dir.path().join("folder");
        let source = scan(&root).unwrap();
        let paths: Vec<String> = source.files.iter().map(|(_, p, _)| p.join("/")).collect();
        assert_eq!(
            paths,
            ["a.txt", "b.bin", "empty", "sub/deeper/c.dat", "sub/é.txt"]
        );
        let options = CreateOptions {
            trackers: vec![
                vec!["http://127.0.0.1:1/announce".into()],
                vec!["udp://127.0.0.1:2".into()],
            ],
            web_seeds: vec!["http://127.0.0.1:3/".into()],
            private: true,
            comment: Some("c".into()),
            created_by: Some("rivulet test".into()),
            creation_date: Some(1),
            ..CreateOptions::default()
        };
        let bytes = create(&source, &options, &|_| {}).unwrap();
        let m = Metainfo::from_bytes(&bytes).unwrap();
        assert_eq!(m.info.name, "folder");
        assert!(m.info.multi_file && m.info.private);
        assert_eq!(m.info.piece_length, 16384);
        assert_eq!(m.info.total_length(), 60_011);
        assert_eq!(m.tracker_tiers().len(), 2);
        assert_eq!(m.web_seeds, ["http://127.0.0.1:3/"]);
        assert_eq!(m.creation_date, Some(1));

        let check = |m: &Metainfo| {
            let files = m.info.file_sources(dir.path());
            check_pieces(m.info.layout(), &files, &m.info.pieces, &|_| {}).unwrap()
        };
        assert!(check(&m).iter().all(|c| *c == PieceCheck::Good));

        // Same folder, same options: byte-identical torrent.
        assert_eq!(
            create(&scan(&root).unwrap(), &options, &|_| {}).unwrap(),
            bytes
        );

        // Corrupt one byte of b.bin (bytes 5..40005, so pieces 0..=2).
        let mut b = fs::read(root.join("b.bin")).unwrap();
        b[20_000] ^= 1;
        fs::write(root.join("b.bin"), b).unwrap();
        fs::remove_file(root.join("sub/é.txt")).unwrap();
        let states = check(&m);
        assert_eq!(states[1], PieceCheck::Bad);
        assert_eq!(states[0], PieceCheck::Good);
        assert_eq!(*states.last().unwrap(), PieceCheck::Missing);
    }

    #[test]
    fn single_file_and_errors() {
        let dir = tree();
        let file = dir.path().join("folder/b.bin");
        let bytes = create(&scan(&file).unwrap(), &CreateOptions::default(), &|_| {}).unwrap();
        let m = Metainfo::from_bytes(&bytes).unwrap();
        assert!(!m.info.multi_file);
        assert_eq!(m.info.files[0].path, ["b.bin"]);
        assert!(m.announce.is_none() && m.creation_date.is_none());

        let opts = CreateOptions {
            piece_length: Some(1000),
            ..CreateOptions::default()
        };
        assert!(matches!(
            create(&scan(&file).unwrap(), &opts, &|_| {}),
            Err(CreateError::BadPieceLength(1000))
        ));
        assert!(matches!(
            scan(&dir.path().join("folder/empty")),
            Err(CreateError::NoData(_))
        ));
        assert!(matches!(
            scan(&dir.path().join("nope")),
            Err(CreateError::Io { .. })
        ));
    }

    #[test]
    fn pieces_are_the_sha1_of_the_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        fs::create_dir_all(root.join("z")).unwrap();
        // Scanned in name order: a, b (empty), c, z/d. Pieces span files, and
        // with 2 MiB pieces there are fewer pieces than most machines' cores.
        let files: [(&str, usize); 4] = [
            ("a", 1_234_567),
            ("b", 0),
            ("c", 40_000),
            ("z/d", 2_000_003),
        ];
        let mut all = Vec::new();
        for (i, (name, len)) in files.iter().enumerate() {
            let bytes: Vec<u8> = (0..*len).map(|b| (b % 253 + i) as u8).collect();
            fs::write(root.join(name), &bytes).unwrap();
            all.extend_from_slice(&bytes);
        }
        for piece_length in [16 << 10, 256 << 10, 2 << 20] {
            let options = CreateOptions {
                piece_length: Some(piece_length),
                ..CreateOptions::default()
            };
            let bytes = create(&scan(&root).unwrap(), &options, &|_| {}).unwrap();
            let m = Metainfo::from_bytes(&bytes).unwrap();
            let want: Vec<[u8; 20]> = all
                .chunks(piece_length as usize)
                .map(|piece| sha1::Sha1::digest(piece).into())
                .collect();
            assert_eq!(m.info.pieces, want, "piece length {piece_length}");
        }
    }
}
