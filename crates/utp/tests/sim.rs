//! Two endpoints over a virtual network (`common`): handshake, bulk
//! transfers under loss, reordering and duplication, FIN, RESET, timeouts,
//! a receiver that stops reading, and LEDBAT on a bottleneck.
//!
//! Run with `--nocapture` to see timings and queueing delays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{addr, pattern, Flow, Link, Sim};
use rivulet_utp::packet::{decode, PacketType};
use rivulet_utp::{CloseReason, Config, ConnEvent, Event};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn handshake_follows_the_wire_rules() {
    let mut sim = Sim::new(1, Config::default(), Link::default());
    sim.record = true;
    let (a, b) = sim.connect();
    sim.hosts[0].ep.write(a, b"ping").unwrap();
    sim.hosts[1].ep.write(b, b"pong").unwrap();
    sim.run_until(secs(1), |_| false);
    let syn = decode(&sim.sent[0][0].1).unwrap().header;
    let answer = decode(&sim.sent[1][0].1).unwrap().header;
    assert_eq!(syn.ty, PacketType::Syn);
    assert_eq!(answer.ty, PacketType::State);
    // The SYN names the initiator's recv id; the acceptor sends with it.
    assert_eq!(answer.connection_id, syn.connection_id);
    assert_eq!(answer.ack_nr, syn.seq_nr);
    let data_a = sim.sent[0]
        .iter()
        .map(|(_, b)| decode(b).unwrap().header)
        .find(|h| h.ty == PacketType::Data)
        .unwrap();
    let data_b = sim.sent[1]
        .iter()
        .map(|(_, b)| decode(b).unwrap().header)
        .find(|h| h.ty == PacketType::Data)
        .unwrap();
    // The initiator sends with recv id + 1, its next sequence number after
    // the SYN, and acknowledges the packet before the answer's seq_nr.
    assert_eq!(data_a.connection_id, syn.connection_id.wrapping_add(1));
    assert_eq!(data_a.seq_nr, syn.seq_nr.wrapping_add(1));
    // The answer did not consume its sequence number.
    assert_eq!(data_b.seq_nr, answer.seq_nr);
    assert_eq!(data_b.connection_id, syn.connection_id);
    // Both carry a delay sample once they have heard from the other side.
    assert_ne!(data_b.timestamp_diff_us, 0);
    assert!(data_a.wnd_size > 0 && data_b.wnd_size > 0);

    let mut buf = [0u8; 16];
    assert_eq!(sim.hosts[1].ep.read(b, &mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"ping");
    assert_eq!(sim.hosts[0].ep.read(a, &mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"pong");
    assert_eq!(
        sim.hosts[1].events[0],
        Event::Incoming {
            conn: b,
            addr: addr(0)
        }
    );
}

fn bulk(seed: u64, link: Link, a_to_b: usize, b_to_a: usize, limit: Duration) -> (Sim, Duration) {
    let mut sim = Sim::new(seed, Config::default(), link);
    let (a, b) = sim.connect();
    let mut f1 = Flow::new(0, a, b, pattern(a_to_b, 1));
    let mut f2 = Flow::new(1, b, a, pattern(b_to_a, 2));
    let start = sim.now;
    let done = sim.run_until(limit, |s| {
        let d1 = f1.pump(s);
        let d2 = f2.pump(s);
        d1 && d2
    });
    assert!(
        done,
        "transfer incomplete: {} of {}, {} of {}",
        f1.received.len(),
        a_to_b,
        f2.received.len(),
        b_to_a
    );
    assert!(f1.received == f1.data, "A to B corrupted");
    assert!(f2.received == f2.data, "B to A corrupted");
    let took = sim.now - start;
    (sim, took)
}

#[test]
fn bulk_transfer_clean_link() {
    // Wall-clock time of the whole simulation (both endpoints, the virtual
    // network and the test's copies): an upper bound on the protocol's CPU
    // cost per MB (run with --release to see it).
    let wall = std::time::Instant::now();
    let (sim, _) = bulk(2, Link::default(), 4 << 20, 1 << 20, secs(60));
    let wall = wall.elapsed();
    println!(
        "clean: 5 MiB through both endpoints in {wall:?} of CPU, {:.2} ms per MB",
        wall.as_secs_f64() * 1000.0 / 5.24
    );
    let c = sim.hosts[0].ep.connection(rivulet_utp::ConnId(0)).unwrap();
    assert_eq!(c.stats().retransmits, 0);
    println!("clean: {:?} virtual, cwnd {}", sim.elapsed(), c.cwnd());
}

#[test]
fn bulk_transfer_under_loss_reordering_and_duplication() {
    let link = Link {
        delay: ms(20),
        jitter: ms(10),
        loss: 0.05,
        dup: 0.02,
        ..Link::default()
    };
    let (sim, _) = bulk(3, link, 3 << 20, 1 << 20, secs(600));
    let c = sim.hosts[0].ep.connection(rivulet_utp::ConnId(0)).unwrap();
    assert!(c.stats().retransmits > 0);
    println!("lossy: {:?} virtual, {:?}", sim.elapsed(), c.stats());
}

#[test]
fn close_with_fin_both_ways() {
    let mut sim = Sim::new(
        4,
        Config::default(),
        Link {
            jitter: ms(5),
            loss: 0.02,
            ..Link::default()
        },
    );
    let (a, b) = sim.connect();
    let mut f1 = Flow::new(0, a, b, pattern(200_000, 3));
    let mut f2 = Flow::new(1, b, a, pattern(100_000, 4));
    f1.close_after = true;
    f2.close_after = true;
    sim.record = true;
    let done = sim.run_until(secs(120), |s| {
        let d1 = f1.pump(s);
        let d2 = f2.pump(s);
        d1 && d2
            && s.has_event(0, a, ConnEvent::Closed(CloseReason::Finished))
            && s.has_event(1, b, ConnEvent::Closed(CloseReason::Finished))
    });
    if !done {
        let mut all: Vec<_> = (0..2)
            .flat_map(|d| sim.sent[d].iter().map(move |(t, b)| (*t, d, b.clone())))
            .collect();
        all.sort_by_key(|x| x.0);
        for (t, d, b) in &all[all.len() - 20..] {
            let h = decode(b).unwrap().header;
            println!(
                "{:?} {} {:?} seq {} ack {} len {}",
                *t - sim.t0,
                if *d == 0 { "A>B" } else { "B>A" },
                h.ty,
                h.seq_nr,
                h.ack_nr,
                b.len()
            );
        }
    }
    let tail = |h: usize| {
        sim.hosts[h]
            .events
            .iter()
            .rev()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        done,
        "at {:?}: {} {} {:?} {:?} {:?}",
        sim.elapsed(),
        f1.received.len(),
        f2.received.len(),
        tail(0),
        tail(1),
        sim.hosts[1].ep.connection(b)
    );
    assert_eq!(f1.received, f1.data);
    assert_eq!(f2.received, f2.data);
    assert!(sim.has_event(0, a, ConnEvent::Eof) && sim.has_event(1, b, ConnEvent::Eof));
    // After the linger, both endpoints forget the connection.
    assert!(sim.run_until(secs(30), |s| s.hosts[0].ep.is_empty()
        && s.hosts[1].ep.is_empty()));
    // A write after close is refused.
    assert!(sim.hosts[0].ep.write(a, b"x").is_err());
}

#[test]
fn half_close_keeps_the_other_direction_open() {
    let mut sim = Sim::new(5, Config::default(), Link::default());
    let (a, b) = sim.connect();
    sim.hosts[0].ep.close(a).unwrap();
    assert!(sim.run_until(secs(5), |s| s.has_event(1, b, ConnEvent::Eof)));
    assert!(sim.hosts[1].ep.connection(b).unwrap().is_eof());
    // B still sends to A after A's FIN.
    let mut f = Flow::new(1, b, a, pattern(50_000, 9));
    assert!(sim.run_until(secs(10), |s| f.pump(s)));
    assert_eq!(f.received, f.data);
    sim.hosts[1].ep.close(b).unwrap();
    assert!(sim.run_until(secs(5), |s| s.has_event(
        0,
        a,
        ConnEvent::Closed(CloseReason::Finished)
    ) && s.has_event(
        1,
        b,
        ConnEvent::Closed(CloseReason::Finished)
    )));
}

#[test]
fn peer_that_never_sends_its_fin_is_let_go() {
    let mut sim = Sim::new(16, Config::default(), Link::default());
    let (a, b) = sim.connect();
    sim.hosts[1].ep.write(b, b"hello").unwrap();
    sim.run_until(secs(1), |_| false);
    let start = sim.now;
    sim.hosts[0].ep.close(a).unwrap();
    // B never closes (as Transmission 3.00 does).
    assert!(sim.run_until(secs(60), |s| s.has_event(
        0,
        a,
        ConnEvent::Closed(CloseReason::Finished)
    )));
    let took = sim.now - start;
    assert!(took >= secs(10) && took < secs(11), "{took:?}");
    assert!(sim.hosts[1].ep.connection(b).unwrap().is_eof());
}

#[test]
fn reset_ends_both_sides_at_once() {
    let mut sim = Sim::new(6, Config::default(), Link::default());
    let (a, b) = sim.connect();
    sim.hosts[0].ep.write(a, &pattern(10_000, 0)).unwrap();
    // The acceptor resets, as the engine does for an unknown info-hash.
    sim.hosts[1].ep.reset(b).unwrap();
    assert!(sim.run_until(secs(1), |s| s.has_event(
        0,
        a,
        ConnEvent::Closed(CloseReason::ResetByPeer)
    )));
    assert!(sim.has_event(1, b, ConnEvent::Closed(CloseReason::ResetLocally)));
    assert!(sim.elapsed() < secs(1), "reset took {:?}", sim.elapsed());
    sim.run_until(secs(1), |_| false);
    assert!(sim.hosts[0].ep.is_empty() && sim.hosts[1].ep.is_empty());
}

#[test]
fn packets_for_unknown_connections_get_a_reset() {
    let mut sim = Sim::new(7, Config::default(), Link::default());
    let (a, _b) = sim.connect();
    // B forgets everything (a restart).
    sim.hosts[1].ep = rivulet_utp::Endpoint::new(Config::default(), sim.now, 99);
    sim.hosts[0].ep.write(a, b"hello?").unwrap();
    assert!(sim.run_until(secs(2), |s| s.has_event(
        0,
        a,
        ConnEvent::Closed(CloseReason::ResetByPeer)
    )));
    // One RESET for each id the peer may receive on.
    assert_eq!(sim.hosts[1].ep.stats().resets_sent, 2);
}

#[test]
fn packets_to_a_forgetful_initiator_get_a_reset() {
    let mut sim = Sim::new(17, Config::default(), Link::default());
    let (_a, b) = sim.connect();
    // A (the initiator) restarts.
    sim.hosts[0].ep = rivulet_utp::Endpoint::new(Config::default(), sim.now, 98);
    sim.hosts[1].ep.write(b, b"still there?").unwrap();
    assert!(sim.run_until(secs(2), |s| s.has_event(
        1,
        b,
        ConnEvent::Closed(CloseReason::ResetByPeer)
    )));
}

#[test]
fn lost_answer_to_the_syn_is_sent_again() {
    let mut sim = Sim::new(18, Config::default(), Link::default());
    sim.links[1].drop_next = 1;
    let (a, b) = sim.connect();
    // The SYN again after 1 s, answered again by the same connection.
    assert_eq!(sim.elapsed(), secs(1) + ms(20));
    assert_eq!(sim.hosts[1].ep.len(), 1);
    sim.hosts[0].ep.write(a, b"x").unwrap();
    assert!(
        sim.run_until(secs(1), |s| s.hosts[1].ep.connection(b).unwrap().readable()
            == 1)
    );
}

#[test]
fn refused_when_not_listening() {
    let mut sim = Sim::new(8, Config::default(), Link::default());
    sim.hosts[1].ep.set_listening(false);
    let a = sim.hosts[0].ep.connect(sim.now, addr(1)).unwrap();
    assert!(sim.run_until(secs(2), |s| s.has_event(
        0,
        a,
        ConnEvent::Closed(CloseReason::Refused)
    )));
    assert_eq!(sim.hosts[1].ep.stats().refused, 1);
    assert!(sim.hosts[1].ep.is_empty());
}

#[test]
fn syn_without_answer_times_out() {
    let mut sim = Sim::new(
        9,
        Config::default(),
        Link {
            down: true,
            ..Link::default()
        },
    );
    sim.record = true;
    let a = sim.hosts[0].ep.connect(sim.now, addr(1)).unwrap();
    assert!(sim.run_until(secs(60), |s| s.has_event(
        0,
        a,
        ConnEvent::Closed(CloseReason::TimedOut)
    )));
    // SYNs at 0, 1 and 3 s; given up at 7 s (1 + 2 + 4).
    let times: Vec<_> = sim.sent[0].iter().map(|(t, _)| *t - sim.t0).collect();
    assert_eq!(times, [secs(0), secs(1), secs(3)]);
    assert_eq!(sim.elapsed(), secs(7));
    assert!(sim.hosts[0].ep.is_empty());
}

#[test]
fn retransmissions_back_off_then_give_up() {
    let mut sim = Sim::new(10, Config::default(), Link::default());
    let (a, _b) = sim.connect();
    sim.links[0].down = true;
    sim.record = true;
    let start = sim.now;
    sim.hosts[0].ep.write(a, b"lost forever").unwrap();
    assert!(sim.run_until(secs(600), |s| s.has_event(
        0,
        a,
        ConnEvent::Closed(CloseReason::TimedOut)
    )));
    let data: Vec<_> = sim.sent[0]
        .iter()
        .filter(|(_, b)| decode(b).unwrap().header.ty == PacketType::Data)
        .map(|(t, _)| *t - start)
        .collect();
    // Sent once, then again after each of max_retransmits (4) timeouts.
    assert_eq!(data.len(), 5, "{data:?}");
    let gaps: Vec<_> = data.windows(2).map(|w| w[1] - w[0]).collect();
    for w in gaps.windows(2) {
        assert_eq!(w[1], w[0] * 2, "no exponential backoff: {gaps:?}");
    }
    println!(
        "retransmissions at {data:?}, closed at {:?}",
        sim.now - start
    );
}

#[test]
fn receiver_that_does_not_read_stalls_the_sender() {
    let cfg = Config::default();
    let recv_buffer = cfg.recv_buffer;
    let mut sim = Sim::new(11, cfg, Link::default());
    let (a, b) = sim.connect();
    let mut f = Flow::new(0, a, b, pattern(4 << 20, 5));
    f.reading = false;
    sim.run_until(secs(20), |s| {
        f.pump(s);
        false
    });
    let rc = sim.hosts[1].ep.connection(b).unwrap();
    // The receive buffer is full and the advertised window closed.
    assert!(rc.readable() > recv_buffer - 1380, "{}", rc.readable());
    let sc = sim.hosts[0].ep.connection(a).unwrap();
    assert!(sc.peer_window() < 1380, "window {}", sc.peer_window());
    let acked = sc.stats().bytes_acked;
    assert_eq!(acked as usize, rc.readable());
    // Stalled: another 60 s change nothing, and the connection lives.
    sim.run_until(secs(60), |s| {
        f.pump(s);
        false
    });
    let sc = sim.hosts[0].ep.connection(a).unwrap();
    assert_eq!(sc.stats().bytes_acked, acked);
    assert!(sc.is_connected());
    // Reading again resumes the transfer.
    f.reading = true;
    assert!(sim.run_until(secs(60), |s| f.pump(s)));
    assert_eq!(f.received, f.data);
}

#[test]
fn ledbat_keeps_the_queueing_delay_near_target() {
    // 1 MB/s bottleneck with up to 1 s of buffer, 25 ms each way.
    let link = Link {
        delay: ms(25),
        rate: Some(1_000_000.0),
        queue_limit: 1_000_000,
        ..Link::default()
    };
    let mut sim = Sim::new(
        12,
        Config {
            send_buffer: 4 << 20,
            ..Config::default()
        },
        link,
    );
    let (a, b) = sim.connect();
    let mut f = Flow::new(0, a, b, pattern(12 << 20, 6));
    let start = sim.now;
    assert!(sim.run_until(secs(120), |s| f.pump(s)));
    let took = (sim.now - start).as_secs_f64();
    assert_eq!(f.received, f.data);
    let rate = f.data.len() as f64 / took;
    // The second half, past slow start.
    let q = &sim.queue_delays[0];
    let mut tail: Vec<_> = q[q.len() / 2..].to_vec();
    tail.sort();
    let median = tail[tail.len() / 2];
    let p95 = tail[tail.len() * 95 / 100];
    println!(
        "ledbat: {:.0} kB/s, queueing delay median {median:?} p95 {p95:?}",
        rate / 1000.0
    );
    assert!(rate > 800_000.0, "link underused: {rate:.0} B/s");
    assert!(
        median > ms(50) && median < ms(150),
        "median queueing delay {median:?}"
    );
    assert!(p95 < ms(250), "p95 queueing delay {p95:?}");
}

#[test]
fn keepalive_on_an_idle_connection() {
    let mut sim = Sim::new(13, Config::default(), Link::default());
    let (a, b) = sim.connect();
    // The initiator speaks first (as BitTorrent's handshake does), which
    // confirms it to the acceptor.
    sim.hosts[0].ep.write(a, b"hi").unwrap();
    sim.run_until(secs(1), |_| false);
    sim.record = true;
    sim.run_until(secs(100), |_| false);
    let states = sim.sent[0]
        .iter()
        .filter(|(_, b)| decode(b).unwrap().header.ty == PacketType::State)
        .count();
    assert_eq!(states, 3, "keep-alives in 100 s");
    assert!(sim.hosts[0].ep.connection(a).unwrap().is_connected());
    assert!(sim.hosts[1].ep.connection(b).unwrap().is_connected());
}

#[test]
fn silent_accepted_connection_is_dropped() {
    let mut sim = Sim::new(15, Config::default(), Link::default());
    let (_a, b) = sim.connect();
    assert!(sim.run_until(secs(30), |s| s.has_event(
        1,
        b,
        ConnEvent::Closed(CloseReason::TimedOut)
    )));
    assert_eq!(sim.elapsed(), secs(10) + ms(10));
}

#[test]
fn dead_peer_is_dropped_after_idle_timeout() {
    let mut sim = Sim::new(14, Config::default(), Link::default());
    let (a, _b) = sim.connect();
    sim.links[1].down = true;
    assert!(sim.run_until(secs(400), |s| s.has_event(
        0,
        a,
        ConnEvent::Closed(CloseReason::TimedOut)
    )));
    assert!(sim.elapsed() >= secs(300));
}
