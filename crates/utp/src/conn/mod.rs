//! [`Connection`]: one uTP connection's state machine, without addresses
//! (the [`crate::Endpoint`] maps addresses and connection ids to it).
//!
//! Inputs: decoded packets ([`Connection::handle_packet`]), the
//! application's [`Connection::write`], [`Connection::read`],
//! [`Connection::close`], [`Connection::reset`], and the clock
//! ([`Connection::on_timeout`]). Outputs: datagrams
//! ([`Connection::poll_transmit`], written into the caller's buffer),
//! events ([`Connection::poll_event`]) and the next wake-up
//! ([`Connection::next_timeout`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::ledbat::Ledbat;
use crate::packet::{encode_header, Header, Packet, PacketType, MAX_SACK_LEN};
use crate::rtt::RttEstimator;
use crate::seq;

mod recv;
mod send;

use recv::{DataOutcome, Recv};
use send::Send;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both sides sent a FIN and all data was acknowledged.
    Finished,
    /// The peer sent a RESET.
    ResetByPeer,
    /// The peer answered our SYN with a RESET.
    Refused,
    /// We reset the connection ([`Connection::reset`]).
    ResetLocally,
    /// The SYN got no answer, or a packet was sent
    /// [`Config::max_retransmits`] more times without an ACK, or nothing
    /// came for [`Config::idle_timeout`].
    TimedOut,
}

/// What a connection tells its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// The handshake is done (for an outgoing connection: the SYN was
    /// answered; an accepted connection is connected from the start).
    Connected,
    /// New bytes can be read. Reported once until a read empties the
    /// receive buffer, then again when more bytes arrive.
    Readable,
    /// The send buffer was full and has room again.
    Writable,
    /// The peer finished sending (its FIN and every byte before it
    /// arrived); what is buffered can still be read.
    Eof,
    /// The connection ended. Buffered bytes can still be read after
    /// [`CloseReason::Finished`].
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SynSent,
    Connected,
    Closed(CloseReason),
}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Packets sent (retransmissions and ACKs included).
    pub packets_sent: u64,
    /// Packets received and accepted for this connection.
    pub packets_received: u64,
    /// Packets sent again (fast or after a timeout).
    pub retransmits: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
    /// Payload bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Payload bytes delivered in order to the receive buffer.
    pub bytes_received: u64,
}

/// One uTP connection.
#[derive(Debug)]
pub struct Connection {
    cfg: Config,
    /// Zero of our microsecond timestamps.
    epoch: Instant,
    state: State,
    recv_id: u16,
    send_id: u16,
    we_initiated: bool,
    send: Send,
    recv: Recv,
    cc: Ledbat,
    rtt: RttEstimator,
    /// The peer's advertised window.
    peer_wnd: usize,
    /// Our clock minus the peer's timestamp of its last packet (sent back
    /// as `timestamp_difference`).
    reply_micro: u32,
    /// We owe the peer an ACK.
    ack_pending: bool,
    /// The window we last advertised.
    last_wnd_sent: u32,
    /// Retransmission timer (and zero-window probe timer when nothing is in
    /// flight).
    rto_at: Option<Instant>,
    /// Timeouts in a row without an ACK.
    timeouts: u32,
    /// One packet may go out whatever the peer's window (zero-window
    /// probe).
    probe: bool,
    /// Losses before this sequence number were already answered by halving
    /// the window (once per RTT).
    loss_seq: u16,
    last_recv: Instant,
    last_send: Instant,
    /// The peer sent something after its SYN (or answered ours).
    confirmed: bool,
    close_requested: bool,
    fin_seq: Option<u16>,
    /// When our FIN was acknowledged.
    fin_acked_at: Option<Instant>,
    reset_pending: bool,
    keepalive_pending: bool,
    /// The SYN waits for its first transmission.
    syn_unsent: bool,
    eof_reported: bool,
    /// The application could not write everything: tell it when it can.
    write_blocked: bool,
    readable_reported: bool,
    /// After a graceful close, FINs are still acknowledged until then.
    linger_until: Option<Instant>,
    events: VecDeque<Event>,
    stats: ConnStats,
}

impl Connection {
    fn new(
        cfg: &Config,
        now: Instant,
        epoch: Instant,
        recv_id: u16,
        send_id: u16,
        seq_nr: u16,
        we_initiated: bool,
    ) -> Self {
        let mss = cfg.max_payload.max(1);
        Connection {
            state: State::SynSent,
            recv_id,
            send_id,
            we_initiated,
            send: Send::new(seq_nr, cfg.send_buffer),
            recv: Recv::new(cfg.recv_buffer, mss),
            cc: Ledbat::new(
                mss * 2,
                mss,
                cfg.send_buffer.max(mss),
                cfg.target_delay,
                cfg.cwnd_gain,
                cfg.base_delay_minutes,
            ),
            rtt: RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto),
            // Until the peer tells us, assume it can take one packet.
            peer_wnd: mss,
            reply_micro: 0,
            ack_pending: false,
            last_wnd_sent: 0,
            rto_at: None,
            timeouts: 0,
            probe: false,
            loss_seq: seq_nr,
            last_recv: now,
            last_send: now,
            confirmed: false,
            close_requested: false,
            fin_seq: None,
            fin_acked_at: None,
            reset_pending: false,
            keepalive_pending: false,
            syn_unsent: false,
            eof_reported: false,
            write_blocked: false,
            readable_reported: false,
            linger_until: None,
            events: VecDeque::new(),
            stats: ConnStats::default(),
            epoch,
            cfg: cfg.clone(),
        }
    }

    /// An outgoing connection: the SYN goes out at the next
    /// [`Connection::poll_transmit`]. `recv_id` is the id the peer will
    /// address us with (the SYN carries it; every later packet of ours
    /// carries `recv_id + 1`), `seq_nr` our first sequence number (random,
    /// as libtorrent and libutp choose it). `epoch` is the zero of our
    /// timestamps (the endpoint's, shared by its connections).
    pub fn connect(cfg: &Config, now: Instant, epoch: Instant, recv_id: u16, seq_nr: u16) -> Self {
        let mut c = Connection::new(
            cfg,
            now,
            epoch,
            recv_id,
            recv_id.wrapping_add(1),
            seq_nr,
            true,
        );
        c.send.push(now, PacketType::Syn, 0);
        c.syn_unsent = true;
        c.rto_at = Some(now + c.rtt.rto(0));
        c
    }

    /// An incoming connection from a received SYN: answered with an
    /// `ST_STATE` at the next [`Connection::poll_transmit`]. Our ids are
    /// the SYN's `connection_id` (to send) and that plus one (to receive).
    /// Like libtorrent and libutp, the answer carries our first sequence
    /// number `seq_nr` without consuming it, and acknowledges the SYN's.
    pub fn accept(cfg: &Config, now: Instant, epoch: Instant, syn: &Header, seq_nr: u16) -> Self {
        let send_id = syn.connection_id;
        let mut c = Connection::new(
            cfg,
            now,
            epoch,
            send_id.wrapping_add(1),
            send_id,
            seq_nr,
            false,
        );
        c.state = State::Connected;
        c.recv.ack_nr = syn.seq_nr;
        c.peer_wnd = syn.wnd_size as usize;
        c.note_timestamp(now, syn.timestamp_us);
        c.ack_pending = true;
        c.events.push_back(Event::Connected);
        c
    }

    /// The id peers address this connection with.
    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }

    /// The id we put in our packets (but the SYN).
    pub fn send_id(&self) -> u16 {
        self.send_id
    }

    /// Whether we opened the connection.
    pub fn is_outgoing(&self) -> bool {
        self.we_initiated
    }

    /// Whether the peer has shown it is there: it answered our SYN, or sent
    /// something after its own.
    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// Whether the handshake is done and the connection not closed.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.state {
            State::Closed(r) => Some(r),
            _ => None,
        }
    }

    /// Whether the connection has ended and has nothing more to send or
    /// wait for (its owner may forget it once its bytes are read).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Closed(_)) && !self.reset_pending && self.linger_until.is_none()
    }

    /// Whether the peer finished sending and everything before its FIN
    /// arrived.
    pub fn is_eof(&self) -> bool {
        self.recv.eof_reached
    }

    /// Bytes ready to be read.
    pub fn readable(&self) -> usize {
        self.recv.readable()
    }

    /// Room in the send buffer.
    pub fn writable(&self) -> usize {
        if self.close_requested || matches!(self.state, State::Closed(_)) {
            0
        } else {
            self.send.free()
        }
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> usize {
        self.cc.window()
    }

    /// The peer's advertised receive window in bytes.
    pub fn peer_window(&self) -> usize {
        self.peer_wnd
    }

    /// Payload bytes sent and not yet acknowledged or lost.
    pub fn bytes_in_flight(&self) -> usize {
        self.send.in_flight
    }

    /// Packets sent and not yet acknowledged (SYN and FIN included).
    pub fn unacked_packets(&self) -> usize {
        self.send.sent.len()
    }

    /// Whether our FIN was sent and acknowledged.
    pub fn is_fin_acked(&self) -> bool {
        self.fin_seq.is_some() && self.send.all_acked()
    }

    /// The smoothed round-trip time, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// LEDBAT's current estimate of the queueing delay our packets see.
    pub fn queuing_delay(&self) -> Option<Duration> {
        self.cc.queuing_delay(self.rtt.min_rtt())
    }

    /// The connection's counters.
    pub fn stats(&self) -> ConnStats {
        self.stats
    }

    fn timestamp(&self, now: Instant) -> u32 {
        // Wrapping microseconds since the epoch: only differences count.
        // 0 means "no timestamp" to the peer, so never send it.
        (now.saturating_duration_since(self.epoch).as_micros() as u32).max(1)
    }

    fn note_timestamp(&mut self, now: Instant, their_ts: u32) {
        if their_ts != 0 {
            self.reply_micro = self.timestamp(now).wrapping_sub(their_ts);
        }
    }

    fn close_with(&mut self, reason: CloseReason) {
        if matches!(self.state, State::Closed(_)) {
            return;
        }
        self.state = State::Closed(reason);
        self.rto_at = None;
        // A graceful close still owes the ACK of the peer's FIN.
        if reason != CloseReason::Finished {
            self.ack_pending = false;
        }
        self.keepalive_pending = false;
        self.events.push_back(Event::Closed(reason));
    }

    // ---- application side ----

    /// Copies what fits of `data` into the send buffer and returns how many
    /// bytes it took (0 when full, closing or closed). Before the handshake
    /// is done, bytes wait in the buffer.
    pub fn write(&mut self, data: &[u8]) -> usize {
        if self.close_requested || matches!(self.state, State::Closed(_)) {
            return 0;
        }
        let n = self.send.write(data);
        if n < data.len() {
            self.write_blocked = true;
        }
        n
    }

    /// Moves received bytes into `buf`; 0 when none are ready (see
    /// [`Connection::is_eof`] to tell the end of the stream).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = self.recv.read(buf);
        if self.recv.readable() == 0 {
            self.readable_reported = false;
        }
        // Window update: the peer may have stopped for lack of room; tell it
        // once half the buffer is free again (also when its probe is lost).
        let half = u32::try_from(self.cfg.recv_buffer / 2).unwrap_or(u32::MAX);
        if n > 0
            && self.state == State::Connected
            && self.last_wnd_sent < half
            && self.recv.window() >= half
        {
            self.ack_pending = true;
        }
        n
    }

    /// Ends our side gracefully: a FIN follows the bytes written so far.
    /// Reading goes on until the peer's FIN.
    pub fn close(&mut self) {
        self.close_requested = true;
    }

    /// Ends the connection at once with a RESET (the peer sees an error;
    /// libtorrent falls back to TCP if the connection was new).
    pub fn reset(&mut self) {
        if matches!(self.state, State::Closed(_)) {
            return;
        }
        // Before the peer knows us (SYN unanswered) a RESET means nothing
        // to it, so just stop.
        self.reset_pending = self.state == State::Connected;
        self.close_with(CloseReason::ResetLocally);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- network side ----

    /// A packet from the peer (the endpoint has matched its address and
    /// connection id).
    pub fn handle_packet(&mut self, now: Instant, packet: &Packet<'_>) {
        let h = &packet.header;
        if let State::Closed(_) = self.state {
            // Lingering after a graceful close: the peer did not get our
            // ACK of its FIN.
            if self.linger_until.is_some() && h.ty == PacketType::Fin {
                self.ack_pending = true;
            }
            return;
        }
        let last_sent = self.send.seq_nr.wrapping_sub(1);
        // An ACK of something we never sent: forged or confused; ignore it.
        if h.ty != PacketType::Syn && seq::lt(last_sent, h.ack_nr) && self.state != State::SynSent {
            return;
        }
        match h.ty {
            PacketType::Reset => {
                let reason = if self.state == State::SynSent {
                    CloseReason::Refused
                } else {
                    CloseReason::ResetByPeer
                };
                self.close_with(reason);
                return;
            }
            PacketType::Syn => {
                // Our answer to the SYN was lost: the peer sends it again.
                if !self.we_initiated && h.seq_nr == self.syn_seq() {
                    self.ack_pending = true;
                }
                return;
            }
            _ => {}
        }
        if self.state == State::SynSent {
            // Only an answer to our SYN counts.
            if h.ack_nr != self.send.acked.wrapping_add(1) {
                return;
            }
            self.state = State::Connected;
            // The answer's seq_nr is the peer's first data packet: we have
            // received everything before it.
            self.recv.ack_nr = h.seq_nr.wrapping_sub(1);
            self.events.push_back(Event::Connected);
        }
        // Packets far outside the window are forged or stale.
        if seq::dist(self.recv.ack_nr, h.seq_nr) > 0x4000
            && seq::dist(h.seq_nr, self.recv.ack_nr) > 0x4000
        {
            return;
        }
        self.stats.packets_received += 1;
        self.last_recv = now;
        self.confirmed = true;
        self.timeouts = 0;
        self.note_timestamp(now, h.timestamp_us);
        self.peer_wnd = h.wnd_size as usize;

        let in_flight_before = self.send.in_flight;
        let ack = self
            .send
            .on_ack(now, h.ack_nr, packet.sack, h.ty == PacketType::State);
        if let Some(rtt) = ack.rtt {
            self.rtt.on_sample(rtt);
        }
        // uTorrent sent INT_MAX when it had no sample.
        if h.timestamp_diff_us != 0 && h.timestamp_diff_us != i32::MAX as u32 {
            self.cc.on_delay_sample(now, h.timestamp_diff_us);
        }
        if ack.acked_bytes > 0 {
            self.stats.bytes_acked += ack.acked_bytes as u64;
            // As libtorrent: only a sender that fills its window may grow
            // it (one limited by the application or the peer's window would
            // inflate it without testing the path).
            let saturated = in_flight_before + self.cfg.max_payload > self.cc.window();
            self.cc.on_ack(
                ack.acked_bytes,
                in_flight_before,
                saturated,
                self.queuing_delay(),
            );
        }
        if let Some(lost) = ack.lost {
            if seq::le(self.loss_seq, lost) {
                self.cc.on_loss();
                self.loss_seq = self.send.seq_nr;
            }
        }
        if ack.acked_packets > 0 || ack.advanced {
            self.rto_at = if self.send.sent.is_empty() {
                None
            } else {
                Some(now + self.rtt.rto(0))
            };
            if self.write_blocked && self.send.free() > 0 && !self.close_requested {
                self.write_blocked = false;
                self.events.push_back(Event::Writable);
            }
        }
        if self.peer_wnd >= self.cfg.max_payload.min(self.send.unsent().max(1)) {
            self.probe = false;
        }

        match h.ty {
            PacketType::Data => {
                self.ack_pending = true;
                if let DataOutcome::Delivered(n) = self.recv.on_data(h.seq_nr, packet.payload) {
                    self.stats.bytes_received += n as u64;
                    if !self.readable_reported {
                        self.readable_reported = true;
                        self.events.push_back(Event::Readable);
                    }
                }
            }
            PacketType::Fin => {
                self.ack_pending = true;
                self.recv.on_fin(h.seq_nr);
            }
            _ => {}
        }
        if self.recv.eof_reached && !self.eof_reported {
            self.eof_reported = true;
            self.events.push_back(Event::Eof);
        }
        self.check_finished(now);
    }

    /// The sequence number of the peer's SYN, for an accepted connection
    /// whose first data packet has not come yet.
    fn syn_seq(&self) -> u16 {
        self.recv.ack_nr
    }

    fn check_finished(&mut self, now: Instant) {
        let fin_acked = self.fin_seq.is_some() && self.send.all_acked();
        if fin_acked && self.fin_acked_at.is_none() {
            self.fin_acked_at = Some(now);
        }
        if fin_acked && self.recv.eof_reached && self.state == State::Connected {
            // Linger a little to acknowledge the peer's FIN again if our
            // ACK is lost (a RESET would spoil its graceful close).
            self.linger_until = Some(now + self.rtt.rto(0) * 2);
            self.close_with(CloseReason::Finished);
        }
    }

    /// Writes the next datagram to send into `out` (cleared first) and
    /// returns true, or returns false when there is nothing to send. Call
    /// until false after every input.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        out.clear();
        match self.state {
            State::Closed(_) => {
                if self.reset_pending {
                    self.reset_pending = false;
                    self.write_packet(
                        now,
                        PacketType::Reset,
                        self.send.seq_nr,
                        self.recv.ack_nr,
                        out,
                    );
                    return true;
                }
                if self.ack_pending && self.linger_until.is_some() {
                    self.ack_pending = false;
                    self.write_ack(now, out);
                    return true;
                }
                false
            }
            State::SynSent => {
                let seq_nr = if self.syn_unsent {
                    self.syn_unsent = false;
                    self.send.acked.wrapping_add(1)
                } else if let Some((seq_nr, ..)) = self.send.next_resend(now, usize::MAX) {
                    self.stats.retransmits += 1;
                    seq_nr
                } else {
                    return false;
                };
                self.write_packet(now, PacketType::Syn, seq_nr, 0, out);
                true
            }
            State::Connected => self.transmit_connected(now, out),
        }
    }

    fn transmit_connected(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        let window = self.cc.window().min(self.peer_wnd);
        // Lost packets first.
        if let Some((seq_nr, ty, off, len)) = self.send.next_resend(now, window) {
            self.stats.retransmits += 1;
            self.write_data(now, ty, seq_nr, off, len, out);
            return true;
        }
        // New data.
        let unsent = self.send.unsent();
        if unsent > 0 && !self.send.has_resend() {
            let len = unsent.min(self.cfg.max_payload.max(1));
            let in_flight = self.send.in_flight;
            // The congestion window always lets one packet go; the peer's
            // window only through a zero-window probe.
            let fits_cwnd = in_flight == 0 || in_flight + len <= self.cc.window();
            let fits_peer = in_flight + len <= self.peer_wnd || self.probe;
            if fits_cwnd && fits_peer {
                self.probe = false;
                let off = self.send.next_off;
                let seq_nr = self.send.push(now, PacketType::Data, len);
                self.write_data(now, PacketType::Data, seq_nr, off, len, out);
                if self.rto_at.is_none() {
                    self.rto_at = Some(now + self.rtt.rto(self.timeouts));
                }
                return true;
            }
            if !fits_peer && in_flight == 0 && self.rto_at.is_none() {
                // The peer's window is closed and nothing is in flight to
                // bring news of it: probe later.
                self.rto_at = Some(now + self.rtt.rto(self.timeouts));
            }
        }
        // FIN after the last byte.
        if self.close_requested && self.fin_seq.is_none() && unsent == 0 {
            let seq_nr = self.send.push(now, PacketType::Fin, 0);
            self.fin_seq = Some(seq_nr);
            self.write_packet(now, PacketType::Fin, seq_nr, self.recv.ack_nr, out);
            if self.rto_at.is_none() {
                self.rto_at = Some(now + self.rtt.rto(self.timeouts));
            }
            return true;
        }
        if self.ack_pending {
            self.write_ack(now, out);
            return true;
        }
        if self.keepalive_pending {
            self.keepalive_pending = false;
            // As libutp: an ACK of the packet before the last one, which
            // the peer ignores as old news but which keeps NAT mappings
            // alive.
            self.write_packet(
                now,
                PacketType::State,
                self.send.seq_nr,
                self.recv.ack_nr.wrapping_sub(1),
                out,
            );
            return true;
        }
        false
    }

    fn write_data(
        &mut self,
        now: Instant,
        ty: PacketType,
        seq_nr: u16,
        off: u64,
        len: usize,
        out: &mut Vec<u8>,
    ) {
        self.write_packet(now, ty, seq_nr, self.recv.ack_nr, out);
        if ty == PacketType::Data {
            self.send.copy_payload(off, len, out);
        }
    }

    /// A bare acknowledgement (`ST_STATE` with our next sequence number and
    /// what we have received).
    fn write_ack(&mut self, now: Instant, out: &mut Vec<u8>) {
        self.write_packet(
            now,
            PacketType::State,
            self.send.seq_nr,
            self.recv.ack_nr,
            out,
        );
    }

    fn write_packet(
        &mut self,
        now: Instant,
        ty: PacketType,
        seq_nr: u16,
        ack_nr: u16,
        out: &mut Vec<u8>,
    ) {
        let wnd = if ty == PacketType::Reset {
            0
        } else {
            self.recv.window()
        };
        let header = Header {
            ty,
            // A SYN names the id we want to be addressed with; every
            // other packet the id the peer receives on.
            connection_id: if ty == PacketType::Syn {
                self.recv_id
            } else {
                self.send_id
            },
            timestamp_us: self.timestamp(now),
            timestamp_diff_us: self.reply_micro,
            wnd_size: wnd,
            seq_nr,
            ack_nr,
        };
        let mut sack = [0u8; MAX_SACK_LEN];
        // The bitmask is relative to what we have received: a packet that
        // acknowledges less (the keepalive) must not carry it, or the peer
        // reads every bit one packet too low and believes we hold a packet
        // we are missing.
        let sack_len =
            if matches!(ty, PacketType::Syn | PacketType::Reset) || ack_nr != self.recv.ack_nr {
                0
            } else {
                self.recv.write_sack(&mut sack)
            };
        encode_header(&header, sack.get(..sack_len).unwrap_or(&[]), out);
        if ty != PacketType::Syn && ty != PacketType::Reset {
            self.ack_pending = false;
            self.last_wnd_sent = wnd;
        }
        self.last_send = now;
        self.stats.packets_sent += 1;
    }

    /// When [`Connection::on_timeout`] wants to be called, if ever.
    pub fn next_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed(_) => self.linger_until,
            State::SynSent => self.rto_at,
            State::Connected => {
                let idle = if self.confirmed {
                    self.cfg.idle_timeout
                } else {
                    self.cfg.unconfirmed_timeout
                };
                let mut t = self.last_recv + idle;
                if let Some(r) = self.rto_at {
                    t = t.min(r);
                }
                if !self.keepalive_pending {
                    t = t.min(self.last_send + self.cfg.keepalive);
                }
                if let Some(f) = self.fin_wait_deadline() {
                    t = t.min(f);
                }
                Some(t)
            }
        }
    }

    /// When we stop waiting for the peer's FIN: [`Config::fin_wait`] after
    /// our FIN was acknowledged or the peer's last packet, whichever is
    /// later.
    fn fin_wait_deadline(&self) -> Option<Instant> {
        let acked = self.fin_acked_at?;
        (!self.recv.eof_reached).then(|| acked.max(self.last_recv) + self.cfg.fin_wait)
    }

    /// Runs the timers that are due.
    pub fn on_timeout(&mut self, now: Instant) {
        if let State::Closed(_) = self.state {
            if self.linger_until.is_some_and(|t| t <= now) {
                self.linger_until = None;
            }
            return;
        }
        if self.rto_at.is_some_and(|t| t <= now) {
            self.rto_at = None;
            self.on_rto(now);
            if matches!(self.state, State::Closed(_)) {
                return;
            }
        }
        if self.state == State::Connected {
            let idle = if self.confirmed {
                self.cfg.idle_timeout
            } else {
                self.cfg.unconfirmed_timeout
            };
            if now.saturating_duration_since(self.last_recv) >= idle {
                self.close_with(CloseReason::TimedOut);
                return;
            }
            if self.fin_wait_deadline().is_some_and(|t| t <= now) {
                // Our side is done and the peer went quiet without its FIN.
                self.close_with(CloseReason::Finished);
                self.ack_pending = false;
                return;
            }
            if now.saturating_duration_since(self.last_send) >= self.cfg.keepalive {
                self.keepalive_pending = true;
            }
        }
    }

    fn on_rto(&mut self, now: Instant) {
        if self.send.sent.is_empty() {
            // Zero-window probe: nothing in flight, the peer's window
            // closed. Send one packet whatever the window says; its ACK
            // brings the current window.
            if self.send.unsent() > 0 {
                self.probe = true;
            }
            return;
        }
        self.timeouts += 1;
        self.stats.timeouts += 1;
        let limit = if self.state == State::SynSent {
            self.cfg.syn_retransmits
        } else {
            self.cfg.max_retransmits
        };
        if self.timeouts > limit {
            self.close_with(CloseReason::TimedOut);
            return;
        }
        if self.send.on_timeout() {
            self.cc.on_timeout();
        }
        // Losses found by ACKs of what was sent before the timeout must not
        // halve the window again.
        self.loss_seq = self.send.seq_nr;
        self.rto_at = Some(now + self.rtt.rto(self.timeouts));
    }
}
