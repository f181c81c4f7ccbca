//! The data on disk is what the torrent says, or rivulet says it is not:
//! `rivulet verify`, `download` and `seed` run the way a user runs them, on
//! folders a user gets wrong (files longer than the torrent says, a folder
//! another rivulet is using, a read-only folder, the wrong folder). Nothing
//! but the rivulet binary is needed, so these run with `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use support::rivulet::{can_mount_read_only, create_torrent};
use support::{next_loopback, single_file, Rivulet, RivuletCmd};

const MINUTE: Duration = Duration::from_secs(60);

/// Runs `rivulet ARGS...` to the end: exit code, stdout and stderr together.
fn rivulet(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String) {
    let mut cmd = support::rivulet::command();
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
    let torrent = create_torrent(&source.join("six.txt"), &tmp.path().join("six.torrent"));
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
    let torrent = create_torrent(&source.join("six.txt"), &tmp.join("six.torrent"));
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
    let peer = format!("{}:1", next_loopback());
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
        .bind(next_loopback())
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

/// A `rivulet download` of `torrent` into `dir` from a peer that accepts the
/// connection and says nothing, so it runs until stopped; returned once it
/// said it is running (which is after it locked the data).
fn stalled_download(torrent: &Path, dir: &Path, mute: SocketAddr) -> Rivulet {
    let mut r = RivuletCmd::download(torrent, dir)
        .bind(next_loopback())
        .port(0)
        .peer(mute)
        .spawn();
    r.wait_listening_lines(MINUTE);
    r
}

/// Two `rivulet download`s of one torrent into one folder: the second says
/// the torrent is in use and exits 2, and so does a `seed` there; once the
/// first stops, the next one runs.
#[test]
fn a_second_rivulet_on_the_same_data_says_it_is_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let data = single_file(&tmp.path().join("source"), "file.bin", 300_000, 11);
    let torrent = create_torrent(&data, &tmp.path().join("file.torrent"));
    let dir = tmp.path().join("download");
    // Accepted by the kernel, never answered.
    let mute = TcpListener::bind((next_loopback(), 0)).unwrap();
    let mute = mute.local_addr().map(|a| (mute, a)).unwrap();

    let mut first = stalled_download(&torrent, &dir, mute.1);
    let in_use = format!(
        "error: file.bin in {} is in use by another rivulet process",
        dir.display()
    );
    let second = RivuletCmd::download(&torrent, &dir)
        .bind(next_loopback())
        .port(0)
        .peer(mute.1)
        .run(MINUTE);
    assert_eq!(second.status.code(), Some(2), "{}", second.output);
    assert!(second.output.contains(&in_use), "{}", second.output);
    assert!(!second.output.contains("listening on"), "{}", second.output);
    let seed = RivuletCmd::seed(&torrent, &dir)
        .bind(next_loopback())
        .port(0)
        .run(MINUTE);
    assert_eq!(seed.status.code(), Some(2), "{}", seed.output);
    assert!(seed.output.contains(&in_use), "{}", seed.output);

    // Interrupted before it had anything: exit 1, lock released.
    let stopped = first.stop(MINUTE);
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.output);
    let mut next = stalled_download(&torrent, &dir, mute.1);
    assert_eq!(next.stop(MINUTE).status.code(), Some(1));
}

/// `seed` into a folder without the torrent's files says so and exits 2,
/// creating nothing; into a folder whose file has the torrent's name but
/// not its data, it exits 2 too and leaves the file as it was.
#[test]
fn seed_without_the_data_says_so_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = single_file(&tmp.path().join("source"), "file.bin", 300_000, 12);
    let torrent = create_torrent(&data, &tmp.path().join("file.torrent"));

    for dir in [tmp.path().join("empty"), tmp.path().join("absent")] {
        if dir.ends_with("empty") {
            std::fs::create_dir(&dir).unwrap();
        }
        let (code, out) = rivulet(&[
            &"seed",
            &torrent,
            &"-o",
            &dir,
            &"--bind",
            &"127.0.0.1",
            &"--port",
            &"0",
        ]);
        assert_eq!(code, 2, "{out}");
        assert!(
            out.contains(&format!(
                "error: none of the data of file.bin is in {}",
                dir.display()
            )),
            "{out}"
        );
        if dir.ends_with("empty") {
            assert_eq!(
                std::fs::read_dir(&dir).unwrap().count(),
                0,
                "nothing created"
            );
        } else {
            assert!(!dir.exists(), "no folder created");
        }
    }

    let wrong = tmp.path().join("wrong");
    let other = single_file(&wrong, "file.bin", 1000, 13);
    let before = std::fs::read(&other).unwrap();
    let (code, out) = rivulet(&[
        &"seed",
        &torrent,
        &"-o",
        &wrong,
        &"--bind",
        &"127.0.0.1",
        &"--port",
        &"0",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "error: none of the data in {} matches file.bin: 0 of 5 pieces are good",
            wrong.display()
        )),
        "{out}"
    );
    assert_eq!(std::fs::read(&other).unwrap(), before, "left as it was");
}

/// Whether this test can make read-only mounts; if not, says why on stderr
/// (the test then checks nothing: it needs root).
fn read_only_mounts_work(test: &str) -> bool {
    match can_mount_read_only() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("SKIPPED {test}: needs read-only mounts (run as root): {why}");
            false
        }
    }
}

/// `seed` from a read-only mount of complete data serves it (the file that
/// is longer than the torrent says is left as it is, and only the torrent's
/// bytes are served); resume data goes to the state folder, and the next
/// seed trusts it.
#[test]
fn seed_serves_complete_data_from_a_read_only_folder() {
    if !read_only_mounts_work("seed_serves_complete_data_from_a_read_only_folder") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let size = 1024 * 1024 + 77;
    let data = single_file(&seed_dir, "file.bin", size, 14);
    let torrent = create_torrent(&data, &tmp.path().join("file.torrent"));
    let pieces = size.div_ceil(65536);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&data)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"not in the torrent"))
        .unwrap();
    let state = tmp.path().join("state");
    let seeder = || {
        RivuletCmd::seed(&torrent, &seed_dir)
            .read_only(&seed_dir)
            .env("XDG_STATE_HOME", state.to_str().unwrap())
            .bind(next_loopback())
            .port(0)
    };

    let mut first = seeder().spawn();
    let addr = *first.wait_listening_lines(MINUTE).first().unwrap();
    assert!(
        first.printed(&format!(
            "the data folder {} is read-only: serving it as it is; resume data goes to {}",
            seed_dir.display(),
            state.join("rivulet/resume").display()
        )),
        "{}",
        first.output()
    );
    assert!(
        first.printed(&format!(
            "warning: {} is {} bytes, the torrent says {size}; not truncated: the data folder is read-only",
            data.display(),
            size + 18
        )),
        "{}",
        first.output()
    );
    assert!(
        first.printed(&format!(
            "data complete: {pieces} pieces (0 vouched for by resume data, {pieces} hashed)"
        )),
        "{}",
        first.output()
    );
    let leech_dir = tmp.path().join("leech");
    RivuletCmd::download(&torrent, &leech_dir)
        .bind(next_loopback())
        .port(0)
        .peer(addr)
        .run(MINUTE)
        .assert_success();
    let got = std::fs::read(leech_dir.join("file.bin")).unwrap();
    assert_eq!(got, std::fs::read(&data).unwrap()[..size as usize]);
    first.stop(MINUTE).assert_success();
    assert!(
        !seed_dir.join(".rivulet").exists(),
        "nothing written to the data folder"
    );
    assert_eq!(len(&data), size + 18, "the data folder is left as it was");

    let mut again = seeder().spawn();
    again.wait_listening_lines(MINUTE);
    assert!(
        again.printed(&format!(
            "data complete: {pieces} pieces ({pieces} vouched for by resume data, 0 hashed)"
        )),
        "{}",
        again.output()
    );
    again.stop(MINUTE).assert_success();
}

/// `seed` from a read-only mount of incomplete data, and `download` into a
/// read-only folder, fail with exit 2 and say why.
#[test]
fn incomplete_data_in_a_read_only_folder_is_an_error() {
    if !read_only_mounts_work("incomplete_data_in_a_read_only_folder_is_an_error") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let size = 300_000;
    let data = single_file(&dir, "file.bin", size, 15);
    let torrent = create_torrent(&data, &tmp.path().join("file.torrent"));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .and_then(|f| f.set_len(200_000))
        .unwrap();
    let state = tmp.path().join("state");
    let seed = RivuletCmd::seed(&torrent, &dir)
        .read_only(&dir)
        .env("XDG_STATE_HOME", state.to_str().unwrap())
        .bind(next_loopback())
        .port(0)
        .run(MINUTE);
    assert_eq!(seed.status.code(), Some(2), "{}", seed.output);
    assert!(
        seed.output.contains(&format!(
            "error: the data folder {} is read-only and holds 3 of the 5 pieces of file.bin: the missing pieces cannot be fetched there",
            dir.display()
        )),
        "{}",
        seed.output
    );
    assert!(!seed.output.contains("serving"), "{}", seed.output);
    let download = RivuletCmd::download(&torrent, &dir)
        .read_only(&dir)
        .bind(next_loopback())
        .port(0)
        .peer(SocketAddr::new(next_loopback().into(), 1))
        .run(MINUTE);
    assert_eq!(download.status.code(), Some(2), "{}", download.output);
    assert!(
        download.output.contains(&format!(
            "error: cannot write to the data folder {}: Read-only file system",
            dir.display()
        )),
        "{}",
        download.output
    );
    assert_eq!(len(&data), 200_000);
}

/// Data seeded once from a writable folder, then from the same folder
/// mounted read-only: the resume data written the first time vouches for
/// it the second time.
#[test]
fn read_only_seed_trusts_resume_data_written_while_writable() {
    if !read_only_mounts_work("read_only_seed_trusts_resume_data_written_while_writable") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "file.bin", 300_000, 16);
    let torrent = create_torrent(&data, &tmp.path().join("file.torrent"));
    let state = tmp.path().join("state");
    let seeder = |read_only: bool| {
        let cmd = RivuletCmd::seed(&torrent, &seed_dir)
            .env("XDG_STATE_HOME", state.to_str().unwrap())
            .bind(next_loopback())
            .port(0);
        if read_only {
            cmd.read_only(&seed_dir)
        } else {
            cmd
        }
    };
    let mut writable = seeder(false).spawn();
    writable.wait_listening_lines(MINUTE);
    assert!(writable.printed("(0 vouched for by resume data, 5 hashed)"));
    writable.stop(MINUTE).assert_success();
    assert!(
        !state.exists(),
        "a writable folder keeps its own resume data"
    );

    let mut read_only = seeder(true).spawn();
    read_only.wait_listening_lines(MINUTE);
    assert!(
        read_only.printed("data complete: 5 pieces (5 vouched for by resume data, 0 hashed)"),
        "{}",
        read_only.output()
    );
    read_only.stop(MINUTE).assert_success();
}

/// Two different torrents whose file has the same name, into one folder:
/// the second would overwrite the first's data, so it is refused (exit 2)
/// while the first runs.
#[test]
fn a_torrent_of_the_same_name_is_refused_while_another_writes_there() {
    let tmp = tempfile::tempdir().unwrap();
    let a = single_file(&tmp.path().join("a"), "file.bin", 300_000, 12);
    let b = single_file(&tmp.path().join("b"), "file.bin", 200_000, 13);
    let ta = create_torrent(&a, &tmp.path().join("a.torrent"));
    let tb = create_torrent(&b, &tmp.path().join("b.torrent"));
    let dir = tmp.path().join("download");
    let mute = TcpListener::bind((next_loopback(), 0)).unwrap();
    let mute = mute.local_addr().map(|a| (mute, a)).unwrap();

    let mut first = stalled_download(&ta, &dir, mute.1);
    let second = RivuletCmd::download(&tb, &dir)
        .bind(next_loopback())
        .port(0)
        .peer(mute.1)
        .run(MINUTE);
    assert_eq!(second.status.code(), Some(2), "{}", second.output);
    assert!(
        second.output.contains(&format!(
            "error: file.bin in {} is in use by another torrent of the same name",
            dir.display()
        )),
        "{}",
        second.output
    );
    assert_eq!(
        len(&dir.join("file.bin")),
        300_000,
        "the first's file is left alone"
    );
    first.stop(MINUTE);
    let mut next = stalled_download(&tb, &dir, mute.1);
    assert_eq!(next.stop(MINUTE).status.code(), Some(1));
}
