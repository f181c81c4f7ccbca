//! The 68-byte handshake that opens every peer connection (BEP 3), and the
//! reserved bits in it that announce protocol extensions.
//!
//! ```text
//! offset  size  field
//!      0     1  pstrlen = 19
//!      1    19  pstr = "BitTorrent protocol"
//!     20     8  reserved (extension bits)
//!     28    20  info_hash
//!     48    20  peer_id
//! ```
//!
//! An incoming connection cannot be assigned to a torrent until the info-hash
//! has arrived, and some clients send their peer id only after they have seen
//! our reply. So the handshake can also be read in two steps:
//! [`HandshakePrefix::decode`] takes the first 48 bytes, then
//! [`decode_peer_id`] the last 20.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use bytes::{Buf, BufMut, BytesMut};
use rivulet_core::{InfoHash, PeerId};

use crate::WireError;

/// The protocol string of BEP 3.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";

/// Length of a complete handshake.
pub const HANDSHAKE_LEN: usize = 68;

/// Length of the part of the handshake before the peer id (protocol string,
/// reserved bytes and info-hash).
pub const HANDSHAKE_PREFIX_LEN: usize = 48;

/// The eight reserved bytes of the handshake, read as a set of extension bits.
///
/// Bits rivulet does not know are kept as they arrived, so a decoded handshake
/// re-encodes to the same bytes. The named bits are the ones rivulet acts on:
///
/// | constant | byte | mask | extension |
/// | --- | --- | --- | --- |
/// | [`Reserved::EXTENSION_PROTOCOL`] | 5 | `0x10` | BEP 10 extension protocol |
/// | [`Reserved::FAST`] | 7 | `0x04` | BEP 6 fast extension |
/// | [`Reserved::DHT`] | 7 | `0x01` | BEP 5 DHT (the peer accepts `port` messages) |
///
/// ```
/// use rivulet_wire::Reserved;
///
/// let ours = Reserved::rivulet();
/// assert!(ours.contains(Reserved::EXTENSION_PROTOCOL | Reserved::FAST));
/// assert!(!ours.contains(Reserved::DHT));
/// assert_eq!(ours.to_bytes(), [0, 0, 0, 0, 0, 0x10, 0, 0x04]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Reserved(u64);

impl Reserved {
    /// No bits set.
    pub const NONE: Reserved = Reserved(0);
    /// BEP 10 extension protocol: byte 5, `0x10`.
    pub const EXTENSION_PROTOCOL: Reserved = Reserved(0x10 << 16);
    /// BEP 6 fast extension: byte 7, `0x04`.
    pub const FAST: Reserved = Reserved(0x04);
    /// BEP 5 DHT: byte 7, `0x01`.
    pub const DHT: Reserved = Reserved(0x01);

    /// What rivulet advertises: the extension protocol and the fast extension.
    /// DHT stays off until rivulet has a DHT node to tell peers about.
    #[must_use]
    pub const fn rivulet() -> Self {
        Reserved(Self::EXTENSION_PROTOCOL.0 | Self::FAST.0)
    }

    /// The set held by eight reserved bytes as they appear on the wire.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 8]) -> Self {
        Reserved(u64::from_be_bytes(bytes))
    }

    /// The eight bytes as they appear on the wire.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Whether every bit of `other` is set in `self`.
    #[must_use]
    pub const fn contains(self, other: Reserved) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: Reserved) {
        self.0 |= other.0;
    }

    /// Clears the bits of `other`.
    pub fn remove(&mut self, other: Reserved) {
        self.0 &= !other.0;
    }

    /// The bits set in both `self` and `other`: what two peers both support.
    #[must_use]
    pub const fn intersection(self, other: Reserved) -> Self {
        Reserved(self.0 & other.0)
    }

    /// Whether the BEP 10 extension-protocol bit is set.
    #[must_use]
    pub const fn extension_protocol(self) -> bool {
        self.contains(Self::EXTENSION_PROTOCOL)
    }

    /// Whether the BEP 6 fast-extension bit is set.
    #[must_use]
    pub const fn fast(self) -> bool {
        self.contains(Self::FAST)
    }

    /// Whether the BEP 5 DHT bit is set.
    #[must_use]
    pub const fn dht(self) -> bool {
        self.contains(Self::DHT)
    }
}

impl BitOr for Reserved {
    type Output = Reserved;
    fn bitor(self, rhs: Reserved) -> Reserved {
        Reserved(self.0 | rhs.0)
    }
}

impl BitOrAssign for Reserved {
    fn bitor_assign(&mut self, rhs: Reserved) {
        self.0 |= rhs.0;
    }
}

impl From<[u8; 8]> for Reserved {
    fn from(bytes: [u8; 8]) -> Self {
        Reserved::from_bytes(bytes)
    }
}

impl fmt::Debug for Reserved {
    /// Lists the named bits, then any other bits as hex: `Reserved(EXTENSION_PROTOCOL | FAST)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named = [
            (Self::EXTENSION_PROTOCOL, "EXTENSION_PROTOCOL"),
            (Self::FAST, "FAST"),
            (Self::DHT, "DHT"),
        ];
        f.write_str("Reserved(")?;
        let mut rest = *self;
        let mut first = true;
        for (bit, name) in named {
            if self.contains(bit) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                rest.remove(bit);
                first = false;
            }
        }
        if rest.0 != 0 || first {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "{:#018x}", rest.0)?;
        }
        f.write_str(")")
    }
}

/// The first 48 bytes of a handshake: enough to route an incoming connection to
/// its torrent before the peer id arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandshakePrefix {
    /// The extension bits the peer announced.
    pub reserved: Reserved,
    /// The torrent the peer wants.
    pub info_hash: InfoHash,
}

impl HandshakePrefix {
    /// Checks and reads the first 48 bytes of `bytes` without consuming them.
    ///
    /// Answers `Ok(None)` while fewer than 48 bytes have arrived and nothing is
    /// wrong yet. A wrong length byte or protocol string is reported as soon as
    /// the offending byte is in `bytes`, without waiting for the rest.
    ///
    /// # Errors
    ///
    /// [`WireError::BadProtocolLength`], [`WireError::BadProtocolString`].
    pub fn parse(bytes: &[u8]) -> Result<Option<Self>, WireError> {
        check_protocol(bytes)?;
        let Some((head, _)) = bytes.split_first_chunk::<HANDSHAKE_PREFIX_LEN>() else {
            return Ok(None);
        };
        // `head` is a 48-byte array, so the constant splits are in bounds and
        // the conversions (8 and 20 bytes) cannot fail; the fallbacks only keep
        // this code free of panics.
        let (_, rest) = head.split_at(20);
        let (reserved, info_hash) = rest.split_at(8);
        let reserved = Reserved::from_bytes(reserved.try_into().unwrap_or_default());
        let info_hash = InfoHash(info_hash.try_into().unwrap_or_default());
        Ok(Some(HandshakePrefix {
            reserved,
            info_hash,
        }))
    }

    /// Like [`HandshakePrefix::parse`], but removes the 48 bytes from `buf`
    /// when they are complete and valid.
    ///
    /// # Errors
    ///
    /// [`WireError::BadProtocolLength`], [`WireError::BadProtocolString`].
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, WireError> {
        let prefix = Self::parse(buf)?;
        if prefix.is_some() {
            // `parse` returned a prefix, so `buf` holds at least 48 bytes.
            buf.advance(HANDSHAKE_PREFIX_LEN);
        }
        Ok(prefix)
    }

    /// The complete handshake, once the peer id is known.
    #[must_use]
    pub fn with_peer_id(self, peer_id: PeerId) -> Handshake {
        Handshake {
            reserved: self.reserved,
            info_hash: self.info_hash,
            peer_id,
        }
    }
}

/// Removes and returns the 20-byte peer id at the front of `buf` (the second
/// step after [`HandshakePrefix::decode`]); `None` while fewer than 20 bytes
/// have arrived. Any 20 bytes are a valid peer id.
pub fn decode_peer_id(buf: &mut BytesMut) -> Option<PeerId> {
    let id = PeerId::from_slice(buf.get(..20)?).ok()?;
    buf.advance(20);
    Some(id)
}

/// A complete BEP 3 handshake.
///
/// ```
/// use bytes::BytesMut;
/// use rivulet_core::{InfoHash, PeerId};
/// use rivulet_wire::{Handshake, Reserved};
///
/// let ours = Handshake::new(InfoHash([7; 20]), PeerId([b'x'; 20]));
/// let mut buf = BytesMut::new();
/// ours.encode(&mut buf);
/// assert_eq!(buf.len(), 68);
///
/// // The peer's bytes may arrive in pieces.
/// let mut incoming = buf.split_to(30);
/// assert_eq!(Handshake::decode(&mut incoming).unwrap(), None);
/// incoming.extend_from_slice(&buf);
/// let theirs = Handshake::decode(&mut incoming).unwrap().unwrap();
/// assert_eq!(theirs, ours);
/// assert!(theirs.reserved.contains(Reserved::FAST));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// Extension bits.
    pub reserved: Reserved,
    /// The torrent this connection is for.
    pub info_hash: InfoHash,
    /// The sender's peer id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// Our handshake for `info_hash`, with the bits [`Reserved::rivulet`].
    #[must_use]
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        Handshake {
            reserved: Reserved::rivulet(),
            info_hash,
            peer_id,
        }
    }

    /// The 68 bytes on the wire.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        let (pstrlen, rest) = out.split_at_mut(1);
        let (pstr, rest) = rest.split_at_mut(19);
        let (reserved, rest) = rest.split_at_mut(8);
        let (info_hash, peer_id) = rest.split_at_mut(20);
        pstrlen.copy_from_slice(&[19]);
        pstr.copy_from_slice(PROTOCOL);
        reserved.copy_from_slice(&self.reserved.to_bytes());
        info_hash.copy_from_slice(&self.info_hash.0);
        peer_id.copy_from_slice(&self.peer_id.0);
        out
    }

    /// Appends the 68 bytes to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.to_bytes());
    }

    /// Checks and reads a handshake at the start of `bytes` without consuming
    /// it; bytes after the first 68 are ignored.
    ///
    /// Answers `Ok(None)` while fewer than 68 bytes have arrived and nothing is
    /// wrong yet; a bad length byte or protocol string is reported at once.
    ///
    /// # Errors
    ///
    /// [`WireError::BadProtocolLength`], [`WireError::BadProtocolString`].
    pub fn parse(bytes: &[u8]) -> Result<Option<Self>, WireError> {
        let Some(prefix) = HandshakePrefix::parse(bytes)? else {
            return Ok(None);
        };
        let peer_id = bytes
            .get(HANDSHAKE_PREFIX_LEN..HANDSHAKE_LEN)
            .and_then(|b| PeerId::from_slice(b).ok());
        Ok(peer_id.map(|id| prefix.with_peer_id(id)))
    }

    /// Like [`Handshake::parse`], but removes the 68 bytes from `buf` when the
    /// handshake is complete and valid. Whatever follows (the first messages)
    /// stays in `buf` for the [`MessageDecoder`](crate::MessageDecoder).
    ///
    /// # Errors
    ///
    /// [`WireError::BadProtocolLength`], [`WireError::BadProtocolString`].
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, WireError> {
        let hs = Self::parse(buf)?;
        if hs.is_some() {
            // `parse` returned a handshake, so `buf` holds at least 68 bytes.
            buf.advance(HANDSHAKE_LEN);
        }
        Ok(hs)
    }
}

/// Checks the protocol-string length byte and as much of the protocol string as
/// `bytes` holds.
fn check_protocol(bytes: &[u8]) -> Result<(), WireError> {
    let Some((&pstrlen, rest)) = bytes.split_first() else {
        return Ok(());
    };
    if usize::from(pstrlen) != PROTOCOL.len() {
        return Err(WireError::BadProtocolLength(pstrlen));
    }
    let seen = rest.len().min(PROTOCOL.len());
    if rest.get(..seen) != PROTOCOL.get(..seen) {
        return Err(WireError::BadProtocolString);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handshake {
        Handshake {
            reserved: Reserved::rivulet(),
            info_hash: InfoHash([0xaa; 20]),
            peer_id: PeerId(*b"-RV0100-abcdefghijkl"),
        }
    }

    #[test]
    fn exact_bytes() {
        let b = sample().to_bytes();
        assert_eq!(b[0], 19);
        assert_eq!(&b[1..20], b"BitTorrent protocol");
        assert_eq!(&b[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        assert_eq!(&b[28..48], &[0xaa; 20]);
        assert_eq!(&b[48..68], b"-RV0100-abcdefghijkl");
    }

    #[test]
    fn reserved_bits_positions() {
        assert_eq!(
            Reserved::EXTENSION_PROTOCOL.to_bytes(),
            [0, 0, 0, 0, 0, 0x10, 0, 0]
        );
        assert_eq!(Reserved::FAST.to_bytes(), [0, 0, 0, 0, 0, 0, 0, 0x04]);
        assert_eq!(Reserved::DHT.to_bytes(), [0, 0, 0, 0, 0, 0, 0, 0x01]);
        let mut r = Reserved::NONE;
        r |= Reserved::DHT;
        r.insert(Reserved::FAST);
        assert!(r.dht() && r.fast() && !r.extension_protocol());
        r.remove(Reserved::DHT);
        assert!(!r.dht());
        // Unknown bits (here libtorrent's v2 upgrade bit and Azureus' bit) survive.
        let theirs = Reserved::from_bytes([0x80, 0, 0, 0, 0, 0x10, 0, 0x15]);
        assert_eq!(theirs.to_bytes(), [0x80, 0, 0, 0, 0, 0x10, 0, 0x15]);
        assert_eq!(
            theirs.intersection(Reserved::rivulet()),
            Reserved::rivulet()
        );
        assert_eq!(
            format!("{theirs:?}"),
            "Reserved(EXTENSION_PROTOCOL | FAST | DHT | 0x8000000000000010)"
        );
        assert_eq!(
            format!("{:?}", Reserved::NONE),
            "Reserved(0x0000000000000000)"
        );
    }

    #[test]
    fn decode_one_byte_at_a_time() {
        let bytes = sample().to_bytes();
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            assert_eq!(Handshake::decode(&mut buf), Ok(None), "at {i}");
            buf.put_u8(*b);
        }
        buf.put_slice(b"\0\0\0\0");
        assert_eq!(Handshake::decode(&mut buf), Ok(Some(sample())));
        assert_eq!(&buf[..], b"\0\0\0\0");
    }

    #[test]
    fn two_step() {
        let bytes = sample().to_bytes();
        let mut buf = BytesMut::from(&bytes[..47]);
        assert_eq!(HandshakePrefix::decode(&mut buf), Ok(None));
        buf.put_slice(&bytes[47..50]);
        let prefix = HandshakePrefix::decode(&mut buf).unwrap().unwrap();
        assert_eq!(prefix.info_hash, InfoHash([0xaa; 20]));
        assert_eq!(prefix.reserved, Reserved::rivulet());
        assert_eq!(buf.len(), 2);
        assert_eq!(decode_peer_id(&mut buf), None);
        buf.put_slice(&bytes[50..]);
        let id = decode_peer_id(&mut buf).unwrap();
        assert_eq!(prefix.with_peer_id(id), sample());
        assert!(buf.is_empty());
    }

    #[test]
    fn malformed_reported_early() {
        assert_eq!(
            Handshake::parse(&[18]),
            Err(WireError::BadProtocolLength(18))
        );
        assert_eq!(Handshake::parse(&[]), Ok(None));
        assert_eq!(Handshake::parse(b"\x13Bit"), Ok(None));
        assert_eq!(
            Handshake::parse(b"\x13BitX"),
            Err(WireError::BadProtocolString)
        );
        let mut bytes = sample().to_bytes();
        bytes[19] = b'L';
        assert_eq!(Handshake::parse(&bytes), Err(WireError::BadProtocolString));
        // An HTTP request or a TLS hello is refused at the first byte.
        assert_eq!(
            Handshake::parse(b"GET / HTTP/1.1"),
            Err(WireError::BadProtocolLength(b'G'))
        );
        // The buffer is left alone on error.
        let mut buf = BytesMut::from(&b"\x14whatever"[..]);
        assert!(Handshake::decode(&mut buf).is_err());
        assert_eq!(buf.len(), 9);
    }
}
