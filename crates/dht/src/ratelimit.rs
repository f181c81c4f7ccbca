//! Rate limits: a token bucket for the queries we send, and per-source-IP
//! buckets for the queries we answer, so that one flooding address costs us
//! little and cannot starve the others.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A token bucket: `burst` tokens at most, refilled at `per_second`.
/// Counts thousandths of a token, so that slow rates refill smoothly without
/// floating point.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    milli: u64,
    burst_milli: u64,
    per_second: u32,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(now: Instant, per_second: u32, burst: u32) -> Self {
        TokenBucket {
            milli: u64::from(burst) * 1000,
            burst_milli: u64::from(burst.max(1)) * 1000,
            per_second,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        let add = elapsed
            .as_millis()
            .saturating_mul(u128::from(self.per_second));
        let add = u64::try_from(add).unwrap_or(u64::MAX);
        if add > 0 {
            self.milli = self.milli.saturating_add(add).min(self.burst_milli);
            self.last = now;
        } else if now < self.last {
            self.last = now;
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full (its owner has been quiet).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.milli >= self.burst_milli
    }

    /// When the next token will be there (a time not after the last call if
    /// there is one now).
    pub fn next_token(&self) -> Instant {
        if self.milli >= 1000 {
            return self.last;
        }
        if self.per_second == 0 {
            // No token ever comes; wake up in an hour to find the same answer.
            return self.last + Duration::from_secs(3600);
        }
        let missing_ms = (1000 - self.milli).div_ceil(u64::from(self.per_second));
        self.last + Duration::from_millis(missing_ms)
    }
}

/// The knobs of [`IpLimiter`], from [`crate::Config`].
#[derive(Debug, Clone, Copy)]
pub struct IpLimits {
    /// Queries per second an address may send on average.
    pub per_second: u32,
    /// Queries an address may send at once.
    pub burst: u32,
    /// How long an address that exceeded its rate is ignored.
    pub block_for: Duration,
    /// Most addresses tracked at once (memory bound).
    pub max_tracked: usize,
}

#[derive(Debug, Clone)]
struct IpState {
    bucket: TokenBucket,
    blocked_until: Option<Instant>,
    seen: Instant,
}

/// Per-source-IP token buckets, bounded in number. An address that empties
/// its bucket is blocked for a while: answering a flood only feeds it.
#[derive(Debug, Clone)]
pub struct IpLimiter {
    limits: IpLimits,
    // BTreeMap for a replayable iteration order (see the peer store).
    ips: BTreeMap<IpAddr, IpState>,
}

impl IpLimiter {
    /// No address tracked yet.
    pub fn new(limits: IpLimits) -> Self {
        IpLimiter {
            limits,
            ips: BTreeMap::new(),
        }
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.ips.len()
    }

    /// Whether a query from `ip` may be answered; counts it.
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        if !self.ips.contains_key(&ip) && self.ips.len() >= self.limits.max_tracked {
            self.make_room(now);
        }
        let limits = self.limits;
        let state = self.ips.entry(ip).or_insert_with(|| IpState {
            bucket: TokenBucket::new(now, limits.per_second, limits.burst),
            blocked_until: None,
            seen: now,
        });
        state.seen = now;
        if let Some(until) = state.blocked_until {
            if now < until {
                return false;
            }
            state.blocked_until = None;
        }
        if state.bucket.try_take(now) {
            true
        } else {
            state.blocked_until = Some(now + limits.block_for);
            false
        }
    }

    /// Forgets addresses that have been quiet (bucket full, not blocked);
    /// if none has, the one seen longest ago.
    fn make_room(&mut self, now: Instant) {
        self.ips.retain(|_, s| {
            let blocked = s.blocked_until.is_some_and(|u| now < u);
            blocked || !s.bucket.is_full(now)
        });
        if self.ips.len() >= self.limits.max_tracked {
            let oldest = self
                .ips
                .iter()
                .min_by_key(|(_, s)| s.seen)
                .map(|(ip, _)| *ip);
            if let Some(ip) = oldest {
                self.ips.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(t0, 10, 5);
        for _ in 0..5 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0));
        assert_eq!(b.next_token(), t0 + Duration::from_millis(100));
        assert!(!b.try_take(t0 + Duration::from_millis(99)));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        // Never more than the burst.
        let later = t0 + Duration::from_secs(100);
        assert!(b.is_full(later));
        let took = (0..20).filter(|_| b.try_take(later)).count();
        assert_eq!(took, 5);
    }

    #[test]
    fn a_flooding_ip_is_blocked_others_are_not_and_memory_is_bounded() {
        let t0 = Instant::now();
        let mut l = IpLimiter::new(IpLimits {
            per_second: 5,
            burst: 20,
            block_for: Duration::from_secs(60),
            max_tracked: 100,
        });
        let flood: IpAddr = "127.0.0.9".parse().unwrap();
        let calm: IpAddr = "127.0.0.10".parse().unwrap();
        let allowed = (0..200).filter(|_| l.allow(t0, flood)).count();
        assert_eq!(allowed, 20);
        assert!(l.allow(t0, calm));
        // Still blocked after its bucket refilled, until the block ends.
        assert!(!l.allow(t0 + Duration::from_secs(30), flood));
        assert!(l.allow(t0 + Duration::from_secs(61), flood));
        // Thousands of addresses: at most max_tracked are kept.
        for i in 0..5000u32 {
            let ip = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            l.allow(t0 + Duration::from_secs(62), ip);
            assert!(l.tracked() <= 100);
        }
    }
}
