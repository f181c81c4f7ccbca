//! `rivulet daemon` driven by `rivulet add`, `list`, `show`, `pause`,
//! `resume` and `remove`, downloading from a libtorrent seeder found through
//! opentracker: killed with -9 in the middle of the download, started
//! again, and completing byte-identical without fetching again what it had.
//!
//! And one daemon downloading three torrents at once, from a libtorrent, an
//! aria2 and a Transmission seeder.
//!
//! Ignored by default (needs python3-libtorrent, opentracker, aria2 and
//! transmission-daemon); CI runs
//!
//! ```text
//! cargo test -p rivulet --test interop_daemon -- --ignored --test-threads=1
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use support::{
    assert_same_tree, make_torrent, multi_file_tree, next_loopback, poll_until, require_libtorrent,
    require_program, single_file, Aria2, LtConfig, LtPeer, OpenTracker, Proc, TransmissionDaemon,
};

const MINUTE: Duration = Duration::from_secs(60);

/// A daemon process on its own 127.0.0.x, with its API on a free port.
struct DaemonProc {
    proc: Proc,
    api: String,
    state: PathBuf,
}

impl DaemonProc {
    fn start(state: &Path, downloads: &Path) -> DaemonProc {
        DaemonProc::start_with(state, downloads, &[])
    }

    fn start_with(state: &Path, downloads: &Path, extra: &[&str]) -> DaemonProc {
        let mut cmd = support::rivulet::command();
        cmd.arg("daemon")
            .arg("--state-dir")
            .arg(state)
            .arg("--download-dir")
            .arg(downloads)
            .arg("--api=127.0.0.1:0")
            .arg("--port=0")
            .arg(format!("--bind={}", next_loopback()))
            .arg("--no-dht")
            .arg("--no-lsd")
            .args(extra);
        let mut proc = Proc::spawn("rivulet daemon", &mut cmd);
        let api = poll_until("the daemon says where its API is", MINUTE, || {
            proc.assert_running();
            let out = proc.output();
            out.lines()
                .find_map(|l| l.split("API on ").nth(1))
                .and_then(|rest| rest.split("/api/v1").next())
                .map(str::to_owned)
                .ok_or(out)
        });
        DaemonProc {
            proc,
            api,
            state: state.to_owned(),
        }
    }

    /// Runs `rivulet ARGS... --api URL --state-dir STATE`.
    fn cli(&self, args: &[&str]) -> Output {
        support::rivulet::command()
            .args(args)
            .arg("--api")
            .arg(&self.api)
            .arg("--state-dir")
            .arg(&self.state)
            .output()
            .unwrap()
    }

    /// As [`DaemonProc::cli`], asserting success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "rivulet {args:?} failed: {}\ndaemon output:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.proc.output()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// SIGTERM: the daemon stops cleanly, with exit status 0.
    fn terminate(mut self) {
        self.proc.signal("TERM");
        let status = self
            .proc
            .wait_timeout(MINUTE)
            .expect("the daemon stops on SIGTERM");
        assert!(status.success(), "{}", self.proc.output());
    }

    /// `rivulet list --json`, parsed.
    fn list(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["list", "--json"])).unwrap()
    }

    /// Waits until the first torrent listed is in `state`; returns the list.
    fn wait_first(&self, state: &str, what: &str) -> Vec<serde_json::Value> {
        poll_until(what, MINUTE, || {
            let list = self.list();
            if list[0]["state"] == state {
                Ok(list)
            } else {
                Err(format!("{list:?}"))
            }
        })
    }
}

#[test]
#[ignore = "interop: needs python3-libtorrent and opentracker (installed by .ci/run)"]
fn daemon_killed_mid_download_resumes_and_is_driven_from_the_command_line() {
    require_libtorrent();
    require_program("opentracker", "opentracker");
    let tmp = tempfile::tempdir().unwrap();
    let mut tracker = OpenTracker::start(Ipv4Addr::LOCALHOST, 0);
    let seed_dir = tmp.path().join("seed");
    let size = 16_000_000u64;
    let data = single_file(&seed_dir, "data.bin", size, 21);
    let (torrent, info_hash) = make_torrent(&data, Some(&tracker.http_announce_url()), 64 * 1024);
    tracker.whitelist(&info_hash);
    // 4 MB/s: about 4 s of download, long enough to kill it halfway.
    let mut seeder = LtPeer::start(
        &torrent,
        &seed_dir,
        LtConfig::new(next_loopback()).rate_limit(4_000_000, 0),
    );
    seeder.wait_seeding(MINUTE);
    seeder.wait_announced(MINUTE);
    let state = tmp.path().join("state");
    let downloads = tmp.path().join("downloads");

    let mut daemon = DaemonProc::start(&state, &downloads);
    // The token file is private to its owner.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state.join("api-token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let out = daemon.ok(&["add", torrent.to_str().unwrap()]);
    assert!(
        out.starts_with(&format!("added: {}", &info_hash[..8])),
        "{out}"
    );
    // Adding it again changes nothing and says so.
    let out = daemon.ok(&["add", torrent.to_str().unwrap()]);
    assert!(out.starts_with("already there"), "{out}");

    poll_until("a third of the data is verified", MINUTE, || {
        daemon.proc.assert_running();
        let list = daemon.list();
        let have = list[0]["have"].as_u64().unwrap();
        if have >= size / 3 {
            Ok(())
        } else {
            Err(format!("{list:?}"))
        }
    });
    daemon.proc.kill(); // SIGKILL
    let sent_before = seeder.status().total_payload_upload;

    let daemon = DaemonProc::start(&state, &downloads);
    let list = daemon.list();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], info_hash.as_str());
    // While it downloads, the seeder is among the torrent's peers.
    poll_until("the seeder among the peers", MINUTE, || {
        let d: serde_json::Value =
            serde_json::from_str(&daemon.ok(&["show", &info_hash, "--json"])).unwrap();
        let peers = d["peer_list"].as_array().cloned().unwrap_or_default();
        // The seeder has every piece; the tracker that named it answered.
        let lt = peers.iter().any(|p| {
            p["address"] == seeder.addr().to_string().as_str()
                && p["client"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("libtorrent"))
                && p["progress"].as_f64() == Some(1.0)
                && p["down_rate"].is_u64()
        });
        let tracker = d["trackers"].as_array().is_some_and(|t| {
            t.iter().any(|t| {
                t["tier"] == 0 && t["status"] == "working" && t["last_announce"].as_u64() > Some(0)
            })
        });
        if lt && tracker {
            Ok(())
        } else {
            Err(d.to_string())
        }
    });
    let seeding = daemon.wait_first("seeding", "the download completes after the restart");
    assert_eq!(seeding[0]["progress"].as_f64(), Some(1.0));
    assert_eq!(seeding[0]["size"].as_u64(), Some(size));
    assert_same_tree(&data, &downloads.join("data.bin"));
    // The restart resumed: what was verified before the kill was not
    // fetched again (whatever was in flight at the kill may be: one
    // pipeline's worth).
    let sent_again = seeder.status().total_payload_upload - sent_before;
    assert!(
        sent_again <= size * 2 / 3 + (1 << 20),
        "fetched {sent_again} bytes after the restart, of {size}"
    );

    // Totals are kept across a clean restart.
    let downloaded = daemon.list()[0]["downloaded"].as_u64().unwrap();
    assert!(downloaded >= size / 2, "{downloaded}");
    daemon.terminate();
    let daemon = DaemonProc::start(&state, &downloads);
    let again = daemon.list();
    assert_eq!(
        again[0]["downloaded"].as_u64(),
        Some(downloaded),
        "{again:?}"
    );

    // The other commands, with an id prefix.
    let prefix = &info_hash[..6];
    let show = daemon.ok(&["show", prefix]);
    assert!(show.contains(&format!("id:        {info_hash}")), "{show}");
    assert!(show.contains("state:     seeding"), "{show}");
    assert!(
        show.contains(&format!(
            "tracker:   {} (working",
            tracker.http_announce_url()
        )),
        "{show}"
    );
    assert!(daemon.ok(&["pause", prefix]).starts_with("paused: "));
    assert_eq!(daemon.list()[0]["state"], "paused");
    daemon.ok(&["resume", prefix]);
    daemon.wait_first("seeding", "seeding again after the resume");
    let bad = daemon.cli(&["pause", "ffff"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no torrent's id starts with ffff"));
    daemon.ok(&["remove", prefix, "--delete-data"]);
    assert!(daemon.list().is_empty());
    assert!(!downloads.join("data.bin").exists());

    // SIGTERM: a clean stop.
    daemon.terminate();
}

#[test]
#[ignore = "interop: needs python3-libtorrent, aria2 and transmission-daemon (installed by .ci/run)"]
fn daemon_downloads_three_torrents_at_once_from_three_clients() {
    require_libtorrent();
    require_program("aria2c", "aria2");
    require_program("transmission-daemon", "transmission-daemon");
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let a = single_file(&seed_dir, "from-libtorrent.bin", 6_000_000, 31);
    let b = multi_file_tree(&seed_dir, "from-aria2", 32, 1_500_000);
    let c = single_file(&seed_dir, "from-transmission.bin", 5_000_000, 33);
    let (ta, ha) = make_torrent(&a, None, 64 * 1024);
    let (tb, hb) = make_torrent(&b, None, 32 * 1024);
    let (tc, hc) = make_torrent(&c, None, 64 * 1024);
    let mut lt = LtPeer::start(&ta, &seed_dir, LtConfig::new(next_loopback()));
    lt.wait_seeding(MINUTE);
    let aria = Aria2::seeder(&tb, &seed_dir, next_loopback());
    let mut tr = TransmissionDaemon::start(next_loopback(), &seed_dir);
    tr.seed(&tc, MINUTE);

    let state = tmp.path().join("state");
    let downloads = tmp.path().join("downloads");
    let daemon = DaemonProc::start(&state, &downloads);
    for (torrent, peer) in [(&ta, lt.addr()), (&tb, aria.addr()), (&tc, tr.peer_addr())] {
        let out = daemon.ok(&["add", torrent.to_str().unwrap(), &format!("--peer={peer}")]);
        assert!(out.starts_with("added: "), "{out}");
    }
    let list = poll_until("all three torrents seed", MINUTE, || {
        let list = daemon.list();
        if list.len() == 3 && list.iter().all(|t| t["state"] == "seeding") {
            Ok(list)
        } else {
            Err(format!("{list:?}"))
        }
    });
    let mut ids: Vec<&str> = list.iter().map(|t| t["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut want = [ha.as_str(), hb.as_str(), hc.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert_same_tree(&a, &downloads.join("from-libtorrent.bin"));
    assert_same_tree(&b, &downloads.join("from-aria2"));
    assert_same_tree(&c, &downloads.join("from-transmission.bin"));
    let session: serde_json::Value = serde_json::from_str(&daemon.ok(&["list", "--json"])).unwrap();
    let total: u64 = session
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["downloaded"].as_u64().unwrap())
        .sum();
    assert!(total >= 6_000_000 + 5_000_000, "{total}");
}

#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn daemon_download_limit_holds_within_ten_percent() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "limited.bin", 40_000_000, 41);
    let (torrent, _) = make_torrent(&data, None, 64 * 1024);
    let mut lt = LtPeer::start(&torrent, &seed_dir, LtConfig::new(next_loopback()));
    lt.wait_seeding(MINUTE);
    let limit = 1_000_000u64;
    let daemon = DaemonProc::start_with(
        &tmp.path().join("state"),
        &tmp.path().join("downloads"),
        &[&format!("--download-limit={limit}")],
    );
    daemon.ok(&[
        "add",
        torrent.to_str().unwrap(),
        &format!("--peer={}", lt.addr()),
    ]);
    let downloaded = || daemon.list()[0]["downloaded"].as_u64().unwrap();
    // Measured from the first second on (the burst a quiet bucket saves
    // is spent by then), over 10 s.
    poll_until("the download starts", MINUTE, || match downloaded() {
        0 => Err("nothing yet".to_string()),
        _ => Ok(()),
    });
    std::thread::sleep(Duration::from_secs(1));
    let (t0, d0) = (std::time::Instant::now(), downloaded());
    std::thread::sleep(Duration::from_secs(10));
    let (t1, d1) = (std::time::Instant::now(), downloaded());
    let rate = (d1 - d0) as f64 / (t1 - t0).as_secs_f64();
    assert!(
        (rate - limit as f64).abs() <= limit as f64 * 0.1,
        "{rate:.0} B/s under a limit of {limit}"
    );
}

#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn daemon_selective_download_leaves_unwanted_files_absent() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let root = seed_dir.join("sel");
    // Lengths that are not multiples of the piece length: every skipped
    // file shares its first and last pieces with wanted files.
    let files = [
        ("a.bin", 300_001u64),
        ("b/skip.bin", 2_000_003),
        ("c.bin", 500_000),
        ("d-skip.bin", 77_777),
        ("e.bin", 123_456),
    ];
    for (i, (name, len)) in files.iter().enumerate() {
        single_file(&root, name, *len, 40 + i as u64);
    }
    let piece = 64 * 1024u64;
    let (torrent, hash) = make_torrent(&root, None, piece as u32);
    let mut lt = LtPeer::start(&torrent, &seed_dir, LtConfig::new(next_loopback()));
    lt.wait_seeding(MINUTE);

    // The torrent's file order is libtorrent's: find each file's index.
    let info = support::rivulet::command()
        .args(["info", "--json"])
        .arg(&torrent)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let paths: Vec<String> = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    let index = |name: &str| {
        paths
            .iter()
            .position(|p| p.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not in {paths:?}"))
    };
    let wanted: Vec<String> = ["a.bin", "c.bin", "e.bin"]
        .iter()
        .map(|n| index(n).to_string())
        .collect();

    let state = tmp.path().join("state");
    let downloads = tmp.path().join("downloads");
    let daemon = DaemonProc::start(&state, &downloads);
    let out = daemon.ok(&[
        "add",
        torrent.to_str().unwrap(),
        &format!("--peer={}", lt.addr()),
        &format!("--files={}", wanted.join(",")),
    ]);
    assert!(out.starts_with("added: "), "{out}");
    let detail: serde_json::Value =
        serde_json::from_str(&daemon.ok(&["files", &hash, "--json"])).unwrap();
    for f in detail["files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        assert_eq!(
            f["wanted"].as_bool(),
            Some(!path.contains("skip")),
            "{detail}"
        );
    }

    let list = daemon.wait_first("seeding", "the wanted files are downloaded");
    assert_eq!(list[0]["progress"].as_f64(), Some(1.0), "{list:?}");
    let wanted_len = 300_001 + 500_000 + 123_456;
    assert!(list[0]["size_wanted"].as_u64().unwrap() >= wanted_len);
    let got = downloads.join("sel");
    for name in ["a.bin", "c.bin", "e.bin"] {
        assert_same_tree(&root.join(name), &got.join(name));
    }
    assert!(!got.join("b").exists(), "a folder of skipped files only");
    assert!(!got.join("d-skip.bin").exists());
    // Only the pieces of wanted files came: the 30 pieces inside
    // b/skip.bin did not.
    let sent = lt.status().total_payload_upload;
    assert!(
        sent <= wanted_len + 6 * piece,
        "the seeder sent {sent} bytes for {wanted_len} wanted"
    );

    // A clean restart: still done, nothing fetched again (the pieces shared
    // with skipped files are checked from the part file).
    daemon.terminate();
    let daemon = DaemonProc::start(&state, &downloads);
    let list = daemon.wait_first("seeding", "done again after the restart");
    assert_eq!(list[0]["progress"].as_f64(), Some(1.0), "{list:?}");
    assert_eq!(lt.status().total_payload_upload, sent);
    assert!(!got.join("b").exists());

    // Wanted after all: downloaded, with the bytes kept aside moved in.
    let b = index("b/skip.bin").to_string();
    let out = daemon.ok(&["files", &hash[..8], "--want", &b]);
    assert!(out.contains("normal  sel/b/skip.bin"), "{out}");
    daemon.wait_first("seeding", "the file wanted later is downloaded");
    assert_same_tree(&root.join("b"), &got.join("b"));
    assert!(!got.join("d-skip.bin").exists());
    let part = downloads.join(format!(".rivulet/{hash}.parts"));
    assert!(part.exists(), "d-skip.bin still keeps its bytes there");
    daemon.ok(&[
        "files",
        &hash[..8],
        "--want",
        &index("d-skip.bin").to_string(),
    ]);
    daemon.wait_first("seeding", "every file is downloaded");
    assert_same_tree(&root, &got);
    assert!(
        !part.exists(),
        "the part file goes once every file is wanted"
    );

    // `rivulet move` waits for the copy, its check and the switch.
    let moved = tmp.path().join("moved");
    let out = daemon.ok(&["move", &hash[..8], moved.to_str().unwrap()]);
    assert!(out.contains(&format!("in {}", moved.display())), "{out}");
    assert_same_tree(&root, &moved.join("sel"));
    assert!(!got.exists(), "the old copy is removed");
    daemon.wait_first("seeding", "seeding from the new folder");
}
