//! Tests of the BEP 15 codec (exact bytes) and of the client state machine
//! (driven with a fake clock: plain `Instant` arithmetic, no sleeping).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use rivulet_core::{InfoHash, PeerId};

use super::*;
use crate::{AnnounceRequest, Event, PeerAddr, TrackerError};

fn req() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash([0x11; 20]),
        peer_id: PeerId(*b"-RV0100-abcdefghijkl"),
        port: 6881,
        uploaded: 1,
        downloaded: 2,
        left: 3,
        event: Event::Started,
        numwant: Some(50),
        key: 0xcafe_babe,
        tracker_id: None,
        compact: true,
        crypto: Default::default(),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The transaction id of any request packet (bytes 12..16).
fn tid_of(packet: &[u8]) -> u32 {
    u32::from_be_bytes(packet[12..16].try_into().unwrap())
}

fn action_of(packet: &[u8]) -> u32 {
    u32::from_be_bytes(packet[8..12].try_into().unwrap())
}

fn conn_id_of(packet: &[u8]) -> u64 {
    u64::from_be_bytes(packet[..8].try_into().unwrap())
}

fn is_connect(packet: &[u8]) -> bool {
    packet.len() == 16 && packet[..12] == [0, 0, 4, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0]
}

fn connect_answer(tid: u32, connection_id: u64) -> Vec<u8> {
    UdpResponse::Connect {
        transaction_id: tid,
        connection_id,
    }
    .encode()
}

fn announce_answer(tid: u32, peers: Vec<SocketAddr>) -> Vec<u8> {
    UdpResponse::Announce {
        transaction_id: tid,
        interval: 1800,
        leechers: 3,
        seeders: 4,
        peers,
    }
    .encode()
}

fn client(max_retries: u32) -> UdpTrackerClient {
    let mut cfg = UdpClientConfig::new(AddressFamily::V4);
    cfg.max_retries = max_retries;
    UdpTrackerClient::with_seed(cfg, 42)
}

/// Starts an announce and completes the connect step at `now`; returns the
/// announce packet.
fn connected_announce(c: &mut UdpTrackerClient, now: Instant, conn: u64) -> (RequestId, Vec<u8>) {
    let id = c.start_announce(req(), now).unwrap();
    let p = c.poll_transmit(now).unwrap();
    assert!(is_connect(&p));
    assert_eq!(
        c.handle_packet(&connect_answer(tid_of(&p), conn), now),
        PacketOutcome::Connected
    );
    let a = c.poll_transmit(now).unwrap();
    assert_eq!(action_of(&a), action::ANNOUNCE);
    assert_eq!(conn_id_of(&a), conn);
    assert_eq!(c.poll_transmit(now), None);
    (id, a)
}

// ---------------------------------------------------------------- codec

#[test]
fn connect_request_exact_bytes() {
    assert_eq!(
        encode_connect(0x0102_0304),
        [0x00, 0x00, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 1, 2, 3, 4]
    );
    assert_eq!(PROTOCOL_ID, 0x41727101980);
}

#[test]
fn announce_request_exact_bytes() {
    let p = encode_announce(
        0x1122_3344_5566_7788,
        0xaabb_ccdd,
        &req(),
        &UdpAnnounceOptions::default(),
    )
    .unwrap();
    let mut want = Vec::new();
    want.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]); // connection id
    want.extend_from_slice(&[0, 0, 0, 1]); // action announce
    want.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]); // transaction id
    want.extend_from_slice(&[0x11; 20]); // info hash
    want.extend_from_slice(b"-RV0100-abcdefghijkl"); // peer id
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2]); // downloaded
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3]); // left
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]); // uploaded
    want.extend_from_slice(&[0, 0, 0, 2]); // event started
    want.extend_from_slice(&[0, 0, 0, 0]); // ip: default
    want.extend_from_slice(&[0xca, 0xfe, 0xba, 0xbe]); // key
    want.extend_from_slice(&[0, 0, 0, 50]); // num_want
    want.extend_from_slice(&[0x1a, 0xe1]); // port 6881
    assert_eq!(p.len(), ANNOUNCE_REQUEST_LEN);
    assert_eq!(p, want);
}

#[test]
fn announce_request_defaults_and_clamps() {
    let mut r = req();
    r.numwant = None;
    r.event = Event::None;
    r.uploaded = u64::MAX;
    let p = encode_announce(1, 2, &r, &UdpAnnounceOptions::default()).unwrap();
    assert_eq!(&p[92..96], &[0xff; 4], "numwant -1 = tracker default");
    assert_eq!(&p[80..84], &[0, 0, 0, 0], "event none");
    assert_eq!(
        &p[72..80],
        &i64::MAX.to_be_bytes(),
        "uploaded clamped to i64::MAX"
    );
    r.numwant = Some(u32::MAX);
    let p = encode_announce(1, 2, &r, &UdpAnnounceOptions::default()).unwrap();
    assert_eq!(&p[92..96], &i32::MAX.to_be_bytes());
    for (event, code) in [
        (Event::Completed, 1),
        (Event::Started, 2),
        (Event::Stopped, 3),
    ] {
        r.event = event;
        let p = encode_announce(1, 2, &r, &UdpAnnounceOptions::default()).unwrap();
        assert_eq!(&p[80..84], &[0, 0, 0, code]);
    }
}

#[test]
fn announce_request_ip_and_url_data_options() {
    let opts = UdpAnnounceOptions {
        ip: Some(Ipv4Addr::new(10, 0, 0, 7)),
        url_data: Some(b"/announce?pk=1".to_vec()),
    };
    let p = encode_announce(1, 2, &req(), &opts).unwrap();
    assert_eq!(&p[84..88], &[10, 0, 0, 7]);
    let mut tail = vec![0x02, 14];
    tail.extend_from_slice(b"/announce?pk=1");
    tail.push(0x00);
    assert_eq!(&p[98..], &tail[..]);

    // Long URL data is split into 255-byte URLData options.
    let long = vec![b'a'; 300];
    let opts = UdpAnnounceOptions {
        ip: None,
        url_data: Some(long),
    };
    let p = encode_announce(1, 2, &req(), &opts).unwrap();
    assert_eq!(p.len(), 98 + 2 + 255 + 2 + 45 + 1);
    assert_eq!(&p[98..100], &[0x02, 255]);
    assert_eq!(&p[355..357], &[0x02, 45]);
    assert_eq!(p.last(), Some(&0));

    let opts = UdpAnnounceOptions {
        ip: None,
        url_data: Some(vec![b'a'; MAX_URL_DATA_LEN + 1]),
    };
    assert!(matches!(
        encode_announce(1, 2, &req(), &opts),
        Err(TrackerError::UrlDataTooLong {
            len: 1025,
            max: 1024
        })
    ));
}

#[test]
fn scrape_request_exact_bytes_and_limits() {
    let p = encode_scrape(7, 9, &[InfoHash([0xaa; 20]), InfoHash([0xbb; 20])]).unwrap();
    let mut want = vec![0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 2, 0, 0, 0, 9];
    want.extend_from_slice(&[0xaa; 20]);
    want.extend_from_slice(&[0xbb; 20]);
    assert_eq!(p, want);
    assert_eq!(
        encode_scrape(7, 9, &[InfoHash([0; 20]); 74]).unwrap().len(),
        16 + 74 * 20
    );
    assert_eq!(
        encode_scrape(7, 9, &[InfoHash([0; 20]); 75]),
        Err(TrackerError::TooManyInfoHashes { count: 75, max: 74 })
    );
    assert_eq!(encode_scrape(7, 9, &[]), Err(TrackerError::NoInfoHashes));
}

#[test]
fn decode_connect_response() {
    let bytes = [0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8];
    assert_eq!(
        decode_response(&bytes, AddressFamily::V4),
        Ok(UdpResponse::Connect {
            transaction_id: 0xdead_beef,
            connection_id: 0x0102_0304_0506_0708
        })
    );
    // Extension bytes after the 16 are ignored.
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(b"future");
    assert!(decode_response(&longer, AddressFamily::V4).is_ok());
    for len in 8..16 {
        assert_eq!(
            decode_response(&bytes[..len], AddressFamily::V4),
            Err(TrackerError::UdpTruncated {
                what: "connect response",
                len,
                need: 16
            })
        );
    }
}

#[test]
fn decode_announce_response_v4_and_v6() {
    let mut bytes = vec![0, 0, 0, 1, 0, 0, 0, 5];
    bytes.extend_from_slice(&1800i32.to_be_bytes());
    bytes.extend_from_slice(&7i32.to_be_bytes());
    bytes.extend_from_slice(&9i32.to_be_bytes());
    let header = bytes.clone();
    bytes.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80]);
    assert_eq!(
        decode_response(&bytes, AddressFamily::V4),
        Ok(UdpResponse::Announce {
            transaction_id: 5,
            interval: 1800,
            leechers: 7,
            seeders: 9,
            peers: vec![
                "127.0.0.1:6881".parse().unwrap(),
                "10.0.0.2:80".parse().unwrap()
            ],
        })
    );
    // The same 12 bytes are not a whole IPv6 peer.
    assert_eq!(
        decode_response(&bytes, AddressFamily::V6),
        Err(TrackerError::UdpPartialEntry {
            what: "announce response",
            extra: 12,
            entry_len: 18
        })
    );
    let mut v6 = header.clone();
    v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    v6.extend_from_slice(&[0x1a, 0xe1]);
    match decode_response(&v6, AddressFamily::V6).unwrap() {
        UdpResponse::Announce { peers, .. } => {
            assert_eq!(peers, vec!["[::1]:6881".parse::<SocketAddr>().unwrap()])
        }
        other => panic!("{other:?}"),
    }
    // No peers at all is fine.
    assert!(matches!(
        decode_response(&header, AddressFamily::V4),
        Ok(UdpResponse::Announce { peers, .. }) if peers.is_empty()
    ));
    // A trailing partial peer.
    let mut partial = header.clone();
    partial.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7]);
    let err = decode_response(&partial, AddressFamily::V4).unwrap_err();
    assert_eq!(
        err.to_string(),
        "UDP tracker announce response ends with a partial entry: 1 bytes left over, entries are 6 bytes"
    );
    for len in 8..20 {
        assert!(matches!(
            decode_response(&header[..len], AddressFamily::V4),
            Err(TrackerError::UdpTruncated { need: 20, .. })
        ));
    }
}

#[test]
fn decode_scrape_and_error_responses() {
    let mut bytes = vec![0, 0, 0, 2, 0, 0, 0, 1];
    for n in [5i32, 50, 10, -1, 0, 2] {
        bytes.extend_from_slice(&n.to_be_bytes());
    }
    assert_eq!(
        decode_response(&bytes, AddressFamily::V4),
        Ok(UdpResponse::Scrape {
            transaction_id: 1,
            entries: vec![
                UdpScrapeEntry {
                    seeders: 5,
                    completed: 50,
                    leechers: 10
                },
                UdpScrapeEntry {
                    seeders: -1,
                    completed: 0,
                    leechers: 2
                }
            ]
        })
    );
    bytes.pop();
    assert!(matches!(
        decode_response(&bytes, AddressFamily::V4),
        Err(TrackerError::UdpPartialEntry {
            extra: 11,
            entry_len: 12,
            ..
        })
    ));

    let mut err = vec![0, 0, 0, 3, 0, 0, 0, 9];
    err.extend_from_slice(b"Connection ID missmatch.\0");
    assert_eq!(
        decode_response(&err, AddressFamily::V4),
        Ok(UdpResponse::Error {
            transaction_id: 9,
            message: "Connection ID missmatch.".into()
        })
    );
    // Hostile message: control characters and a megabyte of text.
    let mut err = vec![0, 0, 0, 3, 0, 0, 0, 9, b'\x1b', b'['];
    err.extend_from_slice(&[b'x'; 60_000]);
    let UdpResponse::Error { message, .. } = decode_response(&err, AddressFamily::V4).unwrap()
    else {
        panic!()
    };
    assert!(message.chars().count() <= crate::MAX_MESSAGE_CHARS + 1);
    assert!(message.ends_with('…'));
    assert!(!message.chars().any(char::is_control));
}

#[test]
fn decode_rejects_bad_headers() {
    for len in 0..8 {
        assert_eq!(
            decode_response(&[0u8; 8][..len], AddressFamily::V4),
            Err(TrackerError::UdpTruncated {
                what: "header",
                len,
                need: 8
            })
        );
    }
    assert_eq!(
        decode_response(&[0, 0, 0, 4, 0, 0, 0, 0], AddressFamily::V4),
        Err(TrackerError::UdpUnknownAction(4))
    );
    assert_eq!(
        decode_response(&vec![0u8; 70_000], AddressFamily::V4),
        Err(TrackerError::UdpTooLarge { len: 70_000 })
    );
}

#[test]
fn udp_tracker_url() {
    let u = UdpTrackerUrl::parse("udp://tracker.opentrackr.org:1337/announce").unwrap();
    assert_eq!(u.host, "tracker.opentrackr.org");
    assert_eq!(u.port, 1337);
    assert_eq!(u.url_data, "/announce");
    let u = UdpTrackerUrl::parse("UDP://10.0.0.1:6969#frag").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.url_data.as_str()),
        ("10.0.0.1", 6969, "")
    );
    for bad in [
        "http://a:1/announce",
        "udp://a/announce",
        "udp://:80",
        "udp://a:0",
        "udp://a:70000",
        "udp://[::1/announce",
        "udp://[::1]/x",
        "udp://a b:1",
        "udp",
    ] {
        assert!(
            matches!(
                UdpTrackerUrl::parse(bad),
                Err(TrackerError::InvalidUrl { .. })
            ),
            "{bad}"
        );
    }
}

// ---------------------------------------------------------------- client

#[test]
fn connect_then_announce() {
    let t0 = Instant::now();
    let mut c = client(8);
    let id = c.start_announce(req(), t0).unwrap();
    assert_eq!(c.poll_event(), None);
    let connect = c.poll_transmit(t0).unwrap();
    assert!(is_connect(&connect));
    assert_eq!(
        c.poll_transmit(t0),
        None,
        "announce waits for the connection id"
    );
    assert_eq!(c.poll_timeout(), Some(t0 + secs(15)));

    let t1 = t0 + secs(1);
    let out = c.handle_packet(&connect_answer(tid_of(&connect), 0x7777), t1);
    assert_eq!(out, PacketOutcome::Connected);
    assert!(c.is_connected(t1));
    let announce = c.poll_transmit(t1).unwrap();
    assert_eq!(announce.len(), ANNOUNCE_REQUEST_LEN);
    assert_eq!(conn_id_of(&announce), 0x7777);
    assert_eq!(action_of(&announce), action::ANNOUNCE);
    assert_ne!(tid_of(&announce), tid_of(&connect));
    assert_eq!(&announce[16..36], &[0x11; 20]);
    assert_eq!(c.poll_timeout(), Some(t1 + secs(15)));

    let peers = vec![
        "10.0.0.1:6881".parse().unwrap(),
        "10.0.0.2:0".parse().unwrap(),
        "10.0.0.1:6881".parse().unwrap(),
    ];
    let out = c.handle_packet(&announce_answer(tid_of(&announce), peers), t1 + secs(1));
    assert_eq!(out, PacketOutcome::Finished(id));
    let ev = c.poll_event().unwrap();
    assert_eq!(ev.id, id);
    let Ok(UdpOutcome::Announce(r)) = ev.result else {
        panic!("{ev:?}")
    };
    assert_eq!(r.interval, secs(1800));
    assert_eq!((r.complete, r.incomplete), (Some(4), Some(3)));
    assert_eq!(r.peers.len(), 1, "port 0 and the duplicate are dropped");
    assert_eq!(
        r.peers[0].addr,
        PeerAddr::Ip("10.0.0.1:6881".parse().unwrap())
    );
    assert_eq!(r.skipped_peers, 2);
    assert_eq!(c.poll_event(), None);
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.pending_requests(), 0);
    let s = c.stats();
    assert_eq!((s.connects_sent, s.requests_sent, s.retransmits), (1, 1, 0));
}

#[test]
fn connection_id_reused_within_60_s_and_renewed_after() {
    let t0 = Instant::now();
    let mut c = client(8);
    let (_, a) = connected_announce(&mut c, t0, 99);
    c.handle_packet(&announce_answer(tid_of(&a), vec![]), t0);
    c.poll_event().unwrap().result.unwrap();

    // 59.999 s after the connect answer: the id is still good.
    let t = t0 + Duration::from_millis(59_999);
    c.start_announce(req(), t).unwrap();
    let p = c.poll_transmit(t).unwrap();
    assert_eq!(action_of(&p), action::ANNOUNCE);
    assert_eq!(conn_id_of(&p), 99);
    c.handle_packet(&announce_answer(tid_of(&p), vec![]), t);
    c.poll_event().unwrap().result.unwrap();

    // At 60 s it has expired: connect again.
    let t = t0 + secs(60);
    assert!(!c.is_connected(t));
    c.start_announce(req(), t).unwrap();
    let p = c.poll_transmit(t).unwrap();
    assert!(is_connect(&p));
    c.handle_packet(&connect_answer(tid_of(&p), 100), t);
    let p = c.poll_transmit(t).unwrap();
    assert_eq!(conn_id_of(&p), 100);
    assert_eq!(c.stats().connects_sent, 2);
}

#[test]
fn connect_retransmits_on_15_times_2_pow_n_schedule_then_times_out() {
    let t0 = Instant::now();
    let mut c = client(8);
    let id = c.start_announce(req(), t0).unwrap();
    let first = c.poll_transmit(t0).unwrap();
    let mut now = t0;
    let mut send_times = vec![0u64];
    for n in 0..=8u32 {
        let deadline = c.poll_timeout().unwrap();
        assert_eq!(deadline - now, secs(15 << n), "timeout of attempt {n}");
        // Nothing happens a moment before the deadline.
        c.handle_timeout(deadline - Duration::from_millis(1));
        assert_eq!(c.poll_transmit(deadline - Duration::from_millis(1)), None);
        now = deadline;
        c.handle_timeout(now);
        if n < 8 {
            let again = c.poll_transmit(now).unwrap();
            assert_eq!(again, first, "a retransmission is the same packet");
            send_times.push((now - t0).as_secs());
        }
    }
    assert_eq!(
        send_times,
        [0, 15, 45, 105, 225, 465, 945, 1905, 3825],
        "sent at 0 then after 15, 30, 60, ... s"
    );
    assert_eq!((now - t0).as_secs(), 7665);
    let ev = c.poll_event().unwrap();
    assert_eq!(ev.id, id);
    assert_eq!(ev.result, Err(TrackerError::Timeout { attempts: 9 }));
    assert_eq!(c.poll_transmit(now), None);
    assert_eq!(c.poll_timeout(), None);
    let s = c.stats();
    assert_eq!((s.connects_sent, s.retransmits, s.timeouts), (9, 8, 1));
    // A very late connect answer is recognised as late.
    assert_eq!(
        c.handle_packet(&connect_answer(tid_of(&first), 1), now),
        PacketOutcome::Ignored(Ignored::Late(tid_of(&first)))
    );
}

#[test]
fn max_retries_gives_up_early() {
    let t0 = Instant::now();
    let mut c = client(1);
    c.start_announce(req(), t0).unwrap();
    c.poll_transmit(t0).unwrap();
    c.handle_timeout(t0 + secs(15));
    c.poll_transmit(t0 + secs(15)).unwrap();
    assert_eq!(c.poll_timeout(), Some(t0 + secs(45)));
    c.handle_timeout(t0 + secs(45));
    assert_eq!(c.poll_transmit(t0 + secs(45)), None);
    assert_eq!(
        c.poll_event().unwrap().result,
        Err(TrackerError::Timeout { attempts: 2 })
    );
    // Values above 8 are capped.
    let mut cfg = UdpClientConfig::new(AddressFamily::V4);
    cfg.max_retries = 100;
    assert_eq!(UdpTrackerClient::new(cfg).config().max_retries, 8);
}

#[test]
fn announce_retransmission_reconnects_when_the_id_expired() {
    let t0 = Instant::now();
    let mut c = client(8);
    let (id, a) = connected_announce(&mut c, t0, 5);
    // Attempts 0, 1, 2 of the announce at 0, 15, 45 s use the same id.
    c.handle_timeout(t0 + secs(15));
    let p = c.poll_transmit(t0 + secs(15)).unwrap();
    assert_eq!(p, a);
    c.handle_timeout(t0 + secs(45));
    let p = c.poll_transmit(t0 + secs(45)).unwrap();
    assert_eq!(p, a);
    assert_eq!(c.poll_timeout(), Some(t0 + secs(105)));
    // At 105 s the id is 105 s old: connect first.
    let t = t0 + secs(105);
    c.handle_timeout(t);
    let p = c.poll_transmit(t).unwrap();
    assert!(is_connect(&p));
    assert_eq!(
        c.poll_timeout(),
        Some(t + secs(15)),
        "connect starts at n = 0"
    );
    c.handle_packet(&connect_answer(tid_of(&p), 6), t + secs(1));
    let p = c.poll_transmit(t + secs(1)).unwrap();
    assert_eq!(conn_id_of(&p), 6);
    assert_eq!(tid_of(&p), tid_of(&a), "same transaction, same id");
    // The announce goes on with n = 3: 120 s.
    assert_eq!(c.poll_timeout(), Some(t + secs(1) + secs(120)));
    c.handle_packet(&announce_answer(tid_of(&a), vec![]), t + secs(2));
    assert_eq!(c.poll_event().unwrap().id, id);
}

#[test]
fn stray_wrong_action_late_and_malformed_packets_are_ignored_and_counted() {
    let t0 = Instant::now();
    let mut c = client(8);
    let connect = {
        c.start_announce(req(), t0).unwrap();
        c.poll_transmit(t0).unwrap()
    };
    let tid = tid_of(&connect);
    // Wrong transaction id.
    let out = c.handle_packet(&connect_answer(tid.wrapping_add(1), 1), t0);
    assert_eq!(
        out,
        PacketOutcome::Ignored(Ignored::UnknownTransaction(tid.wrapping_add(1)))
    );
    // Right id, wrong action (an announce answer to a connect).
    let out = c.handle_packet(&announce_answer(tid, vec![]), t0);
    assert_eq!(
        out,
        PacketOutcome::Ignored(Ignored::WrongAction {
            transaction_id: tid,
            action: 1
        })
    );
    // Truncated connect answer with the right id.
    let good = connect_answer(tid, 1);
    for len in 0..16 {
        assert!(matches!(
            c.handle_packet(&good[..len], t0),
            PacketOutcome::Ignored(Ignored::Malformed(_))
        ));
    }
    assert!(!c.is_connected(t0));
    // The transaction survived all that.
    assert_eq!(c.handle_packet(&good, t0), PacketOutcome::Connected);
    // A duplicate of the answer is late.
    assert_eq!(
        c.handle_packet(&good, t0),
        PacketOutcome::Ignored(Ignored::Late(tid))
    );
    let a = c.poll_transmit(t0).unwrap();
    // A connect answer to the announce transaction: wrong action.
    assert!(matches!(
        c.handle_packet(&connect_answer(tid_of(&a), 3), t0),
        PacketOutcome::Ignored(Ignored::WrongAction { action: 0, .. })
    ));
    // A scrape answer to it: wrong action too.
    let scrape = UdpResponse::Scrape {
        transaction_id: tid_of(&a),
        entries: vec![],
    };
    assert!(matches!(
        c.handle_packet(&scrape.encode(), t0),
        PacketOutcome::Ignored(Ignored::WrongAction { action: 2, .. })
    ));
    // Announce answer with a partial peer: malformed, transaction still open.
    let mut bad = announce_answer(tid_of(&a), vec![]);
    bad.extend_from_slice(&[1, 2, 3]);
    assert!(matches!(
        c.handle_packet(&bad, t0),
        PacketOutcome::Ignored(Ignored::Malformed(TrackerError::UdpPartialEntry { .. }))
    ));
    assert_eq!(c.pending_requests(), 1);
    assert!(matches!(
        c.handle_packet(&announce_answer(tid_of(&a), vec![]), t0),
        PacketOutcome::Finished(_)
    ));
    assert_eq!(
        c.handle_packet(&announce_answer(tid_of(&a), vec![]), t0),
        PacketOutcome::Ignored(Ignored::Late(tid_of(&a)))
    );
    let s = c.stats();
    assert_eq!(s.ignored_unknown, 1);
    assert_eq!(s.ignored_wrong_action, 3);
    assert_eq!(s.ignored_malformed, 17);
    assert_eq!(s.ignored_late, 2);
}

#[test]
fn error_action_on_connect_fails_waiting_requests() {
    let t0 = Instant::now();
    let mut c = client(8);
    let a = c.start_announce(req(), t0).unwrap();
    let b = c.start_scrape(&[InfoHash([1; 20])], t0).unwrap();
    let p = c.poll_transmit(t0).unwrap();
    assert!(is_connect(&p));
    assert_eq!(
        c.poll_transmit(t0),
        None,
        "one connect serves both requests"
    );
    let err = UdpResponse::Error {
        transaction_id: tid_of(&p),
        message: "go away".into(),
    };
    assert_eq!(
        c.handle_packet(&err.encode(), t0),
        PacketOutcome::ConnectRefused
    );
    let failure = Err(TrackerError::Failure {
        message: "go away".into(),
    });
    assert_eq!(
        c.poll_event(),
        Some(UdpEvent {
            id: a,
            result: failure.clone()
        })
    );
    assert_eq!(
        c.poll_event(),
        Some(UdpEvent {
            id: b,
            result: failure
        })
    );
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn error_action_on_announce_ends_it_and_drops_the_connection_id() {
    let t0 = Instant::now();
    let mut c = client(8);
    let (id, a) = connected_announce(&mut c, t0, 1);
    let err = UdpResponse::Error {
        transaction_id: tid_of(&a),
        message: "Requested download is not authorized for use with this tracker.".into(),
    };
    assert_eq!(
        c.handle_packet(&err.encode(), t0),
        PacketOutcome::Finished(id)
    );
    let ev = c.poll_event().unwrap();
    assert_eq!(
        ev.result.unwrap_err().to_string(),
        "tracker refused the request: Requested download is not authorized for use with this tracker."
    );
    assert!(!c.is_connected(t0));
    c.start_announce(req(), t0).unwrap();
    assert!(is_connect(&c.poll_transmit(t0).unwrap()));
}

#[test]
fn scrape_flow_maps_entries_to_hashes() {
    let t0 = Instant::now();
    let mut c = client(8);
    let (_, a) = connected_announce(&mut c, t0, 1);
    let hashes = [InfoHash([1; 20]), InfoHash([2; 20]), InfoHash([3; 20])];
    let id = c.start_scrape(&hashes, t0).unwrap();
    let p = c.poll_transmit(t0).unwrap();
    assert_eq!(action_of(&p), action::SCRAPE);
    assert_eq!(p.len(), 16 + 60);
    let answer = UdpResponse::Scrape {
        transaction_id: tid_of(&p),
        entries: vec![
            UdpScrapeEntry {
                seeders: 1,
                completed: 2,
                leechers: 3,
            },
            UdpScrapeEntry {
                seeders: -5,
                completed: 0,
                leechers: 7,
            },
        ],
    };
    assert_eq!(
        c.handle_packet(&answer.encode(), t0),
        PacketOutcome::Finished(id)
    );
    let Ok(UdpOutcome::Scrape(s)) = c.poll_event().unwrap().result else {
        panic!()
    };
    assert_eq!(s.files.len(), 2, "the tracker answered for two of three");
    assert_eq!(s.get(&hashes[0]).unwrap().incomplete, 3);
    assert_eq!(s.get(&hashes[1]).unwrap().complete, 0, "negative → 0");
    assert_eq!(s.get(&hashes[2]), None);
    // The announce is still pending and unaffected.
    assert_eq!(c.pending_requests(), 1);
    let _ = a;
    assert_eq!(c.start_scrape(&[], t0), Err(TrackerError::NoInfoHashes));
    assert!(c.start_scrape(&[InfoHash([0; 20]); 75], t0).is_err());
}

#[test]
fn ipv6_family_reads_18_byte_peers() {
    let t0 = Instant::now();
    let mut c = UdpTrackerClient::with_seed(UdpClientConfig::new(AddressFamily::V6), 1);
    let id = c.start_announce(req(), t0).unwrap();
    let p = c.poll_transmit(t0).unwrap();
    c.handle_packet(&connect_answer(tid_of(&p), 1), t0);
    let a = c.poll_transmit(t0).unwrap();
    let peer: SocketAddr = "[2001:db8::1]:51413".parse().unwrap();
    assert_eq!(
        c.handle_packet(&announce_answer(tid_of(&a), vec![peer]), t0),
        PacketOutcome::Finished(id)
    );
    let Ok(UdpOutcome::Announce(r)) = c.poll_event().unwrap().result else {
        panic!()
    };
    assert_eq!(r.peers[0].addr, PeerAddr::Ip(peer));
}

#[test]
fn cancel_and_request_limit() {
    let t0 = Instant::now();
    let mut cfg = UdpClientConfig::new(AddressFamily::V4);
    cfg.max_requests = 2;
    let mut c = UdpTrackerClient::with_seed(cfg, 3);
    let (a, pa) = connected_announce(&mut c, t0, 1);
    let b = c.start_announce(req(), t0).unwrap();
    assert_eq!(
        c.start_announce(req(), t0),
        Err(TrackerError::TooManyRequests { limit: 2 })
    );
    assert!(c.cancel(a));
    assert!(!c.cancel(a));
    assert_eq!(
        c.handle_packet(&announce_answer(tid_of(&pa), vec![]), t0),
        PacketOutcome::Ignored(Ignored::Late(tid_of(&pa)))
    );
    let pb = c.poll_transmit(t0).unwrap();
    c.handle_packet(&announce_answer(tid_of(&pb), vec![]), t0);
    // b's event is not collected yet: it still counts against the limit.
    c.start_announce(req(), t0).unwrap();
    assert!(c.start_announce(req(), t0).is_err());
    assert_eq!(c.poll_event().unwrap().id, b);
    assert!(c.start_announce(req(), t0).is_ok());
}

#[test]
fn transaction_ids_are_random_per_seed_and_unique() {
    let t0 = Instant::now();
    let tids = |seed| {
        let mut c = UdpTrackerClient::with_seed(UdpClientConfig::new(AddressFamily::V4), seed);
        c.start_announce(req(), t0).unwrap();
        tid_of(&c.poll_transmit(t0).unwrap())
    };
    assert_eq!(tids(1), tids(1));
    assert_ne!(tids(1), tids(2));

    let mut c = client(8);
    let p = {
        c.start_announce(req(), t0).unwrap();
        c.poll_transmit(t0).unwrap()
    };
    c.handle_packet(&connect_answer(tid_of(&p), 1), t0);
    for _ in 0..40 {
        c.start_announce(req(), t0).unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    seen.insert(tid_of(&p));
    while let Some(p) = c.poll_transmit(t0) {
        assert!(seen.insert(tid_of(&p)), "duplicate transaction id");
    }
    assert_eq!(seen.len(), 42);
}

#[test]
fn url_data_from_config_is_sent() {
    let t0 = Instant::now();
    let mut cfg = UdpClientConfig::new(AddressFamily::V4);
    cfg.announce_options.url_data = Some(b"/announce".to_vec());
    let mut c = UdpTrackerClient::with_seed(cfg, 3);
    c.start_announce(req(), t0).unwrap();
    let p = c.poll_transmit(t0).unwrap();
    c.handle_packet(&connect_answer(tid_of(&p), 1), t0);
    let a = c.poll_transmit(t0).unwrap();
    assert_eq!(&a[98..], b"\x02\x09/announce\x00");

    // A configuration the codec refuses ends the request instead of looping.
    let mut cfg = UdpClientConfig::new(AddressFamily::V4);
    cfg.announce_options.url_data = Some(vec![b'x'; 5000]);
    let mut c = UdpTrackerClient::with_seed(cfg, 3);
    let id = c.start_announce(req(), t0).unwrap();
    let p = c.poll_transmit(t0).unwrap();
    c.handle_packet(&connect_answer(tid_of(&p), 1), t0);
    assert_eq!(c.poll_transmit(t0), None);
    let ev = c.poll_event().unwrap();
    assert_eq!(ev.id, id);
    assert!(matches!(
        ev.result,
        Err(TrackerError::UrlDataTooLong { .. })
    ));
}
