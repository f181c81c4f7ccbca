//! Peer exchange (BEP 11) with libtorrent 2.0: rivulet learns of a peer
//! nobody told it about from a libtorrent peer's PEX messages and connects
//! to it, and tells a libtorrent peer of one it did not know, which then
//! connects to it. libtorrent sends PEX about once a minute, so this takes
//! a minute or two.
//!
//! Ignored by default (it needs the real program); CI runs
//!
//! ```text
//! cargo test -p rivulet --test interop_pex -- --ignored --test-threads=1
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::net::IpAddr;
use std::time::Duration;

use support::{
    free_port, make_torrent_with, next_loopback, poll_until, require_libtorrent, single_file,
    LtConfig, LtPeer, RivuletCmd, TorrentOptions,
};

const MINUTE: Duration = Duration::from_secs(60);

/// Whether libtorrent `peer` is connected to a peer at `ip`.
fn connected_to(peer: &mut LtPeer, ip: IpAddr) -> bool {
    peer.status().peers.iter().any(|p| p.ip == ip.to_string())
}

/// Seeder A (slow, so that nobody finishes) and leecher L know each other;
/// rivulet is told only of A; leecher C is told only of rivulet. Through
/// PEX, rivulet hears of L from A and connects to it, and C hears of A from
/// rivulet and connects to it.
#[test]
#[ignore = "interop: needs python3-libtorrent (installed by .ci/run)"]
fn peers_learn_of_each_other_through_pex() {
    require_libtorrent();
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let data = single_file(&seed_dir, "pex.bin", 4_000_000, 11);
    let t = make_torrent_with(&data, &TorrentOptions::new(32 * 1024));
    // 20 kB/s: the 4 MB take minutes, so everyone stays a leecher.
    let mut a = LtPeer::start(
        &t.path,
        &seed_dir,
        LtConfig::new(next_loopback()).rate_limit(20_000, 0),
    );
    a.wait_seeding(MINUTE);
    let l_dir = tmp.path().join("l");
    std::fs::create_dir_all(&l_dir).unwrap();
    let l_ip = next_loopback();
    let mut l = LtPeer::start(&t.path, &l_dir, LtConfig::new(l_ip).connect(a.addr()));
    poll_until("L connected to A", MINUTE, || {
        if connected_to(&mut a, IpAddr::V4(l_ip)) {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    });

    let r_ip = next_loopback();
    let mut rivulet = RivuletCmd::download(&t.path, &tmp.path().join("r"))
        .bind(r_ip)
        .port(free_port(r_ip))
        .peer(a.addr())
        .spawn();
    let r_addr = rivulet.wait_listening(MINUTE);

    let c_dir = tmp.path().join("c");
    std::fs::create_dir_all(&c_dir).unwrap();
    let c_ip = next_loopback();
    let mut c = LtPeer::start(&t.path, &c_dir, LtConfig::new(c_ip).connect(r_addr));

    // rivulet heard of L from A (libtorrent's PEX) and connected to it.
    poll_until("rivulet connected to L", 3 * MINUTE, || {
        if connected_to(&mut l, IpAddr::V4(r_ip)) {
            Ok(())
        } else {
            Err(format!("L's peers: {:?}", l.status().peers))
        }
    });
    // C heard of A from rivulet's PEX and connected to it.
    poll_until("C connected to A", 3 * MINUTE, || {
        if connected_to(&mut a, IpAddr::V4(c_ip)) {
            Ok(())
        } else {
            Err(format!("A's peers: {:?}", a.status().peers))
        }
    });
    assert!(connected_to(&mut c, IpAddr::V4(r_ip)));
    rivulet.stop(MINUTE);
}
