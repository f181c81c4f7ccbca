//! Peer wire messages (BEP 3, BEP 6 fast extension, BEP 10 extended) and
//! their encoding.
//!
//! Every message after the handshake is framed as a 4-byte big-endian length
//! followed by that many bytes: a one-byte message id and the payload. A
//! length of 0 is a keep-alive.

use bytes::{BufMut, Bytes, BytesMut};

use crate::Bitfield;

/// Message ids.
pub mod id {
    /// `choke` (BEP 3).
    pub const CHOKE: u8 = 0;
    /// `unchoke` (BEP 3).
    pub const UNCHOKE: u8 = 1;
    /// `interested` (BEP 3).
    pub const INTERESTED: u8 = 2;
    /// `not interested` (BEP 3).
    pub const NOT_INTERESTED: u8 = 3;
    /// `have` (BEP 3).
    pub const HAVE: u8 = 4;
    /// `bitfield` (BEP 3).
    pub const BITFIELD: u8 = 5;
    /// `request` (BEP 3).
    pub const REQUEST: u8 = 6;
    /// `piece` (BEP 3).
    pub const PIECE: u8 = 7;
    /// `cancel` (BEP 3).
    pub const CANCEL: u8 = 8;
    /// `port` (BEP 5: the sender's DHT port).
    pub const PORT: u8 = 9;
    /// `suggest piece` (BEP 6).
    pub const SUGGEST_PIECE: u8 = 13;
    /// `have all` (BEP 6).
    pub const HAVE_ALL: u8 = 14;
    /// `have none` (BEP 6).
    pub const HAVE_NONE: u8 = 15;
    /// `reject request` (BEP 6).
    pub const REJECT_REQUEST: u8 = 16;
    /// `allowed fast` (BEP 6).
    pub const ALLOWED_FAST: u8 = 17;
    /// `extended` (BEP 10).
    pub const EXTENDED: u8 = 20;
}

/// The usual block size: 16 KiB. Clients request blocks of this size and
/// libtorrent, among others, refuses requests for larger ones.
pub const BLOCK_LEN: u32 = 16 * 1024;

/// Bytes before the block in a `piece` message: length prefix (4), id (1),
/// piece index (4) and offset (4).
pub const PIECE_HEADER_LEN: usize = 13;

/// A block: `length` bytes at `offset` within piece `piece`. The payload of
/// `request`, `cancel` and `reject request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRequest {
    /// Zero-based piece index.
    pub piece: u32,
    /// Byte offset of the block within the piece.
    pub offset: u32,
    /// Length of the block in bytes.
    pub length: u32,
}

/// One peer wire message.
///
/// Decoded by [`MessageDecoder`](crate::MessageDecoder), written by
/// [`Message::encode`]. Payloads of variable size are [`Bytes`]: decoding a
/// `piece` message hands out the block as a view of the receive buffer, without
/// copying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Length 0, no id: keeps an idle connection open.
    KeepAlive,
    /// The sender will not serve requests.
    Choke,
    /// The sender will serve requests.
    Unchoke,
    /// The sender wants pieces the receiver has.
    Interested,
    /// The sender wants nothing from the receiver.
    NotInterested,
    /// The sender has completed and checked a piece.
    Have {
        /// Piece index.
        piece: u32,
    },
    /// The pieces the sender has, MSB first, with spare bits zero. Only valid
    /// as the first message after the handshake. Kept as raw bytes because the
    /// decoder does not know the piece count; check it with
    /// [`Bitfield::from_bytes`].
    Bitfield(Bytes),
    /// Asks for a block.
    Request(BlockRequest),
    /// A block of data.
    Piece {
        /// Piece index.
        piece: u32,
        /// Byte offset of the block within the piece.
        offset: u32,
        /// The block.
        data: Bytes,
    },
    /// Withdraws a request.
    Cancel(BlockRequest),
    /// The sender's DHT port (BEP 5).
    Port(u16),
    /// BEP 6: the sender has every piece (in place of a bitfield).
    HaveAll,
    /// BEP 6: the sender has no piece (in place of a bitfield).
    HaveNone,
    /// BEP 6: the sender suggests downloading this piece (say, it is in its cache).
    SuggestPiece {
        /// Piece index.
        piece: u32,
    },
    /// BEP 6: the sender will not serve this request.
    RejectRequest(BlockRequest),
    /// BEP 6: the receiver may request this piece even while choked.
    AllowedFast {
        /// Piece index.
        piece: u32,
    },
    /// BEP 10: an extension message. `id` 0 is the extended handshake
    /// ([`ExtendedHandshake`](crate::ExtendedHandshake)); other ids are the ones
    /// the *receiver* assigned in its extended handshake.
    Extended {
        /// Extension message id.
        id: u8,
        /// The extension's payload (usually bencode).
        payload: Bytes,
    },
    /// A message id this crate does not know (BEP 52's hash messages 21 to 23,
    /// for instance, or a private extension). The decoder passes these on
    /// rather than failing, as Transmission does (libtorrent disconnects); the
    /// engine decides whether to ignore them. Their length is bounded by
    /// [`Limits::max_message_len`](crate::Limits::max_message_len).
    ///
    /// Encoding an `Unknown` whose id is a known one writes that message's
    /// bytes; decoding them gives the known message (or an error).
    Unknown {
        /// The message id.
        id: u8,
        /// Everything after the id.
        payload: Bytes,
    },
}

impl Message {
    /// The message id, or `None` for a keep-alive.
    #[must_use]
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => id::CHOKE,
            Message::Unchoke => id::UNCHOKE,
            Message::Interested => id::INTERESTED,
            Message::NotInterested => id::NOT_INTERESTED,
            Message::Have { .. } => id::HAVE,
            Message::Bitfield(_) => id::BITFIELD,
            Message::Request(_) => id::REQUEST,
            Message::Piece { .. } => id::PIECE,
            Message::Cancel(_) => id::CANCEL,
            Message::Port(_) => id::PORT,
            Message::HaveAll => id::HAVE_ALL,
            Message::HaveNone => id::HAVE_NONE,
            Message::SuggestPiece { .. } => id::SUGGEST_PIECE,
            Message::RejectRequest(_) => id::REJECT_REQUEST,
            Message::AllowedFast { .. } => id::ALLOWED_FAST,
            Message::Extended { .. } => id::EXTENDED,
            Message::Unknown { id, .. } => *id,
        })
    }

    /// A `bitfield` message holding `bitfield`'s bytes.
    #[must_use]
    pub fn bitfield(bitfield: &Bitfield) -> Self {
        Message::Bitfield(Bytes::copy_from_slice(bitfield.as_bytes()))
    }

    /// The value of the length prefix: id byte plus payload, 0 for a keep-alive.
    #[must_use]
    pub fn body_len(&self) -> usize {
        match self {
            Message::KeepAlive => 0,
            Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 1,
            Message::Port(_) => 3,
            Message::Have { .. } | Message::SuggestPiece { .. } | Message::AllowedFast { .. } => 5,
            Message::Request(_) | Message::Cancel(_) | Message::RejectRequest(_) => 13,
            Message::Bitfield(b) => 1 + b.len(),
            Message::Piece { data, .. } => 9 + data.len(),
            Message::Extended { payload, .. } => 2 + payload.len(),
            Message::Unknown { payload, .. } => 1 + payload.len(),
        }
    }

    /// Bytes [`Message::encode`] writes: the 4-byte length prefix plus
    /// [`Message::body_len`].
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        4 + self.body_len()
    }

    /// Appends the message, length prefix included, to `buf`.
    ///
    /// A message whose body exceeds `u32::MAX` bytes cannot be framed; its
    /// length prefix is written as `u32::MAX`, which every receiver rejects.
    /// Nothing in rivulet builds such a message.
    pub fn encode(&self, buf: &mut BytesMut) {
        // The fixed part (at most 4 + 1 + 12 bytes) is assembled on the stack
        // and appended in one go, then the variable payload, if any.
        let mut head = [0u8; 17];
        let mut w: &mut [u8] = &mut head;
        w.put_u32(u32::try_from(self.body_len()).unwrap_or(u32::MAX));
        if let Some(id) = self.id() {
            w.put_u8(id);
        }
        let tail: &[u8] = match self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => &[],
            Message::Have { piece }
            | Message::SuggestPiece { piece }
            | Message::AllowedFast { piece } => {
                w.put_u32(*piece);
                &[]
            }
            Message::Request(r) | Message::Cancel(r) | Message::RejectRequest(r) => {
                w.put_u32(r.piece);
                w.put_u32(r.offset);
                w.put_u32(r.length);
                &[]
            }
            Message::Port(port) => {
                w.put_u16(*port);
                &[]
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                w.put_u32(*piece);
                w.put_u32(*offset);
                data
            }
            Message::Bitfield(payload) | Message::Unknown { payload, .. } => payload,
            Message::Extended { id, payload } => {
                w.put_u8(*id);
                payload
            }
        };
        let head_len = 17 - w.len();
        buf.reserve(head_len + tail.len());
        buf.put_slice(head.get(..head_len).unwrap_or_default());
        buf.put_slice(tail);
    }

    /// The encoded message as one buffer (convenient in tests; the engine
    /// encodes into its send buffer with [`Message::encode`]).
    #[must_use]
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf.freeze()
    }
}

/// The 13 bytes that precede a block of `block_len` bytes in a `piece`
/// message: length prefix, id 7, piece index, offset. Send them followed by
/// the block itself (a vectored write, straight from the block's buffer)
/// instead of copying the block into a send buffer with [`Message::encode`].
///
/// ```
/// use rivulet_wire::{piece_header, Message};
/// use bytes::Bytes;
///
/// let block = Bytes::from_static(b"hello");
/// let header = piece_header(3, 16384, block.len() as u32);
/// let whole = Message::Piece { piece: 3, offset: 16384, data: block.clone() }.to_bytes();
/// assert_eq!(&whole[..13], &header);
/// assert_eq!(&whole[13..], &block[..]);
/// ```
///
/// `block_len` must be at most `u32::MAX - 9`; a larger value saturates the
/// length prefix (and every receiver rejects the message).
#[must_use]
pub fn piece_header(piece: u32, offset: u32, block_len: u32) -> [u8; PIECE_HEADER_LEN] {
    let mut out = [0u8; PIECE_HEADER_LEN];
    // 13 bytes of room for exactly 4 + 1 + 4 + 4 bytes.
    let mut w: &mut [u8] = &mut out;
    w.put_u32(block_len.saturating_add(9));
    w.put_u8(id::PIECE);
    w.put_u32(piece);
    w.put_u32(offset);
    out
}

/// A short name for a message id, for errors and logs: `"request"`,
/// `"have all"`, `"unknown"`.
#[must_use]
pub fn message_name(message_id: u8) -> &'static str {
    match message_id {
        id::CHOKE => "choke",
        id::UNCHOKE => "unchoke",
        id::INTERESTED => "interested",
        id::NOT_INTERESTED => "not interested",
        id::HAVE => "have",
        id::BITFIELD => "bitfield",
        id::REQUEST => "request",
        id::PIECE => "piece",
        id::CANCEL => "cancel",
        id::PORT => "port",
        id::SUGGEST_PIECE => "suggest piece",
        id::HAVE_ALL => "have all",
        id::HAVE_NONE => "have none",
        id::REJECT_REQUEST => "reject request",
        id::ALLOWED_FAST => "allowed fast",
        id::EXTENDED => "extended",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(m: &Message) -> Vec<u8> {
        m.to_bytes().to_vec()
    }

    fn req() -> BlockRequest {
        BlockRequest {
            piece: 1,
            offset: 0x4000,
            length: 0x4000,
        }
    }

    #[test]
    fn exact_bytes_of_each_message() {
        let cases: Vec<(Message, Vec<u8>)> = vec![
            (Message::KeepAlive, vec![0, 0, 0, 0]),
            (Message::Choke, vec![0, 0, 0, 1, 0]),
            (Message::Unchoke, vec![0, 0, 0, 1, 1]),
            (Message::Interested, vec![0, 0, 0, 1, 2]),
            (Message::NotInterested, vec![0, 0, 0, 1, 3]),
            (
                Message::Have { piece: 0x0102_0304 },
                vec![0, 0, 0, 5, 4, 1, 2, 3, 4],
            ),
            (
                Message::Bitfield(Bytes::from_static(&[0xff, 0x80])),
                vec![0, 0, 0, 3, 5, 0xff, 0x80],
            ),
            (
                Message::Request(req()),
                vec![0, 0, 0, 0x0d, 6, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (
                Message::Piece {
                    piece: 2,
                    offset: 0x10,
                    data: Bytes::from_static(b"abc"),
                },
                vec![0, 0, 0, 12, 7, 0, 0, 0, 2, 0, 0, 0, 0x10, b'a', b'b', b'c'],
            ),
            (
                Message::Cancel(req()),
                vec![0, 0, 0, 0x0d, 8, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (Message::Port(6881), vec![0, 0, 0, 3, 9, 0x1a, 0xe1]),
            (
                Message::SuggestPiece { piece: 7 },
                vec![0, 0, 0, 5, 13, 0, 0, 0, 7],
            ),
            (Message::HaveAll, vec![0, 0, 0, 1, 14]),
            (Message::HaveNone, vec![0, 0, 0, 1, 15]),
            (
                Message::RejectRequest(req()),
                vec![0, 0, 0, 0x0d, 16, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (
                Message::AllowedFast { piece: 256 },
                vec![0, 0, 0, 5, 17, 0, 0, 1, 0],
            ),
            (
                Message::Extended {
                    id: 0,
                    payload: Bytes::from_static(b"de"),
                },
                vec![0, 0, 0, 4, 20, 0, b'd', b'e'],
            ),
            (
                Message::Unknown {
                    id: 21,
                    payload: Bytes::from_static(&[9]),
                },
                vec![0, 0, 0, 2, 21, 9],
            ),
        ];
        for (m, want) in cases {
            assert_eq!(bytes(&m), want, "{m:?}");
            assert_eq!(m.encoded_len(), want.len(), "{m:?}");
        }
    }

    #[test]
    fn piece_header_matches_encode() {
        let data = Bytes::from(vec![0x5a; 16384]);
        let m = Message::Piece {
            piece: 9,
            offset: 32768,
            data: data.clone(),
        };
        let whole = bytes(&m);
        assert_eq!(whole[..13], piece_header(9, 32768, 16384));
        assert_eq!(&whole[..4], &[0, 0, 0x40, 0x09]);
        assert_eq!(whole[13..], data[..]);
    }

    #[test]
    fn names() {
        assert_eq!(message_name(16), "reject request");
        assert_eq!(message_name(99), "unknown");
        assert_eq!(Message::KeepAlive.id(), None);
        assert_eq!(Message::HaveNone.id(), Some(15));
    }
}
