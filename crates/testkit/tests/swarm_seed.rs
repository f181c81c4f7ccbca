//! The `swarm_seed` binary against testkit leechers: it serves the right
//! bytes from several addresses, refuses another torrent, and its session
//! line counts what the benchmark reports.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rivulet_core::{InfoHash, PeerId};
use rivulet_testkit::fixture::Fixture;
use rivulet_testkit::next_loopback;
use rivulet_testkit::peer::Conn;
use rivulet_wire::{Handshake, Message};

/// How long the seeder may take to print its next line (generous: a loaded
/// machine must not fail the test here).
const LINE: Duration = Duration::from_secs(20);

/// Kills the seeder however the test ends.
struct Seeder(Child);

impl Drop for Seeder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serves_every_address_and_counts_the_session() {
    // 5 pieces of 32 KiB and a short last one: 11 blocks.
    let fx = Fixture::sized(11, 32 * 1024, 5 * 32 * 1024 + 1000);
    let dir = std::env::temp_dir().join(format!("rivulet-swarm-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let torrent = dir.join("data.torrent");
    // A .torrent is a dictionary around the info dictionary's own bytes.
    let bytes = [b"d4:info".as_slice(), &fx.metainfo.info_bytes, b"e"].concat();
    std::fs::write(&torrent, bytes).unwrap();
    fx.write_to(&dir);

    // Three consecutive addresses of this process's own block.
    let ips: Vec<Ipv4Addr> = (0..3).map(|_| next_loopback()).collect();
    assert_eq!(u32::from(ips[2]) - u32::from(ips[0]), 2, "{ips:?}");
    let port = 7000;
    let child = Command::new(env!("CARGO_BIN_EXE_swarm_seed"))
        .arg(&torrent)
        .arg(dir.join("data.bin"))
        .arg(ips[0].to_string())
        .arg("3")
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seeder = Seeder(child);
    // Lines arrive on a channel, so that waiting for one has a timeout.
    let (tx, lines) = mpsc::channel();
    let stdout = seeder.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    assert_eq!(lines.recv_timeout(LINE).unwrap(), "ready 3");

    let at = |i: usize| SocketAddr::from((ips[i], port));
    let hello = |n: u8| Handshake::new(fx.info_hash(), PeerId([n; 20]));
    let mut a = Conn::connect(next_loopback(), at(0), hello(1))
        .await
        .unwrap();
    let mut b = Conn::connect(next_loopback(), at(1), hello(2))
        .await
        .unwrap();
    // Another torrent: the seeder hangs up without a handshake.
    let other = Handshake::new(InfoHash([9; 20]), PeerId([3; 20]));
    assert!(Conn::connect(next_loopback(), at(2), other).await.is_none());

    let blocks = fx.all_blocks();
    let (first, second) = blocks.split_at(blocks.len() / 2);
    for (conn, part) in [(&mut a, first), (&mut b, second)] {
        conn.expect("a full bitfield", |m| matches!(m, Message::Bitfield(_)))
            .await;
        conn.unchoked().await;
        // `fetch` checks every byte against the fixture.
        conn.fetch(&fx, part, 4).await;
    }
    drop((a, b));
    let session = lines.recv_timeout(LINE).unwrap();
    assert_eq!(
        session,
        format!(
            "session peak_peers=2 peers=2 active=2 connections=3 blocks={} bytes={}",
            blocks.len(),
            fx.data.len()
        )
    );
    drop(seeder);
    std::fs::remove_dir_all(&dir).unwrap();
}
