//! The BitTorrent peer wire protocol, sans-IO: BEP 3 messages, the BEP 6 fast
//! extension, the BEP 10 extension protocol with BEP 9 metadata exchange and
//! BEP 11 peer exchange.
//!
//! # Sans-IO
//!
//! Nothing here touches a socket, a clock or an async runtime. Decoders take
//! the bytes received so far and answer one of three things:
//!
//! * `Ok(None)`: not enough bytes yet, read more and call again;
//! * `Err(WireError)`: the peer broke the protocol or a limit, disconnect;
//! * `Ok(Some(value))`: a complete handshake or message, removed from the buffer.
//!
//! Encoders append to a [`BytesMut`](bytes::BytesMut) that the caller writes out
//! however it likes. The engine's tokio tasks are thin loops around this; tests
//! and fuzzers drive the same code with plain byte slices.
//!
//! Everything a peer controls is bounded before it is buffered: the length
//! prefix of every message is checked against [`Limits`] as soon as it arrives
//! (a 4 GiB length is an error at once, not a reason to wait), messages of fixed
//! size must have exactly that size, and the extension payloads cap what they
//! keep ([`MAX_METADATA_SIZE`], [`MAX_PEX_PEERS`], ...). No input makes a decoder
//! panic.
//!
//! # Example
//!
//! One side of a connection: send our handshake, read the peer's, then split
//! the stream into messages, whatever the sizes of the reads.
//!
//! ```
//! use bytes::BytesMut;
//! use rivulet_core::{InfoHash, PeerId};
//! use rivulet_wire::{Handshake, Message, MessageDecoder, BlockRequest};
//!
//! let info_hash = InfoHash([1; 20]);
//! let mut outgoing = BytesMut::new();
//! Handshake::new(info_hash, PeerId([b'a'; 20])).encode(&mut outgoing);
//! Message::Interested.encode(&mut outgoing);
//! Message::Request(BlockRequest { piece: 0, offset: 0, length: 16384 }).encode(&mut outgoing);
//! // ... the driver writes `outgoing` to the socket.
//!
//! // What the peer receives, here in reads of 7 bytes.
//! let mut received = BytesMut::new();
//! let mut handshake = None;
//! let mut messages = Vec::new();
//! let mut decoder = MessageDecoder::new();
//! for chunk in outgoing.chunks(7) {
//!     received.extend_from_slice(chunk);
//!     if handshake.is_none() {
//!         handshake = Handshake::decode(&mut received).unwrap();
//!         if handshake.is_none() {
//!             continue;
//!         }
//!     }
//!     while let Some(m) = decoder.decode(&mut received).unwrap() {
//!         messages.push(m);
//!     }
//! }
//! assert_eq!(handshake.unwrap().info_hash, info_hash);
//! assert_eq!(messages[0], Message::Interested);
//! assert!(matches!(messages[1], Message::Request(r) if r.length == 16384));
//! assert!(received.is_empty());
//! ```
//!
//! # Contents
//!
//! * [`Handshake`], [`HandshakePrefix`], [`Reserved`]: the 68-byte handshake and
//!   its extension bits.
//! * [`Message`], [`piece_header`]: the messages and their encoding;
//!   [`MessageDecoder`] with [`Limits`]: the streaming decoder.
//! * [`Bitfield`]: which pieces a peer has; [`allowed_fast_set`]: the pieces
//!   a choked peer may still request (BEP 6).
//! * [`ExtendedHandshake`] (BEP 10), [`MetadataMessage`] (BEP 9),
//!   [`PexMessage`] (BEP 11): payloads of [`Message::Extended`].
//! * [`mse`]: message stream encryption, the handshake and the RC4 streams
//!   that hide a connection.
#![warn(clippy::indexing_slicing)]

mod bitfield;
mod decoder;
mod error;
mod extended;
pub mod fast;
mod handshake;
pub mod message;
mod metadata;
pub mod mse;
mod pex;

pub use bitfield::Bitfield;
pub use decoder::{
    Limits, MessageDecoder, DEFAULT_MAX_BITFIELD_BYTES, DEFAULT_MAX_EXTENDED_PAYLOAD,
    DEFAULT_MAX_MESSAGE_LEN,
};
pub use error::WireError;
pub use extended::{
    ExtendedHandshake, MAX_CLIENT_NAME_LEN, MAX_EXTENSIONS, MAX_METADATA_SIZE, MAX_REQQ,
    UT_METADATA, UT_PEX,
};
pub use fast::allowed_fast_set;
pub use handshake::{
    decode_peer_id, Handshake, HandshakePrefix, Reserved, HANDSHAKE_LEN, HANDSHAKE_PREFIX_LEN,
    PROTOCOL,
};
pub use message::{message_name, piece_header, BlockRequest, Message, BLOCK_LEN, PIECE_HEADER_LEN};
pub use metadata::{metadata_piece_count, metadata_piece_len, MetadataMessage, METADATA_PIECE_LEN};
pub use pex::{PexFlags, PexMessage, PexPeer, MAX_PEX_PEERS};
