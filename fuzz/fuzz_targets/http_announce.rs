//! Fuzzes the HTTP tracker body parsers (`parse_announce_response`,
//! `parse_scrape_response`) and checks the bounds every accepted answer must
//! respect: interval range, peer cap, no port-0/unspecified/duplicate peer,
//! printable bounded messages, and that trailing junk never changes a result.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use rivulet_core::InfoHash;
use rivulet_tracker::{
    parse_announce_response, parse_scrape_response, AnnounceResponse, PeerAddr, TrackerError,
    MAX_ANNOUNCE_INTERVAL, MAX_HOSTNAME_LEN, MAX_MESSAGE_CHARS, MAX_PEERS_PER_RESPONSE,
    MAX_TRACKER_ID_LEN, MIN_ANNOUNCE_INTERVAL,
};

fn check_text(s: &str) {
    assert!(
        s.chars().count() <= MAX_MESSAGE_CHARS + 1,
        "message too long"
    );
    assert!(
        !s.chars().any(char::is_control),
        "control character in {s:?}"
    );
}

fn check_error(e: &TrackerError) {
    match e {
        TrackerError::Failure { message } => check_text(message),
        TrackerError::NotBencode { start } => assert!(start.chars().count() <= 25),
        _ => {}
    }
    assert!(!e.to_string().is_empty());
}

fn check_announce(r: &AnnounceResponse) {
    assert!((MIN_ANNOUNCE_INTERVAL..=MAX_ANNOUNCE_INTERVAL).contains(&r.interval));
    if let Some(m) = r.min_interval {
        assert!(m >= MIN_ANNOUNCE_INTERVAL && m <= r.interval);
    }
    assert!(r.peers.len() <= MAX_PEERS_PER_RESPONSE);
    let mut seen = HashSet::new();
    for p in &r.peers {
        assert!(seen.insert(&p.addr), "duplicate peer {:?}", p.addr);
        match &p.addr {
            PeerAddr::Ip(sa) => assert!(sa.port() != 0 && !sa.ip().is_unspecified()),
            PeerAddr::Host { name, port } => {
                assert!(*port != 0);
                assert!(!name.is_empty() && name.len() <= MAX_HOSTNAME_LEN);
                assert!(name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            }
        }
    }
    if let Some(w) = &r.warning {
        check_text(w);
    }
    if let Some(id) = &r.tracker_id {
        assert!(!id.is_empty() && id.len() <= MAX_TRACKER_ID_LEN);
    }
}

fuzz_target!(|data: &[u8]| {
    let announce = parse_announce_response(data);
    match &announce {
        Ok(r) => check_announce(r),
        Err(e) => check_error(e),
    }

    // Scrape for a few fixed hashes plus one taken from the input, so that the
    // fuzzer can make `files` entries match.
    let mut hashes = vec![InfoHash([0; 20]), InfoHash([b'a'; 20])];
    if let Some(h) = data
        .get(data.len().saturating_sub(20)..)
        .filter(|h| h.len() == 20)
    {
        hashes.push(InfoHash(h.try_into().expect("20 bytes")));
    }
    let scrape = parse_scrape_response(data, &hashes);
    match &scrape {
        Ok(s) => {
            assert!(s.files.len() <= hashes.len());
            for (h, _) in &s.files {
                assert!(hashes.contains(h));
            }
            if let Some(i) = s.min_request_interval {
                assert!((MIN_ANNOUNCE_INTERVAL..=MAX_ANNOUNCE_INTERVAL).contains(&i));
            }
        }
        Err(e) => check_error(e),
    }

    // Junk after an accepted body changes nothing.
    if announce.is_ok() || scrape.is_ok() {
        let mut junk = data.to_vec();
        junk.extend_from_slice(b"\n<html>junk</html>");
        if let Ok(r) = &announce {
            assert_eq!(parse_announce_response(&junk).as_ref(), Ok(r));
        }
        if let Ok(s) = &scrape {
            assert_eq!(parse_scrape_response(&junk, &hashes).as_ref(), Ok(s));
        }
    }
});
