//! Property tests: the codec never panics and round-trips; random loss,
//! reordering, duplication and delay patterns still deliver byte-exact
//! streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{pattern, Flow, Link, Sim};
use proptest::prelude::*;
use rivulet_utp::packet::{decode, encode, Header, Packet, PacketType};
use rivulet_utp::{is_utp, Config, Endpoint};

fn packet_type() -> impl Strategy<Value = PacketType> {
    (0u8..5).prop_map(|n| PacketType::from_u8(n).unwrap())
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let r = decode(&bytes);
        if r.is_ok() {
            prop_assert!(is_utp(&bytes));
        }
    }

    #[test]
    fn decode_never_panics_on_near_valid_headers(
        first in 0u8..5, ext in any::<u8>(), rest in proptest::collection::vec(any::<u8>(), 18..120)
    ) {
        let mut bytes = vec![first << 4 | 1, ext];
        bytes.extend_from_slice(&rest);
        let _ = decode(&bytes);
    }

    #[test]
    fn encode_decode_round_trip(
        ty in packet_type(),
        connection_id in any::<u16>(), timestamp_us in any::<u32>(), timestamp_diff_us in any::<u32>(),
        wnd_size in any::<u32>(), seq_nr in any::<u16>(), ack_nr in any::<u16>(),
        sack in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..64)),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let p = Packet {
            header: Header { ty, connection_id, timestamp_us, timestamp_diff_us, wnd_size, seq_nr, ack_nr },
            sack: sack.as_deref(),
            payload: &payload,
        };
        let bytes = encode(&p);
        prop_assert!(is_utp(&bytes));
        prop_assert_eq!(decode(&bytes).unwrap(), p);
    }

    #[test]
    fn endpoint_survives_garbage(datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..40)) {
        let t0 = std::time::Instant::now();
        let mut ep = Endpoint::new(Config::default(), t0, 1);
        ep.set_listening(true);
        let from = common::addr(0);
        let mut out = Vec::new();
        for (i, d) in datagrams.iter().enumerate() {
            let now = t0 + Duration::from_millis(i as u64 * 100);
            ep.handle_datagram(now, from, d);
            while ep.poll_transmit(now, &mut out).is_some() {}
            ep.on_timeout(now);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_networks_deliver_byte_exact(
        seed in any::<u64>(),
        loss in 0.0f64..0.2, dup in 0.0f64..0.1,
        delay_ms in 0u64..100, jitter_ms in 0u64..50,
        a_len in 0usize..200_000, b_len in 0usize..100_000,
        max_payload in 100usize..3000,
    ) {
        let link = Link {
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(jitter_ms),
            loss, dup, ..Link::default()
        };
        // More retransmissions than the default before giving up: at 20%
        // loss each way, five failures in a row of one packet happen in a
        // transfer of hundreds of packets, and the property is about
        // delivery, not about when to give up.
        let cfg = Config { max_payload, send_buffer: 64 << 10, recv_buffer: 64 << 10, max_retransmits: 12, ..Config::default() };
        // The handshake on a clean link (three lost SYNs in a row would
        // rightly fail it), the transfer on the random one.
        let mut sim = Sim::new(seed, cfg, Link::default());
        let (a, b) = sim.connect();
        sim.links = [link.clone(), link];
        let mut f1 = Flow::new(0, a, b, pattern(a_len, 7));
        let mut f2 = Flow::new(1, b, a, pattern(b_len, 8));
        let done = sim.run_until(Duration::from_secs(3600), |s| {
            let d1 = f1.pump(s);
            let d2 = f2.pump(s);
            d1 && d2
        });
        prop_assert!(done, "incomplete: {}/{} {}/{} {:?}", f1.received.len(), a_len, f2.received.len(), b_len, sim.hosts[0].events.last());
        prop_assert!(f1.received == f1.data);
        prop_assert!(f2.received == f2.data);
    }
}
