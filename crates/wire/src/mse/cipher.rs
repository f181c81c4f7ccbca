//! The RC4 keystreams of an encrypted connection.

use rc4::{KeyInit, Rc4, StreamCipher};
use sha1::{Digest, Sha1};

use super::dh::SharedSecret;
use rivulet_core::InfoHash;

/// Keystream bytes thrown away before the first use, as the specification
/// requires (the start of an RC4 keystream leaks its key).
const DISCARD: usize = 1024;

/// One direction's RC4 keystream. Encrypting and decrypting are the same
/// operation: XOR with the next keystream bytes.
pub struct Rc4Stream(Rc4);

impl std::fmt::Debug for Rc4Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rc4Stream(..)")
    }
}

impl Rc4Stream {
    /// The keystream for `HASH(label, S, SKEY)`, its first 1024 bytes
    /// already thrown away.
    pub(crate) fn derive(label: &[u8; 4], secret: &SharedSecret, skey: &InfoHash) -> Self {
        let key: [u8; 20] = Sha1::new()
            .chain_update(label)
            .chain_update(secret.0)
            .chain_update(skey.as_bytes())
            .finalize()
            .into();
        Rc4Stream::from_key(&key)
    }

    /// The keystream for a 20-byte key, its first 1024 bytes thrown away.
    pub fn from_key(key: &[u8; 20]) -> Self {
        let mut rc4 = <Rc4 as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("RC4 takes keys of 1 to 256 bytes"));
        let mut discard = [0u8; DISCARD];
        rc4.apply_keystream(&mut discard);
        Rc4Stream(rc4)
    }

    /// Encrypts or decrypts `data` in place, moving the keystream on by its
    /// length.
    pub fn apply(&mut self, data: &mut [u8]) {
        self.0.apply_keystream(data);
    }
}

/// The two keystreams of an RC4 connection.
#[derive(Debug)]
pub struct Ciphers {
    /// For what we send.
    pub encrypt: Rc4Stream,
    /// For what we receive.
    pub decrypt: Rc4Stream,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6229's test vector for the 40-bit key 0x0102030405: the
    /// keystream at offset 1024 (the first bytes MSE uses, after the
    /// discard) is given there, so the discard is checked too.
    #[test]
    fn the_keystream_after_the_discard_matches_rfc_6229() {
        let rc4 = <Rc4 as KeyInit>::new_from_slice(&[1, 2, 3, 4, 5]).unwrap();
        let mut s = Rc4Stream(rc4);
        let mut skip = [0u8; DISCARD];
        s.apply(&mut skip);
        let mut ks = [0u8; 16];
        s.apply(&mut ks);
        assert_eq!(
            ks,
            [
                0x30, 0xab, 0xbc, 0xc7, 0xc2, 0x0b, 0x01, 0x60, 0x9f, 0x23, 0xee, 0x2d, 0x5f, 0x6b,
                0xb7, 0xdf
            ]
        );
    }
}
