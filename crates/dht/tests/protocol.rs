//! One node driven packet by packet: what it answers, what it refuses, its
//! timers, BEP 42, read-only nodes and the outgoing rate limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rivulet_core::InfoHash;
use rivulet_dht::krpc::{self, error_code, Body, ErrorBody, Message, NodeInfo, Query, Response};
use rivulet_dht::{Config, Event, Node, NodeId, NodeStatus};

fn cfg() -> Config {
    Config {
        ipv6: false,
        ..Config::default()
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn query(tid: &[u8], q: Query, read_only: bool) -> Vec<u8> {
    krpc::encode(&Message {
        transaction_id: tid.to_vec(),
        version: None,
        ip: None,
        read_only,
        body: Body::Query(q),
    })
}

/// Sends `packet` to the node from `from` and returns the one packet it
/// sends back to `from`, decoded.
fn ask(node: &mut Node, now: Instant, from: SocketAddr, packet: &[u8]) -> Message {
    node.handle_packet(now, from, packet);
    let mut answer = None;
    while let Some((to, p)) = node.poll_transmit() {
        let m = krpc::decode(&p).unwrap();
        if to == from && !matches!(m.body, Body::Query(_)) {
            assert!(answer.is_none(), "two answers");
            answer = Some(m);
        }
    }
    answer.expect("no answer")
}

fn response(m: &Message) -> &Response {
    match &m.body {
        Body::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

fn error(m: &Message) -> &ErrorBody {
    match &m.body {
        Body::Error(e) => e,
        other => panic!("not an error: {other:?}"),
    }
}

/// Answers every query the node sent to `from` with `id`, as a node at
/// `from` would.
fn answer_queries(
    node: &mut Node,
    now: Instant,
    sent: &[(SocketAddr, Vec<u8>)],
    from: SocketAddr,
    id: NodeId,
    ip: Option<SocketAddr>,
) {
    for (to, p) in sent {
        if *to != from {
            continue;
        }
        let m = krpc::decode(p).unwrap();
        let r = Message {
            transaction_id: m.transaction_id,
            version: None,
            ip,
            read_only: false,
            body: Body::Response(Response::id_only(id)),
        };
        node.handle_packet(now, from, &krpc::encode(&r));
    }
}

fn drain(node: &mut Node) -> Vec<(SocketAddr, Vec<u8>)> {
    std::iter::from_fn(|| node.poll_transmit()).collect()
}

#[test]
fn the_server_side_answers_per_bep5() {
    let t0 = Instant::now();
    let mut node = Node::new(cfg(), t0, 1);
    let me = node.id();
    // Fill the table with 20 nodes that answer a ping.
    let mut rng = StdRng::seed_from_u64(9);
    for i in 0..20u8 {
        let a = addr(&format!("127.0.1.{}:6881", i + 1));
        node.add_node(t0, a);
        let sent = drain(&mut node);
        answer_queries(&mut node, t0, &sent, a, NodeId::random(&mut rng), None);
    }
    // Random ids: the far bucket is full, the others waiting.
    assert!(node.table(false).len() >= 10);

    let x = addr("127.0.0.2:7000");
    let xid = NodeId([7; 20]);
    // ping: our id, the transaction id echoed, the querier's address (BEP 42).
    let m = ask(
        &mut node,
        t0,
        x,
        &query(b"p1", Query::Ping { id: xid }, false),
    );
    assert_eq!(m.transaction_id, b"p1");
    assert_eq!(response(&m).id, me);
    assert_eq!(m.ip, Some(x));
    assert_eq!(m.version.as_deref(), Some(&rivulet_dht::VERSION[..]));

    // find_node: the 8 closest nodes of the table, in compact form.
    let target = NodeId([0x55; 20]);
    let m = ask(
        &mut node,
        t0,
        x,
        &query(
            b"f1",
            Query::FindNode {
                id: xid,
                target,
                want: None,
            },
            false,
        ),
    );
    let r = response(&m);
    let closest = node.table(false).closest(&target, 8, t0);
    assert_eq!(r.nodes, closest);
    assert!(r.nodes6.is_empty());

    // get_peers for an unknown torrent: a token and nodes, no values.
    let ih = NodeId([0xaa; 20]);
    let m = ask(
        &mut node,
        t0,
        x,
        &query(
            b"g1",
            Query::GetPeers {
                id: xid,
                info_hash: ih,
                want: None,
            },
            false,
        ),
    );
    let r = response(&m);
    let token = r.token.clone().expect("token");
    assert!(r.values.is_empty());
    assert_eq!(r.nodes.len(), 8);

    // announce_peer with that token stores x's IP and the given port.
    let announce = |tid: &[u8], token: Vec<u8>, port: u16, implied_port: bool| {
        query(
            tid,
            Query::AnnouncePeer {
                id: xid,
                info_hash: ih,
                port,
                implied_port,
                token,
            },
            false,
        )
    };
    let m = ask(
        &mut node,
        t0,
        x,
        &announce(b"a1", token.clone(), 6000, false),
    );
    assert_eq!(response(&m).id, me);
    // implied_port: the source port counts.
    let m = ask(&mut node, t0, x, &announce(b"a2", token.clone(), 0, true));
    assert!(matches!(m.body, Body::Response(_)));
    assert_eq!(node.stored_peers(), 2);

    // Another querier gets both as values.
    let y = addr("127.0.0.3:6881");
    let m = ask(
        &mut node,
        t0,
        y,
        &query(
            b"g2",
            Query::GetPeers {
                id: NodeId([8; 20]),
                info_hash: ih,
                want: None,
            },
            false,
        ),
    );
    let mut values = response(&m).values.clone();
    values.sort();
    assert_eq!(values, vec![addr("127.0.0.2:6000"), addr("127.0.0.2:7000")]);
    // ... with a token of its own, which is not x's.
    let y_token = response(&m).token.clone().unwrap();
    assert_ne!(y_token, token);

    // x's token from y's address, a made-up token, port 0: error 203.
    let e = ask(
        &mut node,
        t0,
        y,
        &announce(b"a3", token.clone(), 6000, false),
    );
    assert_eq!(error(&e).code, error_code::PROTOCOL);
    let e = ask(
        &mut node,
        t0,
        x,
        &announce(b"a4", b"nonsense".to_vec(), 6000, false),
    );
    assert_eq!(error(&e).code, error_code::PROTOCOL);
    let e = ask(&mut node, t0, x, &announce(b"a5", token.clone(), 0, false));
    assert_eq!(error(&e).code, error_code::PROTOCOL);
    assert_eq!(node.stats().bad_tokens, 2);
    assert_eq!(node.stored_peers(), 2);

    // An unknown method: 204. A query missing an argument: 203 with its tid.
    let e = ask(
        &mut node,
        t0,
        x,
        &query(
            b"u1",
            Query::Unknown {
                method: b"vote".to_vec(),
                id: xid,
            },
            false,
        ),
    );
    assert_eq!(error(&e).code, error_code::METHOD_UNKNOWN);
    let bad = b"d1:ad2:id20:abcdefghij0123456789e1:q9:get_peers1:t2:zz1:y1:qe";
    let e = ask(&mut node, t0, x, bad);
    assert_eq!(e.transaction_id, b"zz");
    assert_eq!(error(&e).code, error_code::PROTOCOL);
    // Garbage gets no answer at all.
    node.handle_packet(t0, x, b"garbage");
    assert!(node.poll_transmit().is_none());
}

#[test]
fn tokens_rotate_every_five_minutes_and_peers_expire_after_thirty() {
    let t0 = Instant::now();
    let mut node = Node::new(cfg(), t0, 2);
    let x = addr("127.0.0.2:7000");
    let xid = NodeId([7; 20]);
    let ih = NodeId([0xaa; 20]);
    let get = |tid: &[u8]| {
        query(
            tid,
            Query::GetPeers {
                id: xid,
                info_hash: ih,
                want: None,
            },
            false,
        )
    };
    let announce = |tid: &[u8], token: Vec<u8>| {
        query(
            tid,
            Query::AnnouncePeer {
                id: xid,
                info_hash: ih,
                port: 6000,
                implied_port: false,
                token,
            },
            false,
        )
    };
    let token = response(&ask(&mut node, t0, x, &get(b"g1")))
        .token
        .clone()
        .unwrap();
    // Still accepted after one rotation (the previous secret)...
    let t1 = t0 + Duration::from_secs(6 * 60);
    assert!(matches!(
        ask(&mut node, t1, x, &announce(b"a1", token.clone())).body,
        Body::Response(_)
    ));
    // ... not after two.
    let t2 = t0 + Duration::from_secs(11 * 60);
    assert!(matches!(
        ask(&mut node, t2, x, &announce(b"a2", token)).body,
        Body::Error(_)
    ));
    // The peer announced at t1 is served until t1 + 30 min.
    let y = addr("127.0.0.3:6881");
    let get_y = query(
        b"g2",
        Query::GetPeers {
            id: NodeId([8; 20]),
            info_hash: ih,
            want: None,
        },
        false,
    );
    let t3 = t1 + Duration::from_secs(29 * 60);
    assert_eq!(response(&ask(&mut node, t3, y, &get_y)).values.len(), 1);
    let t4 = t1 + Duration::from_secs(31 * 60);
    assert!(response(&ask(&mut node, t4, y, &get_y)).values.is_empty());
    node.on_timeout(t4);
    assert_eq!(node.stored_peers(), 0);
}

#[test]
fn queries_are_retransmitted_once_then_fail_at_the_long_timeout() {
    let t0 = Instant::now();
    let mut node = Node::new(cfg(), t0, 3);
    let a = addr("127.0.1.1:6881");
    node.add_node(t0, a);
    let sent = drain(&mut node);
    let aid = NodeId([9; 20]);
    answer_queries(&mut node, t0, &sent, a, aid, None);
    assert_eq!(node.table(false).len(), 1);

    // A find_node: one query to the one node, then silence.
    node.find_node(t0, NodeId([1; 20])).unwrap();
    let sent = drain(&mut node);
    assert_eq!(sent.len(), 1);
    let slow = t0 + Duration::from_secs(2);
    assert_eq!(node.next_timeout(), Some(slow));
    node.on_timeout(slow);
    let again = drain(&mut node);
    assert_eq!(again, sent, "the same query, once more");
    node.on_timeout(slow + Duration::from_secs(1));
    assert!(drain(&mut node).is_empty());
    // At the long timeout the query failed; the lookup ends with nothing.
    let long = t0 + Duration::from_secs(10);
    assert!(node.next_timeout().unwrap() <= long);
    node.on_timeout(long);
    assert_eq!(node.stats().timeouts, 1);
    let e = node.table(false).get(&aid).unwrap();
    assert_eq!(e.failures, 1);
    let done: Vec<_> = std::iter::from_fn(|| node.poll_event()).collect();
    assert!(matches!(&done[..], [Event::LookupDone(d)] if d.closest.is_empty() && d.timeouts == 1));
    // Failed twice: bad.
    node.find_node(long, NodeId([1; 20])).unwrap();
    drain(&mut node);
    node.on_timeout(long + Duration::from_secs(10));
    let e = node.table(false).get(&aid).unwrap();
    assert_eq!(node.table(false).status(e, long), NodeStatus::Bad);
}

#[test]
fn outgoing_queries_are_rate_limited() {
    let t0 = Instant::now();
    let config = Config {
        query_rate: 10,
        query_burst: 5,
        // No retransmission during the test: only first sends are counted.
        query_slow_after: Duration::from_secs(60),
        query_timeout: Duration::from_secs(120),
        ..cfg()
    };
    let mut node = Node::new(config, t0, 4);
    for i in 0..20u8 {
        node.add_node(t0, addr(&format!("127.0.2.{}:6881", i + 1)));
    }
    assert_eq!(drain(&mut node).len(), 5, "the burst");
    // One more every 100 ms.
    let next = node.next_timeout().unwrap();
    assert_eq!(next, t0 + Duration::from_millis(100));
    node.on_timeout(next);
    assert_eq!(drain(&mut node).len(), 1);
    // Never more than the burst at once.
    node.on_timeout(t0 + Duration::from_millis(2000));
    assert_eq!(drain(&mut node).len(), 5);
    node.on_timeout(t0 + Duration::from_millis(2500));
    assert_eq!(drain(&mut node).len(), 5);
    node.on_timeout(t0 + Duration::from_millis(3000));
    assert_eq!(drain(&mut node).len(), 4, "the rest");
    assert!(node.next_timeout().unwrap() > t0 + Duration::from_millis(3100));
}

#[test]
fn bep42_ids_are_enforced_on_public_addresses_and_learned_from_votes() {
    let t0 = Instant::now();
    let config = Config {
        enforce_node_id: true,
        ..cfg()
    };
    let mut node = Node::new(config, t0, 5);
    let old_id = node.id();
    let mut rng = StdRng::seed_from_u64(1);
    let public = addr("203.0.113.5:6881");
    // A free id at a public address: answered, but not entered.
    node.add_node(t0, public);
    let sent = drain(&mut node);
    answer_queries(&mut node, t0, &sent, public, NodeId([0x42; 20]), None);
    assert_eq!(node.table(false).len(), 0);
    assert_eq!(node.stats().bep42_refused, 1);
    // Its BEP 42 id: entered. A loopback node with any id: entered.
    let good = NodeId::bep42(public.ip(), &mut rng);
    node.add_node(t0, public);
    let sent = drain(&mut node);
    answer_queries(&mut node, t0, &sent, public, good, None);
    assert!(node.table(false).get(&good).is_some());
    let local = addr("127.0.0.9:6881");
    node.add_node(t0, local);
    let sent = drain(&mut node);
    answer_queries(&mut node, t0, &sent, local, NodeId([0x43; 20]), None);
    assert_eq!(node.table(false).len(), 2);

    // Five nodes at public addresses say we are 198.51.100.7: our id
    // changes to fit it, and the table keeps its nodes.
    let ours = addr("198.51.100.7:6881");
    for i in 0..5u8 {
        let a = addr(&format!("192.0.2.{}:6881", i + 1));
        node.add_node(t0, a);
        let sent = drain(&mut node);
        let id = NodeId::bep42(a.ip(), &mut rng);
        answer_queries(&mut node, t0, &sent, a, id, Some(ours));
    }
    let events: Vec<_> = std::iter::from_fn(|| node.poll_event()).collect();
    assert_eq!(
        events,
        vec![Event::ExternalAddress {
            ip: ours.ip(),
            id_changed: true
        }]
    );
    assert_ne!(node.id(), old_id);
    assert!(node.id().matches_bep42(ours.ip()));
    assert_eq!(node.external_ip(), Some(ours.ip()));
    assert_eq!(node.table(false).len(), 7);
    assert_eq!(node.table(false).own_id(), node.id());
}

#[test]
fn read_only_nodes_stay_out_of_tables_and_read_only_mode_answers_nothing() {
    let t0 = Instant::now();
    let mut node = Node::new(cfg(), t0, 6);
    let x = addr("127.0.0.2:6881");
    // A read-only querier is answered, but not pinged for the table.
    node.handle_packet(
        t0,
        x,
        &query(
            b"r1",
            Query::Ping {
                id: NodeId([3; 20]),
            },
            true,
        ),
    );
    let sent = drain(&mut node);
    assert_eq!(sent.len(), 1, "the answer only");
    assert!(matches!(
        krpc::decode(&sent[0].1).unwrap().body,
        Body::Response(_)
    ));
    // A normal querier is answered, then pinged.
    let y = addr("127.0.0.3:6881");
    node.handle_packet(
        t0,
        y,
        &query(
            b"r2",
            Query::Ping {
                id: NodeId([4; 20]),
            },
            false,
        ),
    );
    let sent = drain(&mut node);
    assert_eq!(sent.len(), 2, "the answer and our ping");
    answer_queries(&mut node, t0, &sent, y, NodeId([4; 20]), None);
    assert_eq!(node.table(false).len(), 1);
    assert!(node.table(false).get(&NodeId([3; 20])).is_none());

    let mut ro = Node::new(
        Config {
            read_only: true,
            ..cfg()
        },
        t0,
        7,
    );
    ro.handle_packet(
        t0,
        x,
        &query(
            b"r3",
            Query::Ping {
                id: NodeId([3; 20]),
            },
            false,
        ),
    );
    assert!(ro.poll_transmit().is_none());
    ro.add_node(t0, x);
    let (_, p) = ro.poll_transmit().unwrap();
    assert!(krpc::decode(&p).unwrap().read_only, "its queries say ro");
}

#[test]
fn announce_ends_with_announce_peer_to_the_nodes_that_gave_tokens() {
    let t0 = Instant::now();
    let mut node = Node::new(cfg(), t0, 8);
    let peers_node = addr("127.0.3.1:6881");
    let pid = NodeId([0x10; 20]);
    node.add_node(t0, peers_node);
    let sent = drain(&mut node);
    answer_queries(&mut node, t0, &sent, peers_node, pid, None);

    let ih = InfoHash([0x11; 20]);
    let lookup = node.announce(t0, ih, Some(51413)).unwrap();
    let sent = drain(&mut node);
    assert_eq!(sent.len(), 1);
    let q = krpc::decode(&sent[0].1).unwrap();
    assert!(matches!(q.body, Body::Query(Query::GetPeers { .. })));
    // It answers with a token and a peer.
    let r = Message {
        transaction_id: q.transaction_id,
        version: None,
        ip: None,
        read_only: false,
        body: Body::Response(Response {
            id: pid,
            nodes: vec![NodeInfo {
                id: NodeId([0x12; 20]),
                addr: addr("127.0.3.2:0"),
            }],
            nodes6: Vec::new(),
            values: vec![addr("127.0.9.9:1234"), addr("0.0.0.0:1")],
            token: Some(b"tok".to_vec()),
        }),
    };
    node.handle_packet(t0, peers_node, &krpc::encode(&r));
    let ev = node.poll_event().unwrap();
    assert_eq!(
        ev,
        Event::Peers {
            id: lookup,
            info_hash: ih,
            peers: vec![addr("127.0.9.9:1234")]
        },
        "the unusable peer and node are left out"
    );
    let sent = drain(&mut node);
    assert_eq!(sent.len(), 1);
    let q = krpc::decode(&sent[0].1).unwrap();
    let Body::Query(Query::AnnouncePeer {
        port,
        implied_port,
        token,
        info_hash,
        ..
    }) = &q.body
    else {
        panic!("{q:?}")
    };
    assert_eq!(
        (*port, *implied_port, token.as_slice(), *info_hash),
        (51413, false, &b"tok"[..], NodeId(ih.0))
    );
    assert!(
        node.poll_event().is_none(),
        "done only once the announce is answered"
    );
    answer_queries(&mut node, t0, &sent, peers_node, pid, None);
    match node.poll_event().unwrap() {
        Event::LookupDone(d) => {
            assert_eq!(d.id, lookup);
            assert_eq!(d.announced, 1);
            assert_eq!(d.peers, 1);
            assert_eq!(d.queries, 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn answers_from_the_wrong_address_or_id_are_not_trusted() {
    let t0 = Instant::now();
    let mut node = Node::new(cfg(), t0, 9);
    let a = addr("127.0.4.1:6881");
    node.add_node(t0, a);
    let sent = drain(&mut node);
    // The right transaction id from another address: ignored.
    answer_queries(&mut node, t0, &sent, a, NodeId([1; 20]), None);
    node.find_node(t0, NodeId([2; 20])).unwrap();
    let sent = drain(&mut node);
    let spoofed: Vec<_> = sent
        .iter()
        .map(|(_, p)| (addr("127.0.4.2:6881"), p.clone()))
        .collect();
    answer_queries(
        &mut node,
        t0,
        &spoofed,
        addr("127.0.4.2:6881"),
        NodeId([5; 20]),
        None,
    );
    assert_eq!(node.stats().unexpected, 1);
    // The right address but another id: the node counts as failed.
    answer_queries(&mut node, t0, &sent, a, NodeId([6; 20]), None);
    assert_eq!(node.stats().id_mismatch, 1);
    assert_eq!(node.table(false).get(&NodeId([1; 20])).unwrap().failures, 1);
}

#[test]
fn bad_saved_state_is_an_error() {
    let t0 = Instant::now();
    for bad in [
        &b""[..],
        b"i1e",
        b"d2:id19:aaaaaaaaaaaaaaaaaaae",
        b"d2:id20:aaaaaaaaaaaaaaaaaaaa6:nodes6i1ee",
    ] {
        assert!(Node::restore(cfg(), bad, t0, 1).is_err());
    }
    // A saved id that does not fit a known public address is replaced.
    let saved = Node::new(cfg(), t0, 1).save();
    let ip: IpAddr = "198.51.100.7".parse().unwrap();
    let n = Node::restore(
        Config {
            external_ip: Some(ip),
            ..cfg()
        },
        &saved,
        t0,
        1,
    )
    .unwrap();
    assert!(n.id().matches_bep42(ip));
}

proptest! {
    #[test]
    fn restore_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Node::restore(cfg(), &bytes, Instant::now(), 1);
    }

    #[test]
    fn damaged_saved_state_never_panics(pos in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
        let t0 = Instant::now();
        let mut node = Node::new(cfg(), t0, 3);
        for i in 0..10u8 {
            let a = addr(&format!("127.0.5.{}:6881", i + 1));
            node.add_node(t0, a);
            let sent = drain(&mut node);
            answer_queries(&mut node, t0, &sent, a, NodeId([i + 1; 20]), None);
        }
        let mut saved = node.save();
        if let Some(b) = saved.get_mut(pos) {
            *b = byte;
        }
        saved.truncate(saved.len().saturating_sub(cut % 40));
        if let Ok(n) = Node::restore(cfg(), &saved, t0, 1) {
            prop_assert!(n.table(false).len() <= 10);
        }
    }

    /// Any datagram, from any address: no panic, and whatever the node sends
    /// decodes.
    #[test]
    fn arbitrary_packets_never_break_the_node(packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20)) {
        let t0 = Instant::now();
        let mut node = Node::new(Config::default(), t0, 4);
        node.add_node(t0, addr("127.0.0.2:6881"));
        for (i, p) in packets.iter().enumerate() {
            let from = if i % 2 == 0 { addr("127.0.0.2:6881") } else { addr("[::1]:6881") };
            node.handle_packet(t0 + Duration::from_secs(i as u64), from, p);
            while let Some((_, out)) = node.poll_transmit() {
                prop_assert!(krpc::decode(&out).is_ok());
            }
        }
    }
}

/// A lookup reports the peers announced to the node itself at once: in a
/// small DHT the node closest to an info-hash may be the one looking.
#[test]
fn a_lookup_reports_the_peers_announced_to_us() {
    let t0 = Instant::now();
    let mut node = Node::new(cfg(), t0, 3);
    let x = addr("127.0.0.2:7000");
    let xid = NodeId([7; 20]);
    let ih = InfoHash([0x42; 20]);
    let m = ask(
        &mut node,
        t0,
        x,
        &query(
            b"g1",
            Query::GetPeers {
                id: xid,
                info_hash: NodeId(ih.0),
                want: None,
            },
            false,
        ),
    );
    let token = response(&m).token.clone().expect("token");
    let m = ask(
        &mut node,
        t0,
        x,
        &query(
            b"a1",
            Query::AnnouncePeer {
                id: xid,
                info_hash: NodeId(ih.0),
                port: 6000,
                implied_port: false,
                token,
            },
            false,
        ),
    );
    assert!(matches!(m.body, Body::Response(_)));
    // Our own lookup, with x (a router here) as the only other node.
    node.bootstrap(t0, &[x]).unwrap();
    let id = node.get_peers(t0, ih).unwrap();
    let mut found = Vec::new();
    while let Some(e) = node.poll_event() {
        if let Event::Peers { id: got, peers, .. } = e {
            assert_eq!(got, id);
            found.extend(peers);
        }
    }
    assert_eq!(found, vec![addr("127.0.0.2:6000")]);
}
