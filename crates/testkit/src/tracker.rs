//! Fake trackers for in-process tests: an HTTP server made of a tokio
//! `TcpListener` answering canned bytes ([`FakeHttp`], [`Reply`]) and a UDP
//! socket answering canned packets ([`FakeUdp`], [`good_udp`]), each on a
//! fresh loopback address, stopped when dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivulet_tracker::udp::{UdpResponse, UdpScrapeEntry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::next_loopback;

/// What a [`FakeHttp`] does with one request.
#[derive(Clone)]
pub enum Reply {
    /// These bytes (status line, headers, body), then close.
    Raw(Vec<u8>),
    /// Read the request, never answer, keep the connection open.
    Silent,
    /// A 200 header without length, then body bytes forever, as fast as
    /// the client takes them.
    Endless,
    /// A 200 header, then one byte every 50 ms forever.
    Trickle,
}

/// An HTTP/1.1 answer with `status` ("200 OK"), `headers` (each line ending
/// in CRLF), a `Content-Length` and `body`, then close.
pub fn http(status: &str, headers: &str, body: &[u8]) -> Reply {
    let mut r = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    Reply::Raw(r)
}

/// A `200 OK` answer with `body` as `text/plain`.
pub fn ok(body: &[u8]) -> Reply {
    http("200 OK", "Content-Type: text/plain\r\n", body)
}

type Handler = Arc<dyn Fn(usize, &str) -> Reply + Send + Sync>;

/// An HTTP server on 127.0.0.x that answers each request with
/// `handler(request number from 0, request target)`.
pub struct FakeHttp {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeHttp {
    /// Starts it on a fresh loopback address ([`next_loopback`]).
    pub async fn start(handler: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> FakeHttp {
        let listener = TcpListener::bind((next_loopback(), 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let reqs = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let handler = Arc::clone(&handler);
                let reqs = Arc::clone(&reqs);
                conns.spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                        assert!(head.len() < 64 * 1024, "request head too long");
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let target = text.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let n = {
                        let mut r = reqs.lock().unwrap();
                        r.push(target.clone());
                        r.len() - 1
                    };
                    match handler(n, &target) {
                        Reply::Raw(bytes) => {
                            let _ = sock.write_all(&bytes).await;
                            let _ = sock.shutdown().await;
                        }
                        Reply::Silent => std::future::pending::<()>().await,
                        Reply::Endless => {
                            let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nd5:peers";
                            if sock.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            let chunk = vec![b'7'; 64 * 1024];
                            while sock.write_all(&chunk).await.is_ok() {}
                        }
                        Reply::Trickle => {
                            let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
                            if sock.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            loop {
                                if sock.write_all(b"d").await.is_err() {
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                });
            }
        });
        FakeHttp {
            addr,
            requests,
            task,
        }
    }

    /// A fake that answers every request with `reply`.
    pub async fn always(reply: Reply) -> FakeHttp {
        FakeHttp::start(move |_, _| reply.clone()).await
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://ADDR/announce`.
    pub fn announce_url(&self) -> String {
        self.url("/announce")
    }

    /// The request targets (path and query) so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// An address where nothing listens (TCP connect is refused; UDP answers
/// with ICMP port unreachable).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind((next_loopback(), 0)).await.unwrap();
    l.local_addr().unwrap()
}

/// Gzip of `data` with one stored (uncompressed) deflate block.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    assert!(data.len() <= 65_535);
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let crc = !crc;
    let len = data.len() as u16;
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.push(1); // BFINAL, stored
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

// ---------------------------------------------------------------------------
// A fake UDP tracker

type UdpHandler = Arc<dyn Fn(&[u8]) -> Vec<Vec<u8>> + Send + Sync>;

/// A UDP socket on 127.0.0.x that answers each datagram with the packets
/// `handler(datagram)` returns (none: silence).
pub struct FakeUdp {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    /// The source address of each received datagram.
    senders: Arc<Mutex<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeUdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUdp {
    /// Starts it on a fresh loopback address ([`next_loopback`]).
    pub async fn start(handler: impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + Sync + 'static) -> FakeUdp {
        let socket = UdpSocket::bind((next_loopback(), 0)).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler: UdpHandler = Arc::new(handler);
        let senders = Arc::new(Mutex::new(Vec::new()));
        let rec = Arc::clone(&received);
        let from_addrs = Arc::clone(&senders);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let packet = buf[..n].to_vec();
                rec.lock().unwrap().push(packet.clone());
                from_addrs.lock().unwrap().push(from);
                for answer in handler(&packet) {
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        FakeUdp {
            addr,
            received,
            senders,
            task,
        }
    }

    /// `udp://ADDR/announce`.
    pub fn url(&self) -> String {
        format!("udp://{}/announce", self.addr)
    }

    /// Every datagram received so far, in order.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }

    /// The source address of every datagram received so far, in order.
    pub fn senders(&self) -> Vec<SocketAddr> {
        self.senders.lock().unwrap().clone()
    }
}

/// Action (bytes 8..12) and transaction id (12..16) of a client packet; the
/// same offsets in connect, announce and scrape requests.
pub fn action_tid(p: &[u8]) -> (u32, u32) {
    (
        u32::from_be_bytes(p[8..12].try_into().unwrap()),
        u32::from_be_bytes(p[12..16].try_into().unwrap()),
    )
}

/// The connection id [`good_udp`] hands out and checks.
pub const CONNECTION_ID: u64 = 0x1122_3344_5566_7788;

/// A well-behaved UDP tracker: connects, announces with `peers`, scrapes
/// with (seeders 3, completed 7, leechers 5) per hash.
pub fn good_udp(peers: Vec<SocketAddr>) -> impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + Sync {
    move |p| {
        let (action, tid) = action_tid(p);
        let answer = match action {
            0 => UdpResponse::Connect {
                transaction_id: tid,
                connection_id: CONNECTION_ID,
            },
            1 => {
                assert_eq!(&p[..8], &CONNECTION_ID.to_be_bytes());
                UdpResponse::Announce {
                    transaction_id: tid,
                    interval: 1800,
                    leechers: 1,
                    seeders: 2,
                    peers: peers.clone(),
                }
            }
            2 => UdpResponse::Scrape {
                transaction_id: tid,
                entries: vec![
                    UdpScrapeEntry {
                        seeders: 3,
                        completed: 7,
                        leechers: 5,
                    };
                    (p.len() - 16) / 20
                ],
            },
            _ => return vec![],
        };
        vec![answer.encode()]
    }
}

/// An announce a [`reporting_udp`] tracker received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpAnnounce {
    /// The torrent's info-hash.
    pub info_hash: [u8; 20],
    /// BEP 15's event: 0 none, 1 completed, 2 started, 3 stopped.
    pub event: u32,
}

/// [`good_udp`], also reporting each announce on a channel, so that a test
/// waits for the announce itself.
pub fn reporting_udp(
    peers: Vec<SocketAddr>,
) -> (
    impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + Sync,
    tokio::sync::mpsc::UnboundedReceiver<UdpAnnounce>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let good = good_udp(peers);
    let handler = move |p: &[u8]| {
        if p.len() >= 84 && action_tid(p).0 == 1 {
            let _ = tx.send(UdpAnnounce {
                info_hash: p[16..36].try_into().unwrap(),
                event: u32::from_be_bytes(p[80..84].try_into().unwrap()),
            });
        }
        good(p)
    };
    (handler, rx)
}
