//! The BEP 10 extended handshake: the first `extended` message (id 0), a
//! bencoded dictionary in which each side names the extensions it supports and
//! the message ids it wants them sent with.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use rivulet_bencode::{self as bencode, OwnedValue, Value};

use crate::{Message, WireError};

/// Name of the BEP 9 metadata-exchange extension in `m`.
pub const UT_METADATA: &str = "ut_metadata";

/// Name of the BEP 11 peer-exchange extension in `m`.
pub const UT_PEX: &str = "ut_pex";

/// Largest metadata (info dictionary) accepted, in bytes: 64 MiB. A
/// `metadata_size` above this is ignored, and a BEP 9 `total_size` above it is
/// an error. Real info dictionaries are 20 bytes per piece plus the file list;
/// libtorrent's own limit is about 30 MiB.
pub const MAX_METADATA_SIZE: u64 = 64 * 1024 * 1024;

/// Largest `reqq` kept; larger values are clamped to it. 8192 requests of
/// 16 KiB are 128 MiB in flight, more than the bandwidth-delay product of a
/// 10 Gbit/s link with 100 ms of latency.
pub const MAX_REQQ: u32 = 8192;

/// Most entries of `m` kept; ids are one byte, so more than 256 names cannot
/// all be in use.
pub const MAX_EXTENSIONS: usize = 256;

/// Longest client name (`v`) kept, in bytes; longer ones are cut at a
/// character boundary.
pub const MAX_CLIENT_NAME_LEN: usize = 256;

/// Bencode limits for extension payloads: they hold flat dictionaries of a
/// handful of values, so deep or huge documents are refused cheaply.
const EXTENSION_LIMITS: bencode::Limits = bencode::Limits {
    max_depth: 32,
    max_values: 16_384,
};

/// Decodes a whole extension payload that must be a bencoded dictionary.
pub(crate) fn decode_dict(payload: &[u8]) -> Result<Value<'_>, WireError> {
    let value = bencode::decode_with(payload, EXTENSION_LIMITS)?;
    if value.as_dict().is_none() {
        return Err(WireError::NotADictionary);
    }
    Ok(value)
}

/// The BEP 10 extended handshake.
///
/// Decoding is tolerant, as BEP 10 asks: unknown keys are ignored, and so are
/// known keys with a value of the wrong type or out of range (the field is
/// then `None`). Everything kept is bounded:
///
/// * `m`: entries whose name is not UTF-8 or whose id is not an integer in
///   0..=255 are skipped; at most [`MAX_EXTENSIONS`] entries are kept.
/// * `v`: invalid UTF-8 is replaced (lossy), cut to [`MAX_CLIENT_NAME_LEN`] bytes.
/// * `reqq`: values below 1 are ignored, values above [`MAX_REQQ`] clamped to it.
/// * `p`: only 1..=65535.
/// * `yourip`: 4 bytes (IPv4) or 16 bytes (IPv6); `ipv4` 4 bytes; `ipv6` 16 bytes.
/// * `metadata_size`: only 1..=[`MAX_METADATA_SIZE`]; a peer announcing more
///   is treated as having no metadata to offer.
///
/// Only a payload that is not bencode, or not a dictionary, is an error.
///
/// ```
/// use rivulet_wire::{ExtendedHandshake, UT_METADATA};
///
/// let mut ours = ExtendedHandshake::default();
/// ours.m.insert(UT_METADATA.to_owned(), 2);
/// ours.v = Some("rivulet 0.1.0".to_owned());
/// ours.reqq = Some(500);
/// let bytes = ours.to_bytes();
/// assert_eq!(bytes, b"d1:md11:ut_metadatai2ee4:reqqi500e1:v13:rivulet 0.1.0e");
///
/// let theirs = ExtendedHandshake::decode(b"d1:md11:ut_metadatai3e6:ut_pexi0ee4:reqqi-5ee").unwrap();
/// assert_eq!(theirs.extension_id(UT_METADATA), Some(3));
/// assert_eq!(theirs.extension_id("ut_pex"), None); // 0 = disabled
/// assert_eq!(theirs.reqq, None); // nonsense ignored
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtendedHandshake {
    /// Extension name to the id the sender wants messages of that extension
    /// sent with; 0 means the extension is disabled.
    pub m: BTreeMap<String, u8>,
    /// Client name and version.
    pub v: Option<String>,
    /// How many outstanding requests the sender queues without dropping any.
    pub reqq: Option<u32>,
    /// The sender's listen port.
    pub p: Option<u16>,
    /// The address the sender sees the receiver connect from.
    pub yourip: Option<IpAddr>,
    /// The sender's own IPv4 address.
    pub ipv4: Option<Ipv4Addr>,
    /// The sender's own IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
    /// Size of the info dictionary in bytes (BEP 9), if the sender has it.
    pub metadata_size: Option<u64>,
}

impl ExtendedHandshake {
    /// The id to send messages of extension `name` with, if the peer supports
    /// it (listed with a non-zero id).
    #[must_use]
    pub fn extension_id(&self, name: &str) -> Option<u8> {
        self.m.get(name).copied().filter(|&id| id != 0)
    }

    /// The handshake as a bencode dictionary. `m` is always present (possibly
    /// empty); other keys only when set. Fields are written as they are, even
    /// ones [`ExtendedHandshake::decode`] would clamp or ignore.
    #[must_use]
    pub fn to_value(&self) -> OwnedValue {
        let m = self
            .m
            .iter()
            .map(|(name, id)| (name.as_bytes().to_vec(), OwnedValue::Int(i64::from(*id))))
            .collect();
        let mut d = OwnedValue::dict().with("m", OwnedValue::Dict(m));
        if let Some(v) = &self.v {
            d = d.with("v", v.as_str().into());
        }
        if let Some(reqq) = self.reqq {
            d = d.with("reqq", OwnedValue::Int(reqq.into()));
        }
        if let Some(p) = self.p {
            d = d.with("p", OwnedValue::Int(p.into()));
        }
        if let Some(ip) = self.yourip {
            let bytes = match ip {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            d = d.with("yourip", OwnedValue::Bytes(bytes));
        }
        if let Some(a) = self.ipv4 {
            d = d.with("ipv4", OwnedValue::Bytes(a.octets().to_vec()));
        }
        if let Some(a) = self.ipv6 {
            d = d.with("ipv6", OwnedValue::Bytes(a.octets().to_vec()));
        }
        if let Some(size) = self.metadata_size {
            d = d.with(
                "metadata_size",
                OwnedValue::Int(i64::try_from(size).unwrap_or(i64::MAX)),
            );
        }
        d
    }

    /// The bencoded payload.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_value().to_bytes()
    }

    /// The `extended` message (id 0) carrying this handshake.
    #[must_use]
    pub fn to_message(&self) -> Message {
        Message::Extended {
            id: 0,
            payload: Bytes::from(self.to_bytes()),
        }
    }

    /// Reads a peer's extended handshake (the payload of an `extended`
    /// message with id 0), with the tolerance and bounds described on the type.
    ///
    /// # Errors
    ///
    /// [`WireError::Bencode`] if `payload` is not one bencoded value (within
    /// depth 32 and 16,384 values), [`WireError::NotADictionary`] if it is not
    /// a dictionary.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let d = decode_dict(payload)?;
        let mut hs = ExtendedHandshake::default();
        if let Some(entries) = d.get(b"m").and_then(Value::as_dict) {
            for (name, id) in entries {
                if hs.m.len() >= MAX_EXTENSIONS {
                    break;
                }
                let (Ok(name), Some(id)) = (
                    std::str::from_utf8(name),
                    id.as_int().and_then(|i| u8::try_from(i).ok()),
                ) else {
                    continue;
                };
                hs.m.insert(name.to_owned(), id);
            }
        }
        hs.v = d.get(b"v").and_then(Value::as_bytes).map(client_name);
        hs.reqq = d
            .get(b"reqq")
            .and_then(Value::as_int)
            .filter(|&n| n >= 1)
            .map(|n| u32::try_from(n).unwrap_or(MAX_REQQ).min(MAX_REQQ));
        hs.p = d
            .get(b"p")
            .and_then(Value::as_int)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&p| p != 0);
        hs.yourip = d
            .get(b"yourip")
            .and_then(Value::as_bytes)
            .and_then(|b| match b.len() {
                4 => ipv4(b).map(IpAddr::V4),
                16 => ipv6(b).map(IpAddr::V6),
                _ => None,
            });
        hs.ipv4 = d.get(b"ipv4").and_then(Value::as_bytes).and_then(ipv4);
        hs.ipv6 = d.get(b"ipv6").and_then(Value::as_bytes).and_then(ipv6);
        hs.metadata_size = d
            .get(b"metadata_size")
            .and_then(Value::as_int)
            .and_then(|n| u64::try_from(n).ok())
            .filter(|&n| (1..=MAX_METADATA_SIZE).contains(&n));
        Ok(hs)
    }
}

/// A client name from untrusted bytes: lossy UTF-8, cut to
/// [`MAX_CLIENT_NAME_LEN`] bytes at a character boundary.
fn client_name(bytes: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    if s.len() > MAX_CLIENT_NAME_LEN {
        let mut end = MAX_CLIENT_NAME_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// An IPv4 address from exactly 4 bytes.
pub(crate) fn ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from)
}

/// An IPv6 address from exactly 16 bytes.
pub(crate) fn ipv6(b: &[u8]) -> Option<Ipv6Addr> {
    <[u8; 16]>::try_from(b).ok().map(Ipv6Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_round_trip_and_bytes() {
        let mut hs = ExtendedHandshake::default();
        hs.m.insert("ut_metadata".into(), 2);
        hs.m.insert("ut_pex".into(), 1);
        hs.v = Some("rivulet".into());
        hs.reqq = Some(250);
        hs.p = Some(6881);
        hs.yourip = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        hs.ipv4 = Some(Ipv4Addr::new(1, 2, 3, 4));
        hs.ipv6 = Some(Ipv6Addr::LOCALHOST);
        hs.metadata_size = Some(31_337);
        let bytes = hs.to_bytes();
        let mut want = b"d4:ipv44:\x01\x02\x03\x04".to_vec();
        want.extend_from_slice(b"4:ipv616:");
        want.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        want.extend_from_slice(
            b"1:md11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei31337e1:pi6881e4:reqqi250e1:v7:rivulet6:yourip4:\x0a\x00\x00\x01e",
        );
        assert_eq!(bytes, want);
        assert_eq!(ExtendedHandshake::decode(&bytes), Ok(hs.clone()));
        assert_eq!(
            hs.to_message(),
            Message::Extended {
                id: 0,
                payload: Bytes::from(want)
            }
        );
    }

    #[test]
    fn tolerant_of_wrong_types_and_unknown_keys() {
        let hs = ExtendedHandshake::decode(
            b"d1:md1:ai1e1:bi256e1:ci-1e1:d1:x1:e0:e1:pi0e4:reqqi99999999999e\
              6:yourip3:abc4:ipv416:aaaaaaaaaaaaaaaa4:ipv64:aaaa13:metadata_sizei67108865e\
              1:v2:\xff\xfe5:extrald1:xi1eeee",
        )
        .unwrap();
        assert_eq!(hs.m.len(), 1);
        assert_eq!(hs.extension_id("a"), Some(1));
        assert_eq!(hs.p, None);
        assert_eq!(hs.reqq, Some(MAX_REQQ));
        assert_eq!(hs.yourip, None);
        assert_eq!(hs.ipv4, None);
        assert_eq!(hs.ipv6, None);
        assert_eq!(hs.metadata_size, None);
        assert_eq!(hs.v.as_deref(), Some("\u{fffd}\u{fffd}"));

        let hs =
            ExtendedHandshake::decode(b"d1:mi5e1:pi70000e1:vi3e13:metadata_sizei-1ee").unwrap();
        assert_eq!(hs, ExtendedHandshake::default());
        let hs =
            ExtendedHandshake::decode(b"d13:metadata_sizei67108864e6:yourip16:aaaaaaaaaaaaaaaae")
                .unwrap();
        assert_eq!(hs.metadata_size, Some(MAX_METADATA_SIZE));
        assert!(matches!(hs.yourip, Some(IpAddr::V6(_))));
    }

    #[test]
    fn bounds() {
        let long = "é".repeat(200);
        let payload = OwnedValue::dict()
            .with("v", long.as_str().into())
            .to_bytes();
        let hs = ExtendedHandshake::decode(&payload).unwrap();
        let v = hs.v.unwrap();
        assert_eq!(v.len(), MAX_CLIENT_NAME_LEN);
        assert!(long.starts_with(&v));

        let m: BTreeMap<Vec<u8>, OwnedValue> = (0..1000)
            .map(|i| (format!("ext{i:04}").into_bytes(), OwnedValue::Int(1)))
            .collect();
        let payload = OwnedValue::dict().with("m", OwnedValue::Dict(m)).to_bytes();
        let hs = ExtendedHandshake::decode(&payload).unwrap();
        assert_eq!(hs.m.len(), MAX_EXTENSIONS);
    }

    #[test]
    fn errors() {
        assert_eq!(
            ExtendedHandshake::decode(b"li1ee"),
            Err(WireError::NotADictionary)
        );
        assert!(matches!(
            ExtendedHandshake::decode(b"d1:m"),
            Err(WireError::Bencode(_))
        ));
        assert!(matches!(
            ExtendedHandshake::decode(b"dee"),
            Err(WireError::Bencode(_))
        ));
        let deep = format!("d1:x{}{}e", "l".repeat(40), "e".repeat(40));
        assert!(matches!(
            ExtendedHandshake::decode(deep.as_bytes()),
            Err(WireError::Bencode(_))
        ));
    }
}
