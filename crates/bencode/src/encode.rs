//! The canonical encoder.

use std::collections::BTreeMap;

/// An owned bencode value. Dictionaries are a `BTreeMap`, so encoding always
/// writes keys sorted by their raw bytes, as BEP 3 requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedValue {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<OwnedValue>),
    /// A dictionary with byte-string keys.
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
}

impl OwnedValue {
    /// A byte string holding `s`'s UTF-8 bytes.
    pub fn str(s: &str) -> Self {
        OwnedValue::Bytes(s.as_bytes().to_vec())
    }

    /// An empty dictionary.
    pub fn dict() -> Self {
        OwnedValue::Dict(BTreeMap::new())
    }

    /// Sets `key` to `value` if this is a dictionary (does nothing otherwise), and
    /// returns `self` for chaining.
    pub fn with(mut self, key: &str, value: OwnedValue) -> Self {
        if let OwnedValue::Dict(map) = &mut self {
            map.insert(key.as_bytes().to_vec(), value);
        }
        self
    }

    /// This value in canonical bencode.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }
}

impl From<i64> for OwnedValue {
    fn from(i: i64) -> Self {
        OwnedValue::Int(i)
    }
}

impl From<&str> for OwnedValue {
    fn from(s: &str) -> Self {
        OwnedValue::str(s)
    }
}

impl From<Vec<u8>> for OwnedValue {
    fn from(b: Vec<u8>) -> Self {
        OwnedValue::Bytes(b)
    }
}

/// Encodes `value` as canonical bencode.
pub fn encode(value: &OwnedValue) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Appends the canonical bencoding of `value` to `out`.
pub fn encode_into(value: &OwnedValue, out: &mut Vec<u8>) {
    match value {
        OwnedValue::Int(i) => {
            out.push(b'i');
            out.extend_from_slice(i.to_string().as_bytes());
            out.push(b'e');
        }
        OwnedValue::Bytes(b) => write_bytes(b, out),
        OwnedValue::List(items) => {
            out.push(b'l');
            for item in items {
                encode_into(item, out);
            }
            out.push(b'e');
        }
        OwnedValue::Dict(map) => {
            out.push(b'd');
            for (k, v) in map {
                write_bytes(k, out);
                encode_into(v, out);
            }
            out.push(b'e');
        }
    }
}

fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}
