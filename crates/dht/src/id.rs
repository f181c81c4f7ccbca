//! Node ids: 160 bits compared by XOR distance (BEP 5), and ids derived from
//! the node's IP address (BEP 42), which make it expensive to place a node at a
//! chosen point of the id space.

use std::fmt;
use std::net::IpAddr;

use rand::Rng;

/// A 160-bit DHT node id (or lookup target: info-hashes live in the same space).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; 20]);

/// The XOR of two ids, ordered as a big-endian number: smaller is closer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; 20]);

impl NodeId {
    /// Length of an id in bytes.
    pub const LEN: usize = 20;

    /// The id in `bytes`, if it is exactly 20 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 20]>::try_from(bytes).ok().map(NodeId)
    }

    /// A uniformly random id.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        NodeId(rng.gen())
    }

    /// XOR distance to `other`.
    pub fn distance(&self, other: &NodeId) -> Distance {
        // Two wide XORs rather than 20 byte ones: routing-table queries
        // compute thousands of distances per second.
        let (a_head, a_tail) = split(&self.0);
        let (b_head, b_tail) = split(&other.0);
        let head = (a_head ^ b_head).to_be_bytes();
        let tail = (a_tail ^ b_tail).to_be_bytes();
        let mut d = [0u8; 20];
        let (d_head, d_tail) = d.split_at_mut(16);
        d_head.copy_from_slice(&head);
        d_tail.copy_from_slice(&tail);
        Distance(d)
    }

    /// Number of leading bits `self` and `other` share (160 when equal).
    pub fn common_prefix_len(&self, other: &NodeId) -> usize {
        let mut bits = 0;
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            let x = a ^ b;
            if x == 0 {
                bits += 8;
            } else {
                return bits + x.leading_zeros() as usize;
            }
        }
        bits
    }

    /// Bit `i` (0 is the most significant bit of the first byte); false past 159.
    pub fn bit(&self, i: usize) -> bool {
        self.0
            .get(i / 8)
            .is_some_and(|byte| byte & (0x80 >> (i % 8)) != 0)
    }

    /// A random id sharing exactly `prefix` leading bits with `self` (bit
    /// `prefix` flipped), or at least `prefix` bits when `at_least` is set.
    /// This is how a bucket's range is named: the bucket refresh looks up a
    /// random id inside it.
    pub fn random_in_range<R: Rng + ?Sized>(
        &self,
        prefix: usize,
        at_least: bool,
        rng: &mut R,
    ) -> NodeId {
        let mut out: [u8; 20] = rng.gen();
        for i in 0..prefix.min(160) {
            set_bit(&mut out, i, self.bit(i));
        }
        if !at_least && prefix < 160 {
            set_bit(&mut out, prefix, !self.bit(prefix));
        }
        NodeId(out)
    }

    /// A BEP 42 id for a node whose external address is `ip`: the first 21
    /// bits come from the CRC-32C of the masked address, the last byte holds
    /// the 3 random bits mixed into it, the rest is random.
    pub fn bep42<R: Rng + ?Sized>(ip: IpAddr, rng: &mut R) -> NodeId {
        let rand_byte: u8 = rng.gen();
        let mut id: [u8; 20] = rng.gen();
        let crc = bep42_crc(ip, rand_byte & 7);
        let [c0, c1, c2, _] = crc.to_be_bytes();
        id[0] = c0;
        id[1] = c1;
        id[2] = (c2 & 0xf8) | (id[2] & 0x07);
        id[19] = rand_byte;
        NodeId(id)
    }

    /// Whether this id is allowed for a node at `ip` under BEP 42. Local,
    /// private and loopback addresses are exempt (always true): behind a NAT
    /// or on a LAN the node cannot know the address others see.
    pub fn is_valid_for(&self, ip: IpAddr) -> bool {
        if is_bep42_exempt(ip) {
            return true;
        }
        self.matches_bep42(ip)
    }

    /// Whether the first 21 bits are the ones BEP 42 derives from `ip`, with
    /// no exemption for local addresses.
    pub fn matches_bep42(&self, ip: IpAddr) -> bool {
        let [c0, c1, c2, _] = bep42_crc(ip, self.0[19] & 7).to_be_bytes();
        self.0[0] == c0 && self.0[1] == c1 && (self.0[2] & 0xf8) == (c2 & 0xf8)
    }

    /// The id as 40 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        use fmt::Write;
        self.0.iter().fold(String::with_capacity(40), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.to_hex())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl From<rivulet_core::InfoHash> for NodeId {
    fn from(h: rivulet_core::InfoHash) -> Self {
        NodeId(h.0)
    }
}

/// An id as a 128-bit and a 32-bit number.
fn split(id: &[u8; 20]) -> (u128, u32) {
    let [h @ .., t0, t1, t2, t3] = *id;
    (u128::from_be_bytes(h), u32::from_be_bytes([t0, t1, t2, t3]))
}

fn set_bit(bytes: &mut [u8; 20], i: usize, on: bool) {
    if let Some(byte) = bytes.get_mut(i / 8) {
        let mask = 0x80 >> (i % 8);
        if on {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
}

/// Addresses BEP 42 exempts from the id check: loopback, private (RFC 1918),
/// link-local, unique-local IPv6, and addresses no node can have.
pub fn is_bep42_exempt(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_bep42_exempt(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link local fe80::/10
        }
    }
}

/// CRC-32C of the BEP 42 masked address with `r` (3 bits) in its top bits.
fn bep42_crc(ip: IpAddr, r: u8) -> u32 {
    let r = u64::from(r & 7);
    match ip {
        IpAddr::V4(v4) => {
            let masked = (u32::from(v4) & 0x030f_3fff) | ((r as u32) << 29);
            crc32c(&masked.to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut high = [0u8; 8];
            for (h, b) in high.iter_mut().zip(o) {
                *h = b;
            }
            let masked = (u64::from_be_bytes(high) & 0x0103_070f_1f3f_7fff) | (r << 61);
            crc32c(&masked.to_be_bytes())
        }
    }
}

/// CRC-32C (Castagnoli), bit by bit: BEP 42 hashes 4 or 8 bytes per id, so a
/// table would buy nothing.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82f6_3b78 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn hex(s: &str) -> NodeId {
        let mut out = [0u8; 20];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        NodeId(out)
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    /// The five examples of BEP 42.
    #[test]
    fn bep42_examples() {
        let cases = [
            ("124.31.75.21", "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401"),
            ("21.75.31.124", "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256"),
            ("65.23.51.170", "a5d43220bc8f112a3d426c84764f8c2a1150e616"),
            ("84.124.73.14", "1b0321dd1bb1fe518101ceef99462b947a01ff41"),
            ("43.213.53.83", "e56f6cbf5b7c4be0237986d5243b87aa6d51305a"),
        ];
        for (ip, id) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            let id = hex(id);
            assert!(id.is_valid_for(ip), "{ip} {id}");
            // The same id from another public address is refused.
            assert!(!id.is_valid_for("8.8.8.8".parse().unwrap()));
        }
    }

    #[test]
    fn bep42_generated_ids_verify_and_local_ips_are_exempt() {
        let mut rng = StdRng::seed_from_u64(1);
        for ip in ["203.0.113.9", "2001:db8::1", "81.2.69.160"] {
            let ip: IpAddr = ip.parse().unwrap();
            for _ in 0..50 {
                let id = NodeId::bep42(ip, &mut rng);
                assert!(id.is_valid_for(ip));
            }
        }
        let random = NodeId([0x11; 20]);
        for ip in [
            "127.0.0.5",
            "10.1.2.3",
            "192.168.1.1",
            "172.20.0.1",
            "::1",
            "fe80::1",
            "fd00::5",
        ] {
            assert!(random.is_valid_for(ip.parse().unwrap()), "{ip}");
        }
        assert!(!random.is_valid_for("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn distance_and_prefix() {
        let a = NodeId([0; 20]);
        let mut b = [0u8; 20];
        b[1] = 0x10;
        let b = NodeId(b);
        assert_eq!(a.common_prefix_len(&b), 11);
        assert_eq!(a.common_prefix_len(&a), 160);
        assert!(a.distance(&b) > a.distance(&a));
        let mut rng = StdRng::seed_from_u64(2);
        for p in [0, 1, 7, 8, 100, 159] {
            let r = b.random_in_range(p, false, &mut rng);
            assert_eq!(r.common_prefix_len(&b), p);
            let r = b.random_in_range(p, true, &mut rng);
            assert!(r.common_prefix_len(&b) >= p);
        }
    }
}
