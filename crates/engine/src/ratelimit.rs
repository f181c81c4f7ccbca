//! Rate limits: token buckets for payload and protocol bytes, each way, per
//! torrent and for a whole session.
//!
//! A connection reads (or writes) first and pays afterwards: the bytes are
//! taken from the bucket, which may go into debt, and the connection then
//! waits until the debt is paid back at the bucket's rate before its next
//! read (or write). Over any long stretch the bytes moved are the rate times
//! the time, plus at most one read or write per connection and the burst a
//! quiet bucket saves up ([`BURST`]). A limit of 0 means none; it can change
//! at any moment ([`RateLimit::set_rate`]).
//!
//! Plain data with the time passed in, so that the arithmetic is tested with
//! a virtual clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How much a bucket saves up while nothing is moving: this long at its
/// rate (at least [`MIN_BURST`] bytes).
pub const BURST: Duration = Duration::from_millis(250);
/// The smallest saving: one read of a connection's buffer.
pub const MIN_BURST: u64 = 64 * 1024;

/// One token bucket.
#[derive(Debug, Default)]
pub struct RateLimit {
    /// Bytes per second; 0: no limit.
    rate: AtomicU64,
    /// Tokens (bytes; negative: debt) and when they were counted.
    state: Mutex<Option<(f64, Instant)>>,
}

impl RateLimit {
    /// A bucket of `rate` bytes per second (0: no limit).
    pub fn new(rate: u64) -> Self {
        RateLimit {
            rate: AtomicU64::new(rate),
            state: Mutex::new(None),
        }
    }

    /// The rate in bytes per second (0: no limit).
    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Changes the rate (0: no limit); a debt is forgiven.
    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Ordering::Relaxed);
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Takes `n` bytes moved at `now`; returns how long to wait before
    /// moving more (zero when within the limit).
    pub fn take(&self, n: usize, now: Instant) -> Duration {
        let rate = self.rate();
        if rate == 0 {
            return Duration::ZERO;
        }
        let rate = rate as f64;
        let burst = (rate * BURST.as_secs_f64()).max(MIN_BURST as f64);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, last) = state.get_or_insert((burst, now));
        let earned = now.saturating_duration_since(*last).as_secs_f64() * rate;
        *tokens = (*tokens + earned).min(burst) - n as f64;
        *last = now;
        if *tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*tokens / rate)
        }
    }
}

/// A download and an upload bucket.
#[derive(Debug, Clone, Default)]
pub struct LimitPair {
    /// Bytes received.
    pub down: Arc<RateLimit>,
    /// Bytes sent.
    pub up: Arc<RateLimit>,
}

impl LimitPair {
    /// Buckets of these rates (0: no limit).
    pub fn new(down: u64, up: u64) -> Self {
        LimitPair {
            down: Arc::new(RateLimit::new(down)),
            up: Arc::new(RateLimit::new(up)),
        }
    }

    /// Changes both rates (0: no limit).
    pub fn set(&self, down: u64, up: u64) {
        self.down.set_rate(down);
        self.up.set_rate(up);
    }
}

/// The buckets a torrent's connections pay into: the torrent's own, and its
/// session's (shared by every torrent of the session).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// The torrent's.
    pub torrent: LimitPair,
    /// The session's, if any.
    pub session: Option<LimitPair>,
}

impl Limits {
    /// Takes `n` bytes received; the wait before reading more.
    pub fn take_down(&self, n: usize, now: Instant) -> Duration {
        let own = self.torrent.down.take(n, now);
        self.session
            .as_ref()
            .map_or(own, |s| own.max(s.down.take(n, now)))
    }

    /// Takes `n` bytes sent; the wait before writing more.
    pub fn take_up(&self, n: usize, now: Instant) -> Duration {
        let own = self.torrent.up.take(n, now);
        self.session
            .as_ref()
            .map_or(own, |s| own.max(s.up.take(n, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that reads `chunk` bytes whenever allowed, for `secs`
    /// virtual seconds; returns the bytes read.
    fn run(limit: &RateLimit, chunk: usize, secs: u64) -> u64 {
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs(secs);
        let mut now = t0;
        let mut total = 0u64;
        while now < end {
            total += chunk as u64;
            now += limit.take(chunk, now).max(Duration::from_micros(100));
        }
        total
    }

    #[test]
    fn holds_the_rate_over_time() {
        for (rate, chunk) in [(1_000_000, 16_384), (100_000, 65_536), (5_000_000, 1_000)] {
            let l = RateLimit::new(rate);
            let got = run(&l, chunk, 10) as f64;
            let want = rate as f64 * 10.0;
            // The saved-up burst and one chunk at most beyond the rate.
            let slack = (rate as f64 * BURST.as_secs_f64()).max(MIN_BURST as f64) + chunk as f64;
            assert!(
                got >= want * 0.99 && got <= want + slack,
                "rate {rate}: {got} bytes in 10 s"
            );
        }
    }

    #[test]
    fn no_limit_never_waits_and_changes_take_effect() {
        let l = RateLimit::new(0);
        let now = Instant::now();
        assert_eq!(l.take(1 << 30, now), Duration::ZERO);
        l.set_rate(1000);
        // The first take spends most of the burst (64 KiB saved up), the
        // next goes 4,464 bytes into debt: 4.464 s at 1,000 B/s.
        assert_eq!(l.take(60_000, now), Duration::ZERO);
        let wait = l.take(10_000, now);
        assert!((wait.as_secs_f64() - 4.464).abs() < 0.001, "{wait:?}");
        l.set_rate(0);
        assert_eq!(l.take(10_000, now), Duration::ZERO);
    }

    #[test]
    fn the_stricter_of_torrent_and_session_wins() {
        let limits = Limits {
            torrent: LimitPair::new(0, 2_000_000),
            session: Some(LimitPair::new(500_000, 0)),
        };
        let now = Instant::now();
        // Each burst spent first (a quarter second at the rate), then a
        // second's worth: a second to wait, whichever bucket is strict.
        assert_eq!(limits.take_down(125_000, now), Duration::ZERO);
        let wait = limits.take_down(500_000, now);
        assert!((wait.as_secs_f64() - 1.0).abs() < 0.01, "{wait:?}");
        assert_eq!(limits.take_up(500_000, now), Duration::ZERO);
        let wait = limits.take_up(2_000_000, now);
        assert!((wait.as_secs_f64() - 1.0).abs() < 0.01, "{wait:?}");
    }
}
