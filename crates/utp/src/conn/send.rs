//! The sending half of a connection: the byte buffer the application
//! writes into, the packets in flight (each a range of that buffer, so a
//! retransmission copies from it and nothing is allocated per packet),
//! cumulative and selective ACKs, and loss detection.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::packet::PacketType;
use crate::seq;

/// Duplicate ACKs (or packets selectively acknowledged past a hole) that
/// mark a packet lost (BEP 29, as TCP).
pub(crate) const DUP_ACK_LIMIT: u32 = 3;

/// One packet sent and not yet acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub seq: u16,
    pub ty: PacketType,
    /// Stream offset of its payload.
    pub off: u64,
    pub len: usize,
    pub sent_at: Instant,
    pub transmissions: u32,
    /// Acknowledged by a selective ACK (bytes may not be freed before the
    /// cumulative ACK reaches it).
    pub sacked: bool,
    /// Declared lost, waiting to be sent again.
    pub need_resend: bool,
    /// Selectively acknowledged once, then sent again after a timeout
    /// because the cumulative ACK never reached it (its bytes were already
    /// counted as acknowledged).
    pub sack_reneged: bool,
}

/// What an ACK did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AckOutcome {
    /// Payload bytes newly acknowledged.
    pub acked_bytes: usize,
    /// Packets newly acknowledged (cumulatively or selectively).
    pub acked_packets: usize,
    /// Lowest RTT among packets acknowledged after one transmission.
    pub rtt: Option<Duration>,
    /// The lowest sequence number declared lost by this ACK.
    pub lost: Option<u16>,
    /// The cumulative ACK moved.
    pub advanced: bool,
}

/// The sending half.
#[derive(Debug)]
pub(crate) struct Send {
    /// Sequence number of the next packet.
    pub seq_nr: u16,
    /// Every packet up to this one is acknowledged.
    pub acked: u16,
    /// Packets `acked + 1 ..= seq_nr - 1`, in order.
    pub sent: VecDeque<Sent>,
    /// Bytes from stream offset `buf_off`: acknowledged ones are dropped
    /// from the front, written ones appended at the back.
    buf: VecDeque<u8>,
    buf_off: u64,
    /// Stream offset of the first byte not yet in a packet.
    pub next_off: u64,
    capacity: usize,
    /// Payload bytes in flight: sent, neither acknowledged nor lost.
    pub in_flight: usize,
    /// Packets declared lost, in the order to send them again.
    resend: VecDeque<u16>,
    /// Packets before this one were already resent because of duplicate or
    /// selective ACKs; only a timeout sends them again.
    fast_resend_seq: u16,
    dup_acks: u32,
}

impl Send {
    pub fn new(seq_nr: u16, capacity: usize) -> Self {
        Send {
            seq_nr,
            acked: seq_nr.wrapping_sub(1),
            sent: VecDeque::new(),
            buf: VecDeque::new(),
            buf_off: 0,
            next_off: 0,
            capacity,
            in_flight: 0,
            resend: VecDeque::new(),
            fast_resend_seq: seq_nr,
            dup_acks: 0,
        }
    }

    /// Free room in the send buffer.
    pub fn free(&self) -> usize {
        self.capacity.saturating_sub(self.buf.len())
    }

    /// Takes what fits of `data`.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if let Some(part) = data.get(..n) {
            self.buf.extend(part);
        }
        n
    }

    /// Bytes written and not yet put in a packet.
    pub fn unsent(&self) -> usize {
        let end = self.buf_off + self.buf.len() as u64;
        usize::try_from(end - self.next_off).unwrap_or(usize::MAX)
    }

    /// Whether a lost packet waits to be sent again.
    pub fn has_resend(&self) -> bool {
        !self.resend.is_empty()
    }

    fn index(&self, seq_nr: u16) -> Option<usize> {
        let i = usize::from(seq::dist(self.acked.wrapping_add(1), seq_nr));
        (i < self.sent.len()).then_some(i)
    }

    /// Records a new packet of `len` payload bytes (taken from the unsent
    /// bytes, or none for SYN and FIN) and returns its sequence number.
    pub fn push(&mut self, now: Instant, ty: PacketType, len: usize) -> u16 {
        let seq_nr = self.seq_nr;
        self.sent.push_back(Sent {
            seq: seq_nr,
            ty,
            off: self.next_off,
            len,
            sent_at: now,
            transmissions: 1,
            sacked: false,
            need_resend: false,
            sack_reneged: false,
        });
        self.next_off += len as u64;
        self.in_flight += len;
        self.seq_nr = self.seq_nr.wrapping_add(1);
        seq_nr
    }

    /// Appends the payload of the packet starting at stream offset `off` to
    /// `out`.
    pub fn copy_payload(&self, off: u64, len: usize, out: &mut Vec<u8>) {
        let start = usize::try_from(off.saturating_sub(self.buf_off)).unwrap_or(usize::MAX);
        let (a, b) = self.buf.as_slices();
        let end = start.saturating_add(len);
        if start < a.len() {
            out.extend_from_slice(a.get(start..end.min(a.len())).unwrap_or(&[]));
        }
        if end > a.len() {
            let bs = start.saturating_sub(a.len());
            out.extend_from_slice(b.get(bs..end - a.len()).unwrap_or(&[]));
        }
    }

    /// The next lost packet to send again, if the window allows (`window`
    /// bytes in flight at most; one packet always goes when nothing is in
    /// flight). Marks it sent.
    pub fn next_resend(
        &mut self,
        now: Instant,
        window: usize,
    ) -> Option<(u16, PacketType, u64, usize)> {
        while let Some(&s) = self.resend.front() {
            let Some(i) = self.index(s) else {
                self.resend.pop_front();
                continue;
            };
            let in_flight = self.in_flight;
            let Some(p) = self.sent.get_mut(i) else {
                self.resend.pop_front();
                continue;
            };
            if !p.need_resend || p.sacked {
                self.resend.pop_front();
                continue;
            }
            if in_flight > 0 && in_flight + p.len > window {
                return None;
            }
            p.need_resend = false;
            p.transmissions += 1;
            p.sent_at = now;
            let out = (p.seq, p.ty, p.off, p.len);
            self.in_flight += p.len;
            self.resend.pop_front();
            return Some(out);
        }
        None
    }

    fn mark_lost(&mut self, i: usize) -> bool {
        let Some(p) = self.sent.get_mut(i) else {
            return false;
        };
        if p.sacked || p.need_resend {
            return false;
        }
        p.need_resend = true;
        self.in_flight -= p.len;
        let s = p.seq;
        self.resend.push_back(s);
        true
    }

    fn ack_one(p: &mut Sent, now: Instant, out: &mut AckOutcome) {
        out.acked_packets += 1;
        out.acked_bytes += p.len;
        if p.transmissions == 1 {
            let rtt = now.saturating_duration_since(p.sent_at);
            out.rtt = Some(out.rtt.map_or(rtt, |r| r.min(rtt)));
        }
    }

    /// Processes an ACK: `ack_nr`, the selective ACK bitmask, and whether
    /// the packet was a bare `ST_STATE` (only those count as duplicate
    /// ACKs: data packets repeat the ACK whatever happened to ours).
    pub fn on_ack(
        &mut self,
        now: Instant,
        ack_nr: u16,
        sack: Option<&[u8]>,
        is_state: bool,
    ) -> AckOutcome {
        let mut out = AckOutcome::default();
        let last_sent = self.seq_nr.wrapping_sub(1);
        if seq::lt(self.acked, ack_nr) && seq::le(ack_nr, last_sent) {
            while self.sent.front().is_some_and(|p| seq::le(p.seq, ack_nr)) {
                if let Some(mut p) = self.sent.pop_front() {
                    if !p.sacked {
                        if !p.need_resend {
                            self.in_flight -= p.len;
                        }
                        if !p.sack_reneged {
                            Self::ack_one(&mut p, now, &mut out);
                        }
                    }
                }
            }
            self.acked = ack_nr;
            out.advanced = true;
            self.dup_acks = 0;
            if seq::lt(self.fast_resend_seq, ack_nr.wrapping_add(1)) {
                self.fast_resend_seq = ack_nr.wrapping_add(1);
            }
            // Free the bytes no packet in flight needs.
            let keep_from = self.sent.front().map_or(self.next_off, |p| p.off);
            let drop = usize::try_from(keep_from.saturating_sub(self.buf_off))
                .unwrap_or(0)
                .min(self.buf.len());
            self.buf.drain(..drop);
            self.buf_off += drop as u64;
        } else if ack_nr == self.acked && is_state && !self.sent.is_empty() {
            self.dup_acks += 1;
        }

        if let Some(mask) = sack {
            self.on_sack(now, ack_nr, mask, &mut out);
        }

        // Three duplicate ACKs: the packet after the ACK is lost.
        if self.dup_acks >= DUP_ACK_LIMIT && self.fast_resend_seq == self.acked.wrapping_add(1) {
            self.fast_resend_seq = self.fast_resend_seq.wrapping_add(1);
            if self.mark_lost(0) {
                out.lost = Some(self.acked.wrapping_add(1));
            }
        }
        out
    }

    fn on_sack(&mut self, now: Instant, ack_nr: u16, mask: &[u8], out: &mut AckOutcome) {
        // Only a SACK relative to our cumulative ACK point tells us which
        // packets are still missing.
        if ack_nr != self.acked {
            return;
        }
        let base = ack_nr.wrapping_add(2);
        let mut highest_sacked = None;
        for (byte_i, &byte) in mask.iter().enumerate() {
            if byte == 0 {
                continue;
            }
            for bit in 0..8 {
                if byte & (1 << bit) == 0 {
                    continue;
                }
                let s = base.wrapping_add((byte_i * 8 + bit) as u16);
                let Some(i) = self.index(s) else { continue };
                highest_sacked = Some(i);
                if let Some(p) = self.sent.get_mut(i) {
                    if !p.sacked {
                        p.sacked = true;
                        if !p.need_resend {
                            self.in_flight -= p.len;
                        }
                        if !p.sack_reneged {
                            Self::ack_one(p, now, out);
                        }
                    }
                }
            }
        }
        let Some(highest) = highest_sacked else {
            return;
        };
        // A packet with DUP_ACK_LIMIT packets acknowledged after it is
        // lost (each counts as a duplicate ACK), once per fast resend.
        let mut after = 0;
        let mut lost = None;
        for i in (0..highest).rev() {
            let Some(p) = self.sent.get(i) else { continue };
            let (s, sacked) = (p.seq, p.sacked);
            if sacked {
                after += 1;
                continue;
            }
            // Counts the packet at `highest` too.
            if after + 1 >= DUP_ACK_LIMIT && seq::le(self.fast_resend_seq, s) && self.mark_lost(i) {
                lost = Some(s);
            }
        }
        if let Some(s) = lost {
            // `lost` is the lowest marked (the loop runs downwards).
            out.lost = Some(s);
            let beyond = self.sent.get(highest).map_or(s, |p| p.seq).wrapping_add(1);
            if seq::lt(self.fast_resend_seq, beyond) {
                self.fast_resend_seq = beyond;
            }
        }
    }

    /// The retransmission timer fired: every packet in flight is lost.
    /// Returns whether anything was in flight.
    pub fn on_timeout(&mut self) -> bool {
        let had = self.in_flight > 0 || self.sent.iter().any(|p| p.len == 0 && !p.sacked);
        self.resend.clear();
        // The packet at the left edge goes again even if a selective ACK
        // claimed it (RFC 2018: the receiver may have dropped it, or the
        // claim was wrong); otherwise one false claim stalls the stream
        // for good, the timer firing with nothing to send.
        if let Some(p) = self.sent.front_mut() {
            if p.sacked {
                p.sacked = false;
                p.sack_reneged = true;
                // Not in flight: the loop below queues it.
                p.need_resend = true;
            }
        }
        for p in self.sent.iter_mut() {
            if p.sacked {
                continue;
            }
            if !p.need_resend {
                self.in_flight -= p.len;
            }
            p.need_resend = true;
            self.resend.push_back(p.seq);
        }
        self.fast_resend_seq = self.seq_nr;
        self.dup_acks = 0;
        had
    }

    /// Whether every packet (the FIN included) is acknowledged.
    pub fn all_acked(&self) -> bool {
        self.sent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_selective_and_fast_resend() {
        let t = Instant::now();
        let mut s = Send::new(10, 100_000);
        assert_eq!(s.write(&[7u8; 10_000]), 10_000);
        for _ in 0..8 {
            s.push(t, PacketType::Data, 1000);
        }
        assert_eq!(s.in_flight, 8000);
        // Cumulative ACK of 10 and 11.
        let o = s.on_ack(t, 11, None, true);
        assert_eq!((o.acked_bytes, o.advanced), (2000, true));
        assert_eq!(s.in_flight, 6000);
        // 12 lost; 13, 14, 15 arrive: SACK bits 0, 1, 2 (ack_nr + 2 = 13).
        let o = s.on_ack(t, 11, Some(&[0b111, 0, 0, 0]), true);
        assert_eq!(o.acked_bytes, 3000);
        assert_eq!(o.lost, Some(12));
        assert_eq!(s.in_flight, 2000);
        let r = s.next_resend(t, 10_000);
        assert_eq!(r.map(|r| r.0), Some(12));
        assert_eq!(s.in_flight, 3000);
        // The same SACK again does not resend 12 again.
        let o = s.on_ack(t, 11, Some(&[0b111, 0, 0, 0]), true);
        assert_eq!((o.acked_bytes, o.lost), (0, None));
        // The resent 12 arrives: cumulative ACK to 15.
        let o = s.on_ack(t, 15, None, true);
        assert_eq!(o.acked_bytes, 1000);
        assert_eq!(s.in_flight, 2000);
        let mut out = Vec::new();
        s.copy_payload(6000, 1000, &mut out);
        assert_eq!(out, vec![7u8; 1000]);
        // Three duplicate ACKs of 15: 16 is lost.
        for _ in 0..2 {
            assert_eq!(s.on_ack(t, 15, None, true).lost, None);
        }
        assert_eq!(s.on_ack(t, 15, None, true).lost, Some(16));
        assert!(s.on_timeout());
        assert_eq!(s.in_flight, 0);
        assert_eq!(s.next_resend(t, 0).map(|r| r.0), Some(16));
        assert_eq!(s.next_resend(t, 1000).map(|r| r.0), None);
        assert_eq!(s.next_resend(t, 2000).map(|r| r.0), Some(17));
    }
}
