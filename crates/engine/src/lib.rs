//! The download and seeding engine: sessions, torrents, peer connections, the
//! piece picker, the choker and storage.
//!
//! Empty for now: the engine lands with the download issue (issue 3). The crate
//! exists so that the workspace has its final shape and dependency direction
//! (`cli -> engine -> {wire, tracker} -> core -> bencode`).
