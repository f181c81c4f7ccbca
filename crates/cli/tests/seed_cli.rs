//! `rivulet seed` and `rivulet download --seed-time` the way a user runs
//! them, two rivulet processes on their own 127.0.0.x addresses. Nothing but
//! the rivulet binary is needed, so these run with `cargo test`; serving
//! other clients is tested in `interop_seed.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::data::first_difference;
use support::rivulet::create_torrent;
use support::{assert_same_tree, next_loopback, poll_until, single_file, RivuletCmd};

const MINUTE: Duration = Duration::from_secs(60);

/// A seeder hashes its data the first time and trusts its resume data the
/// next; a downloader given its address fetches everything, seeds for the
/// time asked and exits 0; the seeder's summary counts what it served.
#[test]
fn seed_serve_a_download_then_seed_again_from_resume_data() {
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let size = 3 * 1024 * 1024 + 123;
    let data = single_file(&seed_dir, "file.bin", size, 7);
    let torrent = create_torrent(&data, &tmp.path().join("file.torrent"));
    let pieces = size.div_ceil(65536);

    let seed_ip = next_loopback();
    let mut seeder = RivuletCmd::seed(&torrent, &seed_dir)
        .bind(seed_ip)
        .port(0)
        .spawn();
    let addr = *seeder.wait_listening_lines(MINUTE).first().unwrap();
    assert_eq!(addr.ip(), seed_ip);
    assert!(
        seeder.printed(&format!(
            "data complete: {pieces} pieces (0 vouched for by resume data, {pieces} hashed)"
        )),
        "{}",
        seeder.output()
    );

    let leech_dir = tmp.path().join("leech");
    let leecher = RivuletCmd::download(&torrent, &leech_dir)
        .bind(next_loopback())
        .port(0)
        .peer(addr)
        .arg("--seed-time=1s")
        .run(MINUTE);
    leecher.assert_success();
    assert_same_tree(&data, &leech_dir.join("file.bin"));
    assert!(
        leecher.output.contains("done: file.bin"),
        "{}",
        leecher.output
    );
    assert!(
        leecher.output.contains("seeded file.bin: uploaded"),
        "{}",
        leecher.output
    );

    let served = seeder.stop(MINUTE);
    served.assert_success();
    assert!(
        served.output.contains("seeded file.bin: uploaded"),
        "{}",
        served.output
    );
    // The summary's sizes are rounded (3.00 MiB).
    assert!(served.uploaded() >= size * 99 / 100, "{}", served.output);

    let mut again = RivuletCmd::seed(&torrent, &seed_dir)
        .bind(seed_ip)
        .port(0)
        .spawn();
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

/// When the port asked for is taken, the seeder says so and listens on the
/// next one.
#[test]
fn seed_on_a_taken_port_takes_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "small.bin", 100_000, 8);
    let torrent = create_torrent(&data, &tmp.path().join("small.torrent"));
    let ip = next_loopback();
    let taken = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    if port == u16::MAX {
        return; // no next port to take
    }
    let mut seeder = RivuletCmd::seed(&torrent, &seed_dir)
        .bind(ip)
        .port(port)
        .spawn();
    seeder.wait_printed(
        &format!(
            "port {port} is in use: listening on port {} instead",
            port + 1
        ),
        MINUTE,
    );
    let lines = seeder.wait_listening_lines(MINUTE);
    assert_eq!(lines, [std::net::SocketAddr::new(ip.into(), port + 1)]);
    seeder.stop(MINUTE).assert_success();
    drop(taken);
}

/// When the port asked for and the nine after it are all taken, the seeder
/// fails with a clear error (exit 2) before it checks or writes anything.
#[test]
fn seed_with_every_port_taken_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "small.bin", 100_000, 9);
    let torrent = create_torrent(&data, &tmp.path().join("small.torrent"));
    let ip = next_loopback();
    // Ten consecutive ports held on this address (from a base the system
    // found free, moving on when one of the next nine is not).
    let (port, _held) = (0..50)
        .find_map(|_| {
            let first = std::net::TcpListener::bind((ip, 0)).ok()?;
            let port = first.local_addr().ok()?.port();
            let mut held = vec![first];
            for p in 1..10u16 {
                held.push(std::net::TcpListener::bind((ip, port.checked_add(p)?)).ok()?);
            }
            Some((port, held))
        })
        .expect("ten consecutive free ports");
    let o = support::rivulet::command()
        .arg("seed")
        .arg(&torrent)
        .arg("-o")
        .arg(&seed_dir)
        .args(["--bind", &ip.to_string(), "--port", &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "port {port} is in use, and so are the next 9 ports"
        )),
        "{err}"
    );
    assert!(!seed_dir.join(".rivulet").exists(), "nothing written");
}

/// `rivulet seed` on damaged data says what is missing, fetches it from a
/// peer, and then serves the whole torrent to a downloader that knows only
/// it.
#[test]
fn seed_with_damaged_data_repairs_it_then_serves_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let good_dir = tmp.path().join("good");
    let size = 2 * 1024 * 1024 + 5;
    let data = single_file(&good_dir, "file.bin", size, 10);
    let torrent = create_torrent(&data, &tmp.path().join("file.torrent"));
    let pieces = size.div_ceil(65536);

    // A copy with three pieces damaged (one byte each) and the tail cut off.
    let damaged_dir = tmp.path().join("damaged");
    std::fs::create_dir_all(&damaged_dir).unwrap();
    let mut bytes = std::fs::read(&data).unwrap();
    for piece in [0usize, 7, 20] {
        bytes[piece * 65536 + 100] ^= 0xff;
    }
    bytes.truncate(bytes.len() - 70_000);
    let copy = damaged_dir.join("file.bin");
    std::fs::write(&copy, &bytes).unwrap();
    // Pieces 0, 7 and 20, plus the three the cut touches (30 in part; 31,
    // and the 5-byte piece 32).
    let present = pieces - 6;

    let mut good = RivuletCmd::seed(&torrent, &good_dir)
        .bind(next_loopback())
        .port(0)
        .spawn();
    let good_addr = *good.wait_listening_lines(MINUTE).first().unwrap();
    let mut repaired = RivuletCmd::seed(&torrent, &damaged_dir)
        .bind(next_loopback())
        .port(0)
        .peer(good_addr)
        .spawn();
    let repaired_addr = *repaired.wait_listening_lines(MINUTE).first().unwrap();
    assert!(
        repaired.printed(&format!(
            "data incomplete: {present} of {pieces} pieces present"
        )),
        "{}",
        repaired.output()
    );
    poll_until(
        "the damaged copy to be repaired",
        MINUTE,
        || match first_difference(&data, &copy) {
            None => Ok(()),
            Some(at) => Err(format!("first difference at byte {at}")),
        },
    );
    // The repaired seeder alone serves a newcomer.
    good.stop(MINUTE).assert_success();
    let fresh_dir = tmp.path().join("fresh");
    RivuletCmd::download(&torrent, &fresh_dir)
        .bind(next_loopback())
        .port(0)
        .peer(repaired_addr)
        .run(MINUTE)
        .assert_success();
    assert_same_tree(&data, &fresh_dir.join("file.bin"));
    let served = repaired.stop(MINUTE);
    served.assert_success();
    assert!(served.uploaded() >= size * 99 / 100, "{}", served.output);
}
