//! What the API answers, as JSON: the daemon serializes these, the command
//! line reads them back.

use serde::{Deserialize, Serialize};

/// One torrent, as `GET /api/v1/torrents` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TorrentView {
    /// Its v1 info-hash, lowercase hex.
    pub id: String,
    /// Its name (the magnet link's `dn`, or the id, before the metadata).
    pub name: String,
    /// `fetching_metadata`, `checking`, `downloading`, `queued` (waiting
    /// for its turn to download), `seeding`, `paused` or `error`.
    pub state: String,
    /// Verified bytes of the files wanted over their size, 0.0 to 1.0 (0
    /// before the metadata): 1.0 once every file wanted is complete.
    pub progress: f64,
    /// Bytes of the pieces of the files wanted (`size` unless files are
    /// skipped).
    pub size_wanted: u64,
    /// Verified bytes of those pieces.
    pub have_wanted: u64,
    /// Bytes in the torrent (0 before the metadata).
    pub size: u64,
    /// Verified bytes.
    pub have: u64,
    /// Payload bytes received that we needed, since it was added (kept
    /// across restarts; a crash loses at most the last minute).
    pub downloaded: u64,
    /// Payload bytes sent, since it was added (likewise).
    pub uploaded: u64,
    /// Bytes per second received, over the last few seconds.
    pub down_rate: u64,
    /// Bytes per second sent, likewise.
    pub up_rate: u64,
    /// Peers connected.
    pub peers: usize,
    /// Connected peers that have every piece.
    pub seeds: usize,
    /// Seconds until complete at the current rate; null when unknown (or
    /// complete).
    pub eta: Option<u64>,
    /// Uploaded over downloaded (over the size once complete, when nothing
    /// was downloaded in this run).
    pub ratio: f64,
    /// When it was added, in seconds since the Unix epoch.
    pub added: u64,
    /// Where its data goes.
    pub download_dir: String,
    /// Why it stopped, in the `error` state.
    pub error: Option<String>,
    /// Stopped (`paused`) after reaching its seeding goal; a resume seeds
    /// again.
    pub finished: bool,
}

/// One file of a torrent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileView {
    /// Its path within the download folder.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Bytes of it in verified pieces over its size, 0.0 to 1.0 (1.0 for
    /// an empty file).
    pub progress: f64,
    /// Its index in the torrent (what `files` of a `PATCH` names).
    pub index: usize,
    /// Downloaded (priority above 0).
    pub wanted: bool,
    /// 0 (not wanted), 1 (lowest) to 7 (highest); 4 is normal.
    pub priority: u8,
}

/// One tracker of a torrent, with its last announce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerView {
    /// Its announce URL.
    pub url: String,
    /// Its tier (BEP 12), from 0: every tier is announced to, the trackers
    /// of a tier one after another.
    pub tier: usize,
    /// `working` or `failed`.
    pub status: String,
    /// When it was last announced to, in seconds since the Unix epoch.
    pub last_announce: u64,
    /// Peers in its last answer.
    pub peers: Option<usize>,
    /// Why the last announce failed.
    pub error: Option<String>,
}

/// One connected peer of a torrent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    /// Its address, `IP:PORT`.
    pub address: String,
    /// The client its peer id names, when known.
    pub client: Option<String>,
    /// It connected to us.
    pub incoming: bool,
    /// The connection began with the MSE/PE handshake.
    pub mse: bool,
    /// The connection runs over uTP.
    pub utp: bool,
    /// It has every piece.
    pub seed: bool,
    /// Payload bytes received from it that we needed.
    pub downloaded: u64,
    /// Payload bytes sent to it.
    pub uploaded: u64,
    /// Bytes per second received from it (over about ten seconds).
    pub down_rate: u64,
    /// Bytes per second sent to it, likewise.
    pub up_rate: u64,
    /// The share of the pieces it has, 0.0 to 1.0.
    pub progress: f64,
    /// Seconds connected.
    pub connected_secs: u64,
}

/// One torrent with its files and trackers: `GET /api/v1/torrents/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TorrentDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub torrent: TorrentView,
    /// Its own limit on bytes per second received (0: none).
    pub download_limit: u64,
    /// Its own limit on bytes per second sent (0: none).
    pub upload_limit: u64,
    /// Its own seeding goal: the ratio (`None`: the session's).
    pub seed_ratio: Option<f64>,
    /// Its own seeding goal: seconds (`None`: the session's).
    pub seed_time: Option<u64>,
    /// It seeds whatever the goals.
    pub seed_forever: bool,
    /// Seconds it has seeded, over every run.
    pub seeded: u64,
    /// Pieces in the torrent (0 before the metadata).
    pub pieces: usize,
    /// Verified pieces.
    pub pieces_have: u64,
    /// Its files (none before the metadata).
    pub files: Vec<FileView>,
    /// Its trackers announced to so far.
    pub trackers: Vec<TrackerView>,
    /// Its connected peers (`peers` is their number, from the list's
    /// fields).
    pub peer_list: Vec<PeerView>,
    /// How many connected peers have each piece, by index (empty when not
    /// running).
    pub availability: Vec<u32>,
    /// Peers known (from trackers, the DHT, PEX), connected or not.
    pub peers_known: usize,
    /// Connected peers that connected to us.
    pub peers_incoming: usize,
    /// Peers banned for sending bad data.
    pub peers_banned: usize,
    /// Pieces that failed their hash check.
    pub hash_failures: u64,
}

/// The answer to an add.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddReply {
    /// False when the torrent was already there (nothing was changed).
    pub created: bool,
    /// The torrent.
    pub torrent: TorrentView,
}

/// The whole session: `GET /api/v1/session`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    /// rivulet's version.
    pub version: String,
    /// Torrents in the daemon.
    pub torrents: usize,
    /// Bytes per second received, all torrents.
    pub down_rate: u64,
    /// Bytes per second sent, all torrents.
    pub up_rate: u64,
    /// Payload bytes received since the daemon started.
    pub downloaded: u64,
    /// Payload bytes sent since the daemon started.
    pub uploaded: u64,
    /// The port peers connect to.
    pub port: u16,
    /// Limit on bytes per second received by all torrents (0: none).
    pub download_limit: u64,
    /// Limit on bytes per second sent by all torrents (0: none).
    pub upload_limit: u64,
    /// Most torrents downloading at once (0: no limit); the others are
    /// `queued`.
    pub max_active_downloads: usize,
    /// Most peer connections open at once, all torrents together.
    pub max_connections: usize,
    /// Peer connections open now.
    pub connections: usize,
    /// Seeding goal of torrents without their own: the ratio.
    pub seed_ratio: Option<f64>,
    /// Seeding goal of torrents without their own: seconds.
    pub seed_time: Option<u64>,
    /// Nodes in the DHT routing table; null without the DHT.
    pub dht_nodes: Option<usize>,
}

/// An error, with the status code it came with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorView {
    /// What went wrong, for a person.
    pub error: String,
}
