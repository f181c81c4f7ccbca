//! Announce tokens (BEP 5): a `get_peers` answer carries a token that the
//! querier must return in `announce_peer`, proving it can receive packets at
//! the address it announces from. A token is the SHA-1 of a secret and the
//! querier's IP; the secret changes every few minutes and the previous one
//! is still accepted, so a token lives between one and two periods.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use sha1::{Digest, Sha1};

/// Bytes of the tokens we hand out.
pub const TOKEN_LEN: usize = 8;

/// The current and previous secrets.
#[derive(Debug, Clone)]
pub struct Tokens {
    current: [u8; 20],
    previous: [u8; 20],
    rotated: Instant,
    period: Duration,
}

impl Tokens {
    /// Fresh secrets, rotated every `period`.
    pub fn new<R: Rng + ?Sized>(now: Instant, period: Duration, rng: &mut R) -> Self {
        Tokens {
            current: rng.gen(),
            previous: rng.gen(),
            rotated: now,
            period,
        }
    }

    /// Rotates the secret when its period is over. Called before every use,
    /// so no timer is needed.
    pub fn rotate<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) {
        let elapsed = now.saturating_duration_since(self.rotated);
        if elapsed >= self.period {
            // After two periods of silence both secrets are stale.
            self.previous = if elapsed >= self.period * 2 {
                rng.gen()
            } else {
                self.current
            };
            self.current = rng.gen();
            self.rotated = now;
        }
    }

    /// The token for a querier at `ip`.
    pub fn make(&self, ip: IpAddr) -> Vec<u8> {
        token_for(&self.current, ip)
    }

    /// Whether `token` was made for `ip` with the current or previous secret.
    pub fn check(&self, ip: IpAddr, token: &[u8]) -> bool {
        token == token_for(&self.current, ip).as_slice()
            || token == token_for(&self.previous, ip).as_slice()
    }
}

fn token_for(secret: &[u8; 20], ip: IpAddr) -> Vec<u8> {
    let mut h = Sha1::new();
    h.update(secret);
    match ip {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    let digest = h.finalize();
    digest.iter().take(TOKEN_LEN).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn tokens_live_one_to_two_periods_and_bind_the_ip() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(5);
        let period = Duration::from_secs(300);
        let mut t = Tokens::new(t0, period, &mut rng);
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let other: IpAddr = "127.0.0.3".parse().unwrap();
        let tok = t.make(ip);
        assert_eq!(tok.len(), TOKEN_LEN);
        assert!(t.check(ip, &tok));
        assert!(!t.check(other, &tok));
        t.rotate(t0 + period, &mut rng);
        assert!(t.check(ip, &tok), "previous secret still accepted");
        assert_ne!(t.make(ip), tok);
        t.rotate(t0 + period * 2, &mut rng);
        assert!(!t.check(ip, &tok), "two rotations later it is refused");
    }
}
