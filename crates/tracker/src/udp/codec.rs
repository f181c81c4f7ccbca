//! BEP 15 packets: encoders for what a client sends, a decoder for what a
//! tracker answers (and, for test trackers, an encoder for that too).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rivulet_core::InfoHash;

use crate::announce::{compact_addr, sanitize, AnnounceRequest, MAX_MESSAGE_CHARS};
use crate::TrackerError;

/// The magic constant that opens a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// Most info-hashes in one scrape request (BEP 15: "up to about 74").
pub const MAX_SCRAPE_HASHES: usize = 74;

/// Longest BEP 41 URL data (path and query of the `udp://` URL) sent with an
/// announce.
pub const MAX_URL_DATA_LEN: usize = 1024;

/// Largest datagram the decoder accepts; UDP cannot carry more.
pub const MAX_PACKET_LEN: usize = 65_535;

/// Size of a connect request and of a connect response.
pub const CONNECT_LEN: usize = 16;

/// Size of an announce request without BEP 41 options.
pub const ANNOUNCE_REQUEST_LEN: usize = 98;

/// Size of an announce response without peers.
pub const ANNOUNCE_RESPONSE_HEADER_LEN: usize = 20;

/// Size of a scrape response without entries, and of any response header.
pub const HEADER_LEN: usize = 8;

/// Size of one entry of a scrape response.
pub const SCRAPE_ENTRY_LEN: usize = 12;

/// BEP 15 action numbers.
pub mod action {
    /// Connect request/response.
    pub const CONNECT: u32 = 0;
    /// Announce request/response.
    pub const ANNOUNCE: u32 = 1;
    /// Scrape request/response.
    pub const SCRAPE: u32 = 2;
    /// Error response.
    pub const ERROR: u32 = 3;
}

/// The address family of the socket that talks to the tracker. An announce
/// response carries peers of that family: 6-byte IPv4 entries over IPv4,
/// 18-byte IPv6 entries over IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// IPv4: 6-byte peers.
    V4,
    /// IPv6: 18-byte peers.
    V6,
}

impl AddressFamily {
    /// The family of `addr` (the tracker's address, as the socket sees it).
    pub fn of(addr: &SocketAddr) -> Self {
        match addr.ip() {
            IpAddr::V4(_) => AddressFamily::V4,
            IpAddr::V6(_) => AddressFamily::V6,
        }
    }

    /// Bytes per peer in an announce response of this family.
    pub fn peer_len(self) -> usize {
        match self {
            AddressFamily::V4 => 6,
            AddressFamily::V6 => 18,
        }
    }
}

/// Optional fields of a UDP announce request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UdpAnnounceOptions {
    /// The IPv4 address field; `None` sends 0 (the tracker uses the packet's
    /// source address), which is what almost every client should send.
    pub ip: Option<Ipv4Addr>,
    /// BEP 41 URL data: the path and query of the `udp://` URL, e.g.
    /// `/announce?passkey=x`. Sent as URLData options of up to 255 bytes each
    /// followed by EndOfOptions; nothing is appended when `None` or empty.
    pub url_data: Option<Vec<u8>>,
}

/// A decoded swarm count triple from a UDP scrape response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UdpScrapeEntry {
    /// Seeders.
    pub seeders: i32,
    /// Completed downloads.
    pub completed: i32,
    /// Leechers.
    pub leechers: i32,
}

/// A packet from a UDP tracker, decoded but not interpreted: numbers are as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpResponse {
    /// Answer to a connect request.
    Connect {
        /// Echo of the request's transaction id.
        transaction_id: u32,
        /// The id to put in announce and scrape requests for the next minute.
        connection_id: u64,
    },
    /// Answer to an announce request.
    Announce {
        /// Echo of the request's transaction id.
        transaction_id: u32,
        /// Seconds to wait before the next announce.
        interval: i32,
        /// Leechers in the swarm.
        leechers: i32,
        /// Seeders in the swarm.
        seeders: i32,
        /// Peers, in the family the decoder was told (as sent: port 0 and
        /// duplicates included). At most 10,919 since packets are bounded.
        peers: Vec<SocketAddr>,
    },
    /// Answer to a scrape request: one entry per requested info-hash, in order.
    Scrape {
        /// Echo of the request's transaction id.
        transaction_id: u32,
        /// The counts.
        entries: Vec<UdpScrapeEntry>,
    },
    /// The tracker refused a request.
    Error {
        /// Echo of the request's transaction id.
        transaction_id: u32,
        /// The tracker's message, sanitized and bounded like HTTP failure reasons.
        message: String,
    },
}

impl UdpResponse {
    /// The transaction id the packet answers.
    pub fn transaction_id(&self) -> u32 {
        match self {
            UdpResponse::Connect { transaction_id, .. }
            | UdpResponse::Announce { transaction_id, .. }
            | UdpResponse::Scrape { transaction_id, .. }
            | UdpResponse::Error { transaction_id, .. } => *transaction_id,
        }
    }

    /// The packet's action number (see [`action`]).
    pub fn action(&self) -> u32 {
        match self {
            UdpResponse::Connect { .. } => action::CONNECT,
            UdpResponse::Announce { .. } => action::ANNOUNCE,
            UdpResponse::Scrape { .. } => action::SCRAPE,
            UdpResponse::Error { .. } => action::ERROR,
        }
    }

    /// The packet as a tracker would send it (for test trackers and round-trip
    /// tests). IPv4 peers are written as 6 bytes and IPv6 peers as 18, so a
    /// packet meant to decode should hold peers of one family only.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.action().to_be_bytes());
        out.extend_from_slice(&self.transaction_id().to_be_bytes());
        match self {
            UdpResponse::Connect { connection_id, .. } => {
                out.extend_from_slice(&connection_id.to_be_bytes());
            }
            UdpResponse::Announce {
                interval,
                leechers,
                seeders,
                peers,
                ..
            } => {
                out.extend_from_slice(&interval.to_be_bytes());
                out.extend_from_slice(&leechers.to_be_bytes());
                out.extend_from_slice(&seeders.to_be_bytes());
                for p in peers {
                    match p.ip() {
                        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
                        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
                    }
                    out.extend_from_slice(&p.port().to_be_bytes());
                }
            }
            UdpResponse::Scrape { entries, .. } => {
                for e in entries {
                    out.extend_from_slice(&e.seeders.to_be_bytes());
                    out.extend_from_slice(&e.completed.to_be_bytes());
                    out.extend_from_slice(&e.leechers.to_be_bytes());
                }
            }
            UdpResponse::Error { message, .. } => out.extend_from_slice(message.as_bytes()),
        }
        out
    }
}

/// A connect request: protocol id, action 0, transaction id.
///
/// ```
/// let p = rivulet_tracker::udp::encode_connect(0xdeadbeef);
/// assert_eq!(p, [0, 0, 4, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
/// ```
pub fn encode_connect(transaction_id: u32) -> [u8; CONNECT_LEN] {
    let mut out = [0u8; CONNECT_LEN];
    let (proto, rest) = out.split_at_mut(8);
    proto.copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    let (act, tid) = rest.split_at_mut(4);
    act.copy_from_slice(&action::CONNECT.to_be_bytes());
    tid.copy_from_slice(&transaction_id.to_be_bytes());
    out
}

/// An announce request (98 bytes, plus BEP 41 options when URL data is given).
///
/// Byte counts above `i64::MAX` are sent as `i64::MAX`; `numwant` `None` is
/// sent as -1 ("tracker's default") and values above `i32::MAX` as `i32::MAX`.
pub fn encode_announce(
    connection_id: u64,
    transaction_id: u32,
    req: &AnnounceRequest,
    opts: &UdpAnnounceOptions,
) -> Result<Vec<u8>, TrackerError> {
    let url_data = opts.url_data.as_deref().unwrap_or_default();
    if url_data.len() > MAX_URL_DATA_LEN {
        return Err(TrackerError::UrlDataTooLong {
            len: url_data.len(),
            max: MAX_URL_DATA_LEN,
        });
    }
    let clamp64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let numwant: i32 = match req.numwant {
        None => -1,
        Some(n) => i32::try_from(n).unwrap_or(i32::MAX),
    };
    let mut out = Vec::with_capacity(ANNOUNCE_REQUEST_LEN + url_data.len() + 16);
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&action::ANNOUNCE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(req.info_hash.as_bytes());
    out.extend_from_slice(req.peer_id.as_bytes());
    out.extend_from_slice(&clamp64(req.downloaded).to_be_bytes());
    out.extend_from_slice(&clamp64(req.left).to_be_bytes());
    out.extend_from_slice(&clamp64(req.uploaded).to_be_bytes());
    out.extend_from_slice(&req.event.udp_code().to_be_bytes());
    out.extend_from_slice(&opts.ip.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
    out.extend_from_slice(&req.key.to_be_bytes());
    out.extend_from_slice(&numwant.to_be_bytes());
    out.extend_from_slice(&req.port.to_be_bytes());
    if !url_data.is_empty() {
        for chunk in url_data.chunks(255) {
            out.push(0x2); // URLData
                           // `chunks(255)` yields at most 255 bytes.
            out.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(chunk);
        }
        out.push(0x0); // EndOfOptions
    }
    Ok(out)
}

/// A scrape request for 1 to [`MAX_SCRAPE_HASHES`] info-hashes.
pub fn encode_scrape(
    connection_id: u64,
    transaction_id: u32,
    info_hashes: &[InfoHash],
) -> Result<Vec<u8>, TrackerError> {
    if info_hashes.is_empty() {
        return Err(TrackerError::NoInfoHashes);
    }
    if info_hashes.len() > MAX_SCRAPE_HASHES {
        return Err(TrackerError::TooManyInfoHashes {
            count: info_hashes.len(),
            max: MAX_SCRAPE_HASHES,
        });
    }
    let mut out = Vec::with_capacity(16 + 20 * info_hashes.len());
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&action::SCRAPE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for h in info_hashes {
        out.extend_from_slice(h.as_bytes());
    }
    Ok(out)
}

/// Reads a big-endian `u32` at `at`; the caller has checked the length.
fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

fn be_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(i32::from_be_bytes(b))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

fn truncated(what: &'static str, len: usize, need: usize) -> TrackerError {
    TrackerError::UdpTruncated { what, len, need }
}

/// Decodes a packet from a UDP tracker. `family` is the address family of the
/// socket it arrived on, which decides the size of announce peers.
///
/// Connect responses may carry extra bytes after their 16 (ignored, as BEP 15
/// allows extensions); announce and scrape responses must be a whole number of
/// entries ([`TrackerError::UdpPartialEntry`] otherwise).
pub fn decode_response(bytes: &[u8], family: AddressFamily) -> Result<UdpResponse, TrackerError> {
    let len = bytes.len();
    if len > MAX_PACKET_LEN {
        return Err(TrackerError::UdpTooLarge { len });
    }
    let (Some(act), Some(transaction_id)) = (be_u32(bytes, 0), be_u32(bytes, 4)) else {
        return Err(truncated("header", len, HEADER_LEN));
    };
    match act {
        action::CONNECT => {
            let connection_id =
                be_u64(bytes, 8).ok_or_else(|| truncated("connect response", len, CONNECT_LEN))?;
            Ok(UdpResponse::Connect {
                transaction_id,
                connection_id,
            })
        }
        action::ANNOUNCE => {
            let (Some(interval), Some(leechers), Some(seeders)) =
                (be_i32(bytes, 8), be_i32(bytes, 12), be_i32(bytes, 16))
            else {
                return Err(truncated(
                    "announce response",
                    len,
                    ANNOUNCE_RESPONSE_HEADER_LEN,
                ));
            };
            let body = bytes
                .get(ANNOUNCE_RESPONSE_HEADER_LEN..)
                .unwrap_or_default();
            let entry_len = family.peer_len();
            let chunks = body.chunks_exact(entry_len);
            let extra = chunks.remainder().len();
            if extra != 0 {
                return Err(TrackerError::UdpPartialEntry {
                    what: "announce response",
                    extra,
                    entry_len,
                });
            }
            let peers = chunks.filter_map(compact_addr).collect();
            Ok(UdpResponse::Announce {
                transaction_id,
                interval,
                leechers,
                seeders,
                peers,
            })
        }
        action::SCRAPE => {
            let body = bytes.get(HEADER_LEN..).unwrap_or_default();
            let chunks = body.chunks_exact(SCRAPE_ENTRY_LEN);
            let extra = chunks.remainder().len();
            if extra != 0 {
                return Err(TrackerError::UdpPartialEntry {
                    what: "scrape response",
                    extra,
                    entry_len: SCRAPE_ENTRY_LEN,
                });
            }
            let entries = chunks
                .filter_map(|c| {
                    Some(UdpScrapeEntry {
                        seeders: be_i32(c, 0)?,
                        completed: be_i32(c, 4)?,
                        leechers: be_i32(c, 8)?,
                    })
                })
                .collect();
            Ok(UdpResponse::Scrape {
                transaction_id,
                entries,
            })
        }
        action::ERROR => {
            let text = bytes.get(HEADER_LEN..).unwrap_or_default();
            Ok(UdpResponse::Error {
                transaction_id,
                message: sanitize(text, MAX_MESSAGE_CHARS),
            })
        }
        other => Err(TrackerError::UdpUnknownAction(other)),
    }
}

/// The parts of a `udp://host:port/path?query` tracker URL a driver needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UdpTrackerUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// UDP port (required: UDP trackers have no default port).
    pub port: u16,
    /// Path and query (`/announce?passkey=x`), sent as BEP 41 URL data; empty
    /// when the URL has neither.
    pub url_data: String,
}

impl UdpTrackerUrl {
    /// Parses a `udp://` tracker URL (scheme case-insensitive; a `#fragment`
    /// is dropped).
    ///
    /// ```
    /// use rivulet_tracker::udp::UdpTrackerUrl;
    ///
    /// let u = UdpTrackerUrl::parse("udp://[::1]:6969/announce?k=v").unwrap();
    /// assert_eq!((u.host.as_str(), u.port, u.url_data.as_str()), ("::1", 6969, "/announce?k=v"));
    /// ```
    pub fn parse(url: &str) -> Result<Self, TrackerError> {
        let bad = |reason| TrackerError::InvalidUrl {
            url: url.chars().take(200).collect(),
            reason,
        };
        if url.len() > crate::MAX_URL_LEN {
            return Err(bad("longer than 2048 bytes"));
        }
        if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("contains spaces or control characters"));
        }
        let rest = match url.get(..6) {
            Some(s) if s.eq_ignore_ascii_case("udp://") => url.get(6..).unwrap_or(""),
            _ => return Err(bad("not a udp:// URL")),
        };
        let rest = rest.split('#').next().unwrap_or(rest);
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(auth_end);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| bad("no port after the IPv6 address"))?;
            (host, port)
        } else {
            authority.rsplit_once(':').ok_or_else(|| bad("no port"))?
        };
        if host.is_empty() || host.contains(['@', '[', ']']) {
            return Err(bad("bad host"));
        }
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        if path.len() > MAX_URL_DATA_LEN {
            return Err(bad("path and query longer than 1024 bytes"));
        }
        Ok(UdpTrackerUrl {
            host: host.to_owned(),
            port,
            url_data: path.to_owned(),
        })
    }
}
