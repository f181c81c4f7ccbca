//! Fuzzes the UDP tracker side: `udp::decode_response` on raw packets (with a
//! decode → encode → decode round trip for every accepted packet), and a
//! `UdpTrackerClient` in active transactions driven by a fuzzer-chosen script
//! of packets (raw, or patched to carry a live transaction id), timeouts,
//! new requests and cancels, checking the client's invariants after each step.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rivulet_core::{InfoHash, PeerId};
use rivulet_tracker::udp::{
    decode_response, AddressFamily, RequestId, UdpClientConfig, UdpOutcome, UdpResponse,
    UdpTrackerClient,
};
use rivulet_tracker::{
    AnnounceRequest, Event, TrackerError, MAX_MESSAGE_CHARS, MAX_PEERS_PER_RESPONSE,
};

fn request(port: u16) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash([7; 20]),
        peer_id: PeerId(*b"-RV0100-fuzzfuzzfuzz"),
        port,
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event: Event::Started,
        numwant: Some(50),
        key: 1,
        tracker_id: None,
        compact: true,
        crypto: Default::default(),
    }
}

fn check_decoder(data: &[u8], family: AddressFamily) {
    match decode_response(data, family) {
        Ok(r) => {
            if let UdpResponse::Error { message, .. } = &r {
                assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1);
                assert!(!message.chars().any(char::is_control));
            }
            let again = decode_response(&r.encode(), family).expect("re-encoding must decode");
            assert_eq!(again, r, "decode(encode(r)) != r");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// A little script reader over the fuzz input.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

fuzz_target!(|data: &[u8]| {
    check_decoder(data, AddressFamily::V4);
    check_decoder(data, AddressFamily::V6);

    let mut s = Script(data);
    let Some(cfg_byte) = s.byte() else { return };
    let family = if cfg_byte & 1 == 0 {
        AddressFamily::V4
    } else {
        AddressFamily::V6
    };
    let mut cfg = UdpClientConfig::new(family);
    cfg.max_retries = u32::from(cfg_byte >> 1) % 10;
    cfg.max_requests = 8;
    let mut c = UdpTrackerClient::with_seed(cfg, u64::from(cfg_byte));

    let t0 = Instant::now();
    let mut now = t0;
    let mut started: Vec<RequestId> = Vec::new();
    let mut finished: HashSet<RequestId> = HashSet::new();
    let mut sent_tids: Vec<[u8; 4]> = Vec::new();

    // An active transaction from the start: an announce and a scrape, and the
    // connect request on the wire.
    started.push(c.start_announce(request(6881), now).expect("room"));
    let mut scrape_sizes: HashMap<RequestId, usize> = HashMap::new();
    let id = c
        .start_scrape(&[InfoHash([1; 20]), InfoHash([2; 20])], now)
        .expect("room");
    started.push(id);
    scrape_sizes.insert(id, 2);

    let mut steps = 0;
    loop {
        while let Some(p) = c.poll_transmit(now) {
            assert!(p.len() >= 16);
            let tid: [u8; 4] = p[12..16].try_into().expect("4 bytes");
            sent_tids.push(tid);
        }
        if let Some(t) = c.poll_timeout() {
            assert!(t > now, "a deadline in the past was left unhandled");
        }
        while let Some(ev) = c.poll_event() {
            assert!(started.contains(&ev.id), "event for an unknown request");
            assert!(finished.insert(ev.id), "request finished twice");
            match ev.result {
                Ok(UdpOutcome::Announce(r)) => {
                    assert!(r.peers.len() <= MAX_PEERS_PER_RESPONSE);
                    assert!(r.peers.iter().all(|p| match &p.addr {
                        rivulet_tracker::PeerAddr::Ip(sa) => sa.port() != 0,
                        rivulet_tracker::PeerAddr::Host { .. } => false,
                    }));
                }
                Ok(UdpOutcome::Scrape(r)) => {
                    let asked = scrape_sizes.get(&ev.id).copied();
                    assert!(r.files.len() <= asked.expect("scrape answer to an announce"));
                }
                Err(TrackerError::Failure { message }) => {
                    assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1)
                }
                Err(_) => {}
            }
        }
        assert_eq!(c.pending_requests() + finished.len(), started.len());

        steps += 1;
        let Some(op) = s.byte() else { break };
        if steps > 200 {
            break;
        }
        match op % 8 {
            // A raw packet.
            0 => {
                let len = usize::from(s.byte().unwrap_or(0));
                let p = s.bytes(len).to_vec();
                let _ = c.handle_packet(&p, now);
            }
            // A packet carrying a transaction id we sent (the fuzzer picks
            // which), so that it reaches the matching code.
            1 | 2 => {
                let which = usize::from(s.byte().unwrap_or(0));
                let len = usize::from(s.byte().unwrap_or(0));
                let mut p = s.bytes(len).to_vec();
                if let Some(tid) = sent_tids.iter().rev().nth(which % sent_tids.len().max(1)) {
                    if p.len() < 8 {
                        p.resize(8, 0);
                    }
                    p[4..8].copy_from_slice(tid);
                }
                let _ = c.handle_packet(&p, now);
            }
            // Time passes.
            3 => {
                let secs = u64::from(s.byte().unwrap_or(0)) * 30;
                now += Duration::from_secs(secs);
                c.handle_timeout(now);
            }
            // Wake up exactly at the deadline.
            4 => {
                if let Some(t) = c.poll_timeout() {
                    now = t;
                    c.handle_timeout(now);
                }
            }
            5 => {
                if let Ok(id) = c.start_announce(request(u16::from(op)), now) {
                    started.push(id);
                }
            }
            6 => {
                let n = usize::from(s.byte().unwrap_or(0)) % 80;
                let hashes: Vec<InfoHash> = (0..n).map(|i| InfoHash([i as u8; 20])).collect();
                match c.start_scrape(&hashes, now) {
                    Ok(id) => {
                        started.push(id);
                        scrape_sizes.insert(id, n);
                    }
                    Err(e) => assert!(matches!(
                        e,
                        TrackerError::NoInfoHashes
                            | TrackerError::TooManyInfoHashes { .. }
                            | TrackerError::TooManyRequests { .. }
                    )),
                }
            }
            _ => {
                let which = usize::from(s.byte().unwrap_or(0));
                if let Some(id) = started.get(which % started.len().max(1)).copied() {
                    if c.cancel(id) {
                        // A cancelled request never produces an event.
                        finished.insert(id);
                    }
                }
            }
        }
    }

    // With time running out, every request finishes.
    for _ in 0..5000 {
        let Some(t) = c.poll_timeout() else { break };
        now = t;
        c.handle_timeout(now);
        while c.poll_transmit(now).is_some() {}
        while c.poll_event().is_some() {}
    }
    assert_eq!(c.pending_requests(), 0, "requests left after all retries");
});
