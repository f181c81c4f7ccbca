//! The endpoint's bounds, with hand-made packets: a SYN flood, the RESET
//! rate bound, connection limits, and DHT packets on the same port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rivulet_utp::packet::{decode, encode, Header, Packet, PacketType};
use rivulet_utp::{is_utp, Config, Endpoint, Event, UtpError};

fn syn(id: u16, seq: u16) -> Vec<u8> {
    encode(&Packet {
        header: Header {
            ty: PacketType::Syn,
            connection_id: id,
            timestamp_us: 1,
            timestamp_diff_us: 0,
            wnd_size: 1 << 20,
            seq_nr: seq,
            ack_nr: 0,
        },
        sack: None,
        payload: &[],
    })
}

fn peer(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 6881))
}

#[test]
fn syn_flood_is_bounded() {
    let t0 = Instant::now();
    let cfg = Config {
        max_unconfirmed: 8,
        resets_per_second: 5,
        ..Config::default()
    };
    let mut ep = Endpoint::new(cfg, t0, 1);
    ep.set_listening(true);
    for i in 0..100u16 {
        assert!(ep.handle_datagram(t0, peer(2), &syn(i * 2, 7)));
    }
    assert_eq!(ep.len(), 8);
    let incoming = std::iter::from_fn(|| ep.poll_event())
        .filter(|e| matches!(e, Event::Incoming { .. }))
        .count();
    assert_eq!(incoming, 8);
    let mut out = Vec::new();
    let mut states = 0;
    let mut resets = 0;
    while let Some(to) = ep.poll_transmit(t0, &mut out) {
        assert_eq!(to, peer(2));
        match decode(&out).unwrap().header.ty {
            PacketType::State => states += 1,
            PacketType::Reset => resets += 1,
            t => panic!("unexpected {t:?}"),
        }
    }
    assert_eq!(states, 8);
    // 92 refused, 5 RESETs within the rate bound.
    assert_eq!(resets, 5);
    assert_eq!(ep.stats().refused, 92);
    assert_eq!(ep.stats().resets_suppressed, 87);
    // The silent ones are dropped after unconfirmed_timeout.
    let later = t0 + Duration::from_secs(11);
    ep.on_timeout(later);
    assert!(ep.is_empty());
}

#[test]
fn duplicate_syn_does_not_open_a_second_connection() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(Config::default(), t0, 1);
    ep.set_listening(true);
    ep.handle_datagram(t0, peer(2), &syn(10, 7));
    ep.handle_datagram(t0, peer(2), &syn(10, 7));
    assert_eq!(ep.len(), 1);
    // The same id from another address is another connection.
    ep.handle_datagram(t0, peer(3), &syn(10, 7));
    assert_eq!(ep.len(), 2);
}

#[test]
fn connection_limit() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(
        Config {
            max_connections: 2,
            ..Config::default()
        },
        t0,
        1,
    );
    ep.connect(t0, peer(2)).unwrap();
    ep.connect(t0, peer(2)).unwrap();
    assert_eq!(
        ep.connect(t0, peer(2)),
        Err(UtpError::TooManyConnections { limit: 2 })
    );
}

#[test]
fn dht_packets_are_not_utp() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(Config::default(), t0, 1);
    let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    assert!(!is_utp(ping));
    assert!(!ep.handle_datagram(t0, peer(2), ping));
    assert_eq!(ep.stats().not_utp, 1);
    let mut out = Vec::new();
    assert!(ep.poll_transmit(t0, &mut out).is_none());
    assert!(is_utp(&syn(1, 1)));
}

#[test]
fn unknown_connection_reset_numbers() {
    // A data packet for a connection we do not know: two RESETs, for the
    // ids one below and one above the packet's, acknowledging it.
    let t0 = Instant::now();
    let mut ep = Endpoint::new(Config::default(), t0, 1);
    let data = encode(&Packet {
        header: Header {
            ty: PacketType::Data,
            connection_id: 500,
            timestamp_us: 1,
            timestamp_diff_us: 0,
            wnd_size: 1000,
            seq_nr: 40,
            ack_nr: 900,
        },
        sack: None,
        payload: b"xyz",
    });
    ep.handle_datagram(t0, peer(2), &data);
    let mut out = Vec::new();
    let mut ids = Vec::new();
    while ep.poll_transmit(t0, &mut out).is_some() {
        let h = decode(&out).unwrap().header;
        assert_eq!((h.ty, h.ack_nr, h.seq_nr), (PacketType::Reset, 40, 901));
        ids.push(h.connection_id);
    }
    assert_eq!(ids, [499, 501]);
}

/// Every packet the selective ACK of `p` claims, read as the peer reads it
/// (bit `i` is `ack_nr + 2 + i`).
fn sacked(p: &Packet<'_>) -> Vec<u16> {
    let mut v = Vec::new();
    for (byte_i, &byte) in p.sack.unwrap_or(&[]).iter().enumerate() {
        for bit in 0..8 {
            if byte & (1 << bit) != 0 {
                v.push(p.header.ack_nr.wrapping_add(2 + (byte_i * 8 + bit) as u16));
            }
        }
    }
    v
}

#[test]
fn acknowledgements_never_claim_a_missing_packet() {
    // A receiver with a hole (101 arrived, 102 lost, 103 and 104 arrived)
    // acknowledges; later, idle, it sends keep-alives, which acknowledge
    // one packet less than it holds. A selective ACK on those read against
    // their lower ack_nr would claim the missing 102, and a sender that
    // believed it would never send 102 again: the stream would stall.
    let t0 = Instant::now();
    let mut ep = Endpoint::new(Config::default(), t0, 1);
    ep.set_listening(true);
    ep.handle_datagram(t0, peer(2), &syn(10, 100));
    let mut out = Vec::new();
    assert_eq!(ep.poll_transmit(t0, &mut out), Some(peer(2)));
    let answer = decode(&out).unwrap().header;
    let data = |seq_nr: u16| {
        encode(&Packet {
            header: Header {
                ty: PacketType::Data,
                connection_id: 11,
                timestamp_us: 2,
                timestamp_diff_us: 0,
                wnd_size: 1 << 20,
                seq_nr,
                ack_nr: answer.seq_nr.wrapping_sub(1),
            },
            sack: None,
            payload: b"0123456789",
        })
    };
    let mut acks = Vec::new();
    for seq_nr in [101, 103, 104] {
        assert!(ep.handle_datagram(t0, peer(2), &data(seq_nr)));
        while ep.poll_transmit(t0, &mut out).is_some() {
            acks.push(out.clone());
        }
    }
    for s in 1..=60 {
        let now = t0 + Duration::from_secs(s);
        ep.on_timeout(now);
        while ep.poll_transmit(now, &mut out).is_some() {
            acks.push(out.clone());
        }
    }
    let acks: Vec<Packet<'_>> = acks.iter().map(|b| decode(b).unwrap()).collect();
    assert!(acks.iter().all(|p| p.header.ty == PacketType::State));
    // The hole was reported, and keep-alives (ack_nr 100) went out.
    assert!(acks.iter().any(|p| sacked(p) == [103, 104]));
    assert!(acks.iter().filter(|p| p.header.ack_nr == 100).count() >= 2);
    for p in &acks {
        assert!(
            !sacked(p).contains(&102) && p.header.ack_nr != 102,
            "claims the missing packet: {p:?}"
        );
    }
}

#[test]
fn false_selective_ack_is_undone_by_the_timeout() {
    // A receiver claims (through a selective ACK) a packet it does not
    // hold, then acknowledges everything before it. The sender has nothing
    // it believes lost; its retransmission timeout must send the packet at
    // the left edge again all the same, or the stream stalls for good.
    let t0 = Instant::now();
    let cfg = Config {
        max_payload: 100,
        ..Config::default()
    };
    let mut ep = Endpoint::new(cfg, t0, 1);
    let conn = ep.connect(t0, peer(2)).unwrap();
    let mut out = Vec::new();
    assert_eq!(ep.poll_transmit(t0, &mut out), Some(peer(2)));
    let syn = decode(&out).unwrap().header;
    let state = |ack_nr: u16, sack: Option<&[u8]>| {
        encode(&Packet {
            header: Header {
                ty: PacketType::State,
                connection_id: syn.connection_id,
                timestamp_us: 2,
                timestamp_diff_us: 0,
                wnd_size: 1 << 20,
                seq_nr: 500,
                ack_nr,
            },
            sack,
            payload: &[],
        })
    };
    ep.handle_datagram(t0, peer(2), &state(syn.seq_nr, None));
    assert_eq!(ep.write(conn, &[7u8; 200]).unwrap(), 200);
    let mut data = Vec::new();
    while ep.poll_transmit(t0, &mut out).is_some() {
        data.push(decode(&out).unwrap().header.seq_nr);
    }
    let (p1, p2) = (syn.seq_nr.wrapping_add(1), syn.seq_nr.wrapping_add(2));
    assert_eq!(data, [p1, p2]);
    // "Nothing in order, but p2 arrived" (false), then "p1 arrived".
    ep.handle_datagram(t0, peer(2), &state(syn.seq_nr, Some(&[1, 0, 0, 0])));
    ep.handle_datagram(t0, peer(2), &state(p1, None));
    let mut resent = Vec::new();
    for s in 1..=10 {
        let now = t0 + Duration::from_secs(s);
        ep.on_timeout(now);
        while ep.poll_transmit(now, &mut out).is_some() {
            let p = decode(&out).unwrap();
            if p.header.ty == PacketType::Data {
                resent.push(p.header.seq_nr);
            }
        }
    }
    assert!(resent.contains(&p2), "p2 never sent again: {resent:?}");
    assert!(ep.connection(conn).unwrap().is_connected());
}
