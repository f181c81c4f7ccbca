//! Reading and hashing whole pieces from files on disk, in parallel. Shared by
//! torrent creation (hash the source data) and verification (check downloaded
//! data against the torrent's hashes).

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::ops::Range;
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
    /// A file whose bytes are kept in a part file (a file not wanted, of
    /// which only the pieces it shares with wanted files are stored): its
    /// byte `i` is at `offset + i` of `path`.
    Part {
        /// The part file.
        path: PathBuf,
        /// Where the file's first byte would be in it.
        offset: u64,
    },
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
    let Some(range) = layout.piece_range(piece) else {
        buf.clear();
        return Ok(());
    };
    // The length fits in usize because piece lengths are capped far below the
    // address space.
    buf.resize((range.end - range.start) as usize, 0);
    Reader::new(&HashSet::new()).read_at(layout, files, range.start, buf)
}

/// Bytes read at a time when hashing: pieces may be up to 1 GiB, and
/// hashing must not hold a whole piece in memory (one buffer per core).
/// Pieces shorter than this are read several at a time, up to this many bytes
/// in one read per file: a positioned read per 16 KiB piece took half as much
/// system time again as reading 1 MiB at once. 1 MiB rather than more: the
/// buffer stays in a core's L2 cache between the copy from the page cache and
/// the hashing (4 MiB reads took longer than 1 MiB on the development machine).
const HASH_CHUNK: u64 = 1024 * 1024;

/// SHA-1 of piece `piece`, read in chunks of at most 1 MiB through `buf`.
pub fn hash_piece(
    layout: &FileLayout,
    files: &[FileSource],
    piece: u64,
    buf: &mut Vec<u8>,
) -> Result<[u8; 20], PieceReadError> {
    let none = HashSet::new();
    let mut reader = Reader::new(&none);
    reader.buf = std::mem::take(buf);
    let hash = reader.hash_piece(layout, files, piece);
    *buf = reader.buf;
    hash
}

/// What one hashing worker keeps from piece to piece: its read buffer and the
/// last file it opened. Keeping one file open per worker (so at most one
/// descriptor per core) saves an `open` per piece and file, which for small
/// pieces costs about as much as the read.
struct Reader<'a> {
    buf: Vec<u8>,
    /// Files missing before the work began, found once for every worker:
    /// their pieces fail without a buffer being filled (a fresh download
    /// would otherwise zero a buffer per run for pieces it cannot read).
    missing: &'a HashSet<usize>,
    /// The file last read (index in the torrent) and its handle.
    open: Option<(usize, File)>,
    /// Files found missing: not looked for again (a fresh download would
    /// otherwise try to open its absent files once per piece, 100,000 times
    /// for a torrent of 100,000 pieces).
    absent: HashSet<usize>,
}

impl<'a> Reader<'a> {
    fn new(missing: &'a HashSet<usize>) -> Self {
        Reader {
            buf: Vec::new(),
            missing,
            open: None,
            absent: HashSet::new(),
        }
    }

    /// Calls `each` with the index within `pieces` and the SHA-1 (or the
    /// read error) of each piece of `pieces`, in order, and stops at the first
    /// error `each` returns. Pieces longer than [`HASH_CHUNK`] are read in
    /// chunks, one at a time; shorter ones, at most [`HASH_CHUNK`] bytes of
    /// them together, are read at once, one read per file they touch. If that read fails, the pieces are read again
    /// one by one, so that each gets its own result: a file that is too short
    /// fails only the pieces that reach past its end.
    fn hash_each(
        &mut self,
        layout: &FileLayout,
        files: &[FileSource],
        pieces: Range<u64>,
        mut each: impl FnMut(usize, Result<[u8; 20], PieceReadError>) -> Result<(), PieceReadError>,
    ) -> Result<(), PieceReadError> {
        let piece_length = layout.piece_length();
        // Pieces past the end (more expected hashes than the layout has
        // pieces) hash as empty, one by one.
        if piece_length > HASH_CHUNK || pieces.end > layout.num_pieces() {
            return pieces
                .enumerate()
                .try_for_each(|(i, piece)| each(i, self.hash_piece(layout, files, piece)));
        }
        let start = pieces.start.saturating_mul(piece_length);
        let end = pieces
            .end
            .saturating_mul(piece_length)
            .min(layout.total_length());
        if self
            .absent_in(layout, files, start, end.saturating_sub(start))
            .is_some()
        {
            // Each piece fails or not on its own.
            return pieces
                .enumerate()
                .try_for_each(|(i, piece)| each(i, self.hash_piece(layout, files, piece)));
        }
        let mut buf = std::mem::take(&mut self.buf);
        // Pieces of at most HASH_CHUNK bytes, at most HASH_CHUNK of them together
        // (see for_each_run), so the cast cannot truncate.
        buf.resize(end.saturating_sub(start) as usize, 0);
        let read = self.read_at(layout, files, start, &mut buf);
        let result = if read.is_ok() {
            // Pieces of piece_length bytes, the last of the torrent maybe shorter.
            buf.chunks(piece_length as usize)
                .enumerate()
                .try_for_each(|(i, bytes)| each(i, Ok(Sha1::digest(bytes).into())))
        } else {
            pieces
                .enumerate()
                .try_for_each(|(i, piece)| each(i, self.hash_piece(layout, files, piece)))
        };
        self.buf = buf;
        result
    }

    /// SHA-1 of one piece, read in chunks of at most [`HASH_CHUNK`] bytes.
    fn hash_piece(
        &mut self,
        layout: &FileLayout,
        files: &[FileSource],
        piece: u64,
    ) -> Result<[u8; 20], PieceReadError> {
        let mut hasher = Sha1::new();
        if let Some(range) = layout.piece_range(piece) {
            if let Some(missing) =
                self.absent_in(layout, files, range.start, range.end - range.start)
            {
                return Err(missing);
            }
            let mut buf = std::mem::take(&mut self.buf);
            let mut at = range.start;
            while at < range.end {
                // At most HASH_CHUNK, so the cast cannot truncate.
                let n = (range.end - at).min(HASH_CHUNK) as usize;
                buf.resize(n, 0);
                if let Err(e) = self.read_at(layout, files, at, &mut buf) {
                    self.buf = buf;
                    return Err(e);
                }
                hasher.update(&buf);
                at += n as u64;
            }
            self.buf = buf;
        }
        Ok(hasher.finalize().into())
    }

    /// The error for the first file known to be missing among those holding
    /// the `len` bytes at `offset` of the torrent, if any.
    fn absent_in(
        &self,
        layout: &FileLayout,
        files: &[FileSource],
        offset: u64,
        len: u64,
    ) -> Option<PieceReadError> {
        let file = layout
            .spans(offset, len)
            .into_iter()
            .flatten()
            .map(|span| span.file)
            .find(|f| self.missing.contains(f) || self.absent.contains(f))?;
        let path = match files.get(file) {
            Some(FileSource::Disk(path) | FileSource::Part { path, .. }) => path,
            _ => return None,
        };
        Some(classify(path, io::ErrorKind::NotFound.into()))
    }

    /// Fills `dest` with the bytes at `offset` of the torrent (all files
    /// concatenated), one read per file.
    fn read_at(
        &mut self,
        layout: &FileLayout,
        files: &[FileSource],
        offset: u64,
        dest: &mut [u8],
    ) -> Result<(), PieceReadError> {
        let mut at = 0usize;
        for span in layout
            .spans(offset, dest.len() as u64)
            .into_iter()
            .flatten()
        {
            // Within dest, so the cast cannot truncate.
            let n = span.len as usize;
            let Some(part) = dest.get_mut(at..at + n) else {
                break;
            };
            self.read_span(files, span.file, span.offset, part)?;
            at += n;
        }
        Ok(())
    }

    /// Fills `dest` from file `file` at `offset` (zeros for a padding file).
    fn read_span(
        &mut self,
        files: &[FileSource],
        file: usize,
        offset: u64,
        dest: &mut [u8],
    ) -> Result<(), PieceReadError> {
        let (path, base) = match files.get(file) {
            Some(FileSource::Disk(path)) => (path, 0),
            Some(FileSource::Part { path, offset }) => (path, *offset),
            _ => {
                dest.fill(0);
                return Ok(());
            }
        };
        let offset = base.saturating_add(offset);
        if self.absent.contains(&file) {
            return Err(classify(path, io::ErrorKind::NotFound.into()));
        }
        let handle = match self.open.take() {
            Some((index, handle)) if index == file => handle,
            _ => File::open(path).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    self.absent.insert(file);
                }
                classify(path, e)
            })?,
        };
        let read = handle
            .read_exact_at(dest, offset)
            .map_err(|e| classify(path, e));
        self.open = Some((file, handle));
        read
    }
}

fn classify(path: &Path, source: io::Error) -> PieceReadError {
    match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof => PieceReadError::Missing {
            path: path.to_owned(),
        },
        _ => PieceReadError::Io {
            path: path.to_owned(),
            error: source,
        },
    }
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
    // A Vec of one hash per piece exists either way, so the count fits in usize.
    let mut hashes = vec![[0u8; 20]; layout.num_pieces() as usize];
    for_each_run(
        layout,
        files,
        &mut hashes,
        progress,
        |reader, pieces, slots| {
            let mut bytes = 0;
            reader.hash_each(layout, files, pieces.clone(), |i, hash| {
                if let Some(slot) = slots.get_mut(i) {
                    *slot = hash?;
                }
                bytes += layout.piece_len(pieces.start + i as u64).unwrap_or(0);
                Ok(())
            })?;
            Ok(bytes)
        },
    )?;
    Ok(hashes)
}

/// Runs `work` on all cores over runs of consecutive pieces, each with the
/// slots of `out` for its pieces, and a [`Reader`] that a worker keeps from
/// run to run. A run is as many pieces as one read of [`HASH_CHUNK`] holds
/// (one piece if pieces are longer), so that the last runs, which may find
/// only one core busy, are short. `work` returns the bytes it hashed, which
/// go to `progress`.
fn for_each_run<T: Send>(
    layout: &FileLayout,
    files: &[FileSource],
    out: &mut [T],
    progress: &(dyn Fn(u64) + Sync),
    work: impl Fn(&mut Reader, Range<u64>, &mut [T]) -> Result<u64, PieceReadError> + Sync,
) -> Result<(), PieceReadError> {
    // At least 1, and at most HASH_CHUNK, so the cast cannot truncate.
    let per_run = (HASH_CHUNK / layout.piece_length()).max(1) as usize;
    let done = AtomicU64::new(0);
    // One look per file, rather than one failed open per worker and file.
    let missing: HashSet<usize> = files
        .iter()
        .enumerate()
        .filter(|(_, source)| match source {
            FileSource::Disk(path) | FileSource::Part { path, .. } => {
                matches!(std::fs::metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
            }
            FileSource::Zeros => false,
        })
        .map(|(i, _)| i)
        .collect();
    out.par_chunks_mut(per_run).enumerate().try_for_each_init(
        || Reader::new(&missing),
        |reader, (run, slots)| {
            let first = (run * per_run) as u64;
            let bytes = work(reader, first..first + slots.len() as u64, slots)?;
            progress(done.fetch_add(bytes, Ordering::Relaxed) + bytes);
            Ok(())
        },
    )
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
    let mut states = vec![None; expected.len()];
    for_each_run(
        layout,
        files,
        &mut states,
        progress,
        |reader, pieces, slots| {
            let mut bytes = 0;
            let mut record = |piece: u64, hash: Result<[u8; 20], PieceReadError>| {
                let state = match hash {
                    Ok(hash) if expected.get(piece as usize) == Some(&hash) => PieceCheck::Good,
                    Ok(_) => PieceCheck::Bad,
                    Err(PieceReadError::Missing { .. }) => PieceCheck::Missing,
                    Err(e) => return Err(e),
                };
                if let Some(slot) = slots.get_mut((piece - pieces.start) as usize) {
                    *slot = Some(state);
                }
                bytes += layout.piece_len(piece).unwrap_or(0);
                Ok(())
            };
            if pieces.clone().all(selected) {
                reader.hash_each(layout, files, pieces.clone(), |i, hash| {
                    record(pieces.start + i as u64, hash)
                })?;
            } else {
                // Read only what was asked for: a resumed torrent may need one
                // piece checked out of a run.
                for piece in pieces.clone().filter(|p| selected(*p)) {
                    reader.hash_each(layout, files, piece..piece + 1, |_, hash| {
                        record(piece, hash)
                    })?;
                }
            }
            Ok(bytes)
        },
    )?;
    Ok(states)
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

    /// Files of awkward sizes (empty ones, one byte, a padding file), written
    /// to `dir`, and their concatenation.
    fn awkward_files(dir: &Path) -> (Vec<u64>, Vec<FileSource>, Vec<u8>) {
        let sizes = [0u64, 70_000, 0, 1, 123_457, 16_384, 50_000, 0, 2_500_001];
        let mut all = Vec::new();
        let mut files = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            if i == 6 {
                files.push(FileSource::Zeros);
                all.resize(all.len() + *size as usize, 0);
                continue;
            }
            let bytes: Vec<u8> = (0..*size).map(|b| (b * 7 + i as u64) as u8).collect();
            let path = dir.join(format!("f{i}"));
            fs::write(&path, &bytes).unwrap();
            files.push(FileSource::Disk(path));
            all.extend_from_slice(&bytes);
        }
        (sizes.to_vec(), files, all)
    }

    #[test]
    fn every_piece_hashes_like_an_independent_sha1_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (sizes, files, all) = awkward_files(dir.path());
        // Runs of 64 and 32 pieces spanning files, one piece per run, pieces
        // longer than a read, and a single piece (fewer than the cores).
        for piece_length in [16 << 10, 32 << 10, 1 << 20, 2 << 20, 4 << 20] {
            let layout = FileLayout::new(piece_length, sizes.iter().copied()).unwrap();
            let want: Vec<[u8; 20]> = all
                .chunks(piece_length as usize)
                .map(|piece| Sha1::digest(piece).into())
                .collect();
            let done = AtomicU64::new(0);
            let hashes = hash_pieces(&layout, &files, &|n| {
                done.fetch_max(n, Ordering::Relaxed);
            })
            .unwrap();
            assert_eq!(hashes, want, "piece length {piece_length}");
            assert_eq!(done.into_inner(), all.len() as u64);
            let checks = check_pieces(&layout, &files, &want, &|_| {}).unwrap();
            assert!(checks.iter().all(|c| *c == PieceCheck::Good));
        }
    }

    #[test]
    fn a_missing_file_fails_only_the_pieces_that_hold_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (sizes, files, all) = awkward_files(dir.path());
        // File 4 is bytes 70,001..193,458 of the torrent.
        let FileSource::Disk(gone) = &files[4] else {
            panic!()
        };
        fs::remove_file(gone).unwrap();
        let lost = 70_001u64..193_458;
        // Small pieces (read in runs of many) and pieces longer than a read.
        for piece_length in [16u64 << 10, 2 << 20] {
            let layout = FileLayout::new(piece_length, sizes.iter().copied()).unwrap();
            let want: Vec<[u8; 20]> = all
                .chunks(piece_length as usize)
                .map(|piece| Sha1::digest(piece).into())
                .collect();
            let checks = check_pieces(&layout, &files, &want, &|_| {}).unwrap();
            for (piece, check) in checks.iter().enumerate() {
                let range = layout.piece_range(piece as u64).unwrap();
                let expected = if range.start < lost.end && lost.start < range.end {
                    PieceCheck::Missing
                } else {
                    PieceCheck::Good
                };
                assert_eq!(*check, expected, "piece {piece} of {piece_length}");
            }
        }
    }

    #[test]
    fn a_short_file_fails_only_the_pieces_that_reach_past_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let (sizes, files, all) = awkward_files(dir.path());
        let piece_length = 16 << 10;
        let layout = FileLayout::new(piece_length, sizes.iter().copied()).unwrap();
        let want: Vec<[u8; 20]> = all
            .chunks(piece_length as usize)
            .map(|piece| Sha1::digest(piece).into())
            .collect();
        // File 4 (bytes 70,001..193,458 of the torrent) loses its second half;
        // one byte of file 8 changes.
        let FileSource::Disk(short) = &files[4] else {
            panic!()
        };
        let keep = 60_000u64;
        fs::write(short, &fs::read(short).unwrap()[..keep as usize]).unwrap();
        let lost = 70_001 + keep..193_458;
        let FileSource::Disk(changed) = &files[8] else {
            panic!()
        };
        let mut bytes = fs::read(changed).unwrap();
        bytes[1_000_000] ^= 1;
        fs::write(changed, bytes).unwrap();
        let bad = (259_842 + 1_000_000) / piece_length;

        let checks = check_pieces(&layout, &files, &want, &|_| {}).unwrap();
        for (piece, check) in checks.iter().enumerate() {
            let range = layout.piece_range(piece as u64).unwrap();
            let expected = if range.start < lost.end && lost.start < range.end {
                PieceCheck::Missing
            } else if piece as u64 == bad {
                PieceCheck::Bad
            } else {
                PieceCheck::Good
            };
            assert_eq!(*check, expected, "piece {piece}");
        }

        // Only the odd pieces: the others are left alone.
        let odd = check_selected_pieces(&layout, &files, &want, &|p| p % 2 == 1, &|_| {}).unwrap();
        for (piece, (check, all)) in odd.iter().zip(&checks).enumerate() {
            assert_eq!(*check, (piece % 2 == 1).then_some(*all), "piece {piece}");
        }
        assert!(matches!(
            hash_pieces(&layout, &files, &|_| {}),
            Err(PieceReadError::Missing { .. })
        ));
    }
}
