//! The download engine: a session of torrents, each with its peer
//! connections, piece picker, storage, resume data and tracker announces,
//! on tokio.
//!
//! [`session::Session`] is the entry point: it owns what torrents share (peer
//! id, listener, tracker clients, read cache, connection limit), and each
//! torrent added to it is driven through a [`session::TorrentHandle`]
//! (pause, resume, remove, snapshots). Under it, [`download::Download`] runs
//! one torrent (also alone, as the tests do): it checks what is on disk
//! (trusting [`resume`] data where files are unchanged), then runs the
//! connector ([`connector`]), the peer tasks ([`peer`]), the tracker tiers
//! ([`announce`]) and periodic resume saves until every piece is verified and
//! written. [`picker`] and the codecs below are pure; [`storage`] does
//! positioned file I/O; [`folder`] locks a torrent's data folder and says
//! where its resume data goes. [`scrape`] asks trackers for swarm counts.
//! The same peer tasks serve pieces (the [`choker`] hands out upload slots),
//! and a [`listener`] takes incoming connections, over TCP or [`utp`]
//! (on the session's UDP port, shared with the [`dht`]), plain or
//! encrypted ([`encryption`]); [`stats`] holds the
//! counters a display reads. `STATE.md` beside this crate describes piece
//! and peer states and the locking rules.
//! Dependency direction: `cli -> engine -> {wire, tracker} -> core -> bencode`.

pub mod announce;
pub mod cache;
pub mod choker;
pub mod connector;
pub mod connlimit;
pub mod dht;
pub mod download;
pub mod encryption;
pub mod folder;
pub mod listener;
pub mod lsd;
pub mod metadata;
pub mod peer;
pub mod picker;
pub mod ratelimit;
pub mod resume;
pub mod scrape;
pub mod session;
pub mod stats;
pub mod storage;
pub mod torrent;
mod udp_port;
mod udp_socket;
pub mod utp;
