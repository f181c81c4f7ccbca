//! Magnet URIs: parsing and canonical formatting.
//!
//! Supports the BitTorrent subset of the magnet scheme (BEP 9) plus the
//! BEP 53 `so` (select-only) parameter:
//!
//! ```text
//! magnet:?xt=urn:btih:<40 hex | 32 base32>&dn=<name>&xl=<bytes>
//!        &tr=<tracker url>&tr=...&ws=<web seed url>&x.pe=<host:port>&so=0,2,4-6
//! ```
//!
//! Parsing rules (all of them are lenient only where real-world links need it,
//! and [`Magnet::parse`] never panics):
//!
//! * The `magnet:` scheme is matched case-insensitively and must be followed
//!   by `?`. Leading and trailing ASCII whitespace is ignored.
//! * Parameter names are case-insensitive, and an indexed form `name.N`
//!   (for example `tr.1`, `tr.2`, `xt.1`) is treated exactly like `name`.
//!   Unknown parameters are ignored without being decoded.
//! * Values of recognised parameters are percent-decoded strictly: a `%` not
//!   followed by two hex digits is [`MagnetError::BadPercentEncoding`], and a
//!   result that is not UTF-8 is [`MagnetError::NotUtf8`]. In `dn` only, `+`
//!   means a space (as browsers and libtorrent do); elsewhere `+` is literal.
//! * An empty value (`tr=`) is treated as if the parameter were absent.
//! * `xt`: the first `urn:btih:` topic is used (its hash must be valid). If
//!   there is none but there is a `urn:btmh:` topic, the magnet is v2-only and
//!   rejected with [`MagnetError::V2Only`]. Other topics are ignored when a
//!   `urn:btih:` topic is present.
//! * `dn`, `xl`: the first occurrence wins (later ones are still validated).
//! * `tr`, `ws`, `x.pe`: kept in order of appearance, exact duplicates dropped.
//! * `x.pe`: `ipv4:port`, `[ipv6]:port` go to [`Magnet::peers`];
//!   `hostname:port` (allowed by BEP 9, but it needs a DNS lookup) goes to
//!   [`Magnet::peer_hosts`]. Anything else, or port 0, is an error
//!   ([`MagnetError::BadPeer`]) naming the entry.
//! * `so`: comma-separated file indices and inclusive ranges `a-b` with
//!   `a <= b`; several `so` parameters are concatenated. Any malformed token
//!   (including an empty one, as in `0,,2`) is [`MagnetError::BadSelectOnly`].
//!
//! Formatting ([`Magnet::to_uri`], or `Display`) produces a canonical URI:
//! `xt=urn:btih:<lower-case hex>`, then `dn`, `xl`, each `tr`, each `ws`, each
//! `x.pe` (addresses first, then host names) and `so`. Values are
//! percent-encoded except for the unreserved characters `A-Z a-z 0-9 - . _ ~`,
//! so the result is safe to paste into a shell; `so` is written as plain
//! digits, `-` and `,` because libtorrent does not percent-decode it.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::info_hash::{InfoHash, InfoHashParseError};

/// Everything except the RFC 3986 unreserved characters is percent-encoded.
const VALUE_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Longest DNS name accepted in an `x.pe` host name.
const MAX_HOSTNAME_LEN: usize = 253;
/// Longest DNS label accepted in an `x.pe` host name.
const MAX_LABEL_LEN: usize = 63;

/// Why a string is not a usable magnet URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    /// The text does not start with `magnet:?` (scheme case-insensitive).
    #[error("not a magnet URI: expected text starting with \"magnet:?\"")]
    NotMagnet,
    /// There is no (non-empty) `xt` parameter, so no info-hash.
    #[error("magnet URI has no xt (exact topic) parameter, so no info-hash")]
    MissingExactTopic,
    /// The `xt` parameters name neither a BitTorrent v1 (`urn:btih:`) nor a
    /// v2 (`urn:btmh:`) info-hash; holds the first `xt` value.
    #[error("magnet URI's xt {0:?} is not a BitTorrent info-hash (expected urn:btih:<hash>)")]
    UnsupportedTopic(String),
    /// The only BitTorrent topic is a v2 `urn:btmh:` multihash; v2-only
    /// magnets are not supported yet.
    #[error(
        "v2-only magnet URIs (xt=urn:btmh:...) are not supported yet; \
         a urn:btih: v1 info-hash is required"
    )]
    V2Only,
    /// The `urn:btih:` hash is not 40 hex digits or 32 base32 characters.
    #[error("bad info-hash {hash:?} in magnet URI: {reason}")]
    BadInfoHash {
        /// The hash text after `urn:btih:`, percent-decoded.
        hash: String,
        /// What is wrong with it (shown in the message, so not also a
        /// `source`, which would print it twice in error chains).
        reason: InfoHashParseError,
    },
    /// A recognised parameter has a `%` not followed by two hex digits.
    #[error(
        "magnet parameter {param} has a malformed percent-escape \
         (expected % followed by two hex digits)"
    )]
    BadPercentEncoding {
        /// The parameter name as written (for example `tr.2`).
        param: String,
    },
    /// A recognised parameter is not valid UTF-8 once percent-decoded.
    #[error("magnet parameter {param} is not valid UTF-8 after percent-decoding")]
    NotUtf8 {
        /// The parameter name as written (for example `dn`).
        param: String,
    },
    /// An `x.pe` value is not `ipv4:port`, `[ipv6]:port` or `hostname:port`
    /// with a port from 1 to 65535; holds the decoded value.
    #[error(
        "bad peer address {0:?} in x.pe: expected ipv4:port, [ipv6]:port or \
         hostname:port with a port from 1 to 65535"
    )]
    BadPeer(String),
    /// An `so` value is not a comma-separated list of file indices and
    /// inclusive ranges `a-b` with `a <= b`; holds the decoded value.
    #[error(
        "bad so (select-only) value {0:?}: expected comma-separated file indices \
         and inclusive ranges such as 0,2,4-6"
    )]
    BadSelectOnly(String),
    /// An `xl` value is not a decimal byte count that fits in 64 bits; holds
    /// the decoded value.
    #[error("bad xl (exact length) value {0:?}: expected a decimal byte count")]
    BadExactLength(String),
}

/// One entry of a BEP 53 `so` (select-only) list: a file index or an
/// inclusive range of file indices (indices into the torrent's file list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileSelection {
    /// A single file index, written `3`.
    Index(usize),
    /// An inclusive range, written `4-6`. Parsing guarantees
    /// `first <= last`; a hand-built range with `first > last` selects
    /// nothing and is formatted as-is (so it will not parse back).
    Range {
        /// The first selected index.
        first: usize,
        /// The last selected index (inclusive).
        last: usize,
    },
}

impl FileSelection {
    /// Whether file `index` is selected by this entry.
    pub fn contains(&self, index: usize) -> bool {
        match *self {
            FileSelection::Index(i) => i == index,
            FileSelection::Range { first, last } => first <= index && index <= last,
        }
    }
}

impl fmt::Display for FileSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FileSelection::Index(i) => write!(f, "{i}"),
            FileSelection::Range { first, last } => write!(f, "{first}-{last}"),
        }
    }
}

/// A parsed BitTorrent magnet URI.
///
/// `Magnet::parse(&m.to_uri()) == Ok(m)` holds for every value returned by
/// [`Magnet::parse`] and for values built with [`Magnet::new`] and the
/// `with_*` methods. Hand-edited fields stay round-trippable as long as the
/// value keeps the normal form parsing produces: `display_name` is not
/// `Some("")`, the lists hold no empty strings or duplicates, peer ports are
/// non-zero, IPv6 peers have no flow info, and host names are valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Magnet {
    /// The v1 info-hash from `xt=urn:btih:`.
    pub info_hash: InfoHash,
    /// The suggested name (`dn`); never `Some("")` after parsing.
    pub display_name: Option<String>,
    /// Tracker URLs (`tr`, `tr.N`), in order, without duplicates.
    pub trackers: Vec<String>,
    /// Peer addresses given as IP literals (`x.pe`), in order, without duplicates.
    pub peers: Vec<SocketAddr>,
    /// Peers given as `hostname:port` (`x.pe`), which need a DNS lookup
    /// before use; in order, without duplicates.
    pub peer_hosts: Vec<(String, u16)>,
    /// Web seed URLs (`ws`, BEP 19), in order, without duplicates.
    pub web_seeds: Vec<String>,
    /// BEP 53 `so` file selection, in the order written. Empty means no `so`
    /// parameter: download every file. Use [`Magnet::selects_file`] to query it.
    pub select_only: Vec<FileSelection>,
    /// Total size in bytes (`xl`), if given.
    pub exact_length: Option<u64>,
}

impl Magnet {
    /// A magnet with only an info-hash.
    pub fn new(info_hash: InfoHash) -> Self {
        Magnet {
            info_hash,
            display_name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
            peer_hosts: Vec::new(),
            web_seeds: Vec::new(),
            select_only: Vec::new(),
            exact_length: None,
        }
    }

    /// Sets the display name (`dn`); an empty name clears it.
    pub fn with_display_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.display_name = if name.is_empty() { None } else { Some(name) };
        self
    }

    /// Appends a tracker URL (`tr`) unless it is empty or already present.
    pub fn with_tracker(mut self, url: impl Into<String>) -> Self {
        push_unique(&mut self.trackers, url.into());
        self
    }

    /// Appends a web seed URL (`ws`) unless it is empty or already present.
    pub fn with_web_seed(mut self, url: impl Into<String>) -> Self {
        push_unique(&mut self.web_seeds, url.into());
        self
    }

    /// Appends a peer address (`x.pe`) unless it is already present. The
    /// port should be non-zero and IPv6 flow info zero, as parsing requires.
    pub fn with_peer(mut self, addr: SocketAddr) -> Self {
        if !self.peers.contains(&addr) {
            self.peers.push(addr);
        }
        self
    }

    /// Sets the total size in bytes (`xl`).
    pub fn with_exact_length(mut self, bytes: u64) -> Self {
        self.exact_length = Some(bytes);
        self
    }

    /// Appends an entry to the BEP 53 file selection (`so`).
    pub fn with_selection(mut self, selection: FileSelection) -> Self {
        self.select_only.push(selection);
        self
    }

    /// Whether file `index` should be downloaded: always true without `so`,
    /// otherwise true when some `so` entry contains it.
    pub fn selects_file(&self, index: usize) -> bool {
        self.select_only.is_empty() || self.select_only.iter().any(|s| s.contains(index))
    }

    /// Parses a magnet URI; see the [module documentation](self) for the rules.
    pub fn parse(uri: &str) -> Result<Self, MagnetError> {
        let uri = uri.trim_matches(|c: char| c.is_ascii_whitespace());
        let query = match uri.split_at_checked("magnet:".len()) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("magnet:") => {
                rest.strip_prefix('?').ok_or(MagnetError::NotMagnet)?
            }
            _ => return Err(MagnetError::NotMagnet),
        };

        let mut topics: Vec<String> = Vec::new();
        let mut display_name = None;
        let mut trackers = Vec::new();
        let mut peers = Vec::new();
        let mut peer_hosts = Vec::new();
        let mut web_seeds = Vec::new();
        let mut select_only = Vec::new();
        let mut exact_length = None;

        for pair in query.split('&') {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(param) = Param::classify(key) else {
                continue;
            };
            let value = decode(key, raw, param == Param::DisplayName)?;
            if value.is_empty() {
                continue;
            }
            match param {
                Param::ExactTopic => topics.push(value),
                Param::DisplayName => {
                    if display_name.is_none() {
                        display_name = Some(value);
                    }
                }
                Param::Tracker => push_unique(&mut trackers, value),
                Param::WebSeed => push_unique(&mut web_seeds, value),
                Param::Peer => match parse_peer(&value)? {
                    PeerEntry::Addr(addr) => {
                        if !peers.contains(&addr) {
                            peers.push(addr);
                        }
                    }
                    PeerEntry::Host(host, port) => {
                        if !peer_hosts.iter().any(|(h, p)| *h == host && *p == port) {
                            peer_hosts.push((host, port));
                        }
                    }
                },
                Param::SelectOnly => parse_select_only(&value, &mut select_only)?,
                Param::ExactLength => {
                    let n = parse_decimal::<u64>(&value)
                        .ok_or_else(|| MagnetError::BadExactLength(value.clone()))?;
                    if exact_length.is_none() {
                        exact_length = Some(n);
                    }
                }
            }
        }

        Ok(Magnet {
            info_hash: info_hash_from_topics(&topics)?,
            display_name,
            trackers,
            peers,
            peer_hosts,
            web_seeds,
            select_only,
            exact_length,
        })
    }

    /// The canonical magnet URI; see the [module documentation](self).
    /// Same as `to_string()`.
    pub fn to_uri(&self) -> String {
        self.to_string()
    }
}

impl FromStr for Magnet {
    type Err = MagnetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Magnet::parse(s)
    }
}

impl fmt::Display for Magnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "magnet:?xt=urn:btih:{}", self.info_hash.to_hex())?;
        if let Some(name) = self.display_name.as_deref().filter(|n| !n.is_empty()) {
            write!(f, "&dn={}", utf8_percent_encode(name, VALUE_ENCODE_SET))?;
        }
        if let Some(bytes) = self.exact_length {
            write!(f, "&xl={bytes}")?;
        }
        for tracker in self.trackers.iter().filter(|t| !t.is_empty()) {
            write!(f, "&tr={}", utf8_percent_encode(tracker, VALUE_ENCODE_SET))?;
        }
        for seed in self.web_seeds.iter().filter(|s| !s.is_empty()) {
            write!(f, "&ws={}", utf8_percent_encode(seed, VALUE_ENCODE_SET))?;
        }
        for peer in &self.peers {
            let text = peer.to_string();
            write!(f, "&x.pe={}", utf8_percent_encode(&text, VALUE_ENCODE_SET))?;
        }
        for (host, port) in &self.peer_hosts {
            let text = format!("{host}:{port}");
            write!(f, "&x.pe={}", utf8_percent_encode(&text, VALUE_ENCODE_SET))?;
        }
        let mut sep = "&so=";
        for selection in &self.select_only {
            write!(f, "{sep}{selection}")?;
            sep = ",";
        }
        Ok(())
    }
}

/// The parameters this module understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    ExactTopic,
    DisplayName,
    Tracker,
    WebSeed,
    Peer,
    SelectOnly,
    ExactLength,
}

impl Param {
    /// Maps a parameter name (case-insensitive, optional `.N` suffix) to a
    /// known parameter.
    fn classify(key: &str) -> Option<Param> {
        let lower = key.to_ascii_lowercase();
        let base = match lower.rsplit_once('.') {
            Some((base, index))
                if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) =>
            {
                base
            }
            _ => lower.as_str(),
        };
        Some(match base {
            "xt" => Param::ExactTopic,
            "dn" => Param::DisplayName,
            "tr" => Param::Tracker,
            "ws" => Param::WebSeed,
            "x.pe" => Param::Peer,
            "so" => Param::SelectOnly,
            "xl" => Param::ExactLength,
            _ => return None,
        })
    }
}

/// Strictly percent-decodes `raw` (the value of parameter `key`).
fn decode(key: &str, raw: &str, plus_is_space: bool) -> Result<String, MagnetError> {
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            match (bytes.next(), bytes.next()) {
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {}
                _ => {
                    return Err(MagnetError::BadPercentEncoding {
                        param: key.to_owned(),
                    })
                }
            }
        }
    }
    let spaced;
    let raw = if plus_is_space && raw.contains('+') {
        spaced = raw.replace('+', " ");
        spaced.as_str()
    } else {
        raw
    };
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| MagnetError::NotUtf8 {
            param: key.to_owned(),
        })
}

/// Appends `value` unless it is empty or already present.
fn push_unique(list: &mut Vec<String>, value: String) {
    if !value.is_empty() && !list.contains(&value) {
        list.push(value);
    }
}

/// `prefix`-stripped `s`, comparing the prefix ASCII-case-insensitively.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    match s.split_at_checked(prefix.len()) {
        Some((head, tail)) if head.eq_ignore_ascii_case(prefix) => Some(tail),
        _ => None,
    }
}

/// Picks the info-hash from the decoded `xt` values.
fn info_hash_from_topics(topics: &[String]) -> Result<InfoHash, MagnetError> {
    if let Some(hash) = topics
        .iter()
        .find_map(|t| strip_prefix_ignore_case(t, "urn:btih:"))
    {
        return InfoHash::from_hex_or_base32(hash).map_err(|reason| MagnetError::BadInfoHash {
            hash: hash.to_owned(),
            reason,
        });
    }
    if topics
        .iter()
        .any(|t| strip_prefix_ignore_case(t, "urn:btmh:").is_some())
    {
        return Err(MagnetError::V2Only);
    }
    match topics.first() {
        Some(topic) => Err(MagnetError::UnsupportedTopic(topic.clone())),
        None => Err(MagnetError::MissingExactTopic),
    }
}

/// A parsed `x.pe` value.
enum PeerEntry {
    Addr(SocketAddr),
    Host(String, u16),
}

/// Parses an `x.pe` value: `ipv4:port`, `[ipv6]:port` or `hostname:port`.
fn parse_peer(value: &str) -> Result<PeerEntry, MagnetError> {
    let bad = || MagnetError::BadPeer(value.to_owned());
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return if addr.port() == 0 {
            Err(bad())
        } else {
            Ok(PeerEntry::Addr(addr))
        };
    }
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let port = parse_decimal::<u16>(port)
        .filter(|&p| p != 0)
        .ok_or_else(bad)?;
    if is_hostname(host) {
        Ok(PeerEntry::Host(host.to_owned(), port))
    } else {
        Err(bad())
    }
}

/// Whether `host` is a plausible DNS name (and not a mangled IPv4 literal).
fn is_hostname(host: &str) -> bool {
    (1..=MAX_HOSTNAME_LEN).contains(&host.len())
        && host.split('.').all(|label| {
            (1..=MAX_LABEL_LEN).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Parses plain decimal digits (no sign, no spaces) into `T`.
fn parse_decimal<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an `so` value and appends its entries to `out`.
fn parse_select_only(value: &str, out: &mut Vec<FileSelection>) -> Result<(), MagnetError> {
    let bad = || MagnetError::BadSelectOnly(value.to_owned());
    for token in value.split(',') {
        let selection = match token.split_once('-') {
            Some((first, last)) => {
                let first = parse_decimal::<usize>(first).ok_or_else(bad)?;
                let last = parse_decimal::<usize>(last).ok_or_else(bad)?;
                if first > last {
                    return Err(bad());
                }
                FileSelection::Range { first, last }
            }
            None => FileSelection::Index(parse_decimal::<usize>(token).ok_or_else(bad)?),
        };
        out.push(selection);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    const HEX: &str = "c9e15763f722f23e98a29decdfae341b98d53056";

    fn hash() -> InfoHash {
        InfoHash::from_hex_or_base32(HEX).unwrap()
    }

    fn parse(s: &str) -> Magnet {
        Magnet::parse(s).unwrap_or_else(|e| panic!("{s:?} failed: {e}"))
    }

    fn err(s: &str) -> MagnetError {
        match Magnet::parse(s) {
            Ok(m) => panic!("{s:?} parsed as {m:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn minimal_hex() {
        let m = parse(&format!("magnet:?xt=urn:btih:{HEX}"));
        assert_eq!(m, Magnet::new(hash()));
        assert!(m.selects_file(0));
    }

    #[test]
    fn base32_equals_hex() {
        let b32 = hash().to_base32();
        assert_eq!(b32.len(), 32);
        let from_b32 = parse(&format!("magnet:?xt=urn:btih:{b32}"));
        let from_lower_b32 = parse(&format!("magnet:?xt=urn:btih:{}", b32.to_lowercase()));
        let from_hex = parse(&format!("magnet:?xt=urn:btih:{HEX}"));
        assert_eq!(from_b32.info_hash, from_hex.info_hash);
        assert_eq!(from_lower_b32.info_hash, from_hex.info_hash);
        assert_eq!(from_b32.info_hash.to_hex(), HEX);
    }

    #[test]
    fn scheme_urn_keys_and_hex_case_insensitive() {
        let m = parse(&format!(
            "  MAGNET:?XT=URN:BTIH:{}&DN=x&Tr=http%3A%2F%2Fa\n",
            HEX.to_uppercase()
        ));
        assert_eq!(m.info_hash, hash());
        assert_eq!(m.display_name.as_deref(), Some("x"));
        assert_eq!(m.trackers, ["http://a"]);
    }

    #[test]
    fn percent_encoded_xt() {
        let m = parse(&format!("magnet:?xt=urn%3Abtih%3A{HEX}"));
        assert_eq!(m.info_hash, hash());
    }

    #[test]
    fn display_name_percent_and_plus() {
        let m = parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=Big%20Buck+Bunny%2B1"
        ));
        assert_eq!(m.display_name.as_deref(), Some("Big Buck Bunny+1"));
        let m = parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%E2%9C%93%20ok"));
        assert_eq!(m.display_name.as_deref(), Some("\u{2713} ok"));
    }

    #[test]
    fn first_display_name_wins_and_empty_is_absent() {
        let m = parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=&dn=first&dn=second"));
        assert_eq!(m.display_name.as_deref(), Some("first"));
        let m = parse(&format!("magnet:?xt=urn:btih:{HEX}&dn="));
        assert_eq!(m.display_name, None);
    }

    #[test]
    fn trackers_decoded_ordered_deduplicated() {
        let m = parse(&format!(
            "magnet:?xt=urn:btih:{HEX}\
             &tr=udp%3A%2F%2Ftracker.example%3A1337%2Fannounce\
             &tr=http%3A%2F%2Ft2.example%2Fannounce%3Fpasskey%3Da%2Bb\
             &tr=udp%3A%2F%2Ftracker.example%3A1337%2Fannounce\
             &tr=udp://plain.example:80/announce\
             &tr="
        ));
        assert_eq!(
            m.trackers,
            [
                "udp://tracker.example:1337/announce",
                "http://t2.example/announce?passkey=a+b",
                "udp://plain.example:80/announce",
            ]
        );
    }

    #[test]
    fn indexed_trackers() {
        let m = parse(&format!(
            "magnet:?xt.1=urn:btih:{HEX}&tr.1=udp%3A%2F%2Fa%3A1&tr.2=udp%3A%2F%2Fb%3A2&tr=udp%3A%2F%2Fa%3A1"
        ));
        assert_eq!(m.info_hash, hash());
        assert_eq!(m.trackers, ["udp://a:1", "udp://b:2"]);
    }

    #[test]
    fn peers_v4_v6_and_hosts() {
        let m = parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4:6881&x.pe=%5B%3A%3A1%5D%3A6882\
             &x.pe=[2001:db8::7]:51413&x.pe=1.2.3.4:6881&x.pe=peer.example.org:6881\
             &X.PE=peer.example.org%3A6881"
        ));
        assert_eq!(
            m.peers,
            [
                SocketAddr::from((Ipv4Addr::new(1, 2, 3, 4), 6881)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, 6882)),
                SocketAddr::from(("2001:db8::7".parse::<Ipv6Addr>().unwrap(), 51413)),
            ]
        );
        assert_eq!(m.peer_hosts, [("peer.example.org".to_owned(), 6881)]);
    }

    #[test]
    fn web_seeds() {
        let m = parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&ws=https%3A%2F%2Fseed.example%2Ffiles%2Fa%2520b&ws=http://s2.example/"
        ));
        assert_eq!(
            m.web_seeds,
            ["https://seed.example/files/a%20b", "http://s2.example/"]
        );
    }

    #[test]
    fn select_only_ranges() {
        let m = parse(&format!("magnet:?xt=urn:btih:{HEX}&so=0,2,4-6&so=9-9"));
        assert_eq!(
            m.select_only,
            [
                FileSelection::Index(0),
                FileSelection::Index(2),
                FileSelection::Range { first: 4, last: 6 },
                FileSelection::Range { first: 9, last: 9 },
            ]
        );
        let selected: Vec<usize> = (0..12).filter(|&i| m.selects_file(i)).collect();
        assert_eq!(selected, [0, 2, 4, 5, 6, 9]);
        // Percent-encoded commas are decoded too.
        let m2 = parse(&format!("magnet:?xt=urn:btih:{HEX}&so=0%2C2%2C4-6%2C9-9"));
        assert_eq!(m2.select_only, m.select_only);
    }

    #[test]
    fn exact_length() {
        let m = parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&xl=18446744073709551615&xl=5"
        ));
        assert_eq!(m.exact_length, Some(u64::MAX));
    }

    #[test]
    fn multiple_topics_first_btih_wins() {
        let other = "0123456789abcdef0123456789abcdef01234567";
        let m = parse(&format!(
            "magnet:?xt=urn:sha1:XYZ&xt=urn:btmh:1220{HEX}{HEX}&xt=urn:btih:{HEX}&xt=urn:btih:{other}"
        ));
        assert_eq!(m.info_hash, hash());
        // Only the first btih is validated.
        let m = parse(&format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btih:nonsense"));
        assert_eq!(m.info_hash, hash());
    }

    #[test]
    fn unknown_and_odd_segments_ignored() {
        let m = parse(&format!(
            "magnet:?&&xt=urn:btih:{HEX}&&foo=%zz&kt=a+b&as=http://x&bare&x.foo=1&tr.x=1&"
        ));
        assert_eq!(m, Magnet::new(hash()));
    }

    #[test]
    fn canonical_format() {
        let m = Magnet::new(hash())
            .with_display_name("My File (1).iso")
            .with_exact_length(1234)
            .with_tracker("udp://tracker.example:1337/announce")
            .with_tracker("udp://tracker.example:1337/announce")
            .with_tracker("http://t.example/a?b=c&d=e")
            .with_web_seed("https://seed.example/f")
            .with_peer(SocketAddr::from((Ipv4Addr::new(1, 2, 3, 4), 6881)))
            .with_peer(SocketAddr::from((Ipv6Addr::LOCALHOST, 6881)))
            .with_selection(FileSelection::Index(0))
            .with_selection(FileSelection::Range { first: 4, last: 6 });
        let uri = m.to_uri();
        assert_eq!(
            uri,
            format!(
                "magnet:?xt=urn:btih:{HEX}&dn=My%20File%20%281%29.iso&xl=1234\
                 &tr=udp%3A%2F%2Ftracker.example%3A1337%2Fannounce\
                 &tr=http%3A%2F%2Ft.example%2Fa%3Fb%3Dc%26d%3De\
                 &ws=https%3A%2F%2Fseed.example%2Ff\
                 &x.pe=1.2.3.4%3A6881&x.pe=%5B%3A%3A1%5D%3A6881&so=0,4-6"
            )
        );
        assert_eq!(m.to_string(), uri);
        assert_eq!(uri.parse::<Magnet>().unwrap(), m);
    }

    #[test]
    fn base32_input_formats_as_hex() {
        let m = parse(&format!("magnet:?xt=urn:btih:{}", hash().to_base32()));
        assert_eq!(m.to_uri(), format!("magnet:?xt=urn:btih:{HEX}"));
    }

    #[test]
    fn round_trip_real_world_style() {
        let input = format!(
            "magnet:?xt=urn:btih:{}&dn=Some+Linux+ISO%20%5B64-bit%5D\
             &tr=udp%3A%2F%2Ftracker.opentrackr.org%3A1337%2Fannounce\
             &tr.1=udp%3A%2F%2Fopen.stealth.si%3A80%2Fannounce\
             &ws=http%3A%2F%2Fmirror.example%2Fiso%2F&x.pe=10.0.0.1:6881\
             &x.pe=[fe80::1%252]:6881&x.pe=seed.example:51413&so=1,3-4&xl=42",
            hash().to_base32()
        );
        let m = parse(&input);
        assert_eq!(m.display_name.as_deref(), Some("Some Linux ISO [64-bit]"));
        assert_eq!(m.peers.len(), 2);
        let again = parse(&m.to_uri());
        assert_eq!(again, m);
        assert_eq!(again.to_uri(), m.to_uri());
    }

    #[test]
    fn empty_builder_values_are_skipped() {
        let m = Magnet::new(hash())
            .with_display_name("")
            .with_tracker("")
            .with_web_seed("");
        assert_eq!(m, Magnet::new(hash()));
    }

    #[test]
    fn error_not_magnet() {
        for s in [
            "",
            "   ",
            "http://example.com/?xt=urn:btih:x",
            "magnet:",
            "magnet:xt=urn:btih:c9e15763f722f23e98a29decdfae341b98d53056",
            "magne",
            "\u{e9}\u{e9}\u{e9}\u{e9}:?",
            "magnet\u{e9}?",
        ] {
            assert_eq!(err(s), MagnetError::NotMagnet, "{s:?}");
        }
    }

    #[test]
    fn error_missing_xt() {
        assert_eq!(err("magnet:?"), MagnetError::MissingExactTopic);
        assert_eq!(
            err("magnet:?dn=x&tr=udp%3A%2F%2Fa&xt="),
            MagnetError::MissingExactTopic
        );
    }

    #[test]
    fn error_unsupported_topic() {
        assert_eq!(
            err("magnet:?xt=urn:sha1:YNCKHTQCWBTRNJIV4WNAE52SJUQCZO5C&xt=urn:ed2k:x"),
            MagnetError::UnsupportedTopic("urn:sha1:YNCKHTQCWBTRNJIV4WNAE52SJUQCZO5C".into())
        );
    }

    #[test]
    fn error_v2_only() {
        let e = err(&format!("magnet:?xt=urn:btmh:1220{HEX}{}", &HEX[..24]));
        assert_eq!(e, MagnetError::V2Only);
        assert!(e.to_string().contains("v2-only"));
        assert!(e.to_string().contains("not supported yet"));
    }

    /// The reason is in the message and not also a `source`: an error chain
    /// (`anyhow`'s `{:#}`) must say it once.
    #[test]
    fn bad_info_hash_says_its_reason_once() {
        let e = err("magnet:?xt=urn:btih:zz");
        assert!(std::error::Error::source(&e).is_none());
        let text = e.to_string();
        assert_eq!(text.matches("got 2 characters").count(), 1, "{text}");
        assert!(text.contains("\"zz\""), "{text}");
    }

    #[test]
    fn error_bad_info_hash() {
        assert_eq!(
            err("magnet:?xt=urn:btih:abc"),
            MagnetError::BadInfoHash {
                hash: "abc".into(),
                reason: InfoHashParseError::BadLength(3),
            }
        );
        assert_eq!(
            err(&format!("magnet:?xt=urn:btih:{}", "zz".repeat(20))),
            MagnetError::BadInfoHash {
                hash: "zz".repeat(20),
                reason: InfoHashParseError::BadDigit("hex digits"),
            }
        );
        assert_eq!(
            err(&format!("magnet:?xt=urn:btih:{}", "1".repeat(32))),
            MagnetError::BadInfoHash {
                hash: "1".repeat(32),
                reason: InfoHashParseError::BadDigit("base32 characters"),
            }
        );
        assert!(matches!(
            err("magnet:?xt=urn:btih:"),
            MagnetError::BadInfoHash { .. }
        ));
        // Multi-byte characters of the right byte length must not panic.
        assert!(matches!(
            err(&format!("magnet:?xt=urn:btih:{}", "\u{e9}".repeat(20))),
            MagnetError::BadInfoHash { .. }
        ));
        assert!(matches!(
            err(&format!("magnet:?xt=urn:btih:{}", "\u{e9}".repeat(16))),
            MagnetError::BadInfoHash { .. }
        ));
    }

    #[test]
    fn error_bad_percent_encoding() {
        for (s, param) in [
            (format!("magnet:?xt=urn:btih:{HEX}&dn=a%zzb"), "dn"),
            (format!("magnet:?xt=urn:btih:{HEX}&tr.2=udp%3"), "tr.2"),
            (format!("magnet:?xt=urn:btih:{HEX}&ws=%"), "ws"),
            (format!("magnet:?xt=urn:btih:{HEX}%"), "xt"),
            (format!("magnet:?xt=urn:btih:{HEX}&x.pe=%%41"), "x.pe"),
        ] {
            assert_eq!(
                err(&s),
                MagnetError::BadPercentEncoding {
                    param: param.into()
                },
                "{s:?}"
            );
        }
    }

    #[test]
    fn error_not_utf8() {
        assert_eq!(
            err(&format!("magnet:?xt=urn:btih:{HEX}&dn=%FF%FE")),
            MagnetError::NotUtf8 { param: "dn".into() }
        );
        assert_eq!(
            err(&format!("magnet:?xt=urn:btih:{HEX}&TR=%C3")),
            MagnetError::NotUtf8 { param: "TR".into() }
        );
    }

    #[test]
    fn error_bad_peer() {
        for bad in [
            "1.2.3.4",
            "1.2.3.4:",
            "1.2.3.4:0",
            "1.2.3.4:65536",
            "1.2.3.4:+80",
            "1.2.3.999:6881",
            "::1:6881",
            "[::1]",
            "[::1]:0",
            "[::g]:6881",
            ":6881",
            "host name:6881",
            "bad..host:6881",
            "[fe80::1%eth0]:6881",
        ] {
            let enc = utf8_percent_encode(bad, VALUE_ENCODE_SET).to_string();
            assert_eq!(
                err(&format!("magnet:?xt=urn:btih:{HEX}&x.pe={enc}")),
                MagnetError::BadPeer(bad.into()),
                "{bad:?}"
            );
        }
        let e = err(&format!("magnet:?xt=urn:btih:{HEX}&x.pe=nope"));
        assert!(e.to_string().contains("\"nope\""));
    }

    #[test]
    fn error_bad_select_only() {
        for bad in [
            "a",
            "4-",
            "-4",
            "6-4",
            "1,,2",
            "1,",
            ",1",
            "1-2-3",
            "+1",
            " 1",
            "1 - 2",
            "99999999999999999999999999",
        ] {
            let enc = utf8_percent_encode(bad, VALUE_ENCODE_SET).to_string();
            assert_eq!(
                err(&format!("magnet:?xt=urn:btih:{HEX}&so={enc}")),
                MagnetError::BadSelectOnly(bad.into()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_bad_exact_length() {
        for bad in ["-1", "+1", "1.5", "18446744073709551616", "12 "] {
            let enc = utf8_percent_encode(bad, VALUE_ENCODE_SET).to_string();
            assert_eq!(
                err(&format!("magnet:?xt=urn:btih:{HEX}&xl={enc}")),
                MagnetError::BadExactLength(bad.into()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_messages_are_descriptive() {
        assert!(MagnetError::NotMagnet.to_string().contains("magnet:?"));
        assert!(MagnetError::MissingExactTopic.to_string().contains("xt"));
        let e = err("magnet:?xt=urn:btih:abc");
        assert!(e.to_string().contains("\"abc\""), "{e}");
        // The reason is part of the message (not a separate `source`).
        assert!(e.to_string().contains("got 3 characters"), "{e}");
    }

    fn arb_hostname() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9-]{0,10}(\\.[a-z0-9_][a-z0-9_-]{0,10}){0,3}"
    }

    fn arb_peer() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<u32>(), 1u16..).prop_map(|(ip, port)| {
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))
            }),
            (any::<u128>(), 1u16.., prop_oneof![Just(0u32), any::<u32>()]).prop_map(
                |(ip, port, scope)| {
                    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, scope))
                }
            ),
        ]
    }

    fn arb_selection() -> impl Strategy<Value = FileSelection> {
        prop_oneof![
            any::<usize>().prop_map(FileSelection::Index),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| FileSelection::Range {
                first: a.min(b),
                last: a.max(b),
            }),
        ]
    }

    fn unique<T: PartialEq>(v: Vec<T>) -> Vec<T> {
        let mut out = Vec::new();
        for x in v {
            if !out.contains(&x) {
                out.push(x);
            }
        }
        out
    }

    fn arb_magnet() -> impl Strategy<Value = Magnet> {
        (
            any::<[u8; 20]>(),
            proptest::option::of(".+"),
            proptest::collection::vec(".+", 0..4),
            proptest::collection::vec(arb_peer(), 0..4),
            proptest::collection::vec((arb_hostname(), 1u16..), 0..3),
            proptest::collection::vec(".+", 0..3),
            proptest::collection::vec(arb_selection(), 0..5),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(h, dn, tr, pe, hosts, ws, so, xl)| Magnet {
                info_hash: InfoHash(h),
                display_name: dn,
                trackers: unique(tr),
                peers: unique(pe),
                peer_hosts: unique(hosts),
                web_seeds: unique(ws),
                select_only: so,
                exact_length: xl,
            })
    }

    /// Query strings built from known keys and tricky value characters.
    fn arb_query() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("xt"),
            Just("dn"),
            Just("tr"),
            Just("tr.1"),
            Just("ws"),
            Just("x.pe"),
            Just("so"),
            Just("xl"),
            Just("XT"),
            Just("zz"),
        ];
        let value = prop_oneof![
            "[%0-9a-fA-F+:\\[\\]\\-,.=&]{0,20}",
            Just(format!("urn:btih:{HEX}")),
            Just("urn:btih:".to_owned()),
            Just("urn:btmh:1220".to_owned()),
            "urn:btih:[a-zA-Z0-9%\u{e9}]{30,42}",
            ".{0,12}",
        ];
        proptest::collection::vec((key, value), 0..8).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn prop_round_trip(m in arb_magnet()) {
            let uri = m.to_uri();
            prop_assert!(uri.is_ascii());
            prop_assert!(!uri.contains(' '));
            let parsed = Magnet::parse(&uri);
            prop_assert_eq!(parsed.as_ref(), Ok(&m), "uri: {}", uri);
            prop_assert_eq!(parsed.map(|p| p.to_uri()), Ok(uri));
        }

        #[test]
        fn prop_arbitrary_strings_never_panic(s in any::<String>()) {
            let _ = Magnet::parse(&s);
        }

        #[test]
        fn prop_magnet_prefixed_arbitrary_never_panic(s in any::<String>()) {
            let _ = Magnet::parse(&format!("magnet:?{s}"));
            let _ = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&{s}"));
        }

        #[test]
        fn prop_structured_queries_never_panic(q in arb_query()) {
            // Whatever parses must also survive a format/parse round trip.
            if let Ok(m) = Magnet::parse(&format!("magnet:?{q}")) {
                prop_assert_eq!(Magnet::parse(&m.to_uri()), Ok(m));
            }
        }
    }
}
