//! Where piece data lives: the [`Storage`] trait, [`FileStorage`] for real
//! files and [`MemoryStorage`] for tests.
//!
//! File storage maps pieces to file spans with [`FileLayout`], writes and reads
//! with positioned I/O (`pwrite`/`pread`) so that no lock is held around a
//! transfer, and keeps a bounded number of files open: handles are opened on
//! demand and the least recently used are closed beyond the limit.
//!
//! Files not wanted (selective download) are not created: the bytes of
//! theirs that pieces shared with wanted files carry go to the torrent's
//! *part file*, a sparse file in which every byte sits at its offset in the
//! torrent. When such a file becomes wanted it is created and what the part
//! file holds of it is moved in ([`Storage::want_file`]).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rivulet_core::{FileLayout, Info};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O error on a file (permission denied, disk full, ...).
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (shown in the message, so not also a `source`,
        /// which would print it twice in error chains).
        error: io::Error,
    },
    /// A write to storage opened read-only (a bug in the caller: a read-only
    /// data folder is only used when every piece is present).
    #[error("{}: the data folder is read-only", path.display())]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },
    /// A piece or block outside the torrent (a bug in the caller, or a peer's
    /// request that was not checked).
    #[error("piece {piece} offset {begin} length {len} is outside the torrent")]
    OutOfRange {
        /// Piece index.
        piece: u32,
        /// Offset within the piece.
        begin: u32,
        /// Length.
        len: usize,
    },
}

impl StorageError {
    /// Whether this is the disk (or file system) running out of space.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::Io { error, .. } if error.kind() == io::ErrorKind::StorageFull)
    }
}

/// Reads and writes torrent data by piece. Implementations are shared between
/// tasks, so every method takes `&self`.
pub trait Storage: Send + Sync {
    /// Writes `data` at offset `begin` of piece `piece`.
    fn write(&self, piece: u32, begin: u32, data: &[u8]) -> Result<(), StorageError>;
    /// Fills `buf` from offset `begin` of piece `piece`.
    fn read(&self, piece: u32, begin: u32, buf: &mut [u8]) -> Result<(), StorageError>;
    /// Makes written data durable (before resume data claims it).
    fn flush(&self) -> Result<(), StorageError>;
    /// File `file` (index in the torrent) is wanted: if its bytes were kept
    /// in the part file, it is created and they move into it. Storage
    /// without part files has nothing to do.
    fn want_file(&self, _file: usize) -> Result<(), StorageError> {
        Ok(())
    }
    /// Whether file `file`'s bytes are kept in the part file (it does not
    /// exist as a file yet).
    fn in_part_file(&self, _file: usize) -> bool {
        false
    }
}

/// Default bound on open file handles.
pub const DEFAULT_MAX_OPEN_FILES: usize = 128;

struct Slot {
    path: PathBuf,
    /// Padding and symlinks hold no stored data: they read as zeros and are
    /// never written.
    padding: bool,
    /// Where the file starts in the torrent, and its length.
    start: u64,
    length: u64,
    /// BEP 47 `x`: made executable when created.
    executable: bool,
    /// The file's bytes are in the part file, at their torrent offsets.
    /// Every transfer holds this for reading, so that moving the bytes out
    /// (which holds it for writing) never races with one.
    in_part: RwLock<bool>,
    handle: Mutex<Option<Arc<File>>>,
    last_used: AtomicU64,
}

impl Slot {
    fn in_part(&self) -> std::sync::RwLockReadGuard<'_, bool> {
        self.in_part.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// The part file of a torrent (see the module's documentation).
struct PartFile {
    path: PathBuf,
    /// Open once first written (or read).
    handle: Mutex<Option<Arc<File>>>,
}

/// Torrent data in real files under a folder.
pub struct FileStorage {
    layout: FileLayout,
    slots: Vec<Slot>,
    open_count: AtomicUsize,
    clock: AtomicU64,
    max_open: usize,
    /// Files are opened for writing too (not for a read-only data folder).
    writable: bool,
    /// Where the bytes of files not wanted go (none: every file is real).
    part: Option<PartFile>,
}

impl std::fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStorage")
            .field("files", &self.slots.len())
            .field("open", &self.open_count.load(Ordering::Relaxed))
            .finish()
    }
}

impl FileStorage {
    /// Storage for `info` under `dir`: creates folders, creates every file
    /// (zero-length ones too) and sets each to its full length, which is sparse
    /// on file systems that support it; files with the BEP 47 executable
    /// attribute get execute permission. Padding files are never created;
    /// symlinks are made by [`create_links`].
    /// Existing files are kept (their data may be resumed); a file longer than
    /// the torrent says is left alone rather than truncated.
    pub fn create(info: &Info, dir: &Path, max_open: usize) -> Result<Self, StorageError> {
        Self::create_selected(info, dir, max_open, &|_| true, None)
    }

    /// As [`FileStorage::create`], but files for which `wanted` is false
    /// and that do not exist yet are not created: their bytes go to the
    /// part file at `part_path` (when given; without one every file is
    /// created). A wanted file that does not exist yet gets what the part
    /// file holds of it (it was not wanted before).
    pub fn create_selected(
        info: &Info,
        dir: &Path,
        max_open: usize,
        wanted: &dyn Fn(usize) -> bool,
        part_path: Option<PathBuf>,
    ) -> Result<Self, StorageError> {
        let layout = info.layout().clone();
        let mut slots = Vec::with_capacity(info.files.len());
        for (i, f) in info.files.iter().enumerate() {
            let path = dir.join(f.relative_path());
            // Not wanted and not there: kept in the part file for now.
            let in_part = f.is_stored() && part_path.is_some() && !wanted(i) && !path.exists();
            slots.push(Slot {
                path,
                padding: !f.is_stored(),
                start: layout.file_start(i).unwrap_or(0),
                length: f.length,
                executable: f.executable,
                in_part: RwLock::new(in_part),
                handle: Mutex::new(None),
                last_used: AtomicU64::new(0),
            });
        }
        let storage = FileStorage {
            layout,
            slots,
            open_count: AtomicUsize::new(0),
            clock: AtomicU64::new(0),
            max_open: max_open.max(1),
            writable: true,
            part: part_path.map(|path| PartFile {
                path,
                handle: Mutex::new(None),
            }),
        };
        for (i, slot) in storage.slots.iter().enumerate() {
            if !slot.padding && !*slot.in_part() {
                storage.make_real(i)?;
            }
        }
        storage.forget_part_file_if_unused();
        Ok(storage)
    }

    /// Creates file `index` (folders, full length, executable bit) if it is
    /// not there, or extends it to its length; a file created here gets
    /// what the part file holds of its bytes.
    fn make_real(&self, index: usize) -> Result<(), StorageError> {
        let Some(slot) = self.slots.get(index) else {
            return Ok(());
        };
        let path = &slot.path;
        let io = |source| StorageError::Io {
            path: path.clone(),
            error: source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let existed = path.exists();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        if file.metadata().map_err(io)?.len() < slot.length {
            file.set_len(slot.length).map_err(io)?;
        }
        if slot.executable {
            set_executable(&file).map_err(io)?;
        }
        if !existed {
            if let Some(part) = &self.part {
                copy_from_part(&part.path, slot.start, slot.length, &file).map_err(|error| {
                    StorageError::Io {
                        path: part.path.clone(),
                        error,
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Removes the part file once no file keeps its bytes there.
    fn forget_part_file_if_unused(&self) {
        let Some(part) = &self.part else { return };
        if self.slots.iter().any(|s| *s.in_part()) {
            return;
        }
        let mut handle = part.handle.lock().unwrap_or_else(|e| e.into_inner());
        *handle = None;
        match std::fs::remove_file(&part.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %part.path.display(), error = %e, "cannot remove the part file")
            }
        }
    }

    /// The part file's handle, opened (and created, when `create`) on first
    /// use.
    fn part_handle(&self, create: bool) -> Result<Arc<File>, StorageError> {
        let part = self.part.as_ref().ok_or(StorageError::OutOfRange {
            piece: 0,
            begin: 0,
            len: 0,
        })?;
        let mut guard = part.handle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = guard.as_ref() {
            return Ok(Arc::clone(f));
        }
        let io = |error| StorageError::Io {
            path: part.path.clone(),
            error,
        };
        if create {
            if let Some(parent) = part.path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&part.path)
            .map_err(io)?;
        let file = Arc::new(file);
        *guard = Some(Arc::clone(&file));
        Ok(file)
    }

    /// The path of the part file, if the storage has one.
    pub fn part_path(&self) -> Option<&Path> {
        self.part.as_ref().map(|p| p.path.as_path())
    }

    /// Storage for `info` under `dir` that only reads: nothing is created
    /// or changed, files are opened for reading when first used, and a write
    /// is a [`StorageError::ReadOnly`]. For seeding complete data from a
    /// folder rivulet cannot write to.
    pub fn open_read_only(info: &Info, dir: &Path, max_open: usize) -> Self {
        let slots = info
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| Slot {
                path: dir.join(f.relative_path()),
                padding: !f.is_stored(),
                start: info.layout().file_start(i).unwrap_or(0),
                length: f.length,
                executable: f.executable,
                in_part: RwLock::new(false),
                handle: Mutex::new(None),
                last_used: AtomicU64::new(0),
            })
            .collect();
        FileStorage {
            layout: info.layout().clone(),
            slots,
            open_count: AtomicUsize::new(0),
            clock: AtomicU64::new(0),
            max_open: max_open.max(1),
            writable: false,
            part: None,
        }
    }

    /// Number of file handles open now.
    pub fn open_files(&self) -> usize {
        self.open_count.load(Ordering::Relaxed)
    }

    fn handle(&self, index: usize) -> Result<Arc<File>, StorageError> {
        let slot = self.slots.get(index).ok_or(StorageError::OutOfRange {
            piece: 0,
            begin: 0,
            len: 0,
        })?;
        slot.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let mut guard = slot.handle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = guard.as_ref() {
            return Ok(Arc::clone(f));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(self.writable)
            .open(&slot.path)
            .map_err(|source| StorageError::Io {
                path: slot.path.clone(),
                error: source,
            })?;
        let file = Arc::new(file);
        *guard = Some(Arc::clone(&file));
        drop(guard);
        if self.open_count.fetch_add(1, Ordering::Relaxed) + 1 > self.max_open {
            self.evict(index);
        }
        Ok(file)
    }

    /// Closes the least recently used handle other than `keep`. A transfer in
    /// progress on it keeps its own `Arc`, so closing never interrupts I/O.
    fn evict(&self, keep: usize) {
        let victim = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, s)| *i != keep && s.handle.lock().map(|h| h.is_some()).unwrap_or(false))
            .min_by_key(|(_, s)| s.last_used.load(Ordering::Relaxed))
            .map(|(i, _)| i);
        if let Some(slot) = victim.and_then(|i| self.slots.get(i)) {
            let mut guard = slot.handle.lock().unwrap_or_else(|e| e.into_inner());
            if guard.take().is_some() {
                self.open_count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn spans(
        &self,
        piece: u32,
        begin: u32,
        len: usize,
    ) -> Result<rivulet_core::layout::Spans<'_>, StorageError> {
        self.layout
            .block_spans(u64::from(piece), u64::from(begin), len as u64)
            .ok_or(StorageError::OutOfRange { piece, begin, len })
    }

    /// Writes `blocks`, one after the other, from offset `begin` of piece
    /// `piece`, with one `pwritev` per file span they cover, without copying
    /// them together (a block that crosses files is one write per file).
    fn write_blocks(&self, piece: u32, begin: u32, blocks: &[&[u8]]) -> Result<(), StorageError> {
        let total = blocks.iter().map(|b| b.len()).sum();
        let mut cursor = (0usize, 0usize);
        let mut slices = Vec::with_capacity(blocks.len() + 1);
        for span in self.spans(piece, begin, total)? {
            slices.clear();
            gather(blocks, &mut cursor, span.len as usize, &mut slices);
            let Some(slot) = self.slots.get(span.file) else {
                continue;
            };
            if slot.padding {
                continue;
            }
            if !self.writable {
                return Err(StorageError::ReadOnly {
                    path: slot.path.clone(),
                });
            }
            let in_part = slot.in_part();
            let (file, offset, path) = if *in_part {
                let path = self.part_path().unwrap_or(&slot.path);
                (self.part_handle(true)?, slot.start + span.offset, path)
            } else {
                (self.handle(span.file)?, span.offset, slot.path.as_path())
            };
            write_all_vectored_at(file.as_ref(), &mut slices, offset).map_err(|source| {
                StorageError::Io {
                    path: path.to_owned(),
                    error: source,
                }
            })?;
        }
        Ok(())
    }
}

impl Storage for FileStorage {
    fn write(&self, piece: u32, begin: u32, data: &[u8]) -> Result<(), StorageError> {
        self.write_blocks(piece, begin, &[data])
    }

    fn read(&self, piece: u32, begin: u32, buf: &mut [u8]) -> Result<(), StorageError> {
        let mut at = 0usize;
        for span in self.spans(piece, begin, buf.len())? {
            let n = span.len as usize;
            let Some(chunk) = buf.get_mut(at..at + n) else {
                break;
            };
            at += n;
            let Some(slot) = self.slots.get(span.file) else {
                continue;
            };
            if slot.padding {
                chunk.fill(0);
                continue;
            }
            let in_part = slot.in_part();
            let (file, offset, path) = if *in_part {
                let path = self.part_path().unwrap_or(&slot.path);
                (self.part_handle(false)?, slot.start + span.offset, path)
            } else {
                (self.handle(span.file)?, span.offset, slot.path.as_path())
            };
            file.read_exact_at(chunk, offset)
                .map_err(|source| StorageError::Io {
                    path: path.to_owned(),
                    error: source,
                })?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        if !self.writable {
            return Ok(()); // nothing was written
        }
        for slot in &self.slots {
            sync_open(&slot.handle, &slot.path)?;
        }
        if let Some(part) = &self.part {
            sync_open(&part.handle, &part.path)?;
        }
        Ok(())
    }

    fn want_file(&self, file: usize) -> Result<(), StorageError> {
        let Some(slot) = self.slots.get(file) else {
            return Ok(());
        };
        // No transfer of this file's bytes runs while they move.
        let mut in_part = slot.in_part.write().unwrap_or_else(|e| e.into_inner());
        if !*in_part {
            return Ok(());
        }
        self.make_real(file)?;
        *in_part = false;
        drop(in_part);
        self.forget_part_file_if_unused();
        Ok(())
    }

    fn in_part_file(&self, file: usize) -> bool {
        self.slots.get(file).is_some_and(|s| *s.in_part())
    }
}

/// Makes what was written through `handle`, if open, durable.
fn sync_open(handle: &Mutex<Option<Arc<File>>>, path: &Path) -> Result<(), StorageError> {
    let handle = handle.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(f) = handle {
        f.sync_data().map_err(|source| StorageError::Io {
            path: path.to_owned(),
            error: source,
        })?;
    }
    Ok(())
}

/// Copies bytes `start..start + len` of the part file at `part` (if it
/// exists) to offset 0 of `dest`, skipping the holes: the part file is
/// sparse, and a file of many GiB that was never wanted has only a
/// piece's worth of bytes there, or none.
fn copy_from_part(part: &Path, start: u64, len: u64, dest: &File) -> io::Result<()> {
    use rustix::fs::SeekFrom;
    let src = match File::open(part) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let end = start.saturating_add(len).min(src.metadata()?.len());
    let mut at = start;
    let mut buf = vec![0u8; 1 << 20];
    while at < end {
        // The next run of data, and where it ends; ENXIO: no data after `at`.
        let data = match rustix::fs::seek(&src, SeekFrom::Data(at)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if data >= end {
            break;
        }
        let hole = rustix::fs::seek(&src, SeekFrom::Hole(data))
            .map_err(io::Error::from)?
            .min(end);
        let mut pos = data;
        while pos < hole {
            // At most the buffer's length, so the cast cannot truncate.
            let n = (hole - pos).min(buf.len() as u64) as usize;
            let chunk = buf.get_mut(..n).unwrap_or_default();
            src.read_exact_at(chunk, pos)?;
            dest.write_all_at(chunk, pos - start)?;
            pos += n as u64;
        }
        at = hole;
    }
    Ok(())
}

/// Torrent data in memory, for tests and in-process swarms.
#[derive(Debug)]
pub struct MemoryStorage {
    piece_length: u64,
    data: Mutex<Vec<u8>>,
}

impl MemoryStorage {
    /// Zero-filled storage of `total_length` bytes.
    pub fn new(piece_length: u64, total_length: usize) -> Self {
        MemoryStorage {
            piece_length,
            data: Mutex::new(vec![0; total_length]),
        }
    }

    /// Storage holding `data` (a complete torrent's bytes, for a seeder).
    pub fn with_data(piece_length: u64, data: Vec<u8>) -> Self {
        MemoryStorage {
            piece_length,
            data: Mutex::new(data),
        }
    }

    /// A copy of everything stored.
    pub fn contents(&self) -> Vec<u8> {
        self.data.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn range(
        &self,
        piece: u32,
        begin: u32,
        len: usize,
        total: usize,
    ) -> Result<std::ops::Range<usize>, StorageError> {
        let start = u64::from(piece) * self.piece_length + u64::from(begin);
        let end = start + len as u64;
        let piece_end = (u64::from(piece) + 1) * self.piece_length;
        if end > total as u64 || end > piece_end {
            return Err(StorageError::OutOfRange { piece, begin, len });
        }
        Ok(start as usize..end as usize)
    }
}

impl Storage for MemoryStorage {
    fn write(&self, piece: u32, begin: u32, data: &[u8]) -> Result<(), StorageError> {
        let mut store = self.data.lock().unwrap_or_else(|e| e.into_inner());
        let range = self.range(piece, begin, data.len(), store.len())?;
        if let Some(dest) = store.get_mut(range) {
            dest.copy_from_slice(data);
        }
        Ok(())
    }

    fn read(&self, piece: u32, begin: u32, buf: &mut [u8]) -> Result<(), StorageError> {
        let store = self.data.lock().unwrap_or_else(|e| e.into_inner());
        let range = self.range(piece, begin, buf.len(), store.len())?;
        if let Some(src) = store.get(range) {
            buf.copy_from_slice(src);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Appends to `out` the next `n` bytes of the concatenation of `blocks`,
/// from `cursor` (block index, offset in it), and moves the cursor past them.
fn gather<'a>(
    blocks: &[&'a [u8]],
    cursor: &mut (usize, usize),
    mut n: usize,
    out: &mut Vec<IoSlice<'a>>,
) {
    while n > 0 {
        let Some(block) = blocks.get(cursor.0) else {
            return;
        };
        let rest = block.get(cursor.1..).unwrap_or_default();
        let k = rest.len().min(n);
        if let Some(part) = rest.get(..k).filter(|p| !p.is_empty()) {
            out.push(IoSlice::new(part));
        }
        n -= k;
        cursor.1 += k;
        if cursor.1 >= block.len() {
            *cursor = (cursor.0 + 1, 0);
        }
    }
}

/// `pwritev` until every byte of `slices` is written at `offset`.
fn write_all_vectored_at(
    file: &File,
    mut slices: &mut [IoSlice<'_>],
    mut offset: u64,
) -> io::Result<()> {
    while !slices.is_empty() {
        match rustix::io::pwritev(file, slices, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                offset += n as u64;
                IoSlice::advance_slices(&mut slices, n);
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Adds execute permission wherever `file` has read permission (a `0644`
/// file becomes `0755`), for files the torrent marks executable (BEP 47).
#[cfg(unix)]
fn set_executable(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = file.metadata()?.permissions();
    let mode = perms.mode();
    let with_x = mode | ((mode & 0o444) >> 2);
    if with_x != mode {
        perms.set_mode(with_x);
        file.set_permissions(perms)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn set_executable(_file: &File) -> std::io::Result<()> {
    Ok(())
}

/// Creates the torrent's BEP 47 symbolic links under `dir`, each pointing
/// at its target by a relative path (so the folder can move). Links whose
/// target is not in the torrent were already refused by the parser (their
/// `target` is `None`) and are not made. A link whose place holds a link to
/// the same target is kept; anything else there is left alone. Returns one
/// sentence per link not made, for the user.
pub fn create_links(info: &Info, dir: &Path) -> Vec<String> {
    let mut notes = Vec::new();
    for f in &info.files {
        let Some(link) = &f.symlink else { continue };
        let path = dir.join(f.relative_path());
        let Some(target) = &link.target else {
            notes.push(format!(
                "{} links to {}, which is not in the torrent: the link is not created",
                path.display(),
                link.given
            ));
            continue;
        };
        let relative = relative_target(&f.path, target);
        match std::fs::read_link(&path) {
            Ok(existing) if existing == relative => continue,
            Ok(_) | Err(_) if std::fs::symlink_metadata(&path).is_ok() => {
                notes.push(format!(
                    "{} already exists and is not a link to {}: left as it is",
                    path.display(),
                    relative.display()
                ));
                continue;
            }
            _ => {}
        }
        let made = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| symlink(&relative, &path));
        if let Err(e) = made {
            notes.push(format!("cannot create the link {}: {e}", path.display()));
        }
    }
    notes
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "symbolic links are only made on Unix",
    ))
}

/// The path from the folder holding `link` to `target`, both given as
/// components below the same folder: `a/b/ln` to `a/c` is `../c`.
fn relative_target(link: &[String], target: &[String]) -> PathBuf {
    let folder = link.get(..link.len().saturating_sub(1)).unwrap_or_default();
    let common = folder
        .iter()
        .zip(target)
        .take_while(|(a, b)| a == b)
        .count();
    let ups = folder.len() - common;
    std::iter::repeat_n("..", ups)
        .chain(target.iter().skip(common).map(String::as_str))
        .collect()
}

#[cfg(test)]
mod tests {
    use rivulet_bencode::OwnedValue as V;
    use rivulet_core::Metainfo;

    use super::*;

    #[test]
    fn disk_full_is_recognised_by_its_kind() {
        let io = |error| StorageError::Io {
            path: PathBuf::from("f"),
            error,
        };
        // ENOSPC from the OS, and the same kind made by hand (as a FUSE or
        // test storage might): both are a full disk.
        assert!(io(io::Error::from_raw_os_error(28)).is_disk_full());
        assert!(io(io::Error::from(io::ErrorKind::StorageFull)).is_disk_full());
        assert!(!io(io::Error::from(io::ErrorKind::PermissionDenied)).is_disk_full());
        assert!(!StorageError::ReadOnly {
            path: PathBuf::from("f")
        }
        .is_disk_full());
    }

    /// Files of 10, 0, 20000, 5 (padding), 30 bytes in pieces of 16 KiB.
    fn info() -> Info {
        let file = |len: i64, path: &[&str]| {
            V::dict()
                .with("length", V::Int(len))
                .with("path", V::List(path.iter().map(|p| V::str(p)).collect()))
        };
        let info = V::dict()
            .with("name", "t".into())
            .with("piece length", V::Int(16384))
            .with("pieces", V::Bytes(vec![0; 40]))
            .with(
                "files",
                V::List(vec![
                    file(10, &["a"]),
                    file(0, &["sub", "empty"]),
                    file(20000, &["sub", "deep", "b"]),
                    file(5, &[".pad", "5"]).with("attr", "p".into()),
                    file(30, &["c"]),
                ]),
            );
        Metainfo::from_bytes(&V::dict().with("info", info).to_bytes())
            .unwrap()
            .info
    }

    #[test]
    fn creates_files_and_round_trips_pieces_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let info = info();
        let s = FileStorage::create(&info, dir.path(), 2).unwrap();
        let t = dir.path().join("t");
        assert_eq!(std::fs::metadata(t.join("sub/empty")).unwrap().len(), 0);
        assert_eq!(
            std::fs::metadata(t.join("sub/deep/b")).unwrap().len(),
            20000
        );
        assert!(!t.join(".pad").exists(), "padding files are not written");

        let total = info.total_length() as usize;
        let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        s.write(0, 0, &data[..16384]).unwrap();
        s.write(1, 0, &data[16384..]).unwrap();
        s.flush().unwrap();
        assert!(s.open_files() <= 2);

        let mut back = vec![0u8; total];
        s.read(0, 0, &mut back[..16384]).unwrap();
        s.read(1, 0, &mut back[16384..]).unwrap();
        // Padding reads as zeros, everything else as written.
        let pad = 10 + 20000..10 + 20000 + 5;
        for i in 0..total {
            let want = if pad.contains(&i) { 0 } else { data[i] };
            assert_eq!(back[i], want, "byte {i}");
        }
        assert_eq!(std::fs::read(t.join("a")).unwrap(), &data[..10]);
        assert_eq!(std::fs::read(t.join("c")).unwrap(), &data[total - 30..]);
        // Block reads inside a piece.
        let mut block = vec![0u8; 100];
        s.read(0, 5, &mut block).unwrap();
        assert_eq!(block, &data[5..105]);
    }

    #[test]
    fn blocks_written_at_once_land_like_single_writes() {
        // Uneven blocks whose joins and the files' boundaries (10, 10,
        // 20010, 20015 with padding) fall in different places: one
        // vectored write per file span, each gathering parts of blocks.
        let dir = tempfile::tempdir().unwrap();
        let info = info();
        let s = FileStorage::create(&info, dir.path(), 4).unwrap();
        let total = info.total_length() as usize;
        let data: Vec<u8> = (0..total).map(|i| (i % 241) as u8 ^ 0x5a).collect();
        let (p0, p1) = data.split_at(16384);
        let cuts = [0, 3, 7, 4000, 4001, 16000, 16384];
        let blocks: Vec<&[u8]> = cuts.windows(2).map(|w| &p0[w[0]..w[1]]).collect();
        s.write_blocks(0, 0, &blocks).unwrap();
        let (a, b) = p1.split_at(p1.len() - 33);
        s.write_blocks(1, 0, &[a, &[], b]).unwrap();
        let mut back = vec![0u8; total];
        s.read(0, 0, &mut back[..16384]).unwrap();
        s.read(1, 0, &mut back[16384..]).unwrap();
        let pad = 10 + 20000..10 + 20000 + 5;
        for i in 0..total {
            let want = if pad.contains(&i) { 0 } else { data[i] };
            assert_eq!(back[i], want, "byte {i}");
        }
        // Past the piece's end: refused, nothing written.
        let too_long = vec![1u8; 16385];
        assert!(matches!(
            s.write_blocks(0, 0, &[&too_long[..16384], &too_long[16384..]]),
            Err(StorageError::OutOfRange { .. })
        ));
    }

    #[test]
    fn out_of_range_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStorage::create(&info(), dir.path(), 4).unwrap();
        let mut buf = vec![0u8; 10];
        assert!(matches!(
            s.read(2, 0, &mut buf),
            Err(StorageError::OutOfRange { .. })
        ));
        assert!(matches!(
            s.read(1, 16380, &mut buf),
            Err(StorageError::OutOfRange { .. })
        ));
        assert!(matches!(
            s.write(u32::MAX, u32::MAX, &buf),
            Err(StorageError::OutOfRange { .. })
        ));
        let m = MemoryStorage::new(16384, 100);
        assert!(matches!(
            m.read(0, 95, &mut buf),
            Err(StorageError::OutOfRange { .. })
        ));
    }

    #[test]
    fn unwanted_files_are_not_created_and_their_shared_bytes_move_in_when_wanted() {
        let dir = tempfile::tempdir().unwrap();
        let info = info();
        let part = dir.path().join(".rivulet/x.parts");
        // Only `a` (file 0) is wanted. Piece 0 holds `a` and the start of
        // `b`; piece 1 the rest of `b`, padding, and `c`.
        let s = FileStorage::create_selected(&info, dir.path(), 4, &|i| i == 0, Some(part.clone()))
            .unwrap();
        let t = dir.path().join("t");
        assert_eq!(std::fs::metadata(t.join("a")).unwrap().len(), 10);
        assert!(!t.join("sub").exists(), "no folder for files not wanted");
        assert!(!t.join("c").exists());
        assert!(s.in_part_file(2) && s.in_part_file(4) && !s.in_part_file(0));
        let piece0: Vec<u8> = (0..16384u32).map(|i| (i % 251) as u8).collect();
        s.write(0, 0, &piece0).unwrap();
        let mut back = vec![0; 16384];
        s.read(0, 0, &mut back).unwrap();
        assert_eq!(back, piece0);
        assert_eq!(std::fs::read(t.join("a")).unwrap(), &piece0[..10]);
        assert!(!t.join("sub/deep/b").exists());
        // `b` becomes wanted: created, with the bytes piece 0 gave it.
        s.want_file(2).unwrap();
        let b = std::fs::read(t.join("sub/deep/b")).unwrap();
        assert_eq!(b.len(), 20000);
        assert_eq!(&b[..16374], &piece0[10..]);
        assert!(b[16374..].iter().all(|x| *x == 0));
        s.read(0, 0, &mut back).unwrap();
        assert_eq!(back, piece0);
        assert!(part.exists(), "`c` still keeps its bytes there");
        // Once no file is left in it, the part file goes.
        s.want_file(1).unwrap();
        s.want_file(4).unwrap();
        assert!(!part.exists());
        assert_eq!(std::fs::metadata(t.join("c")).unwrap().len(), 30);
        // A new storage over the same folder finds every file real.
        let again =
            FileStorage::create_selected(&info, dir.path(), 4, &|i| i == 0, Some(part.clone()))
                .unwrap();
        assert!(!again.in_part_file(2));
        again.read(0, 0, &mut back).unwrap();
        assert_eq!(back, piece0);
    }

    #[test]
    fn a_file_wanted_while_stopped_gets_its_bytes_from_the_part_file() {
        let dir = tempfile::tempdir().unwrap();
        let info = info();
        let part = dir.path().join("x.parts");
        let s = FileStorage::create_selected(&info, dir.path(), 4, &|i| i == 0, Some(part.clone()))
            .unwrap();
        let piece0 = vec![7u8; 16384];
        s.write(0, 0, &piece0).unwrap();
        s.flush().unwrap();
        drop(s);
        let s = FileStorage::create_selected(&info, dir.path(), 4, &|_| true, Some(part.clone()))
            .unwrap();
        let b = std::fs::read(dir.path().join("t/sub/deep/b")).unwrap();
        assert_eq!(&b[..16374], &piece0[10..]);
        assert!(!part.exists());
        let mut back = vec![0; 16384];
        s.read(0, 0, &mut back).unwrap();
        assert_eq!(back, piece0);
    }

    #[test]
    fn existing_data_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let info = info();
        let s = FileStorage::create(&info, dir.path(), 4).unwrap();
        s.write(0, 0, b"0123456789").unwrap();
        drop(s);
        let s = FileStorage::create(&info, dir.path(), 4).unwrap();
        let mut buf = [0u8; 10];
        s.read(0, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"0123456789");
    }

    #[test]
    fn read_only_storage_reads_and_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let info = info();
        let s = FileStorage::create(&info, dir.path(), 4).unwrap();
        s.write(0, 0, b"0123456789").unwrap();
        drop(s);
        let before = std::fs::metadata(dir.path().join("t/a")).unwrap();
        let ro = FileStorage::open_read_only(&info, dir.path(), 4);
        let mut buf = [0u8; 10];
        ro.read(0, 0, &mut buf).unwrap();
        assert_eq!(&buf, b"0123456789");
        let e = ro.write(0, 0, b"abcdefghij").unwrap_err();
        assert!(matches!(e, StorageError::ReadOnly { .. }), "{e}");
        ro.flush().unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("t/a")).unwrap(),
            b"0123456789"
        );
        let after = std::fs::metadata(dir.path().join("t/a")).unwrap();
        assert_eq!(before.modified().unwrap(), after.modified().unwrap());
        // Nothing is created for files that are not there.
        let empty = tempfile::tempdir().unwrap();
        let _ = FileStorage::open_read_only(&info, empty.path(), 4);
        assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    }

    #[test]
    fn unwritable_folder_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), b"a file where the folder must go").unwrap();
        let e = FileStorage::create(&info(), dir.path(), 4).unwrap_err();
        assert!(e.to_string().contains("t/"), "{e}");
    }

    #[test]
    fn links_point_relative_to_their_folder() {
        let v = |s: &str| s.split('/').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(relative_target(&v("t/ln"), &v("t/a")), Path::new("a"));
        assert_eq!(relative_target(&v("t/d/ln"), &v("t/a")), Path::new("../a"));
        assert_eq!(
            relative_target(&v("t/ln"), &v("t/d/e/a")),
            Path::new("d/e/a")
        );
        assert_eq!(
            relative_target(&v("t/x/y/ln"), &v("t/d")),
            Path::new("../../d")
        );
    }
}
