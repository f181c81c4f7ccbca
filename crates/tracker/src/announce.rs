//! What an announce asks for and what a tracker answers, common to HTTP and
//! UDP; plus the bounds applied to every answer.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rivulet_core::{InfoHash, PeerId};

/// Fewest seconds between announces that rivulet accepts from a tracker.
/// Smaller `interval`/`min interval` values are raised to this.
pub const MIN_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(60);

/// Most seconds between announces that rivulet accepts from a tracker (2 h).
/// Larger values are lowered to this, so that a tracker cannot make rivulet go
/// quiet for days.
pub const MAX_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(2 * 60 * 60);

/// Interval used when the tracker gives none, or zero, or a negative one (30 min,
/// what most trackers ask for).
pub const DEFAULT_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Most peers kept from one announce response (IPv4, IPv6 and dictionary peers
/// together). The rest are counted in [`AnnounceResponse::skipped_peers`].
pub const MAX_PEERS_PER_RESPONSE: usize = 2000;

/// Most characters kept of a text the tracker sends (failure reason, warning).
pub const MAX_MESSAGE_CHARS: usize = 256;

/// Longest host name accepted for a peer in a dictionary peer list.
pub const MAX_HOSTNAME_LEN: usize = 253;

/// Longest `tracker id` kept; a longer one is ignored.
pub const MAX_TRACKER_ID_LEN: usize = 256;

/// The `event` of an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Event {
    /// A regular announce (the parameter is omitted over HTTP, 0 over UDP).
    #[default]
    None,
    /// The first announce of a download or seed.
    Started,
    /// The download just finished (not sent when starting already complete).
    Completed,
    /// The torrent is being stopped.
    Stopped,
}

impl Event {
    /// The HTTP `event` value, `None` for [`Event::None`].
    pub fn http_name(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
        }
    }

    /// The BEP 15 number: none 0, completed 1, started 2, stopped 3.
    pub fn udp_code(self) -> u32 {
        match self {
            Event::None => 0,
            Event::Completed => 1,
            Event::Started => 2,
            Event::Stopped => 3,
        }
    }
}

/// What we tell an HTTP tracker of our encryption (MSE/PE), so that it
/// can hand out peers that can talk to us (the MSE specification's
/// tracker extension; UDP trackers have no such field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Crypto {
    /// Plaintext only: nothing is said.
    #[default]
    Plaintext,
    /// We take both: `supportcrypto=1`.
    Supported,
    /// Encrypted connections only: `supportcrypto=1&requirecrypto=1`.
    Required,
}

/// One announce: who we are and how far along we are with a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// The port we accept peer connections on.
    pub port: u16,
    /// Bytes uploaded since the `started` event.
    pub uploaded: u64,
    /// Bytes downloaded (and verified) since the `started` event.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
    /// Why this announce is sent.
    pub event: Event,
    /// How many peers we would like; `None` lets the tracker choose (usually 50).
    pub numwant: Option<u32>,
    /// A random number fixed for the session, so the tracker recognises us when
    /// our IP address changes (BEP 7); sent as 8 hex digits over HTTP.
    pub key: u32,
    /// The `tracker id` the tracker gave in an earlier response, echoed back.
    pub tracker_id: Option<String>,
    /// Ask for the compact peer list (BEP 23); over UDP peers are always compact.
    pub compact: bool,
    /// Our encryption support (HTTP only).
    pub crypto: Crypto,
}

/// Where to reach a peer that a tracker told us about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// An IPv4 or IPv6 address and port: the usual case.
    Ip(SocketAddr),
    /// A host name from a dictionary peer list, to be resolved by the caller.
    Host {
        /// The DNS name (at most [`MAX_HOSTNAME_LEN`] characters, letters,
        /// digits, `-`, `_` and `.` only).
        name: String,
        /// The port.
        port: u16,
    },
}

/// A peer from an announce response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Where to connect.
    pub addr: PeerAddr,
    /// Its peer id, when a dictionary peer list gave one (compact lists never do).
    pub peer_id: Option<PeerId>,
}

/// A tracker's answer to an announce, over HTTP or UDP, with every value bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// How long to wait before the next regular announce, within
    /// [`MIN_ANNOUNCE_INTERVAL`]`..=`[`MAX_ANNOUNCE_INTERVAL`].
    pub interval: Duration,
    /// The shortest wait the tracker tolerates before an extra announce (HTTP
    /// `min interval`), bounded like `interval` and never above it.
    pub min_interval: Option<Duration>,
    /// `tracker id` to send back in later announces (valid UTF-8, at most
    /// [`MAX_TRACKER_ID_LEN`] bytes; otherwise dropped).
    pub tracker_id: Option<String>,
    /// Seeders in the swarm, if the tracker said.
    pub complete: Option<u32>,
    /// Leechers in the swarm, if the tracker said.
    pub incomplete: Option<u32>,
    /// `warning message`, sanitized and bounded like failure messages.
    pub warning: Option<String>,
    /// The peers, without duplicates, port 0 or unspecified addresses; at most
    /// [`MAX_PEERS_PER_RESPONSE`].
    pub peers: Vec<Peer>,
    /// Peer entries dropped: malformed, port 0, unspecified address, duplicate,
    /// or beyond the cap.
    pub skipped_peers: usize,
}

/// Swarm counts for one torrent from a scrape (BEP 48, BEP 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScrapeStats {
    /// Seeders (`complete`); 0 when missing or invalid.
    pub complete: u32,
    /// Completed downloads ever reported (`downloaded`); 0 when missing or invalid.
    pub downloaded: u32,
    /// Leechers (`incomplete`); 0 when missing or invalid.
    pub incomplete: u32,
}

/// A tracker's answer to a scrape.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScrapeResponse {
    /// Counts for the requested info-hashes the tracker knew, in request order.
    /// Info-hashes the tracker did not mention are absent; ones not requested
    /// are ignored.
    pub files: Vec<(InfoHash, ScrapeStats)>,
    /// BEP 48 `flags` → `min_request_interval`, bounded like announce intervals.
    pub min_request_interval: Option<Duration>,
}

impl ScrapeResponse {
    /// The counts for `info_hash`, if the tracker gave them.
    pub fn get(&self, info_hash: &InfoHash) -> Option<ScrapeStats> {
        self.files
            .iter()
            .find(|(h, _)| h == info_hash)
            .map(|(_, s)| *s)
    }
}

/// Turns a tracker's interval in seconds into a bounded duration; `None`, zero
/// and negative values give `None`.
pub(crate) fn bounded_interval(seconds: Option<i64>) -> Option<Duration> {
    let s = seconds.filter(|s| *s > 0)?;
    let s = u64::try_from(s).ok()?;
    Some(Duration::from_secs(s).clamp(MIN_ANNOUNCE_INTERVAL, MAX_ANNOUNCE_INTERVAL))
}

/// A count from a tracker as `u32`, `None` if negative or too large.
pub(crate) fn count(n: Option<i64>) -> Option<u32> {
    n.and_then(|n| u32::try_from(n).ok())
}

/// Collects peers for one response: drops port 0, unspecified addresses and
/// duplicates, and stops at [`MAX_PEERS_PER_RESPONSE`], counting all it drops.
#[derive(Debug, Default)]
pub(crate) struct PeerCollector {
    pub(crate) peers: Vec<Peer>,
    seen: HashSet<PeerAddr>,
    pub(crate) skipped: usize,
}

impl PeerCollector {
    /// Whether the cap is reached; further peers are only counted.
    pub(crate) fn full(&self) -> bool {
        self.peers.len() >= MAX_PEERS_PER_RESPONSE
    }

    /// Counts `n` peers dropped without looking at them.
    pub(crate) fn skip(&mut self, n: usize) {
        self.skipped = self.skipped.saturating_add(n);
    }

    /// Offers one peer.
    pub(crate) fn push(&mut self, addr: PeerAddr, peer_id: Option<PeerId>) {
        let usable = match &addr {
            PeerAddr::Ip(sa) => sa.port() != 0 && !sa.ip().is_unspecified(),
            PeerAddr::Host { port, .. } => *port != 0,
        };
        if !usable || self.full() || self.seen.contains(&addr) {
            self.skip(1);
            return;
        }
        self.seen.insert(addr.clone());
        self.peers.push(Peer { addr, peer_id });
    }

    /// Offers every entry of a compact peer string: 6 bytes (IPv4) or 18 bytes
    /// (IPv6) each, address then port, big-endian. A partial entry at the end is
    /// counted as skipped.
    pub(crate) fn push_compact(&mut self, bytes: &[u8], v6: bool) {
        let entry = if v6 { 18 } else { 6 };
        let mut chunks = bytes.chunks_exact(entry);
        while !self.full() {
            let Some(chunk) = chunks.next() else { break };
            if let Some(sa) = compact_addr(chunk) {
                self.push(PeerAddr::Ip(sa), None);
            }
        }
        // Whatever the loop did not reach: entries past the cap, and a tail
        // shorter than one entry (counted as one).
        let left = chunks.len() + usize::from(!chunks.remainder().is_empty());
        self.skip(left);
    }

    /// The collected peers and the number skipped.
    pub(crate) fn finish(self) -> (Vec<Peer>, usize) {
        (self.peers, self.skipped)
    }
}

/// One compact peer (6 or 18 bytes) as a socket address.
pub(crate) fn compact_addr(chunk: &[u8]) -> Option<SocketAddr> {
    match chunk.len() {
        6 => {
            let ip: [u8; 4] = chunk.get(..4)?.try_into().ok()?;
            let port: [u8; 2] = chunk.get(4..6)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::from(ip), u16::from_be_bytes(port)))
        }
        18 => {
            let ip: [u8; 16] = chunk.get(..16)?.try_into().ok()?;
            let port: [u8; 2] = chunk.get(16..18)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::from(ip), u16::from_be_bytes(port)))
        }
        _ => None,
    }
}

/// Tracker text made safe to show: invalid UTF-8 replaced, control and
/// bidirectional-override characters turned into spaces, runs of spaces
/// collapsed, trimmed, and cut to `max_chars` characters (with `…` when cut).
pub(crate) fn sanitize(bytes: &[u8], max_chars: usize) -> String {
    // Never look at more than 4 bytes per kept character: bounds the work on
    // a megabyte-long message.
    let limit = max_chars.saturating_mul(4);
    let cut_bytes = bytes.len() > limit;
    let head = bytes.get(..limit).unwrap_or(bytes);
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(head.len().min(max_chars));
    let mut chars = 0usize;
    let mut cut = cut_bytes;
    let mut pending_space = false;
    for c in text.chars() {
        let c = if c.is_control() || is_bidi_control(c) {
            ' '
        } else {
            c
        };
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        let needed = if pending_space { 2 } else { 1 };
        if chars + needed > max_chars {
            cut = true;
            break;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
        }
        out.push(c);
        chars += 1;
    }
    if cut {
        out.push('…');
    }
    out
}

/// Characters that reorder text on screen (Trojan-Source style spoofing).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `name` looks like a DNS host name we may hand to a resolver.
pub(crate) fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HOSTNAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63)
        && !name.starts_with('-')
}
