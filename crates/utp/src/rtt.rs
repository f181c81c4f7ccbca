//! Round-trip time estimate and retransmission timeout, as RFC 6298
//! computes them (BEP 29 uses the same rule with a 500 ms floor).

use std::time::Duration;

/// Smoothed RTT, its variation, and the timeout derived from them.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rto: Duration,
    max_rto: Duration,
    initial_rto: Duration,
    /// Lowest sample seen (a bound on the one-way delay).
    min_rtt: Option<Duration>,
}

impl RttEstimator {
    /// A fresh estimator: [`RttEstimator::rto`] is `initial` until the
    /// first sample.
    pub fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            min_rto,
            max_rto,
            initial_rto: initial,
            min_rtt: None,
        }
    }

    /// Adds a sample from a packet acknowledged after one transmission
    /// (Karn's rule: retransmitted packets give no sample).
    pub fn on_sample(&mut self, rtt: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// The smoothed RTT, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The lowest RTT sample.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// The retransmission timeout after `backoff` timeouts in a row: the
    /// base timeout doubled `backoff` times, within the bounds.
    pub fn rto(&self, backoff: u32) -> Duration {
        let base = match self.srtt {
            None => self.initial_rto,
            Some(srtt) => (srtt + self.rttvar * 4).max(self.min_rto),
        };
        base.saturating_mul(1u32 << backoff.min(16))
            .min(self.max_rto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6298() {
        let ms = Duration::from_millis;
        let mut r = RttEstimator::new(ms(1000), ms(500), ms(60_000));
        assert_eq!(r.rto(0), ms(1000));
        assert_eq!(r.rto(2), ms(4000));
        r.on_sample(ms(100));
        // 100 + 4 * 50 = 300, under the floor.
        assert_eq!(r.rto(0), ms(500));
        for _ in 0..50 {
            r.on_sample(ms(800));
        }
        assert!(r.rto(0) >= ms(800) && r.rto(0) < ms(900), "{:?}", r.rto(0));
        assert_eq!(r.rto(20), ms(60_000));
        assert_eq!(r.min_rtt(), Some(ms(100)));
    }
}
