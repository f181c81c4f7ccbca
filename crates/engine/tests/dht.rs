//! The session's DHT over real sockets on loopback: a torrent seeded by one
//! session is found by another through the DHT alone (no tracker, no peer
//! given), first its metadata from a magnet link, then its data. A third
//! session is the bootstrap node; two more fill the DHT. The seeder knows
//! no node at start: it joins through the one its torrent names (`nodes`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rivulet_engine::dht::DhtConfig;
use rivulet_engine::download::SeedPolicy;
use rivulet_engine::metadata::FetchOptions;
use rivulet_engine::session::{AddOptions, Session, SessionConfig};
use rivulet_engine::torrent::Outcome;
use rivulet_testkit::fixture::{within, Fixture};
use rivulet_testkit::next_loopback;

const FIND: Duration = Duration::from_secs(60);

fn session_with_dht(bootstrap: Option<SocketAddr>, state: Option<std::path::PathBuf>) -> Session {
    Session::new(SessionConfig {
        listen_port: Some(0),
        bind: Some(IpAddr::V4(next_loopback())),
        dht: Some(DhtConfig {
            bootstrap: bootstrap.map(|a| a.to_string()).into_iter().collect(),
            state_file: state,
            local_only: true,
        }),
        ..SessionConfig::default()
    })
    .unwrap()
}

fn dht_addr(s: &Session) -> SocketAddr {
    SocketAddr::new(s.local_addrs()[0].ip(), s.dht().unwrap().port())
}

/// Waits until `s`'s routing table has at least `n` nodes.
async fn wait_nodes(s: &Session, n: usize) {
    within(FIND, "the DHT table to fill", async {
        loop {
            if s.dht().unwrap().status().await.unwrap().nodes_v4 >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_magnet_link_found_through_the_dht_alone() {
    // Each node joins once the router knows the ones before it (the router
    // pings a node that queried it before it names it to others).
    let router = session_with_dht(None, None);
    let boot = Some(dht_addr(&router));
    let mut fillers = Vec::new();
    for i in 1..=2 {
        fillers.push(session_with_dht(boot, None));
        wait_nodes(&router, i).await;
    }
    // The seeder knows no node: it joins through the one its torrent
    // names (BEP 5 `nodes`).
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("dht.state");
    let seeder = session_with_dht(None, Some(state.clone()));
    let fx = Fixture::sized(31, 16 * 1024, 600 * 1024);
    let router_addr = dht_addr(&router);
    let mut with_nodes = b"d4:info".to_vec();
    with_nodes.extend_from_slice(&fx.metainfo.info_bytes);
    let ip = router_addr.ip().to_string();
    with_nodes.extend_from_slice(
        format!("5:nodesll{}:{}i{}eeee", ip.len(), ip, router_addr.port()).as_bytes(),
    );
    let metainfo = rivulet_core::Metainfo::from_bytes(&with_nodes).unwrap();
    assert_eq!(metainfo.nodes, vec![(ip.clone(), router_addr.port())]);
    let dir = tempfile::tempdir().unwrap();
    fx.write_to(dir.path());
    let seeding = AddOptions {
        seed: SeedPolicy::FOREVER,
        ..AddOptions::default()
    };
    seeder
        .add(&metainfo, dir.path(), seeding, Arc::new(|_| {}))
        .await
        .unwrap();
    wait_nodes(&router, 3).await;
    let fetcher = session_with_dht(boot, None);
    wait_nodes(&router, 4).await;
    for s in [&seeder, &fetcher] {
        wait_nodes(s, 1).await;
    }

    // No tracker, no peer: the DHT must find the seeder.
    let info = within(
        FIND,
        "the metadata through the DHT",
        fetcher.fetch_metadata(fx.info_hash(), FetchOptions::default(), &|_| {}),
    )
    .await
    .unwrap();
    assert!(info == fx.metainfo.info_bytes, "the exact info dictionary");

    let out = tempfile::tempdir().unwrap();
    let (t, _) = fetcher
        .add(
            &fx.metainfo,
            out.path(),
            AddOptions::default(),
            Arc::new(|_| {}),
        )
        .await
        .unwrap();
    within(FIND, "the download through the DHT", t.stopped()).await;
    assert_eq!(t.outcome(), Outcome::Complete);

    fx.assert_files(out.path());

    fetcher.shutdown().await;
    seeder.shutdown().await;

    // The seeder's node saved its state: its id and nodes.
    let saved = std::fs::read(&state).unwrap();
    assert!(saved.len() > 20, "{} bytes", saved.len());
    for f in &fillers {
        f.shutdown().await;
    }
    router.shutdown().await;
}

/// BEP 27: a private torrent is never announced on the DHT. A session
/// seeds a private torrent, then a public one, on a DHT of three nodes:
/// the other two end up holding one peer, the public torrent's.
#[tokio::test]
async fn a_private_torrent_is_not_announced() {
    let router = session_with_dht(None, None);
    let boot = Some(dht_addr(&router));
    let other = session_with_dht(boot, None);
    wait_nodes(&router, 1).await;
    let seeder = session_with_dht(boot, None);
    wait_nodes(&router, 2).await;
    wait_nodes(&seeder, 1).await;
    let stored = || async {
        let mut n = 0;
        for s in [&router, &other] {
            n += s.dht().unwrap().status().await.unwrap().stored_peers;
        }
        n
    };
    let seeding = || AddOptions {
        seed: SeedPolicy::FOREVER,
        ..AddOptions::default()
    };
    let private = Fixture::sized(41, 16 * 1024, 64 * 1024);
    let mut bytes = b"d4:info".to_vec();
    // The same info with `private` set (keys stay in order: "pieces" <
    // "private").
    let mut info_private = private.metainfo.info_bytes.clone();
    info_private.pop();
    info_private.extend_from_slice(b"7:privatei1ee");
    bytes.extend_from_slice(&info_private);
    bytes.push(b'e');
    let private_meta = rivulet_core::Metainfo::from_bytes(&bytes).unwrap();
    assert!(private_meta.info.private);
    let dir = tempfile::tempdir().unwrap();
    private.write_to(dir.path());
    seeder
        .add(&private_meta, dir.path(), seeding(), Arc::new(|_| {}))
        .await
        .unwrap();
    let public = Fixture::sized(42, 16 * 1024, 64 * 1024);
    let dir2 = tempfile::tempdir().unwrap();
    public.write_to(dir2.path());
    seeder
        .add(&public.metainfo, dir2.path(), seeding(), Arc::new(|_| {}))
        .await
        .unwrap();
    // Until the public torrent is announced and the seeder's node has no
    // lookup left running: the private one (added first) would have been
    // announced by then, had it been.
    within(FIND, "the public torrent's announce", async {
        loop {
            let idle = seeder.dht().unwrap().status().await.unwrap().lookups == 0;
            if idle && stored().await >= 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(stored().await, 1);
    for s in [&seeder, &other, &router] {
        s.shutdown().await;
    }
}
