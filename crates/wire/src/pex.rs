//! BEP 11 `ut_pex`: peers tell each other about other peers in the swarm.
//!
//! The payload is a bencoded dictionary of compact peer lists: `added` and
//! `dropped` (6 bytes per peer: IPv4 address and port), `added6` and `dropped6`
//! (18 bytes: IPv6 address and port), and `added.f` / `added6.f` with one flags
//! byte per added peer.

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::BitOr;

use bytes::Bytes;
use rivulet_bencode::{OwnedValue, Value};

use crate::extended::{decode_dict, ipv4, ipv6};
use crate::{Message, WireError};

/// Most added peers, and most dropped peers, taken from one message (IPv4 and
/// IPv6 together, IPv4 first); the rest are ignored. libtorrent sends at most
/// 100 added peers per message and keeps at most 200 PEX peers per connection.
pub const MAX_PEX_PEERS: usize = 200;

/// The flags byte BEP 11 attaches to each added peer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// `0x01`: the peer prefers encrypted connections.
    pub const ENCRYPTION: PexFlags = PexFlags(0x01);
    /// `0x02`: the peer is a seed (or upload-only).
    pub const SEED: PexFlags = PexFlags(0x02);
    /// `0x04`: the peer supports uTP.
    pub const UTP: PexFlags = PexFlags(0x04);
    /// `0x08`: the peer supports the `ut_holepunch` extension.
    pub const HOLEPUNCH: PexFlags = PexFlags(0x08);
    /// `0x10`: the sender connected out to the peer, so it is reachable.
    pub const REACHABLE: PexFlags = PexFlags(0x10);

    /// Whether every bit of `other` is set.
    #[must_use]
    pub const fn contains(self, other: PexFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for PexFlags {
    type Output = PexFlags;
    fn bitor(self, rhs: PexFlags) -> PexFlags {
        PexFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for PexFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PexFlags({:#04x})", self.0)
    }
}

/// A peer announced in `added` / `added6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PexPeer {
    /// Where to connect.
    pub addr: SocketAddr,
    /// What the sender knows about the peer.
    pub flags: PexFlags,
}

/// A BEP 11 message.
///
/// Decoding is tolerant and bounded: a missing or mistyped key counts as an
/// empty list, a trailing partial entry is ignored, a missing or short flags
/// string gives flags 0, and at most [`MAX_PEX_PEERS`] added and
/// [`MAX_PEX_PEERS`] dropped peers are kept. Addresses are passed on as
/// received; filtering (port 0, unspecified or multicast addresses, our own
/// address) is the engine's job.
///
/// ```
/// use rivulet_wire::{PexFlags, PexMessage, PexPeer};
///
/// let pex = PexMessage::decode(b"d5:added6:\x7f\x00\x00\x02\x1a\xe17:added.f1:\x02e").unwrap();
/// assert_eq!(
///     pex.added,
///     vec![PexPeer { addr: "127.0.0.2:6881".parse().unwrap(), flags: PexFlags::SEED }]
/// );
/// assert!(pex.dropped.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PexMessage {
    /// Peers the sender connected to since its last message.
    pub added: Vec<PexPeer>,
    /// Peers the sender disconnected from since its last message.
    pub dropped: Vec<SocketAddr>,
}

impl PexMessage {
    /// Reads a `ut_pex` payload, with the tolerance and bounds described on
    /// the type.
    ///
    /// # Errors
    ///
    /// [`WireError::Bencode`] if `payload` is not one bencoded value,
    /// [`WireError::NotADictionary`] if it is not a dictionary.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let d = decode_dict(payload)?;
        let bytes = |key: &[u8]| d.get(key).and_then(Value::as_bytes).unwrap_or_default();
        let mut msg = PexMessage::default();

        let mut add = |compact: &[u8], flags: &[u8], size: usize| {
            for (i, entry) in compact.chunks_exact(size).enumerate() {
                if msg.added.len() >= MAX_PEX_PEERS {
                    break;
                }
                if let Some(addr) = compact_addr(entry) {
                    let flags = PexFlags(flags.get(i).copied().unwrap_or(0));
                    msg.added.push(PexPeer { addr, flags });
                }
            }
        };
        add(bytes(b"added"), bytes(b"added.f"), 6);
        add(bytes(b"added6"), bytes(b"added6.f"), 18);

        for (compact, size) in [(bytes(b"dropped"), 6), (bytes(b"dropped6"), 18)] {
            let room = MAX_PEX_PEERS.saturating_sub(msg.dropped.len());
            msg.dropped.extend(
                compact
                    .chunks_exact(size)
                    .filter_map(compact_addr)
                    .take(room),
            );
        }
        Ok(msg)
    }

    /// The message as a bencode dictionary. All six keys are written, empty
    /// ones too, and `added.f` always has one byte per `added` peer
    /// (libtorrent ignores `added` otherwise). IPv4 addresses go in `added` /
    /// `dropped`, IPv6 ones (including IPv4-mapped) in `added6` / `dropped6`.
    /// Everything given is written: keep to 100 added peers per message, as
    /// libtorrent does.
    #[must_use]
    pub fn to_value(&self) -> OwnedValue {
        let (mut a4, mut f4, mut a6, mut f6) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for p in &self.added {
            match p.addr {
                SocketAddr::V4(a) => {
                    put_v4(&mut a4, a);
                    f4.push(p.flags.0);
                }
                SocketAddr::V6(a) => {
                    put_v6(&mut a6, a);
                    f6.push(p.flags.0);
                }
            }
        }
        let (mut d4, mut d6) = (Vec::new(), Vec::new());
        for addr in &self.dropped {
            match addr {
                SocketAddr::V4(a) => put_v4(&mut d4, *a),
                SocketAddr::V6(a) => put_v6(&mut d6, *a),
            }
        }
        OwnedValue::dict()
            .with("added", OwnedValue::Bytes(a4))
            .with("added.f", OwnedValue::Bytes(f4))
            .with("added6", OwnedValue::Bytes(a6))
            .with("added6.f", OwnedValue::Bytes(f6))
            .with("dropped", OwnedValue::Bytes(d4))
            .with("dropped6", OwnedValue::Bytes(d6))
    }

    /// The bencoded payload.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_value().to_bytes()
    }

    /// The `extended` message carrying this payload, for a peer that listed
    /// `ut_pex` with id `ext_id` in its extended handshake.
    #[must_use]
    pub fn to_message(&self, ext_id: u8) -> Message {
        Message::Extended {
            id: ext_id,
            payload: Bytes::from(self.to_bytes()),
        }
    }
}

/// A compact peer: 4 address bytes and a big-endian port, or 16 and a port.
fn compact_addr(entry: &[u8]) -> Option<SocketAddr> {
    let (ip, port) = entry.split_last_chunk::<2>()?;
    let port = u16::from_be_bytes(*port);
    match ip.len() {
        4 => ipv4(ip).map(|ip| SocketAddr::V4(SocketAddrV4::new(ip, port))),
        16 => ipv6(ip).map(|ip| SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))),
        _ => None,
    }
}

fn put_v4(out: &mut Vec<u8>, a: SocketAddrV4) {
    out.extend_from_slice(&a.ip().octets());
    out.extend_from_slice(&a.port().to_be_bytes());
}

fn put_v6(out: &mut Vec<u8>, a: SocketAddrV6) {
    out.extend_from_slice(&a.ip().octets());
    out.extend_from_slice(&a.port().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str, flags: u8) -> PexPeer {
        PexPeer {
            addr: s.parse().unwrap(),
            flags: PexFlags(flags),
        }
    }

    #[test]
    fn exact_bytes_and_round_trip() {
        let msg = PexMessage {
            added: vec![peer("1.2.3.4:258", 0x12), peer("[::1]:80", 0x01)],
            dropped: vec!["5.6.7.8:1".parse().unwrap()],
        };
        let b = msg.to_bytes();
        let mut want = b"d5:added6:\x01\x02\x03\x04\x01\x027:added.f1:\x126:added618:".to_vec();
        want.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        want.extend_from_slice(
            b"\x00\x508:added6.f1:\x017:dropped6:\x05\x06\x07\x08\x00\x018:dropped60:e",
        );
        assert_eq!(b, want);
        assert_eq!(PexMessage::decode(&b), Ok(msg.clone()));
        assert!(matches!(msg.to_message(1), Message::Extended { id: 1, .. }));
        assert!(PexFlags(0x12).contains(PexFlags::SEED | PexFlags::REACHABLE));
    }

    #[test]
    fn tolerant() {
        // Partial trailing entry, missing flags, wrong types.
        let m = PexMessage::decode(
            b"d5:added8:\x01\x02\x03\x04\x00\x07\xff\xff6:added6i3e7:droppedle8:dropped65:abcdee",
        )
        .unwrap();
        assert_eq!(m.added, vec![peer("1.2.3.4:7", 0)]);
        assert!(m.dropped.is_empty());
        assert_eq!(PexMessage::decode(b"de"), Ok(PexMessage::default()));
        assert_eq!(PexMessage::decode(b"le"), Err(WireError::NotADictionary));
        assert!(PexMessage::decode(b"d5:added").is_err());
    }

    #[test]
    fn bounded() {
        let added: Vec<u8> = (0..300u32)
            .flat_map(|i| {
                let mut e = i.to_be_bytes().to_vec();
                e.extend_from_slice(&[0, 1]);
                e
            })
            .collect();
        let payload = OwnedValue::dict()
            .with("added", OwnedValue::Bytes(added.clone()))
            .with("added6", OwnedValue::Bytes(vec![1; 18 * 3]))
            .with("dropped", OwnedValue::Bytes(added[..6 * 150].to_vec()))
            .with("dropped6", OwnedValue::Bytes(vec![2; 18 * 100]))
            .to_bytes();
        let m = PexMessage::decode(&payload).unwrap();
        assert_eq!(m.added.len(), MAX_PEX_PEERS);
        assert!(m.added.iter().all(|p| p.addr.is_ipv4()));
        assert_eq!(m.dropped.len(), MAX_PEX_PEERS);
        assert_eq!(m.dropped.iter().filter(|a| a.is_ipv6()).count(), 50);
    }
}
