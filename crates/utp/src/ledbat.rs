//! LEDBAT congestion control as BEP 29 describes it (and RFC 6817): the
//! sender measures the one-way delay of its packets (the receiver's
//! `timestamp_difference` in each ACK), takes the lowest one of the last
//! minutes as the base delay (the path without queues), and steers the
//! congestion window so that the queueing delay it adds stays near a
//! target (100 ms):
//!
//! ```text
//! off_target   = (target - queuing_delay) / target      (at most 1)
//! cwnd        += gain * off_target * acked_bytes / bytes_in_flight
//! ```
//!
//! so the window grows by at most `gain` bytes per RTT below the target and
//! shrinks above it. Like libtorrent, the window starts in slow start
//! (growing by the bytes acked) until the delay first reaches the target,
//! never drops below one packet, is halved on loss (once per RTT; the
//! connection decides) and falls to one packet on a timeout.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Whether `a` is below `b` on the wrapping 32-bit microsecond clock.
fn lt32(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// Minimum of delay samples over a sliding history of one-minute buckets:
/// the base delay. Samples carry an unknown clock offset, so only
/// differences between them mean anything.
#[derive(Debug, Clone)]
pub struct DelayHistory {
    /// Per-minute minimums, oldest first; the last is the current minute.
    buckets: VecDeque<u32>,
    bucket_start: Option<Instant>,
    len: usize,
}

impl DelayHistory {
    /// A history of `minutes` one-minute buckets (at least 1).
    pub fn new(minutes: usize) -> Self {
        DelayHistory {
            buckets: VecDeque::new(),
            bucket_start: None,
            len: minutes.max(1),
        }
    }

    /// Adds a sample.
    pub fn add(&mut self, now: Instant, sample: u32) {
        let new_bucket = match self.bucket_start {
            None => true,
            Some(t) => now.saturating_duration_since(t) >= Duration::from_secs(60),
        };
        if new_bucket {
            self.bucket_start = Some(now);
            self.buckets.push_back(sample);
            while self.buckets.len() > self.len {
                self.buckets.pop_front();
            }
        } else if let Some(last) = self.buckets.back_mut() {
            if lt32(sample, *last) {
                *last = sample;
            }
        }
    }

    /// The lowest sample in the history.
    pub fn base(&self) -> Option<u32> {
        self.buckets
            .iter()
            .copied()
            .reduce(|a, b| if lt32(b, a) { b } else { a })
    }
}

/// The congestion controller of one connection.
#[derive(Debug, Clone)]
pub struct Ledbat {
    cwnd: f64,
    min_cwnd: f64,
    max_cwnd: f64,
    target_us: f64,
    gain: f64,
    slow_start: bool,
    ssthresh: Option<f64>,
    history: DelayHistory,
    /// The last three delay samples: the current delay is their minimum,
    /// which filters out single late ACKs.
    recent: [Option<u32>; 3],
    recent_idx: usize,
}

impl Ledbat {
    /// A controller with an initial window of `initial` bytes, bounded by
    /// `min` (one packet) and `max`.
    pub fn new(
        initial: usize,
        min: usize,
        max: usize,
        target: Duration,
        gain: usize,
        history_minutes: usize,
    ) -> Self {
        let min = min.max(1) as f64;
        Ledbat {
            cwnd: (initial as f64).max(min),
            min_cwnd: min,
            max_cwnd: (max as f64).max(min),
            target_us: (target.as_micros() as f64).max(1.0),
            gain: gain as f64,
            slow_start: true,
            ssthresh: None,
            history: DelayHistory::new(history_minutes),
            recent: [None; 3],
            recent_idx: 0,
        }
    }

    /// The congestion window in bytes.
    pub fn window(&self) -> usize {
        self.cwnd as usize
    }

    /// Whether the controller is in slow start.
    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    /// Takes a one-way delay sample (the peer's `timestamp_difference`).
    pub fn on_delay_sample(&mut self, now: Instant, sample: u32) {
        self.history.add(now, sample);
        if let Some(slot) = self.recent.get_mut(self.recent_idx) {
            *slot = Some(sample);
        }
        self.recent_idx = (self.recent_idx + 1) % 3;
    }

    /// The current queueing delay: the lowest recent sample above the base
    /// delay, at most `cap` (the one-way delay cannot exceed the RTT).
    pub fn queuing_delay(&self, cap: Option<Duration>) -> Option<Duration> {
        let base = self.history.base()?;
        let current =
            self.recent
                .iter()
                .flatten()
                .copied()
                .reduce(|a, b| if lt32(b, a) { b } else { a })?;
        let d = if lt32(current, base) {
            0
        } else {
            current.wrapping_sub(base)
        };
        let d = Duration::from_micros(u64::from(d));
        Some(match cap {
            Some(c) => d.min(c),
            None => d,
        })
    }

    /// Bytes newly acknowledged: `acked` of the `in_flight` bytes that were
    /// outstanding before the ACK. `saturated` says whether the sender was
    /// using its window (an application that sends little must not grow
    /// it). `delay` is [`Ledbat::queuing_delay`].
    pub fn on_ack(
        &mut self,
        acked: usize,
        in_flight: usize,
        saturated: bool,
        delay: Option<Duration>,
    ) {
        if acked == 0 || in_flight == 0 {
            return;
        }
        let delay_us = delay.map_or(0.0, |d| d.as_micros() as f64);
        if delay_us >= self.target_us && self.slow_start {
            self.slow_start = false;
            self.ssthresh = Some(self.cwnd / 2.0);
        }
        if !saturated {
            return;
        }
        let off_target = (self.target_us - delay_us) / self.target_us;
        let window_factor = (acked as f64 / in_flight as f64).min(1.0);
        let linear = self.gain * off_target * window_factor;
        let mut grow = linear;
        if self.slow_start {
            let exponential = acked as f64;
            if self.ssthresh.is_some_and(|t| self.cwnd + exponential > t) {
                self.slow_start = false;
            } else {
                grow = exponential.max(linear);
            }
        }
        self.cwnd = (self.cwnd + grow).clamp(self.min_cwnd, self.max_cwnd);
    }

    /// A packet was lost (the caller calls this at most once per RTT).
    pub fn on_loss(&mut self) {
        self.cwnd = (self.cwnd / 2.0).max(self.min_cwnd);
        self.slow_start = false;
        self.ssthresh = Some(self.cwnd);
    }

    /// The retransmission timer fired with packets in flight: back to one
    /// packet, and slow start up to half the old window.
    pub fn on_timeout(&mut self) {
        self.ssthresh = Some((self.cwnd / 2.0).max(self.min_cwnd));
        self.cwnd = self.min_cwnd;
        self.slow_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn base_delay_is_the_minimum_of_the_history() {
        let t0 = Instant::now();
        let mut h = DelayHistory::new(2);
        h.add(t0, 5000);
        h.add(t0 + ms(10), 3000);
        assert_eq!(h.base(), Some(3000));
        h.add(t0 + ms(61_000), 9000);
        assert_eq!(h.base(), Some(3000));
        h.add(t0 + ms(122_000), 8000);
        // The minute with 3000 has left the history.
        assert_eq!(h.base(), Some(8000));
        // Wrapping: u32::MAX - 10 is below 5.
        let mut w = DelayHistory::new(1);
        w.add(t0, 5);
        w.add(t0, u32::MAX - 10);
        assert_eq!(w.base(), Some(u32::MAX - 10));
    }

    #[test]
    fn window_reacts_to_delay() {
        let t0 = Instant::now();
        let mut l = Ledbat::new(3000, 1000, 1 << 20, ms(100), 3000, 10);
        l.on_delay_sample(t0, 1_000_000);
        // Slow start below target: grows by the bytes acked.
        l.on_ack(1000, 3000, true, l.queuing_delay(None));
        assert_eq!(l.window(), 4000);
        // 200 ms of queueing: leaves slow start and shrinks.
        for _ in 0..3 {
            l.on_delay_sample(t0, 1_200_000);
        }
        assert_eq!(l.queuing_delay(None), Some(ms(200)));
        l.on_ack(4000, 4000, true, l.queuing_delay(None));
        assert!(!l.in_slow_start());
        assert_eq!(l.window(), 1000);
        // At the target: no change.
        for _ in 0..3 {
            l.on_delay_sample(t0, 1_100_000);
        }
        l.on_ack(1000, 1000, true, l.queuing_delay(None));
        assert_eq!(l.window(), 1000);
        // Below target: + gain per window's worth of ACKs.
        for _ in 0..3 {
            l.on_delay_sample(t0, 1_000_000);
        }
        l.on_ack(1000, 1000, true, l.queuing_delay(None));
        assert_eq!(l.window(), 4000);
        // Not saturated: no growth.
        l.on_ack(1000, 1000, false, l.queuing_delay(None));
        assert_eq!(l.window(), 4000);
        l.on_loss();
        assert_eq!(l.window(), 2000);
        l.on_timeout();
        assert_eq!(l.window(), 1000);
    }
}
