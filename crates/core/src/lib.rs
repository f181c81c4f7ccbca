//! Torrent basics that need no network: info-hashes, .torrent metainfo, the
//! piece/file layout, magnet links, peer ids, and creating and checking torrents.
//!
//! ```
//! use rivulet_core::Metainfo;
//!
//! let torrent = b"d4:infod6:lengthi5e4:name5:a.txt12:piece lengthi16384e\
//!                 6:pieces20:aaaaaaaaaaaaaaaaaaaaee";
//! let m = Metainfo::from_bytes(torrent).unwrap();
//! assert_eq!(m.info.name, "a.txt");
//! assert_eq!(m.info.total_length(), 5);
//! assert_eq!(m.info_hash.to_hex().len(), 40);
//! ```
#![warn(clippy::indexing_slicing)]

pub mod create;
pub mod info_hash;
pub mod layout;
pub mod magnet;
pub mod metainfo;
pub mod peer_id;
pub mod piece_io;
pub mod sanitize;

pub use info_hash::{InfoHash, InfoHashV2};
pub use layout::{FileLayout, FileSpan};
pub use magnet::Magnet;
pub use metainfo::{FileEntry, Info, Metainfo, MetainfoError};
pub use peer_id::PeerId;
