//! Encrypted connections (MSE/PE) against real BitTorrent programs: a
//! libtorrent seeder that accepts RC4 only serves `rivulet download` a
//! multi-file tree; libtorrent and aria2 leechers that require encryption
//! download from `rivulet seed`; Transmission with encryption required
//! serves rivulet and, in a network namespace of its own, downloads from
//! it; and with the default policy rivulet still reaches a libtorrent that
//! has encryption turned off.
//!
//! Each program is set to refuse plaintext, so a download that completes
//! went over RC4 (libtorrent's `pe_forced` with `allowed_enc_level` RC4,
//! aria2's `--bt-require-crypto --bt-min-crypto-level=arc4`, Transmission's
//! `"encryption": 2`); before rivulet spoke MSE, each of these stalled at
//! 0 B.
//!
//! The programs are not always installed, so these tests are ignored by
//! default; CI installs them and runs
//!
//! ```text
//! cargo test -p rivulet --test interop_encryption -- --ignored --test-threads=1
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::json;
use support::data::assert_same_tree_except_empty_files;
use support::{
    assert_same_tree, free_port, make_torrent, multi_file_tree, next_loopback, require_libtorrent,
    require_program, single_file, Aria2, Aria2Config, LtConfig, LtPeer, Netns, OpenTracker,
    Rivulet, RivuletCmd, TransmissionDaemon,
};

const MINUTE: Duration = Duration::from_secs(60);

/// `rivulet download TORRENT -o DIR --bind <its own 127.0.0.x> --port=0
/// ARGS...`, run to the end.
fn download(torrent: &Path, dir: &Path, args: &[String]) -> Output {
    support::rivulet::download_to_end(torrent, dir, args, &[], None)
}

/// `rivulet seed TORRENT -o DIR --bind IP --port <free> ARGS...`, ready to
/// serve.
fn seeder(torrent: &Path, dir: &Path, ip: Ipv4Addr, args: &[&str]) -> Rivulet {
    let mut cmd = RivuletCmd::seed(torrent, dir).bind(ip).port(free_port(ip));
    for a in args {
        cmd = cmd.arg(*a);
    }
    let mut s = cmd.spawn();
    s.wait_listening(MINUTE);
    s.wait_listening_lines(MINUTE);
    s
}

fn dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// libtorrent accepting and making RC4 connections only seeds a multi-file
/// tree; rivulet (default policy) downloads all of it.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn libtorrent_seeder_that_requires_encryption_serves_rivulet() {
    require_libtorrent();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = multi_file_tree(&seed_dir, "encrypted tree", 31, 2_000_000);
    let (torrent, _) = make_torrent(&data, None, 32 * 1024);
    let mut lt = LtPeer::start(
        &torrent,
        &seed_dir,
        LtConfig::new(next_loopback()).encryption_forced(),
    );
    lt.wait_seeding(MINUTE);
    let out_dir = tmp.path().join("out");
    let out = download(&torrent, &out_dir, &[format!("--peer={}", lt.addr())]);
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("encrypted tree"));
    let sent = lt.status().total_payload_upload;
    assert!(sent >= 2_000_000, "libtorrent sent only {sent} bytes");
    eprintln!("libtorrent (RC4 only) → rivulet: {:?}", started.elapsed());
}

/// A libtorrent leecher that requires encryption connects to `rivulet seed`
/// and gets every byte.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn libtorrent_leecher_that_requires_encryption_downloads_from_rivulet() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "for libtorrent.bin", 3_000_000 + 17, 32);
    let (torrent, _) = make_torrent(&data, None, 64 * 1024);
    let mut seed = seeder(&torrent, &seed_dir, next_loopback(), &[]);
    let leech_dir = dir(tmp.path(), "leech");
    let mut lt = LtPeer::start(
        &torrent,
        &leech_dir,
        LtConfig::new(next_loopback())
            .encryption_forced()
            .connect(seed.addr()),
    );
    lt.wait_seeding(2 * MINUTE);
    assert_same_tree(&data, &leech_dir.join("for libtorrent.bin"));
    seed.stop(MINUTE).assert_success();
}

/// `rivulet seed` connects to an aria2 leecher that requires encryption
/// (aria2 is told of no peer; rivulet is), which downloads a multi-file
/// tree.
#[test]
#[ignore = "interop: needs aria2 and python3-libtorrent (installed by .ci/run)"]
fn aria2_leecher_that_requires_encryption_downloads_from_rivulet() {
    require_libtorrent();
    require_program("aria2c", "aria2");
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = multi_file_tree(&seed_dir, "tree for aria2", 33, 1_500_000);
    let (torrent, _) = make_torrent(&data, None, 32 * 1024);
    let leech_dir = dir(tmp.path(), "leech");
    let mut cfg = Aria2Config::leecher(next_loopback());
    cfg.extra_args.extend([
        "--bt-require-crypto=true".to_owned(),
        "--bt-min-crypto-level=arc4".to_owned(),
    ]);
    let mut aria = Aria2::start(&torrent, &leech_dir, cfg);
    let ip = next_loopback();
    let mut seed = seeder(
        &torrent,
        &seed_dir,
        ip,
        &["--peer", &aria.addr().to_string()],
    );
    aria.wait_success(2 * MINUTE);
    assert_same_tree(&data, &leech_dir.join("tree for aria2"));
    seed.stop(MINUTE).assert_success();
}

/// Transmission with encryption required seeds on loopback; `rivulet
/// download --encryption require` gets every byte from it.
#[test]
#[ignore = "interop: needs transmission-daemon and python3-libtorrent (installed by .ci/run)"]
fn transmission_seeder_that_requires_encryption_serves_rivulet() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "from transmission.bin", 2_500_000, 34);
    let (torrent, _) = make_torrent(&data, None, 64 * 1024);
    let mut tr = TransmissionDaemon::start_with(
        next_loopback(),
        &seed_dir,
        None,
        json!({ "encryption": 2 }),
    );
    tr.seed(&torrent, MINUTE);
    let out_dir = tmp.path().join("out");
    let out = download(
        &torrent,
        &out_dir,
        &[
            format!("--peer={}", tr.peer_addr()),
            "--encryption=require".to_owned(),
        ],
    );
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("from transmission.bin"));
}

/// A Transmission leecher with encryption required finds `rivulet seed
/// --encryption require` through opentracker and downloads from it, all in
/// a network namespace (Transmission does not connect to 127.0.0.0/8).
#[test]
#[ignore = "interop: needs root (network namespace), transmission-daemon, python3-libtorrent, opentracker (installed by .ci/run)"]
fn transmission_leecher_that_requires_encryption_downloads_from_rivulet() {
    require_libtorrent();
    require_program("transmission-daemon", "transmission-daemon");
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = multi_file_tree(&seed_dir, "tree for transmission", 35, 1_000_000);
    let ns = Netns::create();
    let mut tracker = OpenTracker::start_in(&ns, ns.next_ip(), 0);
    let (torrent, hash) = make_torrent(&data, Some(&tracker.http_announce_url()), 32 * 1024);
    tracker.whitelist(&hash);
    let mut seed = RivuletCmd::seed(&torrent, &seed_dir)
        .bind(ns.next_ip())
        .port(ns.next_port())
        .netns(&ns)
        .arg("--encryption=require")
        .spawn();
    seed.wait_listening(MINUTE);
    seed.wait_listening_lines(MINUTE);
    tracker.wait_for_seeders(&hash, 1, MINUTE);
    let leech_dir = dir(tmp.path(), "leech");
    let mut tr = TransmissionDaemon::start_with(
        ns.next_ip(),
        &leech_dir,
        Some(ns.clone()),
        json!({ "encryption": 2 }),
    );
    assert_eq!(tr.add_torrent(&torrent), hash);
    tr.wait_complete(&hash, 3 * MINUTE);
    // Transmission 3.00 does not create zero-length files.
    assert_same_tree_except_empty_files(&data, &leech_dir.join("tree for transmission"));
    seed.stop(MINUTE).assert_success();
}

/// With the default policy rivulet first tries MSE, and falls back to
/// plaintext at once for a libtorrent that has encryption turned off.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn the_default_policy_reaches_a_peer_without_encryption() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "plain.bin", 1_500_000, 36);
    let (torrent, _) = make_torrent(&data, None, 32 * 1024);
    let mut cfg = LtConfig::new(next_loopback());
    cfg.encryption = "disabled";
    let mut lt = LtPeer::start(&torrent, &seed_dir, cfg);
    lt.wait_seeding(MINUTE);
    let started = Instant::now();
    let out_dir = tmp.path().join("out");
    let out = download(&torrent, &out_dir, &[format!("--peer={}", lt.addr())]);
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("plain.bin"));
    let took = started.elapsed();
    eprintln!("plaintext fallback download: {took:?}");
    // The fallback is immediate, not a handshake timeout (10 s).
    assert!(took < Duration::from_secs(8), "took {took:?}");
}
