//! Fuzzes the bencode decoder (`decode`, `decode_prefix`) and checks that a
//! decoded value remembers its exact input bytes and survives a canonical
//! re-encode/decode round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivulet_bencode::{decode, decode_prefix};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode(data) {
        assert_eq!(v.raw(), data, "raw() must be the whole input");
        assert_eq!(v.span(), 0..data.len(), "span() must cover the whole input");
        let owned = v.to_owned_value();
        let bytes = owned.to_bytes();
        let again = decode(&bytes).expect("canonical re-encoding must decode");
        assert_eq!(again.to_owned_value(), owned, "re-encoded value differs");
        assert_eq!(again.raw(), &bytes[..]);
        // Canonical output is a fixed point of the encoder.
        assert_eq!(again.to_owned_value().to_bytes(), bytes);
    }
    match decode_prefix(data) {
        Ok((v, used)) => {
            assert!(used <= data.len(), "consumed {used} > {}", data.len());
            assert_eq!(v.raw(), &data[..used]);
            // A prefix that decodes on its own must decode to the same value.
            let whole = decode(&data[..used]).expect("the consumed prefix must decode alone");
            assert_eq!(whole.to_owned_value(), v.to_owned_value());
        }
        Err(_) => {
            // decode() of the whole input cannot succeed where its prefix failed.
            assert!(decode(data).is_err());
        }
    }
});
