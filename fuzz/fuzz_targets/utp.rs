//! Fuzzes uTP: `packet::decode` on raw datagrams (with a decode → encode →
//! decode round trip for every accepted packet), and an `Endpoint` with one
//! accepted and one outgoing connection fed a sequence of datagrams carved
//! from the input, most of them aimed at those connections' ids so that they
//! reach the state machines. It must not panic, and everything it sends
//! must decode as uTP.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rivulet_utp::packet::{self, Header, Packet, PacketType};
use rivulet_utp::{is_utp, Config, Endpoint};

fn drain(ep: &mut Endpoint, now: Instant, out: &mut Vec<u8>) {
    let mut n = 0;
    while ep.poll_transmit(now, out).is_some() {
        assert!(is_utp(out), "sent a datagram that is not uTP");
        packet::decode(out).expect("sent packets decode");
        n += 1;
        assert!(n < 100_000, "poll_transmit never ends");
    }
    while ep.poll_event().is_some() {}
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = packet::decode(data) {
        let bytes = packet::encode(&p);
        assert_eq!(packet::decode(&bytes).expect("re-encoding decodes"), p);
    }

    let t0 = Instant::now();
    let cfg = Config { max_payload: 200, send_buffer: 4096, recv_buffer: 4096, ..Config::default() };
    let mut ep = Endpoint::new(cfg, t0, 7);
    ep.set_listening(true);
    let from: SocketAddr = "127.0.0.2:6881".parse().expect("address");
    let mut out = Vec::new();

    // An accepted connection (peer's SYN with id 1000, seq 500): the
    // peer's later packets carry 1001. And an outgoing one to the same
    // peer.
    let syn = Header {
        ty: PacketType::Syn,
        connection_id: 1000,
        timestamp_us: 1,
        timestamp_diff_us: 0,
        wnd_size: 65536,
        seq_nr: 500,
        ack_nr: 0,
    };
    ep.handle_datagram(t0, from, &packet::encode(&Packet { header: syn, sack: None, payload: &[] }));
    let out_conn = ep.connect(t0, from).expect("connect");
    drain(&mut ep, t0, &mut out);
    let accepted = rivulet_utp::ConnId(0);
    let _ = ep.write(accepted, &[0x55; 3000]);
    let _ = ep.write(out_conn, &[0xaa; 3000]);
    drain(&mut ep, t0, &mut out);

    // Input: chunks of [flags, dt (ms), len, bytes...].
    let mut now = t0;
    let mut rest = data;
    let mut buf = [0u8; 1024];
    while let [flags, dt, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (chunk, tail) = tail.split_at(len);
        rest = tail;
        now += Duration::from_millis(u64::from(*dt) * 8);
        let mut d = chunk.to_vec();
        if flags & 1 != 0 && d.len() >= 4 {
            // Aim at a connection: version 1, a valid type, its id.
            d[0] = (d[0] >> 4) % 5 << 4 | 1;
            let id: u16 = if flags & 2 != 0 { 1001 } else { ep.connection(out_conn).map_or(0, |c| c.recv_id()) };
            d[2..4].copy_from_slice(&id.to_be_bytes());
        }
        ep.handle_datagram(now, from, &d);
        if flags & 4 != 0 {
            let _ = ep.read(accepted, &mut buf);
            let _ = ep.read(out_conn, &mut buf);
        }
        if flags & 8 != 0 {
            let _ = ep.write(accepted, &buf[..usize::from(*dt)]);
        }
        if flags & 16 != 0 {
            let _ = ep.close(accepted);
        }
        if flags & 32 != 0 {
            let _ = ep.reset(out_conn);
        }
        drain(&mut ep, now, &mut out);
        if ep.next_timeout().is_some_and(|t| t <= now) {
            ep.on_timeout(now);
            drain(&mut ep, now, &mut out);
        }
    }
    // Let every timer run out.
    for _ in 0..64 {
        let Some(t) = ep.next_timeout() else { break };
        now = now.max(t);
        ep.on_timeout(now);
        drain(&mut ep, now, &mut out);
    }
});
