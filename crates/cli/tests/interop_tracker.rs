//! rivulet's tracker side against a real opentracker on loopback, with a
//! libtorrent seeder: `rivulet info --scrape` over HTTP and UDP, a download
//! whose first tier is dead, and the counts opentracker keeps after a
//! download (`completed` once, `stopped` on exit).
//!
//! The programs are not always installed, so these tests are ignored by
//! default; CI installs them and runs
//!
//! ```text
//! cargo test -p rivulet --test interop_tracker -- --ignored --test-threads=1
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    assert_same_tree, free_port, next_loopback, poll_until, require_libtorrent, require_program,
    single_file, LtConfig, LtPeer, OpenTracker, ScrapeCounts,
};

const MINUTE: Duration = Duration::from_secs(60);

fn rivulet() -> Command {
    support::rivulet::command()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    eprintln!(
        "{}: {}\n{}",
        support::command_line(cmd),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `rivulet create DATA -t TIER... -o OUT --piece-length 32K --no-date`;
/// each `tiers` entry is one tier (comma-separated URLs share it). Returns
/// the .torrent's path and v1 info-hash (hex). The same data always gives the
/// same info-hash, whatever the trackers.
fn create(data: &Path, tiers: &[String], out: &Path) -> (PathBuf, String) {
    let mut cmd = rivulet();
    cmd.arg("create").arg(data).arg("-o").arg(out);
    for t in tiers {
        cmd.arg("-t").arg(t);
    }
    cmd.args(["--piece-length", "32K", "--no-date", "--quiet"]);
    let o = run(&mut cmd);
    assert!(o.status.success());
    let info = run(rivulet().arg("info").arg("--json").arg(out));
    assert!(info.status.success());
    let v: Value = serde_json::from_slice(&info.stdout).unwrap();
    (
        out.to_path_buf(),
        v["info_hash"].as_str().unwrap().to_owned(),
    )
}

/// A libtorrent seeder of `torrent` (data in `seed_dir`) that has announced.
fn seeder(torrent: &Path, seed_dir: &Path) -> LtPeer {
    let mut s = LtPeer::start(torrent, seed_dir, LtConfig::new(next_loopback()));
    s.wait_seeding(MINUTE);
    s.wait_announced(MINUTE);
    s
}

/// `rivulet download TORRENT -o DIR --port PORT` from its own 127.0.0.x, to the end; returns its
/// output and how long it took.
fn download(torrent: &Path, dir: &Path, port: u16) -> (Output, Duration) {
    let started = Instant::now();
    let out = run(rivulet()
        .arg("download")
        .arg(torrent)
        .arg("-o")
        .arg(dir)
        .arg(format!("--port={port}"))
        .arg(format!("--bind={}", next_loopback()))
        .arg("--quiet"));
    (out, started.elapsed())
}

/// The tracker's counts for `hash`, once they exist.
fn counts(tracker: &OpenTracker, hash: &str) -> ScrapeCounts {
    tracker
        .scrape(hash)
        .unwrap_or_else(|| panic!("opentracker has no entry for {hash}"))
}

#[test]
#[ignore = "interop: needs python3-libtorrent and opentracker (installed by .ci/run)"]
fn info_scrape_shows_the_seeder_over_http_and_udp() {
    require_libtorrent();
    require_program("opentracker", "opentracker");
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "scraped.bin", 1_000_000, 11);
    let mut tracker = OpenTracker::start(next_loopback(), 0);
    let dead_ip = next_loopback();
    let dead = SocketAddr::from((dead_ip, free_port(dead_ip)));
    let (torrent, hash) = create(
        &data,
        &[
            tracker.http_announce_url(),
            tracker.udp_announce_url(),
            // Refuses connections: an error line, at once.
            format!("http://{dead}/announce"),
            // No scrape convention: said so, not asked.
            format!("http://{}/tracker.php", tracker.addr()),
        ],
        &tmp.path().join("scraped.torrent"),
    );
    tracker.whitelist(&hash);
    let _seeder = seeder(&torrent, &seed_dir);
    tracker.wait_for_seeders(&hash, 1, MINUTE);

    let started = Instant::now();
    let out = run(rivulet().args(["info", "--scrape", "--json"]).arg(&torrent));
    assert!(out.status.success());
    assert!(started.elapsed() < Duration::from_secs(20));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let scrape = v["scrape"].as_array().unwrap();
    assert_eq!(scrape.len(), 4, "{scrape:#?}");
    for (i, entry) in scrape[..2].iter().enumerate() {
        assert_eq!(entry["tier"], i + 1);
        assert_eq!(entry["status"], "ok", "{entry}");
        assert_eq!(entry["seeders"], 1, "{entry}");
        assert_eq!(entry["leechers"], 0, "{entry}");
        assert_eq!(entry["completed"], 0, "{entry}");
    }
    assert_eq!(scrape[0]["url"], tracker.http_announce_url());
    assert_eq!(scrape[1]["url"], tracker.udp_announce_url());
    assert_eq!(scrape[2]["status"], "error");
    assert!(scrape[2]["error"].as_str().unwrap().contains("refused"));
    assert_eq!(scrape[3]["status"], "unsupported");

    // The text form says the same.
    let out = run(rivulet().args(["info", "--scrape"]).arg(&torrent));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    eprintln!("{text}");
    let line = |url: &str| {
        text.lines()
            .find(|l| l.contains(url) && l.contains("seeders"))
            .unwrap_or_else(|| panic!("no scrape line for {url} in:\n{text}"))
            .to_owned()
    };
    for url in [tracker.http_announce_url(), tracker.udp_announce_url()] {
        assert!(
            line(&url).ends_with("seeders 1  leechers 0  completed 0"),
            "{text}"
        );
    }
    assert!(text.contains("error: "), "{text}");
    assert!(text.contains("no scrape support"), "{text}");
}

#[test]
#[ignore = "interop: needs python3-libtorrent and opentracker (installed by .ci/run)"]
fn download_completes_through_the_second_tier_when_the_first_is_dead() {
    require_libtorrent();
    require_program("opentracker", "opentracker");
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "tiers.bin", 3_000_000, 12);
    let mut tracker = OpenTracker::start(next_loopback(), 0);
    // Tier 1: an HTTP port nobody listens on, and a UDP socket that reads
    // nothing (so it never answers; rivulet gives a silent UDP tracker 45 s).
    let dead_ip = next_loopback();
    let dead_http = SocketAddr::from((dead_ip, free_port(dead_ip)));
    let silent = UdpSocket::bind((next_loopback(), 0)).unwrap();
    let silent_url = format!("udp://{}/announce", silent.local_addr().unwrap());
    let (leech_torrent, hash) = create(
        &data,
        &[
            format!("http://{dead_http}/announce,{silent_url}"),
            tracker.http_announce_url(),
        ],
        &tmp.path().join("leech.torrent"),
    );
    // The seeder's copy lists only opentracker (libtorrent tries tiers in
    // order); the info-hash is the same.
    let (seed_torrent, seed_hash) = create(
        &data,
        &[tracker.http_announce_url()],
        &tmp.path().join("seed.torrent"),
    );
    assert_eq!(hash, seed_hash);
    tracker.whitelist(&hash);
    let _seeder = seeder(&seed_torrent, &seed_dir);
    tracker.wait_for_seeders(&hash, 1, MINUTE);

    let out_dir = tmp.path().join("out");
    let (out, took) = download(&leech_torrent, &out_dir, 6890);
    assert!(out.status.success());
    assert_same_tree(&data, &out_dir.join("tiers.bin"));
    // Far less than the 45 s the silent tracker could cost, start and exit
    // included.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // The tracker of tier 2 heard the whole story.
    let c = counts(&tracker, &hash);
    assert_eq!((c.complete, c.incomplete, c.downloaded), (1, 0, 1), "{c:?}");
    // The silent tracker was asked (its datagrams wait, unread): whichever
    // of tier 1's trackers came first, the refused one fails at once.
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let n = silent.recv(&mut buf).unwrap_or(0);
    assert_eq!(n, 16, "a UDP connect request");
}

/// After `rivulet download` through a `url_of(tracker)` tracker, opentracker
/// counts exactly one completed download, no leecher, and only the original
/// seeder: `completed` was sent once and `stopped` on exit.
fn stats_are_honest(udp: bool) {
    require_libtorrent();
    require_program("opentracker", "opentracker");
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(
        &seed_dir,
        "honest.bin",
        2_000_000,
        if udp { 13 } else { 14 },
    );
    let mut tracker = OpenTracker::start(next_loopback(), 0);
    let url = if udp {
        tracker.udp_announce_url()
    } else {
        tracker.http_announce_url()
    };
    let (torrent, hash) = create(&data, &[url], &tmp.path().join("honest.torrent"));
    tracker.whitelist(&hash);
    let _seeder = seeder(&torrent, &seed_dir);
    let before = tracker.wait_for_seeders(&hash, 1, MINUTE);
    assert_eq!((before.incomplete, before.downloaded), (0, 0), "{before:?}");

    let out_dir = tmp.path().join("out");
    let (out, took) = download(&torrent, &out_dir, 6891);
    assert!(out.status.success());
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_same_tree(&data, &out_dir.join("honest.bin"));
    // rivulet has exited: every announce it made is in. opentracker handles
    // announces synchronously, but allow it a moment.
    let after = poll_until(
        "the tracker to count the download and drop the leecher",
        Duration::from_secs(5),
        || {
            let c = counts(&tracker, &hash);
            if c.downloaded >= 1 && c.incomplete == 0 {
                Ok(c)
            } else {
                Err(format!("{c:?}"))
            }
        },
    );
    assert_eq!(after.downloaded, 1, "completed counted once: {after:?}");
    // After `completed` rivulet counted as a seeder; `stopped` removed it,
    // leaving only libtorrent.
    assert_eq!(after.incomplete, 0, "no leecher left: {after:?}");
    assert_eq!(after.complete, 1, "stopped was sent: {after:?}");
}

#[test]
#[ignore = "interop: needs python3-libtorrent and opentracker (installed by .ci/run)"]
fn download_stats_are_honest_over_http() {
    stats_are_honest(false);
}

#[test]
#[ignore = "interop: needs python3-libtorrent and opentracker (installed by .ci/run)"]
fn download_stats_are_honest_over_udp() {
    stats_are_honest(true);
}
