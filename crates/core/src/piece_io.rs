//! Reading and hashing whole pieces from files on disk, in parallel. Shared by
//! torrent creation (hash the source data) and verification (check downloaded
//! data against the torrent's hashes).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use sha1::{Digest, Sha1};

use crate::layout::FileLayout;

/// Where the bytes of one torrent file come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A file on disk.
    Disk(PathBuf),
    /// A BEP 47 padding file: all zeros, never stored.
    Zeros,
}

/// A failure to read a piece.
#[derive(Debug, thiserror::Error)]
pub enum PieceReadError {
    /// A file that holds part of the piece does not exist or is too short.
    #[error("{} is missing or too short", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// Any other I/O error (permissions, a failing disk, ...).
    #[error("cannot read {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (shown in the message, so not also a `source`,
        /// which would print it twice in error chains).
        error: io::Error,
    },
}

/// Reads piece `piece` into `buf` (resized to the piece's length).
pub fn read_piece(
    layout: &FileLayout,
    files: &[FileSource],
    piece: u64,
    buf: &mut Vec<u8>,
) -> Result<(), PieceReadError> {
    let Some(spans) = layout.piece_spans(piece) else {
        buf.clear();
        return Ok(());
    };
    // piece_spans succeeded, so piece_len is Some; the length fits in usize
    // because piece lengths are capped far below the address space.
    let len = layout.piece_len(piece).unwrap_or(0) as usize;
    buf.resize(len, 0);
    let mut at = 0usize;
    for span in spans {
        let n = span.len as usize;
        let Some(dest) = buf.get_mut(at..at + n) else {
            break;
        };
        match files.get(span.file) {
            Some(FileSource::Disk(path)) => read_span(path, span.offset, dest)?,
            Some(FileSource::Zeros) | None => dest.fill(0),
        }
        at += n;
    }
    Ok(())
}

/// Bytes read at a time when hashing: pieces may be up to 1 GiB, and
/// hashing must not hold a whole piece in memory (one buffer per core).
const HASH_CHUNK: u64 = 1024 * 1024;

/// SHA-1 of piece `piece`, read in chunks of at most 1 MiB through `buf`.
pub fn hash_piece(
    layout: &FileLayout,
    files: &[FileSource],
    piece: u64,
    buf: &mut Vec<u8>,
) -> Result<[u8; 20], PieceReadError> {
    let mut hasher = Sha1::new();
    for span in layout.piece_spans(piece).into_iter().flatten() {
        let mut done = 0u64;
        while done < span.len {
            // At most HASH_CHUNK, so the cast cannot truncate.
            let n = (span.len - done).min(HASH_CHUNK) as usize;
            buf.resize(n, 0);
            let Some(chunk) = buf.get_mut(..n) else { break };
            match files.get(span.file) {
                Some(FileSource::Disk(path)) => read_span(path, span.offset + done, chunk)?,
                Some(FileSource::Zeros) | None => chunk.fill(0),
            }
            hasher.update(&*chunk);
            done += n as u64;
        }
    }
    Ok(hasher.finalize().into())
}

fn read_span(path: &Path, offset: u64, dest: &mut [u8]) -> Result<(), PieceReadError> {
    // Opened per span rather than kept open: bounded file descriptors whatever
    // the number of files, at the cost of one open() per piece and file.
    let classify = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof => PieceReadError::Missing {
            path: path.to_owned(),
        },
        _ => PieceReadError::Io {
            path: path.to_owned(),
            error: source,
        },
    };
    let file = File::open(path).map_err(classify)?;
    file.read_exact_at(dest, offset).map_err(classify)
}

/// A file on disk that is longer than its entry in the torrent says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    /// Index of the file in the torrent.
    pub file: usize,
    /// Where it is.
    pub path: PathBuf,
    /// Its length on disk.
    pub length: u64,
    /// Its length in the torrent.
    pub expected: u64,
}

/// The torrent's files that exist and are longer than the torrent says
/// (following symbolic links). Piece checks read only a file's first
/// `expected` bytes, so they cannot see extra bytes at its end; this can.
/// Missing and short files are what [`check_pieces`] reports.
pub fn too_long_files(layout: &FileLayout, files: &[FileSource]) -> Vec<TooLong> {
    files
        .iter()
        .enumerate()
        .filter_map(|(file, source)| {
            let FileSource::Disk(path) = source else {
                return None;
            };
            let expected = layout.file_length(file)?;
            let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
            (meta.len() > expected).then(|| TooLong {
                file,
                path: path.clone(),
                length: meta.len(),
                expected,
            })
        })
        .collect()
}

/// SHA-1 of every piece, computed on all cores. `progress` is called with the
/// number of bytes hashed so far, from worker threads.
pub fn hash_pieces(
    layout: &FileLayout,
    files: &[FileSource],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<[u8; 20]>, PieceReadError> {
    let done = AtomicU64::new(0);
    (0..layout.num_pieces())
        .into_par_iter()
        .map_init(Vec::new, |buf, piece| {
            let hash = hash_piece(layout, files, piece, buf)?;
            let len = layout.piece_len(piece).unwrap_or(0);
            progress(done.fetch_add(len, Ordering::Relaxed) + len);
            Ok(hash)
        })
        .collect()
}

/// The state of one piece found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceCheck {
    /// Present and its SHA-1 matches.
    Good,
    /// Present but its SHA-1 does not match.
    Bad,
    /// At least one of its files is missing or too short.
    Missing,
}

/// Checks every piece against `expected` hashes, on all cores. Missing files
/// mark their pieces [`PieceCheck::Missing`]; other I/O errors abort the check.
pub fn check_pieces(
    layout: &FileLayout,
    files: &[FileSource],
    expected: &[[u8; 20]],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<PieceCheck>, PieceReadError> {
    let all = check_selected_pieces(layout, files, expected, &|_| true, progress)?;
    Ok(all
        .into_iter()
        .map(|c| c.unwrap_or(PieceCheck::Missing))
        .collect())
}

/// Like [`check_pieces`], for the pieces where `selected` is true only (the
/// others are `None`). Used to recheck what resume data cannot vouch for.
pub fn check_selected_pieces(
    layout: &FileLayout,
    files: &[FileSource],
    expected: &[[u8; 20]],
    selected: &(dyn Fn(u64) -> bool + Sync),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Option<PieceCheck>>, PieceReadError> {
    let done = AtomicU64::new(0);
    expected
        .par_iter()
        .enumerate()
        .map_init(Vec::new, |buf, (piece, want)| {
            let piece = piece as u64;
            if !selected(piece) {
                return Ok(None);
            }
            let result = match hash_piece(layout, files, piece, buf) {
                Ok(hash) if hash == *want => PieceCheck::Good,
                Ok(_) => PieceCheck::Bad,
                Err(PieceReadError::Missing { .. }) => PieceCheck::Missing,
                Err(e) => return Err(e),
            };
            let len = layout.piece_len(piece).unwrap_or(0);
            progress(done.fetch_add(len, Ordering::Relaxed) + len);
            Ok(Some(result))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn too_long_files_names_only_files_longer_than_their_entry() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let layout = FileLayout::new(16, [6, 6, 6, 6, 4]).unwrap();
        fs::write(d.join("long"), vec![1u8; 100]).unwrap();
        fs::write(d.join("exact"), b"123456").unwrap();
        fs::write(d.join("short"), b"12").unwrap();
        fs::create_dir(d.join("folder")).unwrap();
        let files = [
            FileSource::Disk(d.join("long")),
            FileSource::Disk(d.join("exact")),
            FileSource::Disk(d.join("short")),
            FileSource::Disk(d.join("missing")),
            // A padding file and a folder where a file should be are not
            // "too long" (the piece check reports the folder as missing).
            FileSource::Zeros,
        ];
        assert_eq!(
            too_long_files(&layout, &files),
            [TooLong {
                file: 0,
                path: d.join("long"),
                length: 100,
                expected: 6
            }]
        );
        let folder = [FileSource::Disk(d.join("folder"))];
        let layout = FileLayout::new(16, [0]).unwrap();
        assert!(too_long_files(&layout, &folder).is_empty());
    }

    #[test]
    fn hashing_in_chunks_matches_hashing_whole_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = (0..2_200_000u32).map(|i| (i % 241) as u8).collect();
        fs::write(dir.path().join("a"), &a).unwrap();
        fs::write(dir.path().join("b"), &b).unwrap();
        // Pieces of 3 MiB across both files and 100,000 bytes of padding.
        let layout = FileLayout::new(3 << 20, [1_500_000, 100_000, 2_200_000]).unwrap();
        let files = [
            FileSource::Disk(dir.path().join("a")),
            FileSource::Zeros,
            FileSource::Disk(dir.path().join("b")),
        ];
        let mut whole = Vec::new();
        let mut buf = Vec::new();
        for p in 0..layout.num_pieces() {
            read_piece(&layout, &files, p, &mut whole).unwrap();
            let want: [u8; 20] = Sha1::digest(&whole).into();
            assert_eq!(hash_piece(&layout, &files, p, &mut buf).unwrap(), want);
            assert!(buf.len() as u64 <= HASH_CHUNK);
        }
    }
}
