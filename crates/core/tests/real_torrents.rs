//! Real .torrent files made by real tools (mktorrent 1.1, transmission-create 3.00,
//! libtorrent-rasterbar 2.0), checked against what the tools themselves report.
//!
//! The fixtures, and the table of expected values in `fixtures/expected.rs`, are
//! made by `fixtures/regenerate.sh`; `fixtures/expected.json` holds the same values
//! plus the tool versions and the v2 info-hashes of the hybrids.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use rivulet_core::{InfoHash, Metainfo};

/// A file as libtorrent lists it: path with the torrent name first for
/// multi-file torrents, length, and whether it is a BEP 47 padding file.
struct ExpectedFile {
    path: &'static [&'static str],
    length: u64,
    padding: bool,
}

/// What the tools report about one fixture.
struct Expected {
    /// Fixture file name in `tests/fixtures/`.
    file: &'static str,
    /// The tool that made it.
    tool: &'static str,
    /// v1 info-hash (libtorrent, and transmission-show and aria2c for v1-only).
    info_hash_v1: &'static str,
    name: &'static str,
    /// Padding included.
    total_length: u64,
    piece_length: u64,
    num_pieces: usize,
    /// Padding files included (libtorrent's `files().num_files()`).
    num_files: usize,
    num_padding_files: usize,
    multi_file: bool,
    private: bool,
    hybrid: bool,
    /// Length of the bencoded info dictionary.
    info_len: usize,
    first_piece_sha1: &'static str,
    last_piece_sha1: &'static str,
    tracker_tiers: &'static [&'static [&'static str]],
    web_seeds: &'static [&'static str],
    source: Option<&'static str>,
    comment: Option<&'static str>,
    created_by: Option<&'static str>,
    files: &'static [ExpectedFile],
    /// Per piece, libtorrent's `map_block`: (file index, offset in file, length).
    piece_spans: &'static [&'static [(usize, u64, u64)]],
}

include!("fixtures/expected.rs");

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_fixture(file: &str) -> Vec<u8> {
    let path = fixtures_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Compares one fixture with what the tools report; returns every mismatch.
fn check(e: &Expected) -> Vec<String> {
    let mut bad = Vec::new();
    macro_rules! same {
        ($what:expr, $got:expr, $want:expr) => {{
            let (got, want) = ($got, $want);
            if got != want {
                bad.push(format!(
                    "{} ({}): {}: got {:?}, the tool reports {:?}",
                    e.file, e.tool, $what, got, want
                ));
            }
        }};
    }

    let m = match Metainfo::from_bytes(&read_fixture(e.file)) {
        Ok(m) => m,
        Err(err) => return vec![format!("{} ({}): refused: {err}", e.file, e.tool)],
    };
    let info = &m.info;

    same!("v1 info-hash", m.info_hash.to_hex(), e.info_hash_v1);
    same!(
        "info-hash of info_bytes",
        InfoHash::from_info_bytes(&m.info_bytes),
        m.info_hash
    );
    same!("info dictionary length", m.info_bytes.len(), e.info_len);
    same!("name", info.name.as_str(), e.name);
    same!("total length", info.total_length(), e.total_length);
    same!("piece length", info.piece_length, e.piece_length);
    same!("piece count", info.num_pieces(), e.num_pieces);
    same!(
        "layout piece count",
        info.layout().num_pieces(),
        e.num_pieces as u64
    );
    same!(
        "file count (padding included)",
        info.files.len(),
        e.num_files
    );
    same!(
        "padding file count",
        info.files.iter().filter(|f| f.padding).count(),
        e.num_padding_files
    );
    same!("multi-file", info.multi_file, e.multi_file);
    same!("private", info.private, e.private);
    same!("hybrid", info.hybrid, e.hybrid);
    same!("source", info.source.as_deref(), e.source);
    same!(
        "first piece hash",
        info.pieces.first().map(|h| to_hex(h)),
        Some(e.first_piece_sha1.to_owned())
    );
    same!(
        "last piece hash",
        info.pieces.last().map(|h| to_hex(h)),
        Some(e.last_piece_sha1.to_owned())
    );
    same!(
        "tracker tiers",
        m.tracker_tiers(),
        e.tracker_tiers
            .iter()
            .map(|tier| strings(tier))
            .collect::<Vec<_>>()
    );
    same!("web seeds", m.web_seeds.clone(), strings(e.web_seeds));
    same!("comment", m.comment.as_deref(), e.comment);
    same!("created by", m.created_by.as_deref(), e.created_by);

    let got_files: Vec<(Vec<String>, u64, bool)> = info
        .files
        .iter()
        .map(|f| (f.path.clone(), f.length, f.padding))
        .collect();
    let want_files: Vec<(Vec<String>, u64, bool)> = e
        .files
        .iter()
        .map(|f| (strings(f.path), f.length, f.padding))
        .collect();
    same!("files (path, length, padding)", got_files, want_files);

    let layout = info.layout();
    for (piece, want) in e.piece_spans.iter().enumerate() {
        let got: Option<Vec<(usize, u64, u64)>> = layout
            .piece_spans(piece as u64)
            .map(|spans| spans.map(|s| (s.file, s.offset, s.len)).collect());
        same!(format!("spans of piece {piece}"), got, Some(want.to_vec()));
    }
    same!(
        "spans past the last piece",
        layout.piece_spans(e.num_pieces as u64).is_none(),
        true
    );
    bad
}

#[test]
fn every_fixture_has_expected_values() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".torrent"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|e| e.file.to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn fixtures_match_what_the_tools_report() {
    let mut checked = 0;
    let mut bad = Vec::new();
    for e in EXPECTED {
        bad.extend(check(e));
        checked += 1;
    }
    assert!(bad.is_empty(), "mismatches:\n{}", bad.join("\n"));
    assert!(checked >= 10, "only {checked} fixtures checked");
}

#[test]
fn every_tool_and_feature_is_covered() {
    for tool in ["mktorrent", "transmission", "libtorrent"] {
        assert!(EXPECTED.iter().any(|e| e.tool == tool && e.multi_file));
        assert!(EXPECTED.iter().any(|e| e.tool == tool && !e.multi_file));
        assert!(EXPECTED
            .iter()
            .any(|e| e.tool == tool && e.tracker_tiers.len() >= 2));
    }
    assert!(EXPECTED.iter().any(|e| e.private));
    assert!(EXPECTED.iter().any(|e| e.hybrid && e.num_padding_files > 0));
    assert!(EXPECTED.iter().any(|e| e.source.is_some()));
    assert!(EXPECTED.iter().any(|e| !e.web_seeds.is_empty()));
    assert!(EXPECTED
        .iter()
        .any(|e| e.files.iter().any(|f| f.length == 0)));
    // Some piece spans three or more files.
    assert!(EXPECTED
        .iter()
        .any(|e| e.piece_spans.iter().any(|spans| spans.len() >= 3)));
}

#[test]
fn non_ascii_paths_are_proper_utf8() {
    // NFC, as the tools stored it: "é" is U+00E9, not "e" + U+0301.
    let dir = "donn\u{e9}es";
    let file = "\u{65e5}\u{672c}\u{8a9e}.txt"; // 日本語.txt
    let mut seen = 0;
    for e in EXPECTED {
        let m = Metainfo::from_bytes(&read_fixture(e.file)).unwrap();
        for f in &m.info.files {
            assert!(
                f.path.iter().all(|c| !c.contains('\u{fffd}')),
                "{}: lossy path {:?}",
                e.file,
                f.path
            );
        }
        if e.name != "rivulet-multi" {
            continue;
        }
        let f = m
            .info
            .files
            .iter()
            .find(|f| f.path.last().map(String::as_str) == Some(file))
            .unwrap_or_else(|| panic!("{}: no {file}", e.file));
        assert_eq!(f.path, ["rivulet-multi", dir, file], "{}", e.file);
        assert_eq!(
            f.path[1].as_bytes(),
            b"donn\xc3\xa9es",
            "{}: folder name bytes",
            e.file
        );
        assert_eq!(
            f.path[2].as_bytes(),
            b"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e.txt",
            "{}: file name bytes",
            e.file
        );
        assert_eq!(f.display_path(), format!("rivulet-multi/{dir}/{file}"));
        assert_eq!(
            f.relative_path(),
            PathBuf::from("rivulet-multi").join(dir).join(file)
        );
        assert_eq!(f.length, 5000);
        seen += 1;
    }
    assert!(seen >= 6, "only {seen} fixtures hold the non-ASCII file");
}

#[test]
fn truncated_fixtures_are_errors_not_panics() {
    for e in EXPECTED {
        let bytes = read_fixture(e.file);
        for len in 0..bytes.len() {
            let prefix = &bytes[..len];
            let result = std::panic::catch_unwind(|| Metainfo::from_bytes(prefix).is_err());
            match result {
                Ok(true) => {}
                Ok(false) => panic!("{}: truncated to {len} bytes was accepted", e.file),
                Err(_) => panic!("{}: truncated to {len} bytes panicked", e.file),
            }
        }
    }
}
