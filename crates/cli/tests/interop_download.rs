//! `rivulet download` against real BitTorrent programs on loopback: libtorrent,
//! aria2 and Transmission seeders, opentracker, several seeders at once, peers
//! that send corrupt data or vanish mid-piece, and a kill -9 halfway through.
//!
//! The programs are not always installed, so these tests are ignored by
//! default; CI installs them and runs
//!
//! ```text
//! cargo test -p rivulet --test interop_download -- --ignored --test-threads=1
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rivulet_testkit::fixture::Fixture;
use rivulet_testkit::peer::blocking::block_on;
use rivulet_testkit::peer::{Act, FakePeer};
use rivulet_wire::Reserved;
use support::{
    assert_same_tree, make_torrent, multi_file_tree, next_loopback, poll_until, require_libtorrent,
    require_program, single_file, Aria2, Aria2Config, LtConfig, LtPeer, OpenTracker,
    TransmissionDaemon,
};

const MINUTE: Duration = Duration::from_secs(60);

fn rivulet() -> Command {
    support::rivulet::command()
}

/// Runs `rivulet download TORRENT -o DIR --bind <its own 127.0.0.x> ARGS...`
/// to the end (on any free port unless ARGS has `--port`).
fn download(torrent: &Path, dir: &Path, args: &[String]) -> Output {
    support::rivulet::download_to_end(torrent, dir, args, &[], None)
}

fn peer_args(peers: &[SocketAddr]) -> Vec<String> {
    peers.iter().map(|p| format!("--peer={p}")).collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The last number before `what` in rivulet's summary line ("... 2 hash
/// failures, 1 peer banned": 2 before "hash failure", 1 before "banned").
fn summary_count(out: &Output, what: &str) -> u64 {
    let text = stderr(out);
    let line = text
        .lines()
        .find(|l| l.starts_with("done:"))
        .unwrap_or_else(|| panic!("no summary line in:\n{text}"));
    let before = line.split(what).next().unwrap();
    before
        .split_whitespace()
        .rev()
        .find_map(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before {what:?} in {line:?}"))
}

fn libtorrent_seeder(torrent: &Path, data_parent: &Path, cfg: LtConfig) -> LtPeer {
    let mut seeder = LtPeer::start(torrent, data_parent, cfg);
    seeder.wait_seeding(MINUTE);
    seeder
}

#[test]
#[ignore = "interop: needs python3-libtorrent and opentracker (installed by .ci/run)"]
fn single_file_from_libtorrent_through_opentracker() {
    require_libtorrent();
    require_program("opentracker", "opentracker");
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "single.bin", 5_000_000 + 123, 1);
    let mut tracker = OpenTracker::start(Ipv4Addr::LOCALHOST, 0);
    let (torrent, hash) = make_torrent(&data, Some(&tracker.http_announce_url()), 32 * 1024);
    tracker.whitelist(&hash);
    let mut seeder = libtorrent_seeder(&torrent, &seed_dir, LtConfig::new(next_loopback()));
    seeder.wait_announced(MINUTE);

    let out_dir = tmp.path().join("out");
    let out = download(&torrent, &out_dir, &["--port=6882".into()]);
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("single.bin"));
    assert!(seeder.status().total_payload_upload >= 5_000_000);
    // The tracker heard `completed`: one download counted.
    let counts = poll_until(
        "tracker counts the completed download",
        MINUTE,
        || match tracker.scrape(&hash) {
            Some(c) if c.downloaded >= 1 => Ok(c),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(counts.downloaded >= 1);
}

#[test]
#[ignore = "interop: needs python3-libtorrent and opentracker (installed by .ci/run)"]
fn multi_file_from_libtorrent_over_udp_tracker() {
    require_libtorrent();
    require_program("opentracker", "opentracker");
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    // Nested folders, a zero-length file, files smaller than a piece, a piece
    // spanning three or more files, non-ASCII names.
    let data = multi_file_tree(&seed_dir, "tree", 2, 700_000);
    let mut tracker = OpenTracker::start(Ipv4Addr::LOCALHOST, 0);
    let (torrent, hash) = make_torrent(&data, Some(&tracker.udp_announce_url()), 16 * 1024);
    tracker.whitelist(&hash);
    let mut seeder = libtorrent_seeder(&torrent, &seed_dir, LtConfig::new(next_loopback()));
    seeder.wait_announced(MINUTE);

    let out_dir = tmp.path().join("out");
    let out = download(&torrent, &out_dir, &[]);
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("tree"));
}

#[test]
#[ignore = "interop: needs aria2 and python3-libtorrent (installed by .ci/run)"]
fn from_an_aria2_seeder() {
    require_libtorrent();
    require_program("aria2c", "aria2");
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = multi_file_tree(&seed_dir, "tree", 3, 2_000_000);
    let (torrent, _) = make_torrent(&data, None, 64 * 1024);
    let aria = Aria2::seeder(&torrent, &seed_dir, next_loopback());
    let out_dir = tmp.path().join("out");
    let out = download(&torrent, &out_dir, &peer_args(&[aria.addr()]));
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("tree"));
}

#[test]
#[ignore = "interop: needs transmission-daemon and python3-libtorrent (installed by .ci/run)"]
fn from_a_transmission_seeder() {
    require_libtorrent();
    require_program("transmission-daemon", "transmission-daemon");
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "movie.bin", 3_000_000, 4);
    let (torrent, _) = make_torrent(&data, None, 64 * 1024);
    let mut tr = TransmissionDaemon::start(next_loopback(), &seed_dir);
    tr.seed(&torrent, MINUTE);
    let out_dir = tmp.path().join("out");
    let out = download(&torrent, &out_dir, &peer_args(&[tr.peer_addr()]));
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("movie.bin"));
}

#[test]
#[ignore = "interop: needs python3-libtorrent, aria2, transmission-daemon (installed by .ci/run)"]
fn from_four_seeders_at_once_each_contributing() {
    require_libtorrent();
    require_program("aria2c", "aria2");
    require_program("transmission-daemon", "transmission-daemon");
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let size = 12_000_000;
    let data = single_file(&seed_dir, "big.bin", size, 5);
    let (torrent, hash) = make_torrent(&data, None, 64 * 1024);
    // Throttled so that the download lasts past Transmission's first rechoke
    // (about 10 s after we connect), so that every seeder gets to serve.
    let rate = 300_000;
    let mut lt1 = libtorrent_seeder(
        &torrent,
        &seed_dir,
        LtConfig::new(next_loopback()).rate_limit(rate, 0),
    );
    let mut lt2 = libtorrent_seeder(
        &torrent,
        &seed_dir,
        LtConfig::new(next_loopback()).rate_limit(rate, 0),
    );
    let mut cfg = Aria2Config::seeder(next_loopback());
    cfg.max_upload = rate;
    let mut aria = Aria2::start(&torrent, &seed_dir, cfg);
    aria.wait_seeding(MINUTE);
    let mut tr = TransmissionDaemon::start(next_loopback(), &seed_dir);
    tr.seed(&torrent, MINUTE);

    let peers = [lt1.addr(), lt2.addr(), aria.addr(), tr.peer_addr()];
    let out_dir = tmp.path().join("out");
    let out = download(&torrent, &out_dir, &peer_args(&peers));
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("big.bin"));

    let up = [
        ("libtorrent 1", lt1.status().total_payload_upload),
        ("libtorrent 2", lt2.status().total_payload_upload),
        (
            "aria2",
            aria.status()
                .and_then(|s| s["uploadLength"].as_str().and_then(|n| n.parse().ok()))
                .unwrap_or(0),
        ),
        ("transmission", tr.torrent(&hash).uploaded_ever),
    ];
    eprintln!("uploaded by each seeder: {up:?}");
    for (who, bytes) in up {
        assert!(bytes >= 16 * 1024, "{who} sent only {bytes} bytes: {up:?}");
    }
    assert!(up.iter().map(|u| u.1).sum::<u64>() >= size);
}

#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn corrupt_and_vanishing_peers_do_not_spoil_the_download() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let size = 6_000_000u64;
    let piece_len = 64 * 1024u32;
    let data = single_file(&seed_dir, "data.bin", size, 6);
    let (torrent, hash) = make_torrent(&data, None, piece_len);
    let pieces = size.div_ceil(u64::from(piece_len)) as usize;
    // Fake peers that claim every piece (the test kit's, run on a runtime
    // of their own), serving the same bytes.
    let fx = Fixture::from_torrent(
        &std::fs::read(&torrent).unwrap(),
        std::fs::read(&data).unwrap(),
    );
    assert_eq!(fx.info_hash().to_hex(), hash);
    let every_piece = vec![true; pieces];

    // Sends right-sized blocks of wrong bytes.
    let have = every_piece.clone();
    let corrupt = block_on(FakePeer::start(&fx, move |c| {
        c.seed(have.clone(), Reserved::NONE, |_, _| vec![Act::Corrupt])
    }));
    // Serves good blocks but hangs up after three, in the middle of a piece.
    let served = Arc::new(AtomicUsize::new(0));
    let s2 = Arc::clone(&served);
    let vanishing = block_on(FakePeer::start(&fx, move |c| {
        let s2 = Arc::clone(&s2);
        c.seed(every_piece.clone(), Reserved::NONE, move |_, _| {
            if s2.fetch_add(1, Ordering::SeqCst) % 4 == 3 {
                vec![Act::Close]
            } else {
                vec![Act::Serve]
            }
        })
    }));
    // An honest seeder, slowed down so the bad peers get their share.
    let seeder = libtorrent_seeder(
        &torrent,
        &seed_dir,
        LtConfig::new(next_loopback()).rate_limit(1_500_000, 0),
    );

    let out_dir = tmp.path().join("out");
    // Plaintext only: the fake peers do not speak MSE, and with encryption
    // preferred each would count one more connection (the MSE attempt)
    // before the one that counts here.
    let mut args = peer_args(&[corrupt.addr, vanishing.addr, seeder.addr()]);
    args.push("--encryption=off".to_owned());
    let out = download(&torrent, &out_dir, &args);
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("data.bin"));
    assert!(
        summary_count(&out, "hash failure") >= 1,
        "the corrupt peer was never used"
    );
    assert_eq!(summary_count(&out, "banned"), 1);
    assert!(
        served.load(Ordering::SeqCst) >= 3,
        "the vanishing peer was never used"
    );
    // Banned: never connected to again.
    assert_eq!(corrupt.connections(), 1);
}

#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn kill_9_halfway_then_resume() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let size = 16_000_000u64;
    let data = single_file(&seed_dir, "data.bin", size, 7);
    let (torrent, _) = make_torrent(&data, None, 64 * 1024);
    // 4 MB/s: the download takes about 4 s, long enough to stop it halfway.
    let mut seeder = libtorrent_seeder(
        &torrent,
        &seed_dir,
        LtConfig::new(next_loopback()).rate_limit(4_000_000, 0),
    );
    let out_dir = tmp.path().join("out");
    let mut child = rivulet()
        .arg("download")
        .arg(&torrent)
        .arg("-o")
        .arg(&out_dir)
        .arg(format!("--peer={}", seeder.addr()))
        .arg(format!("--bind={}", next_loopback()))
        .arg("--port=0")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll_until("the seeder has sent half the data", MINUTE, || {
        let up = seeder.status().total_payload_upload;
        if up >= size / 2 {
            Ok(())
        } else {
            Err(format!("{up} bytes sent"))
        }
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let before = seeder.status().total_payload_upload;
    let out = download(&torrent, &out_dir, &peer_args(&[seeder.addr()]));
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("data.bin"));
    // The rerun resumed: it found pieces on disk and fetched only the rest.
    let text = stderr(&out);
    let resumed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("resuming: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume line in:\n{text}"));
    assert!(resumed > 0);
    let sent_again = seeder.status().total_payload_upload - before;
    let missing = size - resumed * 64 * 1024;
    // Whatever was in flight at the kill may be fetched twice, nothing more:
    // allow one pipeline's worth (1 MiB) beyond what was missing.
    assert!(
        sent_again <= missing + (1 << 20),
        "fetched {sent_again} bytes again, {missing} were missing"
    );
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[ignore = "interop: needs python3-libtorrent and root for a small tmpfs (CI runs as root)"]
fn full_disk_stops_with_a_clear_error() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "data.bin", 4_000_000, 8);
    let (torrent, _) = make_torrent(&data, None, 64 * 1024);
    let seeder = libtorrent_seeder(&torrent, &seed_dir, LtConfig::new(next_loopback()));
    // A 1 MiB file system: the sparse file fits, its data does not.
    let small = tmp.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(status.success(), "mounting a tmpfs needs root");
    let _mount = Mount(small.clone());
    let out = download(&torrent, &small, &peer_args(&[seeder.addr()]));
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(text.contains("error: disk full:"), "{text}");
    assert!(text.contains("No space left on device"), "{text}");
}
