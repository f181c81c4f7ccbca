//! Fuzzes the DHT's KRPC codec: `krpc::decode` on raw datagrams, with a
//! decode → encode → decode round trip for every accepted message (the
//! canonical encoding must decode to the same message and never be longer
//! than the input), and a `Node` answering the datagram: it must not panic,
//! and everything it sends must decode and fit in a datagram.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rivulet_dht::krpc::{self, MAX_PACKET_LEN};
use rivulet_dht::{Config, Node};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = krpc::decode(data) {
        let bytes = krpc::encode(&m);
        assert!(bytes.len() <= data.len(), "re-encoding grew the message");
        let again = krpc::decode(&bytes).expect("re-encoding must decode");
        assert_eq!(again, m, "decode(encode(m)) != m");
        assert_eq!(krpc::encode(&again), bytes, "encoding is not canonical");
    }

    let t0 = Instant::now();
    let mut node = Node::new(Config::default(), t0, 7);
    let from: SocketAddr = "127.0.0.2:6881".parse().expect("address");
    node.handle_packet(t0, from, data);
    node.on_timeout(t0 + Duration::from_secs(30));
    while let Some((to, p)) = node.poll_transmit() {
        assert_eq!(to, from, "answers go to the sender");
        assert!(p.len() <= MAX_PACKET_LEN);
        krpc::decode(&p).expect("the node sends only valid KRPC");
    }
});
