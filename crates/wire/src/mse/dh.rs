//! The Diffie-Hellman exchange of MSE: the 768-bit prime of the
//! specification (the Oakley group 1 prime), generator 2, 160-bit private
//! keys, every public value and the secret written as 96 big-endian bytes.

use num_bigint::BigUint;
use rand::RngCore;

/// Bytes in a public key and in the shared secret (768 bits).
pub const KEY_LEN: usize = 96;

/// The prime P, big-endian.
pub const PRIME: [u8; KEY_LEN] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x3A, 0x36, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x05, 0x63,
];

/// Bytes of a private key: 160 bits, what the specification recommends
/// (at least 128; more than 180 adds nothing).
const PRIVATE_LEN: usize = 20;

/// One side's secret exponent, used once.
#[derive(Clone)]
pub struct PrivateKey(BigUint);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

/// A public value `G^X mod P`, as sent on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; KEY_LEN]);

/// The shared secret `S`, as hashed into the keys.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SharedSecret(pub [u8; KEY_LEN]);

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

fn prime() -> BigUint {
    BigUint::from_bytes_be(&PRIME)
}

/// `value` as exactly [`KEY_LEN`] big-endian bytes (it is below P, so it
/// fits; leading zero bytes are kept, as the protocol requires).
fn to_fixed(value: &BigUint) -> [u8; KEY_LEN] {
    let bytes = value.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    let skip = KEY_LEN.saturating_sub(bytes.len());
    let take = bytes.len().min(KEY_LEN);
    if let (Some(dst), Some(src)) = (out.get_mut(skip..), bytes.get(bytes.len() - take..)) {
        dst.copy_from_slice(src);
    }
    out
}

impl PrivateKey {
    /// A fresh random key.
    pub fn random(rng: &mut impl RngCore) -> Self {
        let mut bytes = [0u8; PRIVATE_LEN];
        rng.fill_bytes(&mut bytes);
        PrivateKey::from_be_bytes(&bytes)
    }

    /// A key from its big-endian bytes (for tests with known values).
    pub fn from_be_bytes(bytes: &[u8]) -> Self {
        PrivateKey(BigUint::from_bytes_be(bytes))
    }

    /// Our public value, `2^X mod P`.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(to_fixed(&BigUint::from(2u32).modpow(&self.0, &prime())))
    }

    /// The secret shared with the peer whose public value is `theirs`:
    /// `theirs^X mod P`. A value of 0, 1 or P-1 or more (which a peer
    /// could send to force a known secret) gives `None`.
    pub fn shared_secret(&self, theirs: &PublicKey) -> Option<SharedSecret> {
        let p = prime();
        let y = BigUint::from_bytes_be(&theirs.0);
        if y <= BigUint::from(1u32) || y >= &p - 1u32 {
            return None;
        }
        Some(SharedSecret(to_fixed(&y.modpow(&self.0, &p))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Values computed independently, with Python's `pow(2, x, P)` and
    /// `pow(yb, xa, P)` on the prime as the specification prints it.
    #[test]
    fn the_exchange_matches_an_independent_computation() {
        let xa = PrivateKey::from_be_bytes(&unhex("0102030405060708090a0b0c0d0e0f1011121314"));
        let xb = PrivateKey::from_be_bytes(&unhex("f1e2d3c4b5a69788796a5b4c3d2e1f0011223344"));
        let ya = xa.public_key();
        let yb = xb.public_key();
        assert_eq!(ya.0.to_vec(), unhex("96e112dab29e8c5272accb9b17b26887ce54a144a4e3b697c7d159b7a817e556b0918db2b4c658e02a87f7e5fb14b18a553e084cbf3dad2d30f16596ccb982d406258c61b30c5c1dae2ddc60bdbd48d79896312aad63238c39e1a633821eb693"));
        assert_eq!(yb.0.to_vec(), unhex("f96037d1b51dff8484acace608170e5e8473cbd4e0a64cee55fbb0eaf4df7d763d2325a69aba2916573ea7ea2b9b3fde834545aeaee73db770b8416195164840a0bfbc842e26b4cc34a0580b6442207d8721d88a5c8fb0e4d9913db4a4c70bc0"));
        let s = xa.shared_secret(&yb).unwrap();
        assert_eq!(s.0.to_vec(), unhex("b83ac3ff2dfa2a6822724aeb76cfa8bfeab9ee6d832789934cc17ce931d4ed40dc047ae12042777229512c2873f96f3297af4e6a8b26b4b64c729f24acdcaaf9ece602d6f21a0e8922fb3bbb671af0f6c80ca21baaab9843ee51adece24271f9"));
        assert_eq!(xb.shared_secret(&ya), Some(s));
    }

    #[test]
    fn small_values_keep_their_leading_zero_bytes() {
        // 2^100 is far below P: 96 bytes, all but the last 13 zero.
        let k = PrivateKey::from_be_bytes(&[100]);
        let y = k.public_key();
        let mut want = [0u8; KEY_LEN];
        want[KEY_LEN - 13] = 0x10;
        assert_eq!(y, PublicKey(want));
    }

    #[test]
    fn degenerate_public_values_are_refused() {
        let k = PrivateKey::from_be_bytes(&[5; 20]);
        let mut one = [0u8; KEY_LEN];
        one[KEY_LEN - 1] = 1;
        assert_eq!(k.shared_secret(&PublicKey([0; KEY_LEN])), None);
        assert_eq!(k.shared_secret(&PublicKey(one)), None);
        assert_eq!(k.shared_secret(&PublicKey(PRIME)), None);
        assert_eq!(k.shared_secret(&PublicKey([0xff; KEY_LEN])), None);
        let mut p_minus_1 = PRIME;
        p_minus_1[KEY_LEN - 1] -= 1;
        assert_eq!(k.shared_secret(&PublicKey(p_minus_1)), None);
        let mut two = [0u8; KEY_LEN];
        two[KEY_LEN - 1] = 2;
        assert!(k.shared_secret(&PublicKey(two)).is_some());
    }
}
