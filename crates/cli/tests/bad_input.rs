//! Mistakes people make at the command line, run through the real `rivulet`
//! binary: each ends at once with exit status 2 and one clear message that
//! says what is accepted; none panics, waits, or writes anything.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::Proc;

/// Far more than a refusal takes; a run still going then is a silent wait.
const PROMPTLY: Duration = Duration::from_secs(20);

/// A small torrent with no tracker, made by `rivulet create`, and its data.
fn torrent(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.bin"), vec![7u8; 40_000]).unwrap();
    let out = dir.join("data.torrent");
    let o = support::rivulet::command()
        .arg("create")
        .arg(&data)
        .arg("-o")
        .arg(&out)
        .args(["--no-date", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// Runs `rivulet ARGS` in `cwd`, asserts it exits 2 promptly, and returns
/// its output (stdout and stderr).
#[track_caller]
fn refused(cwd: &Path, args: &[&str]) -> String {
    let mut cmd = support::rivulet::command();
    cmd.args(args).current_dir(cwd).env("NO_COLOR", "1");
    let mut p = Proc::spawn("rivulet", &mut cmd);
    let status = p.wait_timeout(PROMPTLY).unwrap_or_else(|| {
        panic!(
            "`rivulet {}` still running after {PROMPTLY:?}: {}",
            args.join(" "),
            p.output()
        )
    });
    let out = p.output();
    assert_eq!(
        status.code(),
        Some(2),
        "`rivulet {}`: {out}",
        args.join(" ")
    );
    assert!(!out.contains("panicked"), "{out}");
    assert!(out.starts_with("error: "), "{out}");
    out
}

/// Asserts `out` contains `needle` exactly once.
#[track_caller]
fn says_once(out: &str, needle: &str) {
    assert_eq!(out.matches(needle).count(), 1, "{needle:?} once in:\n{out}");
}

#[test]
fn links_given_instead_of_a_torrent_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let link = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567";
    for cmd in ["download", "seed", "verify"] {
        let out = refused(cwd, &[cmd, link]);
        if cmd == "verify" {
            says_once(&out, "verify needs the .torrent file");
        } else {
            // A link with nowhere to look for peers (no tr, no x.pe, no
            // --peer; DHT to come) is refused at once, not a silent wait.
            says_once(&out, "no peers to fetch the metadata from");
        }
        assert!(!out.contains("No such file"), "{out}");
        let out = refused(cwd, &[cmd, "https://example.org/some.torrent"]);
        says_once(&out, "download it first");
    }
    let out = refused(cwd, &["info", "http://example.org/some.torrent"]);
    says_once(&out, "download it first");
    assert!(
        std::fs::read_dir(cwd).unwrap().next().is_none(),
        "nothing written"
    );
}

#[test]
fn a_bad_magnet_link_says_why_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = refused(tmp.path(), &["info", "magnet:?xt=urn:btih:zz"]);
    says_once(&out, "got 2 characters");
    assert!(out.contains("\"zz\""), "{out}");
}

#[test]
fn negative_seed_limits_must_be_at_least_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let t = torrent(tmp.path());
    let t = t.to_str().unwrap();
    for (flag, value) in [("--seed-ratio", "-1"), ("--seed-time", "-5m")] {
        let out = refused(
            tmp.path(),
            &["download", t, flag, value, "--peer", "127.0.0.2:1"],
        );
        assert!(
            out.contains(&format!("invalid value '{value}' for '{flag}")),
            "{out}"
        );
        says_once(&out, "must be at least 0");
        assert!(!out.contains("tip:"), "{out}");
    }
    let out = refused(
        tmp.path(),
        &[
            "download",
            t,
            "--seed-time",
            "soon",
            "--peer",
            "127.0.0.2:1",
        ],
    );
    assert!(out.contains("30m"), "{out}");
}

#[test]
fn peers_and_limits_that_cannot_work() {
    let tmp = tempfile::tempdir().unwrap();
    let t = torrent(tmp.path());
    let t = t.to_str().unwrap();
    let out = refused(
        tmp.path(),
        &["download", t, "--max-peers", "0", "--peer", "127.0.0.2:1"],
    );
    says_once(&out, "must be at least 1");
    for cmd in ["download", "seed"] {
        let out = refused(tmp.path(), &[cmd, t, "--peer", "127.0.0.2:0"]);
        says_once(&out, "port 0 is not a peer's port");
        let out = refused(tmp.path(), &[cmd, t, "--peer", "127.0.0.2"]);
        assert!(out.contains("HOST:PORT"), "{out}");
        // `.invalid` never resolves (RFC 2606).
        let out = refused(tmp.path(), &[cmd, t, "--peer", "nowhere.invalid:6881"]);
        assert!(
            out.contains("cannot resolve host name \"nowhere.invalid\""),
            "{out}"
        );
    }
    // An IPv6 peer cannot be reached from an IPv4 --bind address.
    let out = refused(
        tmp.path(),
        &["download", t, "--bind", "127.0.0.2", "--peer", "[::1]:6881"],
    );
    says_once(&out, "--peer [::1]:6881 has no IPv4 address");
    assert!(!tmp.path().join(".rivulet").exists(), "nothing written");
}

#[test]
fn a_file_given_as_the_data_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let t = torrent(tmp.path());
    let file = tmp.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    for cmd in ["download", "seed"] {
        let out = refused(
            tmp.path(),
            &[
                cmd,
                t.to_str().unwrap(),
                "-o",
                file.to_str().unwrap(),
                "--peer",
                "127.0.0.2:1",
            ],
        );
        says_once(&out, "is a file, not a folder");
        assert!(!out.contains("File exists"), "{out}");
    }
    let out = refused(
        tmp.path(),
        &["verify", t.to_str().unwrap(), "-o", file.to_str().unwrap()],
    );
    says_once(&out, "is a file, not a folder");
}

#[test]
fn create_wants_tracker_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.bin"), b"hello").unwrap();
    let d = data.to_str().unwrap();
    for bad in [
        "not a url",
        "ftp://t.example/announce",
        "udp://t.example/announce",
    ] {
        let out = refused(tmp.path(), &["create", d, "-t", bad]);
        assert!(out.contains("for '--tracker <URL>'"), "{out}");
        assert!(out.contains("udp://tracker.example:6969/announce"), "{out}");
    }
    assert!(!tmp.path().join("data.torrent").exists());
    // The same folder with a good URL works: the refusals were about the URL.
    let o = support::rivulet::command()
        .args([
            "create",
            d,
            "-t",
            "udp://t.example:6969/announce,http://t2.example/announce",
            "-q",
        ])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The harness runs rivulet in closed-network mode: a DHT joined through
/// an outside node is refused before anything is sent, so that no test can
/// reach the public DHT.
#[test]
fn the_closed_network_refuses_an_outside_dht_node() {
    let tmp = tempfile::tempdir().unwrap();
    let t = torrent(tmp.path());
    let t = t.to_str().unwrap();
    for node in ["router.bittorrent.com:6881", "8.8.8.8:6881"] {
        let out = refused(
            tmp.path(),
            &[
                "download",
                t,
                "--peer",
                "127.0.0.2:1",
                "--dht-bootstrap",
                node,
            ],
        );
        says_once(&out, "closed network");
        assert!(out.contains(node), "{out}");
    }
    let out = refused(
        tmp.path(),
        &[
            "download",
            t,
            "--no-dht",
            "--dht-bootstrap",
            "127.0.0.2:6881",
        ],
    );
    assert!(out.contains("cannot be used with"), "{out}");
}
