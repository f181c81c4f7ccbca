//! Local service discovery (BEP 14) with libtorrent 2.0, inside a network
//! namespace of each test's own (multicast never leaves it): no tracker,
//! no DHT, no peer given; the peers find each other by their multicast
//! announces alone, both ways. Needs root (namespaces).
//!
//! Ignored by default; CI runs
//!
//! ```text
//! cargo test -p rivulet --test interop_lsd -- --ignored --test-threads=1
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::time::Duration;

use support::{
    assert_same_tree, make_torrent_with, require_libtorrent, single_file, LtConfig, LtPeer, Netns,
    RivuletCmd, TorrentOptions,
};

const MINUTE: Duration = Duration::from_secs(60);

/// A libtorrent seeder hears `rivulet download`'s announce and connects to
/// it: rivulet gets the whole torrent with nothing but LSD.
#[test]
#[ignore = "interop: needs python3-libtorrent and root (installed by .ci/run)"]
fn rivulet_download_is_found_by_a_libtorrent_seeder() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "lsd.bin", 2_000_000, 3);
    let t = make_torrent_with(&data, &TorrentOptions::new(32 * 1024));
    let ns = Netns::create();
    let mut seeder = LtPeer::start(&t.path, &seed_dir, LtConfig::new(ns.next_ip()).lsd_in(&ns));
    seeder.wait_seeding(MINUTE);
    let out_dir = tmp.path().join("out");
    let exit = RivuletCmd::download(&t.path, &out_dir)
        .bind(ns.next_ip())
        .port(ns.next_port())
        .netns(&ns)
        .run(2 * MINUTE);
    exit.assert_success();
    assert_same_tree(&data, &out_dir.join("lsd.bin"));
}

/// `rivulet seed` hears a libtorrent leecher's announce and connects to it:
/// the leecher gets the whole torrent with nothing but LSD.
#[test]
#[ignore = "interop: needs python3-libtorrent and root (installed by .ci/run)"]
fn rivulet_seed_finds_a_libtorrent_leecher() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "lsd.bin", 2_000_000, 4);
    let t = make_torrent_with(&data, &TorrentOptions::new(32 * 1024));
    let ns = Netns::create();
    let mut seed = RivuletCmd::seed(&t.path, &seed_dir)
        .bind(ns.next_ip())
        .port(ns.next_port())
        .netns(&ns)
        .spawn();
    seed.wait_printed("listening on", MINUTE);
    let lt_dir = tmp.path().join("lt");
    std::fs::create_dir_all(&lt_dir).unwrap();
    let mut leecher = LtPeer::start(&t.path, &lt_dir, LtConfig::new(ns.next_ip()).lsd_in(&ns));
    leecher.wait_seeding(2 * MINUTE);
    assert_same_tree(&data, &lt_dir.join("lsd.bin"));
    seed.stop(MINUTE);
}
