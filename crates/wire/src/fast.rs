//! BEP 6 (fast extension): the "allowed fast" set, the pieces a peer may
//! request from us even while choked.
//!
//! The set depends only on the peer's address, the info-hash and the number of
//! pieces, so both sides can compute it and a peer cannot get a different set
//! by reconnecting.

use std::collections::HashSet;
use std::net::IpAddr;

use sha1::{Digest, Sha1};

/// How many SHA-1 rounds per piece of the torrent [`allowed_fast_set`] allows
/// itself before it gives up. Collecting `k` distinct pieces out of `n` takes
/// about `n * ln(n) / 5` rounds in the worst case (`k = n - 1`, a coupon
/// collector), and `ln(n) <= 22.2` for any `u32` piece count, so this bound is
/// only reached if the hash chain misbehaves.
const MAX_ROUNDS_PER_PIECE: u64 = 16;

/// Rounds allowed on top of [`MAX_ROUNDS_PER_PIECE`], for small torrents.
const MIN_ROUNDS: u64 = 1024;

/// The allowed fast set for a peer at `ip`: up to `k` distinct piece indices,
/// each `< num_pieces`, in the order the algorithm of BEP 6 produces them.
///
/// The input to the hash chain is the peer's address followed by the 20-byte
/// `info_hash`:
///
/// * **IPv4**: the 4 address bytes with the last one zeroed (`ip & 0xFFFFFF00`),
///   as BEP 6 specifies, so every address of a /24 gets the same set.
/// * **IPv4-mapped IPv6** (`::ffff:a.b.c.d`): treated as the IPv4 address
///   `a.b.c.d`, so a peer gets the same set whether a dual-stack socket reports
///   it as v4 or v6.
/// * **IPv6**: BEP 6 defines nothing. We do what libtorrent does in
///   `peer_connection::send_allowed_set()` (`src/peer_connection.cpp`): hash
///   all 16 address bytes, with no prefix mask, then the info-hash (36 bytes in
///   all). Following the most widespread implementation means a libtorrent
///   peer computes the same set we do. The cost is that the /24 protection
///   of IPv4 has no IPv6 counterpart: a peer with a whole prefix can get a
///   different set from each address.
///
/// Then `x = SHA1(x)` repeatedly; each digest gives five big-endian `u32`s,
/// each taken modulo `num_pieces` and kept if not already in the set, until
/// the set has `k` pieces.
///
/// Special cases: if `num_pieces == 0` the set is empty; if
/// `k >= num_pieces` it is every piece, `0..num_pieces` in order (the hash
/// chain would otherwise look for more distinct pieces than exist). The loop is
/// also bounded defensively, so in theory the set may come back with fewer
/// than `k` pieces; with SHA-1 this does not happen.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// use rivulet_wire::allowed_fast_set;
///
/// // The example of BEP 6.
/// let ip = IpAddr::V4(Ipv4Addr::new(80, 4, 4, 200));
/// let set = allowed_fast_set(ip, &[0xaa; 20], 1313, 7);
/// assert_eq!(set, [1059, 431, 808, 1217, 287, 376, 1188]);
/// ```
#[must_use]
pub fn allowed_fast_set(ip: IpAddr, info_hash: &[u8; 20], num_pieces: u32, k: usize) -> Vec<u32> {
    if num_pieces == 0 || k == 0 {
        return Vec::new();
    }
    // If `num_pieces` does not fit in a usize, `k` is certainly smaller.
    if usize::try_from(num_pieces).is_ok_and(|n| k >= n) {
        return (0..num_pieces).collect();
    }

    let mut hasher = Sha1::new();
    match ip {
        IpAddr::V4(v4) => hasher.update(masked_v4(v4.octets())),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hasher.update(masked_v4(v4.octets())),
            None => hasher.update(v6.octets()),
        },
    }
    hasher.update(info_hash);
    let mut x: [u8; 20] = hasher.finalize().into();

    let mut set = Vec::with_capacity(k);
    let mut seen = HashSet::with_capacity(k);
    let max_rounds = u64::from(num_pieces)
        .saturating_mul(MAX_ROUNDS_PER_PIECE)
        .saturating_add(MIN_ROUNDS);
    let mut rounds = 1u64;
    loop {
        for chunk in x.chunks_exact(4) {
            let Ok(word) = <[u8; 4]>::try_from(chunk) else {
                continue;
            };
            let index = u32::from_be_bytes(word) % num_pieces;
            if seen.insert(index) {
                set.push(index);
                if set.len() >= k {
                    return set;
                }
            }
        }
        if rounds >= max_rounds {
            return set;
        }
        rounds += 1;
        x = Sha1::digest(x).into();
    }
}

/// An IPv4 address with its last byte zeroed, as BEP 6 hashes it.
fn masked_v4([a, b, c, _]: [u8; 4]) -> [u8; 4] {
    [a, b, c, 0]
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    const BEP6_IP: Ipv4Addr = Ipv4Addr::new(80, 4, 4, 200);
    const BEP6_HASH: [u8; 20] = [0xaa; 20];

    #[test]
    fn bep6_vectors() {
        let ip = IpAddr::V4(BEP6_IP);
        assert_eq!(
            allowed_fast_set(ip, &BEP6_HASH, 1313, 7),
            [1059, 431, 808, 1217, 287, 376, 1188]
        );
        assert_eq!(
            allowed_fast_set(ip, &BEP6_HASH, 1313, 9),
            [1059, 431, 808, 1217, 287, 376, 1188, 353, 508]
        );
    }

    #[test]
    fn last_octet_does_not_matter() {
        let want = allowed_fast_set(IpAddr::V4(BEP6_IP), &BEP6_HASH, 1313, 10);
        for last in [0, 1, 127, 200, 255] {
            let ip = IpAddr::V4(Ipv4Addr::new(80, 4, 4, last));
            assert_eq!(allowed_fast_set(ip, &BEP6_HASH, 1313, 10), want);
        }
        // Another /24 gives another set.
        let other = IpAddr::V4(Ipv4Addr::new(80, 4, 5, 200));
        assert_ne!(allowed_fast_set(other, &BEP6_HASH, 1313, 10), want);
    }

    #[test]
    fn ipv4_mapped_v6_is_v4() {
        let v4 = IpAddr::V4(BEP6_IP);
        let mapped = IpAddr::V6(BEP6_IP.to_ipv6_mapped());
        assert_eq!(
            allowed_fast_set(mapped, &BEP6_HASH, 1313, 9),
            allowed_fast_set(v4, &BEP6_HASH, 1313, 9)
        );
    }

    #[test]
    fn ipv6_uses_the_whole_address() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let set_a = allowed_fast_set(a, &BEP6_HASH, 1313, 10);
        let set_b = allowed_fast_set(b, &BEP6_HASH, 1313, 10);
        assert_eq!(set_a.len(), 10);
        assert_eq!(set_b.len(), 10);
        assert_ne!(set_a, set_b);
        // An IPv4-compatible address (`::a.b.c.d`) is not mapped: it is IPv6.
        let compatible = IpAddr::V6(BEP6_IP.to_ipv6_compatible());
        assert_ne!(
            allowed_fast_set(compatible, &BEP6_HASH, 1313, 10),
            allowed_fast_set(IpAddr::V4(BEP6_IP), &BEP6_HASH, 1313, 10)
        );
        // Deterministic.
        assert_eq!(allowed_fast_set(a, &BEP6_HASH, 1313, 10), set_a);
        let loopback = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(allowed_fast_set(loopback, &BEP6_HASH, 1313, 10).len(), 10);
    }

    #[test]
    fn k_at_least_num_pieces_is_every_piece() {
        let ip = IpAddr::V4(BEP6_IP);
        assert_eq!(allowed_fast_set(ip, &BEP6_HASH, 5, 5), [0, 1, 2, 3, 4]);
        assert_eq!(allowed_fast_set(ip, &BEP6_HASH, 5, 10), [0, 1, 2, 3, 4]);
        assert_eq!(allowed_fast_set(ip, &BEP6_HASH, 1, 10), [0]);
        assert_eq!(allowed_fast_set(ip, &BEP6_HASH, 1, 1), [0]);
    }

    #[test]
    fn k_just_below_num_pieces_terminates() {
        let ip = IpAddr::V4(BEP6_IP);
        let mut set = allowed_fast_set(ip, &BEP6_HASH, 300, 299);
        assert_eq!(set.len(), 299);
        set.sort_unstable();
        set.dedup();
        assert_eq!(set.len(), 299);
        assert!(set.iter().all(|&p| p < 300));
    }

    #[test]
    fn empty_cases() {
        let ip = IpAddr::V4(BEP6_IP);
        assert!(allowed_fast_set(ip, &BEP6_HASH, 0, 10).is_empty());
        assert!(allowed_fast_set(ip, &BEP6_HASH, 0, 0).is_empty());
        assert!(allowed_fast_set(ip, &BEP6_HASH, 1313, 0).is_empty());
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        ]
    }

    proptest! {
        #[test]
        fn distinct_and_in_range(
            ip in any_ip(),
            info_hash in any::<[u8; 20]>(),
            num_pieces in 1u32..5000,
            k in 0usize..40,
        ) {
            let set = allowed_fast_set(ip, &info_hash, num_pieces, k);
            let want = k.min(num_pieces as usize);
            prop_assert_eq!(set.len(), want);
            prop_assert!(set.iter().all(|&p| p < num_pieces));
            let distinct: HashSet<u32> = set.iter().copied().collect();
            prop_assert_eq!(distinct.len(), set.len());
            // A smaller k gives a prefix of the same sequence (when k does
            // not cover every piece: then the answer is all pieces in order).
            if k < num_pieces as usize {
                let shorter = allowed_fast_set(ip, &info_hash, num_pieces, k / 2);
                prop_assert_eq!(&set[..shorter.len()], &shorter[..]);
            }
        }

        #[test]
        fn last_octet_never_matters(
            o in any::<[u8; 4]>(),
            last in any::<u8>(),
            info_hash in any::<[u8; 20]>(),
            num_pieces in 1u32..5000,
        ) {
            let a = IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]));
            let b = IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], last));
            let mapped = IpAddr::V6(Ipv4Addr::new(o[0], o[1], o[2], last).to_ipv6_mapped());
            let set = allowed_fast_set(a, &info_hash, num_pieces, 10);
            prop_assert_eq!(&allowed_fast_set(b, &info_hash, num_pieces, 10), &set);
            prop_assert_eq!(&allowed_fast_set(mapped, &info_hash, num_pieces, 10), &set);
        }
    }
}
