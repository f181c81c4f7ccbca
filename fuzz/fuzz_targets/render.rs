//! Fuzzes what `rivulet info` shows: any .torrent that parses (v2-only
//! included) and any magnet link that parses is rendered as text and as
//! JSON without a panic, whatever its dates, sizes, counts and strings; the
//! text holds no control character but line breaks (nothing from the
//! torrent can drive the terminal), and the JSON parses back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivulet_cli::render;
use rivulet_core::{Magnet, Metainfo};

fn check_text(text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "control character in: {text:?}"
    );
}

fn check_json(v: &serde_json::Value) {
    let s = serde_json::to_string(v).expect("JSON values always serialize");
    let back: serde_json::Value = serde_json::from_str(&s).expect("JSON parses back");
    assert_eq!(&back, v);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Metainfo::from_bytes_any(data) {
        check_text(&render::torrent_text(&m));
        check_json(&render::torrent_json(&m));
        if let Some(d) = m.creation_date {
            check_text(&render::date(d));
        }
    }
    if let Ok(uri) = std::str::from_utf8(data) {
        if let Ok(m) = Magnet::parse(uri) {
            check_text(&render::magnet_text(&m));
            check_json(&render::magnet_json(&m));
        }
    }
});
