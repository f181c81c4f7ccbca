//! Fuzzes `.torrent` parsing (`Metainfo::from_bytes_any`, v2-only torrents
//! included) and checks the invariants a parsed torrent must satisfy: hash of
//! the original info bytes, piece count, safe path components (sanitizing
//! never leaves `.`, `..`, separators or control characters), symlink targets
//! inside the torrent, and piece spans that add up to each piece's length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivulet_core::{InfoHash, Metainfo};

/// Pieces checked per input, so a torrent with millions of pieces stays fast.
const MAX_PIECES_CHECKED: u64 = 10_000;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Metainfo::from_bytes_any(data) else {
        assert!(Metainfo::from_bytes(data).is_err());
        return;
    };
    assert_eq!(Metainfo::from_bytes(data).is_ok(), !m.info.v2_only);
    assert_eq!(m.info_hash, InfoHash::from_info_bytes(&m.info_bytes));
    let layout = m.info.layout();
    assert_eq!(m.info.num_pieces() as u64, layout.num_pieces());
    if !m.info.v2_only {
        assert_eq!(m.info.pieces.len() as u64, layout.num_pieces());
    }
    assert_eq!(layout.total_length(), m.info.total_length());
    assert_eq!(layout.num_files(), m.info.files.len());
    assert!(layout.total_length() > 0);
    assert!(!m.info.files.is_empty());
    assert!(m.info.piece_length >= 1);
    let safe = |path: &[String]| {
        assert!(!path.is_empty(), "empty path");
        for c in path {
            assert!(!c.is_empty(), "empty component in {path:?}");
            assert!(c != "." && c != "..", "relative component in {path:?}");
            assert!(
                !c.contains('/') && !c.contains('\\'),
                "separator in component of {path:?}"
            );
            assert!(
                !c.chars().any(|ch| (ch as u32) < 32),
                "control character in {path:?}"
            );
        }
    };
    let mut stored = std::collections::HashSet::new();
    for f in &m.info.files {
        safe(&f.path);
        if f.is_stored() {
            // No two files written to one path, whatever the case.
            assert!(
                stored.insert(f.display_path().to_ascii_lowercase()),
                "two files at {:?}",
                f.path
            );
        }
        if let Some(target) = f.symlink.as_ref().and_then(|l| l.target.as_ref()) {
            safe(target);
            assert_ne!(target, &f.path, "a link to itself");
            assert_eq!(f.length, 0, "a link with data");
        }
    }
    // The info dictionary bytes must themselves parse as a dictionary.
    assert!(rivulet_bencode::decode(&m.info_bytes).is_ok_and(|v| v.as_dict().is_some()));
    for p in 0..layout.num_pieces().min(MAX_PIECES_CHECKED) {
        let len = layout.piece_len(p).expect("piece within num_pieces has a length");
        assert!(len >= 1 && len <= layout.piece_length());
        let spans = layout.piece_spans(p).expect("piece within num_pieces has spans");
        let mut sum = 0u64;
        for s in spans {
            assert!(s.len > 0, "zero-length span in piece {p}");
            let flen = layout.file_length(s.file).expect("span names an existing file");
            assert!(s.offset + s.len <= flen, "span past end of file {}", s.file);
            sum += s.len;
        }
        assert_eq!(sum, len, "spans of piece {p} do not add up");
    }
    assert!(layout.piece_len(layout.num_pieces()).is_none());
});
