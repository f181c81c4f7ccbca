//! Decoding errors, each with the byte offset where decoding stopped.

use std::fmt;

/// A decoding failure: what went wrong and at which byte of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid bencode at byte {offset}: {kind}")]
pub struct Error {
    /// Offset in the input of the byte that could not be accepted.
    pub offset: usize,
    /// What was wrong there.
    pub kind: ErrorKind,
}

/// The ways bencode input can be malformed or exceed a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ended while a value was incomplete.
    UnexpectedEof {
        /// What the decoder was looking for.
        expected: &'static str,
    },
    /// A byte that cannot appear here.
    UnexpectedByte {
        /// The byte found.
        found: u8,
        /// What the decoder was looking for.
        expected: &'static str,
    },
    /// An integer or string length written with a leading zero (`i03e`, `03:abc`).
    LeadingZero,
    /// The integer `i-0e`, which bencode forbids.
    NegativeZero,
    /// An integer outside the signed 64-bit range, or a string length beyond `usize`.
    IntegerOverflow,
    /// A byte string whose declared length runs past the end of the input.
    StringPastEnd {
        /// Declared length.
        declared: u64,
        /// Bytes actually left in the input.
        available: usize,
    },
    /// Lists and dictionaries nested deeper than [`crate::Limits::max_depth`].
    TooDeep {
        /// The limit in force.
        limit: usize,
    },
    /// More values than [`crate::Limits::max_values`].
    TooManyValues {
        /// The limit in force.
        limit: usize,
    },
    /// The same key twice in one dictionary: which one counts would be ambiguous.
    DuplicateKey,
    /// Bytes left over after the top-level value.
    TrailingData,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnexpectedEof { expected } => {
                write!(f, "input ended, expected {expected}")
            }
            ErrorKind::UnexpectedByte { found, expected } => {
                write!(f, "found {}, expected {expected}", show_byte(*found))
            }
            ErrorKind::LeadingZero => f.write_str("number has a leading zero"),
            ErrorKind::NegativeZero => f.write_str("negative zero is not allowed"),
            ErrorKind::IntegerOverflow => f.write_str("number is too large"),
            ErrorKind::StringPastEnd {
                declared,
                available,
            } => write!(
                f,
                "byte string of {declared} bytes but only {available} bytes remain"
            ),
            ErrorKind::TooDeep { limit } => write!(f, "nested deeper than {limit} levels"),
            ErrorKind::TooManyValues { limit } => write!(f, "more than {limit} values"),
            ErrorKind::DuplicateKey => f.write_str("dictionary key appears twice"),
            ErrorKind::TrailingData => f.write_str("unexpected data after the end of the value"),
        }
    }
}

fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}
