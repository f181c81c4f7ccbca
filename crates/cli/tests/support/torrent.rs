//! `.torrent` files made by libtorrent (`tests/interop/lt_peer.py make`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use super::{interop_dir, require_libtorrent, PYTHON};

/// How to make a torrent with [`make_torrent_with`].
#[derive(Debug, Clone)]
pub struct TorrentOptions {
    /// Announce URLs, one tier each, in order.
    pub trackers: Vec<String>,
    /// Piece length in bytes (a multiple of 16 KiB; a power of two if hybrid).
    pub piece_len: u32,
    /// Hybrid v1+v2 (with padding files) instead of v1 only.
    pub hybrid: bool,
    /// Set the private flag.
    pub private: bool,
    /// Where to write the torrent; default: `<content>.torrent` next to the
    /// content (`dir/name` → `dir/name.torrent`).
    pub out: Option<PathBuf>,
}

impl TorrentOptions {
    /// v1-only, no tracker, not private, `piece_len` bytes per piece.
    pub fn new(piece_len: u32) -> TorrentOptions {
        TorrentOptions {
            trackers: Vec::new(),
            piece_len,
            hybrid: false,
            private: false,
            out: None,
        }
    }

    /// Adds a tracker tier.
    pub fn tracker(mut self, url: &str) -> TorrentOptions {
        self.trackers.push(url.to_owned());
        self
    }

    /// Makes a hybrid v1+v2 torrent.
    pub fn hybrid(mut self) -> TorrentOptions {
        self.hybrid = true;
        self
    }

    /// Writes the torrent to `out`.
    pub fn out(mut self, out: &Path) -> TorrentOptions {
        self.out = Some(out.to_path_buf());
        self
    }
}

/// One file of a made torrent, as libtorrent lays it out.
#[derive(Debug, Clone, Deserialize)]
pub struct TorrentFile {
    /// Path inside the torrent, starting with the torrent's name for
    /// multi-file torrents, `/`-separated.
    pub path: String,
    /// Length in bytes.
    pub size: u64,
    /// Offset in the torrent's byte stream.
    pub offset: u64,
    /// A padding file (hybrid torrents).
    pub padding: bool,
}

/// What [`make_torrent_with`] made.
#[derive(Debug, Clone, Deserialize)]
pub struct MadeTorrent {
    /// The `.torrent` file.
    #[serde(skip)]
    pub path: PathBuf,
    /// The v1 info-hash, 40 lowercase hex digits.
    pub info_hash_v1: String,
    /// Whether it also has a v2 info-hash.
    pub has_v2: bool,
    /// The torrent's name.
    pub name: String,
    /// Total length, padding included.
    pub total_size: u64,
    /// Piece length.
    pub piece_length: u64,
    /// Number of pieces.
    pub num_pieces: u64,
    /// Files, padding included.
    pub files: Vec<TorrentFile>,
    /// The largest number of non-empty real files that one piece overlaps.
    pub max_files_per_piece: u64,
}

/// Makes a v1-only torrent of `content` (file or folder) with libtorrent,
/// announcing to `tracker_url` if given, and writes it next to the content
/// (`dir/name` → `dir/name.torrent`). Returns the torrent's path and its v1
/// info-hash in hex.
pub fn make_torrent(
    content: &Path,
    tracker_url: Option<&str>,
    piece_len: u32,
) -> (PathBuf, String) {
    let mut opts = TorrentOptions::new(piece_len);
    if let Some(url) = tracker_url {
        opts = opts.tracker(url);
    }
    let t = make_torrent_with(content, &opts);
    (t.path, t.info_hash_v1)
}

/// Makes a torrent of `content` with libtorrent as `opts` says.
pub fn make_torrent_with(content: &Path, opts: &TorrentOptions) -> MadeTorrent {
    require_libtorrent();
    let out = opts.out.clone().unwrap_or_else(|| {
        let mut name = content
            .file_name()
            .expect("content has a file name")
            .to_os_string();
        name.push(".torrent");
        content.with_file_name(name)
    });
    let mut cmd = Command::new(PYTHON);
    cmd.arg(interop_dir().join("lt_peer.py"))
        .arg("make")
        .arg(content)
        .arg(&out)
        .arg(opts.piece_len.to_string());
    if opts.hybrid {
        cmd.arg("--hybrid");
    }
    if opts.private {
        cmd.arg("--private");
    }
    for t in &opts.trackers {
        cmd.arg("--tracker").arg(t);
    }
    let o = cmd.output().expect("run lt_peer.py make");
    assert!(
        o.status.success(),
        "`{}` failed ({}):\n{}{}",
        super::command_line(&cmd),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let mut made: MadeTorrent = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "lt_peer.py make printed something unexpected ({e}):\n{}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    made.path = out;
    made
}
