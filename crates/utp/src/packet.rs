//! The uTP packet codec (BEP 29): the 20-byte header, the extension chain
//! and the payload.
//!
//! ```text
//! 0       4       8               16              24              32
//! +-------+-------+---------------+---------------+---------------+
//! | type  | ver   | extension     | connection_id                 |
//! +-------+-------+---------------+---------------+---------------+
//! | timestamp_microseconds                                        |
//! +---------------+---------------+---------------+---------------+
//! | timestamp_difference_microseconds                             |
//! +---------------+---------------+---------------+---------------+
//! | wnd_size                                                      |
//! +---------------+---------------+---------------+---------------+
//! | seq_nr                        | ack_nr                        |
//! +---------------+---------------+---------------+---------------+
//! ```
//!
//! Every field is big-endian. Each extension is `next_extension: u8`,
//! `len: u8`, then `len` bytes; the header's `extension` byte names the
//! first one, and 0 ends the chain. Extension 1 is the selective ACK: a
//! bitmask whose bit 0 (the least significant bit of the first byte) stands
//! for `ack_nr + 2` (`ack_nr + 1` is the packet known to be missing).
//! Other extensions (libtorrent's close reason 3, uTorrent's extension bits
//! 2) are skipped.
//!
//! [`decode`] never panics: every read is checked, and the chain is
//! bounded by the datagram's length and by [`MAX_EXTENSIONS`].

use thiserror::Error;

/// Size of the fixed header.
pub const HEADER_LEN: usize = 20;
/// The only protocol version (BEP 29).
pub const VERSION: u8 = 1;
/// Extension number of the selective ACK.
pub const EXT_SACK: u8 = 1;
/// Most extensions read from one packet; a longer chain is malformed (real
/// implementations send at most two).
pub const MAX_EXTENSIONS: usize = 8;
/// Longest selective-ACK bitmask we send, in bytes (256 packets past
/// `ack_nr + 1`). Senders only need to learn about the first holes.
pub const MAX_SACK_LEN: usize = 32;

/// The packet types of BEP 29.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `ST_DATA` (0): carries payload and consumes a sequence number.
    Data,
    /// `ST_FIN` (1): the sender's last packet; its `seq_nr` is the end of
    /// its stream.
    Fin,
    /// `ST_STATE` (2): an ACK without payload; does not consume a sequence
    /// number.
    State,
    /// `ST_RESET` (3): ends the connection at once.
    Reset,
    /// `ST_SYN` (4): opens a connection; consumes a sequence number.
    Syn,
}

impl PacketType {
    /// The type's number on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            PacketType::Data => 0,
            PacketType::Fin => 1,
            PacketType::State => 2,
            PacketType::Reset => 3,
            PacketType::Syn => 4,
        }
    }

    /// The type with this number, if there is one.
    pub fn from_u8(n: u8) -> Option<Self> {
        Some(match n {
            0 => PacketType::Data,
            1 => PacketType::Fin,
            2 => PacketType::State,
            3 => PacketType::Reset,
            4 => PacketType::Syn,
            _ => return None,
        })
    }
}

/// The fixed header of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The packet's type.
    pub ty: PacketType,
    /// Connection id: the receiver's `recv_id`, except in a SYN, which
    /// carries the sender's own `recv_id` (see the crate doc).
    pub connection_id: u16,
    /// The sender's clock in microseconds (any epoch, wrapping).
    pub timestamp_us: u32,
    /// The sender's clock minus the `timestamp_us` of the last packet it
    /// received (wrapping): the one-way delay of the reverse path plus the
    /// clocks' offset. 0 when it has no sample.
    pub timestamp_diff_us: u32,
    /// Bytes the sender can still take into its receive buffer.
    pub wnd_size: u32,
    /// Sequence number of this packet (for `ST_STATE`: of the next packet
    /// the sender will send).
    pub seq_nr: u16,
    /// The last sequence number the sender received in order.
    pub ack_nr: u16,
}

/// A decoded packet, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: Header,
    /// The selective-ACK bitmask, if the packet carries one (bit 0 of byte
    /// 0 stands for `ack_nr + 2`).
    pub sack: Option<&'a [u8]>,
    /// The payload.
    pub payload: &'a [u8],
}

/// Why bytes are not a uTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Fewer than [`HEADER_LEN`] bytes.
    #[error("datagram shorter than the uTP header ({0} bytes)")]
    TooShort(usize),
    /// The version nibble is not 1.
    #[error("unsupported uTP version {0}")]
    BadVersion(u8),
    /// The type nibble is not one of the five types.
    #[error("unknown uTP packet type {0}")]
    BadType(u8),
    /// An extension runs past the end of the datagram.
    #[error("truncated extension header")]
    TruncatedExtension,
    /// More than [`MAX_EXTENSIONS`] extensions.
    #[error("too many extensions")]
    TooManyExtensions,
    /// A selective ACK with an empty bitmask.
    #[error("empty selective ACK")]
    EmptySack,
}

/// Whether a datagram looks like uTP: at least a header, version 1 and a
/// known type. A DHT message (bencode) starts with `d` (0x64: type 6,
/// version 4), so a driver that shares one UDP port between DHT and uTP
/// can route with this test alone.
pub fn is_utp(datagram: &[u8]) -> bool {
    match datagram.first() {
        Some(&b) => {
            datagram.len() >= HEADER_LEN
                && b & 0x0f == VERSION
                && PacketType::from_u8(b >> 4).is_some()
        }
        None => false,
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, x, y, z]) => u32::from_be_bytes([a, x, y, z]),
        _ => 0,
    }
}

/// Decodes a datagram.
pub fn decode(datagram: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let Some((head, mut rest)) = datagram.split_at_checked(HEADER_LEN) else {
        return Err(DecodeError::TooShort(datagram.len()));
    };
    let first = head.first().copied().unwrap_or(0);
    if first & 0x0f != VERSION {
        return Err(DecodeError::BadVersion(first & 0x0f));
    }
    let ty = PacketType::from_u8(first >> 4).ok_or(DecodeError::BadType(first >> 4))?;
    let header = Header {
        ty,
        connection_id: be16(head, 2),
        timestamp_us: be32(head, 4),
        timestamp_diff_us: be32(head, 8),
        wnd_size: be32(head, 12),
        seq_nr: be16(head, 16),
        ack_nr: be16(head, 18),
    };
    let mut ext = head.get(1).copied().unwrap_or(0);
    let mut sack = None;
    let mut count = 0;
    while ext != 0 {
        count += 1;
        if count > MAX_EXTENSIONS {
            return Err(DecodeError::TooManyExtensions);
        }
        let Some((&[next, len], after)) = rest.split_first_chunk::<2>() else {
            return Err(DecodeError::TruncatedExtension);
        };
        let Some((body, after)) = after.split_at_checked(usize::from(len)) else {
            return Err(DecodeError::TruncatedExtension);
        };
        if ext == EXT_SACK {
            // BEP 29 asks for a multiple of 4 bytes, but libtorrent sends
            // whatever length covers its reorder buffer: accept any length
            // but zero.
            if body.is_empty() {
                return Err(DecodeError::EmptySack);
            }
            sack = Some(body);
        }
        rest = after;
        ext = next;
    }
    Ok(Packet {
        header,
        sack,
        payload: rest,
    })
}

/// Writes a header (and a selective ACK, if given) to the end of `out`.
/// The caller appends the payload. `sack` must be 1 to 255 bytes long; an
/// empty slice means no selective ACK.
pub fn encode_header(header: &Header, sack: &[u8], out: &mut Vec<u8>) {
    let has_sack = !sack.is_empty();
    out.push(header.ty.to_u8() << 4 | VERSION);
    out.push(if has_sack { EXT_SACK } else { 0 });
    out.extend_from_slice(&header.connection_id.to_be_bytes());
    out.extend_from_slice(&header.timestamp_us.to_be_bytes());
    out.extend_from_slice(&header.timestamp_diff_us.to_be_bytes());
    out.extend_from_slice(&header.wnd_size.to_be_bytes());
    out.extend_from_slice(&header.seq_nr.to_be_bytes());
    out.extend_from_slice(&header.ack_nr.to_be_bytes());
    if has_sack {
        let len = u8::try_from(sack.len()).unwrap_or(u8::MAX);
        out.push(0);
        out.push(len);
        out.extend(sack.iter().take(usize::from(len)));
    }
}

/// Encodes a whole packet into a new vector (tests and tools; the
/// connection writes into a reused buffer with [`encode_header`]).
pub fn encode(packet: &Packet<'_>) -> Vec<u8> {
    let sack = packet.sack.unwrap_or(&[]);
    let mut out = Vec::with_capacity(HEADER_LEN + 2 + sack.len() + packet.payload.len());
    encode_header(&packet.header, sack, &mut out);
    out.extend_from_slice(packet.payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ty: PacketType) -> Header {
        Header {
            ty,
            connection_id: 0x1234,
            timestamp_us: 0xdead_beef,
            timestamp_diff_us: 7,
            wnd_size: 65536,
            seq_nr: 0xfffe,
            ack_nr: 3,
        }
    }

    #[test]
    fn header_layout_matches_bep29() {
        let p = Packet {
            header: header(PacketType::Syn),
            sack: None,
            payload: b"",
        };
        let bytes = encode(&p);
        assert_eq!(
            bytes,
            [
                0x41, 0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 7, 0, 1, 0, 0, 0xff, 0xfe, 0,
                3
            ]
        );
        assert!(is_utp(&bytes));
        assert_eq!(decode(&bytes), Ok(p));
    }

    #[test]
    fn sack_and_unknown_extensions() {
        // ext 2 (uTorrent's extension bits, 8 bytes) then a 4-byte SACK.
        let mut b = encode(&Packet {
            header: header(PacketType::State),
            sack: None,
            payload: b"",
        });
        b[1] = 2;
        b.extend_from_slice(&[1, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0, 4, 0b101, 0, 0, 0x80]);
        b.extend_from_slice(b"xy");
        let p = decode(&b).unwrap();
        assert_eq!(p.sack, Some(&[0b101, 0, 0, 0x80][..]));
        assert_eq!(p.payload, b"xy");
    }

    #[test]
    fn malformed() {
        assert_eq!(decode(&[0x41; 19]), Err(DecodeError::TooShort(19)));
        let mut b = encode(&Packet {
            header: header(PacketType::Data),
            sack: None,
            payload: b"",
        });
        b[0] = 0x42;
        assert_eq!(decode(&b), Err(DecodeError::BadVersion(2)));
        b[0] = 0x51;
        assert_eq!(decode(&b), Err(DecodeError::BadType(5)));
        b[0] = 0x01;
        b[1] = 9;
        assert_eq!(decode(&b), Err(DecodeError::TruncatedExtension));
        b.extend_from_slice(&[0, 5, 1]);
        assert_eq!(decode(&b), Err(DecodeError::TruncatedExtension));
        // A DHT query is never uTP.
        assert!(!is_utp(
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
        ));
    }
}
