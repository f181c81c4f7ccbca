//! The data on disk is what the torrent says, or rivulet says it is not:
//! `rivulet verify`, `download` and `seed` run the way a user runs them, on
//! folders a user gets wrong (files longer than the torrent says, a folder
//! another rivulet is using, a read-only folder, the wrong folder). Nothing
//! but the rivulet binary is needed, so these run with `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::rivulet::rivulet_bin;
use support::RivuletCmd;

const MINUTE: Duration = Duration::from_secs(60);

/// `rivulet create DATA -o OUT` with 64 KiB pieces and no tracker.
fn create(data: &Path, out: &Path) -> PathBuf {
    let o = Command::new(rivulet_bin())
        .arg("create")
        .arg(data)
        .arg("-o")
        .arg(out)
        .args(["--piece-length", "65536", "--no-date", "--quiet"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.to_path_buf()
}

/// Runs `rivulet ARGS...` to the end: exit code, stdout and stderr together.
fn rivulet(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String) {
    let mut cmd = Command::new(rivulet_bin());
    for a in args {
        cmd.arg(a);
    }
    cmd.env_remove("RUST_LOG").stdin(Stdio::null());
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    eprintln!("rivulet exited ({status}); output:\n{text}");
    (status.code().expect("rivulet killed by a signal"), text)
}

/// `rivulet verify TORRENT -o DIR -q`.
fn verify(torrent: &Path, dir: &Path) -> (i32, String) {
    rivulet(&[&"verify", &torrent, &"-o", &dir, &"-q"])
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// A file of 100 bytes where the torrent has 6 (the first 6 right): `verify`
/// names it and exits 1, although every piece hashes right.
#[test]
fn verify_names_a_file_longer_than_the_torrent_says() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("six.txt"), b"hello\n").unwrap();
    let torrent = create(&source.join("six.txt"), &tmp.path().join("six.torrent"));
    let (code, out) = verify(&torrent, &source);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l == "complete"), "{out}");

    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut long = b"hello\n".to_vec();
    long.resize(100, b'x');
    std::fs::write(data.join("six.txt"), &long).unwrap();
    let (code, out) = verify(&torrent, &data);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("1 of 1 pieces complete, 0 bad, 0 missing"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "too long: {} (100 bytes, torrent says 6)",
            data.join("six.txt").display()
        )),
        "{out}"
    );
    assert!(!out.lines().any(|l| l == "complete"), "{out}");
    assert_eq!(len(&data.join("six.txt")), 100, "verify changes nothing");
}

/// A folder holding `six.txt` as 100 bytes whose first 6 are the torrent's
/// `hello\n`, and the torrent of the 6-byte file.
fn six_bytes_in_a_hundred(tmp: &Path) -> (PathBuf, PathBuf) {
    let source = tmp.join("source");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("six.txt"), b"hello\n").unwrap();
    let torrent = create(&source.join("six.txt"), &tmp.join("six.torrent"));
    let data = tmp.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut long = b"hello\n".to_vec();
    long.resize(100, b'x');
    std::fs::write(data.join("six.txt"), &long).unwrap();
    (torrent, data)
}

/// `download` into a folder where the file is longer than the torrent says
/// truncates it (saying so), and then the data verifies complete.
#[test]
fn download_truncates_a_file_longer_than_the_torrent_says() {
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, data) = six_bytes_in_a_hundred(tmp.path());
    let file = data.join("six.txt");
    // Nothing is missing, so the peer (nobody listens there) is never asked.
    let peer = format!("{}:1", support::next_loopback());
    let (code, out) = rivulet(&[&"download", &torrent, &"-o", &data, &"--peer", &peer]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "truncated {} to the torrent's 6 bytes (it was 100 bytes)",
            file.display()
        )),
        "{out}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"hello\n");
    let (code, out) = verify(&torrent, &data);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l == "complete"), "{out}");
}

/// `seed` truncates it too, before it serves.
#[test]
fn seed_truncates_a_file_longer_than_the_torrent_says() {
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, data) = six_bytes_in_a_hundred(tmp.path());
    let mut seeder = RivuletCmd::seed(&torrent, &data)
        .bind(support::next_loopback())
        .port(0)
        .spawn();
    seeder.wait_listening_lines(MINUTE);
    assert!(
        seeder.printed("to the torrent's 6 bytes (it was 100 bytes)"),
        "{}",
        seeder.output()
    );
    assert!(
        seeder.printed("data complete: 1 pieces"),
        "{}",
        seeder.output()
    );
    assert_eq!(len(&data.join("six.txt")), 6);
    seeder.stop(MINUTE).assert_success();
}
