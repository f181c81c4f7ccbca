//! What `rivulet download` tells a user about a torrent that goes nowhere
//! (its only tracker dead, its only peer refusing), and host names given to
//! `--peer`, through the real binary on its own 127.0.0.x addresses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::{assert_same_tree, next_loopback, single_file, RivuletCmd};

const MINUTE: Duration = Duration::from_secs(60);

/// `rivulet create DATA -o OUT [-t TRACKER]` with 64 KiB pieces.
fn create(data: &Path, out: &Path, tracker: Option<&str>) -> PathBuf {
    let mut cmd = support::rivulet::command();
    cmd.arg("create").arg(data).arg("-o").arg(out).args([
        "--piece-length",
        "65536",
        "--no-date",
        "--quiet",
    ]);
    if let Some(t) = tracker {
        cmd.args(["-t", t]);
    }
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.to_path_buf()
}

/// With stderr not a terminal there is no status line: each problem is
/// printed once as a line, and the summary after Ctrl-C names them again.
#[test]
fn a_dead_tracker_and_a_refusing_peer_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = single_file(&tmp.path().join("src"), "file.bin", 300_000, 21);
    // Nothing listens on these fresh addresses, so connections are refused.
    let tracker = format!("http://{}:6969/announce", next_loopback());
    let torrent = create(&data, &tmp.path().join("file.torrent"), Some(&tracker));
    let peer = SocketAddr::new(next_loopback().into(), 6881);

    let mut dl = RivuletCmd::download(&torrent, &tmp.path().join("dl"))
        .bind(next_loopback())
        .port(0)
        .peer(peer)
        .spawn();
    dl.wait_printed(
        &format!("tracker {tracker}: cannot connect: connection refused"),
        MINUTE,
    );
    dl.wait_printed(
        &format!("0 peers reachable: {peer} connection refused"),
        MINUTE,
    );
    let out = dl.stop(MINUTE);
    assert_eq!(out.status.code(), Some(1), "interrupted: {}", out.output);
    let summary = out
        .output
        .split("stopped at 0 B of")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary: {}", out.output));
    assert!(
        summary.contains(&format!(
            "tracker {tracker}: cannot connect: connection refused"
        )),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("failed, the last to {peer}: connection refused")),
        "{summary}"
    );
    // Each problem line once while running, not once per tick.
    assert_eq!(
        out.output.matches("0 peers reachable:").count(),
        1,
        "{}",
        out.output
    );
}

/// `--peer localhost:PORT` reaches a seeder listening on 127.0.0.1.
#[test]
fn a_peer_given_by_host_name() {
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "file.bin", 200_000, 22);
    let torrent = create(&data, &tmp.path().join("file.torrent"), None);
    let mut seeder = RivuletCmd::seed(&torrent, &seed_dir)
        .bind(std::net::Ipv4Addr::LOCALHOST)
        .port(0)
        .spawn();
    let port = seeder.wait_listening_lines(MINUTE)[0].port();
    let dl_dir = tmp.path().join("dl");
    let done = RivuletCmd::download(&torrent, &dl_dir)
        .bind(next_loopback())
        .port(0)
        .arg("--peer")
        .arg(format!("localhost:{port}"))
        .arg("--seed-time=2s")
        .run(MINUTE);
    done.assert_success();
    assert_same_tree(&data, &dl_dir.join("file.bin"));
    // A plural that agrees with its number.
    assert!(
        done.output.contains("uploaded 0 B to 0 peers"),
        "{}",
        done.output
    );
    // The download's time ends at completion, not after the 2 s of seeding.
    let seconds_after = |marker: &str| -> f64 {
        let line = done.output.lines().find(|l| l.contains(marker)).unwrap();
        let rest = line.split(" in ").nth(1).unwrap();
        rest.split(" s").next().unwrap().parse().unwrap()
    };
    let fetching = seconds_after("done: file.bin");
    let session = seconds_after("seeded file.bin");
    assert!(fetching <= session - 1.9, "{}", done.output);
    let served = seeder.stop(MINUTE);
    served.assert_success();
    assert!(served.output.contains("to 1 peer ("), "{}", served.output);
}
