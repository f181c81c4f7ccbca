//! The DHT (BEP 5) against libtorrent 2.0's, on loopback: rivulet downloads
//! a trackerless torrent from a magnet link whose only source is the DHT,
//! and a libtorrent leecher with only a magnet link finds `rivulet seed`
//! through the DHT. A libtorrent node that holds an unrelated torrent is
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
    single_file, LtConfig, LtPeer, RivuletCmd, TorrentOptions,
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

/// rivulet, knowing only the entry node, fetches a trackerless torrent's
/// metadata and data from a libtorrent seeder it finds through the DHT.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn rivulet_finds_a_libtorrent_seeder_through_the_dht() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let mut entry = entry_node(tmp.path());
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "dht.bin", 3_000_000, 5);
    let t = make_torrent_with(&data, &TorrentOptions::new(32 * 1024));
    let mut seeder = LtPeer::start(
        &t.path,
        &seed_dir,
        LtConfig::new(next_loopback()).dht(&[entry.addr()]),
    );
    seeder.wait_seeding(MINUTE);
    wait_dht_nodes(&mut entry, 1);

    let ip = next_loopback();
    let out_dir = tmp.path().join("out");
    let link = format!("magnet:?xt=urn:btih:{}", t.info_hash_v1);
    let mut rivulet = RivuletCmd::download(Path::new(&link), &out_dir)
        .bind(ip)
        .port(free_port(ip))
        .arg(format!("--dht-bootstrap={}", entry.addr()))
        .spawn();
    // Once rivulet's node is in the DHT, the seeder announces (libtorrent
    // would on its own every 15 minutes).
    wait_dht_nodes(&mut entry, 2);
    seeder.dht_announce();
    let exit = rivulet.wait_exit(2 * MINUTE);
    exit.assert_success();
    assert_same_tree(&data, &out_dir.join("dht.bin"));
    assert!(seeder.status().total_payload_upload >= 3_000_000);
}

/// A libtorrent leecher with nothing but a magnet link finds `rivulet
/// seed` through the DHT (rivulet announced there) and downloads from it,
/// metadata included.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn libtorrent_finds_rivulet_seed_through_the_dht() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let mut entry = entry_node(tmp.path());
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "dht.bin", 3_000_000, 6);
    let t = make_torrent_with(&data, &TorrentOptions::new(32 * 1024));
    let ip = next_loopback();
    let mut seed = RivuletCmd::seed(&t.path, &seed_dir)
        .bind(ip)
        .port(free_port(ip))
        .arg(format!("--dht-bootstrap={}", entry.addr()))
        .spawn();
    let seed_addr: SocketAddr = seed.wait_listening(MINUTE);
    wait_dht_nodes(&mut entry, 1);

    let link = format!("magnet:?xt=urn:btih:{}", t.info_hash_v1);
    let out_dir = tmp.path().join("lt");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut leecher = LtPeer::from_magnet(
        &link,
        &out_dir,
        LtConfig::new(next_loopback()).dht(&[entry.addr()]),
    );
    wait_dht_nodes(&mut entry, 2);
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
    assert_same_tree(&data, &out_dir.join("dht.bin"));
    seed.stop(MINUTE);
}
