//! The streaming message decoder.

use bytes::{Buf, BytesMut};

use crate::message::{id, BlockRequest, Message, BLOCK_LEN};
use crate::WireError;

/// Default [`Limits::max_message_len`]: a 16 KiB block plus the 9 bytes of
/// id, piece index and offset (13 bytes on the wire with the length prefix).
pub const DEFAULT_MAX_MESSAGE_LEN: u32 = BLOCK_LEN + 9;

/// Default [`Limits::max_bitfield_bytes`]: 256 KiB, a bitfield for 2^21
/// (2,097,152) pieces, the most libtorrent accepts in a torrent. Used while the
/// piece count is unknown (a magnet link whose metadata has not arrived); once
/// it is known, [`Limits::with_piece_count`] tightens it to the exact size.
pub const DEFAULT_MAX_BITFIELD_BYTES: u32 = 1 << 18;

/// Default [`Limits::max_extended_payload`]: 1 MiB. A BEP 9 metadata piece is
/// 16 KiB plus a small bencoded header, an extended handshake or a PEX message
/// a few KiB; the margin is for extensions rivulet does not know but passes on.
pub const DEFAULT_MAX_EXTENDED_PAYLOAD: u32 = 1 << 20;

/// How large a message the [`MessageDecoder`] accepts. Every limit is checked
/// against the length prefix as soon as it arrives, before the body is
/// buffered, so a peer can make us hold at most this many bytes per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Largest length prefix (id byte plus payload) for a `piece` message and
    /// for messages with an unknown id. Default [`DEFAULT_MAX_MESSAGE_LEN`]:
    /// blocks up to 16 KiB. Messages of fixed size (`have`, `request`, ...) are
    /// held to their exact size instead.
    pub max_message_len: u32,
    /// Largest `bitfield` payload in bytes. Default
    /// [`DEFAULT_MAX_BITFIELD_BYTES`].
    pub max_bitfield_bytes: u32,
    /// Largest BEP 10 `extended` payload in bytes, after the extension id.
    /// Default [`DEFAULT_MAX_EXTENDED_PAYLOAD`].
    pub max_extended_payload: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            max_bitfield_bytes: DEFAULT_MAX_BITFIELD_BYTES,
            max_extended_payload: DEFAULT_MAX_EXTENDED_PAYLOAD,
        }
    }
}

impl Limits {
    /// These limits with bitfields held to exactly the size for `pieces`
    /// pieces, `ceil(pieces / 8)` bytes, as an upper bound. ([`Bitfield::from_bytes`]
    /// then checks the exact size and the spare bits.)
    ///
    /// [`Bitfield::from_bytes`]: crate::Bitfield::from_bytes
    #[must_use]
    pub fn with_piece_count(mut self, pieces: u32) -> Self {
        self.max_bitfield_bytes = pieces.div_ceil(8);
        self
    }

    /// The largest length prefix any message may have under these limits.
    #[must_use]
    pub fn max_len(&self) -> u32 {
        self.max_message_len
            .max(self.max_bitfield_bytes.saturating_add(1))
            .max(self.max_extended_payload.saturating_add(2))
            // Fixed-size messages are accepted whatever `max_message_len` says.
            .max(13)
    }

    /// Checks a length prefix against what message `message_id` may have.
    fn check(&self, message_id: u8, len: u32) -> Result<(), WireError> {
        let exactly = |expected: u32| {
            if len == expected {
                Ok(())
            } else {
                Err(WireError::WrongMessageLength {
                    id: message_id,
                    len,
                    expected,
                })
            }
        };
        let between = |min: u32, max: u32| {
            if len < min {
                Err(WireError::MessageTooShort {
                    id: message_id,
                    len,
                    min,
                })
            } else if len > max {
                Err(WireError::MessageTooLong {
                    id: Some(message_id),
                    len,
                    max,
                })
            } else {
                Ok(())
            }
        };
        match message_id {
            id::CHOKE
            | id::UNCHOKE
            | id::INTERESTED
            | id::NOT_INTERESTED
            | id::HAVE_ALL
            | id::HAVE_NONE => exactly(1),
            id::HAVE | id::SUGGEST_PIECE | id::ALLOWED_FAST => exactly(5),
            id::REQUEST | id::CANCEL | id::REJECT_REQUEST => exactly(13),
            id::PORT => exactly(3),
            id::BITFIELD => between(1, self.max_bitfield_bytes.saturating_add(1)),
            id::PIECE => between(9, self.max_message_len),
            id::EXTENDED => between(2, self.max_extended_payload.saturating_add(2)),
            _ => between(1, self.max_message_len),
        }
    }
}

/// Splits a byte stream into [`Message`]s.
///
/// Sans-IO: the caller reads from its socket into a [`BytesMut`] and calls
/// [`MessageDecoder::decode`] until it answers `Ok(None)`, meaning "read more".
/// Decoded messages are removed from the buffer; a `piece` block is split off
/// it without copying.
///
/// ```
/// use bytes::BytesMut;
/// use rivulet_wire::{Message, MessageDecoder};
///
/// let mut dec = MessageDecoder::new();
/// let mut buf = BytesMut::from(&[0, 0, 0, 5, 4, 0, 0][..]); // half a `have`
/// assert_eq!(dec.decode(&mut buf).unwrap(), None);
/// assert_eq!(dec.bytes_needed(&buf), 2);
/// buf.extend_from_slice(&[0, 42, 0, 0, 0, 1]); // its end, and half an `unchoke`
/// assert_eq!(dec.decode(&mut buf).unwrap(), Some(Message::Have { piece: 42 }));
/// assert_eq!(dec.decode(&mut buf).unwrap(), None);
///
/// // A length prefix over the limit is an error at once, not a reason to wait.
/// let mut evil = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
/// assert!(dec.decode(&mut evil).is_err());
/// ```
///
/// Errors are final: the decoder does not know where the next message would
/// start, so the connection should be closed. The buffer is left as it was.
#[derive(Debug, Clone, Default)]
pub struct MessageDecoder {
    limits: Limits,
}

impl MessageDecoder {
    /// A decoder with the default [`Limits`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder with the given limits.
    #[must_use]
    pub fn with_limits(limits: Limits) -> Self {
        MessageDecoder { limits }
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Changes the limits, for instance with [`Limits::with_piece_count`] once a
    /// magnet link's metadata has arrived. The decoder keeps no other state,
    /// so the new limits apply from the next call to [`MessageDecoder::decode`],
    /// also to a message already partly buffered.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// How many more bytes `buf` needs before the message at its front is
    /// complete: a hint for how much to reserve or read. 0 if a whole message
    /// is there already, or if its length prefix is over the limits or wrong
    /// for its message id (then [`MessageDecoder::decode`] reports the error).
    #[must_use]
    pub fn bytes_needed(&self, buf: &[u8]) -> usize {
        let Some(prefix) = buf.first_chunk::<4>() else {
            return 4usize.saturating_sub(buf.len());
        };
        let len = u32::from_be_bytes(*prefix);
        if len > self.limits.max_len() {
            return 0;
        }
        if let Some(&message_id) = buf.get(4) {
            if self.limits.check(message_id, len).is_err() {
                return 0;
            }
        }
        frame_len(len).saturating_sub(buf.len())
    }

    /// Takes the next complete message off the front of `buf`.
    ///
    /// Returns `Ok(None)` if `buf` does not yet hold a whole message (nothing
    /// is removed then). The length prefix is checked as soon as its 4 bytes
    /// (and the id byte, for limits that depend on it) have arrived: an
    /// oversized or wrongly sized message is an error before its body arrives.
    ///
    /// # Errors
    ///
    /// [`WireError::MessageTooLong`], [`WireError::WrongMessageLength`],
    /// [`WireError::MessageTooShort`]. After an error the stream cannot be
    /// resynchronised; `buf` is left untouched.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
        let Some(prefix) = buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix);
        if len == 0 {
            buf.advance(4);
            return Ok(Some(Message::KeepAlive));
        }
        let max = self.limits.max_len();
        if len > max {
            return Err(WireError::MessageTooLong { id: None, len, max });
        }
        let Some(&message_id) = buf.get(4) else {
            return Ok(None);
        };
        self.limits.check(message_id, len)?;
        let frame_len = frame_len(len);
        let Some(body) = buf.get(5..frame_len) else {
            return Ok(None);
        };
        // From here on `buf` holds the whole frame, `frame_len` bytes, and
        // `check` has made sure the body has the size each arm reads, so the
        // `advance`/`split_to` calls stay in bounds and the fallbacks of
        // `Fields` are never used.
        let mut f = Fields(body);
        let message = match message_id {
            id::CHOKE => Message::Choke,
            id::UNCHOKE => Message::Unchoke,
            id::INTERESTED => Message::Interested,
            id::NOT_INTERESTED => Message::NotInterested,
            id::HAVE_ALL => Message::HaveAll,
            id::HAVE_NONE => Message::HaveNone,
            id::HAVE => Message::Have { piece: f.u32() },
            id::SUGGEST_PIECE => Message::SuggestPiece { piece: f.u32() },
            id::ALLOWED_FAST => Message::AllowedFast { piece: f.u32() },
            id::REQUEST => Message::Request(f.block()),
            id::CANCEL => Message::Cancel(f.block()),
            id::REJECT_REQUEST => Message::RejectRequest(f.block()),
            id::PORT => Message::Port(f.u16()),
            id::PIECE => {
                let piece = f.u32();
                let offset = f.u32();
                buf.advance(13);
                let data = buf.split_to(frame_len - 13).freeze();
                return Ok(Some(Message::Piece {
                    piece,
                    offset,
                    data,
                }));
            }
            id::EXTENDED => {
                let ext_id = f.u8();
                buf.advance(6);
                let payload = buf.split_to(frame_len - 6).freeze();
                return Ok(Some(Message::Extended {
                    id: ext_id,
                    payload,
                }));
            }
            id::BITFIELD => {
                buf.advance(5);
                return Ok(Some(Message::Bitfield(
                    buf.split_to(frame_len - 5).freeze(),
                )));
            }
            _ => {
                buf.advance(5);
                let payload = buf.split_to(frame_len - 5).freeze();
                return Ok(Some(Message::Unknown {
                    id: message_id,
                    payload,
                }));
            }
        };
        buf.advance(frame_len);
        Ok(Some(message))
    }
}

/// Bytes on the wire of a message whose length prefix is `len`.
fn frame_len(len: u32) -> usize {
    usize::try_from(len).unwrap_or(usize::MAX).saturating_add(4)
}

/// Reads big-endian fields from the front of a message body whose size was
/// checked beforehand; a field past the end reads as 0 (never happens, but
/// keeps the decoder free of panics).
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        match self.0.split_first_chunk::<2>() {
            Some((b, rest)) => {
                self.0 = rest;
                u16::from_be_bytes(*b)
            }
            None => 0,
        }
    }

    fn u32(&mut self) -> u32 {
        match self.0.split_first_chunk::<4>() {
            Some((b, rest)) => {
                self.0 = rest;
                u32::from_be_bytes(*b)
            }
            None => 0,
        }
    }

    fn block(&mut self) -> BlockRequest {
        BlockRequest {
            piece: self.u32(),
            offset: self.u32(),
            length: self.u32(),
        }
    }
}
