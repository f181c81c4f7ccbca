//! v1 metainfo (.torrent files, BEP 3), with the fields of BEP 5 (`nodes`),
//! BEP 12 (`announce-list`), BEP 19 (`url-list`), BEP 27 (`private`) and BEP 47
//! (padding files), and the v1 part of hybrid v1+v2 torrents (BEP 52).
//!
//! Everything in a .torrent is untrusted: every field is checked, and file paths
//! are refused if they could escape the download folder.

use std::collections::HashSet;

use rivulet_bencode::{self as bencode, Value};

use crate::layout::FileLayout;
use crate::InfoHash;

/// Largest piece length accepted. Pieces are hashed in memory, so an absurd
/// piece length would let a .torrent make us allocate without bound.
pub const MAX_PIECE_LENGTH: u64 = 256 * 1024 * 1024;

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
    /// A piece length of 0 or beyond [`MAX_PIECE_LENGTH`].
    #[error("piece length {0} is out of range (1 byte to 256 MiB)")]
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
    /// File lengths overflow 64 bits.
    #[error("file lengths add up to more than 2^64 bytes")]
    TooLarge,
    /// A name or path component that could escape the download folder or is not
    /// a usable file name.
    #[error("unsafe path in torrent: {0}")]
    UnsafePath(String),
    /// Two files with the same path, or a file whose path is another's folder.
    #[error("file path `{0}` is used twice")]
    DuplicatePath(String),
    /// A v2-only torrent (BEP 52) without the v1 keys.
    #[error("v2-only torrents are not supported (no `pieces` in the info dictionary)")]
    V2Only,
}

// Written by hand rather than with `#[from]`, which would also make the bencode
// error the `source` and print its message twice in error chains.
impl From<bencode::Error> for MetainfoError {
    fn from(e: bencode::Error) -> Self {
        MetainfoError::Bencode(e)
    }
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
    /// Derived from `piece_length` and the file lengths when parsed.
    layout: FileLayout,
}

impl Info {
    /// Total of all file lengths, padding included.
    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }

    /// The piece/file geometry of this torrent.
    pub fn layout(&self) -> &FileLayout {
        &self.layout
    }

    /// Number of pieces.
    pub fn num_pieces(&self) -> usize {
        self.pieces.len()
    }

    /// Where each file's data lives when the torrent is saved under `dir`;
    /// padding files read as zeros.
    pub fn file_sources(&self, dir: &std::path::Path) -> Vec<crate::piece_io::FileSource> {
        self.files
            .iter()
            .map(|f| match f.padding {
                true => crate::piece_io::FileSource::Zeros,
                false => crate::piece_io::FileSource::Disk(dir.join(f.relative_path())),
            })
            .collect()
    }
}

/// A parsed .torrent file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// SHA-1 of the info dictionary's original bytes.
    pub info_hash: InfoHash,
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
    /// `creation date`, seconds since the Unix epoch.
    pub creation_date: Option<i64>,
}

impl Metainfo {
    /// Parses a .torrent file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MetainfoError> {
        let root = bencode::decode(bytes)?;
        if root.as_dict().is_none() {
            return Err(wrong_type("(top level)", "a dictionary", &root));
        }
        let info_value = root.get(b"info").ok_or(MetainfoError::MissingKey("info"))?;
        let info = parse_info(info_value)?;
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
            info_hash: InfoHash::from_info_bytes(info_value.raw()),
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

/// Parses a bare info dictionary (as received by BEP 9 metadata exchange).
pub fn parse_info_bytes(bytes: &[u8]) -> Result<Info, MetainfoError> {
    parse_info(&bencode::decode(bytes)?)
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

fn parse_info(info: &Value<'_>) -> Result<Info, MetainfoError> {
    if info.as_dict().is_none() {
        return Err(wrong_type("info", "a dictionary", info));
    }
    let hybrid = info.get(b"meta version").and_then(Value::as_int) == Some(2);
    let pieces_value = match info.get(b"pieces") {
        Some(p) => p,
        None if hybrid || info.get(b"file tree").is_some() => return Err(MetainfoError::V2Only),
        None => return Err(MetainfoError::MissingKey("info.pieces")),
    };
    let pieces_bytes = pieces_value
        .as_bytes()
        .ok_or_else(|| wrong_type("info.pieces", "a byte string", pieces_value))?;
    let (chunks, rest) = pieces_bytes.as_chunks::<20>();
    if !rest.is_empty() {
        return Err(MetainfoError::PiecesNotMultipleOf20(pieces_bytes.len()));
    }
    let pieces: Vec<[u8; 20]> = chunks.to_vec();

    let pl_value = info
        .get(b"piece length")
        .ok_or(MetainfoError::MissingKey("info.piece length"))?;
    let pl = pl_value
        .as_int()
        .ok_or_else(|| wrong_type("info.piece length", "an integer", pl_value))?;
    let piece_length = u64::try_from(pl)
        .ok()
        .filter(|pl| (1..=MAX_PIECE_LENGTH).contains(pl))
        .ok_or(MetainfoError::BadPieceLength(pl))?;

    let name_value = info
        .get(b"name.utf-8")
        .filter(|n| n.as_str().is_some())
        .or_else(|| info.get(b"name"))
        .ok_or(MetainfoError::MissingKey("info.name"))?;
    let name = component(|| "info.name".into(), name_value)?;

    let private = info.get(b"private").and_then(Value::as_int) == Some(1);
    let source = utf8_preferred(info, "source");

    let (files, multi_file) = match (info.get(b"files"), info.get(b"length")) {
        (Some(files), _) => (parse_files(&name, files)?, true),
        (None, Some(length)) => {
            let length = non_negative(length, || "info.length".into())?;
            let attr = info
                .get(b"attr")
                .and_then(Value::as_bytes)
                .unwrap_or_default();
            (
                vec![FileEntry {
                    path: vec![name.clone()],
                    length,
                    padding: false,
                    executable: attr.contains(&b'x'),
                    hidden: attr.contains(&b'h'),
                }],
                false,
            )
        }
        (None, None) => return Err(MetainfoError::MissingKey("info.length or info.files")),
    };

    let layout = FileLayout::new(piece_length, files.iter().map(|f| f.length))
        .map_err(|_| MetainfoError::TooLarge)?;
    if layout.total_length() == 0 {
        return Err(MetainfoError::Empty);
    }
    if layout.num_pieces() != pieces.len() as u64 {
        return Err(MetainfoError::PieceCountMismatch {
            hashes: pieces.len(),
            expected: layout.num_pieces(),
            total_length: layout.total_length(),
        });
    }
    Ok(Info {
        name,
        piece_length,
        pieces,
        files,
        multi_file,
        private,
        source,
        hybrid,
        layout,
    })
}

fn parse_files(name: &str, files: &Value<'_>) -> Result<Vec<FileEntry>, MetainfoError> {
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
        let length = non_negative(
            f.get(b"length")
                .ok_or(MetainfoError::MissingKey("info.files[].length"))?,
            || key("length"),
        )?;
        let attr = f.get(b"attr").and_then(Value::as_bytes).unwrap_or_default();
        // path.utf-8 wins when it is usable; otherwise `path`.
        let path_value = f
            .get(b"path.utf-8")
            .filter(|p| {
                p.as_list()
                    .is_some_and(|l| !l.is_empty() && l.iter().all(|c| c.as_str().is_some()))
            })
            .or_else(|| f.get(b"path"))
            .ok_or(MetainfoError::MissingKey("info.files[].path"))?;
        let components = path_value
            .as_list()
            .ok_or_else(|| wrong_type(&key("path"), "a list", path_value))?;
        if components.is_empty() {
            return Err(MetainfoError::UnsafePath(format!(
                "{} has an empty path",
                key("path")
            )));
        }
        let mut path = Vec::with_capacity(components.len() + 1);
        path.push(name.to_owned());
        for c in components {
            path.push(component(|| key("path"), c)?);
        }
        let padding = attr.contains(&b'p')
            || path
                .last()
                .is_some_and(|n| n.starts_with("_____padding_file_"));
        out.push(FileEntry {
            path,
            length,
            padding,
            executable: attr.contains(&b'x'),
            hidden: attr.contains(&b'h'),
        });
    }
    check_unique_paths(&out)?;
    Ok(out)
}

/// Refuses two files at the same path, and a file where another file's folder
/// must be. Padding files are exempt: they are never written, and libtorrent
/// names them `.pad/<length>`, so equal-length ones share a path.
fn check_unique_paths(files: &[FileEntry]) -> Result<(), MetainfoError> {
    // Components hold no NUL (checked in `component`), so joining with NUL and
    // sorting puts every path right before the paths inside it ("a" < "a\0b" <
    // "a.txt"): comparing neighbours finds every clash in O(n log n).
    let mut joined: Vec<String> = files
        .iter()
        .filter(|f| !f.padding)
        .map(|f| f.path.join("\0"))
        .collect();
    joined.sort_unstable();
    for pair in joined.windows(2) {
        if let [a, b] = pair {
            let inside = b
                .strip_prefix(a.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('\0'));
            if inside {
                return Err(MetainfoError::DuplicatePath(a.replace('\0', "/")));
            }
        }
    }
    Ok(())
}

/// One path component (or the torrent name), checked to be a plain file name.
fn component(key: impl Fn() -> String, v: &Value<'_>) -> Result<String, MetainfoError> {
    let bytes = v
        .as_bytes()
        .ok_or_else(|| wrong_type(&key(), "a byte string", v))?;
    let s = String::from_utf8_lossy(bytes).into_owned();
    let bad = |why: &str| Err(MetainfoError::UnsafePath(format!("{} {s:?} {why}", key())));
    if s.is_empty() {
        return bad("is empty");
    }
    if s == "." || s == ".." {
        return bad("is a relative folder reference");
    }
    if s.contains('/') || s.contains('\\') {
        return bad("contains a path separator");
    }
    if s.contains('\0') {
        return bad("contains a NUL byte");
    }
    if let [letter, b':', ..] = s.as_bytes() {
        if letter.is_ascii_alphabetic() {
            return bad("looks like a drive-letter path");
        }
    }
    Ok(s)
}

#[cfg(test)]
#[path = "metainfo_tests.rs"]
mod tests;
