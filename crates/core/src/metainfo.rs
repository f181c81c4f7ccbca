//! .torrent files: v1 (BEP 3), hybrid v1+v2 and v2-only (BEP 52), with the
//! fields of BEP 5 (`nodes`), BEP 12 (`announce-list`), BEP 19 (`url-list`),
//! BEP 27 (`private`) and BEP 47 (padding files, symlinks, attributes).
//!
//! Everything in a .torrent is untrusted. What libtorrent 2.0 loads, we load
//! the same way: odd names and paths are made safe ([`crate::sanitize`]) rather
//! than refused, so nothing can land outside the download folder, and the
//! info-hash (over the original bytes) never changes. What libtorrent refuses
//! as broken, we refuse with a message that says why: a hybrid torrent whose v1
//! and v2 file lists disagree could show different content to v1 and v2 peers.

use std::collections::HashSet;

use rivulet_bencode::{self as bencode, Value};

use crate::layout::FileLayout;
use crate::sanitize;
use crate::{InfoHash, InfoHashV2};

/// Largest piece length accepted: libtorrent's limit (`INT_MAX / 2`, just
/// under 1 GiB). Whether a piece that large can be downloaded is the
/// engine's business; parsing and `info` must not refuse such torrents.
pub const MAX_PIECE_LENGTH: u64 = (i32::MAX / 2) as u64;

/// Deepest folder nesting of a v2 `file tree` (libtorrent's limit).
const MAX_TREE_DEPTH: usize = 100;

/// Most pieces a torrent may have: libtorrent's default limit (2^21),
/// which bounds the piece hashes held in memory to 40 MiB.
pub const MAX_PIECES: u64 = 0x20_0000;

/// A file this long or longer is refused, as libtorrent refuses it (its
/// block indices within a file are `int`s): just under 16 TiB.
pub const MAX_FILE_LENGTH: u64 = (i32::MAX / 2) as u64 * 16 * 1024;

/// Largest total size (the end of the last file): libtorrent's 2^48 - 1.
pub const MAX_TOTAL_LENGTH: u64 = (1 << 48) - 1;

/// Why a .torrent was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    /// The bytes are not valid bencode.
    #[error("{0}")]
    Bencode(bencode::Error),
    /// A required key is absent.
    #[error("missing required key `{0}`")]
    MissingKey(&'static str),
    /// A key holds a value of the wrong type.
    #[error("`{key}` should be {expected}, found {found}")]
    WrongType {
        /// The key, as a path such as `info.files[2].length`.
        key: String,
        /// The type wanted.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// A length or piece length below zero.
    #[error("`{0}` is negative")]
    Negative(String),
    /// A piece length of 0 or beyond [`MAX_PIECE_LENGTH`], or (v2) not a power
    /// of two of at least 16 KiB.
    #[error("piece length {0} is out of range (1 byte to 1 GiB; for v2 a power of two of at least 16 KiB)")]
    BadPieceLength(i64),
    /// `pieces` is not a whole number of 20-byte hashes.
    #[error("`pieces` is {0} bytes, not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    /// The number of piece hashes disagrees with the total length.
    #[error(
        "{hashes} piece hashes given but {expected} pieces are needed for {total_length} bytes"
    )]
    PieceCountMismatch {
        /// Hashes present.
        hashes: usize,
        /// Pieces implied by the total length and piece length.
        expected: u64,
        /// Total of all file lengths.
        total_length: u64,
    },
    /// The torrent holds no data.
    #[error("the torrent holds no data (total length 0)")]
    Empty,
    /// A multi-file torrent with an empty `files` list.
    #[error("`info.files` is empty")]
    NoFiles,
    /// A file of [`MAX_FILE_LENGTH`] or more, or files adding up to more
    /// than [`MAX_TOTAL_LENGTH`].
    #[error("the torrent's files are too large (a file of 16 TiB or more, or 256 TiB in all)")]
    TooLarge,
    /// More than [`MAX_PIECES`] pieces.
    #[error("{0} pieces: more than the 2,097,152 a torrent may have")]
    TooManyPieces(u64),
    /// A v2 info dictionary whose keys are not in sorted order (BEP 52
    /// requires canonical bencode there, and libtorrent refuses it).
    #[error("the v2 info dictionary's keys are not sorted (not canonical bencode)")]
    UnsortedV2Keys,
    /// A `piece layers` entry that does not fit its file (BEP 52).
    #[error("bad `piece layers`: {0}")]
    BadPieceLayers(String),
    /// A file entry with no usable path: an empty `path` list, or a
    /// single-file torrent whose `name` is empty.
    #[error("unusable path in torrent: {0}")]
    UnsafePath(String),
    /// A v2-only torrent (BEP 52): readable by `info`, not downloadable yet.
    #[error("v2-only torrents (BEP 52) cannot be downloaded yet: this torrent has no v1 `pieces`")]
    V2Only,
    /// `meta version` is above 2.
    #[error("unknown `meta version` {0} (1 and 2 are known)")]
    UnknownVersion(i64),
    /// `meta version` 2 without a `file tree`.
    #[error("`meta version` is 2 but the info dictionary has no `file tree`")]
    MissingFileTree,
    /// A `file tree` (v2 key) without `meta version` 2.
    #[error("the info dictionary has a v2 `file tree` but no `meta version` 2")]
    FileTreeWithoutVersion,
    /// A malformed v2 `file tree`.
    #[error("bad v2 file tree: {0}")]
    BadFileTree(String),
    /// A hybrid torrent whose v1 file list and v2 file tree describe different
    /// files: v1 and v2 peers would see different content under one torrent.
    #[error("hybrid torrent's v1 and v2 file lists disagree: {0}")]
    InconsistentHybrid(String),
}

// Written by hand rather than with `#[from]`, which would also make the bencode
// error the `source` and print its message twice in error chains.
impl From<bencode::Error> for MetainfoError {
    fn from(e: bencode::Error) -> Self {
        MetainfoError::Bencode(e)
    }
}

/// A BEP 47 symbolic link entry: it holds no data; on disk it is a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symlink {
    /// Where it points, as components relative to the download folder (like
    /// [`FileEntry::path`]), when that is a file or folder of this torrent.
    /// `None` when the target would leave the torrent or names nothing in
    /// it: such a link is not created.
    pub target: Option<Vec<String>>,
    /// The target as the torrent spells it, joined with `/`, for messages.
    pub given: String,
}

/// A file of the torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components relative to the download folder. For a single-file
    /// torrent this is `[name]`; for a multi-file torrent `[name, dirs..., file]`.
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// A BEP 47 padding file (`attr` contains `p`): zeros that align the next
    /// file to a piece boundary, never written to disk.
    pub padding: bool,
    /// BEP 47 executable bit (`attr` contains `x`).
    pub executable: bool,
    /// BEP 47 hidden bit (`attr` contains `h`).
    pub hidden: bool,
    /// A BEP 47 symbolic link (`attr` contains `l`); its length is 0.
    pub symlink: Option<Symlink>,
    /// The path as the torrent spells it (components joined with `/`, bytes
    /// that are not UTF-8 replaced) when [`FileEntry::path`] differs from
    /// it: sanitized or renamed as a duplicate.
    pub torrent_path: Option<String>,
}

impl FileEntry {
    /// The path joined with `/`, for display.
    pub fn display_path(&self) -> String {
        self.path.join("/")
    }

    /// The path relative to the download folder, as a platform path.
    pub fn relative_path(&self) -> std::path::PathBuf {
        self.path.iter().collect()
    }

    /// Whether this entry is a regular file on disk (not padding, not a
    /// symlink): the only kind storage creates, writes and reads.
    pub fn is_stored(&self) -> bool {
        !self.padding && self.symlink.is_none()
    }
}

/// The `info` dictionary: what the info-hash covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Suggested name of the file (single-file) or top folder (multi-file).
    pub name: String,
    /// Bytes per piece (the last piece may be shorter).
    pub piece_length: u64,
    /// SHA-1 of every piece, in order.
    pub pieces: Vec<[u8; 20]>,
    /// The files, in torrent order. Single-file torrents have exactly one.
    pub files: Vec<FileEntry>,
    /// Whether this is a multi-file torrent (files live under a `name` folder).
    pub multi_file: bool,
    /// BEP 27: peers only from the torrent's trackers (no DHT, PEX or LSD).
    pub private: bool,
    /// `source`, used by private trackers to make the info-hash unique.
    pub source: Option<String>,
    /// A hybrid torrent that also carries BEP 52 v2 data (`meta version` 2).
    pub hybrid: bool,
    /// A v2-only torrent (BEP 52): no v1 `pieces`, so `pieces` is empty and
    /// the files are those of the `file tree`, with the padding v2 implies.
    /// Only [`Metainfo::from_bytes_any`] returns one.
    pub v2_only: bool,
    /// What was changed to load this torrent safely (renamed files, links
    /// not created), one sentence each, for the user to see.
    pub warnings: Vec<String>,
    /// Derived from `piece_length` and the file lengths when parsed.
    layout: FileLayout,
    /// The info dictionary exactly as it was read (what the info-hash is
    /// the SHA-1 of), for serving it to peers (BEP 9).
    raw: std::sync::Arc<[u8]>,
}

impl Info {
    /// Total of all file lengths, padding included.
    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }

    /// The info dictionary's bytes, exactly as read: their SHA-1 is the
    /// v1 info-hash.
    pub fn raw_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The piece/file geometry of this torrent.
    pub fn layout(&self) -> &FileLayout {
        &self.layout
    }

    /// Number of pieces (for a v2-only torrent, what its layout implies).
    pub fn num_pieces(&self) -> usize {
        if self.v2_only {
            return usize::try_from(self.layout.num_pieces()).unwrap_or(usize::MAX);
        }
        self.pieces.len()
    }

    /// Where each file's data lives when the torrent is saved under `dir`;
    /// padding files read as zeros.
    pub fn file_sources(&self, dir: &std::path::Path) -> Vec<crate::piece_io::FileSource> {
        self.files
            .iter()
            .map(|f| match f.is_stored() {
                false => crate::piece_io::FileSource::Zeros,
                true => crate::piece_io::FileSource::Disk(dir.join(f.relative_path())),
            })
            .collect()
    }
}

/// A parsed .torrent file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// SHA-1 of the info dictionary's original bytes.
    pub info_hash: InfoHash,
    /// SHA-256 of the info dictionary's original bytes, for hybrid and
    /// v2-only torrents (`meta version` 2).
    pub info_hash_v2: Option<InfoHashV2>,
    /// The info dictionary.
    pub info: Info,
    /// The info dictionary exactly as it appeared in the file (what BEP 9
    /// metadata exchange serves).
    pub info_bytes: Vec<u8>,
    /// `announce`: the single tracker of BEP 3.
    pub announce: Option<String>,
    /// `announce-list` (BEP 12) as tiers; empty tiers and repeats dropped.
    pub announce_list: Vec<Vec<String>>,
    /// `url-list` (BEP 19 web seeds).
    pub web_seeds: Vec<String>,
    /// `nodes` (BEP 5): DHT bootstrap nodes as (host, port).
    pub nodes: Vec<(String, u16)>,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date`, meant as seconds since the Unix epoch, but any
    /// integer the file holds (some tools write milliseconds).
    pub creation_date: Option<i64>,
}

impl Metainfo {
    /// Parses a .torrent file's bytes, for downloading, seeding or checking:
    /// a v2-only torrent is refused with [`MetainfoError::V2Only`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MetainfoError> {
        let m = Self::from_bytes_any(bytes)?;
        if m.info.v2_only {
            return Err(MetainfoError::V2Only);
        }
        Ok(m)
    }

    /// Parses a .torrent file's bytes, v2-only torrents included (for
    /// showing them). Bytes after the top-level dictionary are ignored, as
    /// libtorrent does (some tools append a newline); the info dictionary
    /// itself is checked strictly.
    pub fn from_bytes_any(bytes: &[u8]) -> Result<Self, MetainfoError> {
        let (root, _) = bencode::decode_prefix(bytes)?;
        if root.as_dict().is_none() {
            return Err(wrong_type("(top level)", "a dictionary", &root));
        }
        let info_value = root.get(b"info").ok_or(MetainfoError::MissingKey("info"))?;
        let info_hash = InfoHash::from_info_bytes(info_value.raw());
        let (info, v2_roots) = parse_info(info_value, info_hash)?;
        if let Some(roots) = &v2_roots {
            check_piece_layers(&root, roots, info.piece_length)?;
        }
        let v2 = v2_roots.is_some();
        let info_bytes = info_value.raw().to_vec();

        let announce = opt_string(&root, "announce")?.filter(|s| !s.is_empty());
        let announce_list = parse_announce_list(&root)?;
        let web_seeds = match root.get(b"url-list") {
            None => Vec::new(),
            Some(v) => match v.as_list() {
                Some(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                None => v.as_str().map(str::to_owned).into_iter().collect(),
            },
        }
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
        let nodes = root
            .get(b"nodes")
            .and_then(Value::as_list)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|n| match n.as_list()? {
                        [host, port] => Some((
                            host.as_str()?.to_owned(),
                            u16::try_from(port.as_int()?).ok()?,
                        )),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Metainfo {
            info_hash,
            info_hash_v2: v2.then(|| InfoHashV2::from_info_bytes(info_value.raw())),
            info,
            info_bytes,
            announce,
            announce_list,
            web_seeds,
            nodes,
            comment: utf8_preferred(&root, "comment"),
            created_by: utf8_preferred(&root, "created by"),
            creation_date: root.get(b"creation date").and_then(Value::as_int),
        })
    }

    /// Tracker tiers to use: `announce-list` if it has any tracker (BEP 12),
    /// otherwise `announce` as the only tier.
    pub fn tracker_tiers(&self) -> Vec<Vec<String>> {
        if !self.announce_list.is_empty() {
            self.announce_list.clone()
        } else {
            self.announce.iter().map(|a| vec![a.clone()]).collect()
        }
    }
}

/// Parses a bare info dictionary (as received by BEP 9 metadata exchange);
/// v2-only info dictionaries are refused with [`MetainfoError::V2Only`].
pub fn parse_info_bytes(bytes: &[u8]) -> Result<Info, MetainfoError> {
    let info = parse_info(&bencode::decode(bytes)?, InfoHash::from_info_bytes(bytes))?.0;
    if info.v2_only {
        return Err(MetainfoError::V2Only);
    }
    Ok(info)
}

fn wrong_type(key: &str, expected: &'static str, found: &Value<'_>) -> MetainfoError {
    MetainfoError::WrongType {
        key: key.to_owned(),
        expected,
        found: found.type_name(),
    }
}

/// An optional text field. Invalid UTF-8 is replaced rather than refused:
/// old torrents carry names in legacy encodings, and a lossy name is better
/// than no download.
fn opt_string(dict: &Value<'_>, key: &'static str) -> Result<Option<String>, MetainfoError> {
    match dict.get(key.as_bytes()) {
        None => Ok(None),
        Some(v) => match v.as_bytes() {
            Some(b) => Ok(Some(String::from_utf8_lossy(b).into_owned())),
            None => Err(wrong_type(key, "a byte string", v)),
        },
    }
}

/// `key.utf-8` when present and valid UTF-8, else `key` (lossily decoded).
fn utf8_preferred(dict: &Value<'_>, key: &str) -> Option<String> {
    let utf8_key = format!("{key}.utf-8");
    dict.get(utf8_key.as_bytes())
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            dict.get(key.as_bytes())
                .and_then(Value::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
        })
}

fn parse_announce_list(root: &Value<'_>) -> Result<Vec<Vec<String>>, MetainfoError> {
    let Some(list) = root.get(b"announce-list") else {
        return Ok(Vec::new());
    };
    // Malformed announce-lists are common in the wild; keep what is usable
    // rather than refusing a torrent whose data is fine.
    let mut seen = HashSet::new();
    let mut tiers = Vec::new();
    for tier in list.as_list().unwrap_or_default() {
        let urls: Vec<String> = match tier.as_list() {
            Some(urls) => urls
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            None => tier.as_str().map(str::to_owned).into_iter().collect(),
        };
        let urls: Vec<String> = urls
            .into_iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty() && seen.insert(u.clone()))
            .collect();
        if !urls.is_empty() {
            tiers.push(urls);
        }
    }
    Ok(tiers)
}

/// `key` names the field for error messages; it is a closure so that the name
/// is only formatted when there is an error (parsing 10,000-file torrents is
/// otherwise dominated by building names nobody reads).
fn non_negative(v: &Value<'_>, key: impl Fn() -> String) -> Result<u64, MetainfoError> {
    let i = v
        .as_int()
        .ok_or_else(|| wrong_type(&key(), "an integer", v))?;
    u64::try_from(i).map_err(|_| MetainfoError::Negative(key()))
}

/// One file as the v1 list or the v2 tree gives it, before the torrent-wide
/// steps (duplicate names, symlink targets, the hybrid check).
struct RawFile {
    /// Safe path components, relative to the download folder.
    path: Vec<String>,
    /// The path as spelled in the torrent, joined with `/`.
    given: String,
    length: u64,
    padding: bool,
    executable: bool,
    hidden: bool,
    /// `symlink path`: safe components relative to the torrent's root, and
    /// the target as spelled.
    symlink: Option<(Vec<String>, String)>,
    /// v2 `pieces root` (file tree entries with data only).
    pieces_root: Option<[u8; 32]>,
}

/// BEP 47 `attr` flags of a file entry (or of a single-file info dict).
#[derive(Default)]
struct Attr {
    padding: bool,
    executable: bool,
    hidden: bool,
    symlink: bool,
}

fn attr(dict: &Value<'_>) -> Attr {
    let a = dict
        .get(b"attr")
        .and_then(Value::as_bytes)
        .unwrap_or_default();
    Attr {
        padding: a.contains(&b'p'),
        executable: a.contains(&b'x'),
        hidden: a.contains(&b'h'),
        symlink: a.contains(&b'l'),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What the v2 part of an info dictionary says of each file with data: its
/// length and `pieces root`, which `piece layers` must fit.
type V2Roots = Vec<(u64, [u8; 32])>;

/// Parses the info dictionary; the second value is `Some` when it has v2
/// data (`meta version` 2: hybrid or v2-only).
fn parse_info(
    info: &Value<'_>,
    info_hash: InfoHash,
) -> Result<(Info, Option<V2Roots>), MetainfoError> {
    if info.as_dict().is_none() {
        return Err(wrong_type("info", "a dictionary", info));
    }
    // A `meta version` that is not an integer counts as absent, as in libtorrent.
    let version = info
        .get(b"meta version")
        .and_then(Value::as_int)
        .unwrap_or(-1);
    if version > 2 {
        return Err(MetainfoError::UnknownVersion(version));
    }
    if version > 0 && !keys_sorted(info) {
        return Err(MetainfoError::UnsortedV2Keys);
    }
    let v2 = version == 2;

    let pl_value = info
        .get(b"piece length")
        .ok_or(MetainfoError::MissingKey("info.piece length"))?;
    let pl = pl_value
        .as_int()
        .ok_or_else(|| wrong_type("info.piece length", "an integer", pl_value))?;
    let piece_length = u64::try_from(pl)
        .ok()
        .filter(|pl| (1..=MAX_PIECE_LENGTH).contains(pl))
        .filter(|pl| !v2 || (pl.is_power_of_two() && *pl >= 16 * 1024))
        .ok_or(MetainfoError::BadPieceLength(pl))?;

    let name_value = info
        .get(b"name.utf-8")
        .filter(|n| n.as_bytes().is_some())
        .or_else(|| info.get(b"name"))
        .ok_or(MetainfoError::MissingKey("info.name"))?;
    let raw_name = name_value
        .as_bytes()
        .ok_or_else(|| wrong_type("info.name", "a byte string", name_value))?;
    let mut warnings = Vec::new();
    let name = match sanitize::name(raw_name) {
        Some(n) => n,
        None => {
            // A name of "..", "." or only separators: the info-hash names
            // the folder instead, as libtorrent does.
            let hex = match v2 && info.get(b"pieces").is_none() {
                true => InfoHashV2::from_info_bytes(info.raw()).to_hex(),
                false => info_hash.to_hex(),
            };
            warnings.push(format!(
                "the torrent's name {:?} is not a usable file name: saved as {hex}",
                lossy(raw_name)
            ));
            hex
        }
    };

    let private = info
        .get(b"private")
        .and_then(Value::as_int)
        .is_some_and(|p| p != 0);
    let source = utf8_preferred(info, "source");

    let files_value = info.get(b"files");
    let v2_files = match (v2, info.get(b"file tree")) {
        (true, Some(tree)) => {
            let mut out = Vec::new();
            parse_file_tree(
                tree,
                std::slice::from_ref(&name),
                files_value.is_some(),
                0,
                &mut out,
            )?;
            Some(out)
        }
        (true, None) => return Err(MetainfoError::MissingFileTree),
        (false, Some(_)) => return Err(MetainfoError::FileTreeWithoutVersion),
        (false, None) => None,
    };

    let v1_files = match (files_value, info.get(b"length")) {
        (Some(files), _) => Some((parse_files(&name, raw_name, files)?, true)),
        (None, Some(length)) => {
            let a = attr(info);
            let length = non_negative(length, || "info.length".into())?;
            Some((
                vec![RawFile {
                    path: vec![name.clone()],
                    given: lossy(raw_name),
                    length,
                    padding: false,
                    executable: a.executable,
                    hidden: a.hidden,
                    symlink: None,
                    pieces_root: None,
                }],
                false,
            ))
        }
        (None, None) if v2 => None,
        (None, None) => return Err(MetainfoError::MissingKey("info.length or info.files")),
    };

    let v2_only = v1_files.is_none();
    let v2_roots: Option<V2Roots> = v2_files.as_ref().map(|files| {
        files
            .iter()
            .filter_map(|f| f.pieces_root.map(|r| (f.length, r)))
            .collect()
    });
    let (raw_files, multi_file) = match (v1_files, v2_files) {
        (Some((v1, multi)), Some(v2)) => {
            check_hybrid(&v1, &v2, piece_length)?;
            (v1, multi)
        }
        (Some(v1), None) => v1,
        (None, Some(v2)) => {
            let multi = v2.len() != 1 || v2.first().is_some_and(|f| f.path.len() > 1);
            (with_v2_padding(v2, piece_length), multi)
        }
        (None, None) => return Err(MetainfoError::NoFiles),
    };
    if raw_files.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    let files = finish_files(raw_files, multi_file, &mut warnings);
    // A single file is named by its own path (a v2 tree's only key may
    // differ from `name`; libtorrent names the torrent after the file).
    let name = match (multi_file, files.iter().find(|f| !f.padding)) {
        (false, Some(f)) => f.display_path(),
        _ => name,
    };

    if files.iter().any(|f| f.length >= MAX_FILE_LENGTH) {
        return Err(MetainfoError::TooLarge);
    }
    let layout = FileLayout::new(piece_length, files.iter().map(|f| f.length))
        .map_err(|_| MetainfoError::TooLarge)?;
    if layout.total_length() == 0 {
        return Err(MetainfoError::Empty);
    }
    if layout.total_length() > MAX_TOTAL_LENGTH {
        return Err(MetainfoError::TooLarge);
    }
    if layout.num_pieces() > MAX_PIECES {
        return Err(MetainfoError::TooManyPieces(layout.num_pieces()));
    }
    let pieces = match (info.get(b"pieces"), v2_only) {
        (_, true) => Vec::new(),
        (None, false) => return Err(MetainfoError::MissingKey("info.pieces")),
        (Some(p), false) => {
            let bytes = p
                .as_bytes()
                .ok_or_else(|| wrong_type("info.pieces", "a byte string", p))?;
            let (chunks, rest) = bytes.as_chunks::<20>();
            if !rest.is_empty() {
                return Err(MetainfoError::PiecesNotMultipleOf20(bytes.len()));
            }
            chunks.to_vec()
        }
    };
    if !v2_only && layout.num_pieces() != pieces.len() as u64 {
        return Err(MetainfoError::PieceCountMismatch {
            hashes: pieces.len(),
            expected: layout.num_pieces(),
            total_length: layout.total_length(),
        });
    }
    let info = Info {
        name,
        piece_length,
        pieces,
        files,
        multi_file,
        private,
        source,
        hybrid: v2 && !v2_only,
        v2_only,
        warnings,
        layout,
        raw: std::sync::Arc::from(info.raw()),
    };
    Ok((info, v2_roots))
}

/// Whether every dictionary in `v` has its keys in strictly increasing
/// order (canonical bencode). Depth is bounded by the decoder's limit.
fn keys_sorted(v: &Value<'_>) -> bool {
    if let Some(items) = v.as_list() {
        return items.iter().all(keys_sorted);
    }
    let Some(entries) = v.as_dict() else {
        return true;
    };
    entries.windows(2).all(|w| match w {
        [(a, _), (b, _)] => a < b,
        _ => true,
    }) && entries.iter().all(|(_, v)| keys_sorted(v))
}

/// `piece layers` (BEP 52), when present: every key a 32-byte root, every
/// layer a whole number of 32-byte hashes, and the layer of each file larger
/// than a piece exactly one hash per piece of it. Torrents without piece
/// layers are fine (they come from peers, as with magnet links).
fn check_piece_layers(
    root: &Value<'_>,
    files: &[(u64, [u8; 32])],
    piece_length: u64,
) -> Result<(), MetainfoError> {
    let Some(layers) = root.get(b"piece layers").and_then(Value::as_dict) else {
        return Ok(());
    };
    let bad = |why: String| Err(MetainfoError::BadPieceLayers(why));
    let mut by_root = std::collections::HashMap::new();
    for (key, layer) in layers {
        let Some(hashes) = layer.as_bytes() else {
            return bad(format!(
                "a layer is {}, not a byte string",
                layer.type_name()
            ));
        };
        if key.len() != 32 || hashes.len() % 32 != 0 {
            return bad("a key is not a 32-byte root or a layer not whole 32-byte hashes".into());
        }
        by_root.insert(*key, hashes.len() as u64);
    }
    for (length, r) in files {
        if *length <= piece_length {
            continue;
        }
        if let Some(len) = by_root.get(&r[..]) {
            let want = length.div_ceil(piece_length).saturating_mul(32);
            if *len != want {
                return bad(format!(
                    "the layer of a {length}-byte file is {len} bytes, not {want}"
                ));
            }
        }
    }
    Ok(())
}

/// The v1 `files` list. `name` is the safe top folder, `raw_name` as spelled.
fn parse_files(
    name: &str,
    raw_name: &[u8],
    files: &Value<'_>,
) -> Result<Vec<RawFile>, MetainfoError> {
    let list = files
        .as_list()
        .ok_or_else(|| wrong_type("info.files", "a list", files))?;
    if list.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, f) in list.iter().enumerate() {
        let key = |k: &str| format!("info.files[{i}].{k}");
        if f.as_dict().is_none() {
            return Err(wrong_type(&format!("info.files[{i}]"), "a dictionary", f));
        }
        let a = attr(f);
        // A symlink holds no data whatever its `length` says (libtorrent).
        let length = match a.symlink {
            true => 0,
            false => non_negative(
                f.get(b"length")
                    .ok_or(MetainfoError::MissingKey("info.files[].length"))?,
                || key("length"),
            )?,
        };
        // `path.utf-8` wins whenever it is a list, as in libtorrent.
        let path_value = f
            .get(b"path.utf-8")
            .filter(|p| p.as_list().is_some())
            .or_else(|| f.get(b"path"));
        let components: Vec<&[u8]> = match path_value {
            Some(p) => {
                let list = p
                    .as_list()
                    .ok_or_else(|| wrong_type(&key("path"), "a list", p))?;
                list.iter()
                    .map(|c| {
                        c.as_bytes()
                            .ok_or_else(|| wrong_type(&key("path"), "a list of byte strings", c))
                    })
                    .collect::<Result<_, _>>()?
            }
            None => Vec::new(),
        };
        let (path, given) = if components.is_empty() {
            if !a.padding {
                return Err(MetainfoError::UnsafePath(format!(
                    "{} is missing or empty",
                    key("path")
                )));
            }
            // BEP 47 padding files need no path: they are never written.
            let p = vec![".pad".to_owned(), length.to_string()];
            let g = p.join("/");
            (p, g)
        } else {
            let mut p = Vec::with_capacity(components.len() + 1);
            p.push(name.to_owned());
            p.extend(sanitize::path(components.iter().copied()));
            let mut g = lossy(raw_name);
            for c in &components {
                g.push('/');
                g.push_str(&String::from_utf8_lossy(c));
            }
            (p, g)
        };
        let padding = a.padding || given.contains("_____padding_file_");
        let symlink = match a.symlink {
            true => symlink_path(f, &key)?,
            false => None,
        };
        out.push(RawFile {
            path,
            given,
            length,
            padding,
            executable: a.executable,
            hidden: a.hidden,
            symlink,
            pieces_root: None,
        });
    }
    Ok(out)
}

/// `symlink path` of a BEP 47 link. `None` when absent: the entry is then
/// an ordinary empty file, as in libtorrent.
fn symlink_path(
    f: &Value<'_>,
    key: &impl Fn(&str) -> String,
) -> Result<Option<(Vec<String>, String)>, MetainfoError> {
    let Some(list) = f.get(b"symlink path").and_then(Value::as_list) else {
        return Ok(None);
    };
    let mut safe = Vec::with_capacity(list.len());
    let mut given = Vec::with_capacity(list.len());
    for c in list {
        let bytes = c
            .as_bytes()
            .ok_or_else(|| wrong_type(&key("symlink path"), "a list of byte strings", c))?;
        given.push(lossy(bytes));
        safe.extend(sanitize::component(bytes));
    }
    Ok(Some((safe, given.join("/"))))
}

/// The v2 `file tree` (BEP 52): nested dictionaries whose leaves are
/// `{"": {length, pieces root, attr}}`, in the order they appear.
fn parse_file_tree(
    tree: &Value<'_>,
    prefix: &[String],
    has_v1_list: bool,
    depth: usize,
    out: &mut Vec<RawFile>,
) -> Result<(), MetainfoError> {
    let bad = |why: String| Err(MetainfoError::BadFileTree(why));
    if depth > MAX_TREE_DEPTH {
        return bad(format!("folders nested deeper than {MAX_TREE_DEPTH}"));
    }
    let Some(entries) = tree.as_dict() else {
        return bad(format!(
            "an entry is {}, not a dictionary",
            tree.type_name()
        ));
    };
    for (key, node) in entries {
        let Some(children) = node.as_dict() else {
            return bad(format!(
                "an entry is {}, not a dictionary",
                node.type_name()
            ));
        };
        if key.is_empty() {
            return bad("an empty name".into());
        }
        let leaf = match children {
            [(b"", leaf)] => Some(leaf),
            _ => None,
        };
        // A single file at the top of a torrent without a v1 file list is
        // named by itself, not put in a folder.
        let single = leaf.is_some() && !has_v1_list && depth == 0 && entries.len() == 1;
        let mut path: Vec<String> = if single { Vec::new() } else { prefix.to_vec() };
        path.extend(sanitize::component(key));
        match leaf {
            Some(leaf) => {
                if path.len() <= usize::from(!single) {
                    path.push("_".into());
                }
                out.push(tree_leaf(leaf, path, key)?);
            }
            None => parse_file_tree(node, &path, has_v1_list, depth + 1, out)?,
        }
    }
    Ok(())
}

fn tree_leaf(leaf: &Value<'_>, path: Vec<String>, key: &[u8]) -> Result<RawFile, MetainfoError> {
    let bad = |why: &str| {
        Err(MetainfoError::BadFileTree(format!(
            "file {:?} {why}",
            String::from_utf8_lossy(key)
        )))
    };
    if leaf.as_dict().is_none() {
        return bad("is not a dictionary");
    }
    let a = attr(leaf);
    if a.padding {
        return bad("is a padding file (v2 trees have none)");
    }
    let length = match a.symlink {
        true => 0,
        false => match leaf.get(b"length").and_then(Value::as_int) {
            Some(l) => match u64::try_from(l) {
                Ok(l) => l,
                Err(_) => return bad("has a negative length"),
            },
            None => return bad("has no length"),
        },
    };
    let symlink = match a.symlink {
        true => symlink_path(leaf, &|k: &str| format!("file tree {k}"))?,
        false => None,
    };
    if length >= MAX_FILE_LENGTH {
        return Err(MetainfoError::TooLarge);
    }
    let mut pieces_root = None;
    if length > 0 && symlink.is_none() {
        let root = leaf
            .get(b"pieces root")
            .and_then(Value::as_bytes)
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
            .filter(|r| r.iter().any(|b| *b != 0));
        match root {
            Some(r) => pieces_root = Some(r),
            None => return bad("has no valid `pieces root`"),
        }
    }
    Ok(RawFile {
        given: path.join("/"),
        path,
        length,
        padding: false,
        executable: a.executable,
        hidden: a.hidden,
        symlink,
        pieces_root,
    })
}

/// A v2-only torrent's files with the padding v2 implies: every file with
/// data starts on a piece boundary.
fn with_v2_padding(files: Vec<RawFile>, piece_length: u64) -> Vec<RawFile> {
    let mut out = Vec::with_capacity(files.len() * 2);
    let mut end = 0u64;
    for f in files {
        let gap = (piece_length - end % piece_length) % piece_length;
        if f.length > 0 && gap > 0 {
            let path = vec![".pad".to_owned(), gap.to_string()];
            out.push(RawFile {
                given: path.join("/"),
                path,
                length: gap,
                padding: true,
                executable: false,
                hidden: false,
                symlink: None,
                pieces_root: None,
            });
            end = end.saturating_add(gap);
        }
        end = end.saturating_add(f.length);
        out.push(f);
    }
    out
}

/// Refuses a hybrid torrent whose v1 and v2 parts describe different data:
/// every file with data must have the same path, length and offset in both
/// (v2 offsets start on piece boundaries; v1 gets there with padding files).
fn check_hybrid(v1: &[RawFile], v2: &[RawFile], piece_length: u64) -> Result<(), MetainfoError> {
    let mut offset = 0u64;
    let mut v1_files = Vec::new();
    for f in v1 {
        if !f.padding && f.length > 0 {
            v1_files.push((&f.path, f.length, offset));
        }
        offset = offset.saturating_add(f.length);
    }
    let v1_total = offset;
    let mut end = 0u64;
    let mut v2_files = Vec::new();
    for f in v2.iter().filter(|f| f.length > 0) {
        let start = end.div_ceil(piece_length).saturating_mul(piece_length);
        v2_files.push((&f.path, f.length, start));
        end = start.saturating_add(f.length);
    }
    let describe = |f: Option<&(&Vec<String>, u64, u64)>| match f {
        Some((p, len, off)) => format!("`{}` ({len} bytes at offset {off})", p.join("/")),
        None => "nothing".to_owned(),
    };
    for i in 0..v1_files.len().max(v2_files.len()) {
        let (a, b) = (v1_files.get(i), v2_files.get(i));
        if a != b {
            return Err(MetainfoError::InconsistentHybrid(format!(
                "file {} is {} in v1 but {} in v2",
                i + 1,
                describe(a),
                describe(b)
            )));
        }
    }
    let aligned = end.div_ceil(piece_length).saturating_mul(piece_length);
    if v1_total != end && v1_total != aligned {
        return Err(MetainfoError::InconsistentHybrid(format!(
            "{v1_total} bytes in v1 but {end} in v2"
        )));
    }
    Ok(())
}

/// The torrent-wide steps: later files that would land on an earlier file's
/// path (or on a folder) are renamed, symlink targets are resolved inside
/// the torrent, and each file remembers the path the torrent gave it when
/// it differs.
fn finish_files(raw: Vec<RawFile>, multi_file: bool, warnings: &mut Vec<String>) -> Vec<FileEntry> {
    let mut paths: Vec<Vec<String>> = raw.iter().map(|f| f.path.clone()).collect();
    let renamed = sanitize::resolve_duplicates(&mut paths, |i, j| {
        // Padding files of one length may share a path: they are never written.
        matches!((raw.get(i), raw.get(j)), (Some(a), Some(b))
            if a.padding && b.padding && a.length == b.length)
    });
    for i in renamed {
        if let (Some(f), Some(p)) = (raw.get(i), paths.get(i)) {
            warnings.push(format!(
                "`{}` is the path of an earlier file or folder: saved as `{}`",
                f.given,
                p.join("/")
            ));
        }
    }
    // What a link may point at: every file and every folder of the torrent.
    let mut targets: HashSet<&[String]> = HashSet::new();
    for p in &paths {
        for end in 1..=p.len() {
            targets.insert(p.get(..end).unwrap_or_default());
        }
    }
    let root: &[String] = match (multi_file, paths.first()) {
        (true, Some(p)) => p.get(..1).unwrap_or_default(),
        _ => &[],
    };
    let link_targets = resolve_links(&raw, &paths, root, &targets);
    let mut files = Vec::with_capacity(raw.len());
    for ((f, path), found) in raw.iter().zip(&paths).zip(link_targets) {
        let symlink = f.symlink.as_ref().map(|(_, given)| {
            if found.is_none() {
                warnings.push(format!(
                    "`{}` links to `{given}`, which is not in the torrent: the link is not created",
                    path.join("/")
                ));
            }
            Symlink {
                target: found,
                given: given.clone(),
            }
        });
        let joined = path.join("/");
        files.push(FileEntry {
            torrent_path: (!f.padding && joined != f.given).then(|| f.given.clone()),
            path: path.clone(),
            length: f.length,
            padding: f.padding,
            executable: f.executable,
            hidden: f.hidden,
            symlink,
        });
    }
    files
}

/// Most links one target may pass through (`a -> b/c` where `b` is itself
/// a link ...), and most rounds of resolving links that point through links
/// resolved in an earlier round.
const MAX_LINK_HOPS: usize = 16;

/// Each symlink entry's target, as components below the download folder,
/// when it names a file or folder of the torrent: directly, or through other
/// links of the torrent to folders (a macOS framework's `Headers ->
/// Versions/Current/Headers`, with `Versions/Current -> A`). Targets are
/// tried relative to the torrent's root first, then (as older libtorrents
/// wrote them) to the link's own folder. `None` for everything else, and
/// for entries that are not links.
fn resolve_links(
    raw: &[RawFile],
    paths: &[Vec<String>],
    root: &[String],
    targets: &HashSet<&[String]>,
) -> Vec<Option<Vec<String>>> {
    use std::collections::HashMap;
    let mut chosen: Vec<Option<Vec<String>>> = vec![None; raw.len()];
    // Link path -> the real path its target names (links substituted).
    let mut real: HashMap<Vec<String>, Vec<String>> = HashMap::new();
    for _round in 0..MAX_LINK_HOPS {
        let mut progress = false;
        for (i, (f, path)) in raw.iter().zip(paths).enumerate() {
            let (Some((target, _)), Some(None)) = (&f.symlink, chosen.get(i)) else {
                continue;
            };
            if target.is_empty() {
                continue;
            }
            let folder = path.get(..path.len().saturating_sub(1)).unwrap_or_default();
            for base in [root, folder] {
                let candidate = [base, target.as_slice()].concat();
                if &candidate == path {
                    continue;
                }
                if let Some(resolved) = resolve_path(&candidate, targets, &real, 0) {
                    real.insert(path.clone(), resolved);
                    if let Some(c) = chosen.get_mut(i) {
                        *c = Some(candidate);
                    }
                    progress = true;
                    break;
                }
            }
        }
        if !progress {
            break;
        }
    }
    chosen
}

/// The real path `path` names once links resolved so far are followed, when
/// that is a file or folder of the torrent.
fn resolve_path(
    path: &[String],
    targets: &HashSet<&[String]>,
    real: &std::collections::HashMap<Vec<String>, Vec<String>>,
    hops: usize,
) -> Option<Vec<String>> {
    if targets.contains(path) {
        return Some(path.to_vec());
    }
    if hops >= MAX_LINK_HOPS {
        return None;
    }
    (1..path.len()).rev().find_map(|i| {
        let (prefix, rest) = path.split_at(i);
        let dest = real.get(prefix)?;
        resolve_path(&[dest.as_slice(), rest].concat(), targets, real, hops + 1)
    })
}

#[cfg(test)]
#[path = "metainfo_tests.rs"]
mod tests;
