//! The read cache for seeding: recently read chunks of pieces we have.
//!
//! Peers ask for 16 KiB blocks, usually a piece's blocks in order, and often
//! several peers want the same rare piece. Reading a 256 KiB chunk with one
//! positioned read and keeping it lets the next fifteen requests (from this
//! peer or another) be answered without touching the disk or the blocking
//! pool. Chunks are immutable once read (a piece we have never changes), so
//! they are shared as [`Bytes`] and evicted least recently used first, within
//! a byte budget.
//!
//! One cache serves every torrent of a session: chunks are keyed by a
//! torrent key as well ([`TorrentKey`]), so two torrents never see each
//! other's data, and [`ReadCache::forget`] drops a torrent's chunks when it
//! stops. A torrent reaches the cache through a [`TorrentCache`], a view
//! that adds its key to every lookup.

use std::collections::HashMap;
use std::sync::{Arc, LockResult, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};

/// Bytes read at once: 16 blocks. A multiple of the block size, so a
/// block-aligned request never straddles two chunks.
pub const CHUNK_LEN: u32 = 256 * 1024;

/// Which chunk: piece index and chunk number within the piece.
pub type ChunkKey = (u32, u32);

/// Which torrent of a session a chunk belongs to (handed out by the
/// session, unique within it).
pub type TorrentKey = u64;

/// A least-recently-used cache of piece chunks, bounded in bytes.
#[derive(Debug)]
pub struct ReadCache {
    capacity: usize,
    used: usize,
    clock: u64,
    chunks: HashMap<(TorrentKey, ChunkKey), (Bytes, u64)>,
    hits: u64,
    misses: u64,
    /// Buffers of evicted chunks nobody else held, for the next reads: reusing
    /// them saves zeroing a fresh buffer for every read.
    spare: Vec<BytesMut>,
}

/// Spare buffers kept.
const SPARE_BUFFERS: usize = 8;

impl ReadCache {
    /// An empty cache holding at most `capacity` bytes (at least one chunk is
    /// always kept, whatever the capacity).
    pub fn new(capacity: usize) -> Self {
        ReadCache {
            capacity,
            used: 0,
            clock: 0,
            chunks: HashMap::new(),
            hits: 0,
            misses: 0,
            spare: Vec::new(),
        }
    }

    /// The chunk holding `begin` within its piece, and where `begin` falls in it.
    pub fn locate(piece: u32, begin: u32) -> (ChunkKey, u32) {
        ((piece, begin / CHUNK_LEN), begin % CHUNK_LEN)
    }

    /// The bytes `begin..begin + len` of `piece` of `torrent`, if the chunk
    /// holding them is cached and covers them.
    pub fn get(&mut self, torrent: TorrentKey, piece: u32, begin: u32, len: u32) -> Option<Bytes> {
        let (key, offset) = Self::locate(piece, begin);
        let key = (torrent, key);
        self.clock += 1;
        let clock = self.clock;
        let found = self.chunks.get_mut(&key).and_then(|(data, used)| {
            let end = offset as usize + len as usize;
            (end <= data.len()).then(|| {
                *used = clock;
                data.slice(offset as usize..end)
            })
        });
        if found.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        found
    }

    /// Adds a chunk of `torrent`, evicting the least recently used ones
    /// beyond capacity.
    pub fn insert(&mut self, torrent: TorrentKey, key: ChunkKey, data: Bytes) {
        let key = (torrent, key);
        self.clock += 1;
        let len = data.len();
        if let Some((old, _)) = self.chunks.insert(key, (data, self.clock)) {
            self.used -= old.len();
        }
        self.used += len;
        while self.used > self.capacity && self.chunks.len() > 1 {
            let Some(oldest) = self
                .chunks
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((old, _)) = self.chunks.remove(&oldest) {
                self.used -= old.len();
                self.recycle(old);
            }
        }
    }

    /// A buffer of exactly `len` bytes to read a chunk into: a recycled one
    /// if there is one big enough (its old contents are overwritten by the
    /// read), else a new zeroed one.
    pub fn buffer(&mut self, len: usize) -> BytesMut {
        match self.spare.iter().position(|b| b.len() >= len) {
            Some(i) => {
                let mut b = self.spare.swap_remove(i);
                b.truncate(len);
                b
            }
            None => BytesMut::zeroed(len),
        }
    }

    /// Drops every chunk of `torrent` (it stopped, or left the session).
    pub fn forget(&mut self, torrent: TorrentKey) {
        let gone: Vec<_> = self
            .chunks
            .keys()
            .filter(|(t, _)| *t == torrent)
            .copied()
            .collect();
        for key in gone {
            if let Some((old, _)) = self.chunks.remove(&key) {
                self.used -= old.len();
                self.recycle(old);
            }
        }
    }

    fn recycle(&mut self, chunk: Bytes) {
        if self.spare.len() < SPARE_BUFFERS {
            // Only when no peer still holds a slice of it.
            if let Ok(buf) = chunk.try_into_mut() {
                self.spare.push(buf);
            }
        }
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Lookups answered from the cache, and lookups that were not.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

/// One torrent's view of a (possibly shared) [`ReadCache`]: every lookup
/// and insertion is for its own chunks.
#[derive(Debug, Clone)]
pub struct TorrentCache {
    cache: Arc<Mutex<ReadCache>>,
    torrent: TorrentKey,
}

impl TorrentCache {
    /// The view of `cache` for `torrent`.
    pub fn new(cache: Arc<Mutex<ReadCache>>, torrent: TorrentKey) -> Self {
        TorrentCache { cache, torrent }
    }

    /// A private cache of `capacity` bytes, for a torrent outside a session.
    pub fn private(capacity: usize) -> Self {
        TorrentCache::new(Arc::new(Mutex::new(ReadCache::new(capacity))), 0)
    }

    /// Locks the cache (a leaf lock: nothing else is taken while it is
    /// held). Like `Mutex::lock`, a poisoned lock still yields the guard
    /// through the error.
    pub fn lock(&self) -> LockResult<CacheGuard<'_>> {
        let torrent = self.torrent;
        match self.cache.lock() {
            Ok(guard) => Ok(CacheGuard { guard, torrent }),
            Err(poisoned) => Err(PoisonError::new(CacheGuard {
                guard: poisoned.into_inner(),
                torrent,
            })),
        }
    }

    /// Drops this torrent's chunks.
    pub fn forget(&self) {
        let mut guard = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        guard.forget(self.torrent);
    }
}

/// The locked cache, seen by one torrent.
#[derive(Debug)]
pub struct CacheGuard<'a> {
    guard: MutexGuard<'a, ReadCache>,
    torrent: TorrentKey,
}

impl CacheGuard<'_> {
    /// [`ReadCache::get`] for this torrent.
    pub fn get(&mut self, piece: u32, begin: u32, len: u32) -> Option<Bytes> {
        self.guard.get(self.torrent, piece, begin, len)
    }

    /// [`ReadCache::insert`] for this torrent.
    pub fn insert(&mut self, key: ChunkKey, data: Bytes) {
        self.guard.insert(self.torrent, key, data);
    }

    /// [`ReadCache::buffer`].
    pub fn buffer(&mut self, len: usize) -> BytesMut {
        self.guard.buffer(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(fill: u8, len: usize) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    #[test]
    fn blocks_are_slices_of_their_chunk() {
        let mut c = ReadCache::new(1 << 20);
        let mut data = vec![0u8; CHUNK_LEN as usize];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i / 16384) as u8;
        }
        c.insert(0, (3, 1), Bytes::from(data));
        // Block 2 of chunk 1 of piece 3.
        let b = c.get(0, 3, CHUNK_LEN + 2 * 16384, 16384).unwrap();
        assert!(b.iter().all(|x| *x == 2));
        assert!(c.get(0, 3, 0, 16384).is_none(), "chunk 0 was never read");
        assert!(c.get(0, 4, CHUNK_LEN, 16384).is_none(), "other piece");
        assert_eq!(c.hits_and_misses(), (1, 2));
    }

    #[test]
    fn short_last_chunk_does_not_answer_past_its_end() {
        let mut c = ReadCache::new(1 << 20);
        c.insert(0, (0, 0), chunk(1, 20000));
        assert!(c.get(0, 0, 16384, 3616).is_some());
        assert!(c.get(0, 0, 16384, 16384).is_none());
    }

    #[test]
    fn evicts_least_recently_used_within_capacity() {
        let len = CHUNK_LEN as usize;
        let mut c = ReadCache::new(3 * len);
        c.insert(0, (0, 0), chunk(0, len));
        c.insert(0, (1, 0), chunk(1, len));
        c.insert(0, (2, 0), chunk(2, len));
        // Touch piece 0 so that piece 1 is the oldest.
        assert!(c.get(0, 0, 0, 16384).is_some());
        c.insert(0, (3, 0), chunk(3, len));
        assert_eq!(c.used(), 3 * len);
        assert!(c.get(0, 1, 0, 16384).is_none());
        assert!(c.get(0, 0, 0, 16384).is_some());
        assert!(c.get(0, 3, 0, 16384).is_some());
    }

    #[test]
    fn evicted_buffers_are_reused_unless_still_shared() {
        let len = CHUNK_LEN as usize;
        let mut c = ReadCache::new(len);
        c.insert(0, (0, 0), chunk(1, len));
        let held = c.get(0, 0, 0, 16384).unwrap();
        c.insert(0, (1, 0), chunk(2, len));
        // Chunk 0 was evicted while a slice of it is held: not recycled.
        assert_eq!(c.buffer(len).iter().filter(|b| **b != 0).count(), 0);
        drop(held);
        c.insert(0, (2, 0), chunk(3, len));
        // Chunk 1 was evicted unshared: its buffer comes back, cut to size.
        let b = c.buffer(1000);
        assert_eq!(b.len(), 1000);
        assert!(b.iter().all(|x| *x == 2));
    }

    #[test]
    fn keeps_one_chunk_even_when_over_capacity() {
        let mut c = ReadCache::new(10);
        c.insert(0, (0, 0), chunk(7, 100));
        assert!(c.get(0, 0, 0, 100).is_some());
        c.insert(0, (1, 0), chunk(8, 100));
        assert!(c.get(0, 0, 0, 100).is_none());
        assert!(c.get(0, 1, 0, 100).is_some());
        assert_eq!(c.used(), 100);
    }

    /// Two torrents of one session never see each other's chunks, and a
    /// torrent's chunks go when it is forgotten.
    #[test]
    fn torrents_do_not_share_chunks() {
        let cache = Arc::new(Mutex::new(ReadCache::new(1 << 20)));
        let (a, b) = (
            TorrentCache::new(Arc::clone(&cache), 1),
            TorrentCache::new(Arc::clone(&cache), 2),
        );
        a.lock().unwrap().insert((0, 0), chunk(1, 16384));
        assert!(b.lock().unwrap().get(0, 0, 16384).is_none());
        b.lock().unwrap().insert((0, 0), chunk(2, 16384));
        assert!(a
            .lock()
            .unwrap()
            .get(0, 0, 16384)
            .unwrap()
            .iter()
            .all(|x| *x == 1));
        assert!(b
            .lock()
            .unwrap()
            .get(0, 0, 16384)
            .unwrap()
            .iter()
            .all(|x| *x == 2));
        a.forget();
        assert!(a.lock().unwrap().get(0, 0, 16384).is_none());
        assert!(b.lock().unwrap().get(0, 0, 16384).is_some());
        assert_eq!(cache.lock().unwrap().used(), 16384);
    }
}
