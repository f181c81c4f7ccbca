//! Tests of the HTTP side (URLs and bodies), the shared bounds, and BEP 12 tiers.

use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rivulet_core::{InfoHash, PeerId};

use crate::*;

fn hash(hex: &str) -> InfoHash {
    InfoHash::from_hex_or_base32(hex).unwrap()
}

fn req() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: hash("123456789abcdef123456789abcdef123456789a"),
        peer_id: PeerId(*b"-RV0100-ab cd~ef.g_h"),
        port: 6881,
        uploaded: 10,
        downloaded: 20,
        left: 30,
        event: Event::Started,
        numwant: Some(80),
        key: 0xbeef,
        tracker_id: None,
        compact: true,
        crypto: Crypto::default(),
    }
}

fn sa(s: &str) -> PeerAddr {
    PeerAddr::Ip(s.parse::<SocketAddr>().unwrap())
}

// ---------------------------------------------------------------- URLs

#[test]
fn announce_url_exact() {
    // The info-hash is the example from the BEP 3 wiki page.
    assert_eq!(
        announce_url("http://tracker.example:6969/announce", &req()).unwrap(),
        "http://tracker.example:6969/announce\
         ?info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A\
         &peer_id=-RV0100-ab%20cd~ef.g_h\
         &port=6881&uploaded=10&downloaded=20&left=30\
         &compact=1&event=started&key=0000BEEF&numwant=80"
    );
}

#[test]
fn announce_url_says_what_encryption_we_take() {
    let url = |crypto| {
        let r = AnnounceRequest { crypto, ..req() };
        announce_url("http://t.example/announce", &r).unwrap()
    };
    assert!(!url(Crypto::Plaintext).contains("crypto"));
    assert!(url(Crypto::Supported).ends_with("&numwant=80&supportcrypto=1"));
    assert!(url(Crypto::Required).ends_with("&numwant=80&supportcrypto=1&requirecrypto=1"));
}

#[test]
fn announce_url_every_byte_outside_unreserved_is_escaped() {
    let mut r = req();
    let mut ih = [0u8; 20];
    for (i, b) in ih.iter_mut().enumerate() {
        *b = [0x00, b'/', b'?', b'&', b'=', b'%', b'+', b' ', 0xff, b'Z'][i % 10];
    }
    r.info_hash = InfoHash(ih);
    let url = announce_url("https://t.example/a", &r).unwrap();
    let ih_param = url
        .split('&')
        .next()
        .unwrap()
        .strip_prefix("https://t.example/a?info_hash=")
        .unwrap();
    assert_eq!(ih_param, "%00%2F%3F%26%3D%25%2B%20%FFZ".repeat(2));
}

#[test]
fn announce_url_query_fragment_and_optional_params() {
    let mut r = req();
    r.event = Event::None;
    r.numwant = None;
    r.compact = false;
    r.key = 0xdead_beef;
    r.tracker_id = Some("id 1&2".into());
    let url = announce_url("HTTP://t.example/announce.php?passkey=abc#frag", &r).unwrap();
    assert!(url.starts_with("HTTP://t.example/announce.php?passkey=abc&info_hash="));
    assert!(!url.contains("frag"));
    assert!(!url.contains("event="));
    assert!(!url.contains("numwant="));
    assert!(url.ends_with("&left=30&compact=0&key=DEADBEEF&trackerid=id%201%262"));
    // A base ending in '?' or '&' gets no extra separator.
    for base in ["http://t/a?", "http://t/a?x=1&"] {
        let url = announce_url(base, &r).unwrap();
        assert!(url.starts_with(&format!("{base}info_hash=")), "{url}");
    }
    for e in [Event::Completed, Event::Stopped] {
        r.event = e;
        let url = announce_url("http://t/a", &r).unwrap();
        assert!(url.contains(&format!("&event={}&", e.http_name().unwrap())));
    }
}

#[test]
fn announce_url_rejects_unusable_bases() {
    for bad in [
        "udp://t.example:80/announce",
        "ftp://t/a",
        "http://",
        "http:///announce",
        "http://t/a b",
        "http://t/a\n",
        "t.example/announce",
        "",
    ] {
        let e = announce_url(bad, &req()).unwrap_err();
        assert!(matches!(e, TrackerError::InvalidUrl { .. }), "{bad}: {e}");
    }
    let long = format!("http://t/{}", "a".repeat(3000));
    let e = announce_url(&long, &req()).unwrap_err();
    let TrackerError::InvalidUrl { url, .. } = e else {
        panic!()
    };
    assert_eq!(url.len(), 200, "errors quote a bounded part of the URL");
}

#[test]
fn scrape_urls_follow_bep_48() {
    let cases = [
        (
            "http://example.com/announce",
            Some("http://example.com/scrape"),
        ),
        (
            "http://example.com/x/announce",
            Some("http://example.com/x/scrape"),
        ),
        (
            "http://example.com/announce.php",
            Some("http://example.com/scrape.php"),
        ),
        ("http://example.com/a", None),
        (
            "http://example.com/announce?x2%0644",
            Some("http://example.com/scrape?x2%0644"),
        ),
        (
            "http://example.com/announce?x=2/4",
            Some("http://example.com/scrape?x=2/4"),
        ),
        ("http://example.com/x%064announce", None),
        ("http://announce.example.com", None),
        ("http://announce.example.com/", None),
        ("http://announce.example.com?announce", None),
        (
            "https://t:443/pk123/announce#f",
            Some("https://t:443/pk123/scrape"),
        ),
        ("udp://t:80/announce", None),
    ];
    for (announce, want) in cases {
        assert_eq!(scrape_base(announce).as_deref(), want, "{announce}");
    }
    let hashes = [InfoHash([0xaa; 20]), InfoHash([b'a'; 20])];
    assert_eq!(
        scrape_url("http://t/announce?pk=1", &hashes).unwrap(),
        format!(
            "http://t/scrape?pk=1&info_hash={}&info_hash={}",
            "%AA".repeat(20),
            "a".repeat(20)
        )
    );
    assert_eq!(scrape_url("http://t/ann", &hashes), None);
}

// ---------------------------------------------------------------- announce bodies

#[test]
fn compact_peers_and_fields() {
    let mut body = b"d8:completei5e10:incompletei7e8:intervali1800e12:min intervali900e".to_vec();
    body.extend_from_slice(b"5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50");
    body.extend_from_slice(
        b"6:peers618:\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\xc8\xd5",
    );
    body.extend_from_slice(b"10:tracker id3:xyz15:warning message11:be careful!e");
    let r = parse_announce_response(&body).unwrap();
    assert_eq!(r.interval, Duration::from_secs(1800));
    assert_eq!(r.min_interval, Some(Duration::from_secs(900)));
    assert_eq!((r.complete, r.incomplete), (Some(5), Some(7)));
    assert_eq!(r.tracker_id.as_deref(), Some("xyz"));
    assert_eq!(r.warning.as_deref(), Some("be careful!"));
    let addrs: Vec<_> = r.peers.iter().map(|p| p.addr.clone()).collect();
    assert_eq!(
        addrs,
        [
            sa("127.0.0.1:6881"),
            sa("10.0.0.2:80"),
            sa("[2001:db8::1]:51413")
        ]
    );
    assert!(r.peers.iter().all(|p| p.peer_id.is_none()));
    assert_eq!(r.skipped_peers, 0);
}

#[test]
fn dictionary_peers() {
    let body = b"d8:intervali60e5:peersl\
        d2:ip9:10.0.0.107:peer id20:-TR3000-aaaaaaaaaaaa4:porti51413ee\
        d2:ip11:2001:db8::54:porti6881ee\
        d2:ip13:[2001:db8::6]4:porti6882ee\
        d2:ip16:Peer.Example.org4:porti1eed2:ip8:bad!host4:porti1ee\
        d2:ip8:10.0.0.24:porti0ee\
        d2:ip8:10.0.0.34:porti65536ee\
        d2:ip8:10.0.0.4e\
        d2:ip7:0.0.0.04:porti1ee\
        d2:ip9:10.0.0.107:peer id3:abc4:porti51413ee\
        i5e\
        ee";
    let r = parse_announce_response(body).unwrap();
    let got: Vec<_> = r
        .peers
        .iter()
        .map(|p| (p.addr.clone(), p.peer_id))
        .collect();
    assert_eq!(
        got,
        [
            (
                sa("10.0.0.10:51413"),
                Some(PeerId(*b"-TR3000-aaaaaaaaaaaa"))
            ),
            (sa("[2001:db8::5]:6881"), None),
            (sa("[2001:db8::6]:6882"), None),
            (
                PeerAddr::Host {
                    name: "peer.example.org".into(),
                    port: 1
                },
                None
            ),
        ]
    );
    // bad host, port 0, port 65536, no port, 0.0.0.0, duplicate, not a dict.
    assert_eq!(r.skipped_peers, 7);
}

#[test]
fn failure_reason_wins_and_is_sanitized() {
    let body = b"d14:failure reason22:torrent not registered5:peers0:e";
    assert_eq!(
        parse_announce_response(body),
        Err(TrackerError::Failure {
            message: "torrent not registered".into()
        })
    );
    let e =
        parse_announce_response(b"d14:failure reason19:bad\x1b[31m\r\n\xff\xfe\xe2\x80\xaeevile")
            .unwrap_err();
    assert_eq!(
        e.to_string(),
        "tracker refused the request: bad [31m \u{fffd}\u{fffd} evil"
    );
    let mut long = b"d14:failure reason5000:".to_vec();
    long.extend_from_slice(&[b'x'; 5000]);
    long.push(b'e');
    let TrackerError::Failure { message } = parse_announce_response(&long).unwrap_err() else {
        panic!()
    };
    assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
    assert!(message.ends_with('…'));
    // Not a string, or empty: still a failure.
    for body in [&b"d14:failure reasoni1ee"[..], b"d14:failure reason0:e"] {
        assert_eq!(
            parse_announce_response(body),
            Err(TrackerError::Failure {
                message: "(no reason given)".into()
            })
        );
    }
    // Scrape answers can fail too.
    assert!(matches!(
        parse_scrape_response(b"d14:failure reason4:nopee", &[]),
        Err(TrackerError::Failure { .. })
    ));
}

#[test]
fn intervals_are_bounded() {
    let interval = |body: &[u8]| {
        let r = parse_announce_response(body).unwrap();
        (r.interval.as_secs(), r.min_interval.map(|d| d.as_secs()))
    };
    assert_eq!(interval(b"de"), (1800, None), "missing → default");
    assert_eq!(interval(b"d8:intervali0ee"), (1800, None), "zero → default");
    assert_eq!(
        interval(b"d8:intervali-5ee"),
        (1800, None),
        "negative → default"
    );
    assert_eq!(
        interval(b"d8:interval4:1800e"),
        (1800, None),
        "not an int → default"
    );
    assert_eq!(interval(b"d8:intervali5ee"), (60, None), "raised to 60 s");
    assert_eq!(
        interval(b"d8:intervali9223372036854775807ee"),
        (7200, None),
        "lowered to 2 h"
    );
    assert_eq!(
        interval(b"d8:intervali600e12:min intervali3600ee"),
        (600, Some(600)),
        "min interval never above interval"
    );
    assert_eq!(
        interval(b"d8:intervali600e12:min intervali-1ee"),
        (600, None)
    );
    assert_eq!(
        interval(b"d8:intervali600e12:min intervali1ee"),
        (600, Some(60))
    );
}

#[test]
fn counts_and_tracker_id_are_validated() {
    let r = parse_announce_response(
        b"d8:completei-1e10:incompletei99999999999e10:tracker id2:\xff\xfee",
    )
    .unwrap();
    assert_eq!((r.complete, r.incomplete), (None, None));
    assert_eq!(r.tracker_id, None, "not UTF-8");
    let mut body = b"d10:tracker id257:".to_vec();
    body.extend_from_slice(&[b'a'; 257]);
    body.push(b'e');
    assert_eq!(parse_announce_response(&body).unwrap().tracker_id, None);
}

#[test]
fn a_megabyte_of_compact_peers_is_capped() {
    let n = 1_000_000 / 6;
    let mut peers = Vec::with_capacity(n * 6);
    for i in 0..n as u32 {
        peers.extend_from_slice(&(0x0a00_0000 + i).to_be_bytes());
        peers.extend_from_slice(&6881u16.to_be_bytes());
    }
    peers.extend_from_slice(&[1, 2, 3]); // and a partial tail
    let mut body = format!("d5:peers{}:", peers.len()).into_bytes();
    body.extend_from_slice(&peers);
    body.push(b'e');
    let r = parse_announce_response(&body).unwrap();
    assert_eq!(r.peers.len(), MAX_PEERS_PER_RESPONSE);
    assert_eq!(r.skipped_peers, n - MAX_PEERS_PER_RESPONSE + 1);
    assert_eq!(r.peers[0].addr, sa("10.0.0.0:6881"));
}

#[test]
fn many_dictionary_peers_are_capped_and_peers6_shares_the_cap() {
    let mut body = b"d5:peersl".to_vec();
    for i in 0..20_000u32 {
        let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        body.extend_from_slice(format!("d2:ip{}:{}4:porti1ee", ip.len(), ip).as_bytes());
    }
    body.extend_from_slice(b"e6:peers618:");
    body.extend_from_slice(&[
        0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1,
    ]);
    body.push(b'e');
    let r = parse_announce_response(&body).unwrap();
    assert_eq!(r.peers.len(), MAX_PEERS_PER_RESPONSE);
    assert_eq!(r.skipped_peers, 20_000 - MAX_PEERS_PER_RESPONSE + 1);
}

#[test]
fn compact_partial_tail_duplicates_and_port_zero() {
    let body = b"d5:peers20:\x0a\x00\x00\x01\x00\x01\x0a\x00\x00\x01\x00\x01\x0a\x00\x00\x02\x00\x00\xff\xffe";
    let r = parse_announce_response(body).unwrap();
    assert_eq!(r.peers.len(), 1);
    assert_eq!(r.skipped_peers, 3, "duplicate, port 0, partial tail");
}

#[test]
fn garbage_bodies_give_clear_errors() {
    let e = parse_announce_response(b"<html><head><title>502 Bad Gateway</title>").unwrap_err();
    assert_eq!(
        e.to_string(),
        "tracker answered with something that is not bencode: starts with \"<html><head><title>502 B…\""
    );
    assert_eq!(parse_announce_response(b""), Err(TrackerError::EmptyBody));
    assert_eq!(
        parse_announce_response(b" \r\n"),
        Err(TrackerError::EmptyBody)
    );
    assert!(matches!(
        parse_announce_response(b"\x00\x01binary\x1b"),
        Err(TrackerError::NotBencode { start }) if start == "binary"
    ));
    assert!(matches!(
        parse_announce_response(b"li1ee"),
        Err(TrackerError::NotBencode { .. })
    ));
    let e = parse_announce_response(b"d8:intervali1800e5:peers").unwrap_err();
    assert!(matches!(e, TrackerError::Bencode(_)));
    assert_eq!(e.to_string(), "tracker answered with invalid bencode");
    assert!(std::error::Error::source(&e).is_some());
    // Too deep.
    let mut deep = b"d1:x".to_vec();
    deep.extend(std::iter::repeat_n(b'l', 100));
    deep.extend(std::iter::repeat_n(b'e', 101));
    assert!(matches!(
        parse_announce_response(&deep),
        Err(TrackerError::Bencode(_))
    ));
    // Too big.
    let big = vec![b'd'; MAX_RESPONSE_LEN + 1];
    assert_eq!(
        parse_announce_response(&big),
        Err(TrackerError::ResponseTooLarge {
            len: MAX_RESPONSE_LEN + 1,
            limit: MAX_RESPONSE_LEN
        })
    );
}

#[test]
fn leading_whitespace_and_trailing_junk_are_tolerated() {
    let r = parse_announce_response(b"\r\n d8:intervali900ee\n<!-- served by x -->").unwrap();
    assert_eq!(r.interval.as_secs(), 900);
    // But junk inside the dictionary is not.
    assert!(parse_announce_response(b"d8:intervali900exxe").is_err());
}

// ---------------------------------------------------------------- scrape bodies

#[test]
fn scrape_response() {
    let a = InfoHash([b'a'; 20]);
    let b = InfoHash([b'b'; 20]);
    let c = InfoHash([b'c'; 20]);
    let body = b"d5:filesd\
        20:aaaaaaaaaaaaaaaaaaaad8:completei1e10:downloadedi2e10:incompletei3ee\
        20:bbbbbbbbbbbbbbbbbbbbd8:completei-4e10:incompletei5ee\
        20:zzzzzzzzzzzzzzzzzzzzd8:completei9ee\
        e5:flagsd20:min_request_intervali3600eee";
    let r = parse_scrape_response(body, &[c, b, a, b]).unwrap();
    assert_eq!(
        r.files,
        vec![
            (
                b,
                ScrapeStats {
                    complete: 0,
                    downloaded: 0,
                    incomplete: 5
                }
            ),
            (
                a,
                ScrapeStats {
                    complete: 1,
                    downloaded: 2,
                    incomplete: 3
                }
            ),
        ],
        "request order, unknown and unrequested hashes left out, repeats once"
    );
    assert_eq!(r.min_request_interval, Some(Duration::from_secs(3600)));
    assert_eq!(r.get(&c), None);
    assert_eq!(
        parse_scrape_response(b"de", &[a]).unwrap(),
        ScrapeResponse::default()
    );
    assert!(matches!(
        parse_scrape_response(b"<html>", &[a]),
        Err(TrackerError::NotBencode { .. })
    ));
}

// ---------------------------------------------------------------- tiers

fn tiers() -> Vec<Vec<String>> {
    vec![
        vec!["a1".into(), "a2".into(), "a3".into(), "a4".into()],
        vec![],
        vec!["b1".into(), " ".into(), "a1".into()],
        vec!["c1".into(), "c2".into()],
    ]
}

fn urls(list: &TrackerList) -> Vec<(usize, String)> {
    list.order().map(|(t, u)| (t, u.to_owned())).collect()
}

#[test]
fn tracker_list_shuffles_within_tiers_only() {
    let mut orders = std::collections::HashSet::new();
    for seed in 0..32 {
        let list = TrackerList::new(tiers(), &mut StdRng::seed_from_u64(seed));
        assert_eq!(list.tier_count(), 3, "empty tier dropped");
        assert_eq!(list.len(), 7, "blank and repeated URLs dropped");
        let u = urls(&list);
        let mut tier0: Vec<_> = u
            .iter()
            .filter(|(t, _)| *t == 0)
            .map(|(_, u)| u.clone())
            .collect();
        orders.insert(tier0.clone());
        tier0.sort();
        assert_eq!(tier0, ["a1", "a2", "a3", "a4"]);
        assert_eq!(u[4], (1, "b1".to_owned()));
        assert!(u[5].0 == 2 && u[6].0 == 2);
    }
    assert!(orders.len() > 5, "tiers are shuffled: {orders:?}");
    // Deterministic for a given RNG.
    assert_eq!(
        TrackerList::new(tiers(), &mut StdRng::seed_from_u64(9)),
        TrackerList::new(tiers(), &mut StdRng::seed_from_u64(9))
    );
}

#[test]
fn success_moves_to_front_failure_keeps_order() {
    let mut list = TrackerList::new(tiers(), &mut StdRng::seed_from_u64(1));
    let before = urls(&list);
    let third = before[2].1.clone();
    assert!(list.mark_failure(&third));
    assert_eq!(urls(&list), before, "failure keeps the order");
    assert_eq!(list.consecutive_failures(&third), Some(1));
    assert_eq!(list.state(&third), Some(TrackerState::Failed));
    assert!(list.mark_success(&third));
    let after = urls(&list);
    assert_eq!(after[0], (0, third.clone()));
    assert_eq!(
        after[1..4].iter().map(|(_, u)| u).collect::<Vec<_>>(),
        before
            .iter()
            .take(4)
            .filter(|(_, u)| *u != third)
            .map(|(_, u)| u)
            .collect::<Vec<_>>(),
        "the others keep their relative order"
    );
    assert_eq!(after[4..], before[4..]);
    assert_eq!(list.consecutive_failures(&third), Some(0));
    assert!(!list.mark_success("nope"));
    assert!(!list.mark_failure("nope"));
    assert_eq!(list.state("nope"), None);
}

#[test]
fn targets_under_each_policy() {
    let t = vec![
        vec!["a1".to_string(), "a2".to_string()],
        vec!["b1".to_string()],
        vec!["c1".to_string(), "c2".to_string()],
    ];
    let mut list = TrackerList::new(t, &mut StdRng::seed_from_u64(0));
    let order: Vec<String> = list.order().map(|(_, u)| u.to_owned()).collect();
    let (a_first, a_second) = (order[0].clone(), order[1].clone());
    let (c_first, c_second) = (order[3].clone(), order[4].clone());
    let all_tiers = AnnouncePolicy::default();
    let all_all = AnnouncePolicy {
        announce_to_all_tiers: true,
        announce_to_all_trackers: true,
    };
    let tier_all = AnnouncePolicy {
        announce_to_all_tiers: false,
        announce_to_all_trackers: true,
    };
    let bep12 = AnnouncePolicy::BEP12;
    assert!(all_tiers.announce_to_all_tiers && !all_tiers.announce_to_all_trackers);

    assert_eq!(list.targets(all_tiers), [&*a_first, "b1", &*c_first]);
    assert_eq!(list.targets(bep12), [&*a_first]);
    assert_eq!(list.targets(tier_all), [&*a_first, &*a_second]);
    assert_eq!(list.targets(all_all).len(), 5);

    // The first tracker of tier 0 fails: fail over within the tier.
    list.mark_failure(&a_first);
    assert_eq!(list.targets(all_tiers), [&*a_second, "b1", &*c_first]);
    assert_eq!(list.targets(bep12), [&*a_second]);
    // Tier 0 exhausted: strict BEP 12 moves to tier 1.
    list.mark_failure(&a_second);
    assert_eq!(list.targets(bep12), ["b1"]);
    assert_eq!(list.targets(all_tiers), ["b1", &*c_first]);
    // b1 answers: strict BEP 12 is done; all-tiers still wants tier 2.
    list.mark_success("b1");
    assert!(list.targets(bep12).is_empty());
    assert!(list.targets(tier_all).is_empty());
    assert_eq!(list.targets(all_tiers), [&*c_first]);
    list.mark_success(&c_second);
    assert!(list.targets(all_tiers).is_empty());
    assert_eq!(
        list.order().nth(3).unwrap().1,
        c_second,
        "moved to the front"
    );

    // Next round: everything is untried again; order and counts stay.
    list.new_round();
    assert_eq!(list.targets(bep12), [&*a_first]);
    assert_eq!(list.targets(all_tiers), [&*a_first, "b1", &*c_second]);
    assert_eq!(list.consecutive_failures(&a_first), Some(1));
}

#[test]
fn tracker_list_is_bounded() {
    let many: Vec<Vec<String>> = (0..50)
        .map(|t| {
            (0..10)
                .map(|i| format!("http://t{t}-{i}/announce"))
                .collect()
        })
        .collect();
    let list = TrackerList::new(many, &mut StdRng::seed_from_u64(0));
    assert_eq!(list.len(), tiers::MAX_TRACKERS);
    assert_eq!(list.tier_count(), 20);
    let list = TrackerList::new(
        vec![vec!["x".repeat(MAX_URL_LEN + 1)]],
        &mut StdRng::seed_from_u64(0),
    );
    assert!(list.is_empty());
}

#[test]
fn tracker_list_splits_into_tiers() {
    let mut list = TrackerList::new(tiers(), &mut StdRng::seed_from_u64(3));
    let first = list.order().next().unwrap().1.to_owned();
    list.mark_failure(&first);
    let whole = urls(&list);
    let parts = list.clone().into_tiers();
    assert_eq!(parts.len(), 3, "one list per non-empty tier");
    let mut joined = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part.tier_count(), 1);
        joined.extend(part.order().map(|(t, u)| {
            assert_eq!(t, 0, "each part is its own tier 0");
            (i, u.to_owned())
        }));
    }
    assert_eq!(joined, whole, "order kept");
    assert_eq!(parts[0].state(&first), Some(TrackerState::Failed));
    assert_eq!(parts[0].consecutive_failures(&first), Some(1));
    assert_eq!(parts[1].state(&first), None);

    // The cap applies across the tiers before the split.
    let many: Vec<Vec<String>> = (0..50)
        .map(|t| (0..10).map(|i| format!("http://t{t}-{i}/a")).collect())
        .collect();
    let parts = TrackerList::new(many, &mut StdRng::seed_from_u64(0)).into_tiers();
    assert_eq!(
        parts.iter().map(TrackerList::len).sum::<usize>(),
        tiers::MAX_TRACKERS
    );
    assert!(TrackerList::default().into_tiers().is_empty());
}
