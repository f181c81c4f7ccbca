//! The DHT (BEP 5) against libtorrent 2.0's and aria2's, on loopback:
//! rivulet downloads a trackerless torrent from a magnet link whose only
//! source is the DHT (from a libtorrent seeder, and from an aria2 seeder),
//! and libtorrent and aria2 leechers with only a magnet link find `rivulet
//! seed` through the DHT. A libtorrent node that holds an unrelated torrent is
//! the DHT's entry point for everyone; nobody knows any outside node.
//!
//! Ignored by default (they need the real program); CI runs
//!
//! ```text
//! cargo test -p rivulet --test interop_dht -- --ignored --test-threads=1
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use support::{
    assert_same_tree, free_port, make_torrent_with, next_loopback, poll_until, require_libtorrent,
    single_file, Aria2, Aria2Config, LtConfig, LtPeer, RivuletCmd, TorrentOptions,
};

const MINUTE: Duration = Duration::from_secs(60);

/// A libtorrent DHT node (it holds an unrelated torrent of its own): the
/// entry point of the test's DHT.
fn entry_node(dir: &Path) -> LtPeer {
    let data = single_file(&dir.join("entry"), "other.bin", 100_000, 99);
    let t = make_torrent_with(&data, &TorrentOptions::new(16 * 1024));
    let mut node = LtPeer::start(
        &t.path,
        &dir.join("entry"),
        LtConfig::new(next_loopback()).dht(&[]),
    );
    node.wait_seeding(MINUTE);
    node
}

/// Waits until libtorrent `peer` has `n` DHT nodes in its table.
fn wait_dht_nodes(peer: &mut LtPeer, n: i64) {
    poll_until("libtorrent's DHT table", MINUTE, || {
        let st = peer.status();
        if st.dht_nodes >= n {
            Ok(())
        } else {
            Err(format!("{} DHT nodes", st.dht_nodes))
        }
    });
}

/// A test's DHT and a torrent: the entry node, the data in `seed_dir`
/// (one file of `len` bytes), and its torrent (no tracker).
struct Setup {
    tmp: tempfile::TempDir,
    entry: LtPeer,
    seed_dir: std::path::PathBuf,
    data: std::path::PathBuf,
    torrent: support::MadeTorrent,
}

fn setup(name: &str, len: u64, seed: u64) -> Setup {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let entry = entry_node(tmp.path());
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, name, len, seed);
    let torrent = make_torrent_with(&data, &TorrentOptions::new(32 * 1024));
    Setup {
        tmp,
        entry,
        seed_dir,
        data,
        torrent,
    }
}

impl Setup {
    /// The magnet link: the info-hash, nothing else.
    fn link(&self) -> String {
        format!("magnet:?xt=urn:btih:{}", self.torrent.info_hash_v1)
    }

    /// `rivulet download LINK` knowing only the entry node, spawned.
    fn rivulet_download(&self, out_dir: &Path) -> support::Rivulet {
        let ip = next_loopback();
        RivuletCmd::download(Path::new(&self.link()), out_dir)
            .bind(ip)
            .port(free_port(ip))
            .arg(format!("--dht-bootstrap={}", self.entry.addr()))
            .spawn()
    }

    /// `rivulet seed` of the torrent knowing only the entry node, once it
    /// listens and the entry node knows it.
    fn rivulet_seed(&mut self) -> (support::Rivulet, SocketAddr) {
        let ip = next_loopback();
        let mut seed = RivuletCmd::seed(&self.torrent.path, &self.seed_dir)
            .bind(ip)
            .port(free_port(ip))
            .arg(format!("--dht-bootstrap={}", self.entry.addr()))
            .spawn();
        let addr = seed.wait_listening(MINUTE);
        wait_dht_nodes(&mut self.entry, 1);
        (seed, addr)
    }
}

/// rivulet, knowing only the entry node, fetches a trackerless torrent's
/// metadata and data from a libtorrent seeder it finds through the DHT.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn rivulet_finds_a_libtorrent_seeder_through_the_dht() {
    let mut s = setup("dht.bin", 3_000_000, 5);
    let mut seeder = LtPeer::start(
        &s.torrent.path,
        &s.seed_dir,
        LtConfig::new(next_loopback()).dht(&[s.entry.addr()]),
    );
    seeder.wait_seeding(MINUTE);
    wait_dht_nodes(&mut s.entry, 1);
    let out_dir = s.tmp.path().join("out");
    let mut rivulet = s.rivulet_download(&out_dir);
    // Once rivulet's node is in the DHT, the seeder announces (libtorrent
    // would on its own every 15 minutes).
    wait_dht_nodes(&mut s.entry, 2);
    seeder.dht_announce();
    rivulet.wait_exit(2 * MINUTE).assert_success();
    assert_same_tree(&s.data, &out_dir.join("dht.bin"));
    assert!(seeder.status().total_payload_upload >= 3_000_000);
}

/// A libtorrent leecher with nothing but a magnet link finds `rivulet
/// seed` through the DHT (rivulet announced there) and downloads from it,
/// metadata included.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn libtorrent_finds_rivulet_seed_through_the_dht() {
    let mut s = setup("dht.bin", 3_000_000, 6);
    let (mut seed, seed_addr) = s.rivulet_seed();
    let out_dir = s.tmp.path().join("lt");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut leecher = LtPeer::from_magnet(
        &s.link(),
        &out_dir,
        LtConfig::new(next_loopback()).dht(&[s.entry.addr()]),
    );
    wait_dht_nodes(&mut s.entry, 2);
    // libtorrent looks a magnet link's peers up when it starts, before its
    // table may hold rivulet's node: ask again.
    poll_until("the leecher to connect to rivulet", 2 * MINUTE, || {
        let st = leecher.status();
        if st.peers.iter().any(|p| p.ip == seed_addr.ip().to_string()) || st.is_seeding {
            Ok(())
        } else {
            leecher.dht_announce();
            Err(format!(
                "{} DHT nodes, {} peers",
                st.dht_nodes,
                st.peers.len()
            ))
        }
    });
    let st = leecher.wait_seeding(2 * MINUTE);
    assert!(st.has_metadata);
    assert_same_tree(&s.data, &out_dir.join("dht.bin"));
    seed.stop(MINUTE);
}

/// rivulet, knowing only the entry node, finds an aria2 seeder that
/// announced itself on the DHT.
#[test]
#[ignore = "interop: needs python3-libtorrent and aria2 (installed by .ci/run)"]
fn rivulet_finds_an_aria2_seeder_through_the_dht() {
    let mut s = setup("aria.bin", 2_000_000, 7);
    let aria_ip = next_loopback();
    let cfg = Aria2Config::seeder(aria_ip).dht(
        s.entry.addr(),
        free_port(aria_ip),
        &s.tmp.path().join("aria2-dht.dat"),
    );
    let mut seeder = Aria2::start(&s.torrent.path, &s.seed_dir, cfg);
    seeder.wait_seeding(MINUTE);
    wait_dht_nodes(&mut s.entry, 1);
    let out_dir = s.tmp.path().join("out");
    s.rivulet_download(&out_dir)
        .wait_exit(3 * MINUTE)
        .assert_success();
    assert_same_tree(&s.data, &out_dir.join("aria.bin"));
}

/// An aria2 leecher with only a magnet link and the entry node finds
/// `rivulet seed` through the DHT, metadata included.
#[test]
#[ignore = "interop: needs python3-libtorrent and aria2 (installed by .ci/run)"]
fn aria2_finds_rivulet_seed_through_the_dht() {
    let mut s = setup("aria.bin", 2_000_000, 8);
    let (mut seed, _) = s.rivulet_seed();
    let out_dir = s.tmp.path().join("aria2");
    std::fs::create_dir_all(&out_dir).unwrap();
    let aria_ip = next_loopback();
    let cfg = Aria2Config::leecher(aria_ip).dht(
        s.entry.addr(),
        free_port(aria_ip),
        &s.tmp.path().join("aria2-dht.dat"),
    );
    let mut leecher = Aria2::start(Path::new(&s.link()), &out_dir, cfg);
    leecher.wait_success(3 * MINUTE);
    assert_same_tree(&s.data, &out_dir.join("aria.bin"));
    seed.stop(MINUTE);
}
