//! Fuzzes `metainfo::parse_info_bytes`, the parser of a bare info dictionary
//! as received through BEP 9 metadata exchange (untrusted peer bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivulet_core::metainfo::parse_info_bytes;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = parse_info_bytes(data) else {
        return;
    };
    let layout = info.layout();
    assert_eq!(info.num_pieces() as u64, layout.num_pieces());
    assert_eq!(layout.total_length(), info.total_length());
    for f in &info.files {
        for c in &f.path {
            assert!(!c.is_empty() && c != "." && c != "..");
            assert!(!c.contains('/') && !c.contains('\\'));
        }
    }
    // Wrapped in a .torrent, the same bytes must give the same info and hash.
    let mut torrent = b"d4:info".to_vec();
    torrent.extend_from_slice(data);
    torrent.push(b'e');
    let m = rivulet_core::Metainfo::from_bytes(&torrent).expect("wrapped info must parse");
    assert_eq!(m.info, info);
    assert_eq!(m.info_bytes, data);
    assert_eq!(m.info_hash, rivulet_core::InfoHash::from_info_bytes(data));
});
