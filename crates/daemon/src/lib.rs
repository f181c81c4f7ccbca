//! The rivulet daemon: one session with any number of torrents, kept in a
//! state folder across restarts and crashes, driven over an HTTP API.
//!
//! - [`store`]: what is kept of each torrent, crash-safely;
//! - [`service`]: the [`Daemon`], the session and its torrents;
//! - [`api`]: the HTTP API on a [`Daemon`], with its token and `Host`
//!   checks;
//! - [`token`]: the API token in the state folder;
//! - [`view`]: the JSON the API answers with.

pub mod api;
pub mod service;
pub mod store;
pub mod token;
pub mod view;

pub use service::{AddRequest, Daemon, DaemonError, DaemonOptions, FileChange, TorrentChange};

use rivulet_core::InfoHash;

/// The API's default port (on 127.0.0.1).
pub const DEFAULT_API_PORT: u16 = 6880;

/// A torrent id: the v1 info-hash as 40 hex digits (any case).
pub fn parse_id(text: &str) -> Option<InfoHash> {
    let mut out = [0u8; 20];
    (text.len() == 40)
        .then(|| hex::decode_to_slice(text, &mut out).ok())
        .flatten()
        .map(|()| InfoHash(out))
}
