//! The one error type of this crate.

use crate::message::message_name;

/// Why bytes from a peer were refused.
///
/// Every variant means the peer broke the protocol or exceeded a limit; the
/// usual reaction is to close the connection. After an error from
/// [`MessageDecoder::decode`](crate::MessageDecoder::decode) the stream is out of
/// step (the decoder does not know where the next message starts), so the
/// connection cannot continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The first byte of a handshake (the length of the protocol string) is not 19.
    #[error("handshake protocol-string length is {0}, expected 19")]
    BadProtocolLength(u8),

    /// The handshake's protocol string is not `BitTorrent protocol`.
    #[error("handshake protocol string is not \"BitTorrent protocol\"")]
    BadProtocolString,

    /// A length prefix larger than the decoder accepts for this message.
    /// Reported as soon as the prefix (and, where it decides the limit, the
    /// message id) has arrived, before any of the body is buffered.
    #[error("{} of {len} bytes exceeds the limit of {max} bytes", id_name(*.id))]
    MessageTooLong {
        /// The message id, or `None` if the length alone exceeds every limit.
        id: Option<u8>,
        /// The length prefix (id byte plus payload).
        len: u32,
        /// The largest length prefix accepted for this message.
        max: u32,
    },

    /// A message whose size is fixed by the protocol arrived with another length.
    #[error("{} message has length {len}, expected {expected}", message_name(*.id))]
    WrongMessageLength {
        /// The message id.
        id: u8,
        /// The length prefix received.
        len: u32,
        /// The only length this message may have.
        expected: u32,
    },

    /// A message shorter than its fixed header (a `piece` without index and
    /// offset, an `extended` without its extension id).
    #[error("{} message has length {len}, at least {min} needed", message_name(*.id))]
    MessageTooShort {
        /// The message id.
        id: u8,
        /// The length prefix received.
        len: u32,
        /// The smallest length this message may have.
        min: u32,
    },

    /// A bitfield with the wrong number of bytes for the torrent's piece count.
    #[error("bitfield has {actual} bytes, expected {expected}")]
    BitfieldLength {
        /// `ceil(pieces / 8)`.
        expected: usize,
        /// Bytes received.
        actual: usize,
    },

    /// A bitfield with some of the spare bits after the last piece set
    /// (BEP 3: they must be zero).
    #[error("bitfield has spare bits set after the last piece")]
    BitfieldSpareBits,

    /// An extension message (BEP 9, 10, 11) whose payload is not valid bencode.
    #[error("extension message: {0}")]
    Bencode(rivulet_bencode::Error),

    /// An extension message whose bencoded payload is not a dictionary.
    #[error("extension message payload is not a bencoded dictionary")]
    NotADictionary,

    /// A BEP 9 `ut_metadata` message that lacks a required key, has one of the
    /// wrong type or out of range, or has an unknown `msg_type`.
    #[error("invalid ut_metadata message: {0}")]
    BadMetadataMessage(&'static str),

    /// A BEP 9 `total_size` (or BEP 10 `metadata_size`) beyond
    /// [`MAX_METADATA_SIZE`](crate::MAX_METADATA_SIZE).
    #[error("metadata size {size} exceeds the limit of {max} bytes")]
    MetadataTooLarge {
        /// The size announced.
        size: i64,
        /// The limit in force.
        max: u64,
    },

    /// A BEP 9 data message whose piece is past the end of the metadata or
    /// whose data length does not match the piece's size.
    #[error("ut_metadata piece {piece} carries {actual} bytes, expected {expected}")]
    MetadataPieceLength {
        /// The piece index.
        piece: u32,
        /// Bytes the piece must hold given `total_size` (0 if the piece is
        /// past the end).
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
}

// Written by hand rather than with `#[from]` so that the variant's doc comment
// stays the only description of when it happens.
impl From<rivulet_bencode::Error> for WireError {
    fn from(e: rivulet_bencode::Error) -> Self {
        WireError::Bencode(e)
    }
}

fn id_name(id: Option<u8>) -> String {
    match id {
        Some(id) => format!("{} message", message_name(id)),
        None => "message".to_owned(),
    }
}
