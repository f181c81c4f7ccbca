//! Info-hashes: v1 (SHA-1) and v2 (SHA-256, BEP 52) of the bencoded `info`
//! dictionary's original bytes.

use std::fmt;
use std::str::FromStr;

use sha1::{Digest, Sha1};

/// A 20-byte BitTorrent v1 info-hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

/// Why a string is not an info-hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoHashParseError {
    /// The text is neither 40 hex digits nor 32 base32 characters.
    #[error("an info-hash is 40 hex digits or 32 base32 characters, got {0} characters")]
    BadLength(usize),
    /// The text has the right length but characters outside its alphabet.
    #[error("info-hash contains characters that are not {0}")]
    BadDigit(&'static str),
}

impl InfoHash {
    /// The SHA-1 of `info_bytes`, which must be the info dictionary exactly as it
    /// appeared in the .torrent (never a re-encoding: re-encoding can change the bytes).
    pub fn from_info_bytes(info_bytes: &[u8]) -> Self {
        InfoHash(Sha1::digest(info_bytes).into())
    }

    /// The 20 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// Lower-case hex, 40 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Upper-case RFC 4648 base32 without padding, 32 characters (the older magnet form).
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    /// Parses 40 hex digits (any case) or 32 base32 characters (any case).
    pub fn from_hex_or_base32(s: &str) -> Result<Self, InfoHashParseError> {
        let mut out = [0u8; 20];
        match s.len() {
            40 => {
                hex::decode_to_slice(s, &mut out)
                    .map_err(|_| InfoHashParseError::BadDigit("hex digits"))?;
            }
            32 => {
                let upper = s.to_ascii_uppercase();
                let n = data_encoding::BASE32_NOPAD
                    .decode_mut(upper.as_bytes(), &mut out)
                    .map_err(|_| InfoHashParseError::BadDigit("base32 characters"))?;
                debug_assert_eq!(n, 20);
            }
            n => return Err(InfoHashParseError::BadLength(n)),
        }
        Ok(InfoHash(out))
    }
}

impl FromStr for InfoHash {
    type Err = InfoHashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex_or_base32(s)
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

/// A 32-byte BitTorrent v2 info-hash (BEP 52): SHA-256 of the info dictionary.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHashV2(pub [u8; 32]);

impl InfoHashV2 {
    /// The SHA-256 of `info_bytes`, the info dictionary exactly as it appeared.
    pub fn from_info_bytes(info_bytes: &[u8]) -> Self {
        use sha2::Sha256;
        InfoHashV2(Sha256::digest(info_bytes).into())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for InfoHashV2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHashV2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHashV2({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base32_round_trip() {
        let h = InfoHash::from_info_bytes(b"d4:name1:ae");
        assert_eq!(h.to_hex().parse::<InfoHash>().unwrap(), h);
        assert_eq!(h.to_base32().parse::<InfoHash>().unwrap(), h);
        assert_eq!(h.to_base32().to_lowercase().parse::<InfoHash>().unwrap(), h);
        assert_eq!(h.to_hex().to_uppercase().parse::<InfoHash>().unwrap(), h);
    }

    #[test]
    fn sha1_of_known_bytes() {
        // SHA-1("abc") from FIPS 180-1.
        assert_eq!(
            InfoHash::from_info_bytes(b"abc").to_hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn sha256_of_known_bytes() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(
            InfoHashV2::from_info_bytes(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!(
            "abc".parse::<InfoHash>(),
            Err(InfoHashParseError::BadLength(3))
        );
        assert!("zz".repeat(20).parse::<InfoHash>().is_err());
        assert!("1".repeat(32).parse::<InfoHash>().is_err());
    }
}
