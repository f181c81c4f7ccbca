//! BEP 9 `ut_metadata`: fetching the info dictionary from peers in 16 KiB
//! pieces, for magnet links.
//!
//! Each message is a bencoded dictionary; a `data` message is followed by the
//! piece's raw bytes:
//!
//! ```text
//! request: d8:msg_typei0e5:piecei0ee
//! data:    d8:msg_typei1e5:piecei0e10:total_sizei34256ee<16384 bytes>
//! reject:  d8:msg_typei2e5:piecei0ee
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use rivulet_bencode::{self as bencode, OwnedValue, Value};

use crate::{Message, WireError, MAX_METADATA_SIZE};

/// Size of every metadata piece except the last.
pub const METADATA_PIECE_LEN: usize = 16 * 1024;

/// Number of metadata pieces for metadata of `total_size` bytes.
#[must_use]
pub fn metadata_piece_count(total_size: u64) -> u64 {
    total_size.div_ceil(METADATA_PIECE_LEN as u64)
}

/// Size of metadata piece `piece` for metadata of `total_size` bytes, or
/// `None` if there is no such piece.
#[must_use]
pub fn metadata_piece_len(total_size: u64, piece: u32) -> Option<usize> {
    let start = u64::from(piece).checked_mul(METADATA_PIECE_LEN as u64)?;
    let left = total_size.checked_sub(start).filter(|&n| n > 0)?;
    usize::try_from(left.min(METADATA_PIECE_LEN as u64)).ok()
}

/// A BEP 9 message (the payload of an `extended` message whose id is the
/// receiver's `ut_metadata` id).
///
/// ```
/// use bytes::Bytes;
/// use rivulet_wire::MetadataMessage;
///
/// let req = MetadataMessage::Request { piece: 1 };
/// assert_eq!(&req.to_bytes()[..], b"d8:msg_typei0e5:piecei1ee");
///
/// let payload = Bytes::from_static(b"d8:msg_typei1e5:piecei0e10:total_sizei3eeabc");
/// let data = MetadataMessage::decode(&payload).unwrap();
/// assert_eq!(
///     data,
///     MetadataMessage::Data { piece: 0, total_size: 3, data: Bytes::from_static(b"abc") }
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMessage {
    /// `msg_type` 0: asks for a piece.
    Request {
        /// Piece index.
        piece: u32,
    },
    /// `msg_type` 1: a piece of the metadata.
    Data {
        /// Piece index.
        piece: u32,
        /// Size of the whole metadata, 1..=[`MAX_METADATA_SIZE`].
        total_size: u64,
        /// The piece: [`METADATA_PIECE_LEN`] bytes, fewer for the last piece.
        data: Bytes,
    },
    /// `msg_type` 2: the sender will not send this piece.
    Reject {
        /// Piece index.
        piece: u32,
    },
}

impl MetadataMessage {
    /// The piece the message is about.
    #[must_use]
    pub fn piece(&self) -> u32 {
        match self {
            MetadataMessage::Request { piece }
            | MetadataMessage::Data { piece, .. }
            | MetadataMessage::Reject { piece } => *piece,
        }
    }

    /// Reads a message from an `extended` payload. A `data` message's bytes
    /// are a slice of `payload`, not a copy.
    ///
    /// Unknown keys are ignored, and so are bytes after the dictionary of a
    /// `request` or `reject`. A `data` message must carry exactly the bytes
    /// its piece holds given `total_size`: [`METADATA_PIECE_LEN`] for all but
    /// the last piece.
    ///
    /// # Errors
    ///
    /// [`WireError::Bencode`] or [`WireError::NotADictionary`] if the payload
    /// does not start with a bencoded dictionary;
    /// [`WireError::BadMetadataMessage`] for a missing or out-of-range
    /// `msg_type`, `piece` or `total_size`; [`WireError::MetadataTooLarge`] for
    /// a `total_size` over [`MAX_METADATA_SIZE`];
    /// [`WireError::MetadataPieceLength`] for a piece past the end or data of
    /// the wrong length.
    pub fn decode(payload: &Bytes) -> Result<Self, WireError> {
        let (dict, used) = bencode::decode_prefix(payload)?;
        if dict.as_dict().is_none() {
            return Err(WireError::NotADictionary);
        }
        let int = |key: &[u8]| dict.get(key).and_then(Value::as_int);
        let piece = int(b"piece").and_then(|p| u32::try_from(p).ok()).ok_or(
            WireError::BadMetadataMessage("`piece` missing or not in 0..2^32"),
        )?;
        match int(b"msg_type") {
            Some(0) => Ok(MetadataMessage::Request { piece }),
            Some(2) => Ok(MetadataMessage::Reject { piece }),
            Some(1) => {
                let size = int(b"total_size").ok_or(WireError::BadMetadataMessage(
                    "data message without integer `total_size`",
                ))?;
                let total_size = u64::try_from(size).ok().filter(|&s| s > 0).ok_or(
                    WireError::BadMetadataMessage("`total_size` is not positive"),
                )?;
                if total_size > MAX_METADATA_SIZE {
                    return Err(WireError::MetadataTooLarge {
                        size,
                        max: MAX_METADATA_SIZE,
                    });
                }
                let expected = metadata_piece_len(total_size, piece).unwrap_or(0);
                let actual = payload.len().saturating_sub(used);
                if expected == 0 || actual != expected {
                    return Err(WireError::MetadataPieceLength {
                        piece,
                        expected,
                        actual,
                    });
                }
                Ok(MetadataMessage::Data {
                    piece,
                    total_size,
                    data: payload.slice(used..),
                })
            }
            Some(_) => Err(WireError::BadMetadataMessage("unknown `msg_type`")),
            None => Err(WireError::BadMetadataMessage(
                "`msg_type` missing or not an integer",
            )),
        }
    }

    /// Appends the payload (dictionary, and for `data` the bytes after it).
    pub fn encode(&self, buf: &mut BytesMut) {
        let (msg_type, total_size) = match self {
            MetadataMessage::Request { .. } => (0, None),
            MetadataMessage::Data { total_size, .. } => (1, Some(*total_size)),
            MetadataMessage::Reject { .. } => (2, None),
        };
        let mut d = OwnedValue::dict()
            .with("msg_type", OwnedValue::Int(msg_type))
            .with("piece", OwnedValue::Int(self.piece().into()));
        if let Some(size) = total_size {
            d = d.with(
                "total_size",
                OwnedValue::Int(i64::try_from(size).unwrap_or(i64::MAX)),
            );
        }
        buf.put_slice(&d.to_bytes());
        if let MetadataMessage::Data { data, .. } = self {
            buf.put_slice(data);
        }
    }

    /// The payload as one buffer.
    #[must_use]
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.freeze()
    }

    /// The `extended` message carrying this payload, for a peer that listed
    /// `ut_metadata` with id `ext_id` in its extended handshake.
    #[must_use]
    pub fn to_message(&self, ext_id: u8) -> Message {
        Message::Extended {
            id: ext_id,
            payload: self.to_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(b: &'static [u8]) -> Result<MetadataMessage, WireError> {
        MetadataMessage::decode(&Bytes::from_static(b))
    }

    #[test]
    fn exact_bytes() {
        assert_eq!(
            &MetadataMessage::Reject { piece: 7 }.to_bytes()[..],
            b"d8:msg_typei2e5:piecei7ee"
        );
        let data = MetadataMessage::Data {
            piece: 1,
            total_size: 16390,
            data: Bytes::from_static(b"123456"),
        };
        let b = data.to_bytes();
        assert_eq!(
            &b[..],
            b"d8:msg_typei1e5:piecei1e10:total_sizei16390ee123456"
        );
        assert_eq!(MetadataMessage::decode(&b), Ok(data.clone()));
        assert_eq!(data.to_message(3), Message::Extended { id: 3, payload: b });
    }

    #[test]
    fn piece_sizes() {
        assert_eq!(metadata_piece_count(1), 1);
        assert_eq!(metadata_piece_count(16384), 1);
        assert_eq!(metadata_piece_count(16385), 2);
        assert_eq!(metadata_piece_len(16385, 0), Some(16384));
        assert_eq!(metadata_piece_len(16385, 1), Some(1));
        assert_eq!(metadata_piece_len(16385, 2), None);
        assert_eq!(metadata_piece_len(16384, 1), None);
        assert_eq!(metadata_piece_len(u64::MAX, u32::MAX), Some(16384));
    }

    #[test]
    fn full_piece() {
        let mut payload = b"d8:msg_typei1e5:piecei0e10:total_sizei40000ee".to_vec();
        payload.extend_from_slice(&[7; 16384]);
        let m = MetadataMessage::decode(&Bytes::from(payload.clone())).unwrap();
        assert!(matches!(m, MetadataMessage::Data { ref data, .. } if data.len() == 16384));
        // One byte too many: refused.
        payload.push(0);
        assert_eq!(
            MetadataMessage::decode(&Bytes::from(payload)),
            Err(WireError::MetadataPieceLength {
                piece: 0,
                expected: 16384,
                actual: 16385
            })
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            dec(b"d8:msg_typei1e5:piecei0e10:total_sizei3eeab"),
            Err(WireError::MetadataPieceLength {
                piece: 0,
                expected: 3,
                actual: 2
            })
        );
        assert_eq!(
            dec(b"d8:msg_typei1e5:piecei1e10:total_sizei3eeabc"),
            Err(WireError::MetadataPieceLength {
                piece: 1,
                expected: 0,
                actual: 3
            })
        );
        assert_eq!(
            dec(b"d8:msg_typei1e5:piecei0e10:total_sizei67108865ee"),
            Err(WireError::MetadataTooLarge {
                size: 67_108_865,
                max: MAX_METADATA_SIZE
            })
        );
        assert!(matches!(
            dec(b"d8:msg_typei1e5:piecei0e10:total_sizei0ee"),
            Err(WireError::BadMetadataMessage(_))
        ));
        assert!(matches!(
            dec(b"d8:msg_typei1e5:piecei0ee"),
            Err(WireError::BadMetadataMessage(_))
        ));
        assert!(matches!(
            dec(b"d8:msg_typei3e5:piecei0ee"),
            Err(WireError::BadMetadataMessage(_))
        ));
        assert!(matches!(
            dec(b"d8:msg_type1:05:piecei0ee"),
            Err(WireError::BadMetadataMessage(_))
        ));
        assert!(matches!(
            dec(b"d8:msg_typei0e5:piecei-1ee"),
            Err(WireError::BadMetadataMessage(_))
        ));
        assert!(matches!(
            dec(b"d8:msg_typei0ee"),
            Err(WireError::BadMetadataMessage(_))
        ));
        assert_eq!(dec(b"i0e"), Err(WireError::NotADictionary));
        assert!(matches!(dec(b"d8:msg_"), Err(WireError::Bencode(_))));
        // Tolerated: unknown keys, trailing bytes after a request.
        assert_eq!(
            dec(b"d8:msg_typei0e5:piecei4e10:total_sizei9ee??"),
            Ok(MetadataMessage::Request { piece: 4 })
        );
    }
}
