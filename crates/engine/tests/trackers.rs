//! The tracker driver (`announce`, `scrape`) against hostile and broken
//! trackers: in-process fakes on loopback addresses from
//! `rivulet_testkit::tracker`, an HTTP server made of a tokio `TcpListener`
//! answering canned bytes, and a UDP socket answering canned packets.
//!
//! For every case the announce ends with an error or a bounded answer, never
//! a panic and never past its (shortened) timeout; with several tiers, a dead
//! one does not keep the good one from delivering peers. No sleep is used as
//! synchronisation: tests wait for the event itself (a peer on the channel,
//! the announce's result) under a timeout that only fails the test.
//!
//! Every test runs on tokio's paused clock (`start_paused`): when the
//! runtime is idle it jumps to the next timer, so tracker timeouts, retries
//! and backoffs take no real time, and the durations the tests assert
//! (`tokio::time::Instant`) are those of the engine's timers, not of the
//! machine's load. The clock only jumps when no task can run and the I/O
//! driver has nothing ready; loopback I/O is normally ready by then, and
//! if it ever were not, a timeout would fire early and fail the test
//! rather than let it pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use rivulet_core::{InfoHash, Metainfo};
use rivulet_engine::announce::{AnnounceTimeouts, Announcer, UdpTiming};
use rivulet_engine::scrape::{ScrapeOptions, ScrapeOutcome, Scraper};
use rivulet_engine::storage::MemoryStorage;
use rivulet_engine::torrent::{Shared, TorrentConfig};
use rivulet_testkit::tracker::{
    action_tid, closed_port, good_udp, gzip_stored, http, ok, FakeHttp, FakeUdp, Reply,
};
use rivulet_tracker::udp::UdpResponse;
use rivulet_tracker::{Event, TrackerError};
use tokio::sync::{mpsc, watch};

const TOTAL: u64 = 100_000;
const PIECE: u64 = 16_384;
/// Time a test may wait for something that should happen at once.
const PROMPT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Fixtures

/// A 100,000-byte single-file torrent.
fn metainfo() -> Metainfo {
    let pieces = TOTAL.div_ceil(PIECE) as usize;
    let mut b = Vec::new();
    b.extend_from_slice(b"d4:infod6:lengthi");
    b.extend_from_slice(TOTAL.to_string().as_bytes());
    b.extend_from_slice(b"e4:name5:f.bin12:piece lengthi");
    b.extend_from_slice(PIECE.to_string().as_bytes());
    b.extend_from_slice(format!("e6:pieces{}:", pieces * 20).as_bytes());
    b.extend(std::iter::repeat_n(0xab, pieces * 20));
    b.extend_from_slice(b"ee");
    Metainfo::from_bytes(&b).unwrap()
}

/// Shared state of the torrent, with every piece had or none.
fn shared(complete: bool) -> Arc<Shared> {
    let m = metainfo();
    let have = vec![complete; m.info.num_pieces()];
    let storage = MemoryStorage::new(PIECE, TOTAL as usize);
    Shared::new(
        Arc::new(m.info),
        m.info_hash,
        TorrentConfig::default(),
        Arc::new(storage),
        &have,
    )
}

/// Short timeouts: HTTP 500 ms, UDP 100 ms + 200 ms, tier retries from 100 ms.
fn fast() -> AnnounceTimeouts {
    AnnounceTimeouts {
        http: Duration::from_millis(500),
        udp: UdpTiming {
            first_timeout: Duration::from_millis(100),
            retries: 1,
        },
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_secs(1),
        stop: Duration::from_secs(1),
    }
}

struct Setup {
    announcer: Announcer,
    peers: mpsc::UnboundedReceiver<SocketAddr>,
    info_hash: InfoHash,
}

fn setup_with(timeouts: AnnounceTimeouts, complete: bool) -> Setup {
    let shared = shared(complete);
    let info_hash = shared.info_hash;
    let (tx, rx) = mpsc::unbounded_channel();
    let announcer = Announcer::new(shared, 6881, tx).with_timeouts(timeouts);
    Setup {
        announcer,
        peers: rx,
        info_hash,
    }
}

fn setup() -> Setup {
    setup_with(fast(), false)
}

/// `n` distinct compact IPv4 peers 10.x.y.z:6881.
fn compact_peers(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 6);
    for i in 0..n {
        let i = i as u32 + 1;
        out.extend_from_slice(&[10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        out.extend_from_slice(&6881u16.to_be_bytes());
    }
    out
}

fn peer(i: u32) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881))
}

/// `d8:intervali<interval>e5:peers<compact>e`.
fn announce_body(interval: i64, peers: &[u8]) -> Vec<u8> {
    let mut b = format!("d8:intervali{interval}e5:peers{}:", peers.len()).into_bytes();
    b.extend_from_slice(peers);
    b.push(b'e');
    b
}

/// Waits for `what` to finish, failing the test after `limit`.
async fn within<T>(limit: Duration, what: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, what)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

// ---------------------------------------------------------------------------
// HTTP announces

#[tokio::test(start_paused = true)]
async fn http_answer_delivers_peers_and_reports_honest_stats() {
    let peers = compact_peers(3);
    let t = FakeHttp::always(ok(&announce_body(1800, &peers))).await;
    let mut s = setup();
    let r = s
        .announcer
        .announce(&t.announce_url(), Event::Started, None)
        .await
        .unwrap();
    assert_eq!(r.peers.len(), 3);
    assert_eq!(r.interval, Duration::from_secs(1800));
    let q = &t.requests()[0];
    assert!(q.starts_with("/announce?info_hash="), "{q}");
    // Raw bytes, percent-encoded except RFC 3986's unreserved characters.
    let hash: String = s
        .info_hash
        .as_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    assert!(q.contains(&format!("info_hash={hash}&")), "{q}");
    for part in [
        "port=6881",
        "uploaded=0",
        "downloaded=0",
        "left=100000",
        "compact=1",
        "event=started",
        "numwant=200",
    ] {
        assert!(q.contains(part), "{part} missing in {q}");
    }

    // Through `run`, the peers reach the channel.
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(
        s.announcer
            .clone()
            .run(vec![vec![t.announce_url()]], stop_rx),
    );
    for i in 1..=3 {
        assert_eq!(within(PROMPT, s.peers.recv()).await, Some(peer(i)));
    }
    stop_tx.send(true).unwrap();
    within(PROMPT, run).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn http_garbage_and_error_pages_are_errors() {
    let cases: Vec<(Reply, &str)> = vec![
        (ok(b"\x00\xff\xfegarbage\x01"), "not bencode"),
        (
            ok(b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
            "starts with \"<html>",
        ),
        (
            http("500 Internal Server Error", "", b"<html>oops</html>"),
            "HTTP 500",
        ),
        (http("404 Not Found", "", b""), "HTTP 404"),
        (ok(b"d8:intervali1800e5:peers12:abc"), "invalid bencode"),
        (ok(b"d8:intervali1800"), "invalid bencode"),
        (ok(b""), "empty body"),
        (ok(b"   \r\n  "), "empty body"),
        (ok(b"le"), "not bencode"),
    ];
    let s = setup();
    for (reply, expected) in cases {
        let t = FakeHttp::always(reply).await;
        let started = Instant::now();
        let e = within(
            PROMPT,
            s.announcer.announce(&t.announce_url(), Event::None, None),
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string().contains(expected),
            "expected {expected:?} in {e}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test(start_paused = true)]
async fn http_failure_reason_is_reported_sanitized() {
    let reason: &[u8] = b"torrent \x1b[31mnot\x07 registered\xff";
    let mut body = format!("d14:failure reason{}:", reason.len()).into_bytes();
    body.extend_from_slice(reason);
    body.push(b'e');
    let t = FakeHttp::always(ok(&body)).await;
    let s = setup();
    let e = s
        .announcer
        .announce(&t.announce_url(), Event::Started, None)
        .await
        .unwrap_err();
    match e {
        TrackerError::Failure { message } => {
            assert!(message.starts_with("torrent"), "{message:?}");
            assert!(message.contains("registered"), "{message:?}");
            assert!(!message.chars().any(char::is_control), "{message:?}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // Some trackers send their refusal with an error status: the reason
    // still comes through.
    let t = FakeHttp::always(http(
        "403 Forbidden",
        "",
        b"d14:failure reason11:bad passkeye",
    ))
    .await;
    let e = s
        .announcer
        .announce(&t.announce_url(), Event::Started, None)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        TrackerError::Failure {
            message: "bad passkey".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn http_absurd_intervals_are_bounded() {
    let s = setup();
    for (interval, expected) in [
        ("0", Some(30 * 60)),
        ("-5", Some(30 * 60)),
        ("1", Some(60)),
        ("1000000000000", Some(2 * 60 * 60)),
        ("-1000000000000", Some(30 * 60)),
        // Does not fit in an i64: the body is refused.
        ("99999999999999999999999", None),
    ] {
        let body = format!("d8:intervali{interval}e5:peers0:e");
        let t = FakeHttp::always(ok(body.as_bytes())).await;
        let r = s
            .announcer
            .announce(&t.announce_url(), Event::None, None)
            .await;
        match expected {
            Some(secs) => assert_eq!(
                r.unwrap().interval,
                Duration::from_secs(secs),
                "interval {interval}"
            ),
            None => assert!(r.is_err(), "interval {interval}: {r:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn http_a_megabyte_of_peers_is_capped() {
    // 166,667 peers: 1,000,002 bytes of compact peers.
    let body = announce_body(1800, &compact_peers(166_667));
    assert!(body.len() > 1_000_000);
    let t = FakeHttp::always(ok(&body)).await;
    let mut s = setup();
    let r = s
        .announcer
        .announce(&t.announce_url(), Event::Started, None)
        .await
        .unwrap();
    assert_eq!(r.peers.len(), rivulet_tracker::MAX_PEERS_PER_RESPONSE);
    assert_eq!(r.skipped_peers, 166_667 - r.peers.len());

    // `run` hands on exactly the capped list.
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(
        s.announcer
            .clone()
            .run(vec![vec![t.announce_url()]], stop_rx),
    );
    let first = within(PROMPT, s.peers.recv()).await;
    assert_eq!(first, Some(peer(1)));
    let mut n = 1;
    while n < rivulet_tracker::MAX_PEERS_PER_RESPONSE {
        within(PROMPT, s.peers.recv()).await.unwrap();
        n += 1;
    }
    stop_tx.send(true).unwrap();
    within(PROMPT, run).await.unwrap();
    // The interval is 30 min: nothing more came.
    assert!(s.peers.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn http_oversized_and_endless_bodies_are_cut_off() {
    let s = setup();
    // 5 MB with a Content-Length.
    let mut big = announce_body(1800, &[]);
    big.extend(std::iter::repeat_n(b' ', 5_000_000));
    let t = FakeHttp::always(ok(&big)).await;
    let e = s
        .announcer
        .announce(&t.announce_url(), Event::None, None)
        .await
        .unwrap_err();
    assert!(matches!(e, TrackerError::ResponseTooLarge { .. }), "{e:?}");
    // A body that never ends: reading stops at the limit, not at the timeout.
    let mut timeouts = fast();
    timeouts.http = Duration::from_secs(10);
    let s = setup_with(timeouts, false);
    let t = FakeHttp::always(Reply::Endless).await;
    let started = Instant::now();
    let e = within(
        PROMPT,
        s.announcer.announce(&t.announce_url(), Event::None, None),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, TrackerError::ResponseTooLarge { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn http_gzip_body_is_decoded() {
    let body = announce_body(900, &compact_peers(2));
    let t = FakeHttp::always(http(
        "200 OK",
        "Content-Encoding: gzip\r\n",
        &gzip_stored(&body),
    ))
    .await;
    let s = setup();
    let r = s
        .announcer
        .announce(&t.announce_url(), Event::None, None)
        .await
        .unwrap();
    assert_eq!(r.peers.len(), 2);
    assert_eq!(r.interval, Duration::from_secs(900));
    // A body that claims gzip but is not: an error, not a panic.
    let t = FakeHttp::always(http("200 OK", "Content-Encoding: gzip\r\n", &body)).await;
    assert!(s
        .announcer
        .announce(&t.announce_url(), Event::None, None)
        .await
        .is_err());
}

fn redirect(to: &str) -> Reply {
    http("302 Found", &format!("Location: {to}\r\n"), b"")
}

#[tokio::test(start_paused = true)]
async fn http_redirects_are_followed_but_bounded() {
    let body = announce_body(1800, &compact_peers(1));
    // /announce -> /r1 -> /r2 -> /r3 -> answer.
    let t = FakeHttp::start(move |_, target| {
        let path = target.split('?').next().unwrap_or("");
        match path {
            "/announce" => redirect("/r1"),
            "/r1" => redirect("/r2"),
            "/r2" => redirect("/r3"),
            _ => ok(&body),
        }
    })
    .await;
    let s = setup();
    let r = s
        .announcer
        .announce(&t.announce_url(), Event::None, None)
        .await
        .unwrap();
    assert_eq!(r.peers.len(), 1);
    assert_eq!(t.requests().len(), 4);

    // A loop: given up after the redirect limit.
    let t = FakeHttp::always(redirect("/announce")).await;
    let e = within(
        PROMPT,
        s.announcer.announce(&t.announce_url(), Event::None, None),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("redirect"), "{e}");
    let n = t.requests().len();
    assert_eq!(
        n,
        rivulet_engine::announce::MAX_REDIRECTS + 1,
        "{n} requests"
    );
}

#[tokio::test(start_paused = true)]
async fn http_tracker_that_never_answers_times_out() {
    let s = setup(); // HTTP timeout 500 ms
    for reply in [Reply::Silent, Reply::Trickle] {
        let t = FakeHttp::always(reply).await;
        let started = Instant::now();
        let e = within(
            PROMPT,
            s.announcer
                .announce(&t.announce_url(), Event::Started, None),
        )
        .await
        .unwrap_err();
        let took = started.elapsed();
        assert!(e.to_string().contains("no answer within"), "{e}");
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn http_unreachable_and_bad_urls_fail_fast() {
    let s = setup();
    let addr = closed_port().await;
    let started = Instant::now();
    let e = s
        .announcer
        .announce(&format!("http://{addr}/announce"), Event::Started, None)
        .await
        .unwrap_err();
    assert!(matches!(e, TrackerError::Transport(_)), "{e:?}");
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(started.elapsed() < Duration::from_millis(450));
    for url in [
        "ftp://127.0.0.1/announce",
        "http:///announce",
        "udp://127.0.0.1/announce",
        "udp://127.0.0.1:0/announce",
        "nonsense",
    ] {
        let e = s
            .announcer
            .announce(url, Event::Started, None)
            .await
            .unwrap_err();
        assert!(matches!(e, TrackerError::InvalidUrl { .. }), "{url}: {e:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn http_random_bodies_never_panic() {
    use rand::{Rng, SeedableRng};
    let bodies: Vec<Vec<u8>> = {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let good = announce_body(1800, &compact_peers(20));
        (0..60)
            .map(|i| match i % 3 {
                // Random bytes.
                0 => (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect(),
                // A good body cut short.
                1 => good[..rng.gen_range(0..good.len())].to_vec(),
                // A good body with bytes flipped.
                _ => {
                    let mut b = good.clone();
                    for _ in 0..3 {
                        let at = rng.gen_range(0..b.len());
                        b[at] = rng.gen();
                    }
                    b
                }
            })
            .collect()
    };
    let replies = bodies.clone();
    let t = FakeHttp::start(move |n, _| ok(&replies[n % replies.len()])).await;
    let s = setup();
    for _ in &bodies {
        match s
            .announcer
            .announce(&t.announce_url(), Event::None, None)
            .await
        {
            Ok(r) => assert!(r.peers.len() <= 20),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

// ---------------------------------------------------------------------------
// UDP announces

#[tokio::test(start_paused = true)]
async fn udp_answer_delivers_peers() {
    let t = FakeUdp::start(good_udp(vec![peer(1), peer(2)])).await;
    let mut s = setup();
    let r = s
        .announcer
        .announce(&t.url(), Event::Started, None)
        .await
        .unwrap();
    assert_eq!(r.peers.len(), 2);
    assert_eq!((r.complete, r.incomplete), (Some(2), Some(1)));
    let packets = t.received();
    assert_eq!(packets.len(), 2, "connect, announce");
    let a = &packets[1];
    assert!(a.len() > 98, "BEP 41 URL data follows the announce");
    assert_eq!(&a[16..36], s.info_hash.as_bytes());
    assert_eq!(
        u64::from_be_bytes(a[56..64].try_into().unwrap()),
        0,
        "downloaded"
    );
    assert_eq!(
        u64::from_be_bytes(a[64..72].try_into().unwrap()),
        TOTAL,
        "left"
    );
    assert_eq!(
        u64::from_be_bytes(a[72..80].try_into().unwrap()),
        0,
        "uploaded"
    );
    assert_eq!(
        u32::from_be_bytes(a[80..84].try_into().unwrap()),
        2,
        "started"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(s.announcer.clone().run(vec![vec![t.url()]], stop_rx));
    assert_eq!(within(PROMPT, s.peers.recv()).await, Some(peer(1)));
    assert_eq!(within(PROMPT, s.peers.recv()).await, Some(peer(2)));
    stop_tx.send(true).unwrap();
    within(PROMPT, run).await.unwrap();
    // The last packet is a `stopped` announce (event 3).
    let last = t.received().last().cloned().unwrap();
    assert_eq!(action_tid(&last).0, 1);
    assert_eq!(u32::from_be_bytes(last[80..84].try_into().unwrap()), 3);
}

#[tokio::test(start_paused = true)]
async fn udp_wrong_transaction_ids_are_ignored() {
    // Every answer carries another transaction id: nothing matches, the
    // request times out after its retransmission.
    let good = good_udp(vec![peer(1)]);
    let t = FakeUdp::start(move |p| {
        good(p)
            .into_iter()
            .map(|mut a| {
                a[4] ^= 0x55;
                a
            })
            .collect()
    })
    .await;
    let s = setup();
    let started = Instant::now();
    let e = within(PROMPT, s.announcer.announce(&t.url(), Event::None, None))
        .await
        .unwrap_err();
    assert_eq!(e, TrackerError::Timeout { attempts: 2 });
    assert!(started.elapsed() < Duration::from_secs(2));

    // A stray answer first, then the right one: the stray is ignored.
    let good = good_udp(vec![peer(1)]);
    let t = FakeUdp::start(move |p| {
        let right = good(p);
        let mut stray = right[0].clone();
        stray[4] ^= 0x55;
        vec![stray, right[0].clone()]
    })
    .await;
    let r = s
        .announcer
        .announce(&t.url(), Event::None, None)
        .await
        .unwrap();
    assert_eq!(r.peers.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn udp_truncated_and_malformed_packets_are_ignored() {
    let s = setup();
    type Mangle = fn(Vec<u8>, u32) -> Vec<Vec<u8>>;
    let cases: Vec<(&str, Mangle)> = vec![
        // Connect answers cut to 10 bytes.
        ("truncated connect", |mut a, action| {
            if action == 0 {
                a.truncate(10);
            }
            vec![a]
        }),
        // Announce answers shorter than their 20-byte header.
        ("truncated announce", |mut a, action| {
            if action == 1 {
                a.truncate(19);
            }
            vec![a]
        }),
        // An announce answer whose last peer is cut off.
        ("partial peer", |mut a, action| {
            if action == 1 {
                a.truncate(a.len() - 3);
            }
            vec![a]
        }),
        // An unknown action.
        ("unknown action", |mut a, action| {
            if action == 1 {
                a[3] = 9;
            }
            vec![a]
        }),
        // A connect answer to the announce.
        ("wrong action", |a, action| {
            if action == 1 {
                let tid = u32::from_be_bytes(a[4..8].try_into().unwrap());
                return vec![UdpResponse::Connect {
                    transaction_id: tid,
                    connection_id: 1,
                }
                .encode()];
            }
            vec![a]
        }),
        ("empty datagrams", |_, _| vec![vec![]]),
    ];
    for (what, mangle) in cases {
        let good = good_udp(vec![peer(1), peer(2)]);
        let t = FakeUdp::start(move |p| {
            let (action, _) = action_tid(p);
            good(p)
                .into_iter()
                .flat_map(|a| mangle(a, action))
                .collect()
        })
        .await;
        let started = Instant::now();
        let r = within(PROMPT, s.announcer.announce(&t.url(), Event::None, None)).await;
        assert!(
            matches!(r, Err(TrackerError::Timeout { .. })),
            "{what}: {r:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{what}");
    }
}

#[tokio::test(start_paused = true)]
async fn udp_trackers_share_one_socket() {
    // Two UDP tiers: every packet to either tracker, `stopped` included,
    // comes from one socket.
    let a = FakeUdp::start(good_udp(vec![peer(1)])).await;
    let b = FakeUdp::start(good_udp(vec![peer(2)])).await;
    let mut s = setup();
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(
        s.announcer
            .clone()
            .run(vec![vec![a.url()], vec![b.url()]], stop_rx),
    );
    let mut got = vec![
        within(PROMPT, s.peers.recv()).await.unwrap(),
        within(PROMPT, s.peers.recv()).await.unwrap(),
    ];
    got.sort();
    assert_eq!(got, vec![peer(1), peer(2)]);
    stop_tx.send(true).unwrap();
    within(PROMPT, run).await.unwrap();
    let mut senders = a.senders();
    senders.extend(b.senders());
    // Each announce has a fresh state machine, so connects again.
    assert_eq!(
        senders.len(),
        8,
        "connect, started, connect, stopped to each"
    );
    assert!(senders.iter().all(|&f| f == senders[0]), "{senders:?}");

    // Two announces in flight to one tracker at once: each gets its own
    // answer (by transaction id) through the shared socket.
    let c = FakeUdp::start(good_udp(vec![peer(3)])).await;
    let url = c.url();
    let (r1, r2) = within(PROMPT, async {
        tokio::join!(
            s.announcer.announce(&url, Event::None, None),
            s.announcer.announce(&url, Event::None, None)
        )
    })
    .await;
    assert_eq!(r1.unwrap().peers.len(), 1);
    assert_eq!(r2.unwrap().peers.len(), 1);
    let senders = c.senders();
    assert_eq!(senders.len(), 4, "two connects, two announces");
    assert!(senders.iter().all(|&f| f == senders[0]));
    assert_eq!(senders[0], a.senders()[0]);
}

#[tokio::test(start_paused = true)]
async fn udp_error_action_is_a_failure() {
    // Refuses the connect.
    let t = FakeUdp::start(|p| {
        let (_, tid) = action_tid(p);
        vec![UdpResponse::Error {
            transaction_id: tid,
            message: "go away".into(),
        }
        .encode()]
    })
    .await;
    let s = setup();
    let e = s
        .announcer
        .announce(&t.url(), Event::Started, None)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        TrackerError::Failure {
            message: "go away".into()
        }
    );
    // Accepts the connect, refuses the announce.
    let good = good_udp(vec![]);
    let t = FakeUdp::start(move |p| {
        let (action, tid) = action_tid(p);
        if action == 1 {
            let mut e = 3u32.to_be_bytes().to_vec();
            e.extend_from_slice(&tid.to_be_bytes());
            e.extend_from_slice(b"unregistered torrent\x00\x1b");
            return vec![e];
        }
        good(p)
    })
    .await;
    let e = s
        .announcer
        .announce(&t.url(), Event::Started, None)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        TrackerError::Failure {
            message: "unregistered torrent".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn udp_tracker_that_never_answers_is_retried_then_given_up() {
    let t = FakeUdp::start(|_| vec![]).await;
    let s = setup(); // first timeout 100 ms, one retransmission
    let started = Instant::now();
    let e = within(PROMPT, s.announcer.announce(&t.url(), Event::Started, None))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(e, TrackerError::Timeout { attempts: 2 });
    // 100 ms + 200 ms.
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // The connect request, and its retransmission (same transaction id).
    let packets = t.received();
    assert_eq!(packets.len(), 2);
    assert!(packets
        .iter()
        .all(|p| p.len() == 16 && action_tid(p).0 == 0));
    assert_eq!(action_tid(&packets[0]).1, action_tid(&packets[1]).1);

    // The same against a closed port (ICMP port unreachable): the schedule
    // runs its course rather than spinning or failing at once.
    let addr = closed_port().await;
    let started = Instant::now();
    let e = within(
        PROMPT,
        s.announcer
            .announce(&format!("udp://{addr}/announce"), Event::Started, None),
    )
    .await
    .unwrap_err();
    assert_eq!(e, TrackerError::Timeout { attempts: 2 });
    assert!(started.elapsed() < Duration::from_secs(2));
}

// ---------------------------------------------------------------------------
// Tiers: a dead tracker never holds up the others

#[tokio::test(start_paused = true)]
async fn a_dead_first_tier_does_not_hold_up_the_second() {
    // Real timeouts (15 s HTTP, 15 s + 30 s UDP): peers must come from the
    // second tier long before the first gives up.
    let timeouts = AnnounceTimeouts {
        stop: Duration::from_millis(500),
        ..AnnounceTimeouts::default()
    };
    let silent_http = FakeHttp::always(Reply::Silent).await;
    let silent_udp = FakeUdp::start(|_| vec![]).await;
    let good = FakeHttp::always(ok(&announce_body(1800, &compact_peers(1)))).await;
    let good_u = FakeUdp::start(good_udp(vec![peer(2)])).await;
    let mut s = setup_with(timeouts, false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let run = tokio::spawn(s.announcer.clone().run(
        vec![
            vec![silent_http.announce_url(), silent_udp.url()],
            vec![good.announce_url()],
            vec![good_u.url()],
        ],
        stop_rx,
    ));
    let mut got = vec![
        within(PROMPT, s.peers.recv()).await.unwrap(),
        within(PROMPT, s.peers.recv()).await.unwrap(),
    ];
    got.sort();
    assert_eq!(got, vec![peer(1), peer(2)]);
    assert!(started.elapsed() < Duration::from_secs(3));
    // Stopping is prompt although the first tier is still waiting.
    stop_tx.send(true).unwrap();
    let stopping = Instant::now();
    within(PROMPT, run).await.unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(2));
    assert!(good.requests().last().unwrap().contains("event=stopped"));
}

#[tokio::test(start_paused = true)]
async fn failover_within_a_tier() {
    let refused = closed_port().await;
    let garbage = FakeHttp::always(ok(b"<html>")).await;
    let silent_udp = FakeUdp::start(|_| vec![]).await;
    let good = FakeHttp::always(ok(&announce_body(1800, &compact_peers(1)))).await;
    let mut s = setup();
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(s.announcer.clone().run(
        vec![vec![
            format!("http://{refused}/announce"),
            garbage.announce_url(),
            silent_udp.url(),
            good.announce_url(),
        ]],
        stop_rx,
    ));
    // Whatever the shuffled order, the good tracker is reached within one
    // round: refused (at once) + garbage (at once) + UDP (300 ms).
    assert_eq!(within(PROMPT, s.peers.recv()).await, Some(peer(1)));
    stop_tx.send(true).unwrap();
    within(PROMPT, run).await.unwrap();
    // The one that answered hears `stopped`; the broken ones got at most
    // one announce each.
    assert!(good.requests().last().unwrap().contains("event=stopped"));
    assert!(garbage.requests().len() <= 1);
}

#[tokio::test(start_paused = true)]
async fn a_tracker_listed_twice_is_announced_to_once() {
    // The same URL in two tiers (and blank entries): one `started`, one
    // `stopped`, not one of each per listing.
    let t = FakeHttp::always(ok(&announce_body(1800, &compact_peers(1)))).await;
    let mut s = setup();
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(s.announcer.clone().run(
        vec![
            vec![t.announce_url(), " ".into()],
            vec![],
            vec![t.announce_url()],
        ],
        stop_rx,
    ));
    assert_eq!(within(PROMPT, s.peers.recv()).await, Some(peer(1)));
    stop_tx.send(true).unwrap();
    within(PROMPT, run).await.unwrap();
    let reqs = t.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert!(reqs[0].contains("event=started"));
    assert!(reqs[1].contains("event=stopped"));
}

#[tokio::test(start_paused = true)]
async fn a_failing_tier_is_retried_with_backoff() {
    // Fails twice (an HTML page, then a refusal), then answers.
    let body = announce_body(1800, &compact_peers(1));
    let t = FakeHttp::start(move |n, _| match n {
        0 => ok(b"<html>down for maintenance</html>"),
        1 => ok(b"d14:failure reason4:busye"),
        _ => ok(&body),
    })
    .await;
    let mut s = setup(); // retries after 100 ms, then 200 ms
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let run = tokio::spawn(
        s.announcer
            .clone()
            .run(vec![vec![t.announce_url()]], stop_rx),
    );
    assert_eq!(within(PROMPT, s.peers.recv()).await, Some(peer(1)));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(290), "{took:?}");
    stop_tx.send(true).unwrap();
    within(PROMPT, run).await.unwrap();
    let reqs = t.requests();
    // started, started (retry), started (answered), stopped.
    assert_eq!(reqs.len(), 4, "{reqs:#?}");
    assert!(reqs[..3].iter().all(|r| r.contains("event=started")));
    assert!(reqs[3].contains("event=stopped"));
}

#[tokio::test(start_paused = true)]
async fn a_tracker_that_never_answers_stopped_does_not_delay_exit() {
    // Answers `started`, then goes silent.
    let body = announce_body(1800, &compact_peers(1));
    let t = FakeHttp::start(move |n, _| if n == 0 { ok(&body) } else { Reply::Silent }).await;
    let mut timeouts = fast();
    timeouts.http = Duration::from_secs(30);
    timeouts.stop = Duration::from_millis(300);
    let mut s = setup_with(timeouts, false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(
        s.announcer
            .clone()
            .run(vec![vec![t.announce_url()]], stop_rx),
    );
    within(PROMPT, s.peers.recv()).await.unwrap();
    stop_tx.send(true).unwrap();
    let stopping = Instant::now();
    within(PROMPT, run).await.unwrap();
    let took = stopping.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(1),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn starting_complete_reports_nothing_left_and_no_completed_event() {
    let t = FakeHttp::always(ok(&announce_body(1800, &compact_peers(1)))).await;
    let u = FakeUdp::start(good_udp(vec![peer(2)])).await;
    let mut s = setup_with(fast(), true);
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(
        s.announcer
            .clone()
            .run(vec![vec![t.announce_url()], vec![u.url()]], stop_rx),
    );
    // Both trackers answered `started` once their peer arrives.
    let mut got = vec![
        within(PROMPT, s.peers.recv()).await.unwrap(),
        within(PROMPT, s.peers.recv()).await.unwrap(),
    ];
    got.sort();
    assert_eq!(got, vec![peer(1), peer(2)]);
    stop_tx.send(true).unwrap();
    within(PROMPT, run).await.unwrap();
    let reqs = t.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert!(reqs[0].contains("event=started") && reqs[0].contains("left=0"));
    assert!(reqs[1].contains("event=stopped") && reqs[1].contains("left=0"));
    assert!(!reqs.iter().any(|r| r.contains("completed")));
    let events: Vec<u32> = u
        .received()
        .iter()
        .filter(|p| action_tid(p).0 == 1)
        .map(|p| u32::from_be_bytes(p[80..84].try_into().unwrap()))
        .collect();
    assert_eq!(events, vec![2, 3], "started, stopped");
}

// ---------------------------------------------------------------------------
// Scrape

#[tokio::test(start_paused = true)]
async fn http_and_udp_scrape() {
    let hash = shared(false).info_hash;
    let other = InfoHash([7; 20]);
    let mut body = b"d5:filesd20:".to_vec();
    body.extend_from_slice(hash.as_bytes());
    body.extend_from_slice(
        b"d8:completei4e10:downloadedi9e10:incompletei2eee5:flagsd20:min_request_intervali3600eee",
    );
    let t = FakeHttp::always(ok(&body)).await;
    let scraper = Scraper::new(ScrapeOptions::default()).unwrap();
    let r = scraper
        .scrape(&t.announce_url(), &[hash, other])
        .await
        .unwrap();
    let st = r.get(&hash).unwrap();
    assert_eq!((st.complete, st.downloaded, st.incomplete), (4, 9, 2));
    assert!(r.get(&other).is_none());
    assert_eq!(r.min_request_interval, Some(Duration::from_secs(3600)));
    let q = &t.requests()[0];
    assert!(q.starts_with("/scrape?info_hash="), "{q}");
    assert_eq!(q.matches("info_hash=").count(), 2);
    // The free function, too.
    let r = rivulet_engine::scrape::scrape(&t.announce_url(), &[hash])
        .await
        .unwrap();
    assert_eq!(r.get(&hash).unwrap().complete, 4);

    let u = FakeUdp::start(good_udp(vec![])).await;
    let r = scraper.scrape(&u.url(), &[hash, other]).await.unwrap();
    let st = r.get(&other).unwrap();
    assert_eq!((st.complete, st.downloaded, st.incomplete), (3, 7, 5));
    let packets = u.received();
    assert_eq!(packets.len(), 2);
    assert_eq!(packets[1].len(), 16 + 2 * 20);
    assert_eq!(&packets[1][16..36], hash.as_bytes());
}

#[tokio::test(start_paused = true)]
async fn scrape_errors_are_bounded() {
    let hash = InfoHash([1; 20]);
    let options = ScrapeOptions {
        timeout: Duration::from_millis(400),
        udp: UdpTiming {
            first_timeout: Duration::from_millis(100),
            retries: 1,
        },
    };
    let scraper = Scraper::new(options).unwrap();
    let silent = FakeHttp::always(Reply::Silent).await;
    let silent_u = FakeUdp::start(|_| vec![]).await;
    let garbage = FakeHttp::always(ok(b"\xff\xfe")).await;
    let refusing = FakeHttp::always(ok(b"d14:failure reason9:no scrapee")).await;
    let unknown = FakeHttp::always(ok(b"d5:filesdee")).await;
    let good = FakeHttp::always(ok(b"d5:filesd20:\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01d8:completei1eeee")).await;
    let started = Instant::now();
    let tiers = vec![
        vec![silent.announce_url(), silent_u.url()],
        vec![garbage.announce_url(), refusing.announce_url()],
        vec![unknown.announce_url(), good.url("/tracker.php")],
        vec![good.announce_url(), good.announce_url()],
    ];
    let results = within(PROMPT, scraper.scrape_all(&tiers, hash)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let outcomes: Vec<(usize, &ScrapeOutcome)> =
        results.iter().map(|r| (r.tier, &r.outcome)).collect();
    assert_eq!(outcomes.len(), 7, "the duplicate URL is asked once");
    assert!(matches!(
        outcomes[0],
        (0, ScrapeOutcome::Failed(TrackerError::Transport(_)))
    ));
    assert!(matches!(
        outcomes[1],
        (0, ScrapeOutcome::Failed(TrackerError::Timeout { .. }))
    ));
    assert!(matches!(
        outcomes[2],
        (1, ScrapeOutcome::Failed(TrackerError::NotBencode { .. }))
    ));
    assert!(matches!(
        outcomes[3],
        (1, ScrapeOutcome::Failed(TrackerError::Failure { .. }))
    ));
    assert_eq!(outcomes[4], (2, &ScrapeOutcome::NotTracked));
    assert_eq!(outcomes[5], (2, &ScrapeOutcome::Unsupported));
    match outcomes[6] {
        (3, ScrapeOutcome::Stats(s)) => assert_eq!(s.complete, 1),
        other => panic!("{other:?}"),
    }
    // An HTTP tracker without the scrape convention is an error for `scrape`.
    let e = scraper
        .scrape(&good.url("/tracker.php"), &[hash])
        .await
        .unwrap_err();
    assert!(matches!(e, TrackerError::InvalidUrl { .. }), "{e:?}");
    assert!(good.requests().iter().all(|r| r.starts_with("/scrape?")));
}

#[tokio::test(start_paused = true)]
async fn scrape_counts_every_request() {
    // Each tracker is asked exactly once per scrape_all, in parallel: the
    // total time is one timeout, not the sum.
    let counter = Arc::new(AtomicUsize::new(0));
    let mut fakes = Vec::new();
    for _ in 0..5 {
        let c = Arc::clone(&counter);
        fakes.push(
            FakeHttp::start(move |_, _| {
                c.fetch_add(1, Ordering::SeqCst);
                Reply::Silent
            })
            .await,
        );
    }
    let scraper = Scraper::new(ScrapeOptions {
        timeout: Duration::from_millis(300),
        ..ScrapeOptions::default()
    })
    .unwrap();
    let tiers: Vec<Vec<String>> = fakes.iter().map(|f| vec![f.announce_url()]).collect();
    let started = Instant::now();
    let results = scraper.scrape_all(&tiers, InfoHash([2; 20])).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1000), "{took:?}");
    assert_eq!(results.len(), 5);
    assert_eq!(counter.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn http_peers_given_by_host_name_are_resolved() {
    let body =
        b"d8:intervali1800e5:peersld2:ip9:localhost4:porti7777eed2:ip9:127.0.0.94:porti7778eeee";
    let t = FakeHttp::always(ok(body)).await;
    let mut s = setup();
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(
        s.announcer
            .clone()
            .run(vec![vec![t.announce_url()]], stop_rx),
    );
    let mut got = vec![
        within(PROMPT, s.peers.recv()).await.unwrap(),
        within(PROMPT, s.peers.recv()).await.unwrap(),
    ];
    got.sort();
    assert!(
        got.contains(&SocketAddr::from(([127, 0, 0, 9], 7778))),
        "{got:?}"
    );
    assert!(
        got.iter().any(|a| a.port() == 7777 && a.ip().is_loopback()),
        "localhost not resolved: {got:?}"
    );
    stop_tx.send(true).unwrap();
    within(PROMPT, run).await.unwrap();
}
