//! A torrent built in memory with real SHA-1 hashes of deterministic data
//! ([`Fixture`]), its blocks as a downloader requests them, and a timeout
//! that only fails the test ([`within`]).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rivulet_bencode::OwnedValue;
use rivulet_core::{InfoHash, Metainfo};
use rivulet_wire::{Bitfield, BlockRequest, Message};
use sha1::{Digest, Sha1};

/// Bytes per piece of the default fixture.
pub const PIECE_LEN: u32 = 32 * 1024;
/// Bytes per request.
pub const BLOCK: u32 = 16 * 1024;
/// Pieces in the default fixture.
pub const PIECES: usize = 20;
/// Size of the default fixture: 19 full pieces and a last one of 20,000
/// bytes (one full block and one of 3,616 bytes).
pub const TOTAL: usize = (PIECES - 1) * PIECE_LEN as usize + 20_000;

/// A torrent built in memory, with its data.
pub struct Fixture {
    /// The torrent.
    pub metainfo: Metainfo,
    /// Its content, every file in torrent order.
    pub data: Vec<u8>,
    /// Bytes per piece.
    pub piece_length: u32,
}

impl Fixture {
    /// The default fixture (`PIECES` pieces of `PIECE_LEN`, `TOTAL` bytes)
    /// in one file, of deterministic data drawn from `seed`.
    pub fn single(seed: u64) -> Arc<Fixture> {
        Fixture::build(seed, &[])
    }

    /// A single-file torrent (`data.bin`) of `total` bytes in pieces of
    /// `piece_length`.
    pub fn sized(seed: u64, piece_length: u32, total: usize) -> Arc<Fixture> {
        Fixture::make(seed, piece_length, total, &[], None)
    }

    /// As [`Fixture::sized`], with `announce` as its tracker (or none).
    pub fn announced(
        seed: u64,
        piece_length: u32,
        total: usize,
        announce: Option<&str>,
    ) -> Arc<Fixture> {
        Fixture::make(seed, piece_length, total, &[], announce)
    }

    /// The default fixture, in one file `data.bin` when `files` is empty,
    /// else in these files (path, length) under a `multi` folder.
    pub fn build(seed: u64, files: &[(&[&str], usize)]) -> Arc<Fixture> {
        let fx = Fixture::make(seed, PIECE_LEN, TOTAL, files, None);
        assert_eq!(fx.num_pieces(), PIECES);
        fx
    }

    fn make(
        seed: u64,
        piece_length: u32,
        total: usize,
        files: &[(&[&str], usize)],
        announce: Option<&str>,
    ) -> Arc<Self> {
        let mut data = vec![0u8; total];
        StdRng::seed_from_u64(seed).fill_bytes(&mut data);
        let pieces: Vec<u8> = data
            .chunks(piece_length as usize)
            .flat_map(|p| Sha1::digest(p).to_vec())
            .collect();
        let mut info = OwnedValue::dict()
            .with("piece length", OwnedValue::Int(i64::from(piece_length)))
            .with("pieces", OwnedValue::Bytes(pieces));
        if files.is_empty() {
            info = info
                .with("name", OwnedValue::str("data.bin"))
                .with("length", OwnedValue::Int(total as i64));
        } else {
            assert_eq!(files.iter().map(|f| f.1).sum::<usize>(), total);
            let list = files
                .iter()
                .map(|(path, len)| {
                    OwnedValue::dict()
                        .with("length", OwnedValue::Int(*len as i64))
                        .with(
                            "path",
                            OwnedValue::List(path.iter().map(|c| OwnedValue::str(c)).collect()),
                        )
                })
                .collect();
            info = info
                .with("name", OwnedValue::str("multi"))
                .with("files", OwnedValue::List(list));
        }
        let mut torrent = OwnedValue::dict().with("info", info);
        if let Some(url) = announce {
            torrent = torrent.with("announce", OwnedValue::str(url));
        }
        let torrent = torrent.to_bytes();
        let metainfo = Metainfo::from_bytes(&torrent).unwrap();
        assert_eq!(
            metainfo.info.num_pieces(),
            total.div_ceil(piece_length as usize)
        );
        Arc::new(Fixture {
            metainfo,
            data,
            piece_length,
        })
    }

    /// A fixture for a torrent made elsewhere (by libtorrent, say): its
    /// `.torrent` file and its content, every file in torrent order.
    pub fn from_torrent(torrent: &[u8], data: Vec<u8>) -> Arc<Fixture> {
        let metainfo = Metainfo::from_bytes(torrent).unwrap();
        assert_eq!(metainfo.info.total_length(), data.len() as u64, "content");
        let piece_length = u32::try_from(metainfo.info.piece_length).unwrap();
        Arc::new(Fixture {
            metainfo,
            data,
            piece_length,
        })
    }

    /// The torrent's info-hash.
    pub fn info_hash(&self) -> InfoHash {
        self.metainfo.info_hash
    }

    /// How many pieces it has.
    pub fn num_pieces(&self) -> usize {
        self.metainfo.info.num_pieces()
    }

    /// The length of `piece` (the last one may be short).
    pub fn piece_len(&self, piece: u32) -> u32 {
        let start = piece as usize * self.piece_length as usize;
        (self.data.len() - start).min(self.piece_length as usize) as u32
    }

    /// Every block of the torrent, as a downloader should request them.
    pub fn all_blocks(&self) -> Vec<BlockRequest> {
        (0..self.num_pieces() as u32)
            .flat_map(|p| self.blocks_of(p))
            .collect()
    }

    /// The blocks of `piece`, as a downloader should request them.
    pub fn blocks_of(&self, piece: u32) -> Vec<BlockRequest> {
        let len = self.piece_len(piece);
        (0..len.div_ceil(BLOCK))
            .map(|i| BlockRequest {
                piece,
                offset: i * BLOCK,
                length: (len - i * BLOCK).min(BLOCK),
            })
            .collect()
    }

    /// The data of a request, if it is exactly one of the torrent's blocks:
    /// 16 KiB at a multiple of 16 KiB inside a piece, or the short last
    /// block of a piece.
    pub fn block(&self, r: &BlockRequest) -> Option<&[u8]> {
        if r.piece as usize >= self.num_pieces() || !self.blocks_of(r.piece).contains(r) {
            return None;
        }
        self.range(r)
    }

    /// The data of any request inside one piece (aligned or not), if it is
    /// inside the torrent.
    pub fn range(&self, r: &BlockRequest) -> Option<&[u8]> {
        if r.piece as usize >= self.num_pieces()
            || u64::from(r.offset) + u64::from(r.length) > u64::from(self.piece_len(r.piece))
        {
            return None;
        }
        let start = r.piece as usize * self.piece_length as usize + r.offset as usize;
        self.data.get(start..start + r.length as usize)
    }

    /// Writes the torrent's files into `dir`, as a complete download would
    /// have left them.
    pub fn write_to(&self, dir: &Path) {
        let mut at = 0usize;
        for f in &self.metainfo.info.files {
            let path = dir.join(f.relative_path());
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            let len = f.length as usize;
            std::fs::write(&path, &self.data[at..at + len]).unwrap();
            at += len;
        }
    }

    /// What a download left in `dir`, every file in torrent order.
    pub fn read_back(&self, dir: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        for f in &self.metainfo.info.files {
            out.extend(std::fs::read(dir.join(f.relative_path())).unwrap());
        }
        out
    }

    /// Asserts the files in `dir` hold exactly the torrent's data.
    pub fn assert_files(&self, dir: &Path) {
        let got = self.read_back(dir);
        assert_eq!(got.len(), self.data.len(), "downloaded size");
        if let Some(i) = got.iter().zip(&self.data).position(|(a, b)| a != b) {
            panic!("downloaded data differs at byte {i}");
        }
    }
}

/// Every piece of the default fixture.
pub fn all() -> Vec<bool> {
    vec![true; PIECES]
}

/// A `bitfield` message with the pieces `have` marks.
pub fn bitfield(have: &[bool]) -> Message {
    let mut bits = Bitfield::new(have.len());
    for (i, h) in have.iter().enumerate() {
        if *h {
            bits.set(i);
        }
    }
    Message::bitfield(&bits)
}

/// `f`, or a failed test after `limit`.
pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {limit:?}"))
}
