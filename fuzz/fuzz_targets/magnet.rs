//! Fuzzes magnet URI parsing and checks that whatever parses survives a
//! canonical format/parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivulet_core::Magnet;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = Magnet::parse(s) else {
        return;
    };
    let uri = m.to_uri();
    assert!(uri.is_ascii(), "canonical URI is not ASCII: {uri:?}");
    let again = Magnet::parse(&uri);
    assert_eq!(again.as_ref(), Ok(&m), "round trip failed for {uri:?}");
    // The canonical form is a fixed point.
    assert_eq!(again.map(|a| a.to_uri()), Ok(uri));
});
