//! uTP (BEP 29) against real BitTorrent programs: libtorrent with TCP
//! turned off (`enable_incoming_tcp`/`enable_outgoing_tcp` false) seeds a
//! multi-file tree to `rivulet download` and leeches from `rivulet seed`,
//! so every byte goes over uTP; the same with encryption required on top
//! (MSE over uTP); and Transmission (libutp) seeds to rivulet over uTP
//! and, in a network namespace, leeches from it over uTP.
//!
//! The programs are not always installed, so these tests are ignored by
//! default; CI installs them and runs
//!
//! ```text
//! cargo test -p rivulet --test interop_utp -- --ignored --test-threads=1
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{
    assert_same_tree, free_port, make_torrent, multi_file_tree, next_loopback, require_libtorrent,
    single_file, LtConfig, LtPeer, Netns, OpenTracker, RivuletCmd, TransmissionDaemon,
};

const MINUTE: Duration = Duration::from_secs(60);

/// `rivulet download TORRENT -o DIR --bind <its own 127.0.0.x> --port=0
/// ARGS...`, run to the end, with the engine's debug log (which says
/// `utp=true` for each connection over uTP); shows the connections.
fn download(torrent: &Path, dir: &Path, args: &[String]) -> Output {
    let show = |l: &str| {
        l.contains("handshake done") || l.contains("encryption") || l.contains("connect failed")
    };
    support::rivulet::download_to_end(
        torrent,
        dir,
        args,
        &[("RUST_LOG", "rivulet_engine=debug")],
        Some(&show),
    )
}

/// Whether the debug log shows a peer connection made over uTP.
fn used_utp(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .any(|l| l.contains("handshake done") && l.contains("utp=true"))
}

fn dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn utp_only(cfg: LtConfig) -> LtConfig {
    LtConfig {
        utp: true,
        tcp: false,
        ..cfg
    }
}

/// libtorrent with TCP off seeds a multi-file tree; rivulet (defaults:
/// TCP first) finds TCP useless and downloads everything over uTP.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn libtorrent_seeder_over_utp_only_serves_rivulet() {
    require_libtorrent();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = multi_file_tree(&seed_dir, "utp tree", 41, 3_000_000);
    let (torrent, _) = make_torrent(&data, None, 32 * 1024);
    let mut lt = LtPeer::start(
        &torrent,
        &seed_dir,
        utp_only(LtConfig::new(next_loopback())),
    );
    lt.wait_seeding(MINUTE);
    let out_dir = tmp.path().join("out");
    let out = download(&torrent, &out_dir, &[format!("--peer={}", lt.addr())]);
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("utp tree"));
    assert!(used_utp(&out), "no connection over uTP");
    eprintln!("libtorrent (uTP only) → rivulet: {:?}", started.elapsed());
}

/// A libtorrent leecher with TCP off connects to `rivulet seed` over uTP
/// and gets every byte.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn libtorrent_leecher_over_utp_only_downloads_from_rivulet() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "over utp.bin", 4_000_000 + 3, 42);
    let (torrent, _) = make_torrent(&data, None, 64 * 1024);
    let ip = next_loopback();
    let mut seed = RivuletCmd::seed(&torrent, &seed_dir)
        .bind(ip)
        .port(free_port(ip))
        .spawn();
    seed.wait_listening(MINUTE);
    seed.wait_listening_lines(MINUTE);
    let leech_dir = dir(tmp.path(), "leech");
    let mut lt = LtPeer::start(
        &torrent,
        &leech_dir,
        utp_only(LtConfig::new(next_loopback()).connect(seed.addr())),
    );
    lt.wait_seeding(2 * MINUTE);
    assert_same_tree(&data, &leech_dir.join("over utp.bin"));
    seed.stop(MINUTE).assert_success();
}

/// Encryption over uTP: libtorrent with TCP off and RC4 required seeds;
/// rivulet requires encryption too.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn encrypted_over_utp_with_libtorrent() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "rc4 over utp.bin", 2_000_000 + 9, 43);
    let (torrent, _) = make_torrent(&data, None, 32 * 1024);
    let mut lt = LtPeer::start(
        &torrent,
        &seed_dir,
        utp_only(LtConfig::new(next_loopback()).encryption_forced()),
    );
    lt.wait_seeding(MINUTE);
    let out_dir = tmp.path().join("out");
    let out = download(
        &torrent,
        &out_dir,
        &[
            format!("--peer={}", lt.addr()),
            "--encryption=require".to_owned(),
            "--utp-first".to_owned(),
        ],
    );
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("rc4 over utp.bin"));
    assert!(used_utp(&out), "no connection over uTP");
}

/// Transmission (libutp) seeds with uTP on; rivulet tries uTP first and
/// downloads over it.
#[test]
#[ignore = "interop: needs transmission-daemon and python3-libtorrent (installed by .ci/run)"]
fn transmission_seeds_to_rivulet_over_utp() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "from libutp.bin", 2_500_000, 44);
    let (torrent, _) = make_torrent(&data, None, 64 * 1024);
    let mut tr = TransmissionDaemon::start_with(
        next_loopback(),
        &seed_dir,
        None,
        json!({ "utp-enabled": true }),
    );
    tr.seed(&torrent, MINUTE);
    let out_dir = tmp.path().join("out");
    let out = download(
        &torrent,
        &out_dir,
        &[
            format!("--peer={}", tr.peer_addr()),
            "--utp-first".to_owned(),
        ],
    );
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("from libutp.bin"));
    assert!(used_utp(&out), "no connection over uTP");
}

/// A Transmission leecher with uTP on (it tries uTP first) finds `rivulet
/// seed` through opentracker and downloads over uTP, all in a network
/// namespace (Transmission does not connect to 127.0.0.0/8).
#[test]
#[ignore = "interop: needs root (network namespace), transmission-daemon, python3-libtorrent, opentracker (installed by .ci/run)"]
fn transmission_leeches_from_rivulet_over_utp() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = multi_file_tree(&seed_dir, "utp tree for transmission", 45, 1_000_000);
    let ns = Netns::create();
    let mut tracker = OpenTracker::start_in(&ns, ns.next_ip(), 0);
    let (torrent, hash) = make_torrent(&data, Some(&tracker.http_announce_url()), 32 * 1024);
    tracker.whitelist(&hash);
    let mut seed = RivuletCmd::seed(&torrent, &seed_dir)
        .bind(ns.next_ip())
        .port(ns.next_port())
        .netns(&ns)
        .env("RUST_LOG", "rivulet_engine=debug")
        .spawn();
    seed.wait_listening(MINUTE);
    seed.wait_listening_lines(MINUTE);
    tracker.wait_for_seeders(&hash, 1, MINUTE);
    let leech_dir = dir(tmp.path(), "leech");
    let mut tr = TransmissionDaemon::start_with(
        ns.next_ip(),
        &leech_dir,
        Some(ns.clone()),
        json!({ "utp-enabled": true }),
    );
    assert_eq!(tr.add_torrent(&torrent), hash);
    tr.wait_complete(&hash, 3 * MINUTE);
    // Transmission 3.00 does not create zero-length files.
    support::data::assert_same_tree_except_empty_files(
        &data,
        &leech_dir.join("utp tree for transmission"),
    );
    let exit = seed.stop(MINUTE);
    exit.assert_success();
    let over_utp = exit.output.lines().any(|l| {
        l.contains("handshake done") && l.contains("incoming=true") && l.contains("utp=true")
    });
    assert!(over_utp, "Transmission did not come over uTP");
}
