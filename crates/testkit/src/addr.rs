//! Loopback addresses for tests.
//!
//! Network tests give each peer, tracker and rivulet its own address on
//! 127.0.0.0/8 (rivulet tells peers apart by address: bans, allowed-fast
//! sets), and some listen on fixed ports there. Test binaries may run at the
//! same time (several `cargo test` runs on one machine, or a runner that
//! starts binaries in parallel), so [`next_loopback`] hands each test
//! *process* a /24 of its own: the first call claims a block `127.0.B.0/24`
//! (B from 1 up) by listening on `127.0.B.1:`[`CLAIM_PORT`] for the rest of
//! the process's life. Linux refuses a second listener on that address and
//! port even with `SO_REUSEADDR`, so no two live processes hold one block.
//! Within a process, addresses are handed out once each.
//!
//! `127.0.0.0/24` is never claimed: tests that pick fixed addresses
//! ([`loopback`]) use it.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// The port on `127.0.B.1` whose listener marks block B as taken.
pub const CLAIM_PORT: u16 = 23_456;

/// `127.0.0.n`, for tests that choose their own addresses.
pub fn loopback(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// A loopback address no other call to this function hands out while this
/// process lives, in this process or in another one: `127.0.B.n` for this
/// process's block B (see the [module](self) docs) and n from 1 to 254.
///
/// Panics after 254 addresses, or if no block can be claimed.
pub fn next_loopback() -> Ipv4Addr {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let block = block();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(
        (1..255).contains(&n),
        "ran out of loopback addresses in 127.0.{block}.0/24"
    );
    Ipv4Addr::new(127, 0, block, n)
}

/// This process's block: the B of `127.0.B.0/24`.
pub fn block() -> u8 {
    static BLOCK: OnceLock<(u8, TcpListener)> = OnceLock::new();
    let (b, _claim) = BLOCK.get_or_init(|| {
        let mut last = None;
        for b in 1..=255u8 {
            match TcpListener::bind((Ipv4Addr::new(127, 0, b, 1), CLAIM_PORT)) {
                Ok(claim) => return (b, claim),
                Err(e) => last = Some(e),
            }
        }
        panic!(
            "no free block of loopback addresses: every 127.0.B.1:{CLAIM_PORT} is taken \
             (last error: {last:?})"
        )
    });
    *b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_and_in_the_claimed_block() {
        let a = next_loopback();
        let b = next_loopback();
        assert_ne!(a, b);
        assert_eq!(a.octets()[..3], [127, 0, block()]);
        assert_eq!(b.octets()[..3], [127, 0, block()]);
        assert_ne!(block(), 0);
        // The block is held: nobody else can claim it now.
        assert!(TcpListener::bind((Ipv4Addr::new(127, 0, block(), 1), CLAIM_PORT)).is_err());
    }
}
