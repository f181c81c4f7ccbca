//! Magnet links against libtorrent 2.0: rivulet fetches a torrent's metadata
//! (BEP 9) from a libtorrent seeder it finds through the link's `x.pe` or
//! its tracker, then downloads the data; runs the same command again with
//! no peer at all (the fetched .torrent was kept); fetches metadata that is
//! an exact multiple of 16 KiB; `info --fetch --save` writes the torrent;
//! and a libtorrent leecher that has only a magnet link gets the metadata
//! and the data from `rivulet seed`.
//!
//! These tests are ignored by default (they need the real programs); CI
//! runs them with
//!
//! ```text
//! cargo test -p rivulet --test interop_magnet -- --ignored --test-threads=1
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rivulet_core::Metainfo;
use sha1::{Digest, Sha1};
use support::{
    assert_same_tree, free_port, make_torrent_with, next_loopback, require_libtorrent,
    require_program, LtConfig, LtPeer, OpenTracker, RivuletCmd, TorrentOptions,
};

const MINUTE: Duration = Duration::from_secs(60);

fn rivulet() -> Command {
    support::rivulet::command()
}

/// Runs `rivulet download LINK -o DIR --bind <its own 127.0.0.x> --port=0`
/// to the end.
fn download(link: &str, dir: &Path) -> Output {
    let out = rivulet()
        .arg("download")
        .arg(link)
        .arg("-o")
        .arg(dir)
        .arg(format!("--bind={}", next_loopback()))
        .arg("--port=0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!(
        "rivulet download: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A folder of `n` small files with long names: its info dictionary takes
/// more than one 16 KiB metadata piece.
fn many_files(parent: &Path, n: usize) -> PathBuf {
    let root = parent.join("many files");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..n {
        let body: Vec<u8> = (0..(1000 + i * 37)).map(|j| (i * 31 + j) as u8).collect();
        std::fs::write(
            root.join(format!("a file with a rather long name, number {i:04}.dat")),
            body,
        )
        .unwrap();
    }
    root
}

fn info_bytes(torrent: &Path) -> Vec<u8> {
    Metainfo::from_bytes(&std::fs::read(torrent).unwrap())
        .unwrap()
        .info_bytes
}

fn kept(dir: &Path, hash: &str) -> PathBuf {
    dir.join(".rivulet").join(format!("{hash}.torrent"))
}

/// rivulet starts from a magnet link whose only peer is a libtorrent seeder
/// (`x.pe`): the metadata (several pieces) and then the data arrive; the
/// .torrent is kept, so that the same command needs no peer the next time.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn from_libtorrent_by_x_pe_then_again_with_no_peer() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = many_files(&seed_dir, 300);
    let t = make_torrent_with(&data, &TorrentOptions::new(16 * 1024));
    let info = info_bytes(&t.path);
    assert!(info.len() > 16 * 1024, "{} bytes of metadata", info.len());
    let mut seeder = LtPeer::start(&t.path, &seed_dir, LtConfig::new(next_loopback()));
    seeder.wait_seeding(MINUTE);
    let link = format!(
        "magnet:?xt=urn:btih:{}&dn=many+files&x.pe={}",
        t.info_hash_v1,
        seeder.addr()
    );
    let out_dir = tmp.path().join("out");
    let out = download(&link, &out_dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("metadata: many files"),
        "{}",
        stderr(&out)
    );
    assert_same_tree(&data, &out_dir.join("many files"));
    let kept = kept(&out_dir, &t.info_hash_v1);
    assert_eq!(
        info_bytes(&kept),
        info,
        "the kept .torrent holds the exact info"
    );

    // No peer any more: the kept .torrent and the data on disk are enough.
    seeder.quit();
    let again = download(&link, &out_dir);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        !stderr(&again).contains("fetching metadata"),
        "{}",
        stderr(&again)
    );
    assert_same_tree(&data, &out_dir.join("many files"));
}

/// The link names only a tracker: peers (a libtorrent seeder) come from
/// announcing to it.
#[test]
#[ignore = "interop: needs python3-libtorrent and opentracker (installed by .ci/run)"]
fn from_libtorrent_through_the_links_tracker() {
    require_libtorrent();
    require_program("opentracker", "opentracker");
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = many_files(&seed_dir, 40);
    let mut tracker = OpenTracker::start(Ipv4Addr::LOCALHOST, 0);
    let url = tracker.http_announce_url();
    let t = make_torrent_with(&data, &TorrentOptions::new(16 * 1024).tracker(&url));
    tracker.whitelist(&t.info_hash_v1);
    let mut seeder = LtPeer::start(&t.path, &seed_dir, LtConfig::new(next_loopback()));
    seeder.wait_seeding(MINUTE);
    seeder.wait_announced(MINUTE);
    let link = format!("magnet:?xt=urn:btih:{}&tr={}", t.info_hash_v1, url);
    let out_dir = tmp.path().join("out");
    let out = download(&link, &out_dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_tree(&data, &out_dir.join("many files"));
    // The kept torrent announces to the link's tracker.
    let m = Metainfo::from_bytes(&std::fs::read(kept(&out_dir, &t.info_hash_v1)).unwrap()).unwrap();
    assert_eq!(m.tracker_tiers(), vec![vec![url]]);
}

/// A single-file torrent whose info dictionary is exactly 32 KiB (two full
/// metadata pieces, no short last one), padded with a key of its own.
fn exact_torrent(dir: &Path) -> (PathBuf, PathBuf, String) {
    use rivulet_bencode::OwnedValue as V;
    let data_dir = dir.join("seed");
    std::fs::create_dir_all(&data_dir).unwrap();
    let content: Vec<u8> = (0..300 * 1024u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(data_dir.join("exact.bin"), &content).unwrap();
    let piece = 16 * 1024;
    let hashes: Vec<u8> = content
        .chunks(piece)
        .flat_map(|c| Sha1::digest(c).to_vec())
        .collect();
    let info = |pad: usize| {
        V::dict()
            .with("length", V::Int(content.len() as i64))
            .with("name", "exact.bin".into())
            .with("piece length", V::Int(piece as i64))
            .with("pieces", V::Bytes(hashes.clone()))
            .with("x-padding", V::Bytes(vec![b'p'; pad]))
            .to_bytes()
    };
    // The pad's length changes the length of its own prefix: try upwards.
    let target = 2 * 16 * 1024;
    let base = info(0).len();
    let pad = (0..32)
        .map(|k| target - base - k)
        .find(|&p| info(p).len() == target)
        .expect("a pad that makes 32 KiB");
    let info = info(pad);
    assert_eq!(info.len(), target);
    let mut torrent = b"d4:info".to_vec();
    torrent.extend_from_slice(&info);
    torrent.push(b'e');
    let path = dir.join("exact.torrent");
    std::fs::write(&path, &torrent).unwrap();
    let hash = hex(&Sha1::digest(&info));
    (path, data_dir, hash)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Metadata of exactly two 16 KiB pieces, from libtorrent; and `info
/// --fetch --save` writes a torrent with the same info.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn metadata_of_exactly_32_kib_and_info_fetch_save() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, seed_dir, hash) = exact_torrent(tmp.path());
    let mut seeder = LtPeer::start(&torrent, &seed_dir, LtConfig::new(next_loopback()));
    seeder.wait_seeding(MINUTE);
    let link = format!("magnet:?xt=urn:btih:{hash}&x.pe={}", seeder.addr());
    let out_dir = tmp.path().join("out");
    let out = download(&link, &out_dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_tree(&seed_dir.join("exact.bin"), &out_dir.join("exact.bin"));

    let saved = tmp.path().join("saved.torrent");
    let o = rivulet()
        .args(["info", &format!("magnet:?xt=urn:btih:{hash}"), "--fetch"])
        .arg(format!("--peer={}", seeder.addr()))
        .arg(format!("--bind={}", next_loopback()))
        .arg("--save")
        .arg(&saved)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("exact.bin"));
    assert_eq!(info_bytes(&saved), info_bytes(&torrent));
}

/// A libtorrent leecher with nothing but a magnet link naming `rivulet
/// seed` gets the metadata from it (BEP 9, served), then the data.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn libtorrent_gets_the_metadata_from_rivulet_seed() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = many_files(&seed_dir, 300);
    let t = make_torrent_with(&data, &TorrentOptions::new(16 * 1024));
    let ip = next_loopback();
    let mut seed = RivuletCmd::seed(&t.path, &seed_dir)
        .bind(ip)
        .port(free_port(ip))
        .spawn();
    let addr: SocketAddr = seed.wait_listening(MINUTE);
    let link = format!("magnet:?xt=urn:btih:{}&x.pe={addr}", t.info_hash_v1);
    let out_dir = tmp.path().join("lt");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut leecher = LtPeer::from_magnet(&link, &out_dir, LtConfig::new(next_loopback()));
    let st = leecher.wait_seeding(MINUTE);
    assert!(st.has_metadata);
    assert_same_tree(&data, &out_dir.join("many files"));
    seed.stop(MINUTE);
}
