//! A virtual network between two endpoints with a virtual clock: per
//! direction a propagation delay, jitter (which reorders), loss,
//! duplication, and optionally a bottleneck of limited bandwidth with a
//! drop-tail queue, whose queueing delay is recorded. The clock jumps to
//! the next delivery or wake-up; everything is seeded.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rivulet_utp::{Config, ConnEvent, ConnId, Endpoint, Event};

#[derive(Debug, Clone)]
pub struct Link {
    pub delay: Duration,
    /// Extra delay, uniform in [0, jitter]: reorders packets.
    pub jitter: Duration,
    pub loss: f64,
    pub dup: f64,
    /// Bottleneck in bytes per second.
    pub rate: Option<f64>,
    /// Most bytes waiting in the bottleneck's queue.
    pub queue_limit: usize,
    /// The link is cut: everything is lost.
    pub down: bool,
    /// Drop this many of the next packets.
    pub drop_next: u32,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            dup: 0.0,
            rate: None,
            queue_limit: usize::MAX,
            down: false,
            drop_next: 0,
        }
    }
}

pub struct Host {
    pub ep: Endpoint,
    pub addr: SocketAddr,
    pub events: Vec<Event>,
}

type Flight = Reverse<(Instant, u64, usize, Vec<u8>)>;

pub struct Sim {
    pub now: Instant,
    pub t0: Instant,
    pub hosts: [Host; 2],
    /// links[0]: host 0 to host 1; links[1]: back.
    pub links: [Link; 2],
    busy_until: [Instant; 2],
    wire: BinaryHeap<Flight>,
    rng: StdRng,
    seq: u64,
    buf: Vec<u8>,
    /// Queueing delay at the bottleneck of each direction, per packet.
    pub queue_delays: [Vec<Duration>; 2],
    /// Every datagram put on each direction, with its time (before loss).
    pub sent: [Vec<(Instant, Vec<u8>)>; 2],
    pub record: bool,
    /// Steps taken without the clock moving: a livelock check.
    same_instant: u32,
}

pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2 + i as u8], 6881))
}

impl Sim {
    pub fn new(seed: u64, cfg: Config, link: Link) -> Self {
        let t0 = Instant::now();
        let mk = |i: usize| Host {
            ep: Endpoint::new(cfg.clone(), t0, seed.wrapping_mul(2).wrapping_add(i as u64)),
            addr: addr(i),
            events: Vec::new(),
        };
        let mut hosts = [mk(0), mk(1)];
        hosts[1].ep.set_listening(true);
        Sim {
            now: t0,
            t0,
            hosts,
            links: [link.clone(), link],
            busy_until: [t0, t0],
            wire: BinaryHeap::new(),
            rng: StdRng::seed_from_u64(seed),
            seq: 0,
            buf: Vec::new(),
            queue_delays: [Vec::new(), Vec::new()],
            sent: [Vec::new(), Vec::new()],
            record: false,
            same_instant: 0,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn put(&mut self, dir: usize, bytes: Vec<u8>) {
        if self.record {
            self.sent[dir].push((self.now, bytes.clone()));
        }
        if self.links[dir].drop_next > 0 {
            self.links[dir].drop_next -= 1;
            return;
        }
        let link = &self.links[dir];
        if link.down || self.rng.gen_bool(link.loss) {
            return;
        }
        let copies = if self.rng.gen_bool(link.dup) { 2 } else { 1 };
        let mut at = self.now;
        if let Some(rate) = link.rate {
            let start = self.busy_until[dir].max(self.now);
            let queued = start - self.now;
            if queued.as_secs_f64() * rate > link.queue_limit as f64 {
                return; // drop-tail
            }
            self.queue_delays[dir].push(queued);
            let done = start + Duration::from_secs_f64(bytes.len() as f64 / rate);
            self.busy_until[dir] = done;
            at = done;
        }
        let jitter = if link.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.gen_range(0..=link.jitter.as_nanos() as u64))
        };
        at += link.delay + jitter;
        for _ in 0..copies {
            self.seq += 1;
            self.wire
                .push(Reverse((at, self.seq, 1 - dir, bytes.clone())));
        }
    }

    /// Sends what both endpoints have to send and collects their events.
    pub fn flush(&mut self) {
        for i in 0..2 {
            while let Some(to) = self.hosts[i].ep.poll_transmit(self.now, &mut self.buf) {
                assert_eq!(to, self.hosts[1 - i].addr);
                let bytes = self.buf.clone();
                self.put(i, bytes);
            }
            while let Some(e) = self.hosts[i].ep.poll_event() {
                self.hosts[i].events.push(e);
            }
        }
    }

    /// Moves the clock to the next delivery or wake-up (not past `limit`)
    /// and processes it. Returns false when nothing is left to happen.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.flush();
        let mut next = self.wire.peek().map(|Reverse((t, ..))| *t);
        for h in &self.hosts {
            if let Some(t) = h.ep.next_timeout() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        let Some(next) = next else { return false };
        if next > limit {
            self.now = limit;
            return false;
        }
        if next <= self.now {
            self.same_instant += 1;
            assert!(
                self.same_instant < 100_000,
                "livelock at {:?}: timeouts {:?} {:?}, connections {:?}",
                self.elapsed(),
                self.hosts[0].ep.next_timeout().map(|t| t - self.t0),
                self.hosts[1].ep.next_timeout().map(|t| t - self.t0),
                self.hosts
                    .iter()
                    .map(|h| h
                        .ep
                        .connection(rivulet_utp::ConnId(0))
                        .map(|c| format!("{c:?}")))
                    .collect::<Vec<_>>()
            );
        } else {
            self.same_instant = 0;
        }
        self.now = self.now.max(next);
        while let Some(Reverse((t, ..))) = self.wire.peek() {
            if *t > self.now {
                break;
            }
            let Reverse((_, _, to, bytes)) = self.wire.pop().unwrap();
            let from = self.hosts[1 - to].addr;
            assert!(self.hosts[to].ep.handle_datagram(self.now, from, &bytes));
        }
        for h in &mut self.hosts {
            if h.ep.next_timeout().is_some_and(|t| t <= self.now) {
                h.ep.on_timeout(self.now);
            }
        }
        self.flush();
        true
    }

    /// Runs until `done` says so or `timeout` of virtual time has passed.
    /// Returns whether `done` held.
    pub fn run_until(&mut self, timeout: Duration, mut done: impl FnMut(&mut Sim) -> bool) -> bool {
        let limit = self.now + timeout;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(limit) || self.now >= limit {
                return done(self);
            }
        }
    }

    pub fn has_event(&self, host: usize, conn: ConnId, event: ConnEvent) -> bool {
        self.hosts[host]
            .events
            .contains(&Event::Conn { conn, event })
    }

    /// The connection host 1 accepted.
    pub fn incoming(&self) -> Option<ConnId> {
        self.hosts[1].events.iter().find_map(|e| match e {
            Event::Incoming { conn, .. } => Some(*conn),
            _ => None,
        })
    }

    /// Connects host 0 to host 1 and runs the handshake.
    pub fn connect(&mut self) -> (ConnId, ConnId) {
        let a = self.hosts[0].ep.connect(self.now, addr(1)).unwrap();
        assert!(
            self.run_until(Duration::from_secs(30), |s| s.incoming().is_some()
                && s.has_event(0, a, ConnEvent::Connected))
        );
        (a, self.incoming().unwrap())
    }
}

/// Deterministic test data.
pub fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add((i >> 8) as u8) ^ salt)
        .collect()
}

/// One direction of a transfer driven by the test: writes `data` on
/// (host `from`, conn `wc`) and reads on (host `1 - from`, conn `rc`).
pub struct Flow {
    pub from: usize,
    pub wc: ConnId,
    pub rc: ConnId,
    pub data: Vec<u8>,
    pub written: usize,
    pub received: Vec<u8>,
    pub reading: bool,
    pub close_after: bool,
}

impl Flow {
    pub fn new(from: usize, wc: ConnId, rc: ConnId, data: Vec<u8>) -> Self {
        Flow {
            from,
            wc,
            rc,
            data,
            written: 0,
            received: Vec::new(),
            reading: true,
            close_after: false,
        }
    }

    /// Writes and reads what it can. Returns true when all was received.
    pub fn pump(&mut self, sim: &mut Sim) -> bool {
        if self.written < self.data.len() {
            let n = sim.hosts[self.from]
                .ep
                .write(self.wc, &self.data[self.written..])
                .unwrap();
            self.written += n;
            if self.written == self.data.len() && self.close_after {
                sim.hosts[self.from].ep.close(self.wc).unwrap();
            }
        }
        if self.reading {
            let mut buf = [0u8; 65536];
            while let Ok(n) = sim.hosts[1 - self.from].ep.read(self.rc, &mut buf) {
                if n == 0 {
                    break;
                }
                self.received.extend_from_slice(&buf[..n]);
            }
        }
        self.received.len() == self.data.len()
    }
}
