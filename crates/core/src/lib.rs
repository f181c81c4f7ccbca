//! Torrent basics: info-hashes, metainfo, file layout, magnet links, peer ids.
#![warn(clippy::indexing_slicing)]

pub mod info_hash;
pub use info_hash::InfoHash;
