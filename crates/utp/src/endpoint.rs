//! [`Endpoint`]: every uTP connection of one UDP port. It routes datagrams
//! to connections by (peer address, connection id), opens connections
//! ([`Endpoint::connect`]) and accepts them (from SYNs, while listening and
//! under the limits), answers packets of unknown connections with a RESET
//! (rate-bounded), and merges the connections' datagrams, events and
//! timers into one stream for the driver.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::conn::{self, Connection};
use crate::error::UtpError;
use crate::packet::{self, encode_header, Header, PacketType};

/// Names one connection of an [`Endpoint`] (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What an endpoint tells its driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A peer opened a connection and we accepted it (while listening).
    /// It is connected already; [`Endpoint::reset`] refuses it after all.
    Incoming {
        /// The new connection.
        conn: ConnId,
        /// The peer.
        addr: SocketAddr,
    },
    /// Something happened on a connection.
    Conn {
        /// Which connection.
        conn: ConnId,
        /// What happened.
        event: conn::Event,
    },
}

/// Counters of an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams handed to [`Endpoint::handle_datagram`].
    pub datagrams_in: u64,
    /// Datagrams that were not uTP.
    pub not_utp: u64,
    /// Packets for no connection we know.
    pub unknown: u64,
    /// SYNs refused (not listening, or over a limit).
    pub refused: u64,
    /// RESETs sent to packets of unknown connections and refused SYNs.
    pub resets_sent: u64,
    /// RESETs not sent because of the rate bound.
    pub resets_suppressed: u64,
}

/// Most RESETs waiting to be sent.
const MAX_QUEUED_RESETS: usize = 64;

#[derive(Debug)]
struct Entry {
    conn: Connection,
    addr: SocketAddr,
    /// In the `ready` queue.
    queued: bool,
    /// Earliest wake-up of this connection in the timer heap.
    scheduled: Option<Instant>,
}

/// The uTP connections of one UDP port.
#[derive(Debug)]
pub struct Endpoint {
    cfg: Config,
    epoch: Instant,
    rng: StdRng,
    listening: bool,
    conns: HashMap<ConnId, Entry>,
    /// (peer, the connection id its packets carry) to connection.
    by_key: HashMap<(SocketAddr, u16), ConnId>,
    next_id: u64,
    /// Connections that may have something to send, round-robin.
    ready: VecDeque<ConnId>,
    /// Wake-ups; an entry is stale when a connection's `scheduled` differs.
    timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    events: VecDeque<Event>,
    resets: VecDeque<(SocketAddr, Header)>,
    reset_tokens: f64,
    reset_refill: Instant,
    stats: EndpointStats,
}

impl Endpoint {
    /// An endpoint that does not listen yet. `seed` drives the connection
    /// ids and initial sequence numbers (tests pass fixed seeds; the
    /// driver a random one).
    pub fn new(cfg: Config, now: Instant, seed: u64) -> Self {
        let tokens = f64::from(cfg.resets_per_second);
        Endpoint {
            cfg,
            epoch: now,
            rng: StdRng::seed_from_u64(seed),
            listening: false,
            conns: HashMap::new(),
            by_key: HashMap::new(),
            next_id: 0,
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            resets: VecDeque::new(),
            reset_tokens: tokens,
            reset_refill: now,
            stats: EndpointStats::default(),
        }
    }

    /// Whether incoming SYNs become connections (when false they are
    /// answered with a RESET, and libtorrent tries TCP).
    pub fn set_listening(&mut self, listening: bool) {
        self.listening = listening;
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The endpoint's counters.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// How many connections exist (closed ones with unread bytes
    /// included).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether there is no connection.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// A connection, to read its state and counters.
    pub fn connection(&self, id: ConnId) -> Option<&Connection> {
        self.conns.get(&id).map(|e| &e.conn)
    }

    /// The peer of a connection.
    pub fn remote(&self, id: ConnId) -> Option<SocketAddr> {
        self.conns.get(&id).map(|e| e.addr)
    }

    /// Opens a connection to `addr`; its SYN goes out at the next
    /// [`Endpoint::poll_transmit`], and [`conn::Event::Connected`] follows
    /// the answer.
    pub fn connect(&mut self, now: Instant, addr: SocketAddr) -> Result<ConnId, UtpError> {
        if self.conns.len() >= self.cfg.max_connections {
            return Err(UtpError::TooManyConnections {
                limit: self.cfg.max_connections,
            });
        }
        // A recv id not in use with this peer (the SYN's; the peer then
        // sends to it and we send to recv_id + 1).
        let recv_id = loop {
            let id: u16 = self.rng.gen();
            if !self.by_key.contains_key(&(addr, id)) {
                break id;
            }
        };
        let seq_nr = self.rng.gen();
        let conn = Connection::connect(&self.cfg, now, self.epoch, recv_id, seq_nr);
        Ok(self.insert(addr, recv_id, conn))
    }

    fn insert(&mut self, addr: SocketAddr, recv_id: u16, conn: Connection) -> ConnId {
        let id = ConnId(self.next_id);
        self.next_id += 1;
        self.by_key.insert((addr, recv_id), id);
        self.conns.insert(
            id,
            Entry {
                conn,
                addr,
                queued: false,
                scheduled: None,
            },
        );
        self.touch(id);
        id
    }

    /// Queues a connection for transmission, moves its events out, updates
    /// its wake-up, and forgets it once it is finished and read.
    fn touch(&mut self, id: ConnId) {
        let Some(e) = self.conns.get_mut(&id) else {
            return;
        };
        while let Some(event) = e.conn.poll_event() {
            self.events.push_back(Event::Conn { conn: id, event });
        }
        if !e.queued {
            e.queued = true;
            self.ready.push_back(id);
        }
        if let Some(t) = e.conn.next_timeout() {
            if e.scheduled.is_none_or(|s| t < s) {
                e.scheduled = Some(t);
                self.timers.push(Reverse((t, id)));
            }
        }
        if e.conn.is_finished() && e.conn.readable() == 0 {
            let key = (e.addr, e.conn.recv_id());
            self.conns.remove(&id);
            self.by_key.remove(&key);
        }
    }

    /// Copies what fits of `data` into a connection's send buffer (see
    /// [`Connection::write`]).
    pub fn write(&mut self, id: ConnId, data: &[u8]) -> Result<usize, UtpError> {
        let e = self.conns.get_mut(&id).ok_or(UtpError::UnknownConnection)?;
        if e.conn.close_reason().is_some() {
            return Err(UtpError::Closed);
        }
        let n = e.conn.write(data);
        self.touch(id);
        Ok(n)
    }

    /// Reads from a connection (see [`Connection::read`]). A finished
    /// connection is forgotten once it is read empty.
    pub fn read(&mut self, id: ConnId, buf: &mut [u8]) -> Result<usize, UtpError> {
        let e = self.conns.get_mut(&id).ok_or(UtpError::UnknownConnection)?;
        let n = e.conn.read(buf);
        self.touch(id);
        Ok(n)
    }

    /// Closes a connection gracefully (see [`Connection::close`]).
    pub fn close(&mut self, id: ConnId) -> Result<(), UtpError> {
        let e = self.conns.get_mut(&id).ok_or(UtpError::UnknownConnection)?;
        e.conn.close();
        self.touch(id);
        Ok(())
    }

    /// Resets a connection at once: a RESET goes out at the next
    /// [`Endpoint::poll_transmit`] and the connection is forgotten, unread
    /// bytes and all. The engine uses this for a connection whose
    /// BitTorrent handshake names a torrent we do not have, so that
    /// libtorrent fails fast (and tries TCP) instead of waiting for a
    /// timeout.
    pub fn reset(&mut self, id: ConnId) -> Result<(), UtpError> {
        let e = self.conns.get_mut(&id).ok_or(UtpError::UnknownConnection)?;
        e.conn.reset();
        // Drop what was received: nobody will read it.
        let mut sink = [0u8; 4096];
        while e.conn.read(&mut sink) > 0 {}
        self.touch(id);
        Ok(())
    }

    /// A datagram from `from`. Returns false when it is not uTP (the
    /// driver may then hand it to the DHT; [`packet::is_utp`] tells the
    /// same without touching the endpoint).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> bool {
        self.stats.datagrams_in += 1;
        let Ok(p) = packet::decode(datagram) else {
            self.stats.not_utp += 1;
            return false;
        };
        let h = p.header;
        let id = h.connection_id;
        let found = match h.ty {
            // A SYN names the id the peer wants; ours is one more.
            PacketType::Syn => self.by_key.get(&(from, id.wrapping_add(1))).copied(),
            // As libutp: a RESET may carry our recv id or our send id.
            PacketType::Reset => self.by_key.get(&(from, id)).copied().or_else(|| {
                [id.wrapping_add(1), id.wrapping_sub(1)]
                    .into_iter()
                    .find_map(|k| {
                        let c = *self.by_key.get(&(from, k))?;
                        (self.conns.get(&c)?.conn.send_id() == id).then_some(c)
                    })
            }),
            _ => self.by_key.get(&(from, id)).copied(),
        };
        if let Some(c) = found {
            if let Some(e) = self.conns.get_mut(&c) {
                e.conn.handle_packet(now, &p);
            }
            self.touch(c);
            return true;
        }
        match h.ty {
            PacketType::Syn => self.on_syn(now, from, &h),
            PacketType::Reset => self.stats.unknown += 1,
            _ => {
                self.stats.unknown += 1;
                // The packet carries the peer's send id; its recv id is one
                // less if it opened the connection, one more if it accepted
                // it. libtorrent matches a RESET only to its recv id, so
                // send one for each (libutp would also take its send id,
                // but neither takes the wrong neighbour). The numbers are
                // those the peer accepts: ack_nr the packet's (a STATE
                // carries its *next* number), seq_nr right after the last
                // one it received from us (libtorrent drops packets far
                // ahead of its ack_nr).
                let ack_nr = if h.ty == PacketType::State {
                    h.seq_nr.wrapping_sub(1)
                } else {
                    h.seq_nr
                };
                let seq_nr = h.ack_nr.wrapping_add(1);
                self.queue_reset(now, from, id.wrapping_sub(1), seq_nr, ack_nr);
                self.queue_reset(now, from, id.wrapping_add(1), seq_nr, ack_nr);
            }
        }
        true
    }

    fn on_syn(&mut self, now: Instant, from: SocketAddr, syn: &Header) {
        let unconfirmed = || {
            self.conns
                .values()
                .filter(|e| !e.conn.is_outgoing() && !e.conn.is_confirmed())
                .count()
        };
        if !self.listening
            || self.conns.len() >= self.cfg.max_connections
            || unconfirmed() >= self.cfg.max_unconfirmed
        {
            self.stats.refused += 1;
            // The RESET carries the id the peer receives on (the SYN's) and
            // acknowledges the SYN.
            let seq_nr = self.rng.gen();
            self.queue_reset(now, from, syn.connection_id, seq_nr, syn.seq_nr);
            return;
        }
        let seq_nr = self.rng.gen();
        let conn = Connection::accept(&self.cfg, now, self.epoch, syn, seq_nr);
        let recv_id = conn.recv_id();
        let id = self.insert(from, recv_id, conn);
        // Incoming before the connection's own Connected event.
        let at = self
            .events
            .iter()
            .position(|e| matches!(e, Event::Conn { conn, .. } if *conn == id))
            .unwrap_or(self.events.len());
        self.events.insert(
            at,
            Event::Incoming {
                conn: id,
                addr: from,
            },
        );
    }

    fn queue_reset(
        &mut self,
        now: Instant,
        to: SocketAddr,
        connection_id: u16,
        seq_nr: u16,
        ack_nr: u16,
    ) {
        let rate = f64::from(self.cfg.resets_per_second);
        let elapsed = now
            .saturating_duration_since(self.reset_refill)
            .as_secs_f64();
        self.reset_refill = now;
        self.reset_tokens = (self.reset_tokens + elapsed * rate).min(rate);
        if self.reset_tokens < 1.0 || self.resets.len() >= MAX_QUEUED_RESETS {
            self.stats.resets_suppressed += 1;
            return;
        }
        self.reset_tokens -= 1.0;
        let header = Header {
            ty: PacketType::Reset,
            connection_id,
            timestamp_us: now.saturating_duration_since(self.epoch).as_micros() as u32,
            timestamp_diff_us: 0,
            wnd_size: 0,
            seq_nr,
            ack_nr,
        };
        self.resets.push_back((to, header));
    }

    /// Writes the next datagram to send into `out` (cleared first) and
    /// returns its destination, or None when there is nothing to send.
    /// Call until None after every input; `out` is reused, so sending
    /// allocates nothing per packet.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<SocketAddr> {
        out.clear();
        if let Some((to, header)) = self.resets.pop_front() {
            self.stats.resets_sent += 1;
            encode_header(&header, &[], out);
            return Some(to);
        }
        while let Some(id) = self.ready.pop_front() {
            let Some(e) = self.conns.get_mut(&id) else {
                continue;
            };
            if e.conn.poll_transmit(now, out) {
                let addr = e.addr;
                // Round-robin: one packet per connection per turn.
                self.ready.push_back(id);
                // Sending may arm a timer or finish a reset connection.
                self.touch(id);
                return Some(addr);
            }
            e.queued = false;
            self.touch_timers_only(id);
        }
        None
    }

    /// As [`Endpoint::touch`], without queueing for transmission.
    fn touch_timers_only(&mut self, id: ConnId) {
        let Some(e) = self.conns.get_mut(&id) else {
            return;
        };
        let queued = e.queued;
        e.queued = true;
        self.touch(id);
        if let Some(e) = self.conns.get_mut(&id) {
            e.queued = queued;
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Endpoint::on_timeout`] wants to be called (possibly early:
    /// an early call does nothing).
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Runs the timers that are due.
    pub fn on_timeout(&mut self, now: Instant) {
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(e) = self.conns.get_mut(&id) else {
                continue;
            };
            if e.scheduled != Some(t) {
                continue;
            }
            e.scheduled = None;
            if e.conn.next_timeout().is_some_and(|d| d <= now) {
                e.conn.on_timeout(now);
            }
            self.touch(id);
        }
    }
}
