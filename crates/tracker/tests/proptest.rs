//! Property tests: no decoder panics on arbitrary bytes, responses respect
//! their bounds, UDP responses survive encode → decode, the UDP client keeps
//! its invariants under random inputs, and tier bookkeeping stays consistent.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rivulet_bencode::OwnedValue;
use rivulet_core::{InfoHash, PeerId};
use rivulet_tracker::udp::{
    decode_response, encode_announce, AddressFamily, UdpAnnounceOptions, UdpClientConfig,
    UdpResponse, UdpScrapeEntry, UdpTrackerClient, UdpTrackerUrl,
};
use rivulet_tracker::*;

fn check_announce(r: &AnnounceResponse) {
    assert!(r.interval >= MIN_ANNOUNCE_INTERVAL && r.interval <= MAX_ANNOUNCE_INTERVAL);
    if let Some(m) = r.min_interval {
        assert!(m >= MIN_ANNOUNCE_INTERVAL && m <= r.interval);
    }
    assert!(r.peers.len() <= MAX_PEERS_PER_RESPONSE);
    let mut seen = HashSet::new();
    for p in &r.peers {
        assert!(seen.insert(p.addr.clone()), "duplicate peer");
        match &p.addr {
            PeerAddr::Ip(sa) => assert!(sa.port() != 0 && !sa.ip().is_unspecified()),
            PeerAddr::Host { name, port } => {
                assert!(*port != 0 && !name.is_empty() && name.len() <= MAX_HOSTNAME_LEN)
            }
        }
    }
    if let Some(w) = &r.warning {
        check_message(w);
    }
    if let Some(id) = &r.tracker_id {
        assert!(id.len() <= MAX_TRACKER_ID_LEN);
    }
}

fn check_message(m: &str) {
    assert!(m.chars().count() <= MAX_MESSAGE_CHARS + 1);
    assert!(!m.chars().any(char::is_control));
}

fn check_error(e: &TrackerError) {
    if let TrackerError::Failure { message } = e {
        check_message(message);
    }
    // Every error renders.
    assert!(!e.to_string().is_empty());
}

/// Announce-like dictionaries: known keys with values of any type.
fn value() -> impl Strategy<Value = OwnedValue> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(OwnedValue::Int),
        (-10i64..100_000).prop_map(OwnedValue::Int),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(OwnedValue::Bytes),
        "[0-9a-f:.\\[\\]]{0,40}".prop_map(|s| OwnedValue::Bytes(s.into_bytes())),
    ];
    leaf.prop_recursive(3, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(OwnedValue::List),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just(b"ip".to_vec()),
                        Just(b"port".to_vec()),
                        Just(b"peer id".to_vec()),
                        proptest::collection::vec(any::<u8>(), 0..4),
                    ],
                    inner
                ),
                0..4
            )
            .prop_map(|kv| OwnedValue::Dict(kv.into_iter().collect())),
        ]
    })
}

fn announce_dict() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just("interval"),
        Just("min interval"),
        Just("peers"),
        Just("peers6"),
        Just("complete"),
        Just("incomplete"),
        Just("tracker id"),
        Just("warning message"),
        Just("failure reason"),
        Just("files"),
        Just("flags"),
    ];
    proptest::collection::vec((key, value()), 0..8).prop_map(|kv| {
        let mut d = OwnedValue::dict();
        for (k, v) in kv {
            d = d.with(k, v);
        }
        d.to_bytes()
    })
}

fn socket_addr(v6: bool) -> impl Strategy<Value = SocketAddr> {
    if v6 {
        any::<([u8; 16], u16)>()
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
            .boxed()
    } else {
        any::<([u8; 4], u16)>()
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
            .boxed()
    }
}

fn udp_response(v6: bool) -> impl Strategy<Value = UdpResponse> {
    prop_oneof![
        any::<(u32, u64)>().prop_map(|(transaction_id, connection_id)| UdpResponse::Connect {
            transaction_id,
            connection_id
        }),
        (
            any::<(u32, i32, i32, i32)>(),
            proptest::collection::vec(socket_addr(v6), 0..200)
        )
            .prop_map(|((transaction_id, interval, leechers, seeders), peers)| {
                UdpResponse::Announce {
                    transaction_id,
                    interval,
                    leechers,
                    seeders,
                    peers,
                }
            }),
        (
            any::<u32>(),
            proptest::collection::vec(any::<(i32, i32, i32)>(), 0..74)
        )
            .prop_map(|(transaction_id, e)| UdpResponse::Scrape {
                transaction_id,
                entries: e
                    .into_iter()
                    .map(|(seeders, completed, leechers)| UdpScrapeEntry {
                        seeders,
                        completed,
                        leechers
                    })
                    .collect(),
            }),
        (
            any::<u32>(),
            "[a-zA-Z0-9.!]{1,20}( [a-zA-Z0-9.!]{1,20}){0,5}"
        )
            .prop_map(|(transaction_id, message)| UdpResponse::Error {
                transaction_id,
                message
            }),
    ]
}

fn request() -> impl Strategy<Value = AnnounceRequest> {
    (
        any::<([u8; 20], [u8; 20], u16, u64, u64, u64)>(),
        proptest::sample::select(vec![
            Event::None,
            Event::Started,
            Event::Completed,
            Event::Stopped,
        ]),
        proptest::option::of(any::<u32>()),
        any::<u32>(),
        proptest::option::of(".{0,20}"),
        any::<bool>(),
    )
        .prop_map(
            |(
                (ih, pid, port, uploaded, downloaded, left),
                ev,
                numwant,
                key,
                tracker_id,
                compact,
            )| {
                AnnounceRequest {
                    info_hash: InfoHash(ih),
                    peer_id: PeerId(pid),
                    port,
                    uploaded,
                    downloaded,
                    left,
                    event: ev,
                    numwant,
                    key,
                    tracker_id,
                    compact,
                    crypto: Default::default(),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn http_parsers_never_panic_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        match parse_announce_response(&body) {
            Ok(r) => check_announce(&r),
            Err(e) => check_error(&e),
        }
        let hashes = [InfoHash([b'a'; 20])];
        if let Err(e) = parse_scrape_response(&body, &hashes) {
            check_error(&e);
        }
    }

    #[test]
    fn http_parsers_respect_bounds_on_dicts(body in announce_dict(), junk in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut with_junk = body.clone();
        with_junk.extend_from_slice(&junk);
        for b in [&body, &with_junk] {
            match parse_announce_response(b) {
                Ok(r) => check_announce(&r),
                Err(e) => check_error(&e),
            }
            if let Ok(s) = parse_scrape_response(b, &[InfoHash([0; 20])]) {
                prop_assert!(s.files.len() <= 1);
            }
        }
        // Trailing junk never turns a good body bad.
        if let Ok(r) = parse_announce_response(&body) {
            prop_assert_eq!(parse_announce_response(&with_junk), Ok(r));
        }
    }

    #[test]
    fn udp_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), act in 0u32..5) {
        let mut with_action = act.to_be_bytes().to_vec();
        with_action.extend_from_slice(&bytes);
        for b in [&bytes, &with_action] {
            for fam in [AddressFamily::V4, AddressFamily::V6] {
                match decode_response(b, fam) {
                    Ok(UdpResponse::Error { message, .. }) => check_message(&message),
                    Ok(_) => {}
                    Err(e) => check_error(&e),
                }
            }
        }
    }

    #[test]
    fn udp_responses_round_trip_v4(r in udp_response(false)) {
        prop_assert_eq!(decode_response(&r.encode(), AddressFamily::V4), Ok(r));
    }

    #[test]
    fn udp_responses_round_trip_v6(r in udp_response(true)) {
        prop_assert_eq!(decode_response(&r.encode(), AddressFamily::V6), Ok(r));
    }

    #[test]
    fn udp_announce_request_layout(req in request(), conn in any::<u64>(), tid in any::<u32>()) {
        let p = encode_announce(conn, tid, &req, &UdpAnnounceOptions::default()).unwrap();
        prop_assert_eq!(p.len(), 98);
        prop_assert_eq!(&p[..8], &conn.to_be_bytes());
        prop_assert_eq!(&p[12..16], &tid.to_be_bytes());
        prop_assert_eq!(&p[16..36], req.info_hash.as_bytes());
        prop_assert_eq!(&p[36..56], req.peer_id.as_bytes());
        prop_assert_eq!(&p[88..92], &req.key.to_be_bytes());
        prop_assert_eq!(&p[96..98], &req.port.to_be_bytes());
    }

    #[test]
    fn announce_url_encodes_raw_bytes(req in request()) {
        let url = announce_url("http://t.example/announce?x=1", &req).unwrap();
        prop_assert!(url.is_ascii());
        let query = url.split_once('?').unwrap().1;
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .map(|v| percent_encoding::percent_decode_str(v).collect::<Vec<u8>>())
        };
        prop_assert_eq!(param("info_hash").unwrap(), req.info_hash.as_bytes().to_vec());
        prop_assert_eq!(param("peer_id").unwrap(), req.peer_id.as_bytes().to_vec());
        prop_assert_eq!(param("key").unwrap(), format!("{:08X}", req.key).into_bytes());
        prop_assert_eq!(param("trackerid"), req.tracker_id.map(String::into_bytes));
        for kv in query.split('&') {
            prop_assert!(kv.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%=".contains(&b)));
        }
    }

    #[test]
    fn url_functions_never_panic(s in ".{0,80}", req in request()) {
        let _ = announce_url(&s, &req);
        let _ = scrape_base(&s);
        let _ = UdpTrackerUrl::parse(&s);
        let http = format!("http://{s}");
        if let Some(scrape) = scrape_base(&http) {
            prop_assert!(scrape.contains("scrape"));
        }
        let _ = UdpTrackerUrl::parse(&format!("udp://{s}"));
    }

    #[test]
    fn udp_client_survives_random_inputs(
        seed in any::<u64>(),
        max_retries in 0u32..10,
        ops in proptest::collection::vec((0u8..7, any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..60),
    ) {
        let mut cfg = UdpClientConfig::new(AddressFamily::V4);
        cfg.max_retries = max_retries;
        cfg.max_requests = 8;
        let mut c = UdpTrackerClient::with_seed(cfg, seed);
        let mut now = Instant::now();
        let mut started = HashSet::new();
        let mut finished = HashSet::new();
        let mut last_sent: Option<Vec<u8>> = None;
        let base_req = AnnounceRequest {
            info_hash: InfoHash([1; 20]),
            peer_id: PeerId([2; 20]),
            port: 1,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: Event::None,
            numwant: None,
            key: 0,
            tracker_id: None,
            compact: true,
            crypto: Default::default(),
        };
        for (op, n, bytes) in ops {
            match op {
                0 => {
                    if let Ok(id) = c.start_announce(base_req.clone(), now) {
                        started.insert(id);
                    }
                }
                1 => {
                    if let Ok(id) = c.start_scrape(&[InfoHash([3; 20])], now) {
                        started.insert(id);
                    }
                }
                2 => {
                    // Random bytes.
                    let _ = c.handle_packet(&bytes, now);
                }
                3 | 4 => {
                    // A packet echoing the last transaction id with some action.
                    if let Some(p) = &last_sent {
                        let mut pkt = (n % 4).to_be_bytes().to_vec();
                        pkt.extend_from_slice(&p[12..16]);
                        pkt.extend_from_slice(&bytes);
                        let _ = c.handle_packet(&pkt, now);
                    }
                }
                5 => {
                    now += Duration::from_secs(u64::from(n % 5000));
                    c.handle_timeout(now);
                }
                _ => {
                    if let Some(t) = c.poll_timeout() {
                        now = now.max(t);
                        c.handle_timeout(now);
                    }
                }
            }
            while let Some(p) = c.poll_transmit(now) {
                prop_assert!(p.len() >= 16);
                last_sent = Some(p);
            }
            if let Some(t) = c.poll_timeout() {
                prop_assert!(t > now, "deadline already passed");
            }
            while let Some(ev) = c.poll_event() {
                prop_assert!(started.contains(&ev.id));
                prop_assert!(finished.insert(ev.id), "request finished twice");
                match ev.result {
                    Ok(udp::UdpOutcome::Announce(r)) => check_announce(&r),
                    Ok(udp::UdpOutcome::Scrape(s)) => prop_assert!(s.files.len() <= 1),
                    Err(e) => check_error(&e),
                }
            }
            prop_assert_eq!(c.pending_requests() + finished.len(), started.len());
        }
        // Letting time run out finishes every request.
        for _ in 0..2000 {
            let Some(t) = c.poll_timeout() else { break };
            now = t;
            c.handle_timeout(now);
            while c.poll_transmit(now).is_some() {}
        }
        prop_assert_eq!(c.pending_requests(), 0);
    }

    #[test]
    fn tiers_keep_their_members(
        tiers in proptest::collection::vec(proptest::collection::vec("[a-e]{1,2}", 0..5), 0..5),
        seed in any::<u64>(),
        marks in proptest::collection::vec((any::<bool>(), "[a-e]{1,2}"), 0..20),
    ) {
        let mut list = TrackerList::new(tiers.clone(), &mut StdRng::seed_from_u64(seed));
        let members = |l: &TrackerList| {
            let mut v: Vec<(usize, String)> = l.order().map(|(t, u)| (t, u.to_owned())).collect();
            v.sort();
            v
        };
        let before = members(&list);
        let unique: HashSet<&String> = tiers.iter().flatten().collect();
        prop_assert_eq!(before.len(), unique.len());
        for (ok, url) in marks {
            let known = list.state(&url).is_some();
            let tier = list.order().find(|(_, u)| *u == url).map(|(t, _)| t);
            if ok {
                prop_assert_eq!(list.mark_success(&url), known);
                if let Some(t) = tier {
                    let first = list.order().find(|(tt, _)| *tt == t).map(|(_, u)| u.to_owned());
                    prop_assert_eq!(first, Some(url.clone()));
                }
            } else {
                let order: Vec<(usize, String)> = list.order().map(|(t, u)| (t, u.to_owned())).collect();
                prop_assert_eq!(list.mark_failure(&url), known);
                let after: Vec<(usize, String)> = list.order().map(|(t, u)| (t, u.to_owned())).collect();
                prop_assert_eq!(order, after);
            }
            prop_assert_eq!(members(&list), before.clone());
            for policy in [
                AnnouncePolicy::default(),
                AnnouncePolicy::BEP12,
                AnnouncePolicy { announce_to_all_tiers: true, announce_to_all_trackers: true },
                AnnouncePolicy { announce_to_all_tiers: false, announce_to_all_trackers: true },
            ] {
                for t in list.targets(policy) {
                    prop_assert_eq!(list.state(t), Some(TrackerState::Untried));
                }
            }
        }
    }
}
