//! The zero-copy decoder.

use std::ops::Range;

use crate::error::{Error, ErrorKind};
use crate::OwnedValue;

/// Bounds on what one decode may build, so that hostile input costs little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries accepted. A .torrent needs about 5.
    pub max_depth: usize,
    /// Most values (integers, strings, lists, dictionaries) in one document.
    pub max_values: usize,
}

impl Default for Limits {
    /// 64 levels and one million values: far beyond any real torrent (a 10,000-file
    /// torrent has about 60,000 values) while keeping memory bounded.
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_values: 1_000_000,
        }
    }
}

/// A decoded value that borrows its strings from the input and remembers its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value<'a> {
    raw: &'a [u8],
    offset: usize,
    kind: Kind<'a>,
}

/// What a [`Value`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind<'a> {
    /// An integer (`i42e`).
    Int(i64),
    /// A byte string (`4:spam`); not necessarily UTF-8.
    Bytes(&'a [u8]),
    /// A list (`l...e`).
    List(Vec<Value<'a>>),
    /// A dictionary (`d...e`) with its entries in input order. Keys are unique;
    /// they are usually sorted, but unsorted input is accepted because real
    /// torrents have it.
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The exact input bytes this value was decoded from.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Byte range of this value in the input.
    pub fn span(&self) -> Range<usize> {
        self.offset..self.offset + self.raw.len()
    }

    /// What the value holds.
    pub fn kind(&self) -> &Kind<'a> {
        &self.kind
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Int(_) => "integer",
            Kind::Bytes(_) => "byte string",
            Kind::List(_) => "list",
            Kind::Dict(_) => "dictionary",
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            Kind::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8 text, if this is a byte string that is valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list's items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match &self.kind {
            Kind::List(items) => Some(items),
            _ => None,
        }
    }

    /// The dictionary's entries in input order, if this is a dictionary.
    pub fn as_dict(&self) -> Option<&[(&'a [u8], Value<'a>)]> {
        match &self.kind {
            Kind::Dict(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value under `key`, if this is a dictionary that has it.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// An owned copy, for editing or canonical re-encoding.
    pub fn to_owned_value(&self) -> OwnedValue {
        match &self.kind {
            Kind::Int(i) => OwnedValue::Int(*i),
            Kind::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Kind::List(items) => {
                OwnedValue::List(items.iter().map(Value::to_owned_value).collect())
            }
            Kind::Dict(entries) => OwnedValue::Dict(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.to_owned_value()))
                    .collect(),
            ),
        }
    }
}

/// Decodes one complete bencoded value with the default [`Limits`]; bytes after
/// it are an error.
pub fn decode(input: &[u8]) -> Result<Value<'_>, Error> {
    decode_with(input, Limits::default())
}

/// Decodes one complete bencoded value under the given limits.
pub fn decode_with(input: &[u8], limits: Limits) -> Result<Value<'_>, Error> {
    let (value, end) = decode_prefix_with(input, limits)?;
    if end != input.len() {
        return Err(Error {
            offset: end,
            kind: ErrorKind::TrailingData,
        });
    }
    Ok(value)
}

/// Decodes the bencoded value at the start of `input` and returns it with the
/// number of bytes it took. Used where raw data follows a bencoded header (the
/// BEP 9 metadata message, for one).
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), Error> {
    decode_prefix_with(input, Limits::default())
}

fn decode_prefix_with(input: &[u8], limits: Limits) -> Result<(Value<'_>, usize), Error> {
    let mut d = Decoder {
        input,
        pos: 0,
        values: 0,
        limits,
    };
    let v = d.value(0)?;
    Ok((v, d.pos))
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    values: usize,
    limits: Limits,
}

impl<'a> Decoder<'a> {
    fn err<T>(&self, offset: usize, kind: ErrorKind) -> Result<T, Error> {
        Err(Error { offset, kind })
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// The value at `self.pos`; `depth` is how many containers enclose it.
    fn value(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return self.err(
                self.pos,
                ErrorKind::TooManyValues {
                    limit: self.limits.max_values,
                },
            );
        }
        let start = self.pos;
        let kind = match self.peek() {
            None => {
                return self.err(
                    start,
                    ErrorKind::UnexpectedEof {
                        expected: "a value",
                    },
                )
            }
            Some(b'i') => {
                self.pos += 1;
                Kind::Int(self.integer()?)
            }
            Some(b'0'..=b'9') => Kind::Bytes(self.bytes()?),
            Some(b'l') => {
                self.enter(depth)?;
                let mut items = Vec::new();
                loop {
                    match self.peek() {
                        Some(b'e') => break,
                        None => {
                            return self.err(
                                self.pos,
                                ErrorKind::UnexpectedEof {
                                    expected: "a list item or 'e'",
                                },
                            )
                        }
                        Some(_) => items.push(self.value(depth + 1)?),
                    }
                }
                self.pos += 1;
                Kind::List(items)
            }
            Some(b'd') => {
                self.enter(depth)?;
                Kind::Dict(self.dict_entries(depth)?)
            }
            Some(found) => {
                return self.err(
                    start,
                    ErrorKind::UnexpectedByte {
                        found,
                        expected: "a value ('i', 'l', 'd' or a digit)",
                    },
                )
            }
        };
        Ok(Value {
            // `start..self.pos` lies within the input: `pos` only ever advances past
            // bytes that were checked to exist.
            raw: self.input.get(start..self.pos).unwrap_or_default(),
            offset: start,
            kind,
        })
    }

    /// Steps past the 'l' or 'd' opening a container at nesting level `depth`.
    fn enter(&mut self, depth: usize) -> Result<(), Error> {
        if depth >= self.limits.max_depth {
            return self.err(
                self.pos,
                ErrorKind::TooDeep {
                    limit: self.limits.max_depth,
                },
            );
        }
        self.pos += 1;
        Ok(())
    }

    fn dict_entries(&mut self, depth: usize) -> Result<Vec<(&'a [u8], Value<'a>)>, Error> {
        let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
        // Offsets of keys, kept only to name the duplicate if keys turn out unsorted.
        let mut key_offsets = Vec::new();
        let mut sorted = true;
        loop {
            match self.peek() {
                Some(b'e') => break,
                Some(b'0'..=b'9') => {}
                None => {
                    return self.err(
                        self.pos,
                        ErrorKind::UnexpectedEof {
                            expected: "a dictionary key or 'e'",
                        },
                    )
                }
                Some(found) => {
                    return self.err(
                        self.pos,
                        ErrorKind::UnexpectedByte {
                            found,
                            expected: "a byte-string dictionary key or 'e'",
                        },
                    )
                }
            }
            let key_offset = self.pos;
            let key = self.bytes()?;
            if let Some((prev, _)) = entries.last() {
                if key == *prev {
                    return self.err(key_offset, ErrorKind::DuplicateKey);
                }
                if key < *prev {
                    sorted = false;
                }
            }
            if self.peek().is_none() {
                return self.err(
                    self.pos,
                    ErrorKind::UnexpectedEof {
                        expected: "a dictionary value",
                    },
                );
            }
            let value = self.value(depth + 1)?;
            entries.push((key, value));
            key_offsets.push(key_offset);
        }
        self.pos += 1;
        if !sorted {
            // Sorted keys prove uniqueness with one comparison each; unsorted ones
            // (seen in real torrents) need a sort to find repeats.
            let mut keys: Vec<(&[u8], usize)> = entries
                .iter()
                .zip(&key_offsets)
                .map(|((k, _), o)| (*k, *o))
                .collect();
            keys.sort_unstable();
            for pair in keys.windows(2) {
                if let [(a, _), (b, offset)] = pair {
                    if a == b {
                        return self.err(*offset, ErrorKind::DuplicateKey);
                    }
                }
            }
        }
        Ok(entries)
    }

    /// An integer's digits after the 'i', through the closing 'e'.
    fn integer(&mut self) -> Result<i64, Error> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        // i64::MIN has one more unit of magnitude than i64::MAX.
        let max = if negative {
            1u64 << 63
        } else {
            i64::MAX.unsigned_abs()
        };
        let magnitude = self.digits(max)?;
        match self.peek() {
            Some(b'e') => self.pos += 1,
            Some(found) => {
                return self.err(
                    self.pos,
                    ErrorKind::UnexpectedByte {
                        found,
                        expected: "a digit or 'e'",
                    },
                )
            }
            None => {
                return self.err(
                    self.pos,
                    ErrorKind::UnexpectedEof {
                        expected: "a digit or 'e'",
                    },
                )
            }
        }
        if negative {
            if magnitude == 0 {
                return self.err(digits_start, ErrorKind::NegativeZero);
            }
            // magnitude <= 2^63 was checked by `digits`.
            Ok(0i64.wrapping_sub_unsigned(magnitude))
        } else {
            // magnitude <= i64::MAX was checked by `digits`.
            i64::try_from(magnitude).or_else(|_| self.err(digits_start, ErrorKind::IntegerOverflow))
        }
    }

    /// A run of decimal digits: at least one, no leading zero, value at most `max`.
    fn digits(&mut self, max: u64) -> Result<u64, Error> {
        let start = self.pos;
        let mut n: u64 = 0;
        while let Some(b @ b'0'..=b'9') = self.peek() {
            if self.pos > start && n == 0 {
                return self.err(start, ErrorKind::LeadingZero);
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .filter(|n| *n <= max)
                .map_or_else(|| self.err(start, ErrorKind::IntegerOverflow), Ok)?;
            self.pos += 1;
        }
        if self.pos == start {
            return match self.peek() {
                Some(found) => self.err(
                    start,
                    ErrorKind::UnexpectedByte {
                        found,
                        expected: "a digit",
                    },
                ),
                None => self.err(
                    start,
                    ErrorKind::UnexpectedEof {
                        expected: "a digit",
                    },
                ),
            };
        }
        Ok(n)
    }

    /// A byte string `<len>:<bytes>`.
    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let len_offset = self.pos;
        let len = self.digits(u64::MAX)?;
        match self.peek() {
            Some(b':') => self.pos += 1,
            Some(found) => {
                return self.err(
                    self.pos,
                    ErrorKind::UnexpectedByte {
                        found,
                        expected: "a digit or ':'",
                    },
                )
            }
            None => {
                return self.err(
                    self.pos,
                    ErrorKind::UnexpectedEof {
                        expected: "a digit or ':'",
                    },
                )
            }
        }
        let available = self.input.len() - self.pos;
        let end = usize::try_from(len)
            .ok()
            .filter(|len| *len <= available)
            .map(|len| self.pos + len);
        match end.and_then(|end| self.input.get(self.pos..end).map(|s| (s, end))) {
            Some((s, end)) => {
                self.pos = end;
                Ok(s)
            }
            None => self.err(
                len_offset,
                ErrorKind::StringPastEnd {
                    declared: len,
                    available,
                },
            ),
        }
    }
}
