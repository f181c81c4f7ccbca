//! Local service discovery (BEP 14): finding peers of our torrents on the
//! local network by multicast, without trackers or the DHT.
//!
//! The message is an HTTP-like request sent to 239.192.152.143:6771:
//!
//! ```text
//! BT-SEARCH * HTTP/1.1\r\n
//! Host: 239.192.152.143:6771\r\n
//! Port: 6881\r\n
//! Infohash: 0123...cdef\r\n
//! cookie: 5f3a9c01\r\n
//! \r\n
//! \r\n
//! ```
//!
//! [`encode`] and [`decode`] are the sans-IO part (bounded, never
//! panicking); `run` is the session's task: one socket bound to port
//! 6771 and joined to the group (on the session's address when it is
//! bound), multicast loopback on (so that programs on the same machine hear
//! each other) and a TTL of 1 (the local link only). It announces each
//! running torrent that is not private at once and then every five minutes
//! (never more than once a minute), and hands each peer it hears of to the
//! torrent it names. Our own announces come back to us: the `cookie`, random
//! per session, tells them apart.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Weak;
use std::time::Duration;

use rivulet_core::InfoHash;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The BEP 14 multicast group and port (IPv4).
pub const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 192, 152, 143), 6771);
/// Longest message taken (a standard one with a few info-hashes is far
/// shorter).
pub const MAX_MESSAGE: usize = 1400;
/// Most info-hashes taken from one message.
pub const MAX_INFO_HASHES: usize = 16;
/// How often each torrent is announced.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(300);
/// A torrent is never announced more often than this.
const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// An announce, sent or heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The port the sender takes peer connections on.
    pub port: u16,
    /// The torrents it has.
    pub info_hashes: Vec<InfoHash>,
    /// The sender's cookie, to recognise our own announces.
    pub cookie: Option<String>,
}

/// The message announcing `a`.
pub fn encode(a: &Announce) -> Vec<u8> {
    let mut s = format!(
        "BT-SEARCH * HTTP/1.1\r\nHost: {GROUP}\r\nPort: {}\r\n",
        a.port
    );
    for h in &a.info_hashes {
        s.push_str(&format!("Infohash: {}\r\n", h.to_hex()));
    }
    if let Some(c) = &a.cookie {
        s.push_str(&format!("cookie: {c}\r\n"));
    }
    s.push_str("\r\n\r\n");
    s.into_bytes()
}

/// Reads an announce: `None` for anything else (another request line, no
/// valid port, no valid info-hash, over [`MAX_MESSAGE`] bytes). Header
/// names are matched without regard to case; info-hashes past
/// [`MAX_INFO_HASHES`] and malformed ones are skipped.
pub fn decode(bytes: &[u8]) -> Option<Announce> {
    if bytes.len() > MAX_MESSAGE {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.split("\r\n");
    if lines.next()?.trim() != "BT-SEARCH * HTTP/1.1" {
        return None;
    }
    let mut port = None;
    let mut info_hashes = Vec::new();
    let mut cookie = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "port" => port = value.parse::<u16>().ok().filter(|&p| p != 0),
            "infohash" if info_hashes.len() < MAX_INFO_HASHES => {
                if let Ok(h) = InfoHash::from_hex_or_base32(value)
                    .map_err(|_| ())
                    .and_then(|h| if value.len() == 40 { Ok(h) } else { Err(()) })
                {
                    if !info_hashes.contains(&h) {
                        info_hashes.push(h);
                    }
                }
            }
            "cookie" if value.len() <= 64 => cookie = Some(value.to_owned()),
            _ => {}
        }
    }
    if info_hashes.is_empty() {
        return None;
    }
    Some(Announce {
        port: port?,
        info_hashes,
        cookie,
    })
}

/// The LSD socket: port 6771, in the group, on `bind` (or every interface).
fn socket(bind: Option<Ipv4Addr>) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Every program on the machine that speaks LSD binds the same port.
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, GROUP.port())).into())?;
    let interface = bind.unwrap_or(Ipv4Addr::UNSPECIFIED);
    s.join_multicast_v4(GROUP.ip(), &interface)?;
    if let Some(ip) = bind {
        s.set_multicast_if_v4(&ip)?;
    }
    s.set_multicast_loop_v4(true)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// What the LSD task needs of the session: its running torrents that are
/// not private, and a way to hand one of them peers.
pub(crate) trait Torrents: Send + Sync + 'static {
    /// The info-hashes to announce.
    fn announced(&self) -> Vec<InfoHash>;
    /// A peer of `info_hash` was heard of (ignored for a torrent we do not
    /// announce).
    fn peer(&self, info_hash: InfoHash, addr: SocketAddr);
}

/// The session's LSD task: see the module documentation. Ends when
/// `cancel` is cancelled or the session is gone.
pub(crate) async fn run<T: Torrents>(
    session: Weak<T>,
    bind: Option<Ipv4Addr>,
    port: u16,
    cancel: CancellationToken,
) {
    let socket = match socket(bind) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "local peer discovery (LSD) is off: cannot open its socket");
            return;
        }
    };
    let cookie = format!("{:08x}", rand::random::<u32>());
    let mut last: std::collections::HashMap<InfoHash, Instant> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {
                let Some(s) = session.upgrade() else { return };
                let now = Instant::now();
                let due: Vec<InfoHash> = s
                    .announced()
                    .into_iter()
                    .filter(|h| last.get(h).is_none_or(|t| now.duration_since(*t) >= ANNOUNCE_EVERY))
                    .take(MAX_INFO_HASHES)
                    .collect();
                last.retain(|_, t| now.duration_since(*t) < ANNOUNCE_EVERY.max(MIN_INTERVAL));
                if due.is_empty() {
                    continue;
                }
                for h in &due {
                    last.insert(*h, now);
                }
                let msg = encode(&Announce { port, info_hashes: due, cookie: Some(cookie.clone()) });
                if let Err(e) = socket.send_to(&msg, SocketAddr::V4(GROUP)).await {
                    tracing::debug!(error = %e, "LSD announce not sent");
                }
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let Some(a) = buf.get(..n).and_then(decode) else { continue };
                if a.cookie.as_deref() == Some(cookie.as_str()) {
                    continue;
                }
                let Some(s) = session.upgrade() else { return };
                let ours = s.announced();
                for h in a.info_hashes.iter().filter(|h| ours.contains(h)) {
                    let addr = SocketAddr::new(from.ip(), a.port);
                    tracing::debug!(%addr, info_hash = %h.to_hex(), "peer found by LSD");
                    s.peer(*h, addr);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announce_round_trips_and_bad_ones_are_refused() {
        let a = Announce {
            port: 6881,
            info_hashes: vec![InfoHash([0xab; 20]), InfoHash([0x01; 20])],
            cookie: Some("5f3a9c01".into()),
        };
        let bytes = encode(&a);
        assert!(bytes.starts_with(b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\n"));
        assert_eq!(decode(&bytes), Some(a));
        // libtorrent's spelling, case-insensitive names, no cookie.
        let lt = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 51413\r\nInfohash: ABABABABABABABABABABABABABABABABABABABAB\r\n\r\n\r\n";
        let d = decode(lt).unwrap();
        assert_eq!((d.port, d.info_hashes.len(), d.cookie), (51413, 1, None));
        for bad in [
            &b"GET / HTTP/1.1\r\nPort: 1\r\nInfohash: abababababababababababababababababababab\r\n\r\n"[..],
            b"BT-SEARCH * HTTP/1.1\r\nPort: 0\r\nInfohash: abababababababababababababababababababab\r\n\r\n",
            b"BT-SEARCH * HTTP/1.1\r\nPort: 99999\r\nInfohash: abababababababababababababababababababab\r\n\r\n",
            b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: xyz\r\n\r\n",
            b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n\r\n",
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        // Valid, but one byte too long.
        let head = "BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: abababababababababababababababababababab\r\nX: ";
        let mut long = head.as_bytes().to_vec();
        long.resize(MAX_MESSAGE - 4, b'a');
        long.extend_from_slice(b"\r\n\r\n");
        assert!(decode(&long).is_some());
        long.insert(head.len(), b'a');
        assert_eq!(decode(&long), None);
    }

    #[test]
    fn info_hashes_are_bounded() {
        let mut s = String::from("BT-SEARCH * HTTP/1.1\r\nPort: 7000\r\n");
        for i in 0..20u8 {
            s.push_str(&format!("Infohash: {}\r\n", InfoHash([i; 20]).to_hex()));
        }
        s.push_str("\r\n\r\n");
        let a = decode(s.as_bytes()).unwrap();
        assert_eq!(a.info_hashes.len(), MAX_INFO_HASHES);
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let _ = decode(&bytes);
        }
    }
}
