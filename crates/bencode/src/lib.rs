//! Bencode, the serialisation format of .torrent files, tracker replies and
//! extension messages.
//!
//! The decoder is zero-copy: byte strings borrow from the input, and every
//! [`Value`] remembers the exact bytes it was decoded from ([`Value::raw`]). That
//! matters for the info-hash, which is the SHA-1 of the `info` dictionary's bytes
//! *as they appear in the file*; re-encoding a dictionary whose keys were not
//! sorted would give different bytes and the wrong hash.
//!
//! Input from outside is hostile until proven otherwise, so decoding is bounded
//! ([`Limits`]): nesting depth, number of values, integer range, string lengths
//! that run past the input. Errors say at which byte offset what was expected.
//!
//! ```
//! use rivulet_bencode::{decode, Value};
//!
//! let v = decode(b"d4:name5:hello6:lengthi42ee").unwrap();
//! assert_eq!(v.get(b"name").and_then(Value::as_str), Some("hello"));
//! assert_eq!(v.get(b"length").and_then(Value::as_int), Some(42));
//! assert_eq!(v.raw(), b"d4:name5:hello6:lengthi42ee");
//! ```
//!
//! [`OwnedValue`] and [`encode`] write canonical bencode (dictionary keys sorted
//! as raw bytes), which is what a .torrent writer needs.

#![warn(clippy::indexing_slicing)]

mod decode;
mod encode;
mod error;

pub use decode::{decode, decode_prefix, decode_with, Kind, Limits, Value};
pub use encode::{encode, encode_into, OwnedValue};
pub use error::{Error, ErrorKind};

#[cfg(test)]
mod tests;
