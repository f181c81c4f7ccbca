//! HTTP trackers (BEP 3, 7, 23, 48): request URLs and response bodies.
//!
//! Nothing here does I/O. A driver builds the URL with [`announce_url`] (or
//! [`scrape_url`]), performs the GET with whatever HTTP client it likes, stops
//! reading the body at [`MAX_RESPONSE_LEN`] bytes, and hands the body to
//! [`parse_announce_response`] (or [`parse_scrape_response`]).
//!
//! Decisions about what trackers send:
//!
//! * **Trailing bytes** after the top-level dictionary (a newline, an HTML
//!   footer some tracker software appends) are ignored; leading ASCII
//!   whitespace too. The dictionary itself must be well-formed bencode.
//! * A body that does not start with `d` is rejected with
//!   [`TrackerError::NotBencode`], which quotes its first bytes (`"<html>..."`).
//! * `failure reason` wins over everything else in the body.
//! * Intervals are bounded, see [`crate::MIN_ANNOUNCE_INTERVAL`] and friends.
//! * A compact `peers`/`peers6` string whose length is not a multiple of 6/18
//!   keeps its whole entries and counts the partial tail in
//!   [`AnnounceResponse::skipped_peers`]: the entries before it are fine, and
//!   dropping them would only cost us peers.
//! * At most [`crate::MAX_PEERS_PER_RESPONSE`] peers are kept; a 1 MB compact
//!   string costs one pass over the first 2,000 entries, nothing more.
//! * Bencode decoding is limited to depth [`MAX_BENCODE_DEPTH`] and
//!   [`MAX_BENCODE_VALUES`] values, which bounds memory for hostile bodies.

use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rivulet_bencode::{decode_with, ErrorKind, Limits, Value};
use rivulet_core::{InfoHash, PeerId};

use crate::announce::{
    bounded_interval, count, is_hostname, sanitize, AnnounceRequest, AnnounceResponse, PeerAddr,
    PeerCollector, ScrapeResponse, ScrapeStats, DEFAULT_ANNOUNCE_INTERVAL, MAX_MESSAGE_CHARS,
    MAX_TRACKER_ID_LEN,
};
use crate::TrackerError;

/// Longest tracker URL accepted (announce or scrape base).
pub const MAX_URL_LEN: usize = 2048;

/// Largest HTTP response body parsed (4 MiB). Real answers are a few KB; a
/// compact list of 2,000 peers is 12 KB.
pub const MAX_RESPONSE_LEN: usize = 4 * 1024 * 1024;

/// Deepest bencode nesting accepted in a tracker response (real ones need 3).
pub const MAX_BENCODE_DEPTH: usize = 16;

/// Most bencode values accepted in a tracker response: room for tens of
/// thousands of dictionary peers, while keeping the decoded tree a few MB.
pub const MAX_BENCODE_VALUES: usize = 100_000;

/// Everything except the RFC 3986 unreserved characters `A-Z a-z 0-9 - . _ ~`.
const QUERY_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How many characters of a bad URL an error quotes.
const URL_QUOTE_CHARS: usize = 200;

/// How many bytes of a non-bencode body [`TrackerError::NotBencode`] quotes.
const GARBAGE_QUOTE_CHARS: usize = 24;

fn invalid(url: &str, reason: &'static str) -> TrackerError {
    TrackerError::InvalidUrl {
        url: url.chars().take(URL_QUOTE_CHARS).collect(),
        reason,
    }
}

/// Checks that `url` is an `http://` or `https://` URL with a host, and returns
/// it without its `#fragment` (never sent to a server), plus the byte offset
/// where its path starts (its length if it has none).
fn check_http_url(url: &str) -> Result<(&str, usize), TrackerError> {
    if url.len() > MAX_URL_LEN {
        return Err(invalid(url, "longer than 2048 bytes"));
    }
    if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(invalid(url, "contains spaces or control characters"));
    }
    let scheme_len = if starts_with_ignore_case(url, "http://") {
        7
    } else if starts_with_ignore_case(url, "https://") {
        8
    } else {
        return Err(invalid(url, "not an http:// or https:// URL"));
    };
    let url = url.split('#').next().unwrap_or(url);
    let rest = url.get(scheme_len..).unwrap_or("");
    let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
    if authority_len == 0 {
        return Err(invalid(url, "has no host"));
    }
    let path_start = rest
        .find('/')
        .filter(|p| *p == authority_len)
        .map_or(url.len(), |p| scheme_len + p);
    Ok((url, path_start))
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// Appends `?` or `&` as needed to start a new query parameter after `base`.
fn push_query_separator(url: &mut String) {
    match (url.contains('?'), url.ends_with(['?', '&'])) {
        (false, _) => url.push('?'),
        (true, false) => url.push('&'),
        (true, true) => {}
    }
}

fn push_param(url: &mut String, name: &str, value: &[u8]) {
    push_query_separator(url);
    url.push_str(name);
    url.push('=');
    url.extend(percent_encode(value, QUERY_ENCODE_SET));
}

/// The GET URL of an announce to the HTTP tracker at `base`.
///
/// Parameters, in this order: `info_hash`, `peer_id` (raw bytes, every byte
/// outside `A-Z a-z 0-9 - . _ ~` as upper-case `%XX`), `port`, `uploaded`,
/// `downloaded`, `left`, `compact=1` (or `0`),
/// `event` (omitted for [`Event::None`](crate::Event::None)), `key` (8
/// upper-case hex digits), `numwant` (when set), `trackerid` (when known),
/// then `supportcrypto=1` and `requirecrypto=1` as [`Crypto`](crate::Crypto)
/// says.
/// If `base` already has a query (a passkey, say) they are appended with `&`;
/// a `#fragment` is dropped.
///
/// ```
/// use rivulet_core::{InfoHash, PeerId};
/// use rivulet_tracker::{announce_url, AnnounceRequest, Crypto, Event};
///
/// let req = AnnounceRequest {
///     info_hash: InfoHash([0xab; 20]),
///     peer_id: PeerId(*b"-RV0100-abcdefghijkl"),
///     port: 6881,
///     uploaded: 0,
///     downloaded: 0,
///     left: 1000,
///     event: Event::Started,
///     numwant: Some(50),
///     key: 0x1234abcd,
///     tracker_id: None,
///     compact: true,
///     crypto: Crypto::Supported,
/// };
/// let url = announce_url("http://tracker.example/announce?pk=1", &req).unwrap();
/// assert!(url.starts_with("http://tracker.example/announce?pk=1&info_hash=%AB%AB"));
/// assert!(url.ends_with("&compact=1&event=started&key=1234ABCD&numwant=50&supportcrypto=1"));
/// ```
pub fn announce_url(base: &str, req: &AnnounceRequest) -> Result<String, TrackerError> {
    let (base, _) = check_http_url(base)?;
    let mut url = String::with_capacity(base.len() + 256);
    url.push_str(base);
    push_param(&mut url, "info_hash", req.info_hash.as_bytes());
    push_param(&mut url, "peer_id", req.peer_id.as_bytes());
    push_param(&mut url, "port", req.port.to_string().as_bytes());
    push_param(&mut url, "uploaded", req.uploaded.to_string().as_bytes());
    push_param(
        &mut url,
        "downloaded",
        req.downloaded.to_string().as_bytes(),
    );
    push_param(&mut url, "left", req.left.to_string().as_bytes());
    push_param(&mut url, "compact", if req.compact { b"1" } else { b"0" });
    if let Some(event) = req.event.http_name() {
        push_param(&mut url, "event", event.as_bytes());
    }
    push_param(&mut url, "key", format!("{:08X}", req.key).as_bytes());
    if let Some(n) = req.numwant {
        push_param(&mut url, "numwant", n.to_string().as_bytes());
    }
    if let Some(id) = &req.tracker_id {
        push_param(&mut url, "trackerid", id.as_bytes());
    }
    match req.crypto {
        crate::Crypto::Plaintext => {}
        crate::Crypto::Supported => push_param(&mut url, "supportcrypto", b"1"),
        crate::Crypto::Required => {
            push_param(&mut url, "supportcrypto", b"1");
            push_param(&mut url, "requirecrypto", b"1");
        }
    }
    Ok(url)
}

/// The scrape URL that BEP 48's convention derives from an announce URL: the
/// last path component must start with `announce`, which becomes `scrape`
/// (`/announce` → `/scrape`, `/x/announce.php?pk=1` → `/x/scrape.php?pk=1`).
/// `None` when the tracker does not support scraping by that convention (or
/// the URL is not a usable http(s) URL).
pub fn scrape_base(announce_url: &str) -> Option<String> {
    let (url, path_start) = check_http_url(announce_url).ok()?;
    let path_end = url.find('?').unwrap_or(url.len());
    let path = url.get(path_start..path_end)?;
    let last_slash = path_start + path.rfind('/')?;
    let last = url.get(last_slash + 1..path_end)?;
    if !last.starts_with("announce") {
        return None;
    }
    let before = url.get(..=last_slash)?;
    let after = url.get(last_slash + 1 + "announce".len()..)?;
    Some(format!("{before}scrape{after}"))
}

/// The GET URL of a scrape for `info_hashes` at the tracker whose announce URL
/// is `announce_url` (see [`scrape_base`]): one `info_hash=` parameter per
/// hash, raw bytes percent-encoded. `None` when the tracker cannot be scraped.
pub fn scrape_url(announce_url: &str, info_hashes: &[InfoHash]) -> Option<String> {
    let mut url = scrape_base(announce_url)?;
    for h in info_hashes {
        push_param(&mut url, "info_hash", h.as_bytes());
    }
    Some(url)
}

/// Decodes a tracker's HTTP body into its top-level dictionary, applying the
/// size and bencode limits, ignoring leading whitespace and trailing junk, and
/// turning `failure reason` into [`TrackerError::Failure`].
fn decode_body(body: &[u8]) -> Result<Value<'_>, TrackerError> {
    if body.len() > MAX_RESPONSE_LEN {
        return Err(TrackerError::ResponseTooLarge {
            len: body.len(),
            limit: MAX_RESPONSE_LEN,
        });
    }
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let body = body.get(start..).unwrap_or_default();
    match body.first() {
        None => return Err(TrackerError::EmptyBody),
        Some(b'd') => {}
        Some(_) => {
            return Err(TrackerError::NotBencode {
                start: sanitize(body, GARBAGE_QUOTE_CHARS),
            });
        }
    }
    let limits = Limits {
        max_depth: MAX_BENCODE_DEPTH,
        max_values: MAX_BENCODE_VALUES,
    };
    let root = match decode_with(body, limits) {
        Ok(v) => v,
        Err(e) if e.kind == ErrorKind::TrailingData => {
            // The dictionary ended at `e.offset`; decode just that part.
            decode_with(body.get(..e.offset).unwrap_or_default(), limits)?
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(reason) = root.get(b"failure reason") {
        let message = match reason.as_bytes() {
            Some(b) => sanitize(b, MAX_MESSAGE_CHARS),
            None => String::new(),
        };
        let message = if message.is_empty() {
            "(no reason given)".to_owned()
        } else {
            message
        };
        return Err(TrackerError::Failure { message });
    }
    Ok(root)
}

/// Parses the body of an HTTP announce response (BEP 3, with BEP 23 compact
/// `peers`, BEP 7 `peers6`, and dictionary peer lists).
///
/// ```
/// use rivulet_tracker::parse_announce_response;
///
/// let body = b"d8:intervali1800e5:peers6:\x7f\x00\x00\x01\x1a\xe1e";
/// let r = parse_announce_response(body).unwrap();
/// assert_eq!(r.interval.as_secs(), 1800);
/// assert_eq!(r.peers.len(), 1);
///
/// let err = parse_announce_response(b"<html><body>502 Bad Gateway").unwrap_err();
/// assert!(err.to_string().contains("starts with \"<html><body>502"));
/// ```
pub fn parse_announce_response(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let root = decode_body(body)?;
    let int = |key: &[u8]| root.get(key).and_then(Value::as_int);

    let interval = bounded_interval(int(b"interval")).unwrap_or(DEFAULT_ANNOUNCE_INTERVAL);
    let min_interval = bounded_interval(int(b"min interval")).map(|m| m.min(interval));
    let tracker_id = root
        .get(b"tracker id")
        .and_then(Value::as_bytes)
        .filter(|b| !b.is_empty() && b.len() <= MAX_TRACKER_ID_LEN)
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(str::to_owned);
    let warning = root
        .get(b"warning message")
        .and_then(Value::as_bytes)
        .map(|b| sanitize(b, MAX_MESSAGE_CHARS))
        .filter(|w| !w.is_empty());

    let mut peers = PeerCollector::default();
    if let Some(p) = root.get(b"peers") {
        if let Some(compact) = p.as_bytes() {
            peers.push_compact(compact, false);
        } else if let Some(list) = p.as_list() {
            push_dict_peers(&mut peers, list);
        }
    }
    if let Some(compact) = root.get(b"peers6").and_then(Value::as_bytes) {
        peers.push_compact(compact, true);
    }
    let (peers, skipped_peers) = peers.finish();

    Ok(AnnounceResponse {
        interval,
        min_interval,
        tracker_id,
        complete: count(int(b"complete")),
        incomplete: count(int(b"incomplete")),
        warning,
        peers,
        skipped_peers,
    })
}

/// Offers the peers of a BEP 3 dictionary peer list: `ip` (IPv4 or IPv6 text,
/// optionally in brackets, or a host name), `port`, optional `peer id`.
fn push_dict_peers(peers: &mut PeerCollector, list: &[Value<'_>]) {
    for (i, item) in list.iter().enumerate() {
        if peers.full() {
            peers.skip(list.len().saturating_sub(i));
            return;
        }
        let ip = item
            .get(b"ip")
            .and_then(Value::as_str)
            .map(|s| s.trim().trim_start_matches('[').trim_end_matches(']'));
        let port = item
            .get(b"port")
            .and_then(Value::as_int)
            .and_then(|p| u16::try_from(p).ok());
        let (Some(ip), Some(port)) = (ip, port) else {
            peers.skip(1);
            continue;
        };
        let addr = if let Ok(ip) = ip.parse::<std::net::IpAddr>() {
            PeerAddr::Ip(std::net::SocketAddr::new(ip, port))
        } else if is_hostname(ip) {
            PeerAddr::Host {
                name: ip.to_ascii_lowercase(),
                port,
            }
        } else {
            peers.skip(1);
            continue;
        };
        let peer_id = item
            .get(b"peer id")
            .and_then(Value::as_bytes)
            .and_then(|b| PeerId::from_slice(b).ok());
        peers.push(addr, peer_id);
    }
}

/// Parses the body of an HTTP scrape response (BEP 48) for the info-hashes that
/// were asked for. Entries for other info-hashes (trackers that answer with a
/// full scrape) are ignored; asked-for hashes the tracker omits are absent from
/// the result.
///
/// ```
/// use rivulet_core::InfoHash;
/// use rivulet_tracker::parse_scrape_response;
///
/// let h = InfoHash([b'A'; 20]);
/// let body = b"d5:filesd20:AAAAAAAAAAAAAAAAAAAAd8:completei5e10:downloadedi50e10:incompletei10eeee";
/// let r = parse_scrape_response(body, &[h]).unwrap();
/// let s = r.get(&h).unwrap();
/// assert_eq!((s.complete, s.downloaded, s.incomplete), (5, 50, 10));
/// ```
pub fn parse_scrape_response(
    body: &[u8],
    info_hashes: &[InfoHash],
) -> Result<ScrapeResponse, TrackerError> {
    let root = decode_body(body)?;
    let files = root.get(b"files");
    let mut out = Vec::new();
    for h in info_hashes {
        if out.iter().any(|(seen, _)| seen == h) {
            continue;
        }
        let Some(entry) = files.and_then(|f| f.get(h.as_bytes())) else {
            continue;
        };
        if entry.as_dict().is_none() {
            continue;
        }
        let field = |key: &[u8]| count(entry.get(key).and_then(Value::as_int)).unwrap_or_default();
        out.push((
            *h,
            ScrapeStats {
                complete: field(b"complete"),
                downloaded: field(b"downloaded"),
                incomplete: field(b"incomplete"),
            },
        ));
    }
    let min_request_interval = bounded_interval(
        root.get(b"flags")
            .and_then(|f| f.get(b"min_request_interval"))
            .and_then(Value::as_int),
    );
    Ok(ScrapeResponse {
        files: out,
        min_request_interval,
    })
}
