//! The download and seeding engine: sessions, torrents, peer connections, the
//! piece picker, the choker and storage.
//!
//! So far it holds the piece picker ([`picker`]), storage ([`storage`]) and resume data
//! ([`resume`]); peer connections, storage and
//! the session land with the download issue (issue 3). Dependency direction:
//! `cli -> engine -> {wire, tracker} -> core -> bencode`.

pub mod announce;
pub mod download;
pub mod peer;
pub mod picker;
pub mod resume;
pub mod storage;
pub mod torrent;
