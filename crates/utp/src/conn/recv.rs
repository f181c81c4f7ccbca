//! The receiving half of a connection: the in-order byte buffer the
//! application reads, the reorder buffer for packets that came early, the
//! advertised window, the selective ACK, and the peer's FIN.

use std::collections::VecDeque;

use crate::packet::MAX_SACK_LEN;
use crate::seq;

/// Most payload vectors kept for reuse.
const MAX_POOL: usize = 256;

/// What became of a data packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataOutcome {
    /// Delivered in order, with these many bytes (including packets from
    /// the reorder buffer it unlocked).
    Delivered(usize),
    /// Kept in the reorder buffer.
    Buffered,
    /// Already had it, or it is past the FIN.
    Duplicate,
    /// No room (the sender ignored our window) or too far ahead.
    Dropped,
}

/// The receiving half.
#[derive(Debug)]
pub(crate) struct Recv {
    /// Last sequence number received in order.
    pub ack_nr: u16,
    /// In-order bytes the application has not read.
    buf: VecDeque<u8>,
    /// Slot `i` holds the payload of `ack_nr + 1 + i` if it came early.
    /// Slot 0 is always empty (else it would have been delivered).
    reorder: VecDeque<Option<Vec<u8>>>,
    reorder_bytes: usize,
    /// Payload vectors to reuse, so that a lossy transfer does not allocate
    /// per packet.
    pool: Vec<Vec<u8>>,
    /// Largest vector kept in the pool.
    pool_item_cap: usize,
    capacity: usize,
    /// Most packets the reorder buffer spans.
    max_reorder: usize,
    /// The sequence number of the peer's FIN, once seen.
    pub eof_seq: Option<u16>,
    /// Everything up to the FIN has been received.
    pub eof_reached: bool,
}

impl Recv {
    pub fn new(capacity: usize, max_payload: usize) -> Self {
        Recv {
            ack_nr: 0,
            buf: VecDeque::new(),
            reorder: VecDeque::new(),
            reorder_bytes: 0,
            pool: Vec::new(),
            pool_item_cap: max_payload.max(1500) * 2,
            capacity,
            // As libtorrent: what the buffer holds in (small) packets, at
            // least 16, and never near half the sequence space.
            max_reorder: (capacity / max_payload.clamp(1, 1100)).clamp(16, 0x4000),
            eof_seq: None,
            eof_reached: false,
        }
    }

    /// Free bytes: the window we advertise.
    pub fn window(&self) -> u32 {
        let used = self.buf.len() + self.reorder_bytes;
        u32::try_from(self.capacity.saturating_sub(used)).unwrap_or(u32::MAX)
    }

    /// Bytes ready for [`Recv::read`].
    pub fn readable(&self) -> usize {
        self.buf.len()
    }

    /// Moves in-order bytes into `out`.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.buf.len());
        let (a, b) = self.buf.as_slices();
        let from_a = n.min(a.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..from_a), a.get(..from_a)) {
            dst.copy_from_slice(src);
        }
        if let (Some(dst), Some(src)) = (out.get_mut(from_a..n), b.get(..n - from_a)) {
            dst.copy_from_slice(src);
        }
        self.buf.drain(..n);
        n
    }

    /// A data packet.
    pub fn on_data(&mut self, seq_nr: u16, payload: &[u8]) -> DataOutcome {
        if self.eof_reached || self.eof_seq.is_some_and(|eof| !seq::lt(seq_nr, eof)) {
            return DataOutcome::Duplicate;
        }
        let d = usize::from(seq::dist(self.ack_nr, seq_nr));
        if d == 0 || d >= 0x8000 {
            return DataOutcome::Duplicate;
        }
        if d > self.max_reorder {
            return DataOutcome::Dropped;
        }
        let idx = d - 1;
        if matches!(self.reorder.get(idx), Some(Some(_))) {
            return DataOutcome::Duplicate;
        }
        if payload.len() > self.window() as usize {
            return DataOutcome::Dropped;
        }
        if idx > 0 {
            while self.reorder.len() <= idx {
                self.reorder.push_back(None);
            }
            let mut v = self.pool.pop().unwrap_or_default();
            v.clear();
            v.extend_from_slice(payload);
            self.reorder_bytes += v.len();
            if let Some(slot) = self.reorder.get_mut(idx) {
                *slot = Some(v);
            }
            return DataOutcome::Buffered;
        }
        self.buf.extend(payload);
        let mut delivered = payload.len();
        self.advance();
        // Deliver what the reorder buffer holds next in line.
        while let Some(Some(_)) = self.reorder.front() {
            if let Some(Some(v)) = self.reorder.pop_front() {
                self.buf.extend(v.iter());
                delivered += v.len();
                self.reorder_bytes -= v.len();
                self.recycle(v);
            }
            self.ack_nr = self.ack_nr.wrapping_add(1);
        }
        self.check_eof();
        DataOutcome::Delivered(delivered)
    }

    /// `ack_nr` moves on by the packet in slot 0.
    fn advance(&mut self) {
        self.ack_nr = self.ack_nr.wrapping_add(1);
        if let Some(Some(v)) = self.reorder.pop_front() {
            // Cannot happen (slot 0 is delivered directly), but keep the
            // accounting right if it did.
            self.reorder_bytes -= v.len();
        }
    }

    fn recycle(&mut self, v: Vec<u8>) {
        // Keep only vectors of ordinary packet size, and not too many: a
        // peer choosing odd sizes must not make the pool outgrow the
        // receive buffer.
        if self.pool.len() < self.max_reorder.min(MAX_POOL) && v.capacity() <= self.pool_item_cap {
            self.pool.push(v);
        }
    }

    /// The peer's FIN with its sequence number.
    pub fn on_fin(&mut self, seq_nr: u16) {
        if self.eof_seq.is_none() {
            // A FIN at or before what we have already acknowledged is
            // bogus: ignore it.
            if !seq::lt(self.ack_nr, seq_nr)
                || seq::dist(self.ack_nr, seq_nr) as usize > self.max_reorder + 1
            {
                return;
            }
            self.eof_seq = Some(seq_nr);
            // Nothing past the FIN can count.
            let keep = usize::from(seq::dist(self.ack_nr, seq_nr)).saturating_sub(1);
            while self.reorder.len() > keep {
                if let Some(Some(v)) = self.reorder.pop_back() {
                    self.reorder_bytes -= v.len();
                    self.recycle(v);
                }
            }
        }
        self.check_eof();
    }

    fn check_eof(&mut self) {
        if let Some(eof) = self.eof_seq {
            if !self.eof_reached && self.ack_nr.wrapping_add(1) == eof {
                self.ack_nr = eof;
                self.eof_reached = true;
                self.reorder.clear();
            }
        }
    }

    /// Writes the selective-ACK bitmask into `out` and returns its length
    /// (a multiple of 4, as BEP 29 asks), or 0 when nothing came early. Bit
    /// `i` stands for `ack_nr + 2 + i`, i.e. slot `i + 1`.
    pub fn write_sack(&self, out: &mut [u8; MAX_SACK_LEN]) -> usize {
        let Some(last) = self.reorder.iter().rposition(Option::is_some) else {
            return 0;
        };
        let bits = last; // slots 1..=last
        let len = bits.div_ceil(32).clamp(1, MAX_SACK_LEN / 4) * 4;
        out.fill(0);
        for (i, slot) in self.reorder.iter().skip(1).take(len * 8).enumerate() {
            if slot.is_some() {
                if let Some(byte) = out.get_mut(i / 8) {
                    *byte |= 1 << (i % 8);
                }
            }
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorders_and_sacks() {
        let mut r = Recv::new(10_000, 1000);
        r.ack_nr = 100;
        assert_eq!(r.on_data(103, b"ccc"), DataOutcome::Buffered);
        assert_eq!(r.on_data(105, b"e"), DataOutcome::Buffered);
        assert_eq!(r.on_data(103, b"ccc"), DataOutcome::Duplicate);
        let mut sack = [0u8; MAX_SACK_LEN];
        assert_eq!(r.write_sack(&mut sack), 4);
        // ack_nr + 2 = 102 is bit 0: 103 is bit 1, 105 bit 3.
        assert_eq!(sack[..4], [0b1010, 0, 0, 0]);
        assert_eq!(r.window(), 10_000 - 4);
        assert_eq!(r.on_data(101, b"a"), DataOutcome::Delivered(1));
        assert_eq!(r.on_data(102, b"bb"), DataOutcome::Delivered(5));
        assert_eq!(r.ack_nr, 103);
        assert_eq!(r.on_data(101, b"a"), DataOutcome::Duplicate);
        r.on_fin(106);
        assert!(!r.eof_reached);
        assert_eq!(r.on_data(104, b"d"), DataOutcome::Delivered(2));
        assert!(r.eof_reached);
        assert_eq!(r.ack_nr, 106);
        let mut out = [0u8; 16];
        assert_eq!(r.read(&mut out), 8);
        assert_eq!(&out[..8], b"abbcccde");
    }

    #[test]
    fn window_bounds_buffering() {
        let mut r = Recv::new(4, 1000);
        assert_eq!(r.on_data(1, b"abc"), DataOutcome::Delivered(3));
        assert_eq!(r.on_data(2, b"de"), DataOutcome::Dropped);
        assert_eq!(r.window(), 1);
        let mut out = [0u8; 2];
        assert_eq!(r.read(&mut out), 2);
        assert_eq!(r.on_data(2, b"de"), DataOutcome::Delivered(2));
        // Too far ahead for the reorder buffer.
        assert_eq!(r.on_data(2 + 100, b""), DataOutcome::Dropped);
    }
}
